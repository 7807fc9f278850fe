"""How the API is served: uvicorn's options, and a WebSocket protocol that can write many
frames at once.

ASGI sends one message per awaited call, so a live event reaching 1,000 subscribers costs
1,000 task wake-ups and 1,000 trips through Starlette and uvicorn. The live hub instead writes
each event straight to every caught-up subscriber's socket, and the events of one burst in a
single system call: `LiveWebSocketProtocol` offers that as the `sync2books.frames` extension
in the connection's scope. Where it is absent (another server), delivery falls back to ASGI.
"""

import asyncio
import socket
import struct
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

FRAMES_EXTENSION = "sync2books.frames"
MAX_WS_MESSAGE_BYTES = 256 * 1024
SEND_BUFFER_BYTES = 64 * 1024  # Linux doubles it for its own bookkeeping


class Frames:
    """Direct text-frame writes to one WebSocket, beside its ASGI send."""

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def writable(self) -> bool:
        """False once the socket's buffer passed its high-water mark, or it is closing."""
        protocol = self._protocol
        return (
            protocol.conn.state is State.OPEN
            and protocol.writable.is_set()
            and not protocol.transport.is_closing()
        )

    def write(self, frames: bytes) -> None:
        """Write whole frames (see `text_frame_header`); only while `writable`."""
        self._protocol.transport.write(frames)


def text_frame_header(length: int) -> bytes:
    """The header of an unfragmented, unmasked server text frame (RFC 6455 5.2) of `length`
    bytes; no extension is in use."""
    if length < 126:
        return struct.pack("!BB", 0x81, length)
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class LiveWebSocketProtocol(WebSocketsSansIOProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Bound the kernel's send buffer: left to autotune it grows to megabytes for a client
        that stops reading, per connection, before the server ever sees backpressure."""
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None and not self.config.ws_per_message_deflate:
            scope["extensions"][FRAMES_EXTENSION] = Frames(self)


def server_options() -> dict[str, Any]:  # Any: uvicorn's keyword arguments
    """uvicorn settings for this app, in production and in tests alike."""
    return {
        "ws": LiveWebSocketProtocol,
        "ws_per_message_deflate": False,  # compression costs more than the rest of a delivery
        "ws_max_size": MAX_WS_MESSAGE_BYTES,
    }
