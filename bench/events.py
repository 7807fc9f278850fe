"""The event log at two sizes, 100,000 events and 10,000,000, over four months on
PostgreSQL's monthly partitions. Each company has 10,000 events at both sizes (10 companies,
then 1,000), so its figures differ only by the table around them. At each size: events
inserted per second as a transition writes them (500 a statement, one company's numbers), a
replay page (`REPLAY_PAGE` events after a point in a company's log), `syncStats` over a day
(minute buckets), and retention dropping the oldest month (its companies' horizons kept,
then the partition dropped).

The log is seeded straight into the database (10 million transitions through the API would
be hours); every figure is then measured through the functions the service runs.
"""

import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy import insert
from sqlmodel import col

from api.subscriptions import REPLAY_PAGE
from bench.service import ASYNC_DATABASE_URL, DATABASE_URL, fresh_database, months_from
from infra.db import Database, connect
from infra.settings import Settings
from infra.storage import open_storage
from models.events import company_events
from models.history import expire, month_of, partitions
from models.migrate import migrate
from models.stats import sync_stats
from models.tables import SyncEvent

EVENTS_PER_COMPANY = 10_000
MONTHS = 4
INSERT_BATCHES = 20  # of 500 events each

_SEED_COMPANIES = """
INSERT INTO company (id, name, api_key_hash, last_event_seq, pending_batches,
    processing_batches, completed_batches, failed_batches, created_at)
SELECT 'cmp_' || c, 'Company ' || c, md5('key' || c), $1 / $2, 0, 0, 0, 0, now()
FROM generate_series(0, $2 - 1) c
"""
# Events in runs of 300 (a batch of 100 items' three moves each), the runs of the companies
# taking turns; event g (1…N) at an even step from `start` to now.
_SEED_EVENTS = """
INSERT INTO sync_event (company_id, company_seq, batch_id, item_id, from_status, to_status,
    occurred_at)
SELECT 'cmp_' || ((g - 1) / 300 % $2), ((g - 1) / 300 / $2) * 300 + (g - 1) % 300 + 1,
       'bat_' || ((g - 1) / 300), 'itm_' || (g / 3),
       CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN 'PENDING' ELSE 'PROCESSING' END,
       CASE g % 3 WHEN 0 THEN 'PENDING' WHEN 1 THEN 'PROCESSING'
            ELSE CASE WHEN g % 30 = 2 THEN 'FAILED' ELSE 'SUCCESS' END END,
       $3::timestamptz + (g * $4::float8) * interval '1 second'
FROM generate_series(1, $1) g
"""


@dataclass
class Figures:
    events: int
    inserts_per_s: float
    replay_ms: float
    stats_ms: float
    drop_ms: float
    dropped_rows: int


async def measure(events: int, samples: int) -> Figures:
    await fresh_database(DATABASE_URL)
    await migrate(ASYNC_DATABASE_URL)
    now = datetime.now(UTC)
    start = month_of(now - timedelta(days=31 * (MONTHS - 1)))
    await months_from(start)
    step = (now - start).total_seconds() / events
    companies = max(1, events // EVENTS_PER_COMPANY)
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute(_SEED_COMPANIES, events, companies)
        await conn.execute(_SEED_EVENTS, events, companies, start, step)
        await conn.execute("VACUUM ANALYZE sync_event")
    finally:
        await conn.close()
    db = connect(ASYNC_DATABASE_URL)
    try:
        return Figures(
            events,
            await _inserts(db),
            await _replay(db, companies, samples),
            await _stats(db, companies, samples),
            *await _drop(db, now),
        )
    finally:
        await db.dispose()


async def _inserts(db: Database) -> float:
    seq = EVENTS_PER_COMPANY + 1
    started = time.perf_counter()
    for n in range(INSERT_BATCHES):
        rows = [
            {"company_id": "cmp_1", "company_seq": seq + n * 500 + i, "batch_id": "bat_new",
             "item_id": f"itm_new{i}", "from_status": "PENDING", "to_status": "PROCESSING"}
            for i in range(500)
        ]  # fmt: skip
        async with db.transaction() as session:
            await session.execute(insert(SyncEvent).returning(col(SyncEvent.id)), rows)
    return INSERT_BATCHES * 500 / (time.perf_counter() - started)


async def _replay(db: Database, companies: int, samples: int) -> float:
    per_company = EVENTS_PER_COMPANY
    timings = []
    for _ in range(samples):
        company = f"cmp_{random.randrange(companies)}"
        after = random.randrange(per_company - 2 * REPLAY_PAGE)  # a full page: 9,900 at least
        started = time.perf_counter()
        page = await company_events(
            db, company_id=company, after_seq=after, upto_seq=per_company, limit=REPLAY_PAGE
        )
        timings.append(time.perf_counter() - started)
        assert len(page) == REPLAY_PAGE, (company, after)
    return statistics.median(timings) * 1000


async def _stats(db: Database, companies: int, samples: int) -> float:
    until = datetime.now(UTC) - timedelta(days=3)  # a whole day inside the log
    timings = []
    for _ in range(samples):
        company = f"cmp_{random.randrange(companies)}"
        started = time.perf_counter()
        buckets = await sync_stats(
            db,
            company_id=company,
            since=until - timedelta(hours=23, minutes=59),
            until=until,
            bucket_seconds=60,
        )
        timings.append(time.perf_counter() - started)
        assert len(buckets) == 1440
    return statistics.median(timings) * 1000


async def _drop(db: Database, now: datetime) -> tuple[float, int]:
    """Retention set so that the oldest month, and only it, is past it."""
    oldest = min(p.end for p in await partitions(db))
    days = (now - oldest).days
    settings = Settings(database_url=DATABASE_URL, event_retention_days=days)
    started = time.perf_counter()
    removed = await expire(db, open_storage(settings), settings, now)
    seconds = time.perf_counter() - started
    return seconds * 1000, sum(r.rows for r in removed if r.table == "sync_event")
