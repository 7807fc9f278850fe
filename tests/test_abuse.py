"""Requests refused before any operation runs: too fast, too large, no length; and the
introspection and GraphiQL switches for production."""

from typing import Any

from api.schema import build_schema
from infra.services import Services
from infra.settings import Settings
from models.company import NewCompany
from tests.conftest import asgi_api
from tests.helpers import data

ME = {"query": "query($c: ID!) { syncBatches(companyId: $c) { totalCount } }"}


def _code(body: dict[str, Any]) -> str:
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def test_a_key_over_its_rate_is_refused_until_the_next_minute(
    services: Services, settings: Settings, company: NewCompany, other_company: NewCompany
) -> None:
    limited = settings.model_copy(update={"api_rate_limit_per_minute": 3})
    async with asgi_api(services, limited, company.api_key) as api:
        request = {**ME, "variables": {"c": company.company.id}}
        headers = {"Authorization": f"Bearer {company.api_key}"}
        statuses = [
            (await api.http.post("/graphql", json=request, headers=headers)).status_code
            for _ in range(3)
        ]
        refused = await api.http.post("/graphql", json=request, headers=headers)
        assert statuses == [200, 200, 200] and refused.status_code == 429
        assert _code(refused.json()) == "RATE_LIMITED"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        other = {**ME, "variables": {"c": other_company.company.id}}
        other_key = {"Authorization": f"Bearer {other_company.api_key}"}
        assert (await api.http.post("/graphql", json=other, headers=other_key)).status_code == 200


async def test_bodies_too_large_or_without_a_length_are_refused(
    services: Services, settings: Settings, company: NewCompany
) -> None:
    small = settings.model_copy(update={"max_body_bytes": 1000})
    async with asgi_api(services, small, company.api_key) as api:
        headers = {"Authorization": f"Bearer {company.api_key}"}
        large = {"query": "{ __typename }", "padding": "x" * 2000}
        response = await api.http.post("/graphql", json=large, headers=headers)
        assert (response.status_code, _code(response.json())) == (413, "PAYLOAD_TOO_LARGE")

        async def chunks() -> Any:
            yield b'{"query": "{ __typename }"}'

        response = await api.http.post("/graphql", content=chunks(), headers=headers)
        assert (response.status_code, _code(response.json())) == (411, "LENGTH_REQUIRED")


async def test_production_can_turn_off_introspection_and_graphiql(
    services: Services, settings: Settings, company: NewCompany
) -> None:
    closed = settings.model_copy(update={"introspection": False, "graphiql": False})
    async with asgi_api(services, closed, company.api_key) as api:
        body = await api.gql("{ __schema { types { name } } }")
        assert body.get("data") is None and body["errors"]
        assert "introspection" in body["errors"][0]["message"].lower()
        assert data(await api.gql("{ __typename }")) == {"__typename": "Query"}
        assert (await api.http.get("/graphql")).status_code == 404
    async with asgi_api(services, settings, company.api_key) as api:
        assert data(await api.gql("{ __schema { queryType { name } } }"))


def test_introspection_can_be_turned_off() -> None:
    """`INTROSPECTION=false`: Strawberry's DisableIntrospection rule joins ours."""
    query = "{ __schema { queryType { name } } }"
    assert build_schema().execute_sync(query).errors is None
    refused = build_schema(introspection=False).execute_sync(query).errors
    assert refused and refused[0].extensions == {"code": "GRAPHQL_VALIDATION_FAILED"}
    typename = build_schema(introspection=False).execute_sync("{ __typename }")
    assert typename.errors is None
