"""The schema's history: Alembic migrations (`models/migrations/`), run by every process that
opens the database before it opens it."""

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """Alembic's configuration for our migrations against `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def migrate(url: str) -> None:
    """Bring the schema to the newest migration (in a thread: Alembic runs its own event loop)."""
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
