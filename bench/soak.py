"""Load held: 200 clients at once for minutes, each holding its company's
`companySyncEvents` subscription and, in a loop, creating a batch of expenses, reading its
company's batches and reading the batch it created. The figures: requests a second, p99 per
operation, errors (any non-200 answer, any `errors` in a body, any subscription the server
ended), the API's and the workers' memory after a warm-up and at the end, and the
database's growth per item created, and where the machine's CPU went (the driver shares it).
"""

import asyncio
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

import asyncpg
import httpx

from bench import cpu, wsclient
from bench.footprint import rss_kib
from bench.pipeline import CREATE, expense
from bench.service import DATABASE_URL, Company, Service

COMPANIES = 20
PER_CREATE = 5
WARM_UP_SECONDS = 30
FOLLOW = """subscription($c: ID!) {
  companySyncEvents(companyId: $c) { eventId batchId itemId toStatus }
}"""
BATCHES = """query($c: ID!) {
  syncBatches(companyId: $c, first: 20) {
    totalCount edges { node { id status itemCount successCount failedCount } }
  }
}"""
BATCH = """query($b: ID!) {
  syncBatch(id: $b) { id status estimatedCompletionAt items(first: 10) {
    edges { node { id status reference } } } }
}"""


@dataclass
class Soak:
    clients: int
    seconds: float
    requests: int
    errors: list[str]
    latencies: dict[str, list[float]]
    events: int
    items: int
    rss_mib: dict[str, tuple[float, float]]  # process → (after warm-up, at the end)
    db_bytes_per_item: float
    cpu_seconds: dict[str, float]  # by part of the service (and the driver), after warm-up

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def p99(self, name: str) -> float:
        ordered = sorted(self.latencies[name])
        return ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]


class _Run:
    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.events = 0
        self.items = 0

    def heard(self, text: bytes, now: float) -> None:
        if b'"next"' in text:
            self.events += 1
        elif b'"error"' in text or b'"complete"' in text:
            self.errors.append(f"subscription ended: {text[:200]!r}")

    def closed(self, code: int | None) -> None:
        if time.monotonic() < self.ends:
            self.errors.append(f"subscription socket closed ({code})")

    async def ask(
        self, http: httpx.AsyncClient, name: str, company: Company, query: str, variables: object
    ) -> dict[str, object] | None:
        started = time.perf_counter()
        try:
            answer = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=company.headers
            )
        except httpx.HTTPError as exc:
            self.errors.append(f"{name}: {exc!r}")
            return None
        self.latencies[name].append(time.perf_counter() - started)
        body = answer.json() if answer.headers.get("content-type", "").startswith("app") else {}
        if answer.status_code != 200 or "errors" in body:
            self.errors.append(f"{name}: {answer.status_code} {answer.text[:200]}")
            return None
        data: dict[str, object] = body["data"]
        return data

    async def client(self, http: httpx.AsyncClient, company: Company, n: int) -> None:
        """Create, list, read, about once a second each, until the run ends."""
        serial = 0
        while time.monotonic() < self.ends:
            records = [expense(n * 1_000_000 + serial * PER_CREATE + k) for k in range(PER_CREATE)]
            serial += 1
            created = await self.ask(http, "createExpenses", company, CREATE,
                                     {"c": company.id, "e": records})  # fmt: skip
            if created is not None:
                self.items += PER_CREATE
            await asyncio.sleep(1)
            await self.ask(http, "syncBatches", company, BATCHES, {"c": company.id})
            await asyncio.sleep(1)
            if created is not None:
                batch_id = created["createExpenses"]["syncBatchId"]  # type: ignore[index]
                await self.ask(http, "syncBatch", company, BATCH, {"b": batch_id})
            await asyncio.sleep(1)


def _memory(service: Service) -> dict[str, float]:
    processes = {"API": service.api_pid} | {
        f"worker {n + 1}": pid for n, pid in enumerate(service.worker_pids)
    }
    return {name: rss_kib(pid) / 1024 for name, pid in processes.items()}


async def _database_bytes() -> int:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        size: int = await conn.fetchval("SELECT pg_database_size(current_database())")
        return size
    finally:
        await conn.close()


async def measure(service: Service, *, clients: int, minutes: float) -> Soak:
    companies = await service.create_companies("soak", COMPANIES)
    run = _Run(WARM_UP_SECONDS + minutes * 60)
    subscribers = []
    for n in range(clients):
        company = companies[n % COMPANIES]
        payload: dict[str, object] = {"query": FOLLOW, "variables": {"c": company.id}}
        subscribers.append(
            await wsclient.subscribe(
                service.address, company.headers, payload, run.heard, run.closed
            )
        )
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=f"http://{service.address}", timeout=60, limits=limits
    ) as http:
        loops = [
            asyncio.create_task(run.client(http, companies[n % COMPANIES], n))
            for n in range(clients)
        ]
        await asyncio.sleep(WARM_UP_SECONDS)
        warm = _memory(service)
        size, items, started = await _database_bytes(), run.items, time.monotonic()
        used_before = cpu.snapshot()
        requests_before = sum(len(v) for v in run.latencies.values())
        latencies_from = {name: len(v) for name, v in run.latencies.items()}
        await asyncio.gather(*loops)
        seconds = time.monotonic() - started
        used = cpu.spent(used_before, cpu.snapshot())
        end = _memory(service)
        grown = await _database_bytes() - size
    for subscriber in subscribers:
        if subscriber.transport is not None:
            subscriber.transport.close()
    measured = {
        name: values[latencies_from.get(name, 0) :] for name, values in run.latencies.items()
    }
    requests = sum(len(v) for v in run.latencies.values()) - requests_before
    return Soak(
        clients,
        seconds,
        requests,
        run.errors,
        measured,
        run.events,
        run.items,
        {name: (warm[name], end[name]) for name in warm},
        grown / max(1, run.items - items),
        used,
    )


def summary(f: Soak) -> list[str]:
    lines = [
        f"{f.clients} clients for {f.seconds:.0f} s (after {WARM_UP_SECONDS} s of warm-up): "
        f"{f.requests:,} requests, {f.per_second:.1f}/s; {f.items:,} items created, "
        f"{f.events:,} events heard; errors: {len(f.errors)}",
        f"{'operation':<16} {'count':>7} {'p50 ms':>7} {'p99 ms':>7}",
    ]
    for name in ("createExpenses", "syncBatches", "syncBatch"):
        values = f.latencies.get(name, [])
        if values:
            lines.append(f"{name:<16} {len(values):>7,} {statistics.median(values) * 1000:>7.0f} "
                         f"{f.p99(name) * 1000:>7.0f}")  # fmt: skip
    for name, (warm, end) in f.rss_mib.items():
        lines.append(f"{name} RSS: {warm:.0f} MiB after warm-up, {end:.0f} MiB at the end "
                     f"({(end - warm) / warm:+.1%})")  # fmt: skip
    lines.append(f"database growth: {f.db_bytes_per_item:,.0f} bytes per item")
    lines.append("CPU, in cores busy on average: " + ", ".join(
        f"{role} {seconds / f.seconds:.2f}" for role, seconds in sorted(f.cpu_seconds.items())
    ) + f" (this machine has {os.cpu_count()})")  # fmt: skip
    lines += [f"error: {e}" for e in f.errors[:5]]
    return lines
