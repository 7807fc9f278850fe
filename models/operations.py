"""A record's operations: accepted in order, claimed one at a time, and what each one that
settles does to its record.

A record is born with its create (its id is the create's item id). Each update or void
accepted for it takes the record's next `sequence`, under the record row's lock, so a
record's operations are numbered in the order they were accepted, whatever process
accepted them. A worker claims an operation only when none of the record's is in flight
and none accepted before it still waits (`claimable`): the ledger gets them in order,
one at a time, however many batches and workers carry them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from infra.db import Database
from models.enums import CONTENT_OPERATIONS, ItemStatus, RecordType, SyncOperation
from models.errors import Conflict, InvalidInput, NotFound
from models.pagination import Key, Page, PageRequest, paginate
from models.records import kind_of
from models.tables import SyncItem, SyncRecord, is_id

_items = SyncItem.__table__  # type: ignore[attr-defined]
_records = SyncRecord.__table__  # type: ignore[attr-defined]
_OPEN = (ItemStatus.PENDING, ItemStatus.PROCESSING)
HISTORY_KEYS = [Key(col(SyncItem.sequence), int)]


@dataclass(frozen=True)
class Operation:
    """An update or a void of a record, as a client asked for it (`payload`: an update's new
    content; a void carries none: it takes the record's latest)."""

    record_id: str
    operation: SyncOperation
    payload: dict[str, Any] | None = None  # Any: the record's JSON
    force: bool = False


@dataclass(frozen=True)
class Sequenced:
    """An accepted operation, numbered in its record's order, with the content it carries."""

    record_id: str
    operation: SyncOperation
    sequence: int
    payload: dict[str, Any]  # Any: the record's JSON
    force: bool


@dataclass(frozen=True)
class Applied:
    """What a settled operation leaves in the ledger for its record: the content of the
    record's operation `sequence` (item `item_id`), as document `external_id` at `version`."""

    record_id: str
    sequence: int
    item_id: str
    external_id: str | None
    version: str | None
    voided: bool = False


async def sequenced(
    session: AsyncSession,
    *,
    company_id: str,
    record_type: RecordType,
    operations: Sequence[Operation],
    field: str,
) -> list[Sequenced]:
    """Number the operations in their records' orders, or refuse them all: a record that is
    not the company's (`NotFound`), of another type (`InvalidInput`), or voided or being voided
    (`Conflict`), each naming the operation's field (`expenses.3.recordId`, `recordIds.0`).
    Takes the records' row locks until the caller's transaction ends."""
    wanted = sorted({op.record_id for op in operations if is_id(op.record_id)})
    rows = await session.execute(
        select(_records)
        .where(_records.c.id.in_(wanted), _records.c.company_id == company_id)
        .order_by(_records.c.id)
        .with_for_update()
    )
    records = {row.id: row for row in rows}
    voiding = await _voids_in_flight(session, list(records))
    latest = await _latest_content(session, list(records))
    numbered: dict[str, int] = {}
    accepted = []
    for index, op in enumerate(operations):
        where = _field(field, index)
        record = records.get(op.record_id)
        if record is None:
            raise NotFound(f"{where}: record {op.record_id} not found", field=where)
        if record.record_type != record_type:
            raise InvalidInput(
                f"{where}: record {op.record_id} is {kind_of(record.record_type)},"
                f" not {kind_of(record_type)}",
                field=where,
            )
        if record.voided or op.record_id in voiding:
            raise Conflict(
                f"{where}: record {op.record_id} is voided (or a void of it is under way):"
                " it cannot be changed any more",
                field=where,
            )
        sequence = numbered.get(op.record_id, record.last_sequence) + 1
        numbered[op.record_id] = sequence
        if op.operation is SyncOperation.VOID:
            voiding.add(op.record_id)
            payload = latest[op.record_id]
        else:
            assert op.payload is not None
            payload = latest[op.record_id] = op.payload
        accepted.append(Sequenced(op.record_id, op.operation, sequence, payload, op.force))
    if numbered:
        await session.execute(
            update(_records)
            .where(_records.c.id == bindparam("record_id"))
            .values(last_sequence=bindparam("sequence")),
            [{"record_id": rid, "sequence": seq} for rid, seq in sorted(numbered.items())],
        )
    return accepted


def _field(field: str, index: int) -> str:
    return f"{field}.{index}" if field == "recordIds" else f"{field}.{index}.recordId"


async def _voids_in_flight(session: AsyncSession, record_ids: list[str]) -> set[str]:
    """The records with a void accepted that has not failed."""
    if not record_ids:
        return set()
    rows = await session.scalars(
        select(_items.c.record_id).where(
            _items.c.record_id.in_(record_ids),
            _items.c.operation == SyncOperation.VOID,
            _items.c.status != ItemStatus.FAILED,
        )
    )
    return set(rows)


async def _latest_content(session: AsyncSession, record_ids: list[str]) -> dict[str, Any]:
    """Each record's content as its newest create or update gave it."""
    if not record_ids:
        return {}
    rows = await session.execute(
        select(_items.c.record_id, _items.c.payload)
        .where(
            _items.c.record_id.in_(record_ids),
            _items.c.operation.in_(list(CONTENT_OPERATIONS)),
        )
        .order_by(_items.c.record_id, _items.c.sequence)
    )
    return {record_id: payload for record_id, payload in rows}  # the last one wins


async def claimable(session: AsyncSession, candidates: Sequence[RowMapping]) -> set[str]:
    """Of the items about to be claimed (`id`, `record_id`, `sequence`), the ones their
    records allow: no other operation of the record in flight, none accepted before waiting.

    Only a record with more than one operation can hold one back, so only those are looked
    at: their rows are locked first, so that claims of one record (by jobs of different
    batches) take turns and each sees the other's outcome."""
    ids = sorted({row["record_id"] for row in candidates})
    shared = set(
        await session.scalars(
            select(_records.c.id)
            .where(_records.c.id.in_(ids), _records.c.last_sequence > 1)
            .order_by(_records.c.id)
            .with_for_update()
        )
    )
    allowed = {row["id"] for row in candidates if row["record_id"] not in shared}
    if not shared:
        return allowed
    open_ops = await session.execute(
        select(_items.c.id, _items.c.record_id, _items.c.status, _items.c.sequence).where(
            _items.c.record_id.in_(sorted(shared)), _items.c.status.in_(_OPEN)
        )
    )
    by_record: dict[str, list[Any]] = {}
    for op in open_ops:
        by_record.setdefault(op.record_id, []).append(op)
    for row in candidates:
        if row["record_id"] not in shared:
            continue
        ahead = [
            op
            for op in by_record.get(row["record_id"], [])
            if op.id != row["id"]
            and (op.status == ItemStatus.PROCESSING or op.sequence < row["sequence"])
        ]
        if not ahead:
            allowed.add(row["id"])
            by_record[row["record_id"]] = [
                *by_record.get(row["record_id"], []),
                _Claimed(row["id"], row["record_id"], ItemStatus.PROCESSING, row["sequence"]),
            ]
    return allowed


@dataclass(frozen=True)
class _Claimed:
    """An item claimed in this transaction: it holds its record's turn from now on."""

    id: str
    record_id: str
    status: ItemStatus
    sequence: int


async def apply(session: AsyncSession, applied: Sequence[Applied], now: datetime) -> None:
    """Record what settled operations left in the ledger. A record's operations run one at a
    time, so the newest settled is the record's state."""
    if not applied:
        return
    await session.execute(
        update(_records)
        .where(_records.c.id == bindparam("rid"))
        .values(
            applied_sequence=bindparam("sequence"),
            applied_item_id=bindparam("item_id"),
            external_id=bindparam("external_id"),
            ledger_version=bindparam("version"),
            voided=bindparam("voided"),
            updated_at=now,
        ),
        [
            {
                "rid": change.record_id,
                "sequence": change.sequence,
                "item_id": change.item_id,
                "external_id": change.external_id,
                "version": change.version,
                "voided": change.voided,
            }
            for change in applied
        ],
    )


async def records_by_id(db: Database, record_ids: Sequence[str]) -> dict[str, SyncRecord]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(SyncRecord).where(col(SyncRecord.id).in_(sorted(set(record_ids))))
        )
        return {row.id: row for row in rows}


async def pushed_records(db: Database, record_ids: Sequence[str]) -> set[str]:
    """Of the records, those with an operation pushed before: one may have written its
    document without our knowing."""
    if not record_ids:
        return set()
    async with db.sessions() as session:
        rows = await session.scalars(
            select(_items.c.record_id)
            .where(_items.c.record_id.in_(sorted(set(record_ids))), _items.c.attempts > 0)
            .distinct()
        )
        return set(rows)


async def newer_content(db: Database, items: Sequence[SyncItem]) -> dict[str, SyncItem]:
    """For each content operation claimed (by item id), the newest waiting update of its
    record that follows it with no void between: its content may go in the same call, as
    the record's one document needs only the latest."""
    content = [item for item in items if item.operation in CONTENT_OPERATIONS]
    if not content:
        return {}
    async with db.sessions() as session:
        rows = await session.scalars(
            select(SyncItem)
            .where(
                col(SyncItem.record_id).in_(sorted({item.record_id for item in content})),
                col(SyncItem.sequence) > 1,
                col(SyncItem.operation).in_([SyncOperation.UPDATE, SyncOperation.VOID]),
            )
            .order_by(col(SyncItem.record_id), col(SyncItem.sequence))
        )
        later: dict[str, list[SyncItem]] = {}
        for row in rows:
            later.setdefault(row.record_id, []).append(row)
    newer = {}
    for item in content:
        newest = None
        for op in later.get(item.record_id, []):
            if op.sequence <= item.sequence:
                continue
            if op.operation is SyncOperation.VOID:
                break
            if op.status == ItemStatus.PENDING:
                newest = op
        if newest is not None:
            newer[item.id] = newest
    return newer


async def type_of_records(
    db: Database, *, company_id: str, record_ids: Sequence[str], limit: int
) -> RecordType:
    """The type of the records named (`recordIds`): the first one's, for they must all be
    of one (`sequenced` refuses any other)."""
    if not record_ids:
        raise InvalidInput("recordIds: at least one record is required", field="recordIds")
    if len(record_ids) > limit:
        raise InvalidInput(f"recordIds: at most {limit} records per request", field="recordIds")
    first = await get_record(db, company_id=company_id, record_id=record_ids[0])
    if first is None:
        raise NotFound(f"recordIds.0: record {record_ids[0]} not found", field="recordIds.0")
    return first.record_type


async def get_record(db: Database, *, company_id: str, record_id: str) -> SyncRecord | None:
    """The record if it is this company's; another company's is as absent as a missing one."""
    if not is_id(record_id):
        return None
    async with db.sessions() as session:
        record = await session.get(SyncRecord, record_id)
    return record if record is not None and record.company_id == company_id else None


async def record_history(
    db: Database, *, company_id: str, record_id: str, page: PageRequest
) -> Page[SyncItem]:
    """The record's operations, newest first."""
    async with db.sessions() as session:
        return await paginate(
            session,
            select(SyncItem).where(
                col(SyncItem.record_id) == record_id, col(SyncItem.company_id) == company_id
            ),
            keys=HISTORY_KEYS,
            descending=True,
            request=page,
            key_of=lambda i: (i.sequence,),
        )
