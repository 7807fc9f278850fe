"""The sync job: push a batch's PENDING items to the company's ledger, in chunks.

One arq job per batch, not per item: the batch's terminal event must follow all its items',
and writing transitions a chunk at a time (two transactions per 50 items) is what keeps the
database from being the bottleneck. The job is idempotent: it only ever claims PENDING items
(a conditional move, so two jobs for one batch never push an item twice), and each push
carries the item's id as idempotency key.
"""

import logging

from jobs.context import WorkerContext, from_ctx
from models.batch import pending_items
from models.company import get_connection
from models.enums import ConnectionStatus, ItemStatus
from models.errors import LedgerError, SyncError, SyncErrorCode
from models.ledger import Ledger
from models.records import load_record
from models.tables import SyncBatch, SyncItem
from models.transitions import ItemMove, transition

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
        results = [await _push(ledger, item) for item in chunk if item.id in mine]
        await transition(db, bus=deps.services.bus, batch_id=batch_id, moves=results)
    log.info("batch %s synced", batch_id)


async def _push(ledger: Ledger, item: SyncItem) -> ItemMove:
    try:
        external_id = await ledger.push(load_record(item.payload), idempotency_key=item.id)
    except LedgerError as exc:
        return ItemMove(item.id, ItemStatus.FAILED, error=exc.error)
    except Exception as exc:  # an adapter's bug or an unclassified vendor failure: retryable
        log.exception("push of item %s failed unexpectedly", item.id)
        message = f"The accounting system failed unexpectedly ({type(exc).__name__})."
        return ItemMove(
            item.id, ItemStatus.FAILED, error=SyncError(SyncErrorCode.PROVIDER_ERROR, message)
        )
    return ItemMove(item.id, ItemStatus.SUCCESS, external_id=external_id)


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
