"""The sync job: push a batch's PENDING items to the company's ledger, in chunks of calls.

One arq job per batch, not per item: the batch's terminal event must follow all its items',
and writing transitions a chunk at a time (two transactions per chunk) is what keeps the
database from being the bottleneck. The job is idempotent: it only ever claims PENDING items
(a conditional move, so two jobs for one batch never push an item twice), each item's id is
its document's key at the ledger, and an item pushed before is looked for before it is
pushed again.

A chunk is as many calls as the ledger takes within `CHUNK_AHEAD_SECONDS` (and at once), each
carrying up to the ledger's documents per call (Xero 50, QuickBooks 30); the calls run
together, each waiting its turn in the connection's gateway, so the ledger's limits hold
across all workers (and `WORKER_MAX_PUSHES` bounds a process's calls in flight).

A job never holds its slot while its ledger's pace would keep it waiting longer than
`PACE_WAIT_SECONDS` before a chunk: it reserves the ledger's next free call and queues the
rest of its batch for just before it. arq's queue, ordered by when each job is ready, is then
the queue of batches by when their companies' ledgers can next take a call, and a company's
batches take its calls in turn. A job also stops after one slice (`JOB_SLICE_SECONDS`) for a
fast ledger: a company with a large backlog takes turns with the others instead of holding
every worker.
"""

import asyncio
import logging
import time
from collections.abc import Sequence

from arq import Retry
from opentelemetry.trace import SpanKind, StatusCode
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from infra import keys
from infra.backoff import pause
from infra.db import Database, is_outage
from infra.metrics import ITEM_FAILURES
from infra.tracing import extracted, tracer
from jobs.attachments import push_attachments
from jobs.context import WorkerContext, from_ctx, hold
from jobs.lease import Lease
from jobs.outcomes import judge, report
from jobs.pushes import OUTAGE_RETRY_SECONDS, push, settle
from jobs.steps import Call, Step, plan
from ledgers.gateway import Gateway
from models.attachments import attachments_in
from models.batch import items_in
from models.company import get_connection
from models.enums import BatchStatus, ConnectionStatus, ItemStatus
from models.errors import SyncError, SyncErrorCode
from models.tables import Connection, SyncBatch, SyncItem, utcnow
from models.transitions import AttachmentMove, Attempt, ItemMove, transition

log = logging.getLogger(__name__)

MAX_CHUNK = 500  # items claimed and settled in one transition each way
WAITING_SECONDS = 0.2  # how soon a batch whose items wait for their records' turns looks again
PACE_WAIT_SECONDS = 0.1  # the longest a job waits on its ledger's pace while holding a slot
CHUNK_AHEAD_SECONDS = 1.0  # a chunk: the calls the ledger takes within this (and at once)
OUTAGE_MAX_SECONDS = 30  # the longest pause before a job hit by an outage runs again
OUTAGE_RETRIES = 10  # then the job ends; the recovery sweep queues the batch once they answer
STRANDED = SyncError(
    SyncErrorCode.PROVIDER_ERROR, "The worker stopped mid-push: the outcome is looked up."
)


async def sync_batch(
    ctx: dict[str, object], batch_id: str, trace: dict[str, str] | None = None
) -> None:
    """arq entry point; `ctx` carries the worker's typed context, `trace` the context of the
    request that queued the job (its spans are this one's parents).

    The job works while it holds the batch's lease (`jobs.lease`); while another job holds
    it, this one waits its turn. A database or Redis outage mid-job runs the job again
    a little later, waiting longer each time, up to a cap (arq would otherwise drop it)."""
    with tracer.start_as_current_span(
        "sync batch",
        context=extracted(trace),
        kind=SpanKind.CONSUMER,
        attributes={"sync2books.batch_id": batch_id, "sync2books.job_id": str(ctx["job_id"])},
        record_exception=False,  # a Retry is how a job waits, not an error
        set_status_on_exception=False,
    ) as span:
        try:
            await _sync_batch(ctx, batch_id)
        except Retry as retry:
            span.set_attribute("sync2books.job_deferred", True)
            # Without the run's frames: arq's job task keeps the exception, which with them
            # would keep the run's items in a cycle until the collector's next full pass.
            raise retry.with_traceback(None) from retry.__cause__
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise


async def _sync_batch(ctx: dict[str, object], batch_id: str) -> None:
    deps = from_ctx(ctx)
    seconds = deps.services.settings.lease_seconds
    lease = Lease(
        deps.services.redis, batch_id=batch_id, job_id=str(ctx["job_id"]), seconds=seconds
    )
    outage: Exception | None = None
    try:
        if not await lease.take():
            raise Retry(defer=seconds / 2)  # after the job that has the batch
        hold(ctx, lease)
        async with lease.kept():
            await run_sync(deps, batch_id=batch_id)
    except (DBAPIError, RedisError, OSError) as exc:
        if not is_outage(exc):
            raise  # a bug, not weather: arq logs it; the recovery sweep queues the batch again
        outage = exc
    finally:
        if outage is None:  # the run ended well (or in a slice): the outages in a row are over
            deps.outages.pop(batch_id, None)
    if outage is not None:
        _wait_out(deps, batch_id, outage)


def _wait_out(deps: WorkerContext, batch_id: str, outage: Exception) -> None:
    """Run the job again after a pause that doubles with each outage in a row, or give up
    after `OUTAGE_RETRIES` of them."""
    outages = deps.outages[batch_id] = deps.outages.get(batch_id, 0) + 1
    if outages > OUTAGE_RETRIES:
        del deps.outages[batch_id]
        log.error("batch job gave up after %d outages: %r", OUTAGE_RETRIES, outage,
                  extra={"batch_id": batch_id})  # fmt: skip
        return
    wait = pause(outages, first=OUTAGE_RETRY_SECONDS, most=OUTAGE_MAX_SECONDS)
    log.warning("batch job interrupted: %r; it runs again in %ss", outage, wait,
                extra={"batch_id": batch_id})  # fmt: skip
    raise Retry(defer=wait) from outage


async def run_sync(deps: WorkerContext, *, batch_id: str) -> None:
    """Sync the batch, as the holder of its lease."""
    db, settings = deps.services.db, deps.services.settings
    async with db.sessions() as session:
        batch = await session.get(SyncBatch, batch_id)
        if batch is None:
            log.warning("batch vanished before its job ran", extra={"batch_id": batch_id})
            return
        connection = await get_connection(session, company_id=batch.company_id)
    if batch.status is not BatchStatus.PENDING:  # a PENDING batch has had no push to strand
        await _recover(deps, batch_id=batch_id)
    gateway = (
        None
        if connection is None
        else await Gateway.open(deps.services, deps.ledger_for, connection)
    )
    if gateway is None or gateway.connection.status is not ConnectionStatus.ACTIVE:
        await _fail_batch(deps, batch, connection)
        return
    due = await deps.services.redis.getdel(keys.reserved_slot(batch_id))
    if due is not None:  # the slot this job reserved when it queued itself
        gateway.limiter.prepaid(float(due))
    limits = gateway.limiter.limits
    slice_seconds = min(settings.job_slice_seconds, settings.job_timeout_seconds / 2)
    calls = min(limits.concurrent, gateway.limiter.calls_within(CHUNK_AHEAD_SECONDS))
    ends = time.monotonic() + slice_seconds
    while chunk := await items_in(
        db, batch_id=batch_id, status=ItemStatus.PENDING, limit=await _chunk_size(gateway, calls)
    ):
        await _within_slice(deps, gateway, batch_id, ends)
        claimed = await transition(
            db,
            bus=deps.services.bus,
            batch_id=batch_id,
            moves=[ItemMove(item.id, ItemStatus.PROCESSING) for item in chunk],
            strict=False,
        )
        mine = {event.item_id for event in claimed if event.to_status == ItemStatus.PROCESSING}
        if not mine:
            await _wait_for_turns(db, batch_id, chunk)
            continue
        items = [item for item in chunk if item.id in mine]
        steps, met = await plan(deps, gateway, items)
        per_call = limits.documents_per_call
        grouped = [
            group[n : n + per_call]
            for group in _by_call(steps)
            for n in range(0, len(group), per_call)
        ]
        calls_made = await asyncio.gather(*(push(deps, gateway, group) for group in grouped))
        moves = [*met, *(move for made in calls_made for move in made)]
        results = await settle(deps, batch_id, moves)
        report(gateway.connection.provider, batch, results)
        await judge(deps, batch, results)
        if not await gateway.usable():
            await _fail_batch(deps, batch, gateway.connection)
            return
    while files := await attachments_in(
        deps.services, batch_id=batch_id, status=ItemStatus.PENDING, limit=calls
    ):
        await _within_slice(deps, gateway, batch_id, ends)
        if not await push_attachments(deps, gateway, batch, files):
            break  # their items were put back meanwhile (a retry): the next job runs them
    log.info("batch synced", extra={"company_id": batch.company_id, "batch_id": batch_id})


async def _wait_for_turns(db: Database, batch_id: str, chunk: Sequence[SyncItem]) -> None:
    """None of the chunk could be claimed: if it all still waits, each item for an earlier
    operation of its record (in another batch), look again a little later; else another
    job took them (a lost lease's), and the loop goes on."""
    waiting = await items_in(db, batch_id=batch_id, status=ItemStatus.PENDING, limit=len(chunk))
    if [item.id for item in waiting] == [item.id for item in chunk]:
        raise Retry(defer=WAITING_SECONDS)


async def _chunk_size(gateway: Gateway, calls: int) -> int:
    """The items of the next chunk: `calls` full calls, or as many as today's calls and the
    app's this minute still allow (the others would only be refused)."""
    limiter = gateway.limiter
    room = await limiter.room()
    allowed = calls if room is None else max(1, min(calls, room))
    return min(MAX_CHUNK, allowed * limiter.limits.documents_per_call)


def _by_call(steps: Sequence[Step]) -> list[list[Step]]:
    """The steps by the call that makes them: creates, updates, voids."""
    groups: dict[Call, list[Step]] = {}
    for step in steps:
        groups.setdefault(step.call, []).append(step)
    return list(groups.values())


async def _within_slice(deps: WorkerContext, gateway: Gateway, batch_id: str, ends: float) -> None:
    """Go on while the job's slice lasts and the ledger takes a call within
    `PACE_WAIT_SECONDS` (or the job holds a slot reserved before); else give the job slot
    back and queue the rest of the batch: for the ledger's next free call, reserved for this
    job now, so that the company's batches take its calls in turn instead of all waking for
    each one."""
    limiter = gateway.limiter
    if time.monotonic() > ends:
        log.info("slice over: the rest of the batch queued", extra={"batch_id": batch_id})
        raise Retry(defer=0)  # the same job, behind the others ready now
    if limiter.has_prepaid or await limiter.backlog() <= PACE_WAIT_SECONDS:
        return
    wait = await limiter.reserve()
    seconds = deps.services.settings.lease_seconds
    due = str(time.time() + wait)
    await deps.services.redis.set(
        keys.reserved_slot(batch_id), due, px=int((wait + seconds) * 1000)
    )
    log.info("the ledger's next call for the batch is in %.1fs", wait, extra={"batch_id": batch_id})
    raise Retry(defer=max(0.0, wait - PACE_WAIT_SECONDS / 2))


async def _recover(deps: WorkerContext, *, batch_id: str) -> None:
    """Put back the items a dead job left PROCESSING, with an attempt whose outcome is
    unknown: before they are pushed again, they are looked for in the ledger. Only the
    lease's holder claims items, so whatever is PROCESSING when a job takes it is stranded."""
    db = deps.services.db
    files = await attachments_in(deps.services, batch_id=batch_id, status=ItemStatus.PROCESSING)
    if files:  # the lost push counts: the next one looks for the file on the document first
        back = [AttachmentMove(file.id, ItemStatus.PENDING, attempts=1) for file in files]
        await transition(
            db, bus=deps.services.bus, batch_id=batch_id, attachment_moves=back, strict=False
        )
    stranded = await items_in(db, batch_id=batch_id, status=ItemStatus.PROCESSING, limit=None)
    if stranded:
        lost = [Attempt(utcnow(), 0.0, STRANDED)]
        moves = [ItemMove(item.id, ItemStatus.PENDING, attempts=lost) for item in stranded]
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
    files = await attachments_in(deps.services, batch_id=batch.id, status=ItemStatus.PENDING)
    await transition(
        db,
        bus=deps.services.bus,
        batch_id=batch.id,
        moves=moves,
        attachment_moves=[AttachmentMove(file.id, ItemStatus.FAILED, error) for file in files],
        fail_batch=error,
    )
    provider = connection.provider if connection else "none"
    ITEM_FAILURES.labels(provider, error.code).inc(len(moves))
    log.warning(
        "batch failed: no usable ledger connection",
        extra={"company_id": batch.company_id, "batch_id": batch.id, "items": len(moves)},
    )
