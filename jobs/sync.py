"""The sync job: push a batch's PENDING items to the company's ledger, in chunks.

One arq job per batch, not per item: the batch's terminal event must follow all its items',
and writing transitions a chunk at a time (two transactions per 50 items) is what keeps the
database from being the bottleneck. The job is idempotent: it only ever claims PENDING items
(a conditional move, so two jobs for one batch never push an item twice), and each push
carries the item's id as idempotency key.

A chunk's pushes run at once, each waiting its turn in the connection's `Limiter`, so the
ledger's rate and concurrency limits hold across all workers (and `WORKER_MAX_PUSHES` bounds
a process's pushes in flight). A job works for one slice (`JOB_SLICE_SECONDS`), in chunks
sized to fit it at the ledger's rate, then queues the rest of its batch behind the other
jobs: a company with a large, slow backlog takes turns with the others instead of holding
every worker.
"""

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from datetime import timedelta

from arq import Retry
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from jobs.context import WorkerContext, from_ctx
from ledgers.limiter import Limiter
from models.alerts import judge_failure_rate, record_outcomes
from models.batch import items_in, unfinished_batches
from models.company import get_connection
from ledgers.refresh import usable_connection
from models.enums import ConnectionStatus, ItemStatus
from models.errors import TRANSIENT, LedgerError, SyncError, SyncErrorCode
from models.metrics import ITEM_FAILURES, PUSH_ATTEMPTS, PUSH_SECONDS
from models.queue import enqueue_sync
from models.records import load_record
from models.settings import Settings
from models.tables import Connection, SyncBatch, SyncItem, utcnow
from models.transitions import Attempt, ItemMove, transition

log = logging.getLogger(__name__)

CHUNK_SIZE = 50
OUTAGE_RETRY_SECONDS = 1


async def sync_batch(ctx: dict[str, object], batch_id: str) -> None:
    """arq entry point; `ctx` carries the worker's typed context.

    A database or Redis outage mid-job runs the job again shortly (arq would otherwise drop
    it); items it left PROCESSING are put back once they are older than the job timeout."""
    try:
        await run_sync(from_ctx(ctx), batch_id=batch_id)
    except (DBAPIError, RedisError, OSError) as exc:
        log.warning(
            "batch job interrupted: %r; it runs again in %ss",
            exc,
            OUTAGE_RETRY_SECONDS,
            extra={"batch_id": batch_id},
        )
        raise Retry(defer=OUTAGE_RETRY_SECONDS) from exc


async def run_sync(deps: WorkerContext, *, batch_id: str) -> None:
    db, settings = deps.services.db, deps.services.settings
    async with db.sessions() as session:
        batch = await session.get(SyncBatch, batch_id)
        if batch is None:
            log.warning("batch vanished before its job ran", extra={"batch_id": batch_id})
            return
        connection = await get_connection(session, company_id=batch.company_id)
    await _recover(deps, batch_id=batch_id)
    link = None if connection is None else _Link(deps, connection)
    if link is None or not await link.usable():
        await _fail_batch(deps, batch, connection)
        return
    limiter = Limiter(
        deps.services.redis,
        connection_id=link.connection.id,
        provider=link.connection.provider,
        limits=await link.ledger.limits(),
        lease_seconds=settings.job_timeout_seconds,
    )
    slice_seconds = min(settings.job_slice_seconds, settings.job_timeout_seconds / 2)
    chunk_size = min(CHUNK_SIZE, limiter.calls_within(slice_seconds))
    ends = time.monotonic() + slice_seconds
    while chunk := await items_in(
        db, batch_id=batch_id, status=ItemStatus.PENDING, limit=chunk_size
    ):
        backlog = await limiter.backlog()
        if time.monotonic() > ends or backlog > slice_seconds:
            log.info(
                "slice over, the rest of the batch runs in %.1fs at the earliest",
                backlog,
                extra={"batch_id": batch_id},
            )
            raise Retry(defer=backlog)  # the same job (one per batch), behind the others
        claimed = await transition(
            db,
            bus=deps.services.bus,
            batch_id=batch_id,
            moves=[ItemMove(item.id, ItemStatus.PROCESSING) for item in chunk],
            strict=False,
        )
        mine = {event.item_id for event in claimed if event.to_status == ItemStatus.PROCESSING}
        results = await asyncio.gather(
            *(_push(deps, link, limiter, item) for item in chunk if item.id in mine)
        )
        await transition(db, bus=deps.services.bus, batch_id=batch_id, moves=results)
        _report(link.connection.provider, batch, results)
        await _judge(deps, batch, results)
        if not await link.usable():
            await _fail_batch(deps, batch, link.connection)
            return
    log.info("batch synced", extra={"company_id": batch.company_id, "batch_id": batch_id})


class _Link:
    """The batch's connection and an adapter holding its current tokens, renewed together."""

    def __init__(self, deps: WorkerContext, connection: Connection) -> None:
        self.deps = deps
        self.connection = connection
        self.ledger = deps.ledger_for(connection)

    async def usable(self, *, refused: Connection | None = None) -> bool:
        """Whether the connection still works, its token refreshed first if it is expiring,
        or if the ledger `refused` the tokens of that copy (unless another push has already
        renewed them since: pushes run at once)."""
        seen = refused or self.connection
        fresh = await usable_connection(
            self.deps.services, self.deps.ledger_for, seen, force=refused is not None
        )
        if fresh is not seen:  # read under the refresh lock: the newest there is
            self.connection, self.ledger = fresh, self.deps.ledger_for(fresh)
        return fresh.status is ConnectionStatus.ACTIVE


async def _push(deps: WorkerContext, link: _Link, limiter: Limiter, item: SyncItem) -> ItemMove:
    """Push the item, retrying transient failures with backoff, up to `max_push_attempts`.

    A refused access token is refreshed once and the push tried again at once. A 429's
    Retry-After holds every push to the ledger (the limiter) for that long; when it is longer
    than `retry_max_seconds` (a daily limit), the item goes back to PENDING and the batch's
    job is deferred until then, holding no worker meanwhile. An outage of our own Redis or
    database spends no attempt: with a chunk's pushes in flight together, it would otherwise
    fail whichever of them ran out of attempts before it ended."""
    settings = deps.services.settings
    record = load_record(item.payload)
    attempts: list[Attempt] = []
    refreshed = False
    while True:
        retry_after: float | None = None
        started_at, start = utcnow(), time.perf_counter()
        connection, ledger = link.connection, link.ledger
        try:
            async with limiter.call(), deps.pushes:  # a slot of the process's only for the call
                started_at, start = utcnow(), time.perf_counter()  # the push, not the wait
                try:
                    external_id = await ledger.push(record, idempotency_key=item.id)
                finally:
                    PUSH_SECONDS.labels(connection.provider).observe(time.perf_counter() - start)
        except LedgerError as exc:
            error, retry_after = exc.error, exc.retry_after
        except (DBAPIError, RedisError) as exc:  # our own database or Redis: not the ledger's
            log.warning(
                "push interrupted by our own outage: %r; again in %ss",
                exc,
                OUTAGE_RETRY_SECONDS,
                extra={"batch_id": item.batch_id, "item_id": item.id},
            )
            await asyncio.sleep(OUTAGE_RETRY_SECONDS)  # no attempt spent (the key makes a
            continue  # post that did happen a no-op); the job's timeout bounds the wait
        except Exception as exc:  # an adapter's bug or an unclassified vendor failure: transient
            log.exception(
                "push failed unexpectedly", extra={"batch_id": item.batch_id, "item_id": item.id}
            )
            message = f"The accounting system failed unexpectedly ({type(exc).__name__})."
            error = SyncError(SyncErrorCode.PROVIDER_ERROR, message)
        else:
            attempts.append(Attempt(started_at, _ms_since(start)))
            return ItemMove(item.id, ItemStatus.SUCCESS, external_id=external_id, attempts=attempts)
        attempts.append(Attempt(started_at, _ms_since(start), error))
        if error.code is SyncErrorCode.RATE_LIMIT_EXCEEDED and retry_after:
            await limiter.hold(retry_after)  # every push to this ledger waits, not just this one
            if retry_after > settings.retry_max_seconds:  # e.g. a daily limit: back to PENDING,
                return ItemMove(item.id, ItemStatus.PENDING, attempts=attempts)  # job deferred
        if error.code is SyncErrorCode.CONNECTION_EXPIRED and not refreshed:
            refreshed = True
            if await link.usable(refused=connection):
                continue
        if error.code not in TRANSIENT or len(attempts) >= settings.max_push_attempts:
            return ItemMove(item.id, ItemStatus.FAILED, error=error, attempts=attempts)
        await asyncio.sleep(backoff(len(attempts), retry_after, settings))


def _report(provider: str, batch: SyncBatch, moves: Sequence[ItemMove]) -> None:
    """Count the items' outcomes, and log each failure with what identifies it."""
    for move in moves:
        if move.to is ItemStatus.PENDING:  # put back until the ledger allows: no outcome yet
            continue
        PUSH_ATTEMPTS.labels(provider).observe(len(move.attempts))
        if move.error is None:
            continue
        ITEM_FAILURES.labels(provider, move.error.code).inc()
        log.warning(
            "item failed: %s",
            move.error.message,
            extra={
                "company_id": batch.company_id,
                "batch_id": batch.id,
                "item_id": move.item_id,
                "provider": provider,
                "code": move.error.code,
                "attempts": len(move.attempts),
            },
        )


async def _judge(deps: WorkerContext, batch: SyncBatch, moves: Sequence[ItemMove]) -> None:
    """Add the chunk's outcomes to the company's failure-rate window, and raise or clear its
    alert. Alerts advise: an outage here is logged and never stops the sync."""
    failed = sum(move.to is ItemStatus.FAILED for move in moves)
    succeeded = sum(move.to is ItemStatus.SUCCESS for move in moves)
    try:
        window = await record_outcomes(
            deps.services.redis,
            deps.services.settings,
            company_id=batch.company_id,
            succeeded=succeeded,
            failed=failed,
        )
        await judge_failure_rate(deps.services, company_id=batch.company_id, window=window)
    except (DBAPIError, RedisError) as exc:
        log.warning("failure-rate alert not judged: %r", exc, extra={"batch_id": batch.id})


def backoff(failures: int, retry_after: float | None, settings: Settings) -> float:
    """Exponential backoff with full jitter, never sooner than the ledger's Retry-After."""
    ceiling = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (failures - 1))
    return max(random.uniform(0, ceiling), retry_after or 0.0)


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


async def _recover(deps: WorkerContext, *, batch_id: str) -> None:
    """Put back the items a dead worker left PROCESSING, to be pushed again (safe: the item id
    is the idempotency key). An item claimed longer ago than the job timeout has no living job:
    arq cancels a job at its timeout, and reruns a killed worker's job only after it."""
    db, timeout = deps.services.db, deps.services.settings.job_timeout_seconds
    stranded = await items_in(
        db,
        batch_id=batch_id,
        status=ItemStatus.PROCESSING,
        limit=None,
        unchanged_since=utcnow() - timedelta(seconds=timeout),
    )
    if stranded:
        moves = [ItemMove(item.id, ItemStatus.PENDING) for item in stranded]
        await transition(db, bus=deps.services.bus, batch_id=batch_id, moves=moves, strict=False)
        log.warning(
            "%d items left mid-push were put back", len(stranded), extra={"batch_id": batch_id}
        )


async def _fail_batch(deps: WorkerContext, batch: SyncBatch, connection: Connection | None) -> None:
    """No usable connection: nothing can be pushed, so the batch and its unfinished items fail."""
    error = SyncError(
        SyncErrorCode.CONNECTION_EXPIRED,
        "The accounting system connection is expired or missing.",
    )
    db = deps.services.db
    items = await items_in(db, batch_id=batch.id, status=ItemStatus.PENDING, limit=None)
    moves = [ItemMove(item.id, ItemStatus.FAILED, error=error) for item in items]
    await transition(db, bus=deps.services.bus, batch_id=batch.id, moves=moves, fail_batch=error)
    provider = connection.provider if connection else "none"
    ITEM_FAILURES.labels(provider, error.code).inc(len(moves))
    log.warning(
        "batch failed: no usable ledger connection",
        extra={"company_id": batch.company_id, "batch_id": batch.id, "items": len(moves)},
    )


async def requeue_unfinished(ctx: dict[str, object]) -> None:
    """arq cron: queue every unfinished batch's job. A no-op where it is queued or running; it
    finds batches whose enqueue never happened (a crash after the commit) or whose job died."""
    deps = from_ctx(ctx)
    for batch_id in await unfinished_batches(deps.services.db):
        if await enqueue_sync(deps.services.queue, batch_id=batch_id):
            log.warning("unfinished batch had no job: queued", extra={"batch_id": batch_id})
