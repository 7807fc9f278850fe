"""The API's spans: one per HTTP operation request, continuing a caller's `traceparent`, and
Strawberry's operation spans beneath it (`infra.tracing` says when it is on)."""

from collections.abc import Generator, Iterator
from contextlib import contextmanager

from opentelemetry.trace import SpanKind, use_span
from starlette.requests import Request
from strawberry.extensions import SchemaExtension

from infra.tracing import enabled, extracted, tracer


class OperationSpans(SchemaExtension):
    """Spans for an operation, its parsing and its validation, with the operation's span
    current while it runs: its SQL statements and the jobs it queues are its children.

    Not a span per resolved field: a page of 100 batches with 10 items each would be over a
    thousand spans, and Strawberry's own OpenTelemetry extension's resolver hook alone made
    such a page 2.6 times slower. Nor the document's text: literals in it may hold what a
    span must not (a webhook's secret, an OAuth code)."""

    def on_operation(self) -> Generator[None, None, None]:
        span = tracer.start_span("GraphQL operation")
        with use_span(span, end_on_exit=False):
            yield
        if name := self.execution_context.operation_name:
            span.update_name(f"GraphQL {name}")
            span.set_attribute("graphql.operation.name", name)
        span.end()

    def on_parse(self) -> Generator[None, None, None]:
        span = tracer.start_span("GraphQL Parsing")  # the operation's span is current
        yield
        span.end()

    def on_validate(self) -> Generator[None, None, None]:
        span = tracer.start_span("GraphQL Validation")
        yield
        span.end()


@contextmanager
def request_span(request: Request) -> Iterator[None]:
    """The span of one `/graphql` request, the root of its trace or a child of the caller's
    `traceparent` header; a no-op while tracing is off."""
    if not enabled():
        yield
        return
    with tracer.start_as_current_span(
        f"{request.method} /graphql",
        context=extracted(request.headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "url.path": "/graphql"},
    ):
        yield


@contextmanager
def subscription_span(name: str | None) -> Iterator[None]:
    """A live subscription's start on the shared path (`api/live_ws.py`): its admission and
    authorisation, named as `OperationSpans` names the operations Strawberry runs. Its stream
    is no part of it: it may last for days."""
    if not enabled():
        yield
        return
    with tracer.start_as_current_span(f"GraphQL {name}" if name else "GraphQL operation") as span:
        span.set_attribute("graphql.operation.type", "subscription")
        if name:
            span.set_attribute("graphql.operation.name", name)
        yield
