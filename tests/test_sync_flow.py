"""The seed's scenario end to end: API → database → arq worker → sandbox ledger → events."""

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from infra import keys
from infra.services import Services
from ledgers import books as sandbox
from ledgers.protocol import Entry, Ledger, Outcome
from ledgers.sandbox import SandboxLedger
from models.company import NewCompany
from models.secrets import open_tokens
from models.tables import Connection
from tests.conftest import Api, RunJobs
from tests.helpers import BATCH, BUDGET, CREATE_EXPENSES, RETRY, batch_events, data, error, expense

CREATE_ACCOUNT = """
mutation($companyId: ID!, $input: AccountInput!) {
  createAccount(companyId: $companyId, input: $input) { code name type }
}
"""
CREATE_TAX_RATE = """
mutation($companyId: ID!, $input: TaxRateInput!) {
  createTaxRate(companyId: $companyId, input: $input) { code name rate }
}
"""


async def _batch(api: Api, batch_id: str) -> dict[str, Any]:
    batch: dict[str, Any] = data(await api.gql(BATCH, {"id": batch_id}))["syncBatch"]
    return batch


def _items(batch: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in batch["items"]["edges"]]


async def test_seed_scenario_fails_two_then_fixes_and_retries_them(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    created = data(
        await api.gql(
            CREATE_EXPENSES,
            {
                "companyId": company.company.id,
                "expenses": [
                    expense(reference="ok"),
                    expense(reference="bad-account", accountId="999"),
                    expense(reference="bad-tax", taxRateId="GST9"),
                ],
            },
        )
    )["createExpenses"]
    batch_id = created["syncBatchId"]
    assert created["batch"] == {"status": "PENDING", "itemCount": 3, "pendingCount": 3}
    ok, bad_account, bad_tax = (e["id"] for e in created["expenses"])

    await run_jobs()
    batch = await _batch(api, batch_id)
    assert (batch["status"], batch["successCount"], batch["failedCount"]) == ("COMPLETED", 1, 2)
    items = {item["id"]: item for item in _items(batch)}
    assert items[ok]["status"] == "SUCCESS" and items[ok]["externalId"]
    assert items[bad_account]["error"]["code"] == "INVALID_ACCOUNT_ID"
    assert "'999'" in items[bad_account]["error"]["message"]
    assert "create the account" in items[bad_account]["error"]["hint"]
    assert items[bad_tax]["error"]["code"] == "INVALID_TAX_RATE_ID"
    assert items[bad_tax]["error"]["retryable"] is False

    account = {"code": "999", "name": "Staff Welfare", "type": "EXPENSE"}
    data(await api.gql(CREATE_ACCOUNT, {"companyId": company.company.id, "input": account}))
    retried = data(await api.gql(RETRY, {"batchId": batch_id, "itemIds": [bad_account]}))
    assert retried["retryFailedItems"]["items"] == [{"id": bad_account, "status": "PENDING"}]
    assert retried["retryFailedItems"]["batch"]["status"] == "PROCESSING"
    await run_jobs()
    batch = await _batch(api, batch_id)
    assert (batch["status"], batch["successCount"], batch["failedCount"]) == ("COMPLETED", 2, 1)

    tax_rate = {"code": "GST9", "name": "GST 9%", "rate": "9"}
    data(await api.gql(CREATE_TAX_RATE, {"companyId": company.company.id, "input": tax_rate}))
    retried = data(await api.gql(RETRY, {"batchId": batch_id}))
    assert [i["id"] for i in retried["retryFailedItems"]["items"]] == [bad_tax]
    await run_jobs()
    batch = await _batch(api, batch_id)
    assert (batch["status"], batch["successCount"], batch["failedCount"]) == ("COMPLETED", 3, 0)
    assert all(item["error"] is None for item in _items(batch))

    events = await batch_events(services.db, batch_id=batch_id)
    ids = [event.id or 0 for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    moves = [(e.item_id, e.from_status, e.to_status) for e in events]
    ok_path = ["PENDING", "PROCESSING", "SUCCESS"]
    retried_path = [*ok_path[:2], "FAILED", "PENDING", "PROCESSING", "SUCCESS"]
    assert [m[2] for m in moves if m[0] == ok] == ok_path
    assert [m[2] for m in moves if m[0] == bad_account] == retried_path
    assert [m[2] for m in moves if m[0] == bad_tax] == retried_path
    batch_path = ["PENDING", "PROCESSING", "COMPLETED"] + ["PROCESSING", "COMPLETED"] * 2
    assert [m[2] for m in moves if m[0] is None] == batch_path
    for index, (item_id, before, _) in enumerate(moves):  # each move leaves the last status
        earlier = [m[2] for m in moves[:index] if m[0] == item_id]
        assert before == (earlier[-1] if earlier else None)

    async with services.db.sessions() as session:
        posted = await sandbox.records(session, company_id=company.company.id)
    assert sorted(r.idempotency_key for r in posted) == sorted([ok, bad_account, bad_tax])


async def test_batch_terminal_event_follows_every_item_terminal_event(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    expenses = [expense(reference=f"r{i}") for i in range(120)]  # more than two chunks
    expenses[70] = expense(accountId="200")  # an income account: refused by the ledger
    created = data(
        await api.gql(CREATE_EXPENSES, {"companyId": company.company.id, "expenses": expenses})
    )
    batch_id = created["createExpenses"]["syncBatchId"]
    await run_jobs()

    events = await batch_events(services.db, batch_id=batch_id)
    completed = next(e for e in events if e.item_id is None and e.to_status == "COMPLETED")
    terminal = [e for e in events if e.item_id and e.to_status in ("SUCCESS", "FAILED")]
    assert len(terminal) == 120
    assert all(
        e.id is not None and completed.id is not None and e.id < completed.id for e in terminal
    )
    batch = await _batch(api, batch_id)
    assert (batch["successCount"], batch["failedCount"], batch["pendingCount"]) == (119, 1, 0)
    failed = [i for i in _items(batch) if i["status"] == "FAILED"]
    assert failed == []  # the first page holds 20 items; the failed one is the 71st
    page = data(
        await api.gql(
            """query($b: ID!) {
              failedItems(batchId: $b) { totalCount edges { node { error { code message } } } }
            }""",
            {"b": batch_id},
        )
    )["failedItems"]
    assert page["totalCount"] == 1
    assert page["edges"][0]["node"]["error"]["code"] == "VALIDATION_ERROR"
    assert "REVENUE account" in page["edges"][0]["node"]["error"]["message"]


async def test_every_transition_is_published_on_the_company_channel(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    pubsub = services.redis.pubsub()
    await pubsub.subscribe(keys.events_channel(company.company.id))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    created = data(
        await api.gql(CREATE_EXPENSES, {"companyId": company.company.id, "expenses": [expense()]})
    )
    batch_id = created["createExpenses"]["syncBatchId"]
    await run_jobs()

    logged = await batch_events(services.db, batch_id=batch_id)
    heard: list[dict[str, Any]] = []
    while len(heard) < len(logged):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None, f"heard {len(heard)} of {len(logged)} events"
        heard.extend(json.loads(message["data"]))  # a transition's events in one message
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert [h["eventId"] for h in heard] == [str(e.id) for e in logged]
    assert heard[-1] | {"eventId": "", "occurredAt": ""} == {
        "eventId": "",
        "seq": len(logged),
        "companyId": company.company.id,
        "batchId": batch_id,
        "itemId": None,
        "attachmentId": None,
        "operation": None,
        "fromStatus": "PROCESSING",
        "toStatus": "COMPLETED",
        "occurredAt": "",
        "error": None,
    }


async def test_batch_fails_whole_when_the_connection_is_expired(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    async with services.db.transaction() as session:
        await session.execute(
            text("UPDATE connection SET status = 'EXPIRED' WHERE company_id = :c"),
            {"c": company.company.id},
        )
    created = data(
        await api.gql(
            CREATE_EXPENSES, {"companyId": company.company.id, "expenses": [expense(), expense()]}
        )
    )
    await run_jobs()
    batch = await _batch(api, created["createExpenses"]["syncBatchId"])
    assert batch["status"] == "FAILED"
    assert batch["error"] == {"code": "CONNECTION_EXPIRED"}
    assert batch["failedCount"] == 2
    for item in _items(batch):
        assert item["error"]["code"] == "CONNECTION_EXPIRED"
        assert item["error"]["retryable"] is True
        assert "Reconnect" in item["error"]["hint"]


async def test_bills_and_invoices_sync_to_their_own_kinds_of_account(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    lines = [
        {"amount": "100.00", "accountId": "461", "taxRateId": "INPUT", "description": "Paper"},
        {"amount": "20.05", "accountId": "425"},
    ]
    bill = {
        "vendorName": "Paper Co",
        "issueDate": "2026-11-01",
        "dueDate": "2026-12-01",
        "currency": "EUR",
        "lines": lines,
        "reference": "bill-1",
    }
    bills = data(
        await api.gql(
            """mutation($c: ID!, $bills: [BillInput!]!) {
              createBills(companyId: $c, bills: $bills) {
                syncBatchId bills { id total vendorName lines { amount accountId } }
              }
            }""",
            {"c": company.company.id, "bills": [bill]},
        )
    )["createBills"]
    assert bills["bills"][0]["total"] == "120.05"
    invoice = {
        "customerName": "Big Client",
        "issueDate": "2026-11-01",
        "dueDate": "2026-11-15",
        "currency": "EUR",
        "lines": [{"amount": "500", "accountId": "200", "taxRateId": "OUTPUT"}],
    }
    wrong = invoice | {"lines": [{"amount": "5", "accountId": "429"}]}  # an expense account
    invoices = data(
        await api.gql(
            """mutation($c: ID!, $invoices: [InvoiceInput!]!) {
              createInvoices(companyId: $c, invoices: $invoices) { syncBatchId }
            }""",
            {"c": company.company.id, "invoices": [invoice, wrong]},
        )
    )["createInvoices"]
    await run_jobs()

    bill_batch = await _batch(api, bills["syncBatchId"])
    assert (bill_batch["status"], bill_batch["successCount"]) == ("COMPLETED", 1)
    invoice_items = _items(await _batch(api, invoices["syncBatchId"]))
    assert [i["status"] for i in invoice_items] == ["SUCCESS", "FAILED"]
    assert invoice_items[1]["error"]["code"] == "VALIDATION_ERROR"

    query = """query($b: ID!) { syncItems(batchId: $b) { edges { node { record {
      __typename ... on Invoice { customerName total lines { accountId taxRateId } }
    } } } } }"""
    records = data(await api.gql(query, {"b": invoices["syncBatchId"]}))["syncItems"]["edges"]
    assert records[0]["node"]["record"] == {
        "__typename": "Invoice",
        "customerName": "Big Client",
        "total": "500",
        "lines": [{"accountId": "200", "taxRateId": "OUTPUT"}],
    }
    async with services.db.sessions() as session:
        posted = await sandbox.records(session, company_id=company.company.id)
    assert sorted((r.record_type, r.amount) for r in posted) == [
        ("BILL", "120.05"),
        ("INVOICE", "500"),
    ]


async def test_retrying_an_item_that_has_not_failed_is_refused(
    api: Api, synced_batch: dict[str, Any]
) -> None:
    batch_id = synced_batch["syncBatchId"]
    succeeded, failed = (e["id"] for e in synced_batch["expenses"])

    refused = error(await api.gql(RETRY, {"batchId": batch_id, "itemIds": [failed, succeeded]}))
    assert refused["extensions"] == {"code": "CONFLICT", "field": "itemIds.1"}
    unknown = error(await api.gql(RETRY, {"batchId": batch_id, "itemIds": ["itm_nope"]}))
    assert unknown["extensions"] == {"code": "NOT_FOUND", "field": "itemIds.0"}
    batch = await _batch(api, batch_id)
    assert (batch["status"], batch["failedCount"]) == ("COMPLETED", 1)  # nothing was retried

    retried_all = data(await api.gql(RETRY, {"batchId": batch_id, "itemIds": []}))
    assert [i["id"] for i in retried_all["retryFailedItems"]["items"]] == [failed]


class _BrokenLedger(SandboxLedger):
    """The sandbox, except that calls with a record referenced 'boom' crash unclassified."""

    async def push(self, entries: Sequence[Entry]) -> list[Outcome]:
        if any(entry.record.reference == "boom" for entry in entries):
            raise RuntimeError("socket closed")
        return await super().push(entries)


async def test_an_unexpected_ledger_failure_is_a_retryable_provider_error(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    created, other = [
        data(
            await api.gql(
                CREATE_EXPENSES,
                {"companyId": company.company.id, "expenses": [expense(reference=reference)]},
            )
        )["createExpenses"]
        for reference in ("boom", "fine")
    ]

    def broken(connection: Connection) -> Ledger:
        tokens = open_tokens(services.vault, connection)
        return _BrokenLedger(services, company_id=connection.company_id, tokens=tokens)

    await run_jobs(broken)
    (boom,) = _items(await _batch(api, created["syncBatchId"]))
    (fine,) = _items(await _batch(api, other["syncBatchId"]))
    assert fine["status"] == "SUCCESS"
    assert boom["error"]["code"] == "PROVIDER_ERROR"
    assert boom["error"]["retryable"] is True
    assert boom["attempts"] == services.settings.max_push_attempts  # retried, then failed
    assert "RuntimeError" in boom["error"]["message"] and "socket" not in boom["error"]["message"]


ETA = "query($id: ID!) { syncBatch(id: $id) { status estimatedCompletionAt } }"


async def test_the_connections_budget_shows_its_limits_and_what_is_left(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    async with services.db.transaction() as session:
        await sandbox.configure(
            session, company_id=company.company.id, rate_limit_per_minute=600, documents_per_call=5
        )
    minute = int(time.time() // 60)
    created = data(
        await api.gql(
            CREATE_EXPENSES,
            {"companyId": company.company.id, "expenses": [expense() for _ in range(12)]},
        )
    )["createExpenses"]
    await run_jobs()
    budget = data(await api.gql(BUDGET, {"c": company.company.id}))["connection"]["rateLimit"]
    assert budget["callsPerMinute"] == 600 and budget["documentsPerCall"] == 5
    assert budget["concurrent"] == services.settings.sandbox_max_concurrent
    assert (budget["dailyLimit"], budget["dailyRemaining"]) == (None, None)  # it has none
    assert (budget["appCallsPerMinute"], budget["appRemainingThisMinute"]) == (None, None)
    left = budget["remainingThisMinute"]
    if int(time.time() // 60) == minute:
        assert left == 600 - 3  # 12 documents, 5 a call
    else:  # the minute turned: some or all of the 3 calls were in the one before
        assert 600 - 3 <= left <= 600
    (item,) = {i["status"] for i in _items(await _batch(api, created["syncBatchId"]))}
    assert item == "SUCCESS"


async def test_a_batch_estimates_its_completion_behind_the_ones_queued_before_it(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    async with services.db.transaction() as session:  # 60 calls a minute, 2 records each
        await sandbox.configure(
            session, company_id=company.company.id, rate_limit_per_minute=60, documents_per_call=2
        )
    variables = {"companyId": company.company.id, "expenses": [expense() for _ in range(20)]}
    first, second = [
        data(await api.gql(CREATE_EXPENSES, variables))["createExpenses"]["syncBatchId"]
        for _ in range(2)
    ]
    now = datetime.now(UTC)
    due = []
    for batch_id in (first, second):
        batch = data(await api.gql(ETA, {"id": batch_id}))["syncBatch"]
        due.append((datetime.fromisoformat(batch["estimatedCompletionAt"]) - now).total_seconds())
    assert 8 < due[0] < 12 and 18 < due[1] < 22, due  # 10 calls each, the second behind
    async with services.db.transaction() as session:  # unlimited again, to finish quickly
        await sandbox.configure(
            session,
            company_id=company.company.id,
            rate_limit_per_minute=None,
            documents_per_call=None,
        )
    await run_jobs()
    for batch_id in (first, second):
        batch = data(await api.gql(ETA, {"id": batch_id}))["syncBatch"]
        assert (batch["status"], batch["estimatedCompletionAt"]) == ("COMPLETED", None)


async def test_every_redis_key_the_service_leaves_is_under_its_prefix(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    """A sync (the sandbox's limits, the gateway's limiter, the chart, leases, the API's rate
    limit, alert outcomes) leaves only `sync2books:` keys, and arq's own."""
    variables = {"companyId": company.company.id, "expenses": [expense(), expense(accountId="9")]}
    data(await api.gql(CREATE_EXPENSES, variables))
    await run_jobs()
    found = {key.decode() async for key in services.redis.scan_iter()}
    assert found, "a sync leaves keys behind"
    assert [key for key in found if not key.startswith((keys.PREFIX, "arq:"))] == []
