"""Alerts in GraphQL: the `alerts` query and the `companyAlerts` subscription.

The subscription hears of each alert of its company through the process's live hub (one
Redis connection for every subscriber) and reads it from the table, which is the truth.
`afterAlertId` resumes: first the alerts raised or cleared since that one last changed.
"""

from collections.abc import AsyncIterator
from datetime import datetime

import strawberry

from api.context import Context, Info
from models.alerts import alerts_after, get_alert, list_alerts
from models.enums import AlertKind, AlertStatus
from models.errors import InvalidInput
from models.pagination import PageRequest, page_size
from models.tables import Alert as AlertRow

strawberry.enum(AlertKind, name="AlertKind")
strawberry.enum(AlertStatus, name="AlertStatus")


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
    @strawberry.subscription(
        description="Each alert of the company as it is raised or cleared, from now on; with "
        "`afterAlertId`, first those raised or cleared since that one last changed."
    )
    async def company_alerts(
        self, info: Info, company_id: strawberry.ID, after_alert_id: strawberry.ID | None = None
    ) -> AsyncIterator[Alert]:
        """Authorised, and its resume point found, before the stream exists: a refusal is the
        operation's error."""
        ctx = info.context
        owner = ctx.own(company_id)
        after = None
        if after_alert_id is not None:
            after = await get_alert(ctx.services.db, company_id=owner, alert_id=after_alert_id)
            if after is None:
                raise InvalidInput("afterAlertId: no alert of the company", field="afterAlertId")
        return _alerts(ctx, owner, after)


async def _alerts(ctx: Context, company_id: str, after: AlertRow | None) -> AsyncIterator[Alert]:
    """Listen first, then read what was missed: nothing falls between."""
    with ctx.hub.alerts(company_id) as heard:
        missed = [] if after is None else await alerts_after(ctx.services.db, after)
        replayed = {row.id: row.status for row in missed}
        for row in missed:
            yield Alert.from_row(row)
        while True:
            alert_id = await heard.get()
            now = await get_alert(ctx.services.db, company_id=company_id, alert_id=alert_id)
            if now is not None and replayed.pop(now.id, None) != now.status:
                yield Alert.from_row(now)
