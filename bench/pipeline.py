"""The sync pipeline end to end: throughput with an unlimited ledger, and the achieved rate under
a ledger's limits.

The driver creates batches through `createExpenses` and learns that a batch is done from its
company's `companySyncEvents` subscription (the batch's terminal event), so nothing polls.
"""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from bench import cpu, wsclient
from bench.service import Company, Service

CREATE = """mutation($c: ID!, $e: [ExpenseInput!]!) {
  createExpenses(companyId: $c, expenses: $e) { syncBatchId }
}"""
# From the company's first event: a stream "from now" may start after a fast batch has ended,
# since the server sets a subscription up after the client has sent it.
DONE = """subscription($c: ID!) {
  companySyncEvents(companyId: $c, afterEventId: "0") { batchId itemId toStatus }
}"""
ATTEMPTS = """query($b: ID!, $after: String) {
  syncBatch(id: $b) { items(first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node { status pushAttempts { startedAt error { code } } } }
  } }
}"""
TERMINAL = {"COMPLETED", "FAILED"}


Record = dict[str, object]  # an expense as the API takes it


def expense(n: int) -> Record:
    return {"amount": f"{1 + n % 500}.25", "currency": "USD", "date": "2026-11-02",
            "accountId": "429", "vendorName": "Bench", "reference": f"r{n}"}  # fmt: skip


def rich_expense(n: int) -> Record:
    """An expense split over five lines, each tracked by two categories, tax included."""
    lines = [
        {
            "amount": f"{1 + (n + k) % 97}.25",
            "accountId": "429",
            "taxRateId": "INPUT",
            "description": f"part {k}",
            "tracking": [
                {"category": "Region", "option": "North" if k % 2 else "South"},
                {"category": "Department", "option": "Sales"},
            ],
        }
        for k in range(5)
    ]
    return {"currency": "USD", "date": "2026-11-02", "vendorName": "Bench",
            "reference": f"r{n}", "lineAmountTypes": "INCLUSIVE", "lines": lines}  # fmt: skip


class _Finished:
    """A company's batches, as their terminal events arrive on its subscription."""

    def __init__(self) -> None:
        self.batches: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.ended: object = None  # what ended the subscription, if the server did

    def __call__(self, text: bytes, now: float) -> None:
        message = json.loads(text)
        if message["type"] in ("error", "complete"):
            self.end(message)
        if message["type"] != "next":
            return  # a ping
        event = message["payload"]["data"]["companySyncEvents"]
        if event["itemId"] is None and event["toStatus"] in TERMINAL:
            self.batches[event["batchId"]] = now
            self.changed.set()

    def end(self, why: object) -> None:
        if self.ended is None:
            self.ended = why
            self.changed.set()

    def closed(self, code: int | None) -> None:
        self.end(f"its socket closed (code {code})")

    async def wait_for(self, batch_ids: set[str]) -> float:
        """When the last of these batches finished."""
        while not batch_ids <= self.batches.keys():
            if self.ended is not None:
                raise RuntimeError(f"the server ended a subscription: {self.ended}")
            self.changed.clear()
            await self.changed.wait()
        return max(self.batches[batch_id] for batch_id in batch_ids)


async def watch(service: Service, company: Company) -> tuple[_Finished, wsclient.Subscriber]:
    finished = _Finished()
    payload: dict[str, object] = {"query": DONE, "variables": {"c": company.id}}
    subscriber = await wsclient.subscribe(
        service.address, company.headers, payload, finished, finished.closed
    )
    return finished, subscriber


async def create(http: httpx.AsyncClient, company: Company, expenses: list[Record]) -> str:
    response = await http.post(
        "/graphql",
        json={"query": CREATE, "variables": {"c": company.id, "e": expenses}},
        headers=company.headers,
    )
    batch_id: str = response.json()["data"]["createExpenses"]["syncBatchId"]
    return batch_id


@dataclass
class Throughput:
    companies: int
    items: int
    create_seconds: float
    total_seconds: float
    cpu_seconds: dict[str, float]  # by part of the service, over the run

    @property
    def cpu_ms_per_item(self) -> dict[str, float]:
        return {role: seconds / self.items * 1000 for role, seconds in self.cpu_seconds.items()}

    @property
    def items_per_second(self) -> float:
        return self.items / self.total_seconds


async def throughput(
    service: Service,
    *,
    companies: int,
    items: int,
    batch_size: int,
    made: Callable[[int], Record] = expense,
) -> Throughput:
    """`items` (each `made` by its number) across `companies`, in batches of `batch_size`,
    all created at once: seconds from the first create request to the last batch's terminal
    event."""
    tenants = await service.create_companies("pipeline", companies)
    watched = [await watch(service, company) for company in tenants]
    per_company = items // companies
    plans = [
        (
            company,
            finished,
            [made(n) for n in range(start, min(start + batch_size, per_company))],
        )
        for company, (finished, _) in zip(tenants, watched, strict=True)
        for start in range(0, per_company, batch_size)
    ]
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(
        base_url=f"http://{service.address}", timeout=120, limits=limits
    ) as http:
        before = cpu.snapshot()
        started = time.time()
        batch_ids = await asyncio.gather(*(create(http, c, e) for c, _, e in plans))
        created = time.time()
    waits: dict[_Finished, set[str]] = {}
    for (_, finished, _), batch_id in zip(plans, batch_ids, strict=True):
        waits.setdefault(finished, set()).add(batch_id)
    ended = max(await asyncio.gather(*(f.wait_for(ids) for f, ids in waits.items())))
    used = cpu.spent(before, cpu.snapshot())
    for _, subscriber in watched:
        if subscriber.transport is not None:
            subscriber.transport.close()
    return Throughput(companies, per_company * companies, created - started, ended - started, used)


@dataclass
class Limited:
    per_minute: int
    concurrent: int
    documents_per_call: int
    items: int
    calls: int
    seconds: float
    achieved_per_minute: float  # documents
    rate_limited: int  # calls the ledger answered 429

    @property
    def allowed_per_minute(self) -> int:
        return self.per_minute * self.documents_per_call

    @property
    def fraction(self) -> float:
        return self.achieved_per_minute / self.allowed_per_minute


async def limited(
    service: Service, *, per_minute: int, concurrent: int, documents_per_call: int, items: int
) -> Limited:
    """One company whose sandbox allows `per_minute` calls, `concurrent` at once, of
    `documents_per_call` each: the documents a minute its calls achieved (from the first
    call to the last, the last call's documents left out), and the 429s they met."""
    (company,) = await service.create_companies("limited", 1)
    await service.cli(
        "sandbox", "configure", "--company-id", company.id,
        "--rate-limit-per-minute", str(per_minute), "--max-concurrent", str(concurrent),
        "--documents-per-call", str(documents_per_call),
    )  # fmt: skip
    finished, subscriber = await watch(service, company)
    async with httpx.AsyncClient(base_url=f"http://{service.address}", timeout=120) as http:
        started = time.time()
        batch_id = await create(http, company, [expense(n) for n in range(items)])
        ended = await finished.wait_for({batch_id})
        pushes, refused = await _pushes(http, company, batch_id)
    if subscriber.transport is not None:
        subscriber.transport.close()
    calls = Counter(pushes)  # the documents of each call, by when it started
    first, last = min(calls), max(calls)
    span = (last - first).total_seconds()
    achieved = (len(pushes) - calls[last]) / span * 60 if span > 0 else float("inf")
    return Limited(
        per_minute,
        concurrent,
        documents_per_call,
        items,
        len(calls),
        ended - started,
        achieved,
        refused,
    )


async def _pushes(
    http: httpx.AsyncClient, company: Company, batch_id: str
) -> tuple[list[datetime], int]:
    """When each item's successful push started (the call that carried it), and how many
    pushes were refused (429)."""
    starts: list[datetime] = []
    refused = 0
    after = None
    while True:
        response = await http.post(
            "/graphql",
            json={"query": ATTEMPTS, "variables": {"b": batch_id, "after": after}},
            headers=company.headers,
        )
        page = response.json()["data"]["syncBatch"]["items"]
        for edge in page["edges"]:
            for attempt in edge["node"]["pushAttempts"]:
                if attempt["error"] is None:
                    starts.append(datetime.fromisoformat(attempt["startedAt"]))
                elif attempt["error"]["code"] == "RATE_LIMIT_EXCEEDED":
                    refused += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    return starts, refused


@dataclass
class Creates:
    records: int
    samples: list[float]  # seconds each request took, one at a time


async def creates(
    service: Service, *, records: int, samples: int, made: Callable[[int], Record] = expense
) -> Creates:
    """`createExpenses` with `records` records (each `made` by its number), `samples` times
    one after another: the time each request took (our API's whole time: the sandbox's
    preflight chart is cached)."""
    (company,) = await service.create_companies("creates", 1)
    expenses = [made(n) for n in range(records)]
    timings = []
    async with httpx.AsyncClient(base_url=f"http://{service.address}", timeout=120) as http:
        for _ in range(samples + 3):  # the first three warm the process and the chart
            start = time.perf_counter()
            await create(http, company, expenses)
            timings.append(time.perf_counter() - start)
    return Creates(records, timings[3:])
