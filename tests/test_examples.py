"""The client examples, run as a newcomer would: against `sync2books serve`, embedded default."""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.node import node, npm_project
from tests.processes import cli, env_without_config, free_port, running, wait_ready

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A served embedded default and a company: the example's command-line arguments."""
    home = tmp_path_factory.mktemp("embedded")
    env = env_without_config()
    company = json.loads(cli("create-company", "--name", "Example Ltd", cwd=home, env=env))
    port = free_port()
    with running("serve", "--port", str(port), cwd=home, env=env):
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        yield [
            "--url",
            f"http://127.0.0.1:{port}",
            "--key",
            company["apiKey"],
            "--company-id",
            company["companyId"],
        ]


def _check_output(lines: list[str]) -> None:
    assert lines[0].startswith("batch bat_") and lines[0].endswith("queued")
    events = [json.loads(line) for line in lines[1:-1]]
    assert [e["toStatus"] for e in events][-1] == "COMPLETED"
    assert [int(e["eventId"]) for e in events] == sorted(int(e["eventId"]) for e in events)
    assert sum(e["toStatus"] == "SUCCESS" for e in events) == 2
    assert lines[-1] == "batch COMPLETED: 2 synced, 0 failed"


def test_the_python_example_follows_a_batch_to_completion(service: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "follow_batch.py"), *service],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    _check_output(done.stdout.splitlines())


async def test_the_javascript_example_follows_a_batch_to_completion(service: list[str]) -> None:
    folder = npm_project(EXAMPLES)
    output = await node(folder, "node", "follow-batch.mjs", *service, seconds=60)
    _check_output(output.splitlines())


def test_the_typescript_example_is_typed_and_runs_where_only_its_documents_do(
    tmp_path: Path,
) -> None:
    """Its codegen types every document from the schema and writes the manifest
    (persisted-documents.json); a service given it with TRUSTED_DOCUMENTS=only runs the
    example, which names its documents by hash over HTTP and sends the manifest's text over
    WebSocket, and refuses a document of anyone else's."""
    folder = npm_project(EXAMPLES / "web")
    subprocess.run(["npm", "run", "--silent", "codegen"], cwd=folder, check=True, timeout=120)
    generated = (folder / "src" / "gql" / "graphql.ts").read_text()
    assert "export type FollowBatchSubscription" in generated  # its documents, typed
    subprocess.run(["npm", "run", "--silent", "typecheck"], cwd=folder, check=True, timeout=120)
    manifest = folder / "src" / "gql" / "persisted-documents.json"
    env = env_without_config(TRUSTED_DOCUMENTS="only", TRUSTED_DOCUMENTS_MANIFEST=str(manifest))
    company = json.loads(cli("create-company", "--name", "Trusting Ltd", cwd=tmp_path, env=env))
    port = free_port()
    with running("serve", "--port", str(port), cwd=tmp_path, env=env):
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        url, key = f"http://127.0.0.1:{port}", company["apiKey"]
        arguments = ["--url", url, "--key", key, "--company-id", company["companyId"]]
        started = subprocess.run(
            ["npm", "run", "--silent", "start", "--", *arguments],
            cwd=folder, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        _check_output(started.stdout.splitlines())
        other = httpx.post(
            f"{url}/graphql",
            json={"query": "{ company { name } }"},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert other.json()["errors"][0]["extensions"]["code"] == "DOCUMENT_NOT_TRUSTED"
