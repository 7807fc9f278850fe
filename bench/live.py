"""Live delivery latency: N subscribers of one company, events at a steady rate.

The driver (this process) uses only the public API: it creates one-expense batches at the
pace that yields `rate` events per second (the worker process makes four of the six), and N
WebSocket clients subscribed to companySyncEvents note when each event reaches them.
Latency is receipt time minus the event's `occurredAt`, which is stamped inside its
transaction: it slightly overstates the delay from the commit.
"""

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from bench import wsclient
from bench.service import Company, Service

EVENTS_PER_CREATE = 6  # batch and item created (2); batch and item moved (4)
SUBSCRIPTION = """subscription($c: ID!) {
  companySyncEvents(companyId: $c) { eventId occurredAt batchId itemId toStatus }
}"""
POLL = "query($b: ID!) { syncBatch(id: $b) { status completedAt } }"
POLL_SECONDS = 2.5  # the seed's advice to clients without a subscription
CREATE = """mutation($c: ID!, $e: [ExpenseInput!]!) {
  createExpenses(companyId: $c, expenses: $e) { syncBatchId }
}"""
EXPENSE = {"amount": "9.99", "currency": "USD", "date": "2026-11-02", "accountId": "429",
           "vendorName": "Bench"}  # fmt: skip


@dataclass
class Figures:
    subscribers: int
    events: int
    deliveries: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    pickup_p50_ms: float  # create request sent → the batch's PROCESSING event


class _Inbox:
    """What one subscriber heard. Only the first parses whole messages (for `occurredAt`);
    the rest read the event id off the frame, so the driver stays light."""

    def __init__(self, full: bool) -> None:
        self.full = full
        self.received: list[tuple[bytes, float]] = []
        self.occurred: dict[bytes, float] = {}
        self.processing: dict[str, float] = {}  # batch id → its PROCESSING event's occurredAt

    def __call__(self, text: bytes, now: float) -> None:
        start = text.find(b'"eventId":"')
        if start < 0:
            return
        start += 11
        event_id = text[start : text.index(b'"', start)]
        self.received.append((event_id, now))
        if self.full:
            event = json.loads(text)["payload"]["data"]["companySyncEvents"]
            occurred = datetime.fromisoformat(event["occurredAt"]).timestamp()
            self.occurred[event_id] = occurred
            if event["itemId"] is None and event["toStatus"] == "PROCESSING":
                self.processing[event["batchId"]] = occurred


async def measure(service: Service, *, subscribers: int, rate: float, seconds: float) -> Figures:
    company = await service.create_company(f"live-{subscribers}")
    crowd = [_Inbox(full=index == 0) for index in range(subscribers)]
    payload: dict[str, object] = {"query": SUBSCRIPTION, "variables": {"c": company.id}}
    connections = [
        await wsclient.subscribe(service.address, company.headers, payload, inbox)
        for inbox in crowd
    ]
    await asyncio.sleep(1)  # every subscription has joined the live feed
    created = await _create_at_rate(service, company, rate=rate, seconds=seconds)
    await asyncio.sleep(2)  # the last events arrive
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
    occurred = crowd[0].occurred
    latencies = sorted(
        (received_at - occurred[event_id]) * 1000
        for subscriber in crowd
        for event_id, received_at in subscriber.received
        if event_id in occurred
    )
    pickups = sorted(
        (crowd[0].processing[b] - sent) * 1000
        for b, sent in created.items()
        if b in crowd[0].processing
    )
    return Figures(
        subscribers=subscribers,
        events=len(occurred),
        deliveries=len(latencies),
        p50_ms=latencies[len(latencies) // 2],
        p99_ms=latencies[max(0, int(len(latencies) * 0.99) - 1)],
        max_ms=latencies[-1],
        pickup_p50_ms=pickups[len(pickups) // 2],
    )


@dataclass
class Polling:
    batches: int
    staleness_s: float  # mean delay in seeing COMPLETED
    requests_per_batch: float


async def polling(service: Service, *, rate: float, seconds: float) -> Polling:
    """The same load with no subscriber: a client polls each batch it created, as the seed
    advises, in a run of its own so its requests do not weigh on the live figures."""
    company = await service.create_company("polling")
    async with httpx.AsyncClient(
        base_url=f"http://{service.address}", headers=company.headers, timeout=30
    ) as http:
        pollers: list[asyncio.Task[tuple[float, int]]] = []
        await _create_at_rate(
            service,
            company,
            rate=rate,
            seconds=seconds,
            then=lambda batch_id: pollers.append(asyncio.create_task(_poll(http, batch_id))),
        )
        polls = await asyncio.gather(*pollers)
    return Polling(
        batches=len(polls),
        staleness_s=sum(stale for stale, _ in polls) / len(polls),
        requests_per_batch=sum(count for _, count in polls) / len(polls),
    )


async def _create_at_rate(
    service: Service,
    company: Company,
    *,
    rate: float,
    seconds: float,
    then: Callable[[str], None] = lambda _: None,
) -> dict[str, float]:
    """One-expense batches at the pace that yields `rate` events a second, `then` called with
    each; each batch id with when its create request was sent."""
    created: dict[str, float] = {}
    async with httpx.AsyncClient(
        base_url=f"http://{service.address}", headers=company.headers, timeout=30
    ) as http:
        interval = EVENTS_PER_CREATE / rate
        next_at = time.monotonic()
        deadline = next_at + seconds
        while next_at < deadline:
            variables = {"c": company.id, "e": [EXPENSE]}
            sent = time.time()
            response = await http.post("/graphql", json={"query": CREATE, "variables": variables})
            batch_id = response.json()["data"]["createExpenses"]["syncBatchId"]
            created[batch_id] = sent
            then(batch_id)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return created


async def _poll(http: httpx.AsyncClient, batch_id: str) -> tuple[float, int]:
    """A client without a subscription: `syncBatch` every 2.5 s (its own phase) until the
    batch is done; how late it learnt of COMPLETED, and the requests it took."""
    await asyncio.sleep(random.uniform(0, POLL_SECONDS))
    requests = 0
    while True:
        requests += 1
        response = await http.post("/graphql", json={"query": POLL, "variables": {"b": batch_id}})
        batch = response.json()["data"]["syncBatch"]
        if batch["status"] in ("COMPLETED", "FAILED"):
            completed = datetime.fromisoformat(batch["completedAt"]).timestamp()
            return time.time() - completed, requests
        await asyncio.sleep(POLL_SECONDS)
