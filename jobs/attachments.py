"""Attachments pushed after their items: one call each, paced by the gateway, retried as
items are (`jobs.retries`)."""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from jobs.context import WorkerContext
from jobs.retries import Next, Retries
from ledgers.gateway import Gateway
from ledgers.protocol import Entry, File
from models.batch import items_by_id
from models.enums import ItemStatus
from models.errors import LedgerError, SyncError, SyncErrorCode
from models.records import load_record
from models.tables import SyncAttachment, SyncBatch, SyncItem
from models.transitions import AttachmentMove, transition

log = logging.getLogger(__name__)


ITEM_FAILED = SyncError(
    SyncErrorCode.VALIDATION_ERROR,
    "Its record failed to sync: retrying the item (retryFailedItems) retries the file too.",
)


async def push_attachments(
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
