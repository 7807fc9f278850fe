"""The live hub: one Redis pub/sub connection per API process, shared by every subscriber.

For each company someone here listens to, a `Feed` holds its recent events in `company_seq`
order with no gap. Pub/sub only wakes the feed: a message whose number is not the next one,
a message that never comes (checked against the database every `check_seconds`), a dropped
Redis connection or a restarted Redis are all healed by reading the event log, which is the
truth. Subscribers read the feed at their own pace. It lets go of every event its slowest reader
has passed, and keeps at most `keep`: a reader further behind reads the log instead. So a
feed whose readers keep up holds only the events on their way to them (a kept event costs
about 2 KiB), however long it lives, and a slow client never slows the others.

Alerts come over the same connection: every company's (they are rare), each alert's id
handed to the subscribers of its company here (`alerts`), who read it from the table.
"""

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from starlette.websockets import WebSocket

from infra import keys
from infra.backoff import pause
from infra.db import Database
from infra.metrics import ALERT_SUBSCRIPTIONS, LIVE_SUBSCRIPTIONS
from infra.services import redis_client
from models.company import valid_key_hashes
from models.events import (
    company_events,
    event_from_payload,
    last_event_seqs,
)
from models.tables import SyncEvent

log = logging.getLogger(__name__)

FEED_KEEPS = 2048  # the most events a feed keeps for subscribers that lag
REFILL_PAGE = 500


@dataclass(eq=False, slots=True)
class LiveEvent:
    """A logged event as the hub hands it out; `rendered` caches its result JSON per document."""

    row: SyncEvent
    rendered: dict[str, str] = field(default_factory=dict)


class Reader(Protocol):
    """A subscriber's place in its feed: the last `company_seq` it has dealt with."""

    covered: int


class Feed:
    """One company's recent events, numbered without gaps to `seq`: those after its slowest
    reader's place, `keep` at most.

    Readers `join` with their place, wait for the feed to move (`wait_beyond`), then take
    what follows their place, and `leave`.
    """

    def __init__(self, company_id: str, *, keep: int) -> None:
        self.company_id = company_id
        self.keep = keep
        self.seq = 0
        self.listeners = 0
        self.ready = asyncio.Event()
        self.refilling = asyncio.Lock()
        self._events: list[LiveEvent] = []
        self._readers: set[Reader] = set()
        self._moved = asyncio.Event()  # set and cleared at once: wakes who waits now

    def offer(self, event: SyncEvent) -> bool:
        """Append the event if it is the next one; anything else is refused."""
        if event.company_seq != self.seq + 1:
            return False
        self._events.append(LiveEvent(event))
        self.seq = event.company_seq
        self._let_go()
        self._moved.set()
        self._moved.clear()
        return True

    def join(self, reader: Reader) -> None:
        self._readers.add(reader)

    def leave(self, reader: Reader) -> None:
        self._readers.discard(reader)

    def _let_go(self) -> None:
        """Drop what every reader has passed, and what lies more than `keep` behind. As
        often as events come: each wakes every reader anyway."""
        slowest = min((reader.covered for reader in self._readers), default=self.seq)
        keep_from = max(slowest, self.seq - self.keep) + 1
        del self._events[: max(0, keep_from - self._events[0].row.company_seq)]

    def since(self, seq: int) -> list[LiveEvent] | None:
        """The events numbered after `seq`, or None when the feed no longer holds them all."""
        if seq >= self.seq:
            return []
        if not self._events or seq + 1 < self._events[0].row.company_seq:
            return None
        return self._events[seq + 1 - self._events[0].row.company_seq :]

    async def wait_beyond(self, seq: int) -> None:
        while self.seq <= seq:
            await self._moved.wait()  # one future a waiter, about 0.2 KiB


class Hub:
    def __init__(
        self, db: Database, redis_url: str, *, check_seconds: float = 1.0, keep: int = FEED_KEEPS
    ) -> None:
        self.db = db
        self.keep = keep
        self.redis = redis_client(redis_url, listening=True)
        self.check_seconds = check_seconds
        self.feeds: dict[str, Feed] = {}
        self._pubsub: PubSub | None = None
        self._sockets: dict[str, weakref.WeakSet[WebSocket]] = {}  # open ones, by key hash
        self._alerts: dict[str, set[asyncio.Queue[str]]] = {}  # alert subscribers, by company
        self._closing: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    @asynccontextmanager
    async def running(
        cls, db: Database, redis_url: str, *, check_seconds: float = 1.0, keep: int = FEED_KEEPS
    ) -> AsyncIterator["Hub"]:
        hub = cls(db, redis_url, check_seconds=check_seconds, keep=keep)
        hub._tasks = [asyncio.create_task(hub._read()), asyncio.create_task(hub._check())]
        try:
            yield hub
        finally:
            for task in hub._tasks:
                task.cancel()
            for task in hub._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await hub.redis.aclose()

    @asynccontextmanager
    async def feed(self, company_id: str) -> AsyncIterator[Feed]:
        """The company's feed, live for as long as anyone here holds it."""
        feed = self.feeds.get(company_id)
        if feed is None:
            feed = self.feeds[company_id] = Feed(company_id, keep=self.keep)
            feed.listeners += 1
            await self._open(feed)
        else:
            feed.listeners += 1
            await feed.ready.wait()
            if self.feeds.get(company_id) is not feed:  # its opening failed
                raise ConnectionError(f"the live feed of company {company_id} could not open")
        LIVE_SUBSCRIPTIONS.inc()
        try:
            yield feed
        finally:
            LIVE_SUBSCRIPTIONS.dec()
            feed.listeners -= 1
            if feed.listeners == 0 and self.feeds.get(company_id) is feed:
                del self.feeds[company_id]
                await self._subscription("unsubscribe", company_id)

    @contextmanager
    def alerts(self, company_id: str) -> Iterator["asyncio.Queue[str]"]:
        """The ids of the company's alerts as they are raised or cleared, while held."""
        heard: asyncio.Queue[str] = asyncio.Queue()
        self._alerts.setdefault(company_id, set()).add(heard)
        ALERT_SUBSCRIPTIONS.inc()
        try:
            yield heard
        finally:
            ALERT_SUBSCRIPTIONS.dec()
            listeners = self._alerts[company_id]
            listeners.discard(heard)
            if not listeners:
                del self._alerts[company_id]

    def _on_alert(self, channel: bytes, data: bytes) -> None:
        company_id = channel.decode().removeprefix(keys.ALERTS_CHANNELS)
        try:
            alert_id = str(json.loads(data)["alertId"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed alert message (%r)", exc)
            return
        for heard in self._alerts.get(company_id, ()):
            heard.put_nowait(alert_id)

    async def _open(self, feed: Feed) -> None:
        """Subscribe first, then read where the log stands: nothing can fall between."""
        try:
            await self._subscription("subscribe", feed.company_id)
            seqs = await last_event_seqs(self.db, company_ids=[feed.company_id])
        except BaseException:
            self.feeds.pop(feed.company_id, None)
            feed.ready.set()  # waiters see the feed gone and fail too
            raise
        feed.seq = seqs.get(feed.company_id, 0)
        feed.ready.set()

    async def _subscription(self, command: str, company_id: str) -> None:
        if self._pubsub is None:
            return  # the reader subscribes every feed's channel when it reconnects
        try:
            await getattr(self._pubsub, command)(keys.events_channel(company_id))
        except (RedisError, OSError):
            log.warning(
                "redis %s failed for company %s; the log check covers it", command, company_id
            )

    async def _read(self) -> None:
        """Listen to pub/sub, reconnecting with backoff; each (re)connect heals every feed."""
        failures = 0
        while True:
            pubsub = self.redis.pubsub()
            try:
                channels = [keys.events_channel(c) for c in self.feeds]
                await pubsub.subscribe(keys.KEYS_CHANNEL, *channels)  # open even with no feeds
                await pubsub.psubscribe(keys.ALERTS_CHANNELS + "*")
                self._pubsub = pubsub
                await self._heal_or_log()
                failures = 0
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                    if message is None:
                        continue
                    if message["type"] == "pmessage":
                        self._on_alert(message["channel"], message["data"])
                    elif message["channel"] == keys.KEYS_CHANNEL.encode():
                        self._on_key_replaced(message["data"].decode())
                    else:
                        await self._on_message(message["data"])
            except (RedisError, OSError) as exc:
                failures += 1
                wait = pause(failures, first=0.1, most=2.0)
                log.warning("redis pub/sub lost (%s); reconnecting in %.1fs", exc, wait)
            finally:
                self._pubsub = None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py 5
            await asyncio.sleep(wait)

    def watch_key(self, key_hash: str, socket: WebSocket) -> None:
        """Close the socket (4403) as soon as its key is replaced or revoked, in any process."""
        self._sockets.setdefault(key_hash, weakref.WeakSet()).add(socket)

    def _on_key_replaced(self, key_hash: str) -> None:
        for socket in self._sockets.pop(key_hash, ()):
            task = asyncio.create_task(_close(socket, 4403, "API key revoked"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _on_message(self, data: bytes) -> None:
        """A transition's events, in order (`models.events.publish`)."""
        try:
            events = [event_from_payload(payload) for payload in json.loads(data)]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed event message (%r)", exc)
            return
        for event in events:
            feed = self.feeds.get(event.company_id)
            if feed is None or not feed.ready.is_set() or event.company_seq <= feed.seq:
                continue
            if not feed.offer(event):
                try:
                    await self._refill(feed, upto=event.company_seq)
                except Exception:  # the database may be away: the next check catches up
                    log.exception("live feed refill failed for company %s", feed.company_id)

    async def _check(self) -> None:
        """Every `check_seconds`, catch up any feed whose company logged more than it heard,
        and close sockets whose key was replaced while its announcement was lost (or never
        sent: the embedded default's CLI has no Redis to announce on)."""
        while True:
            await asyncio.sleep(self.check_seconds)
            await self._heal_or_log()
            try:
                await self._recheck_keys()
            except Exception:  # the database may be briefly away: the next round tries again
                log.exception("live key check failed")

    async def _recheck_keys(self) -> None:
        for key_hash in [key_hash for key_hash, open_ in self._sockets.items() if not open_]:
            del self._sockets[key_hash]  # every socket of that key has gone
        asked = set(self._sockets)  # not the keys of sockets that open while the query runs
        if asked:
            valid = await valid_key_hashes(self.db, key_hashes=list(asked))
            for key_hash in asked - valid:
                self._on_key_replaced(key_hash)

    async def _heal_or_log(self) -> None:
        try:
            await self._heal()
        except Exception:  # the database may be briefly away: the next round tries again
            log.exception("live feed check failed")

    async def _heal(self) -> None:
        feeds = [feed for feed in self.feeds.values() if feed.ready.is_set()]
        if not feeds:
            return
        seqs = await last_event_seqs(self.db, company_ids=[feed.company_id for feed in feeds])
        for feed in feeds:
            if seqs.get(feed.company_id, 0) > feed.seq:
                await self._refill(feed, upto=seqs[feed.company_id])

    async def _refill(self, feed: Feed, *, upto: int) -> None:
        async with feed.refilling:
            while feed.seq < upto:
                events = await company_events(
                    self.db,
                    company_id=feed.company_id,
                    after_seq=feed.seq,
                    upto_seq=upto,
                    limit=REFILL_PAGE,
                )
                if not events:
                    log.error(
                        "company %s: events up to %s are not in the log", feed.company_id, upto
                    )
                    return
                for event in events:
                    feed.offer(event)


async def _close(socket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # it may be closing already
        await socket.close(code, reason)
