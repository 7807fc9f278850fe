"""The WebSocket protocols' edges: keys, timeouts, pings, errors, and freeing what ends."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from prometheus_client import REGISTRY
from websockets.typing import Subprotocol

from api.app import create_app
from api.context import Context
from api.hub import Hub, LiveEvent
from api.subscriptions import Interest, follow
from infra import keys
from infra.services import Services
from infra.settings import Settings
from jobs.context import WorkerContext
from jobs.sync import run_sync
from ledgers import books as sandbox
from models.batch import create_batch
from models.company import Caller, NewCompany
from models.enums import RecordType
from models.events import company_events
from models.records import Expense
from tests.conftest import Api, RunJobs, runtime_of
from tests.helpers import CREATE_EXPENSES, batch_events, data, eventually, expense
from tests.live import (
    BATCH_EVENTS,
    COMPANY_EVENTS,
    LEGACY_WS,
    TRANSPORT_WS,
    GraphQLWebSocket,
    serving,
)

pytestmark = pytest.mark.usefixtures("postgres_only")  # see conftest


async def _closed_with(
    address: str, messages: list[dict[str, Any]], protocol: str = TRANSPORT_WS
) -> int:
    async with websockets.connect(
        f"ws://{address}/graphql", subprotocols=[Subprotocol(protocol)]
    ) as ws:
        for message in messages:
            await ws.send(json.dumps(message))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_a_missing_or_wrong_key_closes_the_socket(live_server: str) -> None:
    address = live_server
    for payload in ({}, {"Authorization": "Bearer s2b_wrong"}, {"Authorization": 42}):
        code = await _closed_with(address, [{"type": "connection_init", "payload": payload}])
        assert code == 4403, payload


async def test_protocol_misuse_closes_with_its_code(live_server: str) -> None:
    address = live_server
    subscribe = {"id": "1", "type": "subscribe", "payload": {"query": "subscription { x }"}}
    assert await _closed_with(address, [subscribe]) == 4401  # before connection_init
    assert await _closed_with(address, []) == 4408  # no connection_init in time
    assert await _closed_with(address, [{"type": "nonsense"}]) == 4400


async def test_hostile_frames_close_with_the_protocols_codes(
    live_server: str, company: NewCompany
) -> None:
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {company.api_key}"}}
    assert await _closed_with(live_server, [init, init]) == 4429  # a second init
    live = {
        "query": COMPANY_EVENTS,
        "variables": {"companyId": company.company.id},
    }
    subscribe = {"id": "same", "type": "subscribe", "payload": live}
    assert await _closed_with(live_server, [init, subscribe, subscribe]) == 4409  # id in use
    for junk in ({"type": 7}, {"id": "1", "type": "subscribe"}, {"type": "subscribe", "id": 1}):
        assert await _closed_with(live_server, [init, junk]) == 4400, junk
    async with websockets.connect(
        f"ws://{live_server}/graphql", subprotocols=[Subprotocol(TRANSPORT_WS)]
    ) as ws:
        await ws.send(json.dumps(init))
        await ws.recv()  # ack
        await ws.send(b"\x00\xff binary junk")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


async def test_subscriptions_to_what_is_not_yours_are_not_found(
    api: Api, company: NewCompany, other_company: NewCompany, live_server: str
) -> None:
    address = live_server
    created = data(
        await api.gql(CREATE_EXPENSES, {"companyId": company.company.id, "expenses": [expense()]})
    )
    batch_id = created["createExpenses"]["syncBatchId"]
    async with GraphQLWebSocket.connect(address, other_company.api_key) as client:
        await client.subscribe("1", BATCH_EVENTS, {"batchId": batch_id})
        await client.subscribe("2", COMPANY_EVENTS, {"companyId": company.company.id})
        await client.subscribe("3", BATCH_EVENTS, {"batchId": batch_id, "after": "soon"})
        for op_id, code in (("1", "NOT_FOUND"), ("2", "NOT_FOUND"), ("3", "BAD_USER_INPUT")):
            message = await client.next(op_id)
            assert message["type"] == "error", message
            assert message["payload"][0]["extensions"]["code"] == code


async def test_queries_and_invalid_documents_take_strawberrys_path(
    company: NewCompany, live_server: str
) -> None:
    address = live_server
    async with GraphQLWebSocket.connect(address, company.api_key) as client:
        query = "query($c: ID!) { connection(companyId: $c) { status } }"
        await client.subscribe("q", query, {"c": company.company.id})
        assert (await client.next("q"))["payload"] == {"data": {"connection": {"status": "ACTIVE"}}}
        await client.subscribe("bad", "subscription { syncBatchEvents { eventId } }", {})
        failure = await client.next("bad")
        assert failure["type"] == "error"
        assert failure["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_the_server_keeps_idle_connections_alive(
    company: NewCompany, live_server: str
) -> None:
    address = live_server
    for protocol in (TRANSPORT_WS, LEGACY_WS):
        async with GraphQLWebSocket.connect(address, company.api_key, protocol) as client:
            await eventually(lambda: client.pings >= 2, f"two pings on {protocol}")


FRAGMENT_EVENTS = """
subscription($batchId: ID!) { syncBatchEvents(batchId: $batchId) { ... on SyncEvent { eventId } } }
"""


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "permessage-deflate"])
async def test_pings_and_events_reach_the_socket_with_or_without_compression(
    api: Api,
    company: NewCompany,
    services: Services,
    live_settings: Settings,
    run_jobs: RunJobs,
    deflate: bool,
) -> None:
    """Pings and shared event messages reach the client whether or not uvicorn compresses
    them. A selection that graphql-core executes arrives as a plain one does."""
    created = data(
        await api.gql(CREATE_EXPENSES, {"companyId": company.company.id, "expenses": [expense()]})
    )
    batch_id = created["createExpenses"]["syncBatchId"]
    app = create_app(live_settings, runtime=runtime_of(services))
    async with (
        serving(app, ws_per_message_deflate=deflate) as address,
        GraphQLWebSocket.connect(address, company.api_key) as client,
    ):
        await client.subscribe("plain", BATCH_EVENTS, {"batchId": batch_id})
        await client.subscribe("fragment", FRAGMENT_EVENTS, {"batchId": batch_id})
        replayed = await client.events("plain", count=2)  # the batch and its item, created
        await eventually(lambda: client.pings >= 2, "two pings")
        await run_jobs()
        plain = replayed + await client.events("plain")
        fragment = await client.events("fragment")
    logged = [str(event.id) for event in await batch_events(services.db, batch_id=batch_id)]
    assert [event["eventId"] for event in plain] == logged
    assert [event["eventId"] for event in fragment] == logged


async def _redis_listeners(services: Services, company: NewCompany) -> int:
    counts = await services.redis.pubsub_numsub(keys.events_channel(company.company.id))
    return int(counts[0][1])


def _live_subscriptions() -> float:
    """The live server runs in this process: its gauge is this process's."""
    return REGISTRY.get_sample_value("sync2books_live_subscriptions") or 0.0


async def _freed(services: Services, company: NewCompany, listening: float) -> bool:
    gone = _live_subscriptions() == listening
    return gone and await _redis_listeners(services, company) == 0


async def test_ending_a_subscription_or_dropping_the_socket_frees_everything(
    company: NewCompany, services: Services, live_server: str
) -> None:
    address = live_server
    baseline, listening = len(asyncio.all_tasks()), _live_subscriptions()
    for drop_socket in (False, True):
        async with GraphQLWebSocket.connect(address, company.api_key) as client:
            for op_id in ("1", "2"):
                await client.subscribe(op_id, COMPANY_EVENTS, {"companyId": company.company.id})
            await eventually(
                lambda: _live_subscriptions() == listening + 2, "both subscriptions live"
            )
            # one Redis listener per process, not per subscriber
            assert await _redis_listeners(services, company) == 1
            if not drop_socket:
                await client.stop("1")
                await client.stop("2")
                await eventually(lambda: _freed(services, company, listening), "feed closed")
        await eventually(lambda: _freed(services, company, listening), f"freed ({drop_socket})")
        await eventually(lambda: len(asyncio.all_tasks()) == baseline, "every task ended")


async def test_a_slow_subscriber_catches_up_from_the_log_without_slowing_others(
    company: NewCompany, services: Services, worker_context: WorkerContext
) -> None:
    ledgers = worker_context.ledger_for
    records = [
        Expense.model_validate(
            {
                "amount": "1",
                "currency": "USD",
                "date": "2026-01-01",
                "account_id": "429",
                "vendor_name": "V",
            }
        )
    ] * 60
    async with Hub.running(services.db, services.redis_url, check_seconds=0.2, keep=8) as hub:
        row = company.company
        caller = Caller(row.id, row.name, row.api_key_hash)
        ctx = Context(services, hub, ledgers, base_url="http://test", caller=caller)
        everything = Interest(company.company.id, batch_id=None, after=0)
        fast = follow(ctx, everything)
        slow = follow(ctx, everything)
        reading = asyncio.create_task(_until_completed(fast))
        slow_first = asyncio.ensure_future(anext(slow))  # joins the feed, then stops reading
        cid = company.company.id
        await eventually(
            lambda: cid in hub.feeds and hub.feeds[cid].listeners == 2, "both streams joined"
        )
        batch, _ = await create_batch(
            services.db,
            bus=services.bus,
            company_id=company.company.id,
            record_type=RecordType.EXPENSE,
            records=records,
        )
        await run_sync(worker_context, batch_id=batch.id)
        logged = await company_events(
            services.db, company_id=company.company.id, after_seq=0, upto_seq=10**9, limit=10**6
        )
        heard_fast = await asyncio.wait_for(reading, 5)
        first = await slow_first
        assert hub.feeds[company.company.id].since(first.row.company_seq) is None  # fell behind
        heard_slow = [first] + [await asyncio.wait_for(anext(slow), 2) for _ in logged[1:]]
        await fast.aclose()
        await slow.aclose()
        await asyncio.sleep(0)
        assert not hub.feeds
    assert [e.row.id for e in heard_fast] == [e.id for e in logged]
    assert [e.row.id for e in heard_slow] == [e.id for e in logged]


async def _until_completed(stream: AsyncIterator[LiveEvent]) -> list[LiveEvent]:
    """Read a company stream as fast as it comes, until a batch completes."""
    events = []
    async for event in stream:
        events.append(event)
        if event.row.item_id is None and event.row.to_status == "COMPLETED":
            return events
    return events


async def test_a_socket_that_stops_reading_is_let_go_then_caught_up_exactly(
    api: Api,
    company: NewCompany,
    services: Services,
    live_server: str,
    run_jobs: RunJobs,
) -> None:
    """The fast subscriber hears everything while the slow one's socket stays full; then the
    slow one, reading again, hears everything too, in order, once."""
    wide = COMPANY_EVENTS.replace("toStatus", "toStatus occurredAt companyId error { code }")
    everything = {"companyId": company.company.id, "after": "0"}  # whenever they join
    subscribe = {"query": wide, "variables": everything}
    host, port = live_server.split(":")
    tight = socket.create_connection((host, int(port)))
    tight.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # fills soon once unread
    async with (
        GraphQLWebSocket.connect(live_server, company.api_key) as fast,
        websockets.connect(
            f"ws://{live_server}/graphql",
            sock=tight,
            subprotocols=[Subprotocol(TRANSPORT_WS)],
            max_queue=2,  # then it stops reading the socket
            close_timeout=0.5,  # unread pings leave it deaf to the server's closing frame
            compression=None,
            max_size=None,
        ) as slow,
    ):
        init = {
            "type": "connection_init",
            "payload": {"Authorization": f"Bearer {company.api_key}"},
        }
        await slow.send(json.dumps(init))
        assert json.loads(await slow.recv())["type"] == "connection_ack"
        listening = _live_subscriptions()
        await slow.send(json.dumps({"id": "s", "type": "subscribe", "payload": subscribe}))
        await fast.subscribe("f", COMPANY_EVENTS, everything)
        await eventually(lambda: _live_subscriptions() == listening + 2, "both follow the feed")
        async with services.db.transaction() as session:  # small calls: many bursts of events
            await sandbox.configure(session, company_id=company.company.id, documents_per_call=5)
        await api.gql(
            CREATE_EXPENSES, {"companyId": company.company.id, "expenses": [expense()] * 1000}
        )
        await run_jobs()
        logged = await company_events(
            services.db, company_id=company.company.id, after_seq=0, upto_seq=10**9, limit=10**6
        )
        heard_fast = await fast.events("f", count=len(logged))
        heard_slow: list[dict[str, Any]] = []
        while len(heard_slow) < len(logged):
            message = json.loads(await asyncio.wait_for(slow.recv(), 10))
            if message["type"] == "next":
                heard_slow.append(message["payload"]["data"]["companySyncEvents"])
    expected = [str(e.id) for e in logged]
    assert [e["eventId"] for e in heard_fast] == expected
    assert [e["eventId"] for e in heard_slow] == expected


class _Socket:
    """Stands in for a Starlette WebSocket the hub may close."""

    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_a_socket_opened_while_keys_are_rechecked_is_not_taken_for_a_revoked_key(
    services: Services, company: NewCompany, other_company: NewCompany
) -> None:
    """The hub rechecks open sockets' keys against the database; a socket that joins while
    that query runs was not asked about, and must not be closed as if its key were gone
    (it was: the monitor once signed out a valid key, 4403)."""
    async with Hub.running(services.db, services.redis_url, check_seconds=3600) as hub:
        first, joining = _Socket(), _Socket()
        hub.watch_key(company.company.api_key_hash, first)  # type: ignore[arg-type]
        recheck = asyncio.create_task(hub._recheck_keys())
        await asyncio.sleep(0)  # the recheck is querying the database now
        hub.watch_key(other_company.company.api_key_hash, joining)  # type: ignore[arg-type]
        await recheck
        await asyncio.sleep(0.05)  # closes run as tasks
    assert first.closed is None and joining.closed is None
