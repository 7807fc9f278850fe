"""A local OTLP/HTTP endpoint that takes every export and keeps only the spans' names and
counts: the service's tracing costs what it costs with a real collector, which runs elsewhere
in production."""

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_received: Counter[str] = Counter()  # spans, by name


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                _received.update(span.name for span in scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: one line per export would be the driver's own noise."""


def spans() -> Counter[str]:
    """The spans received so far, by name."""
    return Counter(_received)


@contextmanager
def collector() -> Iterator[str]:
    """An OTLP/HTTP endpoint on loopback, for `OTEL_EXPORTER_OTLP_ENDPOINT`."""
    _received.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
