"""Records that change, against the sandbox on both backends: updates and voids go through
the same batches, items and events as creates, each record's operations reach the ledger in
the order they were accepted, and the ledger holds one document per record, with the content
of the latest operation that succeeded."""

import traceback
from decimal import Decimal
from typing import Any

import pytest
from arq import Retry
from sqlalchemy import func, select
from sqlmodel import col

from infra.services import Services
from jobs.context import WorkerContext, attach
from jobs.sync import run_sync, sync_batch
from ledgers import books as sandbox
from models.company import NewCompany
from models.sandbox import SandboxRecord
from models.tables import SyncBatch
from tests.conftest import Api, RunJobs
from tests.helpers import RETRY, batch_events, create_expenses, data, error, expense
from tests.live import GraphQLWebSocket

UPDATE_EXPENSES = """
mutation Update($c: ID!, $r: [ExpenseUpdateInput!]!, $force: Boolean, $key: String) {
  updateExpenses(companyId: $c, expenses: $r, force: $force, idempotencyKey: $key) {
    syncBatchId
    batch { status itemCount }
    expenses { id amount description }
  }
}
"""
VOID = """
mutation Void($c: ID!, $r: [ID!]!) {
  voidRecords(companyId: $c, recordIds: $r) { syncBatchId batch { itemCount } }
}
"""
RECORD = """
query Record($id: ID!) {
  record(id: $id) {
    id recordType externalId version voided
    items(first: 50) { totalCount edges { node {
      id recordId operation sequence status externalId note error { code hint }
      record { ... on Expense { amount description } }
    } } }
  }
}
"""
BILL = {
    "vendorName": "Paper Co",
    "issueDate": "2026-11-01",
    "dueDate": "2026-12-01",
    "currency": "USD",
    "lines": [{"amount": "10.00", "accountId": "453"}],
}


async def _update(
    api: Api, company: NewCompany, *changes: dict[str, Any], **arguments: Any
) -> dict[str, Any]:
    variables = {"c": company.company.id, "r": list(changes), **arguments}
    payload: dict[str, Any] = data(await api.gql(UPDATE_EXPENSES, variables))["updateExpenses"]
    return payload


async def _record(api: Api, record_id: str) -> dict[str, Any]:
    found: dict[str, Any] = data(await api.gql(RECORD, {"id": record_id}))["record"]
    return found


def _operations(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in record["items"]["edges"]]


async def _documents(services: Services, company: NewCompany) -> list[SandboxRecord]:
    async with services.db.sessions() as session:
        return await sandbox.records(session, company_id=company.company.id)


async def test_a_failed_create_is_fixed_by_an_update_and_its_retry_pushes_nothing(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    created = await create_expenses(api, company, [expense(accountId="999")])
    record_id = created["expenses"][0]["id"]
    await run_jobs()
    (failed,) = _operations(await _record(api, record_id))
    assert (failed["status"], failed["error"]["code"]) == ("FAILED", "INVALID_ACCOUNT_ID")

    updated = await _update(api, company, expense(recordId=record_id, accountId="429"))
    assert updated["expenses"][0]["id"] == record_id  # the record keeps its id
    await run_jobs()
    (document,) = await _documents(services, company)
    assert document.payload["account_id"] == "429" and document.idempotency_key == record_id

    retried = data(await api.gql(RETRY, {"batchId": created["syncBatchId"], "itemIds": None}))
    assert [i["status"] for i in retried["retryFailedItems"]["items"]] == ["PENDING"]
    await run_jobs()
    record = await _record(api, record_id)
    update, create = _operations(record)  # newest first
    assert (update["operation"], update["sequence"], update["status"]) == ("UPDATE", 2, "SUCCESS")
    assert (create["operation"], create["sequence"], create["status"]) == ("CREATE", 1, "SUCCESS")
    assert "nothing was sent" in create["note"] and update["id"] in create["note"]
    assert create["externalId"] == update["externalId"] == document.external_id
    assert (record["version"], record["externalId"]) == (2, document.external_id)
    assert len(await _documents(services, company)) == 1  # one document per record


async def test_an_update_of_a_synced_record_changes_its_one_document(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    created = await create_expenses(api, company, [expense(amount="12.50")])
    record_id = created["expenses"][0]["id"]
    await run_jobs()
    changed = expense(recordId=record_id, amount="99.10", description="Team dinner")
    updated = await _update(api, company, changed)
    assert updated["batch"] == {"status": "PENDING", "itemCount": 1}
    await run_jobs()

    (document,) = await _documents(services, company)
    assert (document.amount, document.version) == ("99.10", 2)
    assert document.payload["description"] == "Team dinner"
    record = await _record(api, record_id)
    assert (record["version"], record["voided"], record["recordType"]) == (2, False, "EXPENSE")
    update = _operations(record)[0]
    assert update["record"] == {"amount": "99.10", "description": "Team dinner"}
    assert update["recordId"] == record_id and update["note"] is None
    events = await batch_events(services.db, batch_id=updated["syncBatchId"])
    assert {e.operation for e in events if e.item_id} == {"UPDATE"}
    assert {e.operation for e in events if e.item_id is None} == {None}


async def test_twenty_updates_queued_behind_a_waiting_create_leave_the_twentieth(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    created = await create_expenses(api, company, [expense(amount="1.00")])
    record_id = created["expenses"][0]["id"]
    for n in range(2, 22):
        await _update(api, company, expense(recordId=record_id, amount=f"{n}.00"))
    await run_jobs()

    (document,) = await _documents(services, company)
    assert document.amount == "21.00"
    record = await _record(api, record_id)
    operations = _operations(record)
    assert [o["sequence"] for o in operations] == list(range(21, 0, -1))
    assert {o["status"] for o in operations} == {"SUCCESS"}
    assert record["version"] == 21
    assert document.version <= 2  # the waiting updates went with the create, or as one call


async def test_operations_of_one_record_wait_for_the_earlier_ones_in_other_batches(
    api: Api, company: NewCompany, services: Services, worker_context: WorkerContext
) -> None:
    created = await create_expenses(api, company, [expense(amount="1.00")])
    record_id = created["expenses"][0]["id"]
    updated = await _update(api, company, expense(recordId=record_id, amount="2.00"))
    with pytest.raises(Retry):  # its record's create waits in the first batch: not yet
        await run_sync(worker_context, batch_id=updated["syncBatchId"])
    assert await _documents(services, company) == []
    await run_sync(worker_context, batch_id=created["syncBatchId"])
    await run_sync(worker_context, batch_id=updated["syncBatchId"])
    (document,) = await _documents(services, company)
    assert document.amount == "2.00"


async def test_a_job_that_waits_keeps_nothing_of_its_run_alive(
    api: Api, company: NewCompany, worker_context: WorkerContext
) -> None:
    """A job that waits ends its run with arq's `Retry`, whose traceback would hold the run's
    frames (a chunk of items, their records) in a reference cycle through arq's job task until
    the collector's next full pass: some 55,000 objects each few seconds in a busy worker,
    every pass stopping all its jobs 50 to 130 ms. The traceback is cut to the job's own
    frame."""
    created = await create_expenses(api, company, [expense(amount="1.00")])
    record_id = created["expenses"][0]["id"]
    updated = await _update(api, company, expense(recordId=record_id, amount="2.00"))
    ctx: dict[str, object] = {"job_id": "sync:waits", "job_try": 1}
    attach(ctx, worker_context)
    with pytest.raises(Retry) as raised:  # its record's create waits in the first batch
        await sync_batch(ctx, updated["syncBatchId"])
    frames = [frame.name for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert frames[-1] == "sync_batch" and "run_sync" not in frames


async def test_a_void_voids_the_document_and_closes_the_record(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    created = await create_expenses(api, company, [expense(), expense(accountId="999")])
    synced, never = (e["id"] for e in created["expenses"])
    await run_jobs()
    voided = data(await api.gql(VOID, {"c": company.company.id, "r": [synced, never]}))
    assert voided["voidRecords"]["batch"]["itemCount"] == 2
    await run_jobs()

    (document,) = await _documents(services, company)
    assert (document.status, document.version) == ("VOIDED", 2)
    for record_id in (synced, never):
        record = await _record(api, record_id)
        assert record["voided"] is True
        assert _operations(record)[0]["status"] == "SUCCESS"
    assert "never reached the ledger" in _operations(await _record(api, never))[0]["note"]

    again = await api.gql(VOID, {"c": company.company.id, "r": [synced]})
    assert error(again)["extensions"] | {"field": "recordIds.0"} == error(again)["extensions"]
    assert error(again)["extensions"]["code"] == "CONFLICT"
    changed = await api.gql(
        UPDATE_EXPENSES, {"c": company.company.id, "r": [expense(recordId=synced)]}
    )
    assert error(changed)["extensions"]["field"] == "expenses.0.recordId"
    assert error(changed)["extensions"]["code"] == "CONFLICT"


async def test_a_document_changed_in_the_ledger_conflicts_until_forced(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    created = await create_expenses(api, company, [expense(amount="12.50")])
    record_id = created["expenses"][0]["id"]
    await run_jobs()
    (document,) = await _documents(services, company)
    async with services.db.transaction() as session:  # an accountant, in the ledger
        await sandbox.edit(
            session,
            company_id=company.company.id,
            external_id=document.external_id,
            amount=Decimal("13.00"),
            description=None,
        )
    await _update(api, company, expense(recordId=record_id, amount="20.00"))
    await run_jobs()
    update = _operations(await _record(api, record_id))[0]
    assert (update["status"], update["error"]["code"]) == ("FAILED", "LEDGER_CONFLICT")
    assert "force" in update["error"]["hint"]
    (document,) = await _documents(services, company)
    assert document.amount == "13.00"  # the accountant's change stands

    await _update(api, company, expense(recordId=record_id, amount="20.00"), force=True)
    await run_jobs()
    (document,) = await _documents(services, company)
    assert (document.amount, document.version) == ("20.00", 3)
    assert (await _record(api, record_id))["version"] == 3


async def test_a_record_that_is_unknown_foreign_or_of_another_type_is_refused(
    api: Api, company: NewCompany, other_company: NewCompany, services: Services
) -> None:
    mine = (await create_expenses(api, company, [expense()]))["expenses"][0]["id"]
    theirs = (await create_expenses(api, other_company, [expense()]))["expenses"][0]["id"]
    bills = data(
        await api.gql(
            "mutation($c: ID!, $b: [BillInput!]!) { createBills(companyId: $c, bills: $b) "
            "{ bills { id } } }",
            {"c": company.company.id, "b": [BILL]},
        )
    )["createBills"]["bills"]
    before = await batch_count(services, company)
    for record_id, code in (
        ("rec_unknown", "NOT_FOUND"),
        (theirs, "NOT_FOUND"),
        (bills[0]["id"], "BAD_USER_INPUT"),
    ):
        changes = [expense(recordId=mine), expense(recordId=record_id)]
        refused = error(await api.gql(UPDATE_EXPENSES, {"c": company.company.id, "r": changes}))
        assert refused["extensions"]["code"] == code, refused
        assert refused["extensions"]["field"] == "expenses.1.recordId"
    refused = error(await api.gql(VOID, {"c": company.company.id, "r": [theirs]}))
    assert (refused["extensions"]["code"], refused["extensions"]["field"]) == (
        "NOT_FOUND",
        "recordIds.0",
    )
    assert data(await api.gql(RECORD, {"id": theirs}))["record"] is None
    assert await batch_count(services, company) == before  # nothing was created


async def test_an_update_is_idempotent_under_its_key(
    api: Api, company: NewCompany, services: Services
) -> None:
    record_id = (await create_expenses(api, company, [expense()]))["expenses"][0]["id"]
    change = expense(recordId=record_id, amount="3.00")
    first = await _update(api, company, change, key="fix-1")
    again = await _update(api, company, change, key="fix-1")
    assert first["syncBatchId"] == again["syncBatchId"]
    other = await api.gql(
        UPDATE_EXPENSES,
        {"c": company.company.id, "r": [{**change, "amount": "4.00"}], "key": "fix-1"},
    )
    assert error(other)["extensions"]["code"] == "CONFLICT"
    assert len(_operations(await _record(api, record_id))) == 2


async def batch_count(services: Services, company: NewCompany) -> int:
    async with services.db.sessions() as session:
        found = await session.scalar(
            select(func.count()).where(col(SyncBatch.company_id) == company.company.id)
        )
    return int(found or 0)


BATCH_OPERATIONS = """subscription($b: ID!) {
  syncBatchEvents(batchId: $b, afterEventId: "0") { itemId operation fromStatus toStatus }
}"""


async def test_the_live_stream_says_what_each_item_does_to_its_record(
    api: Api, company: NewCompany, live_server: str, run_jobs: RunJobs
) -> None:
    record_id = (await create_expenses(api, company, [expense()]))["expenses"][0]["id"]
    await run_jobs()
    voided = data(await api.gql(VOID, {"c": company.company.id, "r": [record_id]}))
    batch_id = voided["voidRecords"]["syncBatchId"]
    async with GraphQLWebSocket.connect(live_server, company.api_key) as client:
        await client.subscribe("1", BATCH_OPERATIONS, {"b": batch_id})
        await run_jobs()
        events = await client.events("1")  # until the batch ends
    items = [(e["operation"], e["toStatus"]) for e in events if e["itemId"]]
    assert items == [("VOID", "PENDING"), ("VOID", "PROCESSING"), ("VOID", "SUCCESS")]
    assert {e["operation"] for e in events if e["itemId"] is None} == {None}
