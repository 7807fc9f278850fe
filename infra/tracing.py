"""OpenTelemetry traces, from a GraphQL request through its batch's job to each ledger call.

Off unless the standard `OTEL_*` variables ask for an exporter (`OTEL_EXPORTER_OTLP_ENDPOINT`
or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_TRACES_EXPORTER=otlp|console`), or the host
installed an SDK tracer provider of its own (`opentelemetry-instrument`, a test). When off,
spans are the API's no-ops and nothing is instrumented.

A job runs in another process: the context travels in its payload (`carrier`, `extracted`).
Span attributes name companies, batches, items and providers, never tokens or keys.
"""

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext, ExecutionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.settings import Settings

tracer = trace.get_tracer("sync2books")

SQL_SPANS = "sync2books.sql"
QUERY_TEXT_CHARS = 2000  # a batch insert repeats its VALUES row hundreds of times
SUMMARY_CHARS = 4000  # where a SELECT of many columns names its table
_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)', re.IGNORECASE)
_SPAN = "_sync2books_span"  # where a statement's span waits on its execution context


def enabled() -> bool:
    """Whether spans are recorded: an SDK provider is installed, by `configured` or the host."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def exporter(settings: Settings) -> SpanExporter | None:
    """The exporter the settings (`OTEL_*`) ask for, or None: tracing stays off."""
    if settings.otel_sdk_disabled:
        return None
    configured = (settings.otel_traces_exporter or "").strip().lower()
    if configured == "console":
        return ConsoleSpanExporter()
    endpoint = settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint
    if configured == "otlp" or (not configured and endpoint):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # reads its endpoint, headers and timeout from OTEL_*
    return None


@contextmanager
def configured(settings: Settings, service_name: str) -> Iterator[None]:
    """Install the process's tracer provider for as long as it runs, if the settings ask for
    one; its last spans are exported on the way out. `OTEL_SERVICE_NAME` wins over
    `service_name` (sync2books-api, sync2books-worker)."""
    chosen = None if enabled() else exporter(settings)
    if chosen is None:
        yield
        return
    named = {} if settings.otel_service_name else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(chosen))
    trace.set_tracer_provider(provider)
    try:
        yield
    finally:
        provider.shutdown()


def instrument(engine: AsyncEngine) -> None:
    """A span per SQL statement of this engine, while tracing is on, named and described as
    OpenTelemetry's database conventions say ("INSERT sync_event"; `db.query.text` and the
    rest), from two engine events. The SQLAlchemy instrumentation package did more work a
    statement (90 against 70 µs of CPU, span and export, in a microbenchmark), recorded each
    statement whole under the conventions' old names, and declares SQLAlchemy < 2.1."""
    if enabled():
        statement_spans(engine, trace.get_tracer(SQL_SPANS))


def statement_spans(engine: AsyncEngine, sql: trace.Tracer) -> None:
    """Record each statement of the engine as a span of `sql`."""
    sync_engine = engine.sync_engine
    described: dict[str, AttributeValue] = {"db.system.name": sync_engine.dialect.name}
    if sync_engine.url.database:
        described["db.namespace"] = sync_engine.url.database

    def started(
        conn: object,
        cursor: object,
        statement: str,
        parameters: object,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> None:
        operation, table = _summary(statement[:SUMMARY_CHARS])
        attributes = described | {
            "db.query.text": statement[:QUERY_TEXT_CHARS],
            "db.operation.name": operation,
        }
        if table:
            attributes["db.collection.name"] = table
        if executemany and isinstance(parameters, list | tuple):
            attributes["db.operation.batch.size"] = len(parameters)
        span = sql.start_span(
            f"{operation} {table}" if table else operation,
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        if context is not None:
            setattr(context, _SPAN, span)

    def ended(**execution: object) -> None:
        span = getattr(execution["context"], _SPAN, None)
        if span is not None:
            span.end()

    def failed(failure: ExceptionContext) -> None:
        span = getattr(failure.execution_context, _SPAN, None)
        if span is not None:
            error = type(failure.original_exception).__qualname__
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
            span.end()

    event.listen(sync_engine, "before_cursor_execute", started)
    event.listen(sync_engine, "after_cursor_execute", ended, named=True)
    event.listen(sync_engine, "handle_error", failed)


@lru_cache(maxsize=512)
def _summary(statement: str) -> tuple[str, str | None]:
    """The statement's operation and the table it names first: ("UPDATE", "sync_item")."""
    operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
    found = _TABLE.search(statement)
    return operation, found.group(1) if found else None


def flush() -> None:
    """Export what has ended: a process may be ended by a signal before any exit hook."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, for a job's payload ({} when off)."""
    headers: dict[str, str] = {}
    if enabled():
        propagate.inject(headers)
    return headers


def extracted(headers: Mapping[str, str] | None) -> Context:
    """The context a job's payload (or a request's `traceparent` header) carried."""
    return propagate.extract(headers or {})


def current_trace_id() -> str | None:
    """The current span's trace id in hex, as tracing tools show it; None outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
