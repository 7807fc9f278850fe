"""Malformed HTTP requests get a 4xx with a GraphQL-shaped error, never a 5xx."""

import json

import pytest

from tests.conftest import Api
from tests.helpers import MALFORMED_BODIES, ODD_BODIES


@pytest.mark.parametrize("body", MALFORMED_BODIES, ids=range(len(MALFORMED_BODIES)))
async def test_malformed_bodies_are_client_errors(api: Api, body: bytes) -> None:
    response = await api.http.post(
        "/graphql",
        content=body,
        headers={"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("body", ODD_BODIES, ids=["lone-surrogate", "duplicate-keys"])
async def test_odd_but_well_formed_json_is_no_server_error(api: Api, body: bytes) -> None:
    response = await api.http.post(
        "/graphql",
        content=body,
        headers={"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"},
    )
    assert response.status_code < 500, response.text
    assert json.loads(response.text)


async def test_a_utf8_body_with_any_text_is_read(api: Api) -> None:
    query = {"query": "{ __typename } # café, 東京, 🧾"}
    response = await api.http.post(
        "/graphql",
        content=json.dumps(query, ensure_ascii=False).encode(),
        headers={"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"},
    )
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_nul_characters_never_reach_the_database(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.key}"}
    in_json = {"query": "query($b: ID!) { syncBatch(id: $b) { id } }", "variables": {"b": "x\x00"}}
    response = await api.http.post("/graphql", json=in_json, headers=headers)
    assert response.status_code == 400, response.text
    escaped = 'mutation { retryFailedItems(batchId: "\\u0000") { items { id } } }'  # GraphQL's
    response = await api.http.post("/graphql", json={"query": escaped}, headers=headers)
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"  # no such id
