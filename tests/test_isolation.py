"""Tenant isolation, walked: every root field of the schema, with company A's ids and company
B's key. Nothing of A comes back, nothing of A changes, and every refusal reads as "not found".
"""

import json
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text

from api.core_schema import graphql_schema
from api.schema import schema
from infra.services import Services
from models.company import NewCompany
from tests.conftest import Api, RunJobs
from tests.helpers import data, expense
from tests.live import GraphQLWebSocket
from tests.processes import free_port
from tests.receiver import pump

SECRET = "A-only-7f3c"  # in A's references and ledger, so a leak is easy to spot
LINE = {"description": "Paper", "amount": "1.00", "accountId": "453"}
DATES = {"issueDate": "2026-11-01", "dueDate": "2026-12-01", "currency": "USD"}
BILL = {"vendorName": "V", **DATES, "lines": [LINE]}
INVOICE = {"customerName": "C", **DATES, "lines": [{**LINE, "accountId": "200"}]}
ACCOUNT = {"code": "A1", "name": "x", "type": "EXPENSE"}
TAX_RATE = {"code": "T1", "name": "x", "rate": "5"}

Ids = dict[str, Any]  # A's ids: company, batch, items, failed
Operation = tuple[str, Callable[[Ids], dict[str, Any]]]

OPERATIONS: dict[str, Operation] = {
    "syncBatch": (
        "query($id: ID!) { syncBatch(id: $id) { id estimatedCompletionAt waitingFor "
        "items { edges { node { id reference } } } } }",
        lambda a: {"id": a["batch"]},
    ),
    "syncBatches": (
        "query($c: ID!) { syncBatches(companyId: $c) { totalCount edges { node { id } } } }",
        lambda a: {"c": a["company"]},
    ),
    "failedItems": (
        "query($b: ID!) { failedItems(batchId: $b) { totalCount edges { node { id } } } }",
        lambda a: {"b": a["batch"]},
    ),
    "syncItems": (
        "query($b: ID!) { syncItems(batchId: $b) { totalCount edges { node { reference } } } }",
        lambda a: {"b": a["batch"]},
    ),
    "accounts": (
        "query($c: ID!) { accounts(companyId: $c) { code name } }",
        lambda a: {"c": a["company"]},
    ),
    "taxRates": (
        "query($c: ID!) { taxRates(companyId: $c) { code } }",
        lambda a: {"c": a["company"]},
    ),
    "trackingCategories": (
        "query($c: ID!) { trackingCategories(companyId: $c) { name options } }",
        lambda a: {"c": a["company"]},
    ),
    "connection": (
        "query($c: ID!) { connection(companyId: $c) { status "
        "rateLimit { remainingThisMinute appRemainingThisMinute heldBy } } }",
        lambda a: {"c": a["company"]},
    ),
    "validateExpenses": (
        "query($c: ID!, $r: [ExpenseInput!]!) "
        "{ validateExpenses(companyId: $c, expenses: $r) { code } }",
        lambda a: {"c": a["company"], "r": [expense()]},
    ),
    "validateBills": (
        "query($c: ID!, $r: [BillInput!]!) { validateBills(companyId: $c, bills: $r) { code } }",
        lambda a: {"c": a["company"], "r": [BILL]},
    ),
    "validateInvoices": (
        "query($c: ID!, $r: [InvoiceInput!]!) "
        "{ validateInvoices(companyId: $c, invoices: $r) { code } }",
        lambda a: {"c": a["company"], "r": [INVOICE]},
    ),
    "createExpenses": (
        "mutation($c: ID!, $r: [ExpenseInput!]!) "
        "{ createExpenses(companyId: $c, expenses: $r) { syncBatchId } }",
        lambda a: {"c": a["company"], "r": [expense()]},
    ),
    "createBills": (
        "mutation($c: ID!, $r: [BillInput!]!) "
        "{ createBills(companyId: $c, bills: $r) { syncBatchId } }",
        lambda a: {"c": a["company"], "r": [BILL]},
    ),
    "createInvoices": (
        "mutation($c: ID!, $r: [InvoiceInput!]!) "
        "{ createInvoices(companyId: $c, invoices: $r) { syncBatchId } }",
        lambda a: {"c": a["company"], "r": [INVOICE]},
    ),
    "record": (
        "query($id: ID!) { record(id: $id) { id externalId version voided "
        "items { totalCount edges { node { id reference } } } } }",
        lambda a: {"id": a["failed"]},
    ),
    "updateExpenses": (
        "mutation($c: ID!, $r: [ExpenseUpdateInput!]!) "
        "{ updateExpenses(companyId: $c, expenses: $r) { syncBatchId } }",
        lambda a: {"c": a["company"], "r": [expense(recordId=a["failed"])]},
    ),
    "updateBills": (
        "mutation($c: ID!, $r: [BillUpdateInput!]!) "
        "{ updateBills(companyId: $c, bills: $r) { syncBatchId } }",
        lambda a: {"c": a["company"], "r": [{**BILL, "recordId": a["failed"]}]},
    ),
    "updateInvoices": (
        "mutation($c: ID!, $r: [InvoiceUpdateInput!]!) "
        "{ updateInvoices(companyId: $c, invoices: $r) { syncBatchId } }",
        lambda a: {"c": a["company"], "r": [{**INVOICE, "recordId": a["failed"]}]},
    ),
    "voidRecords": (
        "mutation($c: ID!, $r: [ID!]!) { voidRecords(companyId: $c, recordIds: $r) "
        "{ syncBatchId } }",
        lambda a: {"c": a["company"], "r": [a["failed"]]},
    ),
    "retryFailedItems": (
        "mutation($b: ID!, $i: [ID!]) "
        "{ retryFailedItems(batchId: $b, itemIds: $i) { items { id } } }",
        lambda a: {"b": a["batch"], "i": [a["failed"]]},
    ),
    "attachFiles": (
        "mutation($i: ID!, $f: [Upload!]!) { attachFiles(itemId: $i, files: $f) { id } }",
        lambda a: {"i": a["failed"], "f": []},  # real files: tests/test_attachments.py
    ),
    "reconnect": (
        "mutation($c: ID!) { reconnect(companyId: $c) { status } }",
        lambda a: {"c": a["company"]},
    ),
    "linkLedger": (
        "mutation($c: ID!) { linkLedger(companyId: $c, provider: XERO) { authorizationUrl } }",
        lambda a: {"c": a["company"]},
    ),
    "createAccount": (
        "mutation($c: ID!, $i: AccountInput!) { createAccount(companyId: $c, input: $i) { code } }",
        lambda a: {"c": a["company"], "i": ACCOUNT},
    ),
    "createTaxRate": (
        "mutation($c: ID!, $i: TaxRateInput!) { createTaxRate(companyId: $c, input: $i) { code } }",
        lambda a: {"c": a["company"], "i": TAX_RATE},
    ),
    "company": (  # the caller's own company, whoever asks: checked below
        "query { company { id name lastEventId } }",
        lambda a: {},
    ),
    "alerts": (
        "query($c: ID!) { alerts(companyId: $c) { id message } }",
        lambda a: {"c": a["company"]},
    ),
    "searchItems": (
        "query($c: ID!, $r: String!) { searchItems(companyId: $c, reference: $r) "
        "{ totalCount edges { node { reference } } } }",
        lambda a: {"c": a["company"], "r": SECRET},
    ),
    "syncStats": (
        "query($c: ID!) { syncStats(companyId: $c) { buckets { start synced failed } } }",
        lambda a: {"c": a["company"]},
    ),
    "webhookEndpoints": (
        "query($c: ID!) { webhookEndpoints(companyId: $c) { id url description } }",
        lambda a: {"c": a["company"]},
    ),
    "webhookDeliveries": (
        "query($e: ID!) { webhookDeliveries(endpointId: $e) { totalCount edges { node { id } } } }",
        lambda a: {"e": a["endpoint"]},
    ),
    "createWebhookEndpoint": (
        "mutation($c: ID!, $i: WebhookEndpointInput!) "
        "{ createWebhookEndpoint(companyId: $c, input: $i) { secret } }",
        lambda a: {
            "c": a["company"],
            "i": {"url": "https://b.test/", "eventTypes": ["ITEM_FAILED"]},
        },
    ),
    "updateWebhookEndpoint": (
        "mutation($e: ID!) { updateWebhookEndpoint(id: $e, input: {enabled: false}) { url } }",
        lambda a: {"e": a["endpoint"]},
    ),
    "deleteWebhookEndpoint": (
        "mutation($e: ID!) { deleteWebhookEndpoint(id: $e) }",
        lambda a: {"e": a["endpoint"]},
    ),
    "replayWebhookDelivery": (
        "mutation($d: ID!) { replayWebhookDelivery(id: $d) { payload } }",
        lambda a: {"d": a["delivery"]},
    ),
    "syncBatchEvents": (
        "subscription($b: ID!, $after: ID) "
        "{ syncBatchEvents(batchId: $b, afterEventId: $after) { eventId itemId } }",
        lambda a: {"b": a["batch"], "after": "0"},  # from the first: nothing of A either
    ),
    "companySyncEvents": (
        "subscription($c: ID!, $after: ID) "
        "{ companySyncEvents(companyId: $c, afterEventId: $after) { eventId itemId } }",
        lambda a: {"c": a["company"], "after": "0"},
    ),
    "companyAlerts": (
        "subscription($c: ID!) { companyAlerts(companyId: $c) { id message } }",
        lambda a: {"c": a["company"]},
    ),
}
OWNED = "company_id = :c"
TABLES = {  # each table, and which of its rows are A's
    "company": "id = :c",
    "push_attempt": "item_id IN (SELECT id FROM sync_item WHERE company_id = :c)",
    "webhook_attempt": "delivery_id IN (SELECT id FROM webhook_delivery WHERE company_id = :c)",
    **dict.fromkeys(
        ["connection", "sync_batch", "sync_item", "sync_record", "sync_event", "sandbox_account",
         "sandbox_tax_rate", "sandbox_record", "sandbox_behaviour", "alert",
         "webhook_endpoint", "webhook_delivery"],
        OWNED,
    ),
}  # fmt: skip


def test_the_walk_covers_every_root_field() -> None:
    graphql = graphql_schema(schema)
    roots = [graphql.query_type, graphql.mutation_type, graphql.subscription_type]
    assert {name for root in roots if root for name in root.fields} == set(OPERATIONS)


async def _rows_of(services: Services, company_id: str) -> dict[str, list[str]]:
    """Every row of A's, in every table, as text: the before-and-after of the walk."""
    snapshot = {}
    async with services.db.sessions() as session:
        for table, owned in TABLES.items():
            rows = await session.execute(
                text(f"SELECT * FROM {table} WHERE {owned} ORDER BY 1"), {"c": company_id}
            )
            snapshot[table] = [json.dumps(list(row), default=str) for row in rows]
    return snapshot


async def _webhook_ids(api: Api, company_id: str) -> dict[str, str]:
    """A's endpoint and its delivery, asked with A's key."""
    found = data(await api.gql(OPERATIONS["webhookEndpoints"][0], {"c": company_id}))
    endpoint_id = found["webhookEndpoints"][0]["id"]
    found = data(await api.gql(OPERATIONS["webhookDeliveries"][0], {"e": endpoint_id}))
    return {
        "endpoint": endpoint_id,
        "delivery": found["webhookDeliveries"]["edges"][0]["node"]["id"],
    }


def _empty(value: Any) -> bool:
    """Null, or a connection/list with nothing in it."""
    if value is None or value == []:
        return True
    return isinstance(value, dict) and value.get("totalCount") == 0 and value.get("edges") == []


async def test_another_companys_key_gets_nothing_of_it_and_changes_nothing(
    api: Api,
    company: NewCompany,
    other_company: NewCompany,
    services: Services,
    live_server: str,
    run_jobs: RunJobs,
) -> None:
    hook = {"url": f"http://127.0.0.1:{free_port()}/", "eventTypes": ["ITEM_FAILED"]}
    created_hook = data(
        await api.gql(
            OPERATIONS["createWebhookEndpoint"][0],
            {"c": company.company.id, "i": {**hook, "description": SECRET}},
        )
    )
    assert created_hook["createWebhookEndpoint"]["secret"]
    account = {"code": "A9", "name": SECRET, "type": "EXPENSE"}
    mutation = OPERATIONS["createAccount"][0]
    data(await api.gql(mutation, {"c": company.company.id, "i": account}))
    expenses = [expense(reference=SECRET), expense(accountId="999", reference=SECRET)]
    created = data(
        await api.gql(OPERATIONS["createExpenses"][0], {"c": company.company.id, "r": expenses})
    )
    await run_jobs()
    await pump(services)  # A's delivery, and its (failed) attempt
    batch_id = created["createExpenses"]["syncBatchId"]
    items = data(await api.gql(OPERATIONS["syncItems"][0], {"b": batch_id}))
    assert len(items["syncItems"]["edges"]) == 2
    failed = data(await api.gql(OPERATIONS["failedItems"][0], {"b": batch_id}))
    ids = {
        "company": company.company.id,
        "batch": batch_id,
        "failed": failed["failedItems"]["edges"][0]["node"]["id"],
        **await _webhook_ids(api, company.company.id),
    }
    async with services.db.transaction() as session:  # A's first event past retention:
        await session.execute(  # A's key would hear EVENTS_EXPIRED, with A's oldest event id
            text("UPDATE company SET events_expired_through = 1 WHERE id = :c"),
            {"c": company.company.id},
        )
    before = await _rows_of(services, company.company.id)

    for name, (document, variables) in OPERATIONS.items():
        if document.startswith("subscription"):
            async with GraphQLWebSocket.connect(live_server, other_company.api_key) as ws:
                await ws.subscribe("1", document, variables(ids))
                answer = await ws.next("1")
            assert answer["type"] == "error", (name, answer)
            codes = {e["extensions"]["code"] for e in answer["payload"]}
            body = json.dumps(answer)
            async with httpx.AsyncClient(base_url=f"http://{live_server}") as http:  # over SSE
                streamed = await http.post(
                    "/graphql",
                    json={"query": document, "variables": variables(ids)},
                    headers={
                        "Authorization": f"Bearer {other_company.api_key}",
                        "Accept": "text/event-stream",
                    },
                )
            (result,) = [
                json.loads(line[6:])
                for line in streamed.text.splitlines()
                if line.startswith("data: {")
            ]
            assert result["data"] is None, (name, result)
            codes |= {e["extensions"]["code"] for e in result["errors"]}
            body += streamed.text
        else:
            response = await api.gql(document, variables(ids), key=other_company.api_key)
            codes = {e["extensions"]["code"] for e in response.get("errors", [])}
            answers = (response.get("data") or {}).values()
            if name == "company":  # B's own, not A's
                assert response["data"]["company"]["id"] == other_company.company.id
            else:
                assert all(_empty(v) for v in answers), (name, response)
            body = json.dumps(response)
        assert codes <= {"NOT_FOUND"}, (name, body)
        assert SECRET not in body, (name, body)

    assert await _rows_of(services, company.company.id) == before
