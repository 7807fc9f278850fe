"""The embedded default's own parts: the redis-server it starts, and its one data directory."""

import json
import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis import Redis

from infra.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from tests.processes import cli, env_without_config

STARTS = 25


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy_machine() -> Iterator[None]:
    """Every core kept busy, as by a build running beside the first `serve`."""
    spinners = [
        multiprocessing.Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 2)
    ]
    for spinner in spinners:
        spinner.start()
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.join()


def test_the_embedded_redis_starts_every_time_on_a_busy_machine(tmp_path: Path) -> None:
    """Its socket file appears before it accepts: a start waits for an answer, not a file."""
    with busy_machine():
        for n in range(STARTS):
            server = EmbeddedRedis(tmp_path / "data")
            try:
                server.start()
                client = Redis(unix_socket_path=str(server.socket))
                assert client.set("start", n) and client.get("start") == str(n).encode()
                client.close()
            finally:
                server.stop()


def test_a_redis_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.log.mkdir()  # redis-server cannot open its log file, and exits
    with pytest.raises(EmbeddedRedisError, match=f"exited with 1 .*its log is {server.log}"):
        server.start()


def test_a_redis_left_by_a_killed_serve_is_shut_down_and_a_live_ones_is_kept(
    tmp_path: Path,
) -> None:
    first = EmbeddedRedis(tmp_path)
    first.start()
    try:
        with pytest.raises(EmbeddedRedisError, match="one embedded `sync2books serve` per data"):
            EmbeddedRedis(tmp_path).start()  # its owner, this process, is alive
        first.owner.write_text("999999999")  # as if its owner had been killed
        second = EmbeddedRedis(tmp_path)
        second.start()
        assert first._process is not None and first._process.wait(10) == 0  # saved and exited
        second.stop()
    finally:
        first.stop()


def test_a_deep_data_directory_keeps_its_socket_in_a_short_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    server = EmbeddedRedis(deep)
    server.start()
    try:
        assert server.socket.parent != deep and len(str(server.socket)) < 100
        assert (deep / "redis.log").exists()
    finally:
        server.stop()
    assert not server.socket.parent.exists()


def test_everything_the_embedded_default_writes_is_in_one_ignored_directory(tmp_path: Path) -> None:
    """…and an older version's key and database, written in the working directory, are moved in."""
    env = env_without_config()
    old = tmp_path / "old"
    old.mkdir()
    company = json.loads(cli("create-company", "--name", "Old Ltd", cwd=old, env=env))
    key = (old / ".sync2books" / "secret.key").read_bytes()
    (old / ".sync2books" / "secret.key").rename(old / ".sync2books-secret.key")  # the old layout
    (old / ".sync2books" / "sync2books.db").rename(old / "sync2books.db")
    (old / ".sync2books" / ".gitignore").unlink()
    (old / ".sync2books").rmdir()

    rotated = json.loads(cli("rotate-key", "--company-id", company["companyId"], cwd=old, env=env))
    assert rotated["companyId"] == company["companyId"]  # its database, found where it went
    assert [p.name for p in old.iterdir()] == [".sync2books"]
    assert (old / ".sync2books" / "secret.key").read_bytes() == key
    assert (old / ".sync2books" / ".gitignore").read_text().splitlines()[-1] == "*"
