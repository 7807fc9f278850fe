"""Operations generated from the schema, valid and invalid, against a running server:
never a 5xx, never an INTERNAL error, never a traceback in its log."""

import json
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import httpx
import pytest
from graphql import StringValueNode
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from api.schema import sdl
from models.settings import Settings
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
}
FUZZ = examples(
    max_examples=500,  # x4 cases: 2,000 operations, about two minutes
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


def _answered_cleanly(client: httpx.Client, body: object) -> None:
    response = client.post("/graphql", json=body, timeout=30)
    assert response.status_code < 500, (body, response.text)
    errors = response.json().get("errors") or []
    assert "INTERNAL" not in {e.get("extensions", {}).get("code") for e in errors}, body


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("operations", [queries, mutations], ids=["queries", "mutations"])
def test_generated_operations_never_break_the_server(
    server: tuple[httpx.Client, Path], operations: Operations, mode: Mode
) -> None:
    client, log = server

    @FUZZ
    @given(document=operations(sdl(), custom_scalars=SCALARS, mode=mode))
    def fuzz(document: str) -> None:
        _answered_cleanly(client, {"query": document})

    fuzz()
    assert "Traceback" not in log.read_text()
