"""`python -m tests.traced COMMAND …`: a `sync2books` command traced by the SDK's in-memory
exporter, each span also written to `$TRACE_FILE` as a JSON line the moment it ends (the
process may end by a signal, before any exit hook could write them)."""

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class KeptSpans(InMemorySpanExporter):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a") as out:
            for span in spans:
                out.write(json.dumps(json.loads(span.to_json())) + "\n")
        return super().export(spans)


def main() -> None:
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"test-{sys.argv[1]}"}))
    provider.add_span_processor(SimpleSpanProcessor(KeptSpans(Path(os.environ["TRACE_FILE"]))))
    trace.set_tracer_provider(provider)  # before the command: it sees tracing on

    from api.cli import main as sync2books

    sync2books(sys.argv[1:])


if __name__ == "__main__":
    main()
