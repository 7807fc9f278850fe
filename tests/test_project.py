"""The project's own checks, run by the test command so they run the same everywhere."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import ledgers.books  # noqa: F401  (its tables join the metadata)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_schema_graphql_is_what_the_code_exports() -> None:
    exported = _run(str(BIN / "sync2books"), "export-schema")
    assert exported.returncode == 0, exported.stderr
    assert (ROOT / "schema.graphql").read_text() == exported.stdout, (
        "schema.graphql is stale: run `sync2books export-schema > schema.graphql`"
    )


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "format", "--check", "."),
        ("ruff", "check", "."),
        ("mypy", "api", "jobs", "ledgers", "models", "tests"),
    ],
    ids=["ruff-format", "ruff-check", "mypy-strict"],
)
def test_code_passes_its_checks(command: tuple[str, ...]) -> None:
    result = _run(str(BIN / command[0]), *command[1:])
    assert result.returncode == 0, result.stdout + result.stderr


# What each room may not import (STYLE.md's directions). Alembic's env, in models/, gathers
# every table's metadata, the sandbox's books' included, so it is the one exception.
FORBIDDEN = {
    "models": {"api", "jobs", "ledgers", "httpx", "httpx2", "authlib"},
    "ledgers": {"api", "jobs"},
    "jobs": {"api"},
}


def _imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_imports_run_one_way(room: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / room).rglob("*.py"))
        if "migrations" not in path.parts
        for name in _imported(path)
        if name.split(".")[0] in FORBIDDEN[room]
    ]
    assert wrong == []


async def test_migrations_build_exactly_the_tables_the_models_declare(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            drift = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), SQLModel.metadata)
            )
    finally:
        await engine.dispose()
    assert drift == []


def _internals() -> list[tuple[type, str]]:
    """What api/ uses of Strawberry's, graphql-core's and uvicorn's internals, with the class
    that holds each: methods and class attributes, or attributes its code assigns."""
    from graphql import Executor
    from strawberry.asgi import ASGIWebSocketAdapter
    from strawberry.schema.schema import Schema
    from strawberry.schema.schema_converter import GraphQLCoreConverter
    from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
        BaseGraphQLTransportWSHandler,
        Operation,
    )
    from strawberry.types.arguments import InputContext
    from strawberry.types.base import StrawberryObjectDefinition
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    handler = BaseGraphQLTransportWSHandler
    return [
        (Schema, "_schema"),
        (handler, "run_operation"),
        (handler, "_handle_pre_execution_error"),
        (handler, "handle_connection_init"),
        (handler, "shutdown"),
        (handler, "send_message"),
        (handler, "operations"),
        (handler, "connection_acknowledged"),
        (handler, "connection_init_timeout_task"),
        (handler, "websocket"),
        (handler, "view"),
        (ASGIWebSocketAdapter, "ws"),
        (Operation, "send_operation_message"),
        (StrawberryObjectDefinition, "from_input"),
        (InputContext, "convert"),
        (GraphQLCoreConverter, "DEFINITION_BACKREF"),
        (Executor, "build"),
        (Executor, "build_per_event_executor"),
        (WebSocketsSansIOProtocol, "handle_connect"),
        (WebSocketsSansIOProtocol, "conn"),
        (WebSocketsSansIOProtocol, "writable"),
        (WebSocketsSansIOProtocol, "transport"),
        (WebSocketsSansIOProtocol, "scope"),
        (WebSocketsSansIOProtocol, "queue"),
        (WebSocketsSansIOProtocol, "request"),
        (WebSocketsSansIOProtocol, "response"),
        (WebSocketsSansIOProtocol, "start_keepalive"),
    ]


def test_the_internals_api_leans_on_are_still_there() -> None:
    import inspect

    import graphql.execution.values

    missing = [
        f"{owner.__module__}.{owner.__qualname__}.{name}"
        for owner, name in _internals()
        if not hasattr(owner, name)
        and name not in getattr(owner, "__dataclass_fields__", {})
        and f"self.{name} =" not in inspect.getsource(owner)
        and f"self.{name}: " not in inspect.getsource(owner)
    ]
    missing += [
        f"graphql.{name}" for name in ("execute_subscription_event",) if not hasattr(graphql, name)
    ]
    if not hasattr(graphql.execution.values, "get_argument_values"):
        missing.append("graphql.execution.values.get_argument_values")
    assert not missing, (
        "a dependency upgrade moved internals that api/live_ws.py, api/wire.py, api/inputs.py "
        f"or api/selections.py use: {missing}; adapt them, then the bounds in pyproject.toml"
    )
