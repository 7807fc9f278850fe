"""Malformed HTTP requests get a 4xx with a GraphQL-shaped error, never a 5xx."""

import asyncio
import json

import pytest

from infra.settings import Settings
from models.company import NewCompany
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


@pytest.mark.usefixtures("postgres_only")
async def test_a_connection_left_idle_as_proxies_keep_them_is_still_served(
    live_server: str, company: NewCompany
) -> None:
    """uvicorn's own default closes an idle connection after 5 s, the very moment a client or
    proxy that keeps them longer may send on it: that request is lost (a reset, not an
    answer). The server keeps them longer than clients and proxies do."""
    host, port = live_server.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"query": "{ __typename }"}'
    request = (
        b"POST /graphql HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (live_server.encode(), company.api_key.encode(), len(body), body)
    )
    try:
        for _ in range(2):
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            assert json.loads(await reader.readexactly(length)) == {"data": {"__typename": "Query"}}
            await asyncio.sleep(6)  # longer than uvicorn's default keep-alive
    finally:
        writer.close()
    assert Settings().http_keep_alive_seconds > 60  # longer than proxies' usual idle timeout
