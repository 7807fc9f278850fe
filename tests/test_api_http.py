"""Malformed HTTP requests get a 4xx with a GraphQL-shaped error, never a 5xx."""

import pytest

from tests.conftest import Api

BODIES = [
    b"\xff\xfe not utf-8",
    b"[1, 2, 3]",
    b'"a string"',
    b"{not json",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"variables": ' + b"[" * 600 + b"]" * 600 + b"}",  # deep, yet within what json parses
    b'{"query": 42}',
    b'{"query": "{ __typename }", "variables": [1]}',
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
async def test_malformed_bodies_are_client_errors(api: Api, body: bytes) -> None:
    response = await api.http.post(
        "/graphql",
        content=body,
        headers={"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text


async def test_nul_characters_never_reach_the_database(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.key}"}
    in_json = {"query": "query($b: ID!) { syncBatch(id: $b) { id } }", "variables": {"b": "x\x00"}}
    response = await api.http.post("/graphql", json=in_json, headers=headers)
    assert response.status_code == 400, response.text
    escaped = 'mutation { retryFailedItems(batchId: "\\u0000") { items { id } } }'  # GraphQL's
    response = await api.http.post("/graphql", json={"query": escaped}, headers=headers)
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"  # no such id
