"""A real server on a loopback port and a small GraphQL-over-WebSocket client for tests."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
import websockets
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from api.serving import server_options
from infra.settings import Settings

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"

BATCH_EVENTS = """
subscription Batch($batchId: ID!, $after: ID) {
  syncBatchEvents(batchId: $batchId, afterEventId: $after) {
    eventId batchId itemId fromStatus toStatus error { code retryable }
  }
}
"""
COMPANY_EVENTS = """
subscription Company($companyId: ID!, $after: ID) {
  companySyncEvents(companyId: $companyId, afterEventId: $after) {
    eventId batchId itemId fromStatus toStatus
  }
}
"""


@asynccontextmanager
async def serving(app: Starlette, *, port: int = 0, **options: Any) -> AsyncIterator[str]:
    """Serve the app with uvicorn on a loopback port (0: a free one), with our server options
    or `options` instead; yields "host:port"."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **(server_options(Settings()) | options),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class GraphQLWebSocket:
    """Either protocol, spoken plainly: subscribe, then read an operation's results."""

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.pings = 0
        self._inbox: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, address: str, key: str | None, protocol: str = TRANSPORT_WS
    ) -> AsyncIterator["GraphQLWebSocket"]:
        async with websockets.connect(
            f"ws://{address}/graphql",
            subprotocols=[Subprotocol(protocol)],
            max_size=None,
            compression=None,
        ) as ws:
            payload = {"Authorization": f"Bearer {key}"} if key else {}
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ack["type"] == "connection_ack", ack
            client = cls(ws, protocol)
            try:
                yield client
            finally:
                client._reader.cancel()

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            kind = message["type"]
            if kind in ("ping", "ka"):
                self.pings += 1
                if kind == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
            elif "id" in message:
                self._inbox.setdefault(message["id"], asyncio.Queue()).put_nowait(message)

    async def subscribe(
        self, op_id: str, query: str, variables: dict[str, Any], operation_name: str | None = None
    ) -> None:
        self._inbox.setdefault(op_id, asyncio.Queue())
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables, "operationName": operation_name}
        await self.ws.send(json.dumps({"id": op_id, "type": kind, "payload": payload}))

    async def stop(self, op_id: str) -> None:
        kind = "complete" if self.protocol == TRANSPORT_WS else "stop"
        await self.ws.send(json.dumps({"id": op_id, "type": kind}))

    async def next(self, op_id: str, seconds: float = 10) -> dict[str, Any]:
        """The operation's next message, whatever its type."""
        return await asyncio.wait_for(self._inbox.setdefault(op_id, asyncio.Queue()).get(), seconds)

    async def events(
        self, op_id: str, *, count: int | None = None, seconds: float = 20
    ) -> list[dict[str, Any]]:
        """The operation's events, until it completes (or until `count` have come)."""
        events: list[dict[str, Any]] = []
        while count is None or len(events) < count:
            message = await self.next(op_id, seconds)
            if message["type"] == "complete":
                break
            assert message["type"] in ("next", "data"), message
            assert "errors" not in message["payload"], message
            (event,) = message["payload"]["data"].values()
            events.append(event)
        return events
