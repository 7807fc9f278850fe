"""A bare graphql-transport-ws subscriber for load generation: an asyncio Protocol that
parses server frames by hand, so a thousand of them fit in one driver process beside the
service on a small machine. It answers WebSocket pings and notes each event's arrival."""

import asyncio
import base64
import json
import os
import struct
import time
from collections.abc import Callable, Mapping

_HANDSHAKE = (
    "GET /graphql HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
)


def _frame(opcode: int, payload: bytes) -> bytes:
    """A client frame: masked, as RFC 6455 requires of clients."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class Subscriber(asyncio.Protocol):
    def __init__(
        self,
        on_text: Callable[[bytes, float], None],
        on_close: Callable[[int | None], None] | None = None,
    ) -> None:
        self.on_text = on_text
        self.on_close = on_close  # told the server's close code (None: no close frame came)
        self.close_code: int | None = None
        self.buffer = b""
        self.upgraded = False
        self.transport: asyncio.WriteTransport | None = None
        self.switched = asyncio.get_running_loop().create_future()  # the 101 response came
        self.acked = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # TCP: always writable

    def connection_lost(self, exc: Exception | None) -> None:
        if self.on_close is not None:
            self.on_close(self.close_code)

    def send_json(self, message: Mapping[str, object]) -> None:
        assert self.transport is not None
        self.transport.write(_frame(0x1, json.dumps(message).encode()))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded = True
            self.buffer = self.buffer[end + 4 :]
            self.switched.set_result(None)
        while len(self.buffer) >= 2:
            opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                (length,) = struct.unpack_from("!H", self.buffer, 2)
                start = 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                (length,) = struct.unpack_from("!Q", self.buffer, 2)
                start = 10
            if len(self.buffer) < start + length:
                return
            payload = self.buffer[start : start + length]
            self.buffer = self.buffer[start + length :]
            if opcode == 0x1:
                if not self.acked.done():
                    self.acked.set_result(None)
                else:
                    self.on_text(payload, now)
            elif opcode == 0x8 and len(payload) >= 2:
                (self.close_code,) = struct.unpack_from("!H", payload)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(_frame(0xA, payload))


async def subscribe(
    address: str,
    headers: dict[str, str],
    payload: dict[str, object],
    on_text: Callable[[bytes, float], None],
    on_close: Callable[[int | None], None] | None = None,
) -> Subscriber:
    host, port = address.split(":")
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: Subscriber(on_text, on_close), host, int(port)
    )
    assert protocol.transport is not None
    key = base64.b64encode(os.urandom(16)).decode()
    protocol.transport.write(_HANDSHAKE.format(host=address, key=key).encode())
    await asyncio.wait_for(protocol.switched, 30)  # frames sent earlier could be lost
    protocol.send_json({"type": "connection_init", "payload": headers})
    await asyncio.wait_for(protocol.acked, 30)
    protocol.send_json({"id": "1", "type": "subscribe", "payload": payload})
    return protocol
