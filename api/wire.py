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

from starlette.types import Message
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


class Inbox:
    """The client's messages on their way to the ASGI app: what uvicorn asks of its
    `asyncio.Queue` (three deques and an Event, about 3 KiB a connection) in a list and at
    most one waiter, since an ASGI app has one reader."""

    __slots__ = ("_messages", "_waiter")

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, message: Message) -> None:
        self._messages.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._messages

    async def get(self) -> Message:
        while not self._messages:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.pop(0)


class Flag:
    """What uvicorn asks of its `writable` asyncio.Event (whose deque of waiters alone is
    0.6 KiB a connection): set, clear, is_set, wait."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters = []

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


class LiveWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, with direct frame writes (`Frames`) and less held per
    idle connection: a lighter inbox and writable flag, no handshake kept once it is done."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Any: uvicorn's own arguments
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Bound the kernel's send buffer: left to autotune it grows to megabytes for a client
        that stops reading, per connection, before the server ever sees backpressure."""
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # Neither uvicorn, which keeps the request, nor websockets, whose parser holds it for
        # the connection's life, reads it again: its headers (about 2 KiB) are in the scope.
        del self.request
        event.headers.clear()
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None and not self.config.ws_per_message_deflate:
            scope["extensions"][FRAMES_EXTENSION] = Frames(self)

    def start_keepalive(self) -> None:
        """uvicorn calls this once it has written the handshake's response, which it keeps
        (about 1 KiB of headers) and never reads again."""
        del self.response
        super().start_keepalive()


def server_options() -> dict[str, Any]:  # Any: uvicorn's keyword arguments
    """uvicorn settings for this app, in production and in tests alike."""
    return {
        "ws": LiveWebSocketProtocol,
        "ws_per_message_deflate": False,  # compression costs more than the rest of a delivery
        "ws_max_size": MAX_WS_MESSAGE_BYTES,
    }
