"""A company's sync history in time buckets: items synced and failed, for the monitor's charts;
and the whole service's unfinished work, for `/metrics`.

Counted by SQL over the event log, from the index of item outcomes alone
(`ix_sync_event_outcomes`, partial: only SUCCESS and FAILED moves of items), so an hour of a
busy company is one short index range however long the log.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import Integer, Select, cast, func, literal, select, text
from sqlalchemy.sql.elements import ColumnElement

from infra.db import Database
from infra.metrics import ServiceState
from infra.queue import QUEUE_NAME
from models.enums import BatchStatus, ItemStatus
from models.errors import InvalidInput
from models.tables import ITEM_OUTCOMES, SyncBatch, SyncEvent

MAX_BUCKETS = 1440  # a day of minutes, a chart's width many times over
_events = SyncEvent.__table__.c  # type: ignore[attr-defined]
_batches = SyncBatch.__table__  # type: ignore[attr-defined]
_UNFINISHED = (BatchStatus.PENDING, BatchStatus.PROCESSING)

OUTCOMES = text(ITEM_OUTCOMES)  # the partial index's own condition: the planner then uses it


@dataclass(frozen=True)
class Bucket:
    start: datetime
    synced: int
    failed: int

    @property
    def failure_rate(self) -> float | None:
        ended = self.synced + self.failed
        return self.failed / ended if ended else None


def _bucket_of(db: Database, seconds: int) -> ColumnElement[int]:
    """The number of the `seconds`-long bucket an event fell in, counted from the epoch."""
    if db.is_postgres:
        return cast(func.floor(func.extract("epoch", _events.occurred_at) / seconds), Integer)
    epoch = cast(func.strftime("%s", _events.occurred_at), Integer)
    return cast(epoch / literal(seconds), Integer)  # whole numbers: SQLite divides them so


async def sync_stats(
    db: Database, *, company_id: str, since: datetime, until: datetime, bucket_seconds: int
) -> list[Bucket]:
    """Every bucket from the one holding `since` to the one holding `until`, oldest first,
    empty ones included: a chart's points at even steps."""
    if since >= until:
        raise InvalidInput("since: must be in the past", field="since")
    first, last = (int(moment.timestamp()) // bucket_seconds for moment in (since, until))
    if last - first + 1 > MAX_BUCKETS:
        raise InvalidInput(
            f"since: at most {MAX_BUCKETS} buckets of {bucket_seconds} s", field="since"
        )
    query = stats_query(db, company_id, since, until, bucket_seconds)
    counts: dict[tuple[int, str], int] = {}
    async with db.engine.connect() as conn:
        for number, status, count in await conn.execute(query):
            counts[(int(number), status)] = count
    return [
        Bucket(
            datetime.fromtimestamp(n * bucket_seconds, UTC),
            synced=counts.get((n, ItemStatus.SUCCESS.value), 0),
            failed=counts.get((n, ItemStatus.FAILED.value), 0),
        )
        for n in range(first, last + 1)
    ]


def stats_query(
    db: Database, company_id: str, since: datetime, until: datetime, bucket_seconds: int
) -> Select[int, str, int]:
    """Each bucket's count of each outcome (the buckets that have any)."""
    number = _bucket_of(db, bucket_seconds).label("bucket")
    return (
        select(number, _events.to_status, func.count())
        .where(
            _events.company_id == company_id,
            _events.occurred_at >= since,
            _events.occurred_at <= until,
            OUTCOMES,
        )
        .group_by(number, _events.to_status)
    )


def default_since(now: datetime, bucket_seconds: int) -> datetime:
    """An hour of minutes; a day of anything longer."""
    return now - (timedelta(hours=1) if bucket_seconds < 3600 else timedelta(days=1))


async def service_state(db: Database, redis: Redis) -> ServiceState:
    """Unfinished batches only: the recovery sweep's index keeps this cheap at any history.
    Queue depth is arq's queue, a sorted set of the jobs waiting to start."""
    queue_depth = int(await redis.zcard(QUEUE_NAME))
    async with db.sessions() as session:
        rows = await session.execute(
            select(
                _batches.c.status,
                _batches.c.record_type,
                func.count(),
                func.coalesce(func.sum(_batches.c.pending_count), 0),
                func.coalesce(func.sum(_batches.c.processing_count), 0),
            )
            .where(_batches.c.status.in_(_UNFINISHED))
            .group_by(_batches.c.status, _batches.c.record_type)
        )
        unfinished = [(str(s), str(t), int(b), int(p), int(r)) for s, t, b, p, r in rows]
        oldest = await session.scalar(
            select(func.min(_batches.c.created_at)).where(
                _batches.c.status.in_(_UNFINISHED), _batches.c.pending_count > 0
            )
        )
    return ServiceState(unfinished, queue_depth, oldest)
