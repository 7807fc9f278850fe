"""Running the real `sync2books` commands as separate processes, for tests."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

BIN = Path(sys.executable).parent / "sync2books"
CONFIG = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DATA_DIR")  # unset: the embedded default
SECRET_KEY = Fernet.generate_key().decode()  # this test session's; the fixtures' settings too


UNLIMITED_SANDBOX = {"SANDBOX_RATE_LIMIT_PER_MINUTE": "1000000", "SANDBOX_MAX_CONCURRENT": "1000"}


def env_without_config(**config: str) -> dict[str, str]:
    """This environment minus the service's configuration, plus `config`; the sandbox's
    limits are lifted (tests that need them configure them per company). Given a database,
    processes share the test session's `SECRET_KEY`, as production's processes share theirs."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG}
    shared = {"SECRET_KEY": SECRET_KEY} if "DATABASE_URL" in config else {}
    return env | UNLIMITED_SANDBOX | shared | config


def cli(*args: str, cwd: Path, env: Mapping[str, str]) -> str:
    """Run a command that must succeed; its output."""
    done = cli_result(*args, cwd=cwd, env=env)
    assert done.returncode == 0, (args, done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def cli_result(*args: str, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running(
    *args: str, cwd: Path, env: Mapping[str, str], program: Sequence[str] = (str(BIN),)
) -> Iterator[subprocess.Popen[str]]:
    """Run a command with its output in `<cwd>/<command>.log`; stopped by SIGTERM at the end,
    which it must obey cleanly: exit 0, or the signal again once it has shut down (uvicorn
    does), never an error's exit. `program` may wrap the command (`tests.traced`)."""
    path = cwd / f"{args[0]}.log"
    with path.open("w") as log:
        process = subprocess.Popen(
            [*program, *args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                stopped = process.returncode
                assert stopped in (0, -signal.SIGTERM), f"{args[0]} exited {stopped}: {_tail(path)}"


def _tail(path: Path) -> str:
    return path.read_text()[-3000:]


@asynccontextmanager
async def ready_client(port: int, key: str) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        for _ in range(150):
            try:
                if (await client.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the server never became ready")
        yield client


def wait_ready(url: str) -> None:
    """Block until the server at `url` (its /readyz) answers 200, for up to 30 s."""
    for _ in range(300):
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("the server never became ready")
