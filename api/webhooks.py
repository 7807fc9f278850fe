"""Webhooks in GraphQL: endpoints, their deliveries and attempts, and replaying a delivery."""

import json
from datetime import datetime

import strawberry

from api.context import Info
from api.types import RelayConnection, relay_connection
from models.enums import DeliveryStatus, WebhookEventType
from models.pagination import PageRequest
from models.tables import WebhookAttempt as WebhookAttemptRow
from models.tables import WebhookDelivery as WebhookDeliveryRow
from models.tables import WebhookEndpoint as WebhookEndpointRow
from models.webhooks import (
    EndpointChange,
    create_endpoint,
    delete_endpoint,
    list_deliveries,
    list_endpoints,
    replay_delivery,
    update_endpoint,
)

strawberry.enum(
    WebhookEventType,
    name="WebhookEventType",
    description="What an endpoint receives; the payload's `type` is the value, e.g. "
    "`batch.completed`.",
)
strawberry.enum(DeliveryStatus, name="WebhookDeliveryStatus")


@strawberry.type(description="Where the company's events are sent, signed (Standard Webhooks).")
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    description: str | None
    event_types: list[WebhookEventType]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None = strawberry.field(
        description="Its first failed delivery since the last success; null when healthy."
    )
    created_at: datetime

    @classmethod
    def from_row(cls, row: WebhookEndpointRow) -> "WebhookEndpoint":
        return cls(
            id=strawberry.ID(row.id),
            url=row.url,
            description=row.description,
            event_types=[WebhookEventType(value) for value in row.event_types],
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            failing_since=row.failing_since,
            created_at=row.created_at,
        )


@strawberry.type
class WebhookAttempt:
    number: int
    attempted_at: datetime
    duration_ms: float
    status_code: int | None = strawberry.field(description="Null when nothing answered.")
    error: str | None
    response_body: str | None = strawberry.field(description="The answer's first 1,000 chars.")

    @classmethod
    def from_row(cls, row: WebhookAttemptRow) -> "WebhookAttempt":
        return cls(
            number=row.number,
            attempted_at=row.attempted_at,
            duration_ms=row.duration_ms,
            status_code=row.status_code,
            error=row.error,
            response_body=row.response_body,
        )


@strawberry.type(description="One message owed to one endpoint, and its attempts.")
class WebhookDelivery:
    id: strawberry.ID
    endpoint_id: strawberry.ID
    message_id: str = strawberry.field(description="The `webhook-id` header: one per message.")
    event_type: WebhookEventType
    payload: str = strawberry.field(description="The JSON body sent.")
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime

    @strawberry.field
    async def attempts(self, info: Info) -> list[WebhookAttempt]:
        rows = await info.context.webhook_attempts.load(str(self.id))
        return [WebhookAttempt.from_row(row) for row in rows]

    @classmethod
    def from_row(cls, row: WebhookDeliveryRow) -> "WebhookDelivery":
        return cls(
            id=strawberry.ID(row.id),
            endpoint_id=strawberry.ID(row.endpoint_id),
            message_id=row.message_id,
            event_type=WebhookEventType(row.event_type),
            payload=json.dumps(row.payload, separators=(",", ":")),
            status=row.status,
            attempt_count=row.attempt_count,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
        )


@strawberry.input
class WebhookEndpointInput:
    url: str
    event_types: list[WebhookEventType]
    description: str | None = None


@strawberry.input(description="What to change; omitted fields stay as they are.")
class WebhookEndpointChange:
    url: str | None = None
    event_types: list[WebhookEventType] | None = None
    description: str | None = None
    enabled: bool | None = strawberry.field(
        default=None, description="true re-enables a disabled endpoint, from now on."
    )


@strawberry.type
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint
    secret: str = strawberry.field(
        description="The signing secret (`whsec_…`), shown this once: keep it to verify payloads."
    )


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="The company's webhook endpoints.")
    async def webhook_endpoints(
        self, info: Info, company_id: strawberry.ID
    ) -> list[WebhookEndpoint]:
        ctx = info.context
        rows = await list_endpoints(ctx.services.db, company_id=ctx.own(company_id))
        return [WebhookEndpoint.from_row(row) for row in rows]

    @strawberry.field(description="An endpoint's deliveries, newest first.")
    async def webhook_deliveries(
        self,
        info: Info,
        endpoint_id: strawberry.ID,
        status: DeliveryStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> RelayConnection[WebhookDelivery]:
        ctx = info.context
        page = await list_deliveries(
            ctx.services.db,
            company_id=ctx.company.id,
            endpoint_id=endpoint_id,
            status=status,
            page=PageRequest(first, after),
        )
        return relay_connection(page, WebhookDelivery.from_row)


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(description="Register an endpoint; it receives events from now on.")
    async def create_webhook_endpoint(
        self, info: Info, company_id: strawberry.ID, input: WebhookEndpointInput
    ) -> CreateWebhookEndpointPayload:
        ctx = info.context
        endpoint, secret = await create_endpoint(
            ctx.services.db,
            ctx.services.vault,
            company_id=ctx.own(company_id),
            url=input.url,
            event_types=input.event_types,
            description=input.description,
        )
        return CreateWebhookEndpointPayload(
            endpoint=WebhookEndpoint.from_row(endpoint), secret=secret
        )

    @strawberry.mutation(description="Change an endpoint, or enable or disable it.")
    async def update_webhook_endpoint(
        self, info: Info, id: strawberry.ID, input: WebhookEndpointChange
    ) -> WebhookEndpoint:
        ctx = info.context
        change = EndpointChange(input.url, input.event_types, input.description, input.enabled)
        row = await update_endpoint(
            ctx.services.db, company_id=ctx.company.id, endpoint_id=id, change=change
        )
        return WebhookEndpoint.from_row(row)

    @strawberry.mutation(description="Delete an endpoint with its deliveries; returns its id.")
    async def delete_webhook_endpoint(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        ctx = info.context
        await delete_endpoint(ctx.services.db, company_id=ctx.company.id, endpoint_id=id)
        return id

    @strawberry.mutation(description="Send a delivery once more, now (one attempt).")
    async def replay_webhook_delivery(self, info: Info, id: strawberry.ID) -> WebhookDelivery:
        ctx = info.context
        row = await replay_delivery(ctx.services.db, company_id=ctx.company.id, delivery_id=id)
        return WebhookDelivery.from_row(row)
