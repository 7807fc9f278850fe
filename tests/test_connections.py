"""Ledger connections: tokens refreshed before use and exactly once; expiry, then reconnect."""

import asyncio

from infra.services import Services
from ledgers import books as sandbox
from ledgers.protocol import Entry, LedgerFactory
from ledgers.refresh import usable_connection
from models.company import NewCompany, connection_of
from models.tables import utcnow
from tests.conftest import Api, RunJobs, sandbox_ledger
from tests.helpers import BATCH, RETRY, data, expense, expense_record, new_batch

CONNECTION = "query($c: ID!) { connection(companyId: $c) { status expiresAt } }"
RECONNECT = "mutation($c: ID!) { reconnect(companyId: $c) { status expiresAt } }"


async def _expire(services: Services, company: NewCompany, *, revoke: bool = False) -> None:
    async with services.db.transaction() as session:
        await sandbox.expire_access_token(session, company_id=company.company.id)
        if revoke:
            await sandbox.revoke(session, company_id=company.company.id)


async def test_an_expiring_token_is_refreshed_once_however_many_workers_race(
    company: NewCompany, services: Services, ledgers: LedgerFactory
) -> None:
    await _expire(services, company)
    stale = await connection_of(services.db, company_id=company.company.id)
    racing = [usable_connection(services, ledgers, stale) for _ in range(8)]
    fresh = await asyncio.gather(*racing)
    ledger = await sandbox_ledger(services, company)
    assert await ledger.refreshes() == 1  # the refresh token is single-use: a second would fail
    assert {c.expires_at for c in fresh} == {fresh[0].expires_at}
    assert fresh[0].expires_at is not None and fresh[0].expires_at > utcnow()
    assert fresh[0].status == "ACTIVE"
    await ledger.push([Entry("k", expense_record())])  # the new access token works


async def test_jobs_refresh_an_expired_token_before_pushing(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    await _expire(services, company)
    batches = [await new_batch(api, company, [expense()] * 3) for _ in range(3)]
    await run_jobs()  # three jobs at once find the token expired
    for batch_id in batches:
        batch = data(await api.gql(BATCH, {"id": batch_id}))["syncBatch"]
        assert (batch["status"], batch["successCount"]) == ("COMPLETED", 3)
    assert await (await sandbox_ledger(services, company)).refreshes() == 1
    connection = data(await api.gql(CONNECTION, {"c": company.company.id}))["connection"]
    assert connection["status"] == "ACTIVE"


async def test_a_refused_refresh_expires_the_connection_until_reconnect(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    await _expire(services, company, revoke=True)
    batch_id = await new_batch(api, company, [expense()] * 3)
    await run_jobs()
    batch = data(await api.gql(BATCH, {"id": batch_id}))["syncBatch"]
    assert (batch["status"], batch["failedCount"]) == ("FAILED", 3)
    errors = [edge["node"]["error"] for edge in batch["items"]["edges"]]
    assert {e["code"] for e in errors} == {"CONNECTION_EXPIRED"}
    assert all(e["retryable"] and "Reconnect" in e["hint"] for e in errors)
    connection = data(await api.gql(CONNECTION, {"c": company.company.id}))["connection"]
    assert connection["status"] == "EXPIRED"

    renewed = data(await api.gql(RECONNECT, {"c": company.company.id}))["reconnect"]
    assert renewed["status"] == "ACTIVE"
    data(await api.gql(RETRY, {"batchId": batch_id}))
    await run_jobs()
    batch = data(await api.gql(BATCH, {"id": batch_id}))["syncBatch"]
    assert (batch["status"], batch["successCount"], batch["failedCount"]) == ("COMPLETED", 3, 0)
