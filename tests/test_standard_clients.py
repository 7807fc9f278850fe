"""What standard GraphQL clients send is answered as they expect: the introspection queries of
graphql-js, graphql-core and gql; GraphQL over HTTP and its audit; and the size limits, each
refused with QUERY_TOO_COMPLEX and a message naming it, over HTTP and WebSocket."""

import json
from pathlib import Path
from typing import Any

import pytest
from gql import Client
from gql.transport.httpx import HTTPXAsyncTransport
from graphql import build_client_schema, get_introspection_query, print_schema

from api.core_schema import graphql_schema
from api.schema import schema
from models.company import NewCompany
from tests.conftest import Api
from tests.live import GraphQLWebSocket
from tests.node import node, npm_project

JS = Path(__file__).resolve().parent / "js"
EVERY_OPTION = {
    "descriptions": True,
    "specified_by_url": True,
    "directive_is_repeatable": True,
    "schema_description": True,
    "input_value_deprecation": True,
    "one_of": True,
}
GQL_EVERY_OPTION = {
    "descriptions": True,
    "specified_by_url": True,
    "directive_is_repeatable": True,
    "schema_description": True,
    "input_value_deprecation": True,
    "input_object_one_of": True,
}
GRAPHQL_RESPONSE = "application/graphql-response+json"


def _whole_schema(body: dict[str, Any]) -> None:
    """The answer is the whole schema, as graphql-core prints ours."""
    assert "errors" not in body, body["errors"]
    assert print_schema(build_client_schema(body["data"])) == print_schema(graphql_schema(schema))


@pytest.mark.parametrize("options", [{}, EVERY_OPTION], ids=["defaults", "every-option"])
async def test_graphql_cores_introspection_query_is_answered(
    api: Api, options: dict[str, bool]
) -> None:
    _whole_schema(await api.gql(get_introspection_query(**options)))


async def test_graphql_js_introspection_query_with_every_option_is_answered(api: Api) -> None:
    query = await node(npm_project(JS), "node", "introspection-query.mjs")
    assert "isOneOf" in query and "specifiedByURL" in query  # every option really is on
    _whole_schema(await api.gql(query))


@pytest.mark.parametrize("options", [{}, GQL_EVERY_OPTION], ids=["defaults", "every-option"])
async def test_gql_fetches_the_schema_from_the_server(
    live_server: str, company: NewCompany, options: dict[str, bool]
) -> None:
    transport = HTTPXAsyncTransport(
        url=f"http://{live_server}/graphql",
        headers={"Authorization": f"Bearer {company.api_key}"},
    )
    client = Client(
        transport=transport, fetch_schema_from_transport=True, introspection_args=options
    )
    async with client:
        assert client.schema is not None
        assert print_schema(client.schema) == print_schema(graphql_schema(schema))


def _refusal(body: dict[str, Any], limit: str) -> None:
    """A QUERY_TOO_COMPLEX refusal whose message names the limit."""
    codes = {error["extensions"]["code"] for error in body["errors"]}
    assert "QUERY_TOO_COMPLEX" in codes, body
    assert "data" not in body or body["data"] is None
    messages = [e["message"] for e in body["errors"] if e["extensions"]["code"] != "NOT_FOUND"]
    assert any(limit in message for message in messages), messages


def _nested(field: str, levels: int, leaf: str = "name") -> str:
    selection = leaf
    for _ in range(levels):
        selection = f"{field} {{ {selection} }}"
    return selection


ABUSIVE_INTROSPECTION = {
    "ofType-chain": (
        f'{{ __type(name: "Query") {{ {_nested("ofType", 25)} }} }}',
        "maximum introspection depth of 20",
    ),
    "fields-in-fields": (
        "{ __schema { types { fields { type { fields { type { name } } } } } } }",
        "'fields'",
    ),
    "through-fragments": (
        """{ __schema { types { ...A } } }
        fragment A on __Type { interfaces { ...B } }
        fragment B on __Type { possibleTypes { interfaces { name } } }""",
        "'interfaces'",
    ),
}


@pytest.mark.parametrize("case", ABUSIVE_INTROSPECTION, ids=list(ABUSIVE_INTROSPECTION))
async def test_introspection_beyond_its_own_budget_is_refused(api: Api, case: str) -> None:
    query, limit = ABUSIVE_INTROSPECTION[case]
    _refusal(await api.gql(query), limit)


LIMITS = {
    "depth": (f"{{ {_nested('a', 11)} }}", "maximum operation depth of 10"),
    "aliases": (
        "{ " + " ".join(f"a{i}: __typename" for i in range(21)) + " }",
        "alias limit is 20",
    ),
    "alias-flood": (
        "{ " + " ".join(f'a{i}: __type(name: "Query") {{ name }}' for i in range(1000)) + " }",
        "token limit is 5000",
    ),
    "tokens": ("{ " + "__typename " * 5001 + "}", "token limit is 5000"),
}


@pytest.mark.parametrize("case", LIMITS, ids=list(LIMITS))
async def test_each_size_limit_is_named_over_http(api: Api, case: str) -> None:
    query, limit = LIMITS[case]
    _refusal(await api.gql(query), limit)


@pytest.mark.parametrize("case", LIMITS, ids=list(LIMITS))
async def test_each_size_limit_is_named_over_websocket(
    company: NewCompany, live_server: str, case: str
) -> None:
    query, limit = LIMITS[case]
    subscription = query.replace("{", "subscription {", 1)
    async with GraphQLWebSocket.connect(live_server, company.api_key) as client:
        await client.subscribe("1", subscription, {})
        message = await client.next("1")
        assert message["type"] == "error", message
        _refusal({"errors": message["payload"]}, limit)


async def _post(api: Api, body: object, accept: str | None) -> Any:  # Any: httpx.Response
    headers = {"Authorization": f"Bearer {api.key}"} | ({"Accept": accept} if accept else {})
    return await api.http.post("/graphql", json=body, headers=headers)


REQUEST_ERRORS = {
    "parse": {"query": "{"},
    "validation": {"query": "{ noSuchField }"},
    "variables": {"query": "query($n: Int!) { __typename }", "variables": {"n": "x"}},
    "limit": {"query": LIMITS["depth"][0]},
}


@pytest.mark.parametrize("case", REQUEST_ERRORS, ids=list(REQUEST_ERRORS))
async def test_request_errors_are_400_without_data_for_graphql_response_json(
    api: Api, case: str
) -> None:
    response = await _post(api, REQUEST_ERRORS[case], f"{GRAPHQL_RESPONSE}, application/json;q=0.9")
    assert response.status_code == 400
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" not in body and body["errors"][0]["extensions"]["code"]


@pytest.mark.parametrize("accept", ["application/json", "*/*", None])
@pytest.mark.parametrize("case", REQUEST_ERRORS, ids=list(REQUEST_ERRORS))
async def test_request_errors_stay_200_with_null_data_for_json_clients(
    api: Api, case: str, accept: str | None
) -> None:
    response = await _post(api, REQUEST_ERRORS[case], accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["data"] is None


async def test_field_errors_keep_data_and_200_for_graphql_response_json(api: Api) -> None:
    query = {"query": 'mutation { retryFailedItems(batchId: "bat_nothing") { items { id } } }'}
    response = await _post(api, query, GRAPHQL_RESPONSE)
    assert response.status_code == 200 and response.headers["content-type"] == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" in body and body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_a_mutation_sent_by_get_is_405(api: Api) -> None:
    response = await api.http.get(
        "/graphql",
        params={"query": "mutation { __typename }"},
        headers={"Authorization": f"Bearer {api.key}", "Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.slow
async def test_the_graphql_over_http_audit_passes(company: NewCompany, live_server: str) -> None:
    folder = npm_project(JS)
    url = f"http://{live_server}/graphql"
    report = json.loads(await node(folder, "node", "audit.mjs", url, company.api_key))
    assert len(report) > 50
    failed = [r for r in report if r["status"] in ("error", "warn")]  # a MUST, a SHOULD
    assert not failed, failed
