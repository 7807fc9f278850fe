"""Malformed HTTP requests get a 4xx with a GraphQL-shaped error, never a 5xx."""

import pytest

from tests.conftest import Api

BODIES = [
    b"\xff\xfe not utf-8",
    b"[1, 2, 3]",
    b'"a string"',
    b"{not json",
    b"[" * 100_000 + b"]" * 100_000,
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
