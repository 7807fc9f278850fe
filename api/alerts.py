"""Alerts in GraphQL: the `alerts` query and the `companyAlerts` subscription.

The subscription listens on the company's alert channel in Redis and reads each alert it
hears of from the table. Alerts are rare and their subscribers few (a monitor page, an ops
tool), so each subscription holds its own pub/sub connection rather than the live hub's.
"""

import json
from collections.abc import AsyncIterator
from datetime import datetime

import strawberry

from api.context import Context, Info
from models.alerts import alerts_channel, get_alert, list_alerts
from models.enums import AlertKind, AlertStatus
from models.pagination import PageRequest, page_size
from models.tables import Alert as AlertRow

strawberry.enum(AlertKind, name="AlertKind")
strawberry.enum(AlertStatus, name="AlertStatus")

LISTEN_SECONDS = 1.0  # within the Redis client's socket timeout


@strawberry.type(description="A condition of the company's syncing, from raised to cleared.")
class Alert:
    id: strawberry.ID
    company_id: strawberry.ID
    kind: AlertKind
    status: AlertStatus
    message: str
    failure_rate: float | None = strawberry.field(
        description="FAILURE_RATE: the window's share of failed items when it was raised."
    )
    failed_count: int | None
    total_count: int | None
    window_seconds: int | None
    raised_at: datetime
    cleared_at: datetime | None

    @classmethod
    def from_row(cls, row: AlertRow) -> "Alert":
        return cls(
            id=strawberry.ID(row.id),
            company_id=strawberry.ID(row.company_id),
            kind=row.kind,
            status=row.status,
            message=row.message,
            failure_rate=row.failure_rate,
            failed_count=row.failed_count,
            total_count=row.total_count,
            window_seconds=row.window_seconds,
            raised_at=row.raised_at,
            cleared_at=row.cleared_at,
        )


@strawberry.type
class AlertQuery:
    @strawberry.field(description="The company's alerts, newest first (at most `first`, 100).")
    async def alerts(
        self,
        info: Info,
        company_id: strawberry.ID,
        status: AlertStatus | None = None,
        first: int = 20,
    ) -> list[Alert]:
        ctx = info.context
        owner = ctx.own(company_id)
        limit = page_size(PageRequest(first=first))
        rows = await list_alerts(ctx.services.db, company_id=owner, status=status, limit=limit)
        return [Alert.from_row(row) for row in rows]


@strawberry.type
class AlertSubscription:
    @strawberry.subscription(description="Each alert of the company as it is raised or cleared.")
    async def company_alerts(self, info: Info, company_id: strawberry.ID) -> AsyncIterator[Alert]:
        """Authorised before the stream exists, so a refusal is the operation's error."""
        return _alerts(info.context, info.context.own(company_id))


async def _alerts(ctx: Context, company_id: str) -> AsyncIterator[Alert]:
    pubsub = ctx.services.redis.pubsub()
    await pubsub.subscribe(alerts_channel(company_id))
    try:
        while True:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=LISTEN_SECONDS
            )
            if message is None:
                continue
            alert_id = json.loads(message["data"])["alertId"]
            row = await get_alert(ctx.services.db, company_id=company_id, alert_id=alert_id)
            if row is not None:
                yield Alert.from_row(row)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
