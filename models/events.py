"""Status events on Redis pub/sub: one channel per company, one message per transition (a
list of small JSON payloads, one per event).

The SyncEvent table is the truth; a published event is only the wake-up for live listeners,
so a failed publish is logged and never fails the transition that committed it.
"""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from infra import keys
from infra.bus import Bus
from infra.db import Database
from infra.metrics import ATTACHMENTS, BATCHES, ITEMS
from models.errors import HINTS, RETRYABLE, SyncErrorCode
from models.tables import Company, SyncEvent, as_loaded


def event_payload(event: SyncEvent) -> dict[str, Any]:  # Any: JSON values
    error = None
    if event.error_code is not None:
        code = SyncErrorCode(event.error_code)
        error = {
            "code": code.value,
            "message": event.error_message,
            "hint": HINTS[code],
            "retryable": code in RETRYABLE,
        }
    return {
        "eventId": str(event.id),
        "seq": event.company_seq,
        "companyId": event.company_id,
        "batchId": event.batch_id,
        "itemId": event.item_id,
        "attachmentId": event.attachment_id,
        "operation": event.operation,
        "fromStatus": event.from_status,
        "toStatus": event.to_status,
        "occurredAt": event.occurred_at.isoformat(),
        "error": error,
    }


async def publish(bus: Bus, events: Sequence[SyncEvent]) -> None:
    """Announce one transition's events (all of one company) in one message, not one per
    event, which cost a 1,000-item transition a thousand messages to send and every API
    process a thousand to read."""
    if not events:
        return
    (company_id,) = {event.company_id for event in events}
    message = json.dumps([event_payload(event) for event in events])
    await bus.publish(keys.events_channel(company_id), message)


def event_from_payload(payload: dict[str, Any]) -> SyncEvent:  # Any: JSON values
    """The event a published payload describes (the inverse of `event_payload`): as a row
    loaded from the log, since an API process turns every event it hears into one."""
    error = payload["error"] or {}
    return as_loaded(
        SyncEvent,
        {
            "id": int(payload["eventId"]),
            "company_seq": payload["seq"],
            "company_id": payload["companyId"],
            "batch_id": payload["batchId"],
            "item_id": payload["itemId"],
            "attachment_id": payload["attachmentId"],
            "operation": payload.get("operation"),
            "from_status": payload["fromStatus"],
            "to_status": payload["toStatus"],
            "error_code": error.get("code"),
            "error_message": error.get("message"),
            "occurred_at": datetime.fromisoformat(payload["occurredAt"]),
        },
    )


async def company_events(
    db: Database,
    *,
    company_id: str,
    after_seq: int,
    upto_seq: int,
    limit: int,
    batch_id: str | None = None,
) -> list[SyncEvent]:
    """The company's events numbered in (`after_seq`, `upto_seq`], in order, at most `limit`."""
    conditions = [
        col(SyncEvent.company_id) == company_id,
        col(SyncEvent.company_seq) > after_seq,
        col(SyncEvent.company_seq) <= upto_seq,
    ]
    if batch_id is not None:
        conditions.append(col(SyncEvent.batch_id) == batch_id)
    async with db.sessions() as session:
        rows = await session.scalars(
            select(SyncEvent).where(*conditions).order_by(col(SyncEvent.company_seq)).limit(limit)
        )
        return list(rows)


async def last_event_seqs(db: Database, *, company_ids: Sequence[str]) -> dict[str, int]:
    """Each company's newest event number: everything up to it is committed."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(col(Company.id), col(Company.last_event_seq)).where(
                col(Company.id).in_(company_ids)
            )
        )
        return {company_id: seq for company_id, seq in rows}


async def last_batch_event(db: Database, *, batch_id: str) -> SyncEvent | None:
    """The batch's own newest transition (not its items')."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(SyncEvent)
            .where(col(SyncEvent.batch_id) == batch_id, col(SyncEvent.item_id).is_(None))
            .order_by(col(SyncEvent.id).desc())
            .limit(1)
        )
        return rows.first()


async def last_event_id(db: Database, *, company_id: str) -> int | None:
    """The id of the company's newest event: in the log, or else the newest that retention
    removed (following after it misses nothing); None if it never had one."""
    async with db.sessions() as session:
        newest = await session.scalar(
            select(col(SyncEvent.id))
            .where(col(SyncEvent.company_id) == company_id)
            .order_by(col(SyncEvent.company_seq).desc())
            .limit(1)
        )
        if newest is not None:
            return newest
        return await session.scalar(
            select(col(Company.events_expired_through)).where(col(Company.id) == company_id)
        )


def count_events(record_type: str, events: Sequence[SyncEvent]) -> None:
    """Count the committed transitions: a batch's (no item id), its items' or their
    attachments'."""
    for event in events:
        if event.attachment_id is not None:
            counter = ATTACHMENTS
        else:
            counter = BATCHES if event.item_id is None else ITEMS
        counter.labels(record_type, event.to_status).inc()
