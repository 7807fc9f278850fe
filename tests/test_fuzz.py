"""Operations generated from the schema, valid and invalid, and hostile bodies, against a
running server: never a 5xx, never an INTERNAL error, never a traceback in its log. The
schema is the one the server gives the standard introspection query, as a client loads it."""

import json
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import httpx
import pytest
from graphql import StringValueNode, build_client_schema, get_introspection_query, print_schema
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from models.settings import Settings
from tests.helpers import MALFORMED_BODIES, ODD_BODIES
from tests.processes import cli, env_without_config, free_port, running, wait_ready

pytestmark = pytest.mark.slow

Operations = Callable[..., st.SearchStrategy[str]]
SCALARS = {
    "Date": st.dates().map(lambda d: StringValueNode(value=d.isoformat())),
    "DateTime": st.datetimes(timezones=st.just(UTC)).map(
        lambda d: StringValueNode(value=d.isoformat())
    ),
    "Decimal": st.decimals(allow_nan=False, allow_infinity=False, places=2).map(
        lambda d: StringValueNode(value=str(d))
    ),
    "Upload": st.text(max_size=20).map(lambda name: StringValueNode(value=name)),  # not a file
}
FUZZ = examples(
    max_examples=150,  # x4 cases: 600 operations, about a minute on a 2-core CI machine
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, redis_url: str
) -> Iterator[tuple[httpx.Client, Path]]:
    """A served API (no worker: queued batches wait) and a client with a company's key."""
    if database_url.startswith("sqlite"):
        pytest.skip("fuzzed on PostgreSQL, production's database; the API is the same on both")
    home = tmp_path_factory.mktemp("fuzz")
    env = env_without_config(
        DATABASE_URL=Settings(database_url=database_url).database_url,
        REDIS_URL=redis_url,
        API_RATE_LIMIT_PER_MINUTE="1000000",
    )
    company = json.loads(cli("create-company", "--name", "Fuzz Ltd", cwd=home, env=env))
    port = free_port()
    with running("serve", "--port", str(port), cwd=home, env=env):
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        headers = {"Authorization": f"Bearer {company['apiKey']}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            yield client, home / "serve.log"


@pytest.fixture(scope="module")
def served_schema(server: tuple[httpx.Client, Path]) -> str:
    """The server's schema as graphql-core's standard introspection query reads it."""
    client, _ = server
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
        one_of=True,
    )
    response = client.post("/graphql", json={"query": query}, timeout=30)
    return print_schema(build_client_schema(response.json()["data"]))


def _answered_cleanly(client: httpx.Client, body: object) -> None:
    response = client.post("/graphql", json=body, timeout=30)
    assert response.status_code < 500, (body, response.text)
    errors = response.json().get("errors") or []
    assert "INTERNAL" not in {e.get("extensions", {}).get("code") for e in errors}, body


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("operations", [queries, mutations], ids=["queries", "mutations"])
def test_generated_operations_never_break_the_server(
    server: tuple[httpx.Client, Path], served_schema: str, operations: Operations, mode: Mode
) -> None:
    client, log = server

    @FUZZ
    @given(document=operations(served_schema, custom_scalars=SCALARS, mode=mode))
    def fuzz(document: str) -> None:
        _answered_cleanly(client, {"query": document})

    fuzz()
    assert "Traceback" not in log.read_text()


HOSTILE = [*MALFORMED_BODIES, *ODD_BODIES]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_bodies_never_break_the_server(
    server: tuple[httpx.Client, Path], body: bytes
) -> None:
    client, log = server
    response = client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code < 500, response.text
    codes = [e["extensions"]["code"] for e in response.json().get("errors", [])]
    assert "INTERNAL" not in codes, response.text
    assert "Traceback" not in log.read_text()
