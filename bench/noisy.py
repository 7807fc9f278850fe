"""Noisy neighbours: heavy companies syncing at their ledger's pace, and a light one creating
one expense a second. Each heavy company's sandbox is paced like Xero (60 calls a minute of
50 documents, 5 at once, 200 ms a call); the light one's is idle (the bench's default: no
limit, no latency), as for the issue's 0.15 s reference. The figures: the light company's
create-to-COMPLETED latency (p50, p99), and each heavy company's documents synced in the
window against what its ledger allowed.
"""

import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx

from bench.pipeline import create, expense, watch
from bench.service import Company, Service

PER_MINUTE, PER_CALL, CONCURRENT, LATENCY_MS = 60, 50, 5, 200
BATCH = 1_000  # the API's largest
SYNCED = """query($c: ID!, $after: String) {
  syncBatches(companyId: $c, first: 100, after: $after) {
    pageInfo { hasNextPage endCursor } edges { node { successCount } }
  }
}"""


@dataclass
class Noisy:
    heavy: int
    light_seconds: list[float]  # each light expense's create to COMPLETED
    shares: list[float]  # each heavy company's documents synced / its ledger's allowance

    def percentile(self, share: float) -> float:
        ordered = sorted(self.light_seconds)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def _paced(service: Service, company: Company) -> None:
    await service.cli(
        "sandbox", "configure", "--company-id", company.id,
        "--rate-limit-per-minute", str(PER_MINUTE), "--max-concurrent", str(CONCURRENT),
        "--documents-per-call", str(PER_CALL), "--latency-ms", str(LATENCY_MS),
    )  # fmt: skip


async def _synced(http: httpx.AsyncClient, company: Company) -> int:
    """Documents synced so far: the company's batches' success counts."""
    total: int = 0
    after = None
    while True:
        response = await http.post(
            "/graphql",
            json={"query": SYNCED, "variables": {"c": company.id, "after": after}},
            headers=company.headers,
        )
        page = response.json()["data"]["syncBatches"]
        total += sum(int(edge["node"]["successCount"]) for edge in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return total
        after = page["pageInfo"]["endCursor"]


async def measure(service: Service, *, heavy: int, items: int, seconds: int) -> Noisy:
    companies = await service.create_companies("heavy", heavy)
    (light,) = await service.create_companies("light", 1)
    await asyncio.gather(*(_paced(service, company) for company in companies))
    finished, subscriber = await watch(service, light)
    async with httpx.AsyncClient(base_url=f"http://{service.address}", timeout=120) as http:
        for start in range(0, items, BATCH):  # each heavy company's backlog, a batch at a time
            await asyncio.gather(
                *(
                    create(http, company, [expense(n) for n in range(start, start + BATCH)])
                    for company in companies
                )
            )
        await asyncio.sleep(5)  # the heavy ones under way
        before = await asyncio.gather(*(_synced(http, company) for company in companies))
        window_start = time.time()
        created: dict[str, float] = {}
        for n in range(seconds):
            sent = time.time()
            created[await create(http, light, [expense(n)])] = sent
            await asyncio.sleep(max(0.0, window_start + n + 1 - time.time()))
        window = time.time() - window_start
        after = await asyncio.gather(*(_synced(http, company) for company in companies))
        await asyncio.wait_for(finished.wait_for(set(created)), 60)
    if subscriber.transport is not None:
        subscriber.transport.close()
    allowed = PER_MINUTE / 60 * PER_CALL * window
    return Noisy(
        heavy,
        [finished.batches[batch_id] - sent for batch_id, sent in created.items()],
        [(done - was) / allowed for was, done in zip(before, after, strict=True)],
    )


def summary(f: Noisy) -> str:
    shares = sorted(f.shares)
    least, middle = (f"{shares[0]:.2f}", f"{statistics.median(shares):.2f}") if shares else "——"
    return (
        f"{f.heavy:>5} {statistics.median(f.light_seconds):>10.2f} {f.percentile(0.99):>10.2f} "
        f"{max(f.light_seconds):>10.2f} {least:>10} {middle:>10}"
    )
