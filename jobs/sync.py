"""The sync job: push a batch's PENDING items to the company's ledger, in chunks of calls.

One arq job per batch, not per item: the batch's terminal event must follow all its items',
and writing transitions a chunk at a time (two transactions per chunk) is what keeps the
database from being the bottleneck. The job is idempotent: it only ever claims PENDING items
(a conditional move, so two jobs for one batch never push an item twice), each item's id is
its document's key at the ledger, and an item pushed before is looked for before it is
pushed again.

A chunk is as many calls as the ledger allows at once, each carrying up to the ledger's
documents per call (Xero 50, QuickBooks 30); the calls run together, each waiting its turn
in the connection's gateway, so the ledger's limits hold across all workers (and
`WORKER_MAX_PUSHES` bounds a process's calls in flight). A job works for one slice
(`JOB_SLICE_SECONDS`), then queues the rest of its batch behind the other jobs: a company
with a large, slow backlog takes turns with the others instead of holding every worker.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from arq import Retry
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from infra.backoff import pause
from infra.db import is_outage, refusal
from infra.metrics import ITEM_FAILURES, PUSH_ATTEMPTS, PUSH_SECONDS
from infra.queue import enqueue_sync, forget_job
from infra.tracing import extracted, tracer
from jobs.context import WorkerContext, from_ctx
from jobs.lease import Lease, held, reclaim_expired
from jobs.retries import Next, Retries, backoff
from ledgers.gateway import Gateway
from ledgers.protocol import Entry, File
from models.alerts import judge_failure_rate, record_outcomes
from models.attachments import attachments_in
from models.batch import items_by_id, items_in, unfinished_batches
from models.company import get_connection
from models.enums import ConnectionStatus, ItemStatus
from models.errors import TRANSIENT, LedgerError, SyncError, SyncErrorCode
from models.records import load_record
from models.tables import Connection, SyncAttachment, SyncBatch, SyncItem, utcnow
from models.transitions import AttachmentMove, Attempt, ItemMove, transition

log = logging.getLogger(__name__)

MAX_CHUNK = 500  # items claimed and settled in one transition each way
OUTAGE_RETRY_SECONDS = 1  # the first wait for our database or Redis; it doubles…
OUTAGE_MAX_SECONDS = 30  # …up to this
OUTAGE_RETRIES = 10  # then the job ends; the recovery sweep queues the batch once they answer
OUTAGE_WAITS = 5  # waits within one push before its job's outage handling takes over
ITEM_FAILED = SyncError(
    SyncErrorCode.VALIDATION_ERROR,
    "Its record failed to sync: retrying the item (retryFailedItems) retries the file too.",
)
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
        except Retry:
            span.set_attribute("sync2books.job_deferred", True)
            raise
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
    await _recover(deps, batch_id=batch_id)
    gateway = (
        None
        if connection is None
        else await Gateway.open(deps.services, deps.ledger_for, connection)
    )
    if gateway is None or gateway.connection.status is not ConnectionStatus.ACTIVE:
        await _fail_batch(deps, batch, connection)
        return
    limits = gateway.limiter.limits
    slice_seconds = min(settings.job_slice_seconds, settings.job_timeout_seconds / 2)
    calls = min(limits.concurrent, gateway.limiter.calls_within(slice_seconds))
    chunk_size = min(MAX_CHUNK, calls * limits.documents_per_call)
    ends = time.monotonic() + slice_seconds
    while chunk := await items_in(
        db, batch_id=batch_id, status=ItemStatus.PENDING, limit=chunk_size
    ):
        await _within_slice(gateway, batch_id, ends, slice_seconds)
        claimed = await transition(
            db,
            bus=deps.services.bus,
            batch_id=batch_id,
            moves=[ItemMove(item.id, ItemStatus.PROCESSING) for item in chunk],
            strict=False,
        )
        mine = {event.item_id for event in claimed if event.to_status == ItemStatus.PROCESSING}
        items = [item for item in chunk if item.id in mine]
        per_call = limits.documents_per_call
        calls_made = await asyncio.gather(
            *(_push(deps, gateway, items[n : n + per_call]) for n in range(0, len(items), per_call))
        )
        results = await _settle(deps, batch_id, [move for moves in calls_made for move in moves])
        _report(gateway.connection.provider, batch, results)
        await _judge(deps, batch, results)
        if not await gateway.usable():
            await _fail_batch(deps, batch, gateway.connection)
            return
    while files := await attachments_in(
        deps.services, batch_id=batch_id, status=ItemStatus.PENDING, limit=calls
    ):
        await _within_slice(gateway, batch_id, ends, slice_seconds)
        if not await _push_attachments(deps, gateway, batch, files):
            break  # their items were put back meanwhile (a retry): the next job runs them
    log.info("batch synced", extra={"company_id": batch.company_id, "batch_id": batch_id})


async def _within_slice(gateway: Gateway, batch_id: str, ends: float, slice_seconds: float) -> None:
    """Go on while the job's slice lasts and the ledger's budget allows soon; else queue the
    rest of the batch behind the other jobs."""
    backlog = await gateway.limiter.backlog()
    if time.monotonic() > ends or backlog > slice_seconds:
        log.info(
            "slice over, the rest of the batch runs in %.1fs at the earliest",
            backlog,
            extra={"batch_id": batch_id},
        )
        raise Retry(defer=backlog)  # the same job (one per batch), behind the others


async def _push_attachments(
    deps: WorkerContext, gateway: Gateway, batch: SyncBatch, pending: Sequence[SyncAttachment]
) -> bool:
    """Put each PENDING attachment of a SUCCESS item on the item's document, one call each,
    paced by the gateway. One whose item FAILED fails with it: retrying the item retries it.
    False when none could move (their items are not finished)."""
    db, bus = deps.services.db, deps.services.bus
    item_ids = list(dict.fromkeys(file.item_id for file in pending))
    items = {item.id: item for item in await items_by_id(db, batch_id=batch.id, item_ids=item_ids)}
    orphans = [
        AttachmentMove(file.id, ItemStatus.FAILED, error=ITEM_FAILED)
        for file in pending
        if items[file.item_id].status is ItemStatus.FAILED
    ]
    ready = [file for file in pending if items[file.item_id].status is ItemStatus.SUCCESS]
    if orphans:
        await transition(db, bus=bus, batch_id=batch.id, attachment_moves=orphans, strict=False)
    if not ready:
        return bool(orphans)
    claims = [AttachmentMove(file.id, ItemStatus.PROCESSING) for file in ready]
    claimed = await transition(
        db, bus=bus, batch_id=batch.id, attachment_moves=claims, strict=False
    )
    mine = {event.attachment_id for event in claimed if event.to_status == ItemStatus.PROCESSING}
    moves = await asyncio.gather(
        *(_attach(deps, gateway, items[file.item_id], file) for file in ready if file.id in mine)
    )
    await transition(db, bus=bus, batch_id=batch.id, attachment_moves=moves)
    return True


async def _attach(
    deps: WorkerContext, gateway: Gateway, item: SyncItem, attachment: SyncAttachment
) -> AttachmentMove:
    """One attachment's push, retried as an item's (`jobs.retries`). A repeated push is found
    by the ledger (the file is on the document already), so it attaches once."""
    storage = deps.services.storage
    key = storage.key(attachment.company_id, attachment.sha256)
    file = File(
        attachment.id,
        attachment.file_name,
        attachment.content_type,
        attachment.size,
        attachment.sha256,
        lambda: storage.chunks(key),
        pushed_before=attachment.attempts > 0,
    )
    entry = Entry(item.id, load_record(item.payload))
    assert item.external_id is not None  # SUCCESS items have their ledger id
    retries, tries = Retries(gateway, deps.services.settings), 0
    while True:
        tries += 1
        connection = gateway.connection
        try:
            async with gateway.turn("attach", [item.id]) as ledger, deps.pushes:
                external_id = await ledger.attach(item.external_id, entry, file)
            return AttachmentMove(attachment.id, ItemStatus.SUCCESS, None, external_id, tries)
        except LedgerError as exc:
            error, retry_after = exc.error, exc.retry_after
        except (DBAPIError, RedisError):
            raise  # our own outage: the job's outage handling runs it again
        except Exception as exc:  # an adapter's bug or an unclassified vendor failure
            log.exception("attachment push failed unexpectedly", extra={"batch_id": item.batch_id})
            message = f"The accounting system failed unexpectedly ({type(exc).__name__})."
            error, retry_after = SyncError(SyncErrorCode.PROVIDER_ERROR, message), None
        following = await retries.after(error, retry_after, tries=tries, used=connection)
        if following is Next.FAILED:
            return AttachmentMove(attachment.id, ItemStatus.FAILED, error, None, tries)
        if following is Next.PENDING:  # the job is deferred; its next push looks first
            return AttachmentMove(attachment.id, ItemStatus.PENDING, attempts=tries)
        file = replace(file, pushed_before=True)  # it may have arrived: look before adding


async def _push(deps: WorkerContext, gateway: Gateway, items: Sequence[SyncItem]) -> list[ItemMove]:
    """Push the items in one call (again, for those a transient failure left), retrying with
    backoff up to `max_push_attempts`, and return each one's move.

    Items pushed before, by an earlier job or attempt whose outcome is unknown, are first
    looked for in the ledger: the ones found succeeded. A call that fails as a whole after
    the ledger may have written (a timeout, a dropped connection, a 5xx) is repeated
    identically, with the same idempotency key, so the ledger answers what it did.

    A refused access token is refreshed once and the call made again at once. A 429's
    Retry-After holds every call to the ledger (the limiter) for that long; when it is longer
    than `retry_max_seconds` (a daily limit), the items go back to PENDING and the batch's
    job is deferred until then, holding no worker meanwhile (`jobs.retries`). An outage of
    our own Redis or database spends no attempt."""
    settings = deps.services.settings
    retries = Retries(gateway, settings)
    entries, moves = _loaded(items)
    attempts: dict[str, list[Attempt]] = {key: [] for key in entries}
    pending = [entries[item.id] for item in items if item.id in entries]
    pushed_before = {item.id for item in items if item.attempts}
    unknown = [entry for entry in pending if entry.key in pushed_before]
    outage_waits = 0
    while pending:
        retry_after: float | None = None
        connection = gateway.connection
        started_at, start = utcnow(), time.perf_counter()
        try:
            if unknown:
                found = await gateway.find(unknown)
                for key, external_id in found.items():
                    moves[key] = _moved(key, ItemStatus.SUCCESS, attempts, external_id)
                pending, unknown = [entry for entry in pending if entry.key not in found], []
                if not pending:
                    break
            keys = [entry.key for entry in pending]
            async with gateway.turn("push", keys) as ledger, deps.pushes:  # our turn, a slot
                started_at, start = utcnow(), time.perf_counter()  # the call, not the wait
                try:
                    outcomes = await ledger.push(pending)
                finally:
                    PUSH_SECONDS.labels(connection.provider).observe(time.perf_counter() - start)
        except LedgerError as exc:
            error, retry_after = exc.error, exc.retry_after
        except (DBAPIError, RedisError) as exc:  # our own database or Redis: not the ledger's
            outage_waits += 1
            if not is_outage(exc) or outage_waits > OUTAGE_WAITS:
                raise
            log.warning(
                "push interrupted by our own outage: %r; again in %ss",
                exc,
                OUTAGE_RETRY_SECONDS,
                extra={"batch_id": items[0].batch_id},
            )
            await asyncio.sleep(OUTAGE_RETRY_SECONDS)  # no attempt spent (the keys make a
            continue  # post that did happen a no-op)
        except Exception as exc:  # an adapter's bug or an unclassified vendor failure: transient
            log.exception("push failed unexpectedly", extra={"batch_id": items[0].batch_id})
            message = f"The accounting system failed unexpectedly ({type(exc).__name__})."
            error = SyncError(SyncErrorCode.PROVIDER_ERROR, message)
        else:
            took = _ms_since(start)
            again = []
            for entry, outcome in zip(pending, outcomes, strict=True):
                failure = outcome.error if isinstance(outcome, LedgerError) else None
                attempts[entry.key].append(Attempt(started_at, took, failure))
                if failure is None:
                    moves[entry.key] = _moved(entry.key, ItemStatus.SUCCESS, attempts, str(outcome))
                elif (
                    failure.code in TRANSIENT
                    and len(attempts[entry.key]) < settings.max_push_attempts
                ):
                    again.append(entry)
                else:
                    moves[entry.key] = _moved(entry.key, ItemStatus.FAILED, attempts, error=failure)
            pending = again
            if pending:
                await asyncio.sleep(backoff(len(attempts[pending[0].key]), None, settings))
            continue
        took = _ms_since(start)
        for entry in pending:
            attempts[entry.key].append(Attempt(started_at, took, error))
        tries = len(attempts[pending[0].key])
        following = await retries.after(error, retry_after, tries=tries, used=connection)
        if following is Next.PENDING:  # e.g. a daily limit: the job is deferred
            return _all(moves, pending, ItemStatus.PENDING, attempts)
        if following is Next.FAILED:
            return _all(moves, pending, ItemStatus.FAILED, attempts, error=error)
    return [moves[item.id] for item in items]


async def _settle(deps: WorkerContext, batch_id: str, moves: list[ItemMove]) -> list[ItemMove]:
    """Record the chunk's outcomes in one transition. When the database refuses it (a value it
    cannot hold), record them one by one: the item it refuses fails with PROVIDER_ERROR, and
    the rest of the chunk is recorded as it went."""
    db, bus = deps.services.db, deps.services.bus
    try:
        await transition(db, bus=bus, batch_id=batch_id, moves=moves)
        return moves
    except DBAPIError as exc:
        if is_outage(exc):
            raise
    settled = []
    for move in moves:
        try:
            await transition(db, bus=bus, batch_id=batch_id, moves=[move])
        except DBAPIError as exc:
            if is_outage(exc):
                raise
            message = f"The outcome could not be recorded ({refusal(exc)})."
            error = SyncError(SyncErrorCode.PROVIDER_ERROR, message)
            move = ItemMove(move.item_id, ItemStatus.FAILED, error=error, attempts=move.attempts)
            await transition(db, bus=bus, batch_id=batch_id, moves=[move])
        settled.append(move)
    return settled


def _loaded(items: Sequence[SyncItem]) -> tuple[dict[str, Entry], dict[str, ItemMove]]:
    """Each item's record, by item id; an item whose stored record no longer validates (a row
    written by hand, or by an older version) fails alone, before any push."""
    entries: dict[str, Entry] = {}
    moves: dict[str, ItemMove] = {}
    for item in items:
        try:
            entries[item.id] = Entry(item.id, load_record(item.payload))
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            message = (
                f"The stored record is not valid ({where}: {problem['msg']}); create it again."
            )
            error = SyncError(SyncErrorCode.PROVIDER_ERROR, message)
            moves[item.id] = ItemMove(item.id, ItemStatus.FAILED, error=error)
    return entries, moves


def _moved(
    key: str,
    to: ItemStatus,
    attempts: dict[str, list[Attempt]],
    external_id: str | None = None,
    error: SyncError | None = None,
) -> ItemMove:
    return ItemMove(key, to, error=error, external_id=external_id, attempts=attempts[key])


def _all(
    moves: dict[str, ItemMove],
    pending: Sequence[Entry],
    to: ItemStatus,
    attempts: dict[str, list[Attempt]],
    error: SyncError | None = None,
) -> list[ItemMove]:
    """Every item's move: the ones settled, and the rest moved `to`."""
    rest = {e.key: _moved(e.key, to, attempts, error=error) for e in pending}
    return list({**moves, **rest}.values())


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


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


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


async def requeue_unfinished(ctx: dict[str, object]) -> None:
    """arq cron: queue every unfinished batch no job holds. A no-op where its job is queued;
    it finds batches whose enqueue never happened (a crash after the commit)."""
    deps = from_ctx(ctx)
    unfinished = await unfinished_batches(deps.services.db)
    holding = await held(deps.services.redis, unfinished)
    for batch_id in unfinished:
        if batch_id not in holding and await enqueue_sync(deps.services.queue, batch_id=batch_id):
            log.warning("unfinished batch had no job: queued", extra={"batch_id": batch_id})


async def reclaim_batches(ctx: dict[str, object]) -> None:
    """arq cron, one worker every `SWEEP_SECONDS`: a batch whose job stopped renewing its lease
    (a worker killed, a machine gone) gets a new job at once, with an id of its own."""
    deps = from_ctx(ctx)
    queue = deps.services.queue
    for lapsed in await reclaim_expired(deps.services.redis):
        await forget_job(queue, lapsed.job_id)
        await enqueue_sync(queue, batch_id=lapsed.batch_id, fresh=True)
        log.warning(
            "batch's job %s died: a new job took over",
            lapsed.job_id,
            extra={"batch_id": lapsed.batch_id},
        )
