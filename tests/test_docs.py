"""The docs a new user follows, run as they are written: the README's first-use blocks against
a served instance."""

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from graphql import OperationDefinitionNode, parse, validate

from api.core_schema import graphql_schema
from api.schema import schema
from models.errors import HINTS, RETRYABLE, SyncErrorCode
from tests.processes import (
    BIN,
    cli,
    env_without_config,
    free_port,
    ready_client,
    running,
    wait_ready,
)

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
API = (ROOT / "docs" / "api.md").read_text()
SOURCES = [*(ROOT / "api").glob("*.py"), ROOT / "models" / "errors.py"]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def section(text: str, heading: str) -> str:
    """A section of the README: from its heading to the next heading of any level."""
    start = text.index(f"\n{heading}\n")
    following = re.search(r"^#{2,3} ", text[start + len(heading) + 2 :], re.M)
    return text[start : start + len(heading) + 2 + (following.start() if following else len(text))]


def blocks(text: str, language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(text) if lang == language]


def as_run_here(block: str, port: int) -> str:
    """A block as a user in a fresh clone runs it, on this test's venv and port."""
    return block.replace(".venv/bin/", f"{BIN.parent}/").replace(
        "127.0.0.1:8000", f"127.0.0.1:{port}"
    )


FIRST_SYNC = section(README, "## First sync")


def test_the_first_sync_section_is_all_runnable_blocks() -> None:
    assert [lang for lang, _ in BLOCK.findall(FIRST_SYNC)] == ["sh", "sh", "graphql", "python"]
    (intro,) = blocks(README[: README.index("\n## ")], "sh")
    assert ".venv/bin/sync2books serve\n" in intro  # what the test below serves, as given
    document = parse(blocks(FIRST_SYNC, "graphql")[0])
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    assert all(op.name for op in operations)  # several in one document: each must be named
    assert validate(graphql_schema(schema), document) == []


async def _finished(client: httpx.AsyncClient, document: str, batch_id: str) -> dict[str, Any]:
    for _ in range(200):
        answer = await _run(client, document, "BatchStatus", batchId=batch_id)
        batch: dict[str, Any] = answer["syncBatch"]
        if batch["status"] in ("COMPLETED", "FAILED"):
            return batch
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not finish")


async def _run(
    client: httpx.AsyncClient, document: str, name: str, **variables: object
) -> dict[str, Any]:
    """One operation of the README's document, sent as GraphiQL sends it: whole, by name."""
    body = {"query": document, "operationName": name, "variables": variables}
    answer = (await client.post("/graphql", json=body)).json()
    assert "errors" not in answer, answer
    data: dict[str, Any] = answer["data"]
    return data


async def test_the_first_sync_runs_as_written(tmp_path: Path) -> None:
    """The serve command, the shell blocks (create-company --shell, curl), the GraphQL
    operations in order and the Python script, against one served embedded default."""
    env = env_without_config()
    port = free_port()
    started = time.monotonic()
    with running("serve", "--port", str(port), cwd=tmp_path, env=env):
        shell = "\n".join(as_run_here(block, port) for block in blocks(FIRST_SYNC, "sh"))
        shell += '\nprintf "%s %s\\n" "$SYNC2BOOKS_COMPANY_ID" "$SYNC2BOOKS_API_KEY"\n'
        await asyncio.to_thread(
            wait_ready, f"http://127.0.0.1:{port}/readyz"
        )  # then a 2nd terminal
        done = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-euo", "pipefail", "-c", shell],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        *answers, last = done.stdout.strip().splitlines()
        company_id, key = last.split()
        assert answers[0] == f"company {company_id}, key {key}"
        created, listed = (json.loads(line) for line in answers[1:])
        batch_id = created["data"]["createExpenses"]["syncBatchId"]
        assert listed["data"]["syncBatches"]["edges"][0]["node"]["id"] == batch_id

        document = blocks(FIRST_SYNC, "graphql")[0]
        async with ready_client(port, key) as client:
            home = await client.get("/", headers={"Accept": "text/html"})
            links = re.findall(r'href="(/[^"]*)"', home.text)
            assert home.status_code == 200 and {"/graphql", "/monitor"} <= set(links)
            for link in links:  # followed as a browser would
                followed = await client.get(link, headers={"Accept": "text/html"})
                assert followed.status_code == 200, link
            first = await _run(client, document, "FirstExpenses", companyId=company_id)
            batch_id = first["createExpenses"]["syncBatchId"]
            batch = await _finished(client, document, batch_id)
            first_sync = time.monotonic() - started
            assert (batch["status"], batch["successCount"], batch["failedCount"]) == (
                "COMPLETED",
                1,
                1,
            )
            failed = [e["node"] for e in batch["items"]["edges"] if e["node"]["status"] == "FAILED"]
            assert failed[0]["error"]["code"] == "INVALID_ACCOUNT_ID"
            assert "createAccount" in failed[0]["error"]["hint"] and failed[0]["id"].startswith(
                "itm_"
            )
            await _run(client, document, "AddAccount", companyId=company_id)
            retried = await _run(client, document, "RetryFailed", batchId=batch_id)
            assert [i["id"] for i in retried["retryFailedItems"]["items"]] == [failed[0]["id"]]
            batch = await _finished(client, document, batch_id)
            assert (batch["successCount"], batch["failedCount"]) == (2, 0)

        other = json.loads(cli("create-company", "--name", "Script Ltd", cwd=tmp_path, env=env))
        script = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-"],
            input=blocks(FIRST_SYNC, "python")[0],
            env=os.environ | {
                "SYNC2BOOKS_URL": f"http://127.0.0.1:{port}",
                "SYNC2BOOKS_COMPANY_ID": other["companyId"],
                "SYNC2BOOKS_API_KEY": other["apiKey"],
            },
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert script.returncode == 0, script.stderr
    lines = script.stdout.splitlines()
    assert lines[0] == "COMPLETED 1 synced, 1 failed" and lines[1].startswith(
        "INVALID_ACCOUNT_ID - "
    )
    assert lines[2] == "COMPLETED 2 synced, 0 failed"
    print(f"serve to the first completed sync, following the README: {first_sync:.1f} s")


# A root field's signature: with its arguments typed (or elided, …), and its type; or, for a
# field without arguments, its type where a list item starts
SIGNATURE = r"`(\w+)(\((?:[^)]*:[^)]*|…)\)(?:: [\w!\[\]]+)?)`|^- `(\w+)(: [\w!\[\]]+)`"


def test_the_api_reference_documents_every_root_field_as_the_schema_has_it() -> None:
    """Every root field under its operation type, with the schema's arguments and type (a
    signature may end its arguments with …, as for the create mutations' siblings)."""
    core = graphql_schema(schema)
    for kind, root in (
        ("Query", core.query_type),
        ("Mutation", core.mutation_type),
        ("Subscription", core.subscription_type),
    ):
        assert root is not None
        found = re.findall(SIGNATURE, section(API, f"## {kind}"), re.S | re.M)
        signatures = {a or c: b or d for a, b, c, d in found}
        assert set(signatures) == set(root.fields), kind
        for name, signature in signatures.items():
            field = root.fields[name]
            arguments = re.findall(r"(\w+): ([\w!\[\]]+)", signature.split("): ")[0])
            given = {arg: str(field.args[arg].type) for arg, _ in arguments if arg in field.args}
            assert dict(arguments) == given, (name, arguments)  # no stale or mistyped argument
            if "…" not in signature and signature.startswith("("):
                assert set(given) == set(field.args), name
            if "): " in signature or signature.startswith(": "):
                assert signature.rsplit(": ", 1)[1] == str(field.type), name


def test_the_api_reference_lists_every_error_code_with_the_hint_the_service_gives() -> None:
    errors = section(API, "## Errors")
    for code in SyncErrorCode:
        retryable = "yes" if code in RETRYABLE else "no"
        assert f"| `{code}` | {retryable} | {HINTS[code]} |" in errors, code
    quoted = {c for path in SOURCES for c in re.findall(r'"([A-Z][A-Z_]{3,})"', path.read_text())}
    raised = quoted - {"POST", "COMMAND"} - set(SyncErrorCode)  # every string that reads as a code
    assert raised >= {"UNAUTHENTICATED", "BAD_REQUEST", "RATE_LIMITED"}  # the scan finds them
    missing = {code for code in raised if f"| `{code}` |" not in errors}
    assert not missing
