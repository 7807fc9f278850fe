"""Records as rich as the books, against the sandbox on both backends: split expenses, lines
of quantity x unit price, tracking, tax-inclusive amounts, a currency's rate and the account
an expense was paid from; refused up front where the rule is structural, by preflight where
it is the ledger's chart, and by the ledger itself otherwise, each naming its field."""

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.services import Services
from models.company import NewCompany
from tests.conftest import Api, RunJobs
from tests.helpers import BATCH, data, error
from tests.processes import cli, env_without_config

CREATE_EXPENSES = """
mutation($c: ID!, $e: [ExpenseInput!]!, $preflight: Boolean) {
  createExpenses(companyId: $c, expenses: $e, preflight: $preflight) {
    syncBatchId
    expenses {
      amount accountId lineAmountTypes currencyRate paymentAccountId
      totals { subTotal totalTax total }
      lines { amount quantity unitAmount accountId taxRateId tracking { category option } }
    }
  }
}"""
CREATE_BILLS = """
mutation($c: ID!, $b: [BillInput!]!) {
  createBills(companyId: $c, bills: $b) {
    syncBatchId bills { total lines { amount quantity unitAmount itemCode } }
  }
}"""
TRACKING = "query($c: ID!) { trackingCategories(companyId: $c) { name options active } }"
BILL = {"vendorName": "Paper Co", "issueDate": "2026-11-01", "dueDate": "2026-12-01"}
REGION = {"category": "Region", "option": "North"}
SALES = {"category": "Department", "option": "Sales"}


def _hotel(**overrides: Any) -> dict[str, Any]:
    """A hotel receipt split over a room and meals, amounts with tax included."""
    return {
        "currency": "EUR",
        "date": "2026-11-20",
        "vendorName": "Hotel Adlon",
        "description": "Berlin trip",
        "lineAmountTypes": "INCLUSIVE",
        "currencyRate": "1.0825",
        "paymentAccountId": "092",
        "lines": [
            {"amount": "230.00", "accountId": "494", "taxRateId": "INPUT", "tracking": [REGION]},
            {
                "quantity": "3",
                "unitAmount": "15.3333",
                "accountId": "420",
                "taxRateId": "INPUT",
                "tracking": [REGION, SALES],
            },
        ],
    } | overrides


async def _create(api: Api, company: NewCompany, *expenses: dict[str, Any], **flags: Any) -> Any:
    variables = {"c": company.company.id, "e": list(expenses), **flags}
    return await api.gql(CREATE_EXPENSES, variables)


def _records(services: Services, company: NewCompany, tmp_path: Path) -> list[dict[str, Any]]:
    env = env_without_config(DATABASE_URL=services.settings.database_url)
    shown = cli("sandbox", "records", "--company-id", company.company.id, cwd=tmp_path, env=env)
    return [json.loads(line) for line in shown.splitlines()]


async def test_a_split_tracked_inclusive_expense_reaches_the_books_as_sent(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs, tmp_path: Path
) -> None:
    created = data(await _create(api, company, _hotel()))["createExpenses"]
    (shown,) = created["expenses"]
    assert shown["amount"] == "276.00"  # 230.00 + 3 x 15.3333 = 46.00 in EUR's cents
    assert shown["accountId"] == "494"  # its first line's
    assert (shown["lineAmountTypes"], shown["currencyRate"]) == ("INCLUSIVE", "1.0825")
    assert shown["paymentAccountId"] == "092"
    ours = shown.pop("totals")
    assert shown["lines"][1] == {
        "amount": "46.00",
        "quantity": "3",
        "unitAmount": "15.3333",
        "accountId": "420",
        "taxRateId": "INPUT",
        "tracking": [REGION, SALES],
    }
    await run_jobs()
    batch = data(await api.gql(BATCH, {"id": created["syncBatchId"]}))["syncBatch"]
    assert batch["status"] == "COMPLETED" and batch["successCount"] == 1, batch

    (document,) = _records(services, company, tmp_path)
    assert [line["tracking"] for line in document["lines"]] == [[REGION], [REGION, SALES]]
    assert (document["lineAmountTypes"], document["currencyRate"]) == ("INCLUSIVE", "1.0825")
    assert document["paymentAccountId"] == "092"
    # Tax included at 15%, per line then summed: 230.00 holds 30.00, 46.00 holds 6.00.
    assert (document["total"], document["totalTax"], document["subTotal"]) == (
        "276.00",
        "36.00",
        "240.00",
    )
    assert ours == {"subTotal": "240.00", "totalTax": "36.00", "total": "276.00"}


async def test_the_single_amount_expense_is_one_line_as_before(
    api: Api, company: NewCompany
) -> None:
    plain = {
        "amount": "12.50",
        "currency": "USD",
        "date": "2026-11-20",
        "accountId": "429",
        "taxRateId": "INPUT",
        "vendorName": "Cafe",
    }
    (shown,) = data(await _create(api, company, plain))["createExpenses"]["expenses"]
    assert shown["amount"] == "12.50" and shown["lineAmountTypes"] == "EXCLUSIVE"
    assert shown["lines"] == [
        {
            "amount": "12.50",
            "quantity": None,
            "unitAmount": None,
            "accountId": "429",
            "taxRateId": "INPUT",
            "tracking": [],
        }
    ]


@pytest.mark.parametrize(
    ("currency", "quantity", "unit", "amount"),
    [
        ("JPY", "3", "33.3333", "100"),
        ("USD", "3", "0.3333", "1.00"),
        ("KWD", "7", "0.1429", "1.000"),
    ],
)
async def test_quantity_times_unit_price_is_rounded_to_the_currencys_precision(
    api: Api, company: NewCompany, currency: str, quantity: str, unit: str, amount: str
) -> None:
    line = {"quantity": quantity, "unitAmount": unit, "accountId": "461", "itemCode": "PAPER"}
    bill = {**BILL, "currency": currency, "lines": [line]}
    made = data(await api.gql(CREATE_BILLS, {"c": company.company.id, "b": [bill]}))
    (shown,) = made["createBills"]["bills"]
    assert Decimal(shown["total"]) == Decimal(amount)
    assert shown["lines"] == [
        {"amount": amount, "quantity": quantity, "unitAmount": unit, "itemCode": "PAPER"}
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tracking": [REGION, SALES, {"category": "Project", "option": "X"}]}, "lines.1.tracking"),
        ({"tracking": [REGION, {"category": "Region", "option": "South"}]}, "tracking.1.category"),
        ({"unitAmount": None}, "lines.1.unitAmount"),
        ({"amount": "45.99"}, "lines.1.amount"),  # 3 x 15.3333 is 46.00
        ({"quantity": "0"}, "lines.1.quantity"),
        ({"unitAmount": "1.00001"}, "lines.1.unitAmount"),
    ],
)
async def test_structural_rules_are_refused_at_input_down_to_the_line(
    api: Api, company: NewCompany, change: dict[str, Any], field: str
) -> None:
    hotel = _hotel()
    hotel["lines"][1] |= change
    for preflight in (False, True):
        refused = error(await _create(api, company, hotel, preflight=preflight))
        assert refused["extensions"]["code"] == "BAD_USER_INPUT", refused
        assert refused["extensions"]["field"].startswith("expenses.0."), refused
        assert refused["extensions"]["field"].endswith(field), refused


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currencyRate": "0"}, "expenses.0.currencyRate"),
        ({"amount": "10.00"}, "expenses.0.lines"),  # lines and amount: one or the other
        ({"lines": None}, "expenses.0.amount"),  # neither
        ({"lineAmountTypes": "GROSS"}, "expenses.0.lineAmountTypes"),
    ],
)
async def test_record_level_rules_are_refused_naming_their_field(
    api: Api, company: NewCompany, change: dict[str, Any], field: str
) -> None:
    refused = error(await _create(api, company, _hotel(**change)))
    assert refused["extensions"]["code"] in {"BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"}
    assert refused["extensions"].get("field", "") == field or field in refused["message"], refused


async def test_the_sandbox_keeps_two_tracking_categories(api: Api, company: NewCompany) -> None:
    found = data(await api.gql(TRACKING, {"c": company.company.id}))["trackingCategories"]
    assert found == [
        {"name": "Region", "options": ["North", "South"], "active": True},
        {"name": "Department", "options": ["Sales", "Operations"], "active": True},
    ]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            {"tracking": [{"category": "Region", "option": "East"}]},
            "expenses.0.lines.1.tracking.0.option",
            "'East' is not an active option of 'Region' (it has: North, South)",
        ),
        (
            {"tracking": [{"category": "Project", "option": "Apollo"}]},
            "expenses.0.lines.1.tracking.0.category",
            "'Project' is not an active category",
        ),
    ],
)
async def test_what_the_chart_does_not_keep_is_refused_by_preflight_and_by_the_ledger(
    api: Api,
    company: NewCompany,
    run_jobs: RunJobs,
    change: dict[str, Any],
    field: str,
    words: str,
) -> None:
    hotel = _hotel()
    hotel["lines"][1] |= change
    refused = error(await _create(api, company, hotel, preflight=True))
    assert refused["extensions"]["field"] == field and words in refused["message"], refused

    created = data(await _create(api, company, hotel))["createExpenses"]
    await run_jobs()
    batch = data(await api.gql(BATCH, {"id": created["syncBatchId"]}))["syncBatch"]
    (item,) = [edge["node"] for edge in batch["items"]["edges"]]
    assert item["error"]["code"] == "VALIDATION_ERROR"
    assert "does not exist or is archived" in item["error"]["message"]


async def test_a_payment_account_that_cannot_pay_and_a_currency_not_enabled_are_refused(
    api: Api, company: NewCompany, run_jobs: RunJobs
) -> None:
    refused = error(await _create(api, company, _hotel(paymentAccountId="429"), preflight=True))
    assert refused["extensions"]["field"] == "expenses.0.paymentAccountId", refused
    assert "not a bank or credit card account" in refused["message"]

    created = data(await _create(api, company, _hotel(currency="NZD", currencyRate=None)))
    await run_jobs()
    batch_id = created["createExpenses"]["syncBatchId"]
    batch = data(await api.gql(BATCH, {"id": batch_id}))["syncBatch"]
    (item,) = [edge["node"] for edge in batch["items"]["edges"]]
    assert item["error"]["code"] == "VALIDATION_ERROR"
    assert "ask the accountant to enable NZD" in item["error"]["message"]


async def test_the_ledgers_currencies_are_read_and_preflight_refuses_one_not_enabled(
    api: Api, company: NewCompany
) -> None:
    query = "query($c: ID!) { connection(companyId: $c) { baseCurrency currencies } }"
    shown = data(await api.gql(query, {"c": company.company.id}))["connection"]
    assert shown == {"baseCurrency": "USD", "currencies": ["EUR", "GBP", "USD"]}

    refused = error(await _create(api, company, _hotel(currency="NZD"), preflight=True))
    assert refused["extensions"]["field"] == "expenses.0.currency", refused
    assert "ask the accountant to enable NZD" in refused["message"]
