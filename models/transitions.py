"""The one place statuses change: check the move, update the rows, log the events, publish.

Every change runs in one transaction: item rows, the batch's counters (incremented in SQL)
and derived status, and one SyncEvent per transition. Only after the commit are the events
published, so a listener never hears of a change the database does not hold.

Attachments move as items do (`AttachmentMove`), in the same transactions, and log events
that name them (`attachment_id`, with their item's `item_id`).

Batch status is derived from its items and attachments, never set by callers, except
`fail_batch`:
- PENDING → PROCESSING when its first item is claimed;
- PROCESSING → COMPLETED when no item and no attachment is PENDING or PROCESSING (some may
  have FAILED);
- COMPLETED | FAILED → PROCESSING when failed items or attachments are put back to PENDING
  (a retry), or files are attached;
- PENDING | PROCESSING → FAILED only through `fail_batch`: processing itself could not run
  (the company has no usable ledger connection), and its unfinished items fail with it.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.bus import Bus
from infra.db import Database
from models.enums import TERMINAL_BATCH_STATUSES, BatchStatus, ItemStatus, RecordType, SyncOperation
from models.errors import Conflict, NotFound, SyncError
from models.events import count_events, publish
from models.idempotency import Keyed, claim
from models.operations import Applied, Operation, apply, claimable, sequenced
from models.tables import (
    ITEM_COUNTERS,
    Company,
    PushAttempt,
    Row,
    SyncAttachment,
    SyncBatch,
    SyncEvent,
    SyncItem,
    SyncRecord,
    as_loaded,
    batches_in,
    new_id,
    utcnow,
)

# For each target status, the statuses it may be reached from.
ITEM_MOVES: dict[ItemStatus, frozenset[ItemStatus]] = {
    ItemStatus.PENDING: frozenset({ItemStatus.FAILED, ItemStatus.PROCESSING}),  # PROCESSING:
    # a worker died mid-push; its batch's next job puts the item back (pushes are idempotent)
    ItemStatus.PROCESSING: frozenset({ItemStatus.PENDING}),
    ItemStatus.SUCCESS: frozenset({ItemStatus.PROCESSING}),
    ItemStatus.FAILED: frozenset({ItemStatus.PROCESSING, ItemStatus.PENDING}),
}
BATCH_MOVES: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.PROCESSING: frozenset({BatchStatus.PENDING, *TERMINAL_BATCH_STATUSES}),
    BatchStatus.COMPLETED: frozenset({BatchStatus.PROCESSING}),
    BatchStatus.FAILED: frozenset({BatchStatus.PENDING, BatchStatus.PROCESSING}),
}
_items = SyncItem.__table__  # type: ignore[attr-defined]
_batches = SyncBatch.__table__  # type: ignore[attr-defined]
_events = SyncEvent.__table__  # type: ignore[attr-defined]
_companies = Company.__table__  # type: ignore[attr-defined]
_attempts = PushAttempt.__table__  # type: ignore[attr-defined]
_attachments = SyncAttachment.__table__  # type: ignore[attr-defined]
_records = SyncRecord.__table__  # type: ignore[attr-defined]
_OPEN = (ItemStatus.PENDING, ItemStatus.PROCESSING)


@dataclass(frozen=True)
class Attempt:
    """One push, as the worker saw it; logged with the move that ends its processing."""

    started_at: datetime
    duration_ms: float
    error: SyncError | None = None  # None: it succeeded


@dataclass(frozen=True)
class ItemMove:
    item_id: str
    to: ItemStatus
    error: SyncError | None = None
    external_id: str | None = None
    attempts: Sequence[Attempt] = ()
    applied: Applied | None = None  # a SUCCESS: what its record now is in the ledger
    note: str | None = None  # what settled it without a push of its own


@dataclass(frozen=True)
class AttachmentMove:
    attachment_id: str
    to: ItemStatus
    error: SyncError | None = None
    external_id: str | None = None
    attempts: int = 0  # pushes made for the move


async def open_batch(
    db: Database,
    *,
    bus: Bus,
    company_id: str,
    record_type: RecordType,
    payloads: Sequence[dict[str, Any]] = (),  # Any: JSON documents
    operations: Sequence[Operation] = (),
    field: str = "",
    keyed: Keyed | None = None,
) -> tuple[SyncBatch, list[str]]:
    """Create a PENDING batch of PENDING items, with their `null → PENDING` events, and
    claim the request's idempotency key for it, if it has one. The items create new records
    (`payloads`), or update or void existing ones (`operations`, numbered in their records'
    orders: refused whole, naming the `field`, when one may not be).

    Returns the batch and its item ids, in the order of `payloads` or `operations`.
    """
    now = utcnow()
    count = len(payloads) + len(operations)
    batch = SyncBatch(
        company_id=company_id,
        record_type=record_type,
        item_count=count,
        pending_count=count,
        created_at=now,
        updated_at=now,
    )
    item_ids = [new_id("itm") for _ in range(count)]
    async with db.transaction() as session:
        if operations:
            accepted = await sequenced(
                session,
                company_id=company_id,
                record_type=record_type,
                operations=operations,
                field=field,
            )
            steps = [
                (op.record_id, op.operation, op.sequence, op.payload, op.force) for op in accepted
            ]
        else:
            steps = [
                (item_id, SyncOperation.CREATE, 1, payload, False)
                for item_id, payload in zip(item_ids, payloads, strict=True)
            ]
        rows = [
            {
                "id": item_id,
                "batch_id": batch.id,
                "company_id": company_id,
                "position": position,
                "record_type": record_type,
                "record_id": record_id,
                "operation": operation,
                "sequence": sequence,
                "force": force,
                "status": ItemStatus.PENDING,
                "attempts": 0,
                "payload": payload,
                "reference": payload.get("reference"),
                "created_at": now,
                "updated_at": now,
            }
            for position, (item_id, (record_id, operation, sequence, payload, force)) in enumerate(
                zip(item_ids, steps, strict=True)
            )
        ]
        events = [_event(batch, None, None, BatchStatus.PENDING)]
        events += [
            _event(batch, item_id, None, ItemStatus.PENDING, operation=step[1])
            for item_id, step in zip(item_ids, steps, strict=True)
        ]
        session.add(batch)
        await session.flush()
        if keyed is not None:
            await claim(session, company_id=company_id, keyed=keyed, batch_id=batch.id)
        if not operations:
            await session.execute(
                insert(_records),
                [
                    {
                        "id": item_id,
                        "company_id": company_id,
                        "record_type": record_type,
                        "last_sequence": 1,
                        "applied_sequence": 0,
                        "voided": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for item_id in item_ids
                ],
            )
        await session.execute(insert(_items), rows)
        logged = await _log_events(session, events)
    await publish(bus, logged)
    count_events(record_type, logged)
    return batch, item_ids


async def transition(
    db: Database,
    *,
    bus: Bus,
    batch_id: str,
    moves: Sequence[ItemMove] = (),
    attachment_moves: Sequence[AttachmentMove] = (),
    fail_batch: SyncError | None = None,
    strict: bool = True,
) -> list[SyncEvent]:
    """Apply item and attachment moves (and their batch's derived move) atomically; returns
    the logged events.

    An illegal move raises Conflict, or with `strict=False` is skipped: that is how concurrent
    workers claim items without pushing one twice.
    """
    async with db.transaction() as session:
        batch = await _locked_batch(session, batch_id)
        now = utcnow()
        applied = await _move_items(session, batch_id, moves, strict, now)
        files = await _move_attachments(session, batch_id, attachment_moves, strict, now)
        counts = await _count(session, batch_id, applied)
        targets = {move.to for move, _, _ in applied} | {move.to for move, _, _ in files}
        unfinished = counts["pending_count"] + counts["processing_count"]
        if not unfinished and batch.status is BatchStatus.PROCESSING:
            unfinished = await _open_attachments(session, batch_id)
        target = _derive(batch.status, targets, unfinished, fail_batch)
        opening: list[Row] = []
        closing: list[Row] = []
        if target is not None:
            await _move_batch(session, batch, target, fail_batch, now)
            event = _event(batch, None, batch.status, target, fail_batch)
            (closing if target in TERMINAL_BATCH_STATUSES else opening).append(event)
        item_events = [
            _event(batch, move.item_id, before, move.to, move.error, operation=operation)
            for move, before, operation in applied
        ]
        item_events += [
            _event(batch, item_id, before, move.to, move.error, move.attachment_id)
            for move, before, item_id in files
        ]
        logged = await _log_events(session, [*opening, *item_events, *closing])
    await publish(bus, logged)
    count_events(batch.record_type, logged)
    return logged


async def _locked_batch(session: AsyncSession, batch_id: str) -> SyncBatch:
    result = await session.execute(
        select(SyncBatch).where(_batches.c.id == batch_id).with_for_update()
    )
    batch = result.scalar_one_or_none()
    if batch is None:
        raise NotFound(f"batch {batch_id} not found")
    return batch


async def _move_items(
    session: AsyncSession,
    batch_id: str,
    moves: Sequence[ItemMove],
    strict: bool,
    now: datetime,
) -> list[tuple[ItemMove, ItemStatus, SyncOperation]]:
    """Apply the legal moves: each with the item's status before and its operation. A claim
    (to PROCESSING) also waits for its record's turn (`operations.claimable`): an item whose
    record has another operation in flight, or an earlier one waiting, is not claimed."""
    if not moves:
        return []
    ids = [move.item_id for move in moves]
    result = await session.execute(
        select(
            _items.c.id,
            _items.c.status,
            _items.c.attempts,
            _items.c.record_id,
            _items.c.sequence,
            _items.c.operation,
        ).where(_items.c.batch_id == batch_id, _items.c.id.in_(ids))
    )
    rows = {row["id"]: row for row in result.mappings()}
    current = {item_id: ItemStatus(row["status"]) for item_id, row in rows.items()}
    claims = [
        rows[move.item_id]
        for move in moves
        if move.to is ItemStatus.PROCESSING and current.get(move.item_id) is ItemStatus.PENDING
    ]
    turn = await claimable(session, claims) if claims else set()
    applied = []
    for move in moves:
        before = current.get(move.item_id)
        legal = before is not None and before in ITEM_MOVES[move.to]
        if not legal or (move.to is ItemStatus.PROCESSING and move.item_id not in turn):
            if strict:
                raise Conflict(
                    f"item {move.item_id} is {before or 'not in this batch'}, "
                    f"it cannot become {move.to}",
                    itemId=move.item_id,
                )
            continue
        assert before is not None
        applied.append((move, before, SyncOperation(rows[move.item_id]["operation"])))
    if applied:
        moved = [
            _moved(move.item_id, move.to, len(move.attempts), move.external_id, move.error)
            for move, _, _ in applied
        ]
        await _update_moved(session, _items, moved, now)
        noted = [{"row_id": move.item_id, "note": move.note} for move, _, _ in applied if move.note]
        if noted:
            await session.execute(
                update(_items)
                .where(_items.c.id == bindparam("row_id"))
                .values(note=bindparam("note")),
                noted,
            )
        await apply(session, [move.applied for move, _, _ in applied if move.applied], now)
    attempts = [
        {
            "item_id": move.item_id,
            "number": rows[move.item_id]["attempts"] + number,
            "started_at": attempt.started_at,
            "duration_ms": attempt.duration_ms,
            "error_code": attempt.error.code if attempt.error else None,
            "error_message": attempt.error.message if attempt.error else None,
        }
        for move, _, _ in applied
        for number, attempt in enumerate(move.attempts, start=1)
    ]
    if attempts:
        await session.execute(insert(_attempts), attempts)
    return applied


async def _move_attachments(
    session: AsyncSession,
    batch_id: str,
    moves: Sequence[AttachmentMove],
    strict: bool,
    now: datetime,
) -> list[tuple[AttachmentMove, ItemStatus, str]]:
    """As `_move_items`, for attachments: each applied move with its status before and its
    item's id."""
    if not moves:
        return []
    result = await session.execute(
        select(_attachments.c.id, _attachments.c.item_id, _attachments.c.status).where(
            _attachments.c.batch_id == batch_id,
            _attachments.c.id.in_([move.attachment_id for move in moves]),
        )
    )
    rows = {row.id: row for row in result}
    applied = []
    for move in moves:
        row = rows.get(move.attachment_id)
        before = None if row is None else ItemStatus(row.status)
        if row is None or before is None or before not in ITEM_MOVES[move.to]:
            if strict:
                raise Conflict(
                    f"attachment {move.attachment_id} is {before or 'not in this batch'}, "
                    f"it cannot become {move.to}",
                    attachmentId=move.attachment_id,
                )
            continue
        applied.append((move, before, row.item_id))
    if applied:
        moved = [
            _moved(move.attachment_id, move.to, move.attempts, move.external_id, move.error)
            for move, _, _ in applied
        ]
        await _update_moved(session, _attachments, moved, now)
    return applied


def _moved(
    row_id: str, to: ItemStatus, pushes: int, external_id: str | None, error: SyncError | None
) -> Row:
    return {
        "row_id": row_id,
        "to": to,
        "pushes": pushes,
        "external_id": external_id,
        "error_code": error.code if error else None,
        "error_message": error.message if error else None,
    }


async def _update_moved(
    session: AsyncSession, table: Table, moved: list[Row], now: datetime
) -> None:
    """Write each move (`_moved`) to its row: status, attempts added, outcome."""
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(
            status=bindparam("to"),
            attempts=table.c.attempts + bindparam("pushes"),
            external_id=bindparam("external_id"),
            error_code=bindparam("error_code"),
            error_message=bindparam("error_message"),
            updated_at=now,
        ),
        moved,
    )


async def _open_attachments(session: AsyncSession, batch_id: str) -> int:
    found = await session.scalar(
        select(func.count())
        .select_from(_attachments)
        .where(_attachments.c.batch_id == batch_id, _attachments.c.status.in_(_OPEN))
    )
    return int(found or 0)


async def add_attachments(
    db: Database, *, bus: Bus, batch_id: str, rows: Sequence[Row]
) -> list[SyncEvent]:
    """Insert PENDING attachments (`sync_attachment` values) of the batch's items, with their
    `null → PENDING` events; a finished batch reopens to push them."""
    async with db.transaction() as session:
        batch = await _locked_batch(session, batch_id)
        await session.execute(insert(_attachments), list(rows))
        opening: list[Row] = []
        if batch.status in TERMINAL_BATCH_STATUSES:
            await _move_batch(session, batch, BatchStatus.PROCESSING, None, utcnow())
            opening.append(_event(batch, None, batch.status, BatchStatus.PROCESSING))
        events = [
            _event(batch, row["item_id"], None, ItemStatus.PENDING, attachment_id=row["id"])
            for row in rows
        ]
        logged = await _log_events(session, [*opening, *events])
    await publish(bus, logged)
    count_events(batch.record_type, logged)
    return logged


async def _count(
    session: AsyncSession,
    batch_id: str,
    applied: Sequence[tuple[ItemMove, ItemStatus, SyncOperation]],
) -> dict[str, int]:
    """Increment the batch's counters in SQL and return them as they now stand."""
    deltas: Counter[str] = Counter()
    for move, before, _ in applied:
        deltas[ITEM_COUNTERS[before]] -= 1
        deltas[ITEM_COUNTERS[move.to]] += 1
    columns = list(ITEM_COUNTERS.values())
    result = await session.execute(
        update(_batches)
        .where(_batches.c.id == batch_id)
        .values({name: _batches.c[name] + deltas[name] for name in columns if deltas[name]})
        .returning(*(_batches.c[name] for name in columns))
        if any(deltas.values())
        else select(*(_batches.c[name] for name in columns)).where(_batches.c.id == batch_id)
    )
    return dict(result.mappings().one())


def _derive(
    status: BatchStatus,
    targets: set[ItemStatus],
    unfinished: int,
    fail_batch: SyncError | None,
) -> BatchStatus | None:
    reopened = status in TERMINAL_BATCH_STATUSES and ItemStatus.PENDING in targets
    started = status is BatchStatus.PENDING and ItemStatus.PROCESSING in targets
    if fail_batch is not None:
        target = BatchStatus.FAILED
    elif reopened or started:
        target = BatchStatus.PROCESSING
    elif status is BatchStatus.PROCESSING and not unfinished:
        target = BatchStatus.COMPLETED
    else:
        return None
    if status not in BATCH_MOVES[target]:
        raise Conflict(f"batch is {status}, it cannot become {target}")
    return target


async def _move_batch(
    session: AsyncSession,
    batch: SyncBatch,
    target: BatchStatus,
    error: SyncError | None,
    now: datetime,
) -> None:
    values: dict[str, Any] = {"status": target, "updated_at": now}
    if target is BatchStatus.PROCESSING:
        values |= {"completed_at": None, "error_code": None, "error_message": None}
        if batch.started_at is None:
            values["started_at"] = now
    else:
        values["completed_at"] = now
        if error is not None:
            values |= {"error_code": error.code, "error_message": error.message}
    await session.execute(update(_batches).where(_batches.c.id == batch.id).values(values))


def _event(
    batch: SyncBatch,
    item_id: str | None,
    before: str | None,
    after: str,
    error: SyncError | None = None,
    attachment_id: str | None = None,
    operation: SyncOperation | None = None,
) -> Row:
    """An event's values, numbered and stamped by `_log_events`."""
    return {
        "company_id": batch.company_id,
        "batch_id": batch.id,
        "item_id": item_id,
        "attachment_id": attachment_id,
        "operation": operation,
        "from_status": before,
        "to_status": after,
        "error_code": error.code if error else None,
        "error_message": error.message if error else None,
    }


async def _log_events(session: AsyncSession, events: list[Row]) -> list[SyncEvent]:
    """Number the events in their company's sequence, then insert them, last in the transaction.

    Taking the numbers locks the company row until the commit: a company's events are numbered,
    given ids and committed in one order, so listeners can detect a gap by number alone. They
    are stamped once the lock is held, as close to their commit as the transaction allows.
    """
    if not events:
        return []
    (company_id,) = {event["company_id"] for event in events}
    moved: Counter[str] = Counter()  # the company's batches in each status, by their moves
    for event in events:
        if event["item_id"] is None:  # a batch's own move
            moved[batches_in(BatchStatus(event["to_status"]))] += 1
            if event["from_status"] is not None:
                moved[batches_in(BatchStatus(event["from_status"]))] -= 1
    counts = {column: _companies.c[column] + delta for column, delta in moved.items() if delta}
    last = await session.scalar(
        update(_companies)
        .where(_companies.c.id == company_id)
        .values(last_event_seq=_companies.c.last_event_seq + len(events), **counts)
        .returning(_companies.c.last_event_seq)
    )
    assert last is not None
    stamp = utcnow()
    for seq, event in enumerate(events, start=last - len(events) + 1):
        event |= {"company_seq": seq, "occurred_at": stamp}
    ids = await session.execute(
        insert(_events).returning(_events.c.id, sort_by_parameter_order=True), events
    )
    return [
        as_loaded(SyncEvent, {**event, "id": event_id})
        for event, (event_id,) in zip(events, ids, strict=True)
    ]
