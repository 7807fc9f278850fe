"""Webhook endpoints and their deliveries: what is owed to whom, and every attempt made.

Deliveries come from the event log, as the live stream does: each endpoint keeps its place
in its company's numbered events (`event_seq`) and `dispatch` turns the events after it into
deliveries, moving the place in the same transaction (a conditional update, so two workers
never make the same deliveries). Nothing committed is missed, whatever crashes. Alerts make
their deliveries in the transaction that raises or clears them.
"""

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from infra.db import Database
from infra.vault import Vault
from models.enums import BatchStatus, DeliveryStatus, ItemStatus, WebhookEventType
from models.errors import InvalidInput, NotFound
from models.events import company_events, event_payload
from models.pagination import Key, Page, PageRequest, paginate
from models.tables import (
    Company,
    SyncBatch,
    SyncEvent,
    SyncItem,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    is_id,
    new_id,
    utcnow,
)

DISPATCH_PAGE = 500
_deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
_endpoints = WebhookEndpoint.__table__  # type: ignore[attr-defined]
DELIVERY_KEYS = (
    Key(col(WebhookDelivery.created_at), datetime.fromisoformat),
    Key(col(WebhookDelivery.id), str),
)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(url) > 2048:
        raise InvalidInput("url: an absolute http(s) URL of at most 2,048 characters", field="url")
    return url


def check_description(description: str | None) -> str | None:
    if description is not None and len(description) > 255:
        raise InvalidInput("description: at most 255 characters", field="description")
    return description


def check_event_types(event_types: Sequence[WebhookEventType]) -> list[str]:
    if not event_types:
        raise InvalidInput("eventTypes: choose at least one", field="eventTypes")
    return sorted({str(event_type) for event_type in event_types})


async def create_endpoint(
    db: Database,
    vault: Vault,
    *,
    company_id: str,
    url: str,
    event_types: Sequence[WebhookEventType],
    description: str | None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (shown this once). It receives what happens from
    now on: its place in the log is the log's end, read under the lock that numbers events."""
    secret = new_secret()
    async with db.transaction() as session:
        company = await session.scalar(
            select(Company).where(col(Company.id) == company_id).with_for_update()
        )
        assert company is not None
        endpoint = WebhookEndpoint(
            company_id=company_id,
            url=check_url(url),
            event_types=check_event_types(event_types),
            description=check_description(description),
            sealed_secret=vault.seal(secret),
            event_seq=company.last_event_seq,
        )
        session.add(endpoint)
    return endpoint, secret


async def get_endpoint(db: Database, *, company_id: str, endpoint_id: str) -> WebhookEndpoint:
    async with db.sessions() as session:
        return await _owned_endpoint(session, company_id, endpoint_id)


async def _owned_endpoint(
    session: AsyncSession, company_id: str, endpoint_id: str, *, lock: bool = False
) -> WebhookEndpoint:
    """The company's endpoint; another company's, or none, is not found."""
    endpoint = (
        await session.get(WebhookEndpoint, endpoint_id, with_for_update=lock)
        if is_id(endpoint_id)
        else None
    )
    if endpoint is None or endpoint.company_id != company_id:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return endpoint


async def list_endpoints(db: Database, *, company_id: str) -> list[WebhookEndpoint]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(WebhookEndpoint)
            .where(col(WebhookEndpoint.company_id) == company_id)
            .order_by(col(WebhookEndpoint.created_at))
        )
        return list(rows)


@dataclass(frozen=True)
class EndpointChange:
    url: str | None = None
    event_types: Sequence[WebhookEventType] | None = None
    description: str | None = None
    enabled: bool | None = None


async def update_endpoint(
    db: Database, *, company_id: str, endpoint_id: str, change: EndpointChange
) -> WebhookEndpoint:
    """Change an endpoint. Enabling a disabled one starts it afresh: from the log's end, with
    no failure streak (what happened while it was disabled is not sent)."""
    async with db.transaction() as session:
        company = await session.scalar(
            select(Company).where(col(Company.id) == company_id).with_for_update()
        )
        endpoint = await _owned_endpoint(session, company_id, endpoint_id, lock=True)
        assert company is not None
        if change.url is not None:
            endpoint.url = check_url(change.url)
        if change.event_types is not None:
            endpoint.event_types = check_event_types(change.event_types)
        if change.description is not None:
            endpoint.description = check_description(change.description)
        if change.enabled is True and not endpoint.enabled:
            endpoint.enabled, endpoint.disabled_reason = True, None
            endpoint.event_seq, endpoint.failing_since = company.last_event_seq, None
        elif change.enabled is False:
            endpoint.enabled, endpoint.disabled_reason = False, "Disabled by the company."
        endpoint.updated_at = utcnow()
        session.add(endpoint)
    return endpoint


async def delete_endpoint(db: Database, *, company_id: str, endpoint_id: str) -> None:
    """The endpoint, its deliveries and their attempts."""
    deliveries = select(_deliveries.c.id).where(_deliveries.c.endpoint_id == endpoint_id)
    async with db.transaction() as session:
        await _owned_endpoint(session, company_id, endpoint_id, lock=True)
        attempts = WebhookAttempt.__table__  # type: ignore[attr-defined]
        await session.execute(attempts.delete().where(attempts.c.delivery_id.in_(deliveries)))
        await session.execute(_deliveries.delete().where(_deliveries.c.endpoint_id == endpoint_id))
        await session.execute(_endpoints.delete().where(_endpoints.c.id == endpoint_id))


def _delivery_row(
    endpoint: WebhookEndpoint, message_id: str, event_type: str, data: dict[str, Any], now: datetime
) -> dict[str, Any]:  # Any: column values
    return {
        "id": new_id("whd"),
        "endpoint_id": endpoint.id,
        "company_id": endpoint.company_id,
        "message_id": message_id,
        "event_type": event_type,
        "payload": {"type": event_type, "timestamp": now.isoformat(), "data": data},
        "status": DeliveryStatus.PENDING,
        "attempt_count": 0,
        "retries_left": -1,  # set from the schedule at its first attempt
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


async def enqueue_message(
    session: AsyncSession,
    *,
    company_id: str,
    message_id: str,
    event_type: WebhookEventType,
    data: dict[str, Any],  # Any: JSON values
) -> None:
    """Owe the message to each of the company's enabled endpoints that asked for its type."""
    endpoints = await session.scalars(
        select(WebhookEndpoint).where(
            col(WebhookEndpoint.company_id) == company_id, col(WebhookEndpoint.enabled)
        )
    )
    now = utcnow()
    rows = [
        _delivery_row(endpoint, message_id, event_type, data, now)
        for endpoint in endpoints
        if event_type in endpoint.event_types
    ]
    if rows:
        await session.execute(insert(_deliveries), rows)


def _event_type(event: SyncEvent) -> WebhookEventType | None:
    if event.item_id is None:
        return {
            BatchStatus.COMPLETED: WebhookEventType.BATCH_COMPLETED,
            BatchStatus.FAILED: WebhookEventType.BATCH_FAILED,
        }.get(BatchStatus(event.to_status))
    if event.attachment_id is not None:  # an attachment's: its item did not fail
        return None
    return WebhookEventType.ITEM_FAILED if event.to_status == ItemStatus.FAILED else None


async def lagging_endpoints(db: Database, *, limit: int) -> list[tuple[WebhookEndpoint, int]]:
    """Enabled endpoints whose company has logged events they have not been dispatched, each
    with the number of the company's newest event."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(WebhookEndpoint, col(Company.last_event_seq))
            .join(Company, col(Company.id) == col(WebhookEndpoint.company_id))
            .where(
                col(WebhookEndpoint.enabled),
                col(WebhookEndpoint.event_seq) < col(Company.last_event_seq),
            )
            .limit(limit)
        )
        return [(endpoint, last_seq) for endpoint, last_seq in rows]


async def dispatch(db: Database, endpoint: WebhookEndpoint, *, upto_seq: int) -> int:
    """Turn the next page of the log after the endpoint's place (up to `upto_seq`) into its
    deliveries; how many events it read (0: none, or another worker moved the place first)."""
    events = await company_events(
        db,
        company_id=endpoint.company_id,
        after_seq=endpoint.event_seq,
        upto_seq=upto_seq,
        limit=DISPATCH_PAGE,
    )
    if not events:
        return 0
    wanted = [
        (event, event_type)
        for event in events
        if (event_type := _event_type(event)) is not None and event_type in endpoint.event_types
    ]
    batches = await _batches_of([event.batch_id for event, _ in wanted], db)
    references = await _records_of([event.item_id for event, _ in wanted if event.item_id], db)
    now = utcnow()
    rows = [
        _delivery_row(
            endpoint,
            f"msg_{event.id}",
            event_type,
            _event_data(event, batches, references),
            now,
        )
        for event, event_type in wanted
    ]
    async with db.transaction() as session:
        moved = await session.execute(
            update(_endpoints)
            .where(
                _endpoints.c.id == endpoint.id,
                _endpoints.c.event_seq == endpoint.event_seq,
                _endpoints.c.enabled,
            )
            .values(event_seq=events[-1].company_seq)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return 0
        if rows:
            await session.execute(insert(_deliveries), rows)
    return len(events)


async def _batches_of(batch_ids: Sequence[str], db: Database) -> dict[str, SyncBatch]:
    if not batch_ids:
        return {}
    async with db.sessions() as session:
        rows = await session.scalars(select(SyncBatch).where(col(SyncBatch.id).in_(set(batch_ids))))
        return {batch.id: batch for batch in rows}


async def _records_of(item_ids: Sequence[str], db: Database) -> dict[str, tuple[str, str | None]]:
    """The records of these items, and the clients' own references, by item id."""
    if not item_ids:
        return {}
    async with db.sessions() as session:
        rows = await session.execute(
            select(col(SyncItem.id), col(SyncItem.record_id), col(SyncItem.reference)).where(
                col(SyncItem.id).in_(set(item_ids))
            )
        )
        return {item_id: (record_id, reference) for item_id, record_id, reference in rows}


def _event_data(
    event: SyncEvent,
    batches: dict[str, SyncBatch],
    records: dict[str, tuple[str, str | None]],
) -> dict[str, Any]:  # Any: JSON
    """The event as the live stream shows it, with the item's record and reference (the
    client's own) and the batch's counts as they stand now."""
    data = event_payload(event)
    del data["seq"]
    if event.item_id is not None and event.item_id in records:
        data["recordId"], data["reference"] = records[event.item_id]
    batch = batches.get(event.batch_id)
    if batch is not None:
        data["batch"] = {
            "recordType": batch.record_type,
            "status": batch.status,
            "itemCount": batch.item_count,
            "successCount": batch.success_count,
            "failedCount": batch.failed_count,
        }
    return data


async def claim_due(
    db: Database, *, limit: int, lease: timedelta
) -> list[tuple[WebhookDelivery, WebhookEndpoint]]:
    """Due deliveries of enabled endpoints, with their endpoint, each leased to this caller for
    `lease` (a conditional move of its due time: one worker at a time attempts a delivery)."""
    now = utcnow()
    async with db.sessions() as session:
        due = list(
            await session.execute(
                select(WebhookDelivery, WebhookEndpoint)
                .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
                .where(
                    col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                    col(WebhookDelivery.next_attempt_at) <= now,
                    col(WebhookEndpoint.enabled),
                )
                .order_by(col(WebhookDelivery.next_attempt_at))
                .limit(limit)
            )
        )
    claimed = []
    async with db.transaction() as session:
        for delivery, endpoint in due:
            moved = await session.execute(
                update(_deliveries)
                .where(
                    _deliveries.c.id == delivery.id,
                    _deliveries.c.next_attempt_at == delivery.next_attempt_at,
                )
                .values(next_attempt_at=now + lease)
            )
            if moved.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append((delivery, endpoint))
    return claimed


@dataclass(frozen=True)
class DeliveryOutcome:
    """One attempt at a delivery, as the sender saw it."""

    attempted_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    response_body: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def record_attempt(
    db: Database,
    delivery: WebhookDelivery,
    outcome: DeliveryOutcome,
    *,
    schedule: Sequence[float],
    disable_after: timedelta,
) -> None:
    """Log the attempt; schedule the next one, give up, or disable an endpoint failing for too
    long (`disable_after` since its first failure with no success in between)."""
    now = utcnow()
    retries_left = len(schedule) if delivery.retries_left < 0 else delivery.retries_left
    values: dict[str, Any] = {"attempt_count": delivery.attempt_count + 1, "updated_at": now}
    if outcome.succeeded:
        values |= {"status": DeliveryStatus.SUCCEEDED, "next_attempt_at": None}
    elif retries_left > 0:
        delay = schedule[len(schedule) - retries_left]
        values |= {"retries_left": retries_left - 1, "next_attempt_at": now + _seconds(delay)}
    else:
        values |= {"status": DeliveryStatus.FAILED, "retries_left": 0, "next_attempt_at": None}
    async with db.transaction() as session:
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                number=delivery.attempt_count + 1,
                attempted_at=outcome.attempted_at,
                duration_ms=outcome.duration_ms,
                status_code=outcome.status_code,
                error=outcome.error[:500] if outcome.error else None,
                response_body=outcome.response_body[:1000] if outcome.response_body else None,
            )
        )
        await session.execute(
            update(_deliveries).where(_deliveries.c.id == delivery.id).values(values)
        )
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update=True)
        if endpoint is None:
            return
        if outcome.succeeded:
            endpoint.failing_since = None
        elif endpoint.failing_since is None:
            endpoint.failing_since = now
        elif now - endpoint.failing_since >= disable_after:
            endpoint.enabled = False
            endpoint.disabled_reason = f"Every delivery failed for {_days(disable_after)}."
        session.add(endpoint)


def _seconds(delay: float) -> timedelta:
    return timedelta(seconds=delay)


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{span.total_seconds():g} seconds"


async def list_deliveries(
    db: Database,
    *,
    company_id: str,
    endpoint_id: str,
    status: DeliveryStatus | None,
    page: PageRequest,
) -> Page[WebhookDelivery]:
    """The endpoint's deliveries, newest first."""
    await get_endpoint(db, company_id=company_id, endpoint_id=endpoint_id)
    conditions: list[ColumnElement[bool]] = [col(WebhookDelivery.endpoint_id) == endpoint_id]
    if status is not None:
        conditions.append(col(WebhookDelivery.status) == status)
    async with db.sessions() as session:
        return await paginate(
            session,
            select(WebhookDelivery).where(*conditions),
            keys=DELIVERY_KEYS,
            descending=True,
            request=page,
            key_of=lambda d: (d.created_at, d.id),
        )


async def replay_delivery(db: Database, *, company_id: str, delivery_id: str) -> WebhookDelivery:
    """Send a delivery once more, now, whatever became of it (one attempt, no retries)."""
    async with db.transaction() as session:
        delivery = (
            await session.get(WebhookDelivery, delivery_id, with_for_update=True)
            if is_id(delivery_id)
            else None
        )
        if delivery is None or delivery.company_id != company_id:
            raise NotFound(f"webhook delivery {delivery_id} not found")
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            raise InvalidInput("id: its endpoint is disabled; enable it first", field="id")
        delivery.status = DeliveryStatus.PENDING
        delivery.retries_left = 0
        delivery.next_attempt_at = delivery.updated_at = utcnow()
        session.add(delivery)
    return delivery


def webhook_secret(vault: Vault, endpoint: WebhookEndpoint) -> str:
    return vault.open(endpoint.sealed_secret)
