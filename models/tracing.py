"""OpenTelemetry traces, from a GraphQL request through its batch's job to each ledger call.

Off unless the standard `OTEL_*` variables ask for an exporter (`OTEL_EXPORTER_OTLP_ENDPOINT`
or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_TRACES_EXPORTER=otlp|console`), or the host
installed an SDK tracer provider of its own (`opentelemetry-instrument`, a test). When off,
spans are the API's no-ops and nothing is instrumented.

A job runs in another process: the context travels in its payload (`carrier`, `extracted`).
Span attributes name companies, batches, items and providers, never tokens or keys.
"""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

tracer = trace.get_tracer("sync2books")

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SQL_SPANS = "opentelemetry.instrumentation.sqlalchemy"


def enabled() -> bool:
    """Whether spans are recorded: an SDK provider is installed, by `configured` or the host."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def _exporter() -> SpanExporter | None:
    """The exporter the environment asks for, or None: tracing stays off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    configured = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if configured == "console":
        return ConsoleSpanExporter()
    if configured == "otlp" or (not configured and any(os.environ.get(e) for e in ENDPOINTS)):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # reads its endpoint, headers and timeout from OTEL_*
    return None


@contextmanager
def configured(service_name: str) -> Iterator[None]:
    """Install the process's tracer provider for as long as it runs, if the environment asks
    for one; its last spans are exported on the way out. `OTEL_SERVICE_NAME` wins over
    `service_name` (sync2books-api, sync2books-worker)."""
    exporter = None if enabled() else _exporter()
    if exporter is None:
        yield
        return
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield
    finally:
        provider.shutdown()


def instrument(engine: AsyncEngine) -> None:
    """A span per SQL statement of this engine, while tracing is on.

    The instrumentation's tracer for this one engine, not its instrumentor: that one also
    wraps every `Engine.connect` in a span, one per pool checkout, as many as the statements
    and telling nothing. It declares SQLAlchemy < 2.1; the engine events it listens to are
    unchanged in 2.1, and tests/test_tracing.py checks the statements' spans arrive."""
    if not enabled():
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    usage = metrics.get_meter(SQL_SPANS).create_up_down_counter("db.client.connections.usage")
    EngineTracer(  # type: ignore[no-untyped-call]
        trace.get_tracer(SQL_SPANS), engine.sync_engine, usage, enable_commenter=False
    )


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
