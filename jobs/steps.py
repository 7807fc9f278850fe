"""What each claimed operation asks of the ledger, given its record as it stands: a create,
an update, a void, or nothing (settled at once, saying why).

- A create or update whose content the ledger already holds, or newer (a later operation
  went first, after a retry), or of a record since voided, is met: nothing is pushed.
- A create or update carries the newest content waiting for its record (consecutive waiting
  updates go as one call); it updates the record's document, or creates it if the record
  never reached the ledger (so an update is how a failed create is fixed).
- A void of a record that never reached the ledger needs no call.
- A record whose document may exist from a push whose outcome is unknown is looked for
  first: found, it is updated rather than created again. The lookup is a ledger call, retried
  as a push is (`jobs.retries`); until it answers, its items make no call: they go back to
  PENDING (a rate limit) or fail saying so (the retries spent).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from jobs.context import WorkerContext
from jobs.retries import Next, Retries
from ledgers.gateway import Gateway
from ledgers.protocol import Change, Entry, Written
from models.enums import ItemStatus, SyncOperation
from models.errors import LedgerError, SyncError, SyncErrorCode
from models.operations import Applied, newer_content, pushed_records, records_by_id
from models.records import Bill, Expense, Invoice, load_record
from models.tables import SyncItem, SyncRecord, utcnow
from models.transitions import Attempt, ItemMove


class Call(StrEnum):
    """The ledger call a step makes."""

    CREATE = "create"
    UPDATE = "update"
    VOID = "void"

    @property
    def span(self) -> str:
        """The name of its call's span, `ledger <name>` (a create's is a push, as ever)."""
        return "push" if self is Call.CREATE else self.value


@dataclass(frozen=True)
class Step:
    """One claimed item and the call it needs: `content` is the record to send, from
    `source` (the item itself, or the newest waiting update of its record)."""

    item: SyncItem
    call: Call
    content: Expense | Bill | Invoice
    source: SyncItem
    record: SyncRecord

    @property
    def key(self) -> str:
        """The call's key: a create's is its record's (a record is one document), a change's
        its item's."""
        return self.record.id if self.call is Call.CREATE else self.item.id

    def entry(self) -> Entry:
        return Entry(self.record.id, self.content)

    def change(self) -> Change:
        assert self.record.external_id is not None
        return Change(
            self.item.id,
            self.record.external_id,
            self.content,
            self.record.ledger_version,
            force=self.item.force or self.source.force,
            void=self.call is Call.VOID,
        )

    def applied(self, external_id: str, version: str | None) -> Applied:
        """What the call leaves in the ledger when it succeeds."""
        return Applied(
            self.record.id,
            max(self.source.sequence, self.record.applied_sequence),
            self.source.id,
            external_id,
            version,
            voided=self.call is Call.VOID,
        )


async def plan(
    deps: WorkerContext, gateway: Gateway, items: Sequence[SyncItem]
) -> tuple[list[Step], list[ItemMove]]:
    """The calls the items need, and the moves of those that need none."""
    db = deps.services.db
    records = await records_by_id(db, [item.record_id for item in items])
    followed = [item for item in items if records[item.record_id].last_sequence > item.sequence]
    newer = await newer_content(db, followed)
    contents: dict[str, Expense | Bill | Invoice] = {}
    moves: list[ItemMove] = []
    for item in items:
        try:
            contents[item.id] = load_record(newer.get(item.id, item).payload)
        except ValidationError as exc:
            moves.append(ItemMove(item.id, ItemStatus.FAILED, error=_unreadable(exc)))
    readable = [item for item in items if item.id in contents]
    located, unsettled = await _located(deps, gateway, records, readable, contents)
    moves += unsettled
    unsettled_ids = {move.item_id for move in unsettled}
    claimed = [item for item in readable if item.id not in unsettled_ids]
    steps: list[Step] = []
    for item in claimed:
        record = located[item.record_id]
        if (met := _met(item, record)) is not None:
            moves.append(met)
        elif _found_as_sent(item, records[item.record_id], record, newer):
            assert record.external_id is not None
            applied = Applied(
                record.id, item.sequence, item.id, record.external_id, record.ledger_version
            )
            moves.append(
                ItemMove(
                    item.id, ItemStatus.SUCCESS, external_id=record.external_id, applied=applied
                )
            )
        elif record.external_id is None:
            steps.append(
                Step(item, Call.CREATE, contents[item.id], newer.get(item.id, item), record)
            )
        else:
            call = Call.VOID if item.operation is SyncOperation.VOID else Call.UPDATE
            steps.append(Step(item, call, contents[item.id], newer.get(item.id, item), record))
    return steps, moves


def _found_as_sent(
    item: SyncItem, before: SyncRecord, after: SyncRecord, newer: dict[str, SyncItem]
) -> bool:
    """Whether the item is a create that an earlier push of its own wrote: found, as sent."""
    return (
        item.operation is SyncOperation.CREATE
        and item.id not in newer
        and before.external_id is None
        and after.external_id is not None
    )


def _met(item: SyncItem, record: SyncRecord) -> ItemMove | None:
    """The item's move when the record needs no call for it, else None."""
    if item.operation is SyncOperation.VOID:
        if record.voided:
            note = "The record was voided already: nothing was sent."
        elif record.external_id is None:
            note = "The record never reached the ledger: there was nothing to void there."
        else:
            return None
        applied = Applied(
            record.id,
            max(item.sequence, record.applied_sequence),
            item.id,
            record.external_id,
            record.ledger_version,
            voided=True,
        )
        return ItemMove(item.id, ItemStatus.SUCCESS, applied=applied, note=note)
    if record.voided:
        note = f"The record was voided (item {record.applied_item_id}): nothing was sent."
    elif item.sequence <= record.applied_sequence:
        note = (
            f"The ledger already holds this record as of a later operation"
            f" (item {record.applied_item_id}): nothing was sent."
        )
    else:
        return None
    return ItemMove(item.id, ItemStatus.SUCCESS, external_id=record.external_id, note=note)


async def _located(
    deps: WorkerContext,
    gateway: Gateway,
    records: dict[str, SyncRecord],
    items: Sequence[SyncItem],
    contents: dict[str, Expense | Bill | Invoice],
) -> tuple[dict[str, SyncRecord], list[ItemMove]]:
    """Records not known to be in the ledger, yet pushed before (an outcome unknown), are
    looked for there first: found, their operations change the document found instead of
    making another, and a void voids it. When the ledger does not answer, the moves of the
    items whose records were looked for: nothing may be sent for them meanwhile."""
    unplaced = {
        item.record_id: item
        for item in items
        if records[item.record_id].external_id is None
        and (item.attempts or records[item.record_id].last_sequence > 1)
    }  # a record's first create, never pushed, has nothing to look for
    pushed = await pushed_records(gateway.services.db, list(unplaced))
    if not pushed:
        return records, []
    entries = [Entry(record_id, contents[unplaced[record_id].id]) for record_id in sorted(pushed)]
    found = await _find(deps, gateway, entries)
    if isinstance(found, tuple):
        to, error = found
        waiting = [item for item in items if item.record_id in pushed]
        attempts = [] if to is ItemStatus.PENDING else [Attempt(utcnow(), 0.0, error)]
        moves = [
            ItemMove(item.id, to, error=error if attempts else None, attempts=attempts)
            for item in waiting
        ]
        return records, moves
    located = dict(records)
    for record_id, written in found.items():
        located[record_id] = records[record_id].model_copy(
            update={"external_id": written.external_id, "ledger_version": written.version}
        )
    return located, []


async def _find(
    deps: WorkerContext, gateway: Gateway, entries: Sequence[Entry]
) -> dict[str, Written] | tuple[ItemStatus, SyncError]:
    """The entries' documents, asked again as a failed push is; or, when the ledger will not
    say, what becomes of their items (PENDING until it allows, or FAILED) and why."""
    retries, tries = Retries(gateway, deps.services.settings), 0
    while True:
        try:
            return await gateway.find(entries)
        except LedgerError as exc:
            tries += 1
            following = await retries.after(
                exc.error, exc.retry_after, tries=tries, used=gateway.connection
            )
            if following is Next.PENDING:
                return ItemStatus.PENDING, exc.error
            if following is Next.FAILED:
                message = f"Looking for the document of an earlier push failed: {exc.error.message}"
                return ItemStatus.FAILED, SyncError(exc.error.code, message)


def _unreadable(exc: ValidationError) -> SyncError:
    problem = exc.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    message = f"The stored record is not valid ({where}: {problem['msg']}); create it again."
    return SyncError(SyncErrorCode.PROVIDER_ERROR, message)
