"""Bad input: a clear BAD_USER_INPUT naming the field at fault, and nothing written."""

from typing import Any

import pytest

from models.company import NewCompany
from tests.conftest import Api
from tests.helpers import CREATE_EXPENSES, data, error, expense

COUNT = "query($c: ID!) { syncBatches(companyId: $c) { totalCount } }"

BAD_EXPENSES = [
    ({"amount": "-5"}, "expenses.1.amount"),
    ({"amount": "0"}, "expenses.1.amount"),
    ({"amount": "abc"}, "expenses.1.amount"),
    ({"amount": "1.234"}, "expenses.1.amount"),  # USD has two decimals
    ({"amount": "NaN"}, "expenses.1.amount"),
    ({"currency": "XYZ"}, "expenses.1.currency"),
    ({"currency": "usd"}, "expenses.1.currency"),
    ({"date": "2026-02-30"}, "expenses.1.date"),
    ({"date": "yesterday"}, "expenses.1.date"),
    ({"accountId": ""}, "expenses.1.accountId"),
    ({"vendorName": None}, "expenses.1.vendorName"),
    ({"vendorName": "v" * 256}, "expenses.1.vendorName"),
    ({"reference": "r" * 256}, "expenses.1.reference"),
    ({"description": "d" * 4001}, "expenses.1.description"),
    ({"unknownField": 1}, "expenses.1.unknownField"),
]


def _create_literal(company: NewCompany, fields: str) -> str:
    """A createExpenses mutation with one expense written into the document itself."""
    return (
        f'mutation {{ createExpenses(companyId: "{company.company.id}", '
        f"expenses: [{{{fields}}}]) {{ syncBatchId }} }}"
    )


async def _count(api: Api, company: NewCompany) -> int:
    total: int = data(await api.gql(COUNT, {"c": company.company.id}))["syncBatches"]["totalCount"]
    return total


@pytest.mark.parametrize(("change", "field"), BAD_EXPENSES, ids=[f for _, f in BAD_EXPENSES])
async def test_one_bad_expense_among_good_ones_creates_nothing(
    api: Api, company: NewCompany, change: dict[str, Any], field: str
) -> None:
    expenses = [expense(), expense(**change), expense()]
    response = await api.gql(
        CREATE_EXPENSES, {"companyId": company.company.id, "expenses": expenses}
    )
    assert response["data"] is None
    failure = error(response)
    assert failure["extensions"]["code"] == "BAD_USER_INPUT"
    assert failure["extensions"]["field"] == field, failure
    assert await _count(api, company) == 0


async def test_an_empty_list_and_too_many_records_are_refused(
    api: Api, company: NewCompany
) -> None:
    for expenses in ([], [expense()] * 1001):
        variables = {"companyId": company.company.id, "expenses": expenses}
        failure = error(await api.gql(CREATE_EXPENSES, variables))
        assert failure["extensions"] == {"code": "BAD_USER_INPUT", "field": "expenses"}
    assert await _count(api, company) == 0


async def test_merchant_is_accepted_for_vendor_name(api: Api, company: NewCompany) -> None:
    record = expense(vendorName=None, merchant="Corner Shop")
    created = data(
        await api.gql(CREATE_EXPENSES, {"companyId": company.company.id, "expenses": [record]})
    )
    assert created["createExpenses"]["expenses"][0]["vendorName"] == "Corner Shop"


async def test_messages_say_what_to_send(api: Api, company: NewCompany) -> None:
    """The field's rule in words, the alias a user may have meant, the value quoted once."""
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "vendorName": ({"vendorName": None}, "who was paid (vendorName, or its alias merchant)"),
        "currency": (
            {"currency": "usd"},
            "'usd' is not an ISO 4217 currency code: use upper case (USD)",
        ),
        "date": (
            {"date": "2026-13-40"},
            "encountered error 'not a date: use YYYY-MM-DD'; found: '2026-13-40'",
        ),
    }
    for name, (change, words) in cases.items():
        variables = {"companyId": company.company.id, "expenses": [expense(**change)]}
        failure = error(await api.gql(CREATE_EXPENSES, variables))
        assert words in failure["message"] and "''" not in failure["message"], (name, failure)
    literal = error(
        await api.gql(_create_literal(company, 'amount: "1", currency: "USD", date: "2026-13-40"'))
    )
    assert (
        "encountered error 'not a date: use YYYY-MM-DD'; found: \"2026-13-40\""
        in literal["message"]
    )


async def test_bad_literals_in_the_document_name_their_field(api: Api, company: NewCompany) -> None:
    cases = {
        'amount: "abc"': "expenses.0.amount",
        'date: "2026-13-01"': "expenses.0.date",
        "amount: true": "expenses.0.amount",
        'vendorName: "V\\u0000"': "expenses.0.vendorName",  # no database can store a NUL
    }
    for literal, field in cases.items():
        good = 'amount: "1", currency: "USD", date: "2026-01-01", accountId: "429", vendorName: "V"'
        fields = ", ".join(
            [
                literal,
                *(part for part in good.split(", ") if part.split(":")[0] != literal.split(":")[0]),
            ]
        )
        query = _create_literal(company, fields)
        failure = error(await api.gql(query))
        assert failure["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, literal
    missing = _create_literal(company, 'amount: "1"')
    failures = (await api.gql(missing))["errors"]  # one per missing field
    assert {f["extensions"]["field"] for f in failures} == {
        f"expenses.0.{name}" for name in ("currency", "date")
    }
    assert {f["extensions"]["code"] for f in failures} == {"BAD_USER_INPUT"}
    unaccounted = _create_literal(
        company, 'amount: "1", currency: "USD", date: "2026-01-01", vendorName: "V"'
    )
    failure = error(await api.gql(unaccounted))  # accountId, or lines: the record says which
    assert failure["extensions"] == {"code": "BAD_USER_INPUT", "field": "expenses.0.accountId"}
    assert "Field required (or give lines)" in failure["message"]


async def test_fields_left_out_of_or_foreign_to_a_variable_are_each_named(
    api: Api, company: NewCompany
) -> None:
    """Each error about one object names its own field, whatever graphql-core's wording."""
    odd = expense(unknownField=1, otherField=2)
    for name in ("currency", "date"):
        del odd[name]
    variables = {"companyId": company.company.id, "expenses": [expense(), odd]}
    failures = (await api.gql(CREATE_EXPENSES, variables))["errors"]
    assert sorted(f["extensions"]["field"] for f in failures) == [
        f"expenses.1.{name}" for name in ("currency", "date", "otherField", "unknownField")
    ]
    assert {f["extensions"]["code"] for f in failures} == {"BAD_USER_INPUT"}
    assert await _count(api, company) == 0


async def test_a_bad_enum_or_scalar_argument_names_its_field(api: Api, company: NewCompany) -> None:
    query = """query($c: ID!, $s: SyncBatchStatus) {
      syncBatches(companyId: $c, status: $s) { totalCount }
    }"""
    failure = error(await api.gql(query, {"c": company.company.id, "s": "DONE"}))
    assert failure["extensions"] == {"code": "BAD_USER_INPUT", "field": "status"}
    literal = f'{{ syncBatches(companyId: "{company.company.id}", first: "x") {{ totalCount }} }}'
    assert error(await api.gql(literal))["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "first",
    }


async def test_bills_and_invoices_validate_lines_and_dates(api: Api, company: NewCompany) -> None:
    query = """mutation($c: ID!, $bills: [BillInput!]!) {
      createBills(companyId: $c, bills: $bills) { syncBatchId }
    }"""
    bill: dict[str, Any] = {
        "vendorName": "Paper Co",
        "issueDate": "2026-11-01",
        "dueDate": "2026-12-01",
        "currency": "JPY",
        "lines": [{"amount": "1000", "accountId": "461"}],
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"lines": []}, "bills.0.lines"),
        ({"dueDate": "2026-10-01"}, "bills.0.dueDate"),
        ({"lines": [{"amount": "10.5", "accountId": "461"}]}, "bills.0.lines.0.amount"),  # JPY: 0
        ({"lines": [{"amount": "1", "accountId": "461"}] * 101}, "bills.0.lines"),
    ]
    for change, field in cases:
        failure = error(await api.gql(query, {"c": company.company.id, "bills": [bill | change]}))
        assert failure["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, change
    assert await _count(api, company) == 0


async def test_fragment_cycles_are_refused(api: Api) -> None:
    fragments = 'query Loop { ...A } fragment A on Query { syncBatch(id: "x") { id } ...A }'
    assert error(await api.gql(fragments))["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_operations_beyond_the_alias_limit_are_refused_every_time(api: Api) -> None:
    def aliased(count: int) -> str:
        return "{ " + " ".join(f"a{i}: __typename" for i in range(count)) + " }"

    assert "errors" not in await api.gql(aliased(20))
    for _ in range(2):  # the second time from the validation cache
        assert error(await api.gql(aliased(21)))["extensions"]["code"] == "QUERY_TOO_COMPLEX"


async def test_syntax_errors_and_unknown_fields_have_codes(api: Api) -> None:
    assert error(await api.gql("{ syncBatch("))["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    unknown = error(await api.gql("{ nothingHere }"))
    assert unknown["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
