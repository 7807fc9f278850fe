"""The API's spans: one per HTTP operation request, continuing a caller's `traceparent`, and
Strawberry's operation and resolver spans beneath it (`models.tracing` says when it is on)."""

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import SpanKind
from starlette.requests import Request
from strawberry.extensions import LifecycleStep
from strawberry.extensions.tracing import OpenTelemetryExtension
from strawberry.types.execution import ExecutionContext

from models.tracing import enabled, extracted, tracer

PAGE_ARGUMENTS = frozenset({"first", "last", "after", "before", "status", "since", "bucket"})


def _ids_and_pages(arguments: dict[str, Any], _: Any) -> dict[str, Any]:  # Any: resolvers'
    """A resolver's span names the ids and page it was asked for; records, files, URLs and
    secrets are left out."""
    return {
        name: value
        for name, value in arguments.items()
        if (name == "id" or name.endswith("_id") or name in PAGE_ARGUMENTS)
        and isinstance(value, str | int | None)
    }


class OperationSpans(OpenTelemetryExtension):
    """Strawberry's spans, without the document's text on the operation's span: literals in
    it may hold what a span must not (a webhook's secret, an OAuth code)."""

    def __init__(self, *, execution_context: ExecutionContext | None = None) -> None:
        super().__init__(execution_context=execution_context, arg_filter=_ids_and_pages)

    def on_operation(self) -> Generator[None, None, None]:
        span = self._tracer.start_span("GraphQL operation")
        self._span_holder[LifecycleStep.OPERATION] = span
        yield
        if name := self.execution_context.operation_name:
            span.update_name(f"GraphQL {name}")
            span.set_attribute("graphql.operation.name", name)
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
