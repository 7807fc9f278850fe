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

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

tracer = trace.get_tracer("sync2books")

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


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
    """A span per SQL statement of this engine, while tracing is on."""
    if enabled():
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # It declares SQLAlchemy < 2.1; its engine events are unchanged in 2.1, and
        # tests/test_tracing.py checks that the statements' spans arrive.
        SQLAlchemyInstrumentor().instrument(
            engine=engine.sync_engine, enable_commenter=False, skip_dep_check=True
        )


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
