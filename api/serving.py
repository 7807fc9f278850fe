"""How the API is served: uvicorn's documented options, in production and in tests alike."""

from typing import Any

from infra.settings import Settings

MAX_WS_MESSAGE_BYTES = 256 * 1024


def server_options(settings: Settings) -> dict[str, Any]:  # Any: uvicorn's keyword arguments
    """uvicorn settings for this app. The sans-I/O WebSocket protocol holds the least per idle
    connection of uvicorn's three (`python -m bench footprint`, bench/RESULTS.md). uvicorn's
    own keep-alive (5 s) closes idle connections as clients that keep them 5 s (httpx) or
    longer (proxies, Go) send on them: under load, a lost request every few minutes. A
    subscription over HTTP (graphql-sse, multipart) stays open until its client leaves, so a
    stopped API waits `HTTP_SHUTDOWN_GRACE_SECONDS` for requests in flight, then ends those
    streams; it would otherwise wait for them forever, until killed."""
    return {
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "timeout_graceful_shutdown": settings.http_shutdown_grace_seconds,
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,  # compression costs more than the rest of a delivery
        "ws_max_size": MAX_WS_MESSAGE_BYTES,
    }
