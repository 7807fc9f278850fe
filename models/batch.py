"""Sync batches and their items: create, read (company-scoped, keyset-paginated), retry."""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from infra.bus import Bus
from infra.db import Database
from models.enums import BatchStatus, ItemStatus, RecordType
from models.errors import Conflict, InvalidInput, NotFound
from models.idempotency import FIELD, first_batch, keyed
from models.operations import Operation
from models.pagination import Key, Page, PageRequest, end_pages, paginate
from models.records import Bill, Expense, Invoice, dump_record
from models.tables import (
    ITEM_COUNTERS,
    Company,
    SyncAttachment,
    SyncBatch,
    SyncItem,
    batches_in,
    is_id,
)
from models.transitions import AttachmentMove, ItemMove, open_batch, transition

BATCH_KEYS = [
    Key(col(SyncBatch.created_at), datetime.fromisoformat),
    Key(col(SyncBatch.id), str),
]
ITEM_KEYS = [Key(col(SyncItem.position), int)]
_NO_ITEMS: Page[SyncItem] = Page(rows=[], has_next=False, has_previous=False, total=0)


@dataclass(frozen=True)
class BatchFilter:
    status: BatchStatus | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class Changes:
    """Updates or voids of existing records, for a batch of its own; `field` is where the
    request named them, for errors (`expenses`, `recordIds`)."""

    operations: Sequence[Operation]
    field: str


async def create_batch(
    db: Database,
    *,
    bus: Bus,
    company_id: str,
    record_type: RecordType,
    records: Sequence[Expense | Bill | Invoice] = (),
    changes: Changes | None = None,
) -> tuple[SyncBatch, list[str]]:
    """Queue validated records as one PENDING batch (and its item ids, in record order):
    new records, or `changes` to existing ones.

    The caller enqueues the batch's job after this has committed.
    """
    return await open_batch(
        db,
        bus=bus,
        company_id=company_id,
        record_type=record_type,
        payloads=[dump_record(record) for record in records],
        operations=changes.operations if changes else (),
        field=changes.field if changes else "",
    )


@dataclass(frozen=True)
class Created:
    batch: SyncBatch
    item_ids: list[str]
    replayed: bool  # the key's first request created it: nothing new to queue


async def create_batch_once(
    db: Database,
    *,
    bus: Bus,
    company_id: str,
    record_type: RecordType,
    records: Sequence[Expense | Bill | Invoice] = (),
    changes: Changes | None = None,
    key: str,
) -> Created:
    """`create_batch` under an idempotency key: the first request with the key creates the
    batch, the same request again within 24 h gets that batch (`Conflict` for other records).
    """
    payloads = [dump_record(record) for record in records]
    request = keyed(
        key, record_type, payloads if changes is None else [asdict(op) for op in changes.operations]
    )
    for _ in range(3):
        if batch_id := await first_batch(db, company_id=company_id, keyed=request):
            return Created(*await _batch_with_item_ids(db, batch_id), replayed=True)
        try:
            batch, item_ids = await open_batch(
                db,
                bus=bus,
                company_id=company_id,
                record_type=record_type,
                payloads=payloads,
                operations=changes.operations if changes else (),
                field=changes.field if changes else "",
                keyed=request,
            )
        except IntegrityError:  # a request with the key committed first: its batch answers
            continue
        return Created(batch, item_ids, replayed=False)
    raise Conflict(f"{FIELD}: a request with this key is still being created; send it again")


async def _batch_with_item_ids(db: Database, batch_id: str) -> tuple[SyncBatch, list[str]]:
    async with db.sessions() as session:
        batch = await session.get(SyncBatch, batch_id)
        ids = await session.scalars(
            select(col(SyncItem.id))
            .where(col(SyncItem.batch_id) == batch_id)
            .order_by(col(SyncItem.position))
        )
        assert batch is not None
        return batch, list(ids)


async def get_batch(db: Database, *, company_id: str, batch_id: str) -> SyncBatch | None:
    """The batch if it is this company's; another company's batch is as absent as a missing one."""
    if not is_id(batch_id):
        return None
    async with db.sessions() as session:
        batch = await session.get(SyncBatch, batch_id)
    return batch if batch is not None and batch.company_id == company_id else None


async def list_batches(
    db: Database, *, company_id: str, where: BatchFilter, page: PageRequest
) -> Page[SyncBatch]:
    if where.start and where.end and where.start > where.end:
        raise InvalidInput("startDate: must not be after endDate", field="startDate")
    conditions: list[ColumnElement[bool]] = [col(SyncBatch.company_id) == company_id]
    if where.status is not None:
        conditions.append(col(SyncBatch.status) == where.status)
    if where.start is not None:
        conditions.append(col(SyncBatch.created_at) >= where.start)
    if where.end is not None:
        conditions.append(col(SyncBatch.created_at) <= where.end)
    async with db.sessions() as session:
        dated = where.start is not None or where.end is not None
        return await paginate(
            session,
            select(SyncBatch).where(*conditions),
            keys=BATCH_KEYS,
            descending=True,
            request=page,
            key_of=lambda b: (b.created_at, b.id),
            total=None if dated else await _batch_total(session, company_id, where.status),
        )


async def _batch_total(session: AsyncSession, company_id: str, status: BatchStatus | None) -> int:
    """The company's batches (in `status`), from its counts: one row, not 100,000 counted."""
    statuses = list(BatchStatus) if status is None else [status]
    columns = [getattr(Company, batches_in(s)) for s in statuses]
    total = await session.scalar(
        select(sum(columns[1:], start=columns[0])).where(col(Company.id) == company_id)
    )
    return total or 0


async def list_items(
    db: Database,
    *,
    company_id: str,
    batch_id: str,
    status: ItemStatus | None,
    page: PageRequest,
) -> Page[SyncItem]:
    """Items in the order they were given; a batch that is not this company's has none. The
    total is the batch's own count of its items (in `status`), kept with every move."""
    if not is_id(batch_id):
        return _NO_ITEMS
    conditions = [col(SyncItem.batch_id) == batch_id, col(SyncItem.company_id) == company_id]
    if status is not None:
        conditions.append(col(SyncItem.status) == status)
    async with db.sessions() as session:
        batch = await session.get(SyncBatch, batch_id)
        if batch is None or batch.company_id != company_id:
            return _NO_ITEMS
        return await paginate(
            session,
            select(SyncItem).where(*conditions),
            keys=ITEM_KEYS,
            descending=False,
            request=page,
            key_of=lambda i: (i.position,),
            total=batch.item_count if status is None else getattr(batch, ITEM_COUNTERS[status]),
        )


SEARCH_KEYS = [Key(col(SyncItem.created_at), datetime.fromisoformat), Key(col(SyncItem.id), str)]
MAX_REFERENCE = 255


async def search_items(
    db: Database, *, company_id: str, reference: str, page: PageRequest
) -> Page[SyncItem]:
    """The company's items with this reference (the client's own, exactly), newest first,
    whatever their batch: how an owner finds a record they know by its number."""
    if not reference or len(reference) > MAX_REFERENCE:
        raise InvalidInput(f"reference: 1 to {MAX_REFERENCE} characters", field="reference")
    query = select(SyncItem).where(
        col(SyncItem.company_id) == company_id, col(SyncItem.reference) == reference
    )
    async with db.sessions() as session:
        return await paginate(
            session,
            query,
            keys=SEARCH_KEYS,
            descending=True,
            request=page,
            key_of=lambda i: (i.created_at, i.id),
        )


async def item_pages(
    db: Database,
    *,
    company_id: str,
    batch_ids: Sequence[str],
    status: ItemStatus | None,
    page: PageRequest,
) -> list[Page[SyncItem]]:
    """The same page (first or last N, no cursor) of each batch's items, in one query; a
    batch that is not this company's has none."""
    ids = [batch_id for batch_id in batch_ids if is_id(batch_id)]
    conditions = [col(SyncItem.company_id) == company_id]
    if status is not None:
        conditions.append(col(SyncItem.status) == status)
    async with db.sessions() as session:
        pages = await end_pages(
            session,
            SyncItem,
            where=conditions,
            group="batch_id",
            groups=ids,
            keys=ITEM_KEYS,
            descending=False,
            request=page,
            key_of=lambda i: (i.position,),
        )
    found = dict(zip(ids, pages, strict=True))
    return [found.get(batch_id) or _NO_ITEMS for batch_id in batch_ids]


async def items_by_id(db: Database, *, batch_id: str, item_ids: Sequence[str]) -> list[SyncItem]:
    item_ids = [item_id for item_id in item_ids if is_id(item_id)]
    async with db.sessions() as session:
        result = await session.execute(
            select(SyncItem)
            .where(col(SyncItem.batch_id) == batch_id, col(SyncItem.id).in_(item_ids))
            .order_by(col(SyncItem.position))
        )
        return list(result.scalars())


async def unfinished_batches(db: Database) -> list[str]:
    """Every batch still PENDING or PROCESSING, oldest first."""
    unfinished = [BatchStatus.PENDING, BatchStatus.PROCESSING]
    async with db.sessions() as session:
        rows = await session.scalars(
            select(col(SyncBatch.id))
            .where(col(SyncBatch.status).in_(unfinished))
            .order_by(col(SyncBatch.created_at))
        )
        return list(rows)


async def documents_ahead(db: Database, *, company_id: str) -> dict[str, int]:
    """For each of the company's unfinished batches, the items still to push in it and in the
    ones queued before it: what its connection must take before the batch is done."""
    unfinished = [BatchStatus.PENDING, BatchStatus.PROCESSING]
    async with db.sessions() as session:
        rows = await session.execute(
            select(
                col(SyncBatch.id), col(SyncBatch.pending_count) + col(SyncBatch.processing_count)
            )
            .where(col(SyncBatch.company_id) == company_id, col(SyncBatch.status).in_(unfinished))
            .order_by(col(SyncBatch.created_at), col(SyncBatch.id))
        )
    ahead, total = {}, 0
    for batch_id, left in rows:
        total += left
        ahead[batch_id] = total
    return ahead


def progress_completion(batch: SyncBatch, now: datetime) -> datetime | None:
    """When the batch ends at the pace it has gone so far (None before its first outcome)."""
    done = batch.success_count + batch.failed_count
    if batch.started_at is None or done == 0:
        return None
    return batch.started_at + (now - batch.started_at) * batch.item_count / done


async def items_in(
    db: Database,
    *,
    batch_id: str,
    status: ItemStatus,
    limit: int | None,
) -> list[SyncItem]:
    """The batch's items in `status`, in batch order."""
    conditions = [col(SyncItem.batch_id) == batch_id, col(SyncItem.status) == status]
    async with db.sessions() as session:
        result = await session.execute(
            select(SyncItem).where(*conditions).order_by(col(SyncItem.position)).limit(limit)
        )
        return list(result.scalars())


async def retry_failed_items(
    db: Database,
    *,
    bus: Bus,
    company_id: str,
    batch_id: str,
    item_ids: Sequence[str] | None,
) -> list[SyncItem]:
    """Put failed items, and the failed attachments of items, back to PENDING: those named,
    or all when none are; returns the items retried.

    A named item that is neither FAILED nor holds a FAILED attachment is an error; in "retry
    all" mode an item another caller retried meanwhile is simply not retried twice. The
    caller enqueues the batch's job.
    """
    if await get_batch(db, company_id=company_id, batch_id=batch_id) is None:
        raise NotFound(f"batch {batch_id} not found")
    named = list(dict.fromkeys(item_ids)) if item_ids else None
    files = await _failed_attachments(db, batch_id=batch_id, item_ids=named)
    if named:
        found = await _check_retryable(
            db, batch_id=batch_id, item_ids=item_ids or [], with_failed_files=set(files.values())
        )
        ids = [item_id for item_id in named if found[item_id].status == ItemStatus.FAILED]
    else:
        ids = await _failed_item_ids(db, batch_id=batch_id)
    if not ids and not files:
        return []
    events = await transition(
        db,
        bus=bus,
        batch_id=batch_id,
        moves=[ItemMove(item_id, ItemStatus.PENDING) for item_id in ids],
        attachment_moves=[AttachmentMove(file_id, ItemStatus.PENDING) for file_id in files],
        strict=bool(item_ids),
    )
    moved = list(dict.fromkeys(event.item_id for event in events if event.item_id is not None))
    return await items_by_id(db, batch_id=batch_id, item_ids=moved)


async def _check_retryable(
    db: Database, *, batch_id: str, item_ids: Sequence[str], with_failed_files: set[str]
) -> dict[str, SyncItem]:
    found = {item.id: item for item in await items_by_id(db, batch_id=batch_id, item_ids=item_ids)}
    for index, item_id in enumerate(item_ids):
        item = found.get(item_id)
        field = f"itemIds.{index}"
        if item is None:
            raise NotFound(f"{field}: item {item_id} not found in this batch", field=field)
        if item.status != ItemStatus.FAILED and item.id not in with_failed_files:
            raise Conflict(
                f"{field}: item {item_id} is {item.status} and has no FAILED attachment;"
                " only FAILED items and attachments can be retried",
                field=field,
            )
    return found


async def _failed_attachments(
    db: Database, *, batch_id: str, item_ids: Sequence[str] | None
) -> dict[str, str]:
    """The batch's FAILED attachments (of the items named, if any): each one's item id."""
    conditions = [
        col(SyncAttachment.batch_id) == batch_id,
        col(SyncAttachment.status) == ItemStatus.FAILED,
    ]
    if item_ids is not None:
        conditions.append(col(SyncAttachment.item_id).in_(item_ids))
    async with db.sessions() as session:
        result = await session.execute(
            select(col(SyncAttachment.id), col(SyncAttachment.item_id)).where(*conditions)
        )
        return {file_id: item_id for file_id, item_id in result}


async def _failed_item_ids(db: Database, *, batch_id: str) -> list[str]:
    async with db.sessions() as session:
        result = await session.execute(
            select(col(SyncItem.id))
            .where(col(SyncItem.batch_id) == batch_id, col(SyncItem.status) == ItemStatus.FAILED)
            .order_by(col(SyncItem.position))
        )
        return list(result.scalars())
