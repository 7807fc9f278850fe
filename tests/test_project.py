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
