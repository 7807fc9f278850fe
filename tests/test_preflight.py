"""Preflight: the ledger's refusals found before anything is queued, from a cached chart."""

from typing import Any

from models.company import NewCompany
from tests.conftest import Api
from tests.helpers import data, error, expense

VALIDATE_EXPENSES = """
query($c: ID!, $e: [ExpenseInput!]!) {
  validateExpenses(companyId: $c, expenses: $e) { index field code message hint }
}
"""
VALIDATE_BILLS = """
query($c: ID!, $b: [BillInput!]!) {
  validateBills(companyId: $c, bills: $b) { index field code }
}
"""
CREATE = """
mutation($c: ID!, $e: [ExpenseInput!]!, $p: Boolean!) {
  createExpenses(companyId: $c, expenses: $e, preflight: $p) { syncBatchId }
}
"""
CREATE_ACCOUNT = """
mutation($c: ID!, $input: AccountInput!) { createAccount(companyId: $c, input: $input) { code } }
"""
BATCHES = "query($c: ID!) { syncBatches(companyId: $c) { totalCount } }"


async def _batches(api: Api, company: NewCompany) -> int:
    count: int = data(await api.gql(BATCHES, {"c": company.company.id}))["syncBatches"][
        "totalCount"
    ]
    return count


async def _problems(api: Api, company: NewCompany, expenses: list[dict[str, Any]]) -> Any:
    variables = {"c": company.company.id, "e": expenses}
    return data(await api.gql(VALIDATE_EXPENSES, variables))["validateExpenses"]


async def test_validation_names_every_refused_reference_and_creates_nothing(
    api: Api, company: NewCompany
) -> None:
    expenses = [
        expense(),
        expense(accountId="999"),
        expense(taxRateId="GST"),
        expense(accountId="200", taxRateId="NOPE"),  # a revenue account, on an expense
    ]
    problems = await _problems(api, company, expenses)
    assert [(p["index"], p["field"], p["code"]) for p in problems] == [
        (1, "expenses.1.accountId", "INVALID_ACCOUNT_ID"),
        (2, "expenses.2.taxRateId", "INVALID_TAX_RATE_ID"),
        (3, "expenses.3.accountId", "VALIDATION_ERROR"),
        (3, "expenses.3.taxRateId", "INVALID_TAX_RATE_ID"),
    ]
    assert all(p["message"] and p["hint"] for p in problems)
    assert await _problems(api, company, [expense()]) == []
    assert await _batches(api, company) == 0


async def test_bill_lines_are_checked_one_by_one(api: Api, company: NewCompany) -> None:
    lines = [
        {"description": "Paper", "amount": "10.00", "accountId": "453"},
        {"description": "Sales?", "amount": "5.00", "accountId": "200", "taxRateId": "INPUT"},
    ]
    bill = {
        "vendorName": "Supplies Co",
        "issueDate": "2026-11-01",
        "dueDate": "2026-12-01",
        "currency": "USD",
        "lines": lines,
    }
    variables = {"c": company.company.id, "b": [bill]}
    problems = data(await api.gql(VALIDATE_BILLS, variables))["validateBills"]
    assert problems == [
        {"index": 0, "field": "bills.0.lines.1.accountId", "code": "VALIDATION_ERROR"}
    ]


async def test_create_with_preflight_refuses_the_whole_request_up_front(
    api: Api, company: NewCompany
) -> None:
    variables = {"c": company.company.id, "e": [expense(), expense(accountId="999")], "p": True}
    refused = error(await api.gql(CREATE, variables))
    assert refused["extensions"]["code"] == "BAD_USER_INPUT"
    assert refused["extensions"]["field"] == "expenses.1.accountId"
    assert [p["code"] for p in refused["extensions"]["problems"]] == ["INVALID_ACCOUNT_ID"]
    assert await _batches(api, company) == 0
    data(await api.gql(CREATE, {**variables, "p": False}))  # without preflight, queued as is
    assert await _batches(api, company) == 1


async def test_the_cached_chart_is_refreshed_when_an_account_is_created(
    api: Api, company: NewCompany
) -> None:
    assert [p["code"] for p in await _problems(api, company, [expense(accountId="999")])] == [
        "INVALID_ACCOUNT_ID"
    ]
    account = {"code": "999", "name": "Sundries", "type": "EXPENSE"}
    data(await api.gql(CREATE_ACCOUNT, {"c": company.company.id, "input": account}))
    assert await _problems(api, company, [expense(accountId="999")]) == []


async def test_another_companys_chart_is_not_found(
    api: Api, company: NewCompany, other_company: NewCompany
) -> None:
    variables = {"c": other_company.company.id, "e": [expense()]}
    assert error(await api.gql(VALIDATE_EXPENSES, variables))["extensions"]["code"] == "NOT_FOUND"
