"""Query cost against depth: pages of `syncBatches` near the start and far into 100,000 batches,
`failedItems` of a 10,000-item batch, a dashboard's nested page (100 batches with the first
10 items of each), and the monitor's own: `syncStats` over 1,000,000 events and
`searchItems` among 10,000 items.

The rows are seeded straight into the database: the API takes at most 1,000 records a batch,
and 100,000 create calls (each synced by the worker) would be most of the run. Every figure
is then measured through the public API, one request at a time, end to end over HTTP.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from bench.pipeline import create, expense, watch
from bench.service import DATABASE_URL, Company, Service, months_from

BATCHES = """query($c: ID!, $after: String, $status: SyncBatchStatus) {
  syncBatches(companyId: $c, first: 100, after: $after, status: $status) {
    totalCount pageInfo { endCursor hasNextPage }
    edges { node { id status itemCount successCount failedCount createdAt completedAt } }
  }
}"""
FAILED_ITEMS = """query($b: ID!, $after: String) {
  failedItems(batchId: $b, first: 100, after: $after) {
    totalCount pageInfo { endCursor hasNextPage }
    edges { node { id status attempts reference error { code message hint retryable } } }
  }
}"""

DASHBOARD = """query($c: ID!) {
  syncBatches(companyId: $c, first: 100) {
    edges { node { id status items(first: 10) {
      edges { node { id status reference error { code message hint } } }
    } } }
  }
}"""

_SEED_BATCHES = """
INSERT INTO sync_batch (id, company_id, record_type, status, item_count, pending_count,
    processing_count, success_count, failed_count, created_at, started_at, completed_at,
    updated_at)
SELECT 'bat_' || md5(random()::text || g), $1, 'EXPENSE',
       CASE WHEN g % 20 = 0 THEN 'FAILED' ELSE 'COMPLETED' END, 1, 0, 0,
       CASE WHEN g % 20 = 0 THEN 0 ELSE 1 END, CASE WHEN g % 20 = 0 THEN 1 ELSE 0 END,
       t, t, t + interval '1 second', t + interval '1 second'
FROM generate_series(1, $2) g, LATERAL (SELECT now() - g * interval '1 minute' AS t) s
"""
_SEED_ITEMS = """
INSERT INTO sync_item (id, batch_id, company_id, position, record_type, status, attempts,
    payload, reference, error_code, error_message, created_at, updated_at)
SELECT 'itm_' || md5(random()::text || g), $1, $2, 1000 + g, 'EXPENSE',
       CASE WHEN g % 2 = 0 THEN 'FAILED' ELSE 'SUCCESS' END, 1, $3::json, 'r' || g,
       CASE WHEN g % 2 = 0 THEN 'INVALID_ACCOUNT_ID' END,
       CASE WHEN g % 2 = 0 THEN 'Account code ''999'' is not a valid code for this document.' END,
       now(), now()
FROM generate_series(1, $4) g
"""


_SEED_BATCH_ITEMS = """
INSERT INTO sync_item (id, batch_id, company_id, position, record_type, status, attempts,
    payload, reference, error_code, error_message, created_at, updated_at)
SELECT 'itm_' || md5(random()::text || b.id || g), b.id, b.company_id, g, 'EXPENSE',
       CASE WHEN g % 5 = 0 THEN 'FAILED' ELSE 'SUCCESS' END, 1, $2::json, b.id || '-' || g,
       CASE WHEN g % 5 = 0 THEN 'INVALID_ACCOUNT_ID' END,
       CASE WHEN g % 5 = 0 THEN 'Account code ''999'' is not a valid code for this document.' END,
       b.created_at, b.completed_at
FROM sync_batch b, generate_series(1, $3) g
WHERE b.company_id = $1
"""


STATS = """query($c: ID!, $bucket: StatsBucket) {
  syncStats(companyId: $c, bucket: $bucket) { buckets { start synced failed failureRate } }
}"""
SEARCH = """query($c: ID!, $r: String!) {
  searchItems(companyId: $c, reference: $r, first: 20) {
    totalCount edges { node { id batchId status reference } }
  }
}"""

# A week of a busy company's log, 0.6 s apart: each item's three moves (the last one SUCCESS,
# or FAILED one time in ten).
_SEED_EVENTS = """
INSERT INTO sync_event (company_id, company_seq, batch_id, item_id, from_status, to_status,
    occurred_at)
SELECT c.id, c.last_event_seq + g, 'bat_seeded', 'itm_' || (g / 3),
       CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN 'PENDING' ELSE 'PROCESSING' END,
       CASE g % 3 WHEN 0 THEN 'PENDING' WHEN 1 THEN 'PROCESSING'
            ELSE CASE WHEN g % 30 = 2 THEN 'FAILED' ELSE 'SUCCESS' END END,
       now() - g * interval '600 milliseconds'
FROM generate_series(1, $2) g, company c WHERE c.id = $1::varchar
"""

_RECOUNT = """
UPDATE company SET
    completed_batches = (SELECT count(*) FROM sync_batch b
                         WHERE b.company_id = company.id AND b.status = 'COMPLETED'),
    failed_batches = (SELECT count(*) FROM sync_batch b
                      WHERE b.company_id = company.id AND b.status = 'FAILED')
WHERE id = $1
"""  # seeded rows skip the transition function, which keeps these counts


@dataclass
class Timing:
    name: str
    p50_ms: float
    p99_ms: float


async def measure(
    service: Service,
    *,
    batches: int,
    items: int,
    dashboard_items: int,
    samples: int,
    events: int = 1_000_000,
) -> list[Timing]:
    company, dashboard = await service.create_companies("queries", 2)
    async with httpx.AsyncClient(
        base_url=f"http://{service.address}", headers=company.headers, timeout=60
    ) as http:

        async def page(query: str, variables: dict[str, Any]) -> Any:
            response = await http.post("/graphql", json={"query": query, "variables": variables})
            body = response.json()
            assert "errors" not in body, body
            return body

        finished, subscriber = await watch(service, company)
        big_batch = await create(http, company, [expense(0)])  # its payload is the template
        await finished.wait_for({big_batch})  # synced: its job does not race the seeding
        if subscriber.transport is not None:
            subscriber.transport.close()
        await _seed(company, big_batch, batches=batches, items=items, events=events)
        await _seed_dashboard(dashboard, items=dashboard_items, payload_of=big_batch)

        async def timed(name: str, query: str, variables: dict[str, Any]) -> Timing:
            await page(query, variables)  # warm
            laps = []
            for _ in range(samples):
                start = time.perf_counter()
                await page(query, variables)
                laps.append((time.perf_counter() - start) * 1000)
            laps.sort()
            return Timing(name, laps[len(laps) // 2], laps[max(0, int(len(laps) * 0.99) - 1)])

        async def cursor_at(query: str, variables: dict[str, Any], depth: int) -> str | None:
            """The cursor `depth` rows in, found by walking the pages as a client would."""
            after = None
            for _ in range(depth // 100):
                body = await page(query, {**variables, "after": after})
                connection = next(iter(body["data"].values()))
                after = connection["pageInfo"]["endCursor"]
            return after

        c, completed = {"c": company.id}, {"c": company.id, "status": "COMPLETED"}
        deep = batches - 1_000
        deep_completed = batches * 19 // 20 - 1_000
        b = {"b": big_batch}

        async def timed_dashboard() -> Timing:
            http.headers.update(dashboard.headers)
            try:
                name = f"100 batches x first 10 of {dashboard_items:,} items"
                return await timed(name, DASHBOARD, {"c": dashboard.id})
            finally:
                http.headers.update(company.headers)

        return [
            await timed_dashboard(),
            await timed("syncBatches first page", BATCHES, c),
            await timed(
                f"syncBatches {deep:,} deep",
                BATCHES,
                {**c, "after": await cursor_at(BATCHES, c, deep)},
            ),
            await timed("syncBatches COMPLETED, first page", BATCHES, completed),
            await timed(
                f"syncBatches COMPLETED, {deep_completed:,} deep",
                BATCHES,
                {**completed, "after": await cursor_at(BATCHES, completed, deep_completed)},
            ),
            await timed(f"syncStats last hour by minute, {events:,} events", STATS, c),
            await timed("syncStats last day by hour", STATS, {**c, "bucket": "HOUR"}),
            await timed(f"searchItems, one of {items + 1:,} items", SEARCH, {**c, "r": "r500"}),
            await timed("failedItems first page", FAILED_ITEMS, b),
            await timed(
                f"failedItems {items // 2 - 100:,} deep",
                FAILED_ITEMS,
                {**b, "after": await cursor_at(FAILED_ITEMS, b, items // 2 - 100)},
            ),
        ]


async def _seed_dashboard(company: Company, *, items: int, payload_of: str) -> None:
    """100 finished batches of `items` items each (one in 5 FAILED)."""
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        payload = await conn.fetchval(
            "SELECT payload::text FROM sync_item WHERE batch_id = $1", payload_of
        )
        await conn.execute(_SEED_BATCHES, company.id, 100)
        await conn.execute(_RECOUNT, company.id)
        await conn.execute(_SEED_BATCH_ITEMS, company.id, payload, items)
        await conn.execute(
            "UPDATE sync_batch SET item_count = $2, success_count = $2 - $2 / 5,"
            " failed_count = $2 / 5 WHERE company_id = $1",
            company.id,
            items,
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def _seed(company: Company, big_batch: str, *, batches: int, items: int, events: int) -> None:
    """`batches` finished batches (one in 20 FAILED), `items` more in `big_batch` (half
    FAILED) and `events` in the log; then VACUUM ANALYZE, as autovacuum would do after such
    a load."""
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        payload = await conn.fetchval(
            "SELECT payload::text FROM sync_item WHERE batch_id = $1", big_batch
        )
        await conn.execute(_SEED_BATCHES, company.id, batches)
        await conn.execute(_RECOUNT, company.id)
        await conn.execute(_SEED_ITEMS, big_batch, company.id, payload, items)
        await months_from(datetime.now(UTC) - timedelta(seconds=events * 0.6 + 60))
        await conn.execute(_SEED_EVENTS, company.id, events)
        await conn.execute(
            "UPDATE company SET last_event_seq = last_event_seq + $2 WHERE id = $1",
            company.id,
            events,
        )
        await conn.execute(
            "UPDATE sync_batch SET item_count = item_count + $2, success_count = success_count"
            " + $2 - $2 / 2, failed_count = failed_count + $2 / 2 WHERE id = $1",
            big_batch,
            items,
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
