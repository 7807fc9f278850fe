"""Alembic environment: runs migrations over the same async drivers the service uses."""

import asyncio

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

# These two register every table on SQLModel.metadata.
import models.sandbox
import models.tables  # noqa: F401
from infra.db import create_engine
from models.history import is_partition

target_metadata = SQLModel.metadata


# Processes that start together (an API and its workers) migrate one at a time: a lock held
# by the migrating transaction, which PgBouncer's transaction pooling keeps on one connection.
_MIGRATION_LOCK = 0x5332_424D


def _declared(name: str | None, kind: str, _: object) -> bool:
    """Whether autogenerate compares it: a table's monthly partitions are the sweep's."""
    return not (kind == "table" and name is not None and is_partition(name))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=_declared,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            lock = text("SELECT pg_advisory_xact_lock(:key)")
            connection.execute(lock, {"key": _MIGRATION_LOCK})
        context.run_migrations()


async def _run_async() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


asyncio.run(_run_async())
