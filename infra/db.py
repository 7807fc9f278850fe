"""The database handle: one async engine and its sessions, for PostgreSQL or the embedded SQLite."""

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import RedisError
from sqlalchemy import event, make_url, select, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel import SQLModel

PGBOUNCER = "pgbouncer"  # DATABASE_URL query parameter: PostgreSQL through PgBouncer
STATEMENT_TIMEOUT_MS = 30_000
_WRITES_OPTION = "sync2books_writes"
_WRITES = {_WRITES_OPTION: True}  # execution options of a transaction that writes


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one writing transaction: committed on exit, rolled back on error."""
        async with self.sessions() as session, session.begin():
            await session.connection(execution_options=_WRITES)
            yield session

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection inside one writing transaction, as `transaction` for sessions."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**_WRITES)
            async with conn.begin():
                yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def connect(url: str, *, pool_size: int = 20, max_overflow: int = 10) -> Database:
    """Open an engine and its sessions. Room for a worker's pushes and its jobs' transitions:
    each new PostgreSQL connection costs a server process, so a busy pool must not open and
    close them."""
    pool = {} if is_sqlite(url) else {"pool_size": pool_size, "max_overflow": max_overflow}
    engine = create_engine(url, pool_pre_ping=not is_sqlite(url), **pool)
    return Database(engine, async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False))


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, **options: Any) -> AsyncEngine:  # Any: SQLAlchemy's engine options
    """An engine for `url`, as the service and its migrations use it.

    SQLite writers (`Database.transaction`, `Database.writing`) take the write lock up front,
    so they queue, not deadlock; readers take no lock. PostgreSQL
    behind PgBouncer's transaction pooling (`?pgbouncer=true` in `DATABASE_URL`) may run each
    transaction on another server connection: no statement caches, prepared statements
    named uniquely, and no per-connection settings (give the role a `statement_timeout`)."""
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    parsed = make_url(url)
    connect_args: dict[str, Any] = {"timeout": 10}  # Any: asyncpg's connect arguments
    if parsed.query.get(PGBOUNCER) == "true":
        parsed = parsed.difference_update_query([PGBOUNCER])
        parsed = parsed.update_query_dict({"prepared_statement_cache_size": "0"})
        connect_args |= {"statement_cache_size": 0, "prepared_statement_name_func": _unique_name}
    else:
        connect_args["server_settings"] = {"statement_timeout": str(STATEMENT_TIMEOUT_MS)}
    return create_async_engine(parsed, connect_args=connect_args, **options)


def _unique_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


M = TypeVar("M", bound=SQLModel)


async def rows_by_parent(
    db: Database, model: type[M], parent: str, parent_ids: Sequence[str], *, order: str
) -> list[list[M]]:
    """The `model` rows under each parent id (a log's entries under their item or delivery),
    by the `order` column, in the order of `parent_ids`: one query for a DataLoader's batch."""
    columns = model.__table__.c  # type: ignore[attr-defined]
    found: dict[str, list[M]] = {parent_id: [] for parent_id in parent_ids}
    async with db.sessions() as session:
        rows = await session.scalars(
            select(model)
            .where(columns[parent].in_(parent_ids))
            .order_by(columns[parent], columns[order])
        )
        for row in rows:
            found[getattr(row, parent)].append(row)
    return [found[parent_id] for parent_id in parent_ids]


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:  # Any: DB-API objects
    dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:  # Any: SQLAlchemy's sync Connection
    """Writers take SQLite's write lock up front, so they queue behind each other instead of
    failing when two upgrade a read at once. Readers never take it: a reader, even one a
    cancelled task left open, cannot hold the writers up."""
    writes = conn.get_execution_options().get(_WRITES_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def is_outage(exc: BaseException) -> bool:
    """Our database or Redis out of reach (a passing outage), as opposed to a statement it
    refused (a data or integrity error: poison, which waiting never cures)."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, RedisError | OSError)


def refused_because(exc: DBAPIError) -> str:
    """What the database refused a statement for, in one line: for the error of the item it
    was about."""
    return str(exc.orig).strip().splitlines()[0]
