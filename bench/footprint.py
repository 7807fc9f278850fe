"""What idle subscriptions cost the API process: memory each, and CPU per event delivered.

Memory is the API process's resident set after N subscribers have joined, less what it held
before the first; CPU is the process's own time (from /proc) over a run of events, less the
same run with nobody subscribed, per delivery.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import wsclient
from bench.live import EVENTS_PER_CREATE
from bench.pipeline import create, expense
from bench.service import Company, Service

SUBSCRIPTION = "subscription($c: ID!) { companySyncEvents(companyId: $c) { eventId toStatus } }"
JOIN_AT_ONCE = 50


@dataclass
class Footprint:
    subscribers: int
    rss_mib: float
    kib_each: float


@dataclass
class FanOut:
    subscribers: int
    events: int
    deliveries: int
    cpu_us_per_delivery: float


class _Count:
    def __init__(self) -> None:
        self.received = 0

    def __call__(self, text: bytes, now: float) -> None:
        self.received += 1


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


async def measure(
    service: Service, *, counts: list[int], fan_out_at: int, creates: int
) -> tuple[list[Footprint], FanOut]:
    """Memory first, as subscribers join one company; then fan-out, on another company's
    subscribers. Each company starts with no events: a subscription without afterEventId
    starts with its company's whole log, which would weigh on the joins."""
    quiet, idle, busy = await service.create_companies("footprint", 3)
    async with httpx.AsyncClient(base_url=f"http://{service.address}", timeout=60) as http:
        idle_cpu = await _cpu_for_events(service, http, quiet, creates)
        await asyncio.sleep(1)
        before = rss_kib(service.api_pid)
        footprints = []
        async with _subscribers(service, idle) as join:
            for target in sorted(counts):
                await join(target)
                rss = rss_kib(service.api_pid)
                footprints.append(Footprint(target, rss / 1024, (rss - before) / target))
        count = _Count()
        async with _subscribers(service, busy, count) as join:
            await join(fan_out_at)
            busy_cpu = await _cpu_for_events(service, http, busy, creates)
    per_delivery = (busy_cpu - idle_cpu) / max(1, count.received) * 1e6
    return footprints, FanOut(fan_out_at, creates * EVENTS_PER_CREATE, count.received, per_delivery)


@asynccontextmanager
async def _subscribers(
    service: Service, company: Company, inbox: Callable[[bytes, float], None] = lambda *_: None
) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """`join(n)` brings the company's subscribers up to n, settled; all leave on exit."""
    payload: dict[str, object] = {"query": SUBSCRIPTION, "variables": {"c": company.id}}
    joined: list[wsclient.Subscriber] = []

    async def join(target: int) -> None:
        while len(joined) < target:
            joining = min(JOIN_AT_ONCE, target - len(joined))
            joined.extend(
                await asyncio.gather(
                    *(
                        wsclient.subscribe(service.address, company.headers, payload, inbox)
                        for _ in range(joining)
                    )
                )
            )
        await asyncio.sleep(2)  # every subscription settled in its feed

    try:
        yield join
    finally:
        for subscriber in joined:
            if subscriber.transport is not None:
                subscriber.transport.close()


async def _cpu_for_events(
    service: Service, http: httpx.AsyncClient, company: Company, creates: int
) -> float:
    """The API process's CPU seconds over `creates` one-expense batches, their events all
    delivered (the worker has a moment to finish after the last create)."""
    start = cpu_seconds(service.api_pid)
    for n in range(creates):
        await create(http, company, [expense(n)])
        await asyncio.sleep(0.04)
    await asyncio.sleep(3)
    return cpu_seconds(service.api_pid) - start
