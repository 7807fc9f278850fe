"""Crash safety with real processes: a worker SIGKILLed mid-batch, again and again.

Recovery after a SIGKILL takes arq's in-progress lease (JOB_TIMEOUT_SECONDS + 10 s), so the
job timeout is short here; the figures (kills, recovery seconds) are printed for the report.
"""

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import select

from models import sandbox
from models.batch import get_batch
from models.enums import ItemStatus
from models.events import batch_events
from models.services import Services
from models.settings import Settings
from models.tables import SyncBatch, SyncItem
from tests.helpers import CREATE_EXPENSES, data, expense
from tests.processes import cli, env_without_config, free_port, ready_client, running

pytestmark = pytest.mark.slow

KILLS = 3
JOB_TIMEOUT = 3


async def _progress(services: Services, company_id: str, batch_id: str) -> SyncBatch:
    batch = await get_batch(services.db, company_id=company_id, batch_id=batch_id)
    assert batch is not None
    return batch


async def _until(
    services: Services,
    company_id: str,
    batch_id: str,
    done: int,
    seconds: float,
    status: str = "PROCESSING",
) -> float:
    """Seconds until at least `done` items of the batch are finished and it has `status`."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        batch = await _progress(services, company_id, batch_id)
        if batch.success_count + batch.failed_count >= done and batch.status == status:
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    pytest.fail(f"{done} items were not done within {seconds}s: {batch}")


async def test_a_worker_killed_mid_batch_again_and_again_loses_and_duplicates_nothing(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    if not services.db.is_postgres:
        pytest.skip("killed on PostgreSQL, production's database; one backend is enough")
    env = env_without_config(
        DATABASE_URL=settings.database_url,
        REDIS_URL=services.redis_url,
        JOB_TIMEOUT_SECONDS=str(JOB_TIMEOUT),
        JOB_SLICE_SECONDS="1",
    )
    company = json.loads(cli("create-company", "--name", "Crash Ltd", cwd=tmp_path, env=env))
    company_id, key = company["companyId"], company["apiKey"]
    cli(
        "sandbox",
        "configure",
        "--company-id",
        company_id,
        "--latency-ms",
        "3",
        cwd=tmp_path,
        env=env,
    )
    port = free_port()
    recoveries = []
    with running("serve", "--port", str(port), cwd=tmp_path, env=env):
        async with ready_client(port, key) as client:
            expenses = [expense(reference=f"c{i}") for i in range(1000)]
            variables = {"companyId": company_id, "expenses": expenses}
            response = await client.post(
                "/graphql", json={"query": CREATE_EXPENSES, "variables": variables}
            )
            batch_id = data(response.json())["createExpenses"]["syncBatchId"]
        done_at_kill = 0
        for kill in range(1, KILLS + 2):
            with running("worker", cwd=tmp_path, env=env) as worker:
                if kill > 1:  # from the restart to its first finished item
                    recoveries.append(
                        await _until(services, company_id, batch_id, done_at_kill + 1, 60)
                    )
                if kill > KILLS:
                    await _until(services, company_id, batch_id, 1000, 120, "COMPLETED")
                    break
                await _until(services, company_id, batch_id, 200 * kill, 60)
                worker.kill()  # SIGKILL: mid-chunk, its items left PROCESSING
                worker.wait()
                batch = await _progress(services, company_id, batch_id)
                done_at_kill = batch.success_count + batch.failed_count

    batch = await _progress(services, company_id, batch_id)
    async with services.db.sessions() as session:
        posted = await sandbox.records(session, company_id=company_id)
        items = list(await session.scalars(select(SyncItem).where(SyncItem.batch_id == batch_id)))
    keys = Counter(row.idempotency_key for row in posted)
    duplicated = sum(n - 1 for n in keys.values())
    lost = sum(item.status != ItemStatus.SUCCESS for item in items)
    recovery = ", ".join(f"{seconds:.1f}" for seconds in recoveries)
    print(f"\nkills={KILLS} lost={lost} duplicated={duplicated} recovery_s=[{recovery}]")
    assert (lost, duplicated) == (0, 0)
    assert set(keys) == {item.id for item in items}
    assert {item.external_id for item in items} == {row.external_id for row in posted}
    assert (batch.status, batch.success_count, batch.processing_count) == ("COMPLETED", 1000, 0)
    events = await batch_events(services.db, batch_id=batch_id)
    last: dict[str, str | None] = {}
    for event in events:  # each item's events chain from status to status, ending in SUCCESS
        if event.item_id is not None:
            assert last.get(event.item_id) == event.from_status, event
            last[event.item_id] = event.to_status
    assert set(last.values()) == {"SUCCESS"} and len(last) == 1000
    assert events[-1].item_id is None and events[-1].to_status == "COMPLETED"
