"""The process's connections (database, Redis, job queue, file storage), opened once and
closed once."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import Redis

from infra import tracing
from infra.bus import Bus
from infra.db import Database, connect
from infra.queue import QUEUE_NAME, deserialize, serialize
from infra.settings import Settings
from infra.storage import Storage, open_storage
from infra.vault import Vault, load_vault

REDIS_TIMEOUT_SECONDS = 5
HEALTH_CHECK_SECONDS = 10  # a listening connection pings when idle this long


@dataclass(frozen=True)
class Services:
    settings: Settings
    redis_url: str
    db: Database
    redis: Redis
    queue: ArqRedis
    bus: Bus
    vault: Vault
    storage: Storage

    @property
    def redis_settings(self) -> RedisSettings:
        return redis_settings(self.redis_url)


def redis_client(redis_url: str, *, listening: bool = False) -> Redis:
    """A Redis client with our timeouts. A `listening` one (pub/sub) waits on reads as long
    as it takes, and checks its connection's health instead."""
    client: Redis = Redis.from_url(
        redis_url,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=None if listening else REDIS_TIMEOUT_SECONDS,
        health_check_interval=HEALTH_CHECK_SECONDS if listening else 0,
    )
    return client


def redis_settings(redis_url: str) -> RedisSettings:
    """arq's connection settings, with the same connect timeout."""
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_timeout = REDIS_TIMEOUT_SECONDS
    return settings


@asynccontextmanager
async def open_services(settings: Settings, *, redis_url: str) -> AsyncIterator[Services]:
    """Open every connection; everything is closed on exit. The schema is the caller's to
    migrate (`models.migrate`) before it queries."""
    vault = load_vault(settings)  # first: a missing SECRET_KEY stops the process at once
    db = connect(settings.async_database_url)
    tracing.instrument(db.engine)
    redis = redis_client(redis_url)
    queue = await create_pool(
        redis_settings(redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=QUEUE_NAME,
    )
    try:
        storage = open_storage(settings)
        yield Services(settings, redis_url, db, redis, queue, Bus(redis), vault, storage)
    finally:
        await queue.aclose()
        await redis.aclose()
        await db.dispose()
