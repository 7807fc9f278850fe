"""Idempotent creates: the same key and records give the first call's batch, never a second,
even when the two calls arrive together (in one API process or in two)."""

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from infra.services import Services
from infra.settings import Settings
from models.company import NewCompany
from models.tables import IdempotencyKey, utcnow
from tests.conftest import Api
from tests.helpers import data, error, expense
from tests.processes import cli, env_without_config, free_port, ready_client, running

CREATE = """
mutation($c: ID!, $e: [ExpenseInput!]!, $k: String) {
  createExpenses(companyId: $c, expenses: $e, idempotencyKey: $k) {
    syncBatchId expenses { id reference }
  }
}"""
CREATE_BILLS = """
mutation($c: ID!, $b: [BillInput!]!, $k: String) {
  createBills(companyId: $c, bills: $b, idempotencyKey: $k) { syncBatchId bills { id } }
}"""
CREATE_INVOICES = """
mutation($c: ID!, $i: [InvoiceInput!]!, $k: String) {
  createInvoices(companyId: $c, invoices: $i, idempotencyKey: $k) { syncBatchId invoices { id } }
}"""
COUNT = "query($c: ID!) { syncBatches(companyId: $c) { totalCount } }"
LINES = [{"amount": "10.00", "accountId": "200", "taxRateId": "NONE"}]
BILL = {"vendorName": "Acme", "issueDate": "2026-11-01", "dueDate": "2026-12-01"}
INVOICE = {"customerName": "Beta", "issueDate": "2026-11-01", "dueDate": "2026-12-01"}


def _expenses(n: int = 3, **change: Any) -> list[dict[str, Any]]:
    return [expense(reference=f"r{i}", **change) for i in range(n)]


async def _create(api: Api, company: NewCompany, key: str | None, **change: Any) -> Any:
    variables = {"c": company.company.id, "e": _expenses(**change), "k": key}
    return await api.gql(CREATE, variables)


async def _batches(api: Api, company: NewCompany) -> int:
    count: int = data(await api.gql(COUNT, {"c": company.company.id}))["syncBatches"]["totalCount"]
    return count


async def test_the_same_key_and_records_return_the_first_result(
    api: Api, company: NewCompany
) -> None:
    first = data(await _create(api, company, "order-1"))["createExpenses"]
    again = data(await _create(api, company, "order-1"))["createExpenses"]
    assert again == first  # the same batch id, and the same items in the same order
    assert await _batches(api, company) == 1
    other = data(await _create(api, company, "order-2"))["createExpenses"]
    assert other["syncBatchId"] != first["syncBatchId"]
    without = data(await _create(api, company, None))["createExpenses"]
    assert without["syncBatchId"] not in {first["syncBatchId"], other["syncBatchId"]}


async def test_bills_and_invoices_are_idempotent_too(api: Api, company: NewCompany) -> None:
    bills = {"c": company.company.id, "b": [{**BILL, "currency": "USD", "lines": LINES}]}
    invoices = {"c": company.company.id, "i": [{**INVOICE, "currency": "USD", "lines": LINES}]}
    for document, variables, field, key in (
        (CREATE_BILLS, bills, "createBills", "bills-1"),
        (CREATE_INVOICES, invoices, "createInvoices", "invoices-1"),
    ):
        first = data(await api.gql(document, {**variables, "k": key}))[field]
        assert data(await api.gql(document, {**variables, "k": key}))[field] == first
    assert await _batches(api, company) == 2
    reused = error(await api.gql(CREATE_INVOICES, {**invoices, "k": "bills-1"}))
    assert reused["extensions"]["code"] == "CONFLICT"  # a key names one request, whatever it made


async def test_the_same_key_with_other_records_is_a_conflict(api: Api, company: NewCompany) -> None:
    data(await _create(api, company, "order-1"))
    for change in ({"amount": "12.51"}, {"currency": "EUR"}):
        response = await _create(api, company, "order-1", **change)
        failure = error(response)
        assert failure["extensions"]["code"] == "CONFLICT"
        assert failure["extensions"]["field"] == "idempotencyKey"
        assert response["data"] is None
    assert await _batches(api, company) == 1


async def test_calls_that_arrive_together_create_one_batch(api: Api, company: NewCompany) -> None:
    answers = await asyncio.gather(*(_create(api, company, "burst") for _ in range(4)))
    ids = {data(answer)["createExpenses"]["syncBatchId"] for answer in answers}
    assert len(ids) == 1
    assert await _batches(api, company) == 1


async def test_a_key_is_the_companys_own(
    api: Api, company: NewCompany, other_company: NewCompany
) -> None:
    mine = data(await _create(api, company, "shared"))["createExpenses"]["syncBatchId"]
    variables = {"c": other_company.company.id, "e": _expenses(), "k": "shared"}
    theirs = data(await api.gql(CREATE, variables, key=other_company.api_key))
    assert theirs["createExpenses"]["syncBatchId"] != mine


async def test_a_key_lapses_after_24_hours(
    api: Api, company: NewCompany, services: Services
) -> None:
    first = data(await _create(api, company, "old"))["createExpenses"]["syncBatchId"]
    async with services.db.transaction() as session:
        lapsed = utcnow() - timedelta(hours=24, seconds=1)
        await session.execute(update(IdempotencyKey).values(created_at=lapsed))
    again = data(await _create(api, company, "old", amount="99.00"))["createExpenses"]
    assert again["syncBatchId"] != first  # a new request: other records are no conflict now
    assert data(await _create(api, company, "old", amount="99.00"))["createExpenses"] == again


@pytest.mark.parametrize("key", ["", "k" * 256], ids=["empty", "256"])
async def test_a_bad_key_is_refused_and_creates_nothing(
    api: Api, company: NewCompany, key: str
) -> None:
    failure = error(await _create(api, company, key))
    assert failure["extensions"]["code"] == "BAD_USER_INPUT"
    assert failure["extensions"]["field"] == "idempotencyKey"
    assert await _batches(api, company) == 0


async def test_calls_that_arrive_together_at_two_api_processes_create_one_batch(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    if not services.db.is_postgres:
        pytest.skip("API processes share PostgreSQL in production; SQLite is one process's")
    env = env_without_config(DATABASE_URL=settings.database_url, REDIS_URL=services.redis_url)
    company = json.loads(cli("create-company", "--name", "Twice Ltd", cwd=tmp_path, env=env))
    ports = [free_port(), free_port()]
    (tmp_path / "second").mkdir()
    variables = {"c": company["companyId"], "e": _expenses(200), "k": "timed-out"}
    with (
        running("serve", "--port", str(ports[0]), cwd=tmp_path, env=env),
        running("serve", "--port", str(ports[1]), cwd=tmp_path / "second", env=env),
    ):
        async with (
            ready_client(ports[0], company["apiKey"]) as one,
            ready_client(ports[1], company["apiKey"]) as two,
        ):
            body = {"query": CREATE, "variables": variables}
            answers = await asyncio.gather(
                *(client.post("/graphql", json=body) for client in (one, two, one, two))
            )
            count = await one.post("/graphql", json={"query": COUNT, "variables": variables})
    results = [data(answer.json())["createExpenses"] for answer in answers]
    assert all(result == results[0] for result in results)
    assert data(count.json())["syncBatches"]["totalCount"] == 1
