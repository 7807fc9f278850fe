"""Crash safety with real processes: a worker SIGKILLed mid-batch, again and again, one
stopped by SIGTERM, database connections dropped. Production's settings: a dead job's batch
is taken over when its lease lapses (`jobs/lease.py`); the figures (kills, recovery seconds)
are printed for the report.
"""

import asyncio
import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from infra.services import Services
from infra.settings import Settings
from ledgers import books as sandbox
from models.batch import get_batch
from models.enums import ItemStatus
from models.tables import SyncAttachment, SyncBatch, SyncItem
from tests.conftest import Api
from tests.helpers import CREATE_EXPENSES, PDF, batch_events, data, expense, upload
from tests.processes import cli, env_without_config, free_port, ready_client, running

pytestmark = pytest.mark.slow

KILLS = 3
ITEMS = 600  # a SIGKILL after each quarter of them
RECOVERY_SECONDS = 15  # the longest a killed worker's batch may stand still
TERMINATE_OTHERS = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


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
    """When (`time.monotonic`) at least `done` items of the batch were finished and it had
    `status`, within `seconds`."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        batch = await _progress(services, company_id, batch_id)
        if batch.success_count + batch.failed_count >= done and batch.status == status:
            return time.monotonic()
        await asyncio.sleep(0.05)
    pytest.fail(f"{done} items were not done within {seconds}s: {batch}")


async def _crash_company(tmp_path: Path, env: dict[str, str]) -> tuple[str, str]:
    """A company whose sandbox takes 10 calls a second of 5 records, each in 3 ms or more,
    so a batch is mid-way long enough to hurt (about 50 items a second)."""
    company = json.loads(cli("create-company", "--name", "Crash Ltd", cwd=tmp_path, env=env))
    configure = ("sandbox", "configure", "--company-id", company["companyId"], "--latency-ms", "3")
    slow = ("--rate-limit-per-minute", "600", "--max-concurrent", "5", "--documents-per-call", "5")
    cli(*configure, *slow, cwd=tmp_path, env=env)
    return company["companyId"], company["apiKey"]


async def _create(port: int, key: str, company_id: str, count: int) -> str:
    async with ready_client(port, key) as client:
        expenses = [expense(reference=f"c{i}") for i in range(count)]
        variables = {"companyId": company_id, "expenses": expenses}
        response = await client.post(
            "/graphql", json={"query": CREATE_EXPENSES, "variables": variables}
        )
        batch_id: str = data(response.json())["createExpenses"]["syncBatchId"]
        return batch_id


async def _exactly_once(services: Services, company_id: str, batch_id: str, count: int) -> str:
    """Check every item SUCCESS, posted once, its events a chain; return the figures."""
    batch = await _progress(services, company_id, batch_id)
    async with services.db.sessions() as session:
        posted = await sandbox.records(session, company_id=company_id)
        items = list(await session.scalars(select(SyncItem).where(SyncItem.batch_id == batch_id)))
    keys = Counter(row.idempotency_key for row in posted)
    duplicated = sum(n - 1 for n in keys.values())
    lost = sum(item.status != ItemStatus.SUCCESS for item in items)
    assert (lost, duplicated) == (0, 0)
    assert set(keys) == {item.id for item in items}
    assert {item.external_id for item in items} == {row.external_id for row in posted}
    assert (batch.status, batch.success_count, batch.processing_count) == ("COMPLETED", count, 0)
    events = await batch_events(services.db, batch_id=batch_id)
    last: dict[str, str | None] = {}
    for event in events:  # each item's events chain from status to status, ending in SUCCESS
        if event.item_id is not None:
            assert last.get(event.item_id) == event.from_status, event
            last[event.item_id] = event.to_status
    assert set(last.values()) == {"SUCCESS"} and len(last) == count
    assert events[-1].item_id is None and events[-1].to_status == "COMPLETED"
    return f"lost={lost} duplicated={duplicated}"


def _env(settings: Settings, services: Services, **overrides: str) -> dict[str, str]:
    if not services.db.is_postgres:
        pytest.skip("faults on PostgreSQL, production's database; one backend is enough")
    return env_without_config(
        DATABASE_URL=settings.database_url, REDIS_URL=services.redis_url, **overrides
    )


async def test_a_worker_killed_mid_batch_again_and_again_resumes_in_seconds_exactly_once(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    env = _env(settings, services, JOB_SLICE_SECONDS="1", LEASE_SECONDS="4")  # CI's minutes
    company_id, key = await _crash_company(tmp_path, env)
    port = free_port()
    recoveries = []
    with running("serve", "--port", str(port), cwd=tmp_path, env=env):
        batch_id = await _create(port, key, company_id, ITEMS)
        done_at_kill, killed_at = 0, 0.0
        for kill in range(1, KILLS + 2):
            with running("worker", cwd=tmp_path, env=env) as worker:  # restarted at once
                if kill > 1:  # from the kill to the next finished item
                    moved = await _until(services, company_id, batch_id, done_at_kill + 1, 60)
                    recoveries.append(moved - killed_at)
                if kill > KILLS:
                    await _until(services, company_id, batch_id, ITEMS, 120, "COMPLETED")
                    break
                await _until(services, company_id, batch_id, ITEMS // 4 * kill, 60)
                worker.kill()  # SIGKILL: mid-chunk, its items left PROCESSING
                worker.wait()
                killed_at = time.monotonic()
                batch = await _progress(services, company_id, batch_id)
                done_at_kill = batch.success_count + batch.failed_count
    figures = await _exactly_once(services, company_id, batch_id, ITEMS)
    recovery = ", ".join(f"{seconds:.1f}" for seconds in recoveries)
    print(f"\nSIGKILL x{KILLS}: {figures} recovery_s=[{recovery}]")
    assert len(recoveries) == KILLS and max(recoveries) <= RECOVERY_SECONDS


SIGTERM_ITEMS = 800  # 16 s at the sandbox's pace: the standby worker starts well before the end


async def test_a_worker_stopped_by_sigterm_hands_its_batch_back_at_once(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    env = _env(settings, services, JOB_SLICE_SECONDS="60")  # the first worker keeps the batch
    company_id, key = await _crash_company(tmp_path, env)
    port = free_port()
    (tmp_path / "standby").mkdir()
    with running("serve", "--port", str(port), cwd=tmp_path, env=env):
        batch_id = await _create(port, key, company_id, SIGTERM_ITEMS)
        with running("worker", cwd=tmp_path, env=env) as first:
            await _until(services, company_id, batch_id, 50, 60)
            with running("worker", cwd=tmp_path / "standby", env=env):
                await _logged(tmp_path / "standby" / "worker.log", "worker ready", 30)
                first.send_signal(signal.SIGTERM)
                first.wait(timeout=20)
                stopped_at = time.monotonic()
                batch = await _progress(services, company_id, batch_id)
                done = batch.success_count + batch.failed_count
                assert done < SIGTERM_ITEMS, "the batch ended before its worker was stopped"
                moved = await _until(services, company_id, batch_id, done + 1, 60)
                await _until(services, company_id, batch_id, SIGTERM_ITEMS, 120, "COMPLETED")
    figures = await _exactly_once(services, company_id, batch_id, SIGTERM_ITEMS)
    print(f"\nSIGTERM: {figures}; the standby worker went on {moved - stopped_at:.1f}s later")
    assert moved - stopped_at < settings.lease_seconds / 2  # not waiting for the lease to lapse


async def _logged(log: Path, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in await asyncio.to_thread(log.read_text):
        if time.monotonic() > deadline:
            pytest.fail(f"{log.name} never said {text!r}")
        await asyncio.sleep(0.05)


async def test_database_connections_dropped_mid_batch_are_survived(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    env = _env(settings, services, JOB_SLICE_SECONDS="1")
    company_id, key = await _crash_company(tmp_path, env)
    port = free_port()
    with (
        running("serve", "--port", str(port), cwd=tmp_path, env=env),
        running("worker", cwd=tmp_path, env=env),
    ):
        batch_id = await _create(port, key, company_id, 400)
        await _until(services, company_id, batch_id, 100, 60)
        dropped = 0
        for _ in range(2):  # every other connection to the database, twice, briefly apart
            async with services.db.engine.connect() as conn:
                dropped += len(list(await conn.execute(text(TERMINATE_OTHERS))))
            await asyncio.sleep(0.3)
        dropped_at = time.monotonic()
        recovered = await _until(services, company_id, batch_id, 400, 90, "COMPLETED")
    figures = await _exactly_once(services, company_id, batch_id, 400)
    done = recovered - dropped_at
    print(f"\nPostgreSQL connections dropped: {dropped}; {figures}; done {done:.1f}s later")


async def test_a_worker_killed_mid_attachment_push_puts_the_file_on_the_record_once(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    env = _env(settings, services, LEASE_SECONDS="2", SWEEP_SECONDS="1")  # recovered at once
    company_id, key = await _crash_company(tmp_path, env)
    configure = ("sandbox", "configure", "--company-id", company_id, "--latency-ms", "800")
    cli(*configure, cwd=tmp_path, env=env)  # a call takes 0.8 s: time to kill one mid-way
    port = free_port()
    with running("serve", "--port", str(port), cwd=tmp_path, env=env):
        async with ready_client(port, key) as client:
            variables = {"companyId": company_id, "expenses": [expense(reference="r1")]}
            answer = await client.post(
                "/graphql", json={"query": CREATE_EXPENSES, "variables": variables}
            )
            created = data(answer.json())["createExpenses"]
            (file,) = data(
                await upload(
                    Api(client, key),
                    created["expenses"][0]["id"],
                    [("receipt.pdf", PDF, "application/pdf")],
                )
            )["attachFiles"]
        batch_id = created["syncBatchId"]
        with running("worker", cwd=tmp_path, env=env) as worker:
            await _attachment_in(services, file["id"], ItemStatus.PROCESSING, 30)
            worker.kill()  # SIGKILL mid-push: the attachment is left PROCESSING
            worker.wait()
        with running("worker", cwd=tmp_path, env=env):
            attached = await _attachment_in(services, file["id"], ItemStatus.SUCCESS, 30)
            await _until(services, company_id, batch_id, 1, 30, "COMPLETED")
    async with services.db.sessions() as session:
        held = await sandbox.attachments(session, company_id=company_id)
    assert [[row.external_id for row in rows] for rows in held.values()] == [[attached.external_id]]
    assert attached.attempts >= 2  # the push the kill cut short, and the one that landed


async def _attachment_in(
    services: Services, attachment_id: str, status: ItemStatus, seconds: float
) -> SyncAttachment:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        async with services.db.sessions() as session:
            row = await session.get(SyncAttachment, attachment_id)
        if row is not None and row.status == status:
            return row
        await asyncio.sleep(0.05)
    pytest.fail(f"attachment {attachment_id} was not {status} within {seconds}s: {row}")


UPDATE = """mutation($c: ID!, $e: [ExpenseUpdateInput!]!) {
  updateExpenses(companyId: $c, expenses: $e) { syncBatchId } }"""


async def test_a_worker_killed_mid_batch_of_updates_applies_each_update_once(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    env = _env(settings, services, JOB_SLICE_SECONDS="1", LEASE_SECONDS="4")  # CI's minutes
    company_id, key = await _crash_company(tmp_path, env)
    port = free_port()
    count = 150  # chunks of 25: killed once a third have settled, mid-chunk
    with running("serve", "--port", str(port), cwd=tmp_path, env=env):
        created = await _create(port, key, company_id, count)
        with running("worker", cwd=tmp_path, env=env):
            await _until(services, company_id, created, count, 60, "COMPLETED")
        async with services.db.sessions() as session:
            record_ids = list(
                await session.scalars(
                    select(col(SyncItem.id))
                    .where(col(SyncItem.batch_id) == created)
                    .order_by(col(SyncItem.position))
                )
            )
        async with ready_client(port, key) as client:
            changes = [
                expense(reference=f"c{n}", amount=f"{100 + n}.00", recordId=record_id)
                for n, record_id in enumerate(record_ids)
            ]
            answer = await client.post(
                "/graphql", json={"query": UPDATE, "variables": {"c": company_id, "e": changes}}
            )
            batch_id = data(answer.json())["updateExpenses"]["syncBatchId"]
        with running("worker", cwd=tmp_path, env=env) as worker:
            await _until(services, company_id, batch_id, count // 3, 60)
            worker.kill()  # SIGKILL: mid-chunk, its updates left PROCESSING
            worker.wait()
        with running("worker", cwd=tmp_path, env=env):
            await _until(services, company_id, batch_id, count, 90, "COMPLETED")
    async with services.db.sessions() as session:
        documents = await sandbox.records(session, company_id=company_id)
        items = list(await session.scalars(select(SyncItem).where(SyncItem.batch_id == batch_id)))
    assert len(documents) == count  # one document per record
    assert Counter(d.version for d in documents) == {2: count}  # each update applied once
    assert sorted(d.amount for d in documents) == sorted(f"{100 + n}.00" for n in range(count))
    assert {item.status for item in items} == {ItemStatus.SUCCESS}
