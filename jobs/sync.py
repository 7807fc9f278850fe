"""The sync job: push a batch's PENDING items to the company's ledger, in chunks.

One arq job per batch, not per item: the batch's terminal event must follow all its items',
and writing transitions a chunk at a time (two transactions per 50 items) is what keeps the
database from being the bottleneck. The job is idempotent: it only ever claims PENDING items
(a conditional move, so two jobs for one batch never push an item twice), and each push
carries the item's id as idempotency key.
"""

import asyncio
import logging
import random
import time

from jobs.context import WorkerContext, from_ctx
from models.batch import pending_items
from models.company import get_connection
from models.enums import ConnectionStatus, ItemStatus
from models.errors import TRANSIENT, LedgerError, SyncError, SyncErrorCode
from models.ledger import Ledger
from models.records import load_record
from models.settings import Settings
from models.tables import SyncBatch, SyncItem, utcnow
from models.transitions import Attempt, ItemMove, transition

log = logging.getLogger(__name__)

CHUNK_SIZE = 50


async def sync_batch(ctx: dict[str, object], batch_id: str) -> None:
    """arq entry point; `ctx` carries the worker's typed context."""
    await run_sync(from_ctx(ctx), batch_id=batch_id)


async def run_sync(deps: WorkerContext, *, batch_id: str) -> None:
    db = deps.services.db
    async with db.sessions() as session:
        batch = await session.get(SyncBatch, batch_id)
        if batch is None:
            log.warning("batch %s vanished before its job ran", batch_id)
            return
        connection = await get_connection(session, company_id=batch.company_id)
    if connection is None or connection.status != ConnectionStatus.ACTIVE:
        await _fail_batch(deps, batch_id=batch_id)
        return
    ledger = deps.ledger_for(connection)
    while chunk := await pending_items(db, batch_id=batch_id, limit=CHUNK_SIZE):
        claimed = await transition(
            db,
            bus=deps.services.bus,
            batch_id=batch_id,
            moves=[ItemMove(item.id, ItemStatus.PROCESSING) for item in chunk],
            strict=False,
        )
        mine = {event.item_id for event in claimed if event.to_status == ItemStatus.PROCESSING}
        results = [await _push(deps, ledger, item) for item in chunk if item.id in mine]
        await transition(db, bus=deps.services.bus, batch_id=batch_id, moves=results)
    log.info("batch %s synced", batch_id)


async def _push(deps: WorkerContext, ledger: Ledger, item: SyncItem) -> ItemMove:
    """Push the item, retrying transient failures with backoff, up to `max_push_attempts`."""
    settings = deps.services.settings
    record = load_record(item.payload)
    attempts: list[Attempt] = []
    while True:
        started_at, start = utcnow(), time.perf_counter()
        retry_after: float | None = None
        try:
            external_id = await ledger.push(record, idempotency_key=item.id)
        except LedgerError as exc:
            error, retry_after = exc.error, exc.retry_after
        except Exception as exc:  # an adapter's bug or an unclassified vendor failure: transient
            log.exception("push of item %s failed unexpectedly", item.id)
            message = f"The accounting system failed unexpectedly ({type(exc).__name__})."
            error = SyncError(SyncErrorCode.PROVIDER_ERROR, message)
        else:
            attempts.append(Attempt(started_at, _ms_since(start)))
            return ItemMove(item.id, ItemStatus.SUCCESS, external_id=external_id, attempts=attempts)
        attempts.append(Attempt(started_at, _ms_since(start), error))
        if error.code not in TRANSIENT or len(attempts) >= settings.max_push_attempts:
            return ItemMove(item.id, ItemStatus.FAILED, error=error, attempts=attempts)
        await asyncio.sleep(backoff(len(attempts), retry_after, settings))


def backoff(failures: int, retry_after: float | None, settings: Settings) -> float:
    """Exponential backoff with full jitter, never sooner than the ledger's Retry-After."""
    ceiling = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (failures - 1))
    return max(random.uniform(0, ceiling), retry_after or 0.0)


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


async def _fail_batch(deps: WorkerContext, *, batch_id: str) -> None:
    """No usable connection: nothing can be pushed, so the batch and its unfinished items fail."""
    error = SyncError(
        SyncErrorCode.CONNECTION_EXPIRED,
        "The accounting system connection is expired or missing.",
    )
    db = deps.services.db
    items = await pending_items(db, batch_id=batch_id, limit=None)
    await transition(
        db,
        bus=deps.services.bus,
        batch_id=batch_id,
        moves=[ItemMove(item.id, ItemStatus.FAILED, error=error) for item in items],
        fail_batch=error,
    )
    log.info("batch %s failed: no usable ledger connection", batch_id)
