"""Alerts: a company's failure rate over a sliding window, and its connection turning EXPIRED.

Item outcomes are counted in Redis, in buckets of `BUCKET_SECONDS` that expire once out of
the window, so every worker adds to one count and reading the window is one round trip. An
alert is raised when the window holds at least `ALERT_MIN_ITEMS` outcomes and its failure
rate reaches `ALERT_FAILURE_RATE`, and cleared once a window that full is below it again
(with too few outcomes to judge, it stands). Raising or clearing writes the alert and its
webhook deliveries in one transaction; subscribers then hear of it on Redis.
"""

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from infra import keys
from infra.db import Database
from infra.services import Services
from infra.settings import Settings
from models.enums import AlertKind, AlertStatus, WebhookEventType
from models.tables import Alert, utcnow
from models.webhooks import enqueue_message

log = logging.getLogger(__name__)

BUCKET_SECONDS = 10
_alerts = Alert.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Window:
    failed: int
    total: int

    @property
    def rate(self) -> float:
        return self.failed / self.total if self.total else 0.0


async def record_outcomes(
    redis: Redis, settings: Settings, *, company_id: str, succeeded: int, failed: int
) -> Window:
    """Add terminal item outcomes to the company's window; the window as it now stands."""
    now = int(time.time()) // BUCKET_SECONDS
    buckets = settings.alert_window_seconds // BUCKET_SECONDS
    key = keys.outcomes(company_id, now)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(key, "failed", failed)
        pipe.hincrby(key, "total", succeeded + failed)
        pipe.expire(key, settings.alert_window_seconds + BUCKET_SECONDS)
        for bucket in range(now - buckets + 1, now + 1):
            pipe.hmget(keys.outcomes(company_id, bucket), ["failed", "total"])
        answers = await pipe.execute()
    counts = answers[3:]
    return Window(
        failed=sum(int(f or 0) for f, _ in counts), total=sum(int(t or 0) for _, t in counts)
    )


async def judge_failure_rate(services: Services, *, company_id: str, window: Window) -> None:
    """Raise or clear the company's FAILURE_RATE alert by the window, as need be."""
    settings = services.settings
    if window.total < settings.alert_min_items:
        return
    failing = window.rate >= settings.alert_failure_rate
    if failing == await is_active(services.db, company_id=company_id, kind=AlertKind.FAILURE_RATE):
        return
    if not failing:
        await clear_alert(services, company_id=company_id, kind=AlertKind.FAILURE_RATE)
        return
    minutes = settings.alert_window_seconds / 60
    await raise_alert(
        services,
        Alert(
            company_id=company_id,
            kind=AlertKind.FAILURE_RATE,
            message=(
                f"{window.failed} of the last {window.total} items failed in {minutes:g} min "
                f"({window.rate:.0%}, the threshold is {settings.alert_failure_rate:.0%})."
            ),
            failure_rate=window.rate,
            failed_count=window.failed,
            total_count=window.total,
            window_seconds=settings.alert_window_seconds,
        ),
    )


def _active_key(company_id: str, kind: AlertKind) -> str:
    return f"{company_id}:{kind}"


async def is_active(db: Database, *, company_id: str, kind: AlertKind) -> bool:
    async with db.sessions() as session:
        found = await session.scalar(
            select(_alerts.c.id).where(_alerts.c.active_key == _active_key(company_id, kind))
        )
    return found is not None


async def raise_alert(services: Services, alert: Alert) -> None:
    """Record the alert unless one of its kind is already active; tell webhooks, subscribers."""
    alert.active_key = _active_key(alert.company_id, alert.kind)
    types = [WebhookEventType.ALERT_RAISED]
    if alert.kind is AlertKind.CONNECTION_EXPIRED:
        types.append(WebhookEventType.CONNECTION_EXPIRED)
    try:
        async with services.db.transaction() as session:
            session.add(alert)
            await session.flush()
            for event_type in types:
                await enqueue_message(
                    session,
                    company_id=alert.company_id,
                    message_id=f"msg_{alert.id}_{event_type}",
                    event_type=event_type,
                    data=alert_data(alert),
                )
    except IntegrityError:
        return  # another worker raised it first
    log.warning(
        "alert raised: %s",
        alert.message,
        extra={"company_id": alert.company_id, "alert_id": alert.id, "kind": alert.kind},
    )
    await _publish(services.redis, alert)


async def clear_alert(services: Services, *, company_id: str, kind: AlertKind) -> None:
    """Clear the company's active alert of this kind, if there is one."""
    async with services.db.transaction() as session:
        cleared = await session.scalar(
            update(Alert)
            .where(col(Alert.active_key) == _active_key(company_id, kind))
            .values(status=AlertStatus.CLEARED, cleared_at=utcnow(), active_key=None)
            .returning(Alert)
        )
        if cleared is None:
            return
        await enqueue_message(
            session,
            company_id=company_id,
            message_id=f"msg_{cleared.id}_{WebhookEventType.ALERT_CLEARED}",
            event_type=WebhookEventType.ALERT_CLEARED,
            data=alert_data(cleared),
        )
    log.info("alert cleared", extra={"company_id": company_id, "alert_id": cleared.id})
    await _publish(services.redis, cleared)


def alert_data(alert: Alert) -> dict[str, Any]:  # Any: JSON values
    return {
        "alertId": alert.id,
        "companyId": alert.company_id,
        "kind": alert.kind,
        "status": alert.status,
        "message": alert.message,
        "failureRate": alert.failure_rate,
        "failedCount": alert.failed_count,
        "totalCount": alert.total_count,
        "windowSeconds": alert.window_seconds,
        "raisedAt": alert.raised_at.isoformat(),
        "clearedAt": alert.cleared_at.isoformat() if alert.cleared_at else None,
    }


async def _publish(redis: Redis, alert: Alert) -> None:
    """Wake live subscribers; the alert table is the truth, so a lost publish loses nothing
    a query cannot show."""
    try:
        await redis.publish(
            keys.alerts_channel(alert.company_id), json.dumps({"alertId": alert.id})
        )
    except RedisError:
        log.warning("alert publish failed", extra={"alert_id": alert.id})


async def list_alerts(
    db: Database, *, company_id: str, status: AlertStatus | None, limit: int
) -> list[Alert]:
    """The company's alerts, newest first."""
    query = select(Alert).where(col(Alert.company_id) == company_id)
    if status is not None:
        query = query.where(col(Alert.status) == status)
    async with db.sessions() as session:
        rows = await session.scalars(
            query.order_by(col(Alert.raised_at).desc(), col(Alert.id).desc()).limit(limit)
        )
        return list(rows)


async def get_alert(db: Database, *, company_id: str, alert_id: str) -> Alert | None:
    async with db.sessions() as session:
        alert = await session.get(Alert, alert_id)
    return alert if alert is not None and alert.company_id == company_id else None


async def alerts_after(db: Database, after: Alert) -> list[Alert]:
    """The alerts of `after`'s company raised or cleared after it last was, in the order of
    their last change."""
    changed = func.coalesce(col(Alert.cleared_at), col(Alert.raised_at))
    since = after.cleared_at or after.raised_at
    async with db.sessions() as session:
        rows = await session.scalars(
            select(Alert)
            .where(
                col(Alert.company_id) == after.company_id,
                or_(changed > since, and_(changed == since, col(Alert.id) > after.id)),
            )
            .order_by(changed, col(Alert.id))
        )
        return list(rows)
