"""Webhook delivery, run by every worker each second (arq cron, one worker per tick).

Each run turns newly logged events into deliveries (`models.webhooks.dispatch`), then sends
what is due, signed per Standard Webhooks: `webhook-id` (the message's id, the same on every
attempt, for the receiver to drop duplicates), `webhook-timestamp`, and `webhook-signature`
(HMAC-SHA256 over id, timestamp and body with the endpoint's secret; receivers refuse
timestamps outside their replay window). A 2xx answer is success; anything else is retried on
the schedule (`WEBHOOK_RETRY_SCHEDULE`), and an endpoint failing for
`WEBHOOK_DISABLE_AFTER_SECONDS` is disabled. Delivery is at least once.
"""

import asyncio
import ipaddress
import json
import logging
import socket
import time
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from infra.services import Services
from jobs.context import from_ctx
from models.tables import WebhookDelivery, WebhookEndpoint, utcnow
from models.webhooks import (
    DeliveryOutcome,
    claim_due,
    dispatch,
    lagging_endpoints,
    record_attempt,
    webhook_secret,
)

log = logging.getLogger(__name__)

SENDS_PER_RUN = 50
DISPATCH_ROUNDS = 10
USER_AGENT = "Sync2Books-Webhooks/1"


async def pump_webhooks(ctx: dict[str, object]) -> None:
    """arq cron: dispatch new events, then send what is due."""
    deps = from_ctx(ctx)
    await dispatch_new_events(deps.services)
    await send_due(deps.services, deps.http)


async def dispatch_new_events(services: Services) -> None:
    for _ in range(DISPATCH_ROUNDS):
        endpoints = await lagging_endpoints(services.db, limit=100)
        read = [await dispatch(services.db, e, upto_seq=last) for e, last in endpoints]
        if not any(read):
            return


async def send_due(services: Services, http: httpx.AsyncClient) -> None:
    lease = timedelta(seconds=services.settings.webhook_timeout_seconds * 2 + 10)
    due = await claim_due(services.db, limit=SENDS_PER_RUN, lease=lease)
    await asyncio.gather(*(_send(services, http, delivery, endpoint) for delivery, endpoint in due))


async def _send(
    services: Services,
    http: httpx.AsyncClient,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
) -> None:
    settings = services.settings
    body = json.dumps(delivery.payload, separators=(",", ":"))
    attempted_at = utcnow()
    signature = Webhook(webhook_secret(services.vault, endpoint)).sign(
        delivery.message_id, attempted_at, body
    )
    headers = {
        "content-type": "application/json",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(attempted_at.timestamp())),
        "webhook-signature": signature,
        "user-agent": USER_AGENT,
    }
    start = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    answer: str | None = None
    try:
        if not settings.webhook_allow_private_networks:
            await _refuse_private(endpoint.url)
        response = await http.post(
            endpoint.url, content=body, headers=headers, timeout=settings.webhook_timeout_seconds
        )
        status_code, answer = response.status_code, response.text
        if not response.is_success:
            error = f"The endpoint answered HTTP {status_code}."
    except (httpx.HTTPError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    outcome = DeliveryOutcome(
        attempted_at, (time.perf_counter() - start) * 1000, status_code, error, answer
    )
    await record_attempt(
        services.db,
        delivery,
        outcome,
        schedule=settings.webhook_retry_schedule,
        disable_after=timedelta(seconds=settings.webhook_disable_after_seconds),
    )
    if error is not None:
        log.warning(
            "webhook delivery failed: %s",
            error,
            extra={
                "company_id": delivery.company_id,
                "endpoint_id": endpoint.id,
                "delivery_id": delivery.id,
                "attempt": delivery.attempt_count + 1,
            },
        )


async def _refuse_private(url: str) -> None:
    """A company's URL must not reach the service's own network (loopback, private, link-local
    such as cloud metadata): every address its host name resolves to is checked."""
    host = urlsplit(url).hostname or ""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    for *_, address in infos:
        ip = ipaddress.ip_address(address[0])
        if not ip.is_global:
            raise ValueError(f"{host} resolves to a non-public address ({ip})")
