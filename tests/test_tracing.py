"""Traces: one from a client's request through the API process, the queued job and the worker
process to each ledger call, with log lines that name it; and off unless configured."""

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from infra import tracing
from infra.services import Services
from infra.settings import Settings
from tests.helpers import data, eventually, expense
from tests.live import COMPANY_EVENTS, GraphQLWebSocket
from tests.processes import cli, env_without_config, free_port, ready_client, running

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

TRACED = (sys.executable, str(Path(__file__).with_name("traced.py")))
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"  # the client's own trace, continued
CALLER_SPAN = "00f067aa0ba902b7"
CREATE = """mutation Create($companyId: ID!, $expenses: [ExpenseInput!]!) {
  createExpenses(companyId: $companyId, expenses: $expenses) { syncBatchId }
}"""
STATUS = "query Status($id: ID!) { syncBatch(id: $id) { status } }"


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _hex(value: str | None) -> str | None:
    return None if value is None else value.removeprefix("0x")


@pytest.mark.slow
async def test_one_trace_runs_from_the_request_through_the_job_to_each_ledger_call(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    env = env_without_config(
        DATABASE_URL=settings.database_url,
        REDIS_URL=services.redis_url,
        TRACE_FILE=str(tmp_path / "spans.jsonl"),
    )
    company = json.loads(cli("create-company", "--name", "Traced Ltd", cwd=tmp_path, env=env))
    port = free_port()
    with (
        running("serve", "--port", str(port), cwd=tmp_path, env=env, program=TRACED),
        running("worker", cwd=tmp_path, env=env, program=TRACED),
    ):
        async with (
            ready_client(port, company["apiKey"]) as client,
            GraphQLWebSocket.connect(f"127.0.0.1:{port}", company["apiKey"]) as live,
        ):
            await live.subscribe("all", COMPANY_EVENTS, {"companyId": company["companyId"]})
            expenses = [expense(reference="t-1"), expense(reference="t-2", accountId="999")]
            response = await client.post(
                "/graphql",
                json={
                    "query": CREATE,
                    "variables": {"companyId": company["companyId"], "expenses": expenses},
                },
                headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
            )
            batch_id = data(response.json())["createExpenses"]["syncBatchId"]

            async def completed() -> bool:
                answer = await client.post(
                    "/graphql", json={"query": STATUS, "variables": {"id": batch_id}}
                )
                return bool(data(answer.json())["syncBatch"]["status"] == "COMPLETED")

            await eventually(completed, "the batch completed", seconds=30)
            heard = await live.events("all", count=9)  # traced, the stream is as it was
            assert heard[-1]["toStatus"] == "COMPLETED"

    spans = [
        s
        for s in _spans(tmp_path / "spans.jsonl")
        if _hex(s["context"]["trace_id"]) == CALLER_TRACE
    ]
    by_id = {_hex(span["context"]["span_id"]): span for span in spans}

    def ancestry(span: dict[str, Any]) -> list[str]:
        names = []
        while (parent := _hex(span["parent_id"])) in by_id:
            span = by_id[parent]
            names.append(span["name"])
        assert parent == CALLER_SPAN, "every span's root is the caller's span"
        return names

    def service(span: dict[str, Any]) -> str:
        return str(span["resource"]["attributes"]["service.name"])

    (job,) = [span for span in spans if span["name"] == "sync batch"]
    assert service(job) == "test-worker"
    assert job["attributes"]["sync2books.batch_id"] == batch_id
    assert ancestry(job) == ["GraphQL Create", "POST /graphql"]  # in the API process: the
    # context came in the job's payload

    steps = [span for span in spans if span["name"] in ("GraphQL Parsing", "GraphQL Validation")]
    assert sorted(span["name"] for span in steps) == ["GraphQL Parsing", "GraphQL Validation"]
    assert all(ancestry(span) == ["GraphQL Create", "POST /graphql"] for span in steps)

    (push,) = [span for span in spans if span["name"] == "ledger push"]
    assert service(push) == "test-worker" and ancestry(push)[0] == "sync batch"
    assert push["attributes"]["sync2books.provider"] == "sandbox"
    assert len(push["attributes"]["sync2books.item_ids"]) == 2  # one call carried both

    statements = [span for span in spans if "db.query.text" in span["attributes"]]
    in_api = [s for s in statements if service(s) == "test-serve"]
    in_worker = [s for s in statements if service(s) == "test-worker"]
    inserts = [s for s in in_api if s["name"] == "INSERT sync_item"]
    assert inserts and all(ancestry(s)[0] == "GraphQL Create" for s in inserts)
    assert inserts[0]["attributes"]["db.query.text"].startswith("INSERT INTO sync_item")
    assert inserts[0]["attributes"]["db.collection.name"] == "sync_item"
    backend = settings.database_url.partition(":")[0].partition("+")[0]  # postgresql, sqlite
    assert {s["attributes"]["db.system.name"] for s in statements} == {backend}
    assert any(s["name"] == "UPDATE sync_item" for s in in_worker)
    assert all("sync batch" in ancestry(s) for s in in_worker)

    everything = _spans(tmp_path / "spans.jsonl")  # the subscription's own trace, too
    (subscribed,) = [s for s in everything if s["name"] == "GraphQL Company"]
    assert service(subscribed) == "test-serve"
    assert subscribed["attributes"]["graphql.operation.type"] == "subscription"

    dumped = (tmp_path / "spans.jsonl").read_text()
    assert company["apiKey"] not in dumped and env["SECRET_KEY"] not in dumped
    assert "Cafe Uno" not in dumped  # records stay out of spans: ids and pages only

    worker_lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()]
    (failed,) = [line for line in worker_lines if line["message"].startswith("item failed")]
    assert failed["trace_id"] == CALLER_TRACE  # a log line leads to its trace


def test_tracing_is_off_unless_the_environment_configures_an_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", *ENDPOINTS, "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.exporter(Settings()) is None
    assert not tracing.enabled() and tracing.carrier() == {}  # this test process: no provider
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert isinstance(tracing.exporter(Settings()), OTLPSpanExporter)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.exporter(Settings()) is None
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert isinstance(tracing.exporter(Settings()), ConsoleSpanExporter)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing.exporter(Settings()) is None


async def test_each_statement_is_a_span_described_by_the_database_conventions() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # this test's own: tracing stays off for the rest
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = create_async_engine("sqlite+aiosqlite://")
    tracing.statement_spans(engine, provider.get_tracer("test"))
    insert = "INSERT INTO note (id, body) VALUES (:id, :body)"
    wide = "SELECT " + ", ".join(f"id AS c{n}" for n in range(250)) + " FROM note"
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE note (id INTEGER, body TEXT)"))
        await conn.execute(text(insert), [{"id": 1, "body": "private"}, {"id": 2, "body": "x"}])
        await conn.execute(text(wide))
        with pytest.raises(DBAPIError):
            await conn.execute(text("SELECT body FROM missing"))
    await engine.dispose()
    spans = {span.name: span for span in exporter.get_finished_spans()}

    assert spans["INSERT note"].attributes == {
        "db.system.name": "sqlite",
        "db.operation.name": "INSERT",
        "db.collection.name": "note",
        "db.operation.batch.size": 2,
        "db.query.text": "INSERT INTO note (id, body) VALUES (?, ?)",  # never the values
    }
    assert spans["INSERT note"].kind is SpanKind.CLIENT
    selected = spans["SELECT note"].attributes  # its table found past the text's cut
    assert selected is not None and selected["db.query.text"] == wide[: tracing.QUERY_TEXT_CHARS]
    failed = spans["SELECT missing"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "OperationalError"
