"""Ledger failures: what the worker retries, what fails at once, and what every push left."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from arq.constants import in_progress_key_prefix
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text, update
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlmodel import col, select

from infra import keys
from infra.db import is_outage
from infra.queue import FIRST_TURNS_PER_MINUTE, enqueue_sync, sync_job_id
from infra.services import Services
from infra.settings import Settings
from jobs.retries import backoff
from jobs.worker import build_worker, close_worker
from ledgers import books as sandbox
from ledgers import create_company
from ledgers.protocol import Entry, Ledger, LedgerFactory, Written
from models.batch import create_batch, get_batch
from models.company import NewCompany
from models.enums import Provider, RecordType
from models.errors import LedgerError, SyncErrorCode
from models.tables import Connection, SyncItem
from tests.conftest import Api, RunJobs, sandbox_ledger
from tests.helpers import CREATE_EXPENSES, RETRY, data, expense, expense_record, new_batch
from tests.processes import cli, cli_result, env_without_config

BATCH = """
query($id: ID!) {
  syncBatch(id: $id) {
    status successCount failedCount
    items(first: 100) { edges { node {
      id status attempts externalId error { code retryable }
      pushAttempts { number startedAt durationMs error { code message } }
    } } }
  }
}
"""


async def _misbehave(services: Services, company: NewCompany, **knobs: Any) -> None:
    async with services.db.transaction() as session:
        await sandbox.configure(session, company_id=company.company.id, **knobs)


async def _batch(api: Api, batch_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    batch: dict[str, Any] = data(await api.gql(BATCH, {"id": batch_id}))["syncBatch"]
    return batch, [edge["node"] for edge in batch["items"]["edges"]]


async def _posted(services: Services, company: NewCompany) -> dict[str, str]:
    """The sandbox's records: idempotency key (our item id) → its external id."""
    async with services.db.sessions() as session:
        rows = await sandbox.records(session, company_id=company.company.id)
    posted = {row.idempotency_key: row.external_id for row in rows}
    assert len(posted) == len(rows)
    return posted


def _codes(item: dict[str, Any]) -> list[str | None]:
    return [a["error"]["code"] if a["error"] else None for a in item["pushAttempts"]]


async def _synced_one_by_one(
    api: Api, company: NewCompany, run_jobs: RunJobs, count: int
) -> list[dict[str, Any]]:
    """Sync `count` batches of one expense each (a ledger call each); all their items."""
    batch_ids = [await new_batch(api, company, [expense(reference=f"r{i}")]) for i in range(count)]
    await run_jobs()
    items = []
    for batch_id in batch_ids:
        batch, (item,) = await _batch(api, batch_id)
        assert (batch["status"], item["status"]) == ("COMPLETED", "SUCCESS"), item
        items.append(item)
    return items


async def test_transient_failures_are_retried_and_every_push_is_kept(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    await _misbehave(services, company, transient_error_rate=0.3)
    items = await _synced_one_by_one(api, company, run_jobs, 20)  # a call each: 20 chances
    for item in items:
        codes = _codes(item)
        assert codes[-1] is None and set(codes[:-1]) <= {"PROVIDER_ERROR"}
        assert [a["number"] for a in item["pushAttempts"]] == list(range(1, len(codes) + 1))
        assert item["attempts"] == len(codes)
        assert all(a["durationMs"] >= 0 and a["startedAt"] for a in item["pushAttempts"])
    assert sum(item["attempts"] for item in items) > 20  # some were retried
    assert await _posted(services, company) == {i["id"]: i["externalId"] for i in items}


async def test_a_push_that_timed_out_yet_was_recorded_is_not_posted_twice(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    await _misbehave(services, company, timeout_rate=0.4)
    items = await _synced_one_by_one(api, company, run_jobs, 20)
    assert sum(item["attempts"] for item in items) > 20  # some timed out and were pushed again
    assert await _posted(services, company) == {i["id"]: i["externalId"] for i in items}


class LookupsRefused:
    """A ledger whose lookups of earlier pushes fail `times` times (a 503), then answer."""

    def __init__(self, ledgers: LedgerFactory, times: int) -> None:
        self.ledgers, self.refusals = ledgers, times

    def __call__(self, connection: Connection) -> Ledger:
        ledger = self.ledgers(connection)
        found = ledger.find

        async def find(entries: Sequence[Entry]) -> dict[str, Written]:
            if self.refusals > 0:
                self.refusals -= 1
                raise LedgerError(SyncErrorCode.PROVIDER_ERROR, "503 Service Unavailable.")
            return await found(entries)

        ledger.find = find  # type: ignore[method-assign]
        return ledger


@pytest.mark.parametrize("refusals", [3, 1000], ids=["then-answers", "never-answers"])
async def test_a_lookup_the_ledger_refuses_is_asked_again_and_nothing_is_pushed_twice(
    api: Api,
    company: NewCompany,
    services: Services,
    run_jobs: RunJobs,
    ledgers: LedgerFactory,
    settings: Settings,
    refusals: int,
) -> None:
    await _misbehave(services, company, timeout_rate=1.0)  # written, answered with a timeout
    batch_id = await new_batch(api, company, [expense()])
    await run_jobs()
    _, (item,) = await _batch(api, batch_id)
    assert item["status"] == "FAILED" and len(await _posted(services, company)) == 1

    await _misbehave(services, company, timeout_rate=0.0)
    data(await api.gql(RETRY, {"batchId": batch_id}))
    await run_jobs(LookupsRefused(ledgers, refusals))
    _, (item,) = await _batch(api, batch_id)
    posted = await _posted(services, company)
    assert len(posted) == 1  # looked for, never pushed blind
    if refusals < settings.max_push_attempts:
        assert (item["status"], item["externalId"]) == ("SUCCESS", next(iter(posted.values())))
    else:
        assert (item["status"], item["error"]["code"]) == ("FAILED", "PROVIDER_ERROR")
        last = item["pushAttempts"][-1]["error"]["message"]
        assert last.startswith("Looking for the document of an earlier push failed")


async def test_permanent_failures_fail_at_once_with_the_ledgers_words(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    batch_id = await new_batch(api, company, [expense(accountId="999")])
    await run_jobs()
    _, (item,) = await _batch(api, batch_id)
    assert item["error"] == {"code": "INVALID_ACCOUNT_ID", "retryable": False}
    (attempt,) = item["pushAttempts"]
    assert (
        attempt["error"]["message"] == "Account code '999' is not a valid code for this document."
    )


async def test_a_failure_that_persists_ends_retryable_and_a_retry_continues_the_count(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs, settings: Settings
) -> None:
    await _misbehave(services, company, transient_error_rate=1.0)
    batch_id = await new_batch(api, company, [expense()])
    await run_jobs()
    batch, (item,) = await _batch(api, batch_id)
    assert (batch["status"], batch["failedCount"]) == ("COMPLETED", 1)
    assert item["error"] == {"code": "PROVIDER_ERROR", "retryable": True}
    assert _codes(item) == ["PROVIDER_ERROR"] * settings.max_push_attempts

    await _misbehave(services, company, transient_error_rate=0.0)
    data(await api.gql(RETRY, {"batchId": batch_id}))
    await run_jobs()
    _, (item,) = await _batch(api, batch_id)
    assert item["status"] == "SUCCESS"
    assert _codes(item) == ["PROVIDER_ERROR"] * settings.max_push_attempts + [None]
    assert item["attempts"] == settings.max_push_attempts + 1


async def test_an_expired_token_fails_items_without_retrying(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    async with services.db.transaction() as session:
        await sandbox.revoke(session, company_id=company.company.id)
    batch_id = await new_batch(api, company, [expense(), expense()])
    await run_jobs()
    _, items = await _batch(api, batch_id)
    assert [_codes(item) for item in items] == [["CONNECTION_EXPIRED"]] * 2
    assert items[0]["error"] == {"code": "CONNECTION_EXPIRED", "retryable": True}


@pytest.mark.parametrize("failures", [1, 2, 5, 30])
def test_backoff_grows_with_jitter_and_honours_retry_after(
    failures: int, settings: Settings
) -> None:
    ceiling = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (failures - 1))
    waits = [backoff(failures, None, settings) for _ in range(200)]
    assert all(0 <= wait <= ceiling for wait in waits)
    assert len(set(waits)) > 1  # jittered
    assert all(backoff(failures, 7.5, settings) >= 7.5 for _ in range(20))


async def test_sandbox_configure_changes_only_what_it_names(
    tmp_path: Path, settings: Settings, company: NewCompany, services: Services
) -> None:
    env = env_without_config(DATABASE_URL=settings.database_url)
    configure = ("sandbox", "configure", "--company-id", company.company.id)
    cli(*configure, "--transient-error-rate", "0.25", "--latency-ms", "5", cwd=tmp_path, env=env)
    shown = json.loads(cli(*configure, "--expire-token", cwd=tmp_path, env=env))
    assert shown["transient_error_rate"] == 0.25 and shown["latency_ms"] == 5
    assert shown["timeout_rate"] == 0.0
    ledger = await sandbox_ledger(services, company)  # --expire-token revoked its tokens
    with pytest.raises(LedgerError, match="401 Unauthorized"):
        await ledger.push([Entry("k", expense_record())])
    with pytest.raises(LedgerError, match="invalid_grant"):
        await ledger.refresh()

    unknown = ("sandbox", "configure", "--company-id", "cmp_nope", "--latency-ms", "1")
    wrong = cli_result(*unknown, cwd=tmp_path, env=env)
    assert wrong.returncode != 0 and "cmp_nope not found" in wrong.stderr
    rate = cli_result(*configure, "--timeout-rate", "1.5", cwd=tmp_path, env=env)
    assert rate.returncode == 2 and "between 0 and 1" in rate.stderr


async def _push_times(api: Api, batch_id: str) -> list[datetime]:
    _, items = await _batch(api, batch_id)
    assert all(_codes(item) == [None] for item in items), items  # one push each: no 429
    return [datetime.fromisoformat(i["pushAttempts"][0]["startedAt"]) for i in items]


async def test_the_ledgers_limits_are_kept_across_jobs_without_a_single_429(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    await _misbehave(services, company, rate_limit_per_minute=240, max_concurrent=1)
    batches = [await new_batch(api, company, [expense(reference=f"r{i}")]) for i in range(10)]
    await run_jobs()  # every batch at once (a call each), sharing the connection's limits
    times = sorted([t for batch_id in batches for t in await _push_times(api, batch_id)])
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
    assert sum(gaps) >= len(gaps) * 60 / 240, gaps  # the allowed rate, and no faster
    assert min(gaps) >= 60 / 240 / 2, gaps  # a late wake-up may shorten one gap, not erase it


async def test_the_sandbox_refuses_calls_beyond_its_limit_with_retry_after(
    company: NewCompany, services: Services
) -> None:
    await _misbehave(services, company, rate_limit_per_minute=3)
    ledger = await sandbox_ledger(services, company)
    for n in range(3):
        await ledger.push([Entry(f"k{n}", expense_record())])
    with pytest.raises(LedgerError) as refused:
        await ledger.push([Entry("k3", expense_record())])
    assert refused.value.error.code == "RATE_LIMIT_EXCEEDED"
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 60


async def test_a_slow_backlog_takes_turns_with_other_companies(
    api: Api, company: NewCompany, other_company: NewCompany, services: Services
) -> None:
    await _misbehave(  # 8 calls: about 4 s
        services, company, rate_limit_per_minute=120, documents_per_call=1
    )
    slow = await new_batch(api, company, [expense(reference=f"s{i}") for i in range(8)])
    variables = {"companyId": other_company.company.id, "expenses": [expense()] * 2}
    fast = data(await api.gql(CREATE_EXPENSES, variables, key=other_company.api_key))[
        "createExpenses"
    ]["syncBatchId"]
    await _burst(services, worker_max_jobs=1, job_slice_seconds=0.5)
    slow_batch = await get_batch(services.db, company_id=company.company.id, batch_id=slow)
    fast_batch = await get_batch(services.db, company_id=other_company.company.id, batch_id=fast)
    assert slow_batch and slow_batch.completed_at and fast_batch and fast_batch.completed_at
    assert (slow_batch.completed_at - fast_batch.completed_at).total_seconds() > 2


async def test_companies_waiting_on_their_ledgers_hold_no_job_slot_from_a_light_one(
    company: NewCompany, services: Services
) -> None:
    """Four companies, each with 8 calls to make 0.5 s apart, and a fifth with one expense
    to an idle ledger, on a worker of two job slots: the light batch syncs at once, and the
    heavy ones keep (near) their ledgers' pace, since none holds a slot while it waits."""
    batches = await _busy(services, 4, 8, rate_limit_per_minute=120)
    light = await _queued(services, company, 1)
    await _burst(services, worker_max_jobs=2)
    done = await get_batch(services.db, company_id=company.company.id, batch_id=light)
    assert done is not None and done.completed_at is not None
    assert (done.completed_at - done.created_at).total_seconds() < 2  # not after the busy ones
    for company_id, batch_id in batches.items():
        busy_batch = await get_batch(services.db, company_id=company_id, batch_id=batch_id)
        assert busy_batch is not None and busy_batch.completed_at and busy_batch.started_at
        assert busy_batch.success_count == 8
        # 8 calls 0.51 s apart: 3.6 s at the ledger's full pace, 4.8 s at three quarters of it
        assert (busy_batch.completed_at - busy_batch.started_at).total_seconds() < 4.8 + 0.5


async def test_a_companys_new_batch_goes_before_busy_companies_ready_jobs(
    api: Api, company: NewCompany, services: Services
) -> None:
    """More work ready than job slots: a company's new batch gets the next free slot (a first
    turn), not one after every busy company's ready job; past its first turns of the
    minute, it takes its turn behind them."""
    batches = await _busy(services, 3, 4, latency_ms=100)
    light = await new_batch(api, company, [expense()])
    minute = int(time.time() // 60)
    for window in (minute, minute + 1):  # its first turns used up, whenever it is created
        turns = keys.first_turns(company.company.id, window)
        await services.redis.set(turns, FIRST_TURNS_PER_MINUTE, ex=120)
    later = await new_batch(api, company, [expense(reference="later")])
    await _burst(services, worker_max_jobs=1, job_slice_seconds=0.2)
    started = {}
    for company_id, batch_id in [*batches.items(), (company.company.id, light)]:
        done = await get_batch(services.db, company_id=company_id, batch_id=batch_id)
        assert done is not None and done.started_at and done.success_count == done.item_count
        started[batch_id] = done.started_at
    light_start = started.pop(light)
    assert light_start < min(started.values())  # created last, run first
    done = await get_batch(services.db, company_id=company.company.id, batch_id=later)
    assert done is not None and done.started_at and done.success_count == 1
    assert done.started_at > max(started.values())  # queued behind the busy ones


async def _busy(services: Services, companies: int, expenses: int, **knobs: Any) -> dict[str, str]:
    """`companies` new companies, each with a queued batch of `expenses` to a sandbox of one
    document a call and these `knobs`: their batch ids, by company id."""
    batches = {}
    for n in range(companies):
        busy = await create_company(
            services.db, services.vault, name=f"Busy {n}", provider=Provider.SANDBOX
        )
        await _misbehave(services, busy, documents_per_call=1, **knobs)
        batches[busy.company.id] = await _queued(services, busy, expenses)
    return batches


async def _burst(services: Services, **changed: Any) -> None:  # Any: settings' values
    """Run every queued job to the end in a burst worker whose settings are `changed`."""
    settings = services.settings.model_copy(update=changed)
    worker = build_worker(replace(services, settings=settings), burst=True)
    try:
        await asyncio.wait_for(worker.main(), 60)
    finally:
        await close_worker(worker)


async def _queued(services: Services, company: NewCompany, count: int) -> str:
    """A batch of `count` expenses for the company, queued for the worker."""
    batch, _ = await create_batch(
        services.db,
        bus=services.bus,
        company_id=company.company.id,
        record_type=RecordType.EXPENSE,
        records=[expense_record(reference=f"r{n}") for n in range(count)],
    )
    assert await enqueue_sync(services.queue, batch_id=batch.id)
    return batch.id


async def test_a_batch_committed_but_never_queued_is_found_and_synced(
    company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    batch, _ = await create_batch(  # as if the API crashed between the commit and the enqueue
        services.db,
        bus=services.bus,
        company_id=company.company.id,
        record_type=RecordType.EXPENSE,
        records=[expense_record(), expense_record()],
    )
    assert await services.queue.queued_jobs() == []
    await run_jobs()  # a worker's recovery sweep runs when it starts, then every 30 s
    found = await get_batch(services.db, company_id=company.company.id, batch_id=batch.id)
    assert found is not None and (found.status, found.success_count) == ("COMPLETED", 2)


async def test_a_job_whose_worker_died_before_it_took_its_lease_is_found_and_synced(
    company: NewCompany, services: Services
) -> None:
    batch_id = await _queued(services, company, 2)
    dead = in_progress_key_prefix + sync_job_id(batch_id)  # arq marked it running, then a kill
    await services.redis.set(dead, b"1", px=120_000)
    await _burst(services, lease_seconds=1.0)  # the sweep at start gives the job a lease that
    # lapses; the batch gets a new job
    found = await get_batch(services.db, company_id=company.company.id, batch_id=batch_id)
    assert found is not None and (found.status, found.success_count) == ("COMPLETED", 2)
    assert not await services.redis.exists(dead)  # forgotten, not left to expire


@asynccontextmanager
async def _refusing(services: Services, event: str, when: str) -> AsyncIterator[None]:
    """A trigger that refuses the rows `when` says, as a too-long value or a constraint would:
    `event` is e.g. "INSERT ON sandbox_record"."""
    if services.db.is_postgres:
        create = [
            f"""CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN
                IF {when} THEN
                  RAISE EXCEPTION 'value too long for its column' USING ERRCODE = '22001';
                END IF; RETURN NEW; END $$ LANGUAGE plpgsql""",
            f"CREATE TRIGGER refuse_poison BEFORE {event} FOR EACH ROW "
            "EXECUTE FUNCTION refuse_poison()",
        ]
        drop = [
            f"DROP TRIGGER refuse_poison ON {event.split(' ON ')[1]}",
            "DROP FUNCTION refuse_poison",
        ]
    else:
        create = [
            f"""CREATE TRIGGER refuse_poison BEFORE {event} WHEN {when}
                BEGIN SELECT RAISE(ABORT, 'value too long for its column'); END"""
        ]
        drop = ["DROP TRIGGER refuse_poison"]
    async with services.db.transaction() as session:
        for statement in create:
            await session.execute(text(statement))
    try:
        yield
    finally:
        async with services.db.transaction() as session:
            for statement in drop:
                await session.execute(text(statement))


async def test_a_record_the_store_refuses_fails_alone_and_the_batch_goes_on(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    async with _refusing(services, "INSERT ON sandbox_record", "NEW.reference = 'poison'"):
        references = ["r0", "poison", "r2", "r3"]
        batch_id = await new_batch(api, company, [expense(reference=r) for r in references])
        await run_jobs()
    batch, items = await _batch(api, batch_id)
    assert (batch["status"], batch["successCount"], batch["failedCount"]) == ("COMPLETED", 3, 1)
    poisoned = items[1]
    assert (poisoned["status"], poisoned["error"]["code"]) == ("FAILED", "PROVIDER_ERROR")
    message = poisoned["pushAttempts"][-1]["error"]["message"]
    assert "could not store this record" in message and "too long" in message, message
    assert len(await _posted(services, company)) == 3


async def test_an_outcome_our_database_refuses_fails_that_item_alone(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    poison = "NEW.reference = 'poison' AND NEW.status = 'SUCCESS'"
    async with _refusing(services, "UPDATE ON sync_item", poison):
        references = ["r0", "poison", "r2"]
        batch_id = await new_batch(api, company, [expense(reference=r) for r in references])
        await run_jobs()
    batch, items = await _batch(api, batch_id)
    assert (batch["status"], batch["successCount"], batch["failedCount"]) == ("COMPLETED", 2, 1)
    assert [item["status"] for item in items] == ["SUCCESS", "FAILED", "SUCCESS"]
    async with services.db.sessions() as session:
        failed = await session.get(SyncItem, items[1]["id"])
    assert failed is not None and failed.error_message is not None
    assert "could not be recorded" in failed.error_message, failed.error_message
    assert "too long" in failed.error_message, failed.error_message


async def test_a_stored_record_that_no_longer_validates_fails_alone(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    batch_id = await new_batch(api, company, [expense(reference=f"r{i}") for i in range(3)])
    async with services.db.transaction() as session:  # as a hand-edited row would be
        item = (await session.scalars(select(SyncItem).where(SyncItem.reference == "r1"))).one()
        await session.execute(
            update(SyncItem)
            .where(col(SyncItem.id) == item.id)
            .values(payload={**item.payload, "amount": "-1"})
        )
    await run_jobs()
    batch, items = await _batch(api, batch_id)
    assert (batch["status"], batch["successCount"], batch["failedCount"]) == ("COMPLETED", 2, 1)
    assert (items[1]["status"], items[1]["error"]["code"]) == ("FAILED", "PROVIDER_ERROR")


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (OperationalError("SELECT 1", {}, Exception("server closed the connection")), True),
        (InterfaceError("SELECT 1", {}, Exception("connection is closed")), True),
        (DataError("INSERT", {}, Exception("value too long")), False),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (RedisConnectionError("Connection refused"), True),
        (ConnectionResetError(), True),
    ],
)
def test_only_lost_connections_are_outages(error: Exception, outage: bool) -> None:
    assert is_outage(error) is outage
