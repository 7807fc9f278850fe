"""The service as production runs it: PostgreSQL, Redis, an API process and worker processes."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import redis.asyncio as redis
from cryptography.fernet import Fernet

from bench import otlp
from infra.db import connect
from infra.settings import Settings
from models.history import ensure_partitions
from models.tables import utcnow

BIN = Path(sys.executable).parent / "sync2books"
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/sync2books_bench"
)
ASYNC_DATABASE_URL = Settings(database_url=DATABASE_URL).async_database_url  # for SQLAlchemy
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


@dataclass(frozen=True)
class Company:
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Service:
    address: str
    env: dict[str, str]
    home: Path
    api_pid: int  # for figures read off the API process (memory, CPU time)
    worker_pids: list[int]

    async def cli(self, *args: str) -> str:
        """Run a `sync2books` command against this service; its output."""
        process = await asyncio.create_subprocess_exec(
            str(BIN), *args, cwd=self.home, env=self.env, stdout=subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert process.returncode == 0, args
        return out.decode()

    async def create_company(self, name: str) -> Company:
        created = json.loads(await self.cli("create-company", "--name", name))
        return Company(created["companyId"], created["apiKey"])

    async def create_companies(self, prefix: str, count: int) -> list[Company]:
        """A few at a time: each is a Python process starting on a small machine."""
        gate = asyncio.Semaphore(4)

        async def one(n: int) -> Company:
            async with gate:
                return await self.create_company(f"{prefix}-{n}")

        return list(await asyncio.gather(*(one(n) for n in range(count))))


async def months_from(since: datetime) -> None:
    """The log's monthly partitions from `since` on: for rows seeded into the past."""
    db = connect(ASYNC_DATABASE_URL)
    try:
        await ensure_partitions(db, utcnow(), since=since)
    finally:
        await db.dispose()


async def fresh_database(url: str) -> None:
    """Drop and recreate the bench database: every run starts empty."""
    admin, _, name = url.rpartition("/")
    conn = await asyncpg.connect(f"{admin}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def until_ready(url: str) -> bool:
    """Whether the service answered `url` (its /readyz) with 200 within 30 s."""
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            try:
                if (await http.get(url)).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    return False


@asynccontextmanager
async def running(*, workers: int = 1, tracing: float = 0.0) -> AsyncIterator[Service]:
    """The service on a fresh database; with `tracing` (the share of traces sampled), its
    spans exported over OTLP to a local endpoint (`bench.otlp`)."""
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(otlp.collector()) if tracing else None
        async with _running(workers, endpoint, tracing) as service:
            yield service


@asynccontextmanager
async def _running(
    workers: int, otlp_endpoint: str | None, sampled: float
) -> AsyncIterator[Service]:
    await fresh_database(DATABASE_URL)
    client = redis.Redis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    env = os.environ | {
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": Fernet.generate_key().decode(),
        "SANDBOX_RATE_LIMIT_PER_MINUTE": "1000000",  # scenarios that need a limit set it
        "SANDBOX_MAX_CONCURRENT": "1000",
        "SANDBOX_ATTACHMENT_BYTES": str(25 * 1024 * 1024),  # uploads of 20 MiB
        "API_RATE_LIMIT_PER_MINUTE": "100000000",  # the driver is one key sending thousands
    }
    if otlp_endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint
        env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        env["OTEL_TRACES_SAMPLER_ARG"] = str(sampled)
    port = free_port()
    with tempfile.TemporaryDirectory() as home, (Path(home) / "service.log").open("w") as log:
        commands = [["serve", "--port", str(port)]] + [["worker"]] * workers
        processes = [
            await asyncio.create_subprocess_exec(
                str(BIN), *command, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            for command in commands
        ]
        try:
            await until_ready(f"http://127.0.0.1:{port}/readyz")
            pids = [process.pid for process in processes]
            yield Service(f"127.0.0.1:{port}", env, Path(home), pids[0], pids[1:])
        finally:
            for process in processes:
                with contextlib.suppress(ProcessLookupError):  # it may have died already
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                await asyncio.wait_for(process.wait(), 30)
