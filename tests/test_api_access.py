"""Keys and tenancy: no key, no access; another company's ids behave as if they did not exist."""

from typing import Any

from models.company import NewCompany
from tests.conftest import Api
from tests.helpers import BATCH, CREATE_EXPENSES, RETRY, data, error, expense


async def test_a_request_without_a_valid_key_is_refused_with_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer s2b_wrong"}, {"Authorization": "Basic x"}):
        response = await api.http.post(
            "/graphql", json={"query": "{ __typename }"}, headers=headers
        )
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_graphiql_page_needs_no_key(api: Api) -> None:
    response = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.http.get("/healthz")).status_code == 200
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"database": "ok", "redis": "ok"}


async def test_another_companys_batch_and_items_read_as_absent(
    api: Api,
    company: NewCompany,
    other_company: NewCompany,
    synced_batch: dict[str, Any],
) -> None:
    batch_id = synced_batch["syncBatchId"]
    key = other_company.api_key

    assert data(await api.gql(BATCH, {"id": batch_id}, key=key)) == {"syncBatch": None}
    for field in ("failedItems", "syncItems"):
        query = f"query($b: ID!) {{ {field}(batchId: $b) {{ totalCount edges {{ cursor }} }} }}"
        assert data(await api.gql(query, {"b": batch_id}, key=key)) == {
            field: {"totalCount": 0, "edges": []}
        }
    query = "query($c: ID!) { connection(companyId: $c) { status } }"
    assert data(await api.gql(query, {"c": company.company.id}, key=key)) == {"connection": None}


async def test_company_scoped_fields_of_another_company_are_not_found(
    api: Api, company: NewCompany, other_company: NewCompany
) -> None:
    variables = {"c": company.company.id}
    for query in (
        "query($c: ID!) { syncBatches(companyId: $c) { totalCount } }",
        "query($c: ID!) { accounts(companyId: $c) { code } }",
        "query($c: ID!) { taxRates(companyId: $c) { code } }",
        'mutation($c: ID!) { createAccount(companyId: $c, input: {code: "1", name: "x", '
        "type: EXPENSE}) { code } }",
        'mutation($c: ID!) { createTaxRate(companyId: $c, input: {code: "X", name: "x", '
        'rate: "1"}) { code } }',
    ):
        response = await api.gql(query, variables, key=other_company.api_key)
        assert error(response)["extensions"]["code"] == "NOT_FOUND", query


async def test_mutations_on_another_companys_ids_fail_as_not_found_and_change_nothing(
    api: Api,
    company: NewCompany,
    other_company: NewCompany,
    synced_batch: dict[str, Any],
) -> None:
    batch_id = synced_batch["syncBatchId"]
    key = other_company.api_key
    before = data(await api.gql(BATCH, {"id": batch_id}))

    retry = await api.gql(RETRY, {"batchId": batch_id}, key=key)
    assert error(retry)["extensions"]["code"] == "NOT_FOUND"
    create = await api.gql(
        CREATE_EXPENSES, {"companyId": company.company.id, "expenses": [expense()]}, key=key
    )
    assert error(create)["extensions"]["code"] == "NOT_FOUND"

    assert data(await api.gql(BATCH, {"id": batch_id})) == before
    listed = "query($c: ID!) { syncBatches(companyId: $c) { totalCount } }"
    assert data(await api.gql(listed, {"c": company.company.id}))["syncBatches"]["totalCount"] == 1


async def test_ledger_reads_show_the_seeded_chart(api: Api, company: NewCompany) -> None:
    variables = {"c": company.company.id}
    accounts = data(
        await api.gql("query($c: ID!) { accounts(companyId: $c) { code name type } }", variables)
    )
    codes = {a["code"]: a for a in accounts["accounts"]}
    assert codes["429"] == {"code": "429", "name": "General Expenses", "type": "EXPENSE"}
    assert codes["200"]["type"] == "REVENUE"
    rates = data(
        await api.gql("query($c: ID!) { taxRates(companyId: $c) { code rate } }", variables)
    )
    assert {"code": "INPUT", "rate": "15"} in rates["taxRates"]
    connection = data(
        await api.gql("query($c: ID!) { connection(companyId: $c) { provider status } }", variables)
    )
    assert connection == {"connection": {"provider": "sandbox", "status": "ACTIVE"}}


async def test_creating_an_existing_account_code_is_a_conflict(
    api: Api, company: NewCompany
) -> None:
    query = """mutation($c: ID!) {
      createAccount(companyId: $c, input: {code: "429", name: "Again", type: EXPENSE}) { code }
    }"""
    response = await api.gql(query, {"c": company.company.id})
    assert error(response)["extensions"] == {"code": "CONFLICT", "field": "input.code"}
