"""A local OTLP/HTTP endpoint that takes every export and keeps only counts: the service's
tracing costs what it costs with a real collector, which runs elsewhere in production."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Sink(BaseHTTPRequestHandler):
    exports = 0
    received = 0  # bytes

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).exports += 1
        type(self).received += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: one line per export would be the driver's own noise."""


@contextmanager
def collector() -> Iterator[str]:
    """An OTLP/HTTP endpoint on loopback, for `OTEL_EXPORTER_OTLP_ENDPOINT`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
