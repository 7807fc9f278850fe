"""A local OTLP/HTTP endpoint that takes every export and counts its spans by name: the
service's tracing costs what it costs with a real collector, which runs elsewhere in
production. Exports are decoded only when counted, after a run: decoding as they come took
CPU from the service on the machine's two cores, inside the measured window."""

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_exports: list[bytes] = []  # as received, protobuf-encoded


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        _exports.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: one line per export would be the driver's own noise."""


def spans() -> Counter[str]:
    """The spans received so far, by name."""
    counted: Counter[str] = Counter()
    for body in list(_exports):
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope in resource.scope_spans:
                counted.update(span.name for span in scope.spans)
    return counted


@contextmanager
def collector() -> Iterator[str]:
    """An OTLP/HTTP endpoint on loopback, for `OTEL_EXPORTER_OTLP_ENDPOINT`."""
    _exports.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
