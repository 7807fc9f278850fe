"""Bounded history: the append-only tables keep their retention's days of rows.

On PostgreSQL `sync_event` and `push_attempt` are partitioned by month (migration 0014). The
worker's sweep creates the coming months' partitions ahead and drops a month whole once all
of it is past retention: no `DELETE`, no bloat. With `HISTORY_ARCHIVE` on, each month is
first written to the attachment store as gzipped JSON lines
(`archive/<table>/<YYYY_MM>.jsonl.gz`). On SQLite (the embedded default) old rows are
deleted in small batches, which keeps its one write lock short. Webhook deliveries are rows
that change (status, next attempt) with attempts of their own: settled ones past retention
are deleted in batches, on both backends.

Before a company's events go, the id of its newest one removed is kept
(`Company.events_expired_through`): a stream asked to resume before it would miss what
followed, so it is refused (`EVENTS_EXPIRED`).
"""

import asyncio
import gzip
import json
import logging
import re
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from infra.db import Database
from infra.settings import Settings
from infra.storage import Storage
from models.enums import DeliveryStatus
from models.errors import EventsExpired
from models.tables import Company, PushAttempt, SyncEvent, WebhookAttempt, WebhookDelivery

log = logging.getLogger(__name__)

MONTHS_AHEAD = 2  # partitions made ahead of the current month
DELETE_BATCH = 1_000  # rows per delete where rows are deleted (SQLite, webhook deliveries)
ARCHIVE_PREFIX = "archive/"
_ARCHIVE_ROWS = 5_000  # rows read and compressed at a time
# Each partitioned table's model and the time column it is partitioned by (migration 0014).
_PARTITIONED: dict[str, tuple[type[SyncEvent] | type[PushAttempt], str]] = {
    "sync_event": (SyncEvent, "occurred_at"),
    "push_attempt": (PushAttempt, "started_at"),
}
_PARTITION = re.compile(r"^(sync_event|push_attempt)_p(\d{4})_(\d{2})$")


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    start: datetime  # its months' rows are those from `start` up to `end`
    end: datetime


@dataclass(frozen=True)
class Removed:
    table: str
    rows: int
    partition: str | None = None  # a month dropped whole (PostgreSQL)
    archive: str | None = None  # where it was written first


def is_partition(name: str) -> bool:
    """A month of a partitioned table: made by the sweep, not declared in the models."""
    return _PARTITION.match(name) is not None


def month_of(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def _partition(table: str, start: datetime) -> Partition:
    return Partition(table, f"{table}_p{start:%Y_%m}", start, next_month(start))


async def partitions(db: Database) -> list[Partition]:
    """The months each partitioned table has, oldest first."""
    async with db.sessions() as session:
        names = await session.scalars(
            text(
                "SELECT child.relname FROM pg_inherits"
                " JOIN pg_class child ON child.oid = pg_inherits.inhrelid"
                " JOIN pg_class parent ON parent.oid = pg_inherits.inhparent"
                " WHERE parent.relname IN ('sync_event', 'push_attempt')"
            )
        )
        found = [_PARTITION.match(name) for name in names]
    months = [
        _partition(match[1], datetime(int(match[2]), int(match[3]), 1, tzinfo=UTC))
        for match in found
        if match is not None
    ]
    return sorted(months, key=lambda p: (p.table, p.start))


async def ensure_partitions(
    db: Database, now: datetime, *, since: datetime | None = None
) -> list[str]:
    """Make the months from `since` (this one by default) to `MONTHS_AHEAD` past this one,
    where missing."""
    if not db.is_postgres:
        return []
    have = {p.name for p in await partitions(db)}
    wanted, start, last = [], month_of(since or now), month_of(now)
    for _ in range(MONTHS_AHEAD):
        last = next_month(last)
    while start <= last:
        wanted += [_partition(table, start) for table in _PARTITIONED]
        start = next_month(start)
    made = [p for p in wanted if p.name not in have]
    async with db.transaction() as session:
        for p in made:
            await session.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {p.name} PARTITION OF {p.table}"
                    f" FOR VALUES FROM ('{p.start.isoformat()}') TO ('{p.end.isoformat()}')"
                )
            )
    return [p.name for p in made]


async def sweep(
    db: Database, storage: Storage, settings: Settings, now: datetime
) -> tuple[list[str], list[Removed]]:
    """The partitions made ahead, then what retention removed."""
    return await ensure_partitions(db, now), await expire(db, storage, settings, now)


def _retention(settings: Settings) -> dict[str, timedelta]:
    return {
        "sync_event": timedelta(days=settings.event_retention_days),
        "push_attempt": timedelta(days=settings.push_attempt_retention_days),
        "webhook_delivery": timedelta(days=settings.webhook_delivery_retention_days),
    }


async def expire(
    db: Database, storage: Storage, settings: Settings, now: datetime
) -> list[Removed]:
    """Remove what is past retention: whole months on PostgreSQL, batches on SQLite."""
    retention = _retention(settings)
    removed = []
    if db.is_postgres:
        for p in await partitions(db):
            if p.end <= now - retention[p.table]:
                removed.append(await _drop(db, storage, p, archive=settings.history_archive))
    else:
        for table in _PARTITIONED:
            rows = await _delete_before(db, table, now - retention[table])
            if rows:
                removed.append(Removed(table, rows))
    deliveries = await _delete_deliveries(db, now - retention["webhook_delivery"])
    if deliveries:
        removed.append(Removed("webhook_delivery", deliveries))
    return removed


async def _drop(db: Database, storage: Storage, p: Partition, *, archive: bool) -> Removed:
    """Archive the month if asked, then keep its companies' horizons and drop it, together:
    one scan of the month counts its rows and finds each company's newest event."""
    key = await _archive(db, storage, p) if archive else None
    async with db.transaction() as session:
        if p.table == "sync_event":
            rows = await session.scalar(
                text(
                    f"WITH newest AS (SELECT company_id, max(id) AS last, count(*) AS n"
                    f" FROM {p.name} GROUP BY company_id),"
                    " kept AS (UPDATE company SET events_expired_through = newest.last"
                    " FROM newest WHERE company.id = newest.company_id"
                    " AND (events_expired_through IS NULL OR events_expired_through < newest.last))"
                    " SELECT coalesce(sum(n), 0) FROM newest"
                )
            )
        else:
            rows = await session.scalar(text(f"SELECT count(*) FROM {p.name}"))
        await session.execute(text(f"DROP TABLE {p.name}"))
    log.info("history: %s dropped (%d rows)", p.name, rows or 0, extra={"archive": key})
    return Removed(p.table, int(rows or 0), p.name, key)


async def _keep_horizons(session: AsyncSession, newest: Sequence[tuple[str, int | None]]) -> None:
    """Each company's newest removed event id, never moved back."""
    horizon = col(Company.events_expired_through)
    for company_id, last in newest:
        if last is None:
            continue
        await session.execute(
            update(Company)
            .where(col(Company.id) == company_id, horizon.is_(None) | (horizon < last))
            .values(events_expired_through=last)
        )


async def _delete_before(db: Database, table: str, cutoff: datetime) -> int:
    """Delete the table's rows older than `cutoff`, oldest first, a batch per transaction
    (SQLite). Rows are read in id order, which is the order they were written, so each batch
    is a short range of the primary key and a log with nothing to remove costs one row."""
    model, time_column = _PARTITIONED[table]
    when, ids_col = col(getattr(model, time_column)), col(model.id)
    deleted = 0
    while True:
        async with db.transaction() as session:
            oldest = await session.execute(
                select(ids_col, when).order_by(ids_col).limit(DELETE_BATCH)
            )
            rows = [(row_id, moment) for row_id, moment in oldest]
            ids = [row_id for row_id, moment in rows if moment < cutoff]
            if not ids:
                return deleted
            if model is SyncEvent:
                newest = await session.execute(
                    select(col(SyncEvent.company_id), func.max(col(SyncEvent.id)))
                    .where(col(SyncEvent.id).in_(ids))
                    .group_by(col(SyncEvent.company_id))
                )
                await _keep_horizons(session, [(company_id, last) for company_id, last in newest])
            await session.execute(delete(model).where(ids_col.in_(ids)))
        deleted += len(ids)
        if len(ids) < len(rows):
            return deleted  # the rest is within retention


async def _delete_deliveries(db: Database, cutoff: datetime) -> int:
    """Delete settled webhook deliveries created before `cutoff`, with their attempts."""
    deleted = 0
    while True:
        async with db.transaction() as session:
            ids = list(
                await session.scalars(
                    select(col(WebhookDelivery.id))
                    .where(
                        col(WebhookDelivery.created_at) < cutoff,
                        col(WebhookDelivery.status) != DeliveryStatus.PENDING,
                    )
                    .limit(DELETE_BATCH)
                )
            )
            if not ids:
                return deleted
            await session.execute(
                delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(ids))
            )
            await session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.id).in_(ids)))
        deleted += len(ids)


async def check_resumable(db: Database, *, company_id: str, after: int) -> None:
    """Refuse to resume the company's events after `after` when some that followed it were
    removed by retention; name the oldest event still kept."""
    async with db.sessions() as session:
        horizon = await session.scalar(
            select(col(Company.events_expired_through)).where(col(Company.id) == company_id)
        )
        if horizon is None or after >= horizon:
            return
        await _expired(session, company_id, f"afterEventId {after}: the events that followed it")


async def check_replayable(db: Database, *, company_id: str, batch_id: str) -> None:
    """Refuse to replay a batch from its first event when retention removed that event: the
    replay would miss its start and, were all its events gone, wait for an end already past."""
    async with db.sessions() as session:
        created = await session.scalar(
            select(col(SyncEvent.id))
            .where(
                col(SyncEvent.batch_id) == batch_id,
                col(SyncEvent.item_id).is_(None),
                col(SyncEvent.from_status).is_(None),
            )
            .limit(1)
        )
        if created is None:
            await _expired(session, company_id, f"batch {batch_id}: its first events")


async def _expired(session: AsyncSession, company_id: str, what: str) -> None:
    """Raise EVENTS_EXPIRED for `what`, naming the company's oldest event still kept."""
    oldest = await session.scalar(
        select(col(SyncEvent.id))
        .where(col(SyncEvent.company_id) == company_id)
        .order_by(col(SyncEvent.company_seq))
        .limit(1)
    )
    kept = f"the oldest event kept is {oldest}" if oldest else "none of its events is kept"
    raise EventsExpired(
        f"{what} are past retention and gone; {kept}. Read the current state again, then"
        " follow from Company.lastEventId.",
        field="afterEventId",
        oldestEventId=str(oldest) if oldest else None,
    )


def archive_key(p: Partition) -> str:
    return f"{ARCHIVE_PREFIX}{p.table}/{p.start:%Y_%m}.jsonl.gz"


async def _archive(db: Database, storage: Storage, p: Partition) -> str:
    """Write the month's rows, in id order, as gzipped JSON lines to the store."""
    key = archive_key(p)
    with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as spool:
        with gzip.GzipFile(fileobj=spool, mode="wb") as packed:
            async with db.sessions() as session:
                rows = await session.stream(text(f"SELECT * FROM {p.name} ORDER BY id"))
                async for part in rows.mappings().partitions(_ARCHIVE_ROWS):
                    await asyncio.to_thread(_write_lines, packed, part)
        await asyncio.to_thread(storage.put_blocking, key, spool)
    return key


def _write_lines(packed: gzip.GzipFile, rows: Sequence[Any]) -> None:  # Any: row mappings
    packed.write(b"".join(json.dumps(dict(row), default=str).encode() + b"\n" for row in rows))


def archives(storage: Storage) -> list[str]:
    """Every archive in the store, by name (blocking: for the CLI)."""
    return storage.keys_blocking(ARCHIVE_PREFIX)


def archive_lines(storage: Storage, key: str) -> Iterator[bytes]:
    """An archive's JSON lines, unpacked as they arrive (blocking: for the CLI)."""
    unpack = zlib.decompressobj(wbits=31)  # gzip
    for chunk in storage.chunks_blocking(key):
        yield unpack.decompress(chunk)
    yield unpack.flush()
