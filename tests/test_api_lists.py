"""Listing batches and items: newest first, keyset cursors both ways, filters, totals."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from infra.services import Services
from models.company import NewCompany
from tests.conftest import Api, RunJobs
from tests.helpers import CREATE_EXPENSES, data, error, expense

LIST = """
query List($c: ID!, $status: SyncBatchStatus, $start: DateTime, $end: DateTime,
           $first: Int, $after: String, $last: Int, $before: String) {
  syncBatches(companyId: $c, status: $status, startDate: $start, endDate: $end,
              first: $first, after: $after, last: $last, before: $before) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id status createdAt } }
  }
}
"""


async def _create_batches(api: Api, company: NewCompany, count: int) -> list[str]:
    ids = []
    for index in range(count):
        variables = {"companyId": company.company.id, "expenses": [expense(reference=str(index))]}
        ids.append(data(await api.gql(CREATE_EXPENSES, variables))["createExpenses"]["syncBatchId"])
    return ids


async def _list(api: Api, company: NewCompany, **arguments: Any) -> dict[str, Any]:
    page: dict[str, Any] = data(await api.gql(LIST, {"c": company.company.id, **arguments}))[
        "syncBatches"
    ]
    return page


def _ids(page: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in page["edges"]]


async def test_pages_forward_cover_every_batch_once_newest_first(
    api: Api, company: NewCompany
) -> None:
    created = await _create_batches(api, company, 23)
    first = await _list(api, company)
    assert first["totalCount"] == 23
    assert len(first["edges"]) == 20  # the default page size
    assert first["pageInfo"]["hasNextPage"] and not first["pageInfo"]["hasPreviousPage"]

    seen = []
    after = None
    while True:
        page = await _list(api, company, first=7, after=after)
        seen += _ids(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert page["totalCount"] == 23
    assert seen == list(reversed(created))
    assert page["pageInfo"]["hasPreviousPage"]


async def test_pages_backward_from_the_oldest(api: Api, company: NewCompany) -> None:
    created = await _create_batches(api, company, 9)
    newest_first = list(reversed(created))
    oldest = await _list(api, company, last=4)
    assert _ids(oldest) == newest_first[-4:]
    assert oldest["pageInfo"]["hasPreviousPage"] and not oldest["pageInfo"]["hasNextPage"]
    before = await _list(api, company, last=4, before=oldest["pageInfo"]["startCursor"])
    assert _ids(before) == newest_first[1:5]
    assert before["pageInfo"]["hasPreviousPage"] and before["pageInfo"]["hasNextPage"]
    rest = await _list(api, company, last=4, before=before["pageInfo"]["startCursor"])
    assert _ids(rest) == newest_first[:1]
    assert not rest["pageInfo"]["hasPreviousPage"]


async def test_status_and_inclusive_date_filters(api: Api, company: NewCompany) -> None:
    created = await _create_batches(api, company, 3)
    everything = await _list(api, company)
    middle = everything["edges"][1]["node"]
    assert middle["id"] == created[1]

    exact = await _list(api, company, start=middle["createdAt"], end=middle["createdAt"])
    assert _ids(exact) == [created[1]] and exact["totalCount"] == 1
    since = await _list(api, company, start=middle["createdAt"])
    assert _ids(since) == [created[2], created[1]]
    until = await _list(api, company, end=middle["createdAt"])
    assert _ids(until) == [created[1], created[0]]

    assert (await _list(api, company, status="PENDING"))["totalCount"] == 3
    assert (await _list(api, company, status="COMPLETED"))["totalCount"] == 0


async def test_bad_page_arguments_are_bad_user_input(api: Api, company: NewCompany) -> None:
    await _create_batches(api, company, 1)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"first": 101}, "first"),
        ({"first": -1}, "first"),
        ({"last": 500}, "last"),
        ({"after": "not-a-cursor"}, "after"),
        ({"before": "WyJ4Il0"}, "before"),
        ({"first": 2, "last": 2}, "last"),
        ({"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "startDate"),
    ]
    for arguments, field in cases:
        failure = error(await api.gql(LIST, {"c": company.company.id, **arguments}))
        assert failure["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, arguments


async def test_items_page_in_the_order_given(api: Api, company: NewCompany) -> None:
    variables = {
        "companyId": company.company.id,
        "expenses": [expense(reference=f"r{i}") for i in range(5)],
    }
    batch_id = data(await api.gql(CREATE_EXPENSES, variables))["createExpenses"]["syncBatchId"]
    query = """query($b: ID!, $after: String) {
      syncItems(batchId: $b, first: 2, after: $after) {
        totalCount pageInfo { hasNextPage endCursor } edges { node { reference status } }
      }
    }"""
    references = []
    after = None
    while True:
        page = data(await api.gql(query, {"b": batch_id, "after": after}))["syncItems"]
        assert page["totalCount"] == 5
        references += [edge["node"]["reference"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert references == [f"r{i}" for i in range(5)]
    nested = """query($b: ID!) {
      syncBatch(id: $b) { items(status: PENDING, last: 1) { edges { node { reference } } } }
    }"""
    last = data(await api.gql(nested, {"b": batch_id}))["syncBatch"]["items"]["edges"]
    assert [edge["node"]["reference"] for edge in last] == ["r4"]


NESTED = """
query Dashboard($c: ID!, $first: Int, $last: Int, $status: SyncItemStatus) {
  syncBatches(companyId: $c, first: 100) {
    edges { node { id items(first: $first, last: $last, status: $status) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id status reference error { code message hint } } }
    } } }
  }
}
"""
ONE_BATCH = """
query One($b: ID!, $first: Int, $last: Int, $status: SyncItemStatus) {
  syncBatch(id: $b) { items(first: $first, last: $last, status: $status) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id status reference error { code message hint } } }
  } }
}
"""


@contextmanager
def counted_statements(services: Services) -> Iterator[list[str]]:
    """Every SQL statement the engine runs meanwhile."""
    statements: list[str] = []

    def record(*args: Any) -> None:  # Any: SQLAlchemy's cursor event arguments
        statements.append(args[2])

    event.listen(services.db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(services.db.engine.sync_engine, "before_cursor_execute", record)


async def _batches_of_items(api: Api, company: NewCompany, count: int) -> None:
    for index in range(count):
        records = [
            expense(reference=f"{index}-{n}", accountId="999" if n % 2 else "429") for n in range(5)
        ]
        data(await api.gql(CREATE_EXPENSES, {"companyId": company.company.id, "expenses": records}))


@pytest.mark.parametrize(
    "page", [{"first": 2}, {"last": 2}, {"first": 10, "status": "FAILED"}, {}], ids=str
)
async def test_nested_item_pages_cost_the_same_queries_for_any_number_of_batches(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs, page: dict[str, Any]
) -> None:
    await _batches_of_items(api, company, 2)
    await run_jobs()
    variables = {"c": company.company.id, **page}
    with counted_statements(services) as few:
        await api.gql(NESTED, variables)
    await _batches_of_items(api, company, 6)
    await run_jobs()
    with counted_statements(services) as many:
        nested = data(await api.gql(NESTED, variables))["syncBatches"]["edges"]
    queries = [statement for statement in many if statement.startswith("SELECT")]
    assert len(nested) == 8 and len(many) == len(few), many
    assert len(queries) == 4, queries  # the key, the page of batches, its count, the items
    for edge in nested:  # each batch's page is what asking for that batch alone gives
        alone = data(await api.gql(ONE_BATCH, {"b": edge["node"]["id"], **page}))
        assert edge["node"]["items"] == alone["syncBatch"]["items"]
        assert edge["node"]["items"]["edges"]


async def test_nested_item_pages_refuse_a_bad_size_and_show_no_one_elses_items(
    api: Api, company: NewCompany, other_company: NewCompany
) -> None:
    await _batches_of_items(api, company, 1)
    refused = await api.gql(NESTED, {"c": company.company.id, "first": 101})
    assert error(refused)["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
    other = await api.gql(NESTED, {"c": other_company.company.id}, key=other_company.api_key)
    assert data(other)["syncBatches"]["edges"] == []


SEARCH = """
query($c: ID!, $r: String!, $first: Int, $after: String) {
  searchItems(companyId: $c, reference: $r, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { id batchId reference } }
  }
}
"""


async def test_search_finds_a_reference_across_batches_newest_first_in_pages(
    api: Api, company: NewCompany
) -> None:
    cid = company.company.id
    batches = []
    for _ in range(3):
        records = [expense(reference="INV-7"), expense(reference="INV-70")]
        created = data(await api.gql(CREATE_EXPENSES, {"companyId": cid, "expenses": records}))
        batches.append(created["createExpenses"]["syncBatchId"])
    first = data(await api.gql(SEARCH, {"c": cid, "r": "INV-7", "first": 2}))["searchItems"]
    assert first["totalCount"] == 3 and first["pageInfo"]["hasNextPage"]
    after = first["pageInfo"]["endCursor"]
    rest = data(await api.gql(SEARCH, {"c": cid, "r": "INV-7", "first": 2, "after": after}))
    found = first["edges"] + rest["searchItems"]["edges"]
    assert [edge["node"]["batchId"] for edge in found] == batches[::-1]  # exactly, newest first
    assert {edge["node"]["reference"] for edge in found} == {"INV-7"}
    none = data(await api.gql(SEARCH, {"c": cid, "r": "inv-7"}))["searchItems"]
    assert none["totalCount"] == 0 and none["edges"] == []  # as the client wrote it


async def test_search_refuses_an_empty_or_overlong_reference(api: Api, company: NewCompany) -> None:
    for reference in ("", "x" * 256):
        answer = await api.gql(SEARCH, {"c": company.company.id, "r": reference})
        assert error(answer)["extensions"] == {"code": "BAD_USER_INPUT", "field": "reference"}
