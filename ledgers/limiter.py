"""Pace pushes to each ledger connection within its limits, across every worker process.

Calls per minute: each push reserves the connection's next free slot in Redis (GCRA: slots
`60 / per_minute` seconds apart, on Redis's clock so workers on other hosts agree) and waits
for it, so a large batch runs at the allowed rate instead of discovering it through 429s.
A slot in a day whose calls are used up moves to the next day (Xero: 5,000 a day), and one in
a minute whose app-wide calls are used up (Xero: 10,000 a minute across organisations) to the
next minute; the slot says which limit put it off, for `Connection.rateLimit` and metrics.
Calls at once: a lease per call in a sorted set, expiring by itself if its worker dies.
Each call is counted in its minute and its day, for what is left of the budget (`used`).
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

from infra import keys
from infra.metrics import RATE_LIMIT_WAIT_SECONDS, RATE_LIMIT_WAITS
from ledgers.protocol import Limits
from models.enums import LimitHold
from models.errors import LedgerError, SyncErrorCode

LONG_WAIT_SECONDS = 30.0  # a call put off longer by a day's or the app's limit is refused
_PUT_OFF: dict[LimitHold | None, str] = {  # why a call was refused rather than put off
    LimitHold.DAY: "The ledger's calls for today are used up: the next can be made after "
    "midnight UTC.",
    LimitHold.APP: "The app's calls this minute to this ledger, across every company, are used up.",
}
MARGIN = 1.02  # slots a little wider than the limit: a late call never crowds the next minute
POLL_SECONDS = 0.02  # how often a call waiting for a concurrency slot looks again

_NOW = "local t = redis.call('TIME') local now = t[1] + t[2] / 1000000 "
# The connection's next slot, moved on to the next day while its day's calls are used up and
# to the next minute while the app's minute is full; taken (ARGV[4] == '1'; when ARGV[5] is not
# negative, not if the day or the app puts it off longer than that) or only looked at.
# KEYS: the connection's next slot, its minute and day counters, the app's minute counter.
# ARGV: slot interval, calls a day (0: none), the app's calls a minute (0: none), take, most.
_SLOT = (
    _NOW
    + """
local per_day, app = tonumber(ARGV[2]), tonumber(ARGV[3])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local held = ''
if slot > now then held = 'CONNECTION' end
local function count(key) return tonumber(redis.call('GET', key) or '0') end
for _ = 1, 3 do
  local moved = false
  if per_day > 0 and count(KEYS[3] .. ':' .. math.floor(slot / 86400)) >= per_day then
    slot, held, moved = (math.floor(slot / 86400) + 1) * 86400, 'DAY', true
  end
  if app > 0 and count(KEYS[4] .. ':' .. math.floor(slot / 60)) >= app then
    slot, held, moved = (math.floor(slot / 60) + 1) * 60, 'APP', true
  end
  if not moved then break end
end
local most = tonumber(ARGV[5])
local put_off = (held == 'DAY' or held == 'APP') and most >= 0 and slot - now > most
local taken = ARGV[4] == '1' and not put_off
if taken then
  local next_slot = slot + tonumber(ARGV[1])
  redis.call('SET', KEYS[1], tostring(next_slot), 'PX', math.ceil((next_slot - now) * 1000) + 1000)
  local minute = KEYS[2] .. ':' .. math.floor(slot / 60)
  redis.call('INCR', minute)
  redis.call('EXPIRE', minute, math.ceil(slot - now) + 120)
  local day = KEYS[3] .. ':' .. math.floor(slot / 86400)
  redis.call('INCR', day)
  redis.call('EXPIRE', day, math.ceil(slot - now) + 172800)
  if app > 0 then
    local app_minute = KEYS[4] .. ':' .. math.floor(slot / 60)
    redis.call('INCR', app_minute)
    redis.call('EXPIRE', app_minute, math.ceil(slot - now) + 120)
  end
end
return {tostring(slot - now), held, taken and 1 or 0}
"""
)
_HOLD = (
    _NOW
    + """
local held = math.max(now + tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], tostring(held), 'PX', math.ceil((held - now) * 1000) + 1000)
"""
)
_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""
)


@dataclass(frozen=True)
class Slot:
    wait: float  # seconds until it
    held_by: LimitHold | None  # the limit that put it off; None: now
    taken: bool  # reserved for a call; not when only looked at, or put off too long


class Limiter:
    """One connection's limits, shared through Redis by every process that pushes to it."""

    def __init__(
        self,
        redis: Redis,
        *,
        connection_id: str,
        provider: str,
        limits: Limits,
        lease_seconds: float,
    ) -> None:
        """`lease_seconds`: how long a call may hold its concurrency slot should its worker die
        mid-call (no call outlives its job's timeout)."""
        self.redis = redis
        self.provider = provider
        self.limits = limits
        self.lease_seconds = lease_seconds
        self.interval = 60 / limits.per_minute * MARGIN
        self._slots = keys.limit(connection_id, "slots")
        self._calls = keys.limit(connection_id, "calls")
        self._minute = keys.limit(connection_id, "minute")
        self._day = keys.limit(connection_id, "day")
        self._app = keys.app_limit(provider)
        self._slot = redis.register_script(_SLOT)
        self._hold = redis.register_script(_HOLD)
        self._acquire = redis.register_script(_ACQUIRE)
        self._here = asyncio.Semaphore(limits.concurrent)
        self._prepaid: float | None = None  # when a slot reserved before is due (time.time())

    async def _next_slot(self, *, take: bool, most: float = -1) -> Slot:
        limits = self.limits
        budget = [self._slots, self._minute, self._day, self._app]
        args = [self.interval, limits.per_day or 0, limits.app_per_minute or 0, int(take), most]
        wait, held, taken = await self._slot(keys=budget, args=args)
        return Slot(max(0.0, float(wait)), LimitHold(held.decode()) if held else None, bool(taken))

    async def reserve(self) -> float:
        """Take the connection's next free slot for a call to be made later, by whoever is
        handed it (`prepaid`): the seconds until it is due."""
        return (await self._take()).wait

    async def _take(self, most: float = -1) -> Slot:
        """The next free slot, taken if it is at most `most` seconds away (any, if negative)."""
        slot = await self._next_slot(take=True, most=most)
        if slot.held_by is not None and slot.taken:
            RATE_LIMIT_WAITS.labels(self.provider, slot.held_by.lower()).inc()
        return slot

    async def next_slot(self) -> Slot:
        """When the next call could be made, and which limit holds it back, if any."""
        return await self._next_slot(take=False)

    def prepaid(self, due: float) -> None:
        """The next call takes a slot reserved before (`reserve`), due at `due` (time.time()),
        instead of reserving one."""
        self._prepaid = due

    @property
    def has_prepaid(self) -> bool:
        return self._prepaid is not None

    async def _within_reach(self) -> float:
        """Take a slot for a call about to be made: the wait for it. One that a day's or the
        app's limit puts off for long is not taken: the call is refused with the ledger's own
        code rather than left waiting (a request to the API, say); a batch's job looks first
        and queues itself for then instead."""
        slot = await self._take(most=LONG_WAIT_SECONDS)
        if not slot.taken:  # put off by the day's or the app's limit
            reason = _PUT_OFF[slot.held_by]
            raise LedgerError(SyncErrorCode.RATE_LIMIT_EXCEEDED, reason, retry_after=slot.wait)
        return slot.wait

    async def backlog(self) -> float:
        """Seconds until the connection's next free slot (others may be queued before us)."""
        return (await self.next_slot()).wait

    async def hold(self, seconds: float) -> None:
        """No call before `seconds` from now, in any process: the ledger said so (a 429's
        Retry-After)."""
        await self._hold(keys=[self._slots], args=[seconds])

    async def used(self) -> tuple[int, int]:
        """The calls made (or given their slot) this minute and today, in every process."""
        now = time.time()
        minute, day = await self.redis.mget(
            f"{self._minute}:{int(now // 60)}", f"{self._day}:{int(now // 86400)}"
        )
        return int(minute or 0), int(day or 0)

    async def app_used(self) -> int:
        """Our app's calls to this provider this minute, across every connection."""
        return int(await self.redis.get(f"{self._app}:{int(time.time() // 60)}") or 0)

    async def app_left(self) -> int | None:
        """The app's calls left this minute, across every connection; None: no such limit."""
        if self.limits.app_per_minute is None:
            return None
        return self.limits.app_per_minute - await self.app_used()

    async def room(self) -> int | None:
        """The calls today's and the app's minute's limits still allow; None: no such limit."""
        left = []
        if self.limits.per_day is not None:
            left.append(self.limits.per_day - (await self.used())[1])
        if (app := await self.app_left()) is not None:
            left.append(app)
        return min(left, default=None)

    def calls_within(self, seconds: float) -> int:
        """How many calls the rate allows in `seconds` (at least one)."""
        return max(1, int(seconds / self.interval))

    async def _lease(self, lease: str) -> bool:
        args: list[str | float] = [self.limits.concurrent, self.lease_seconds, lease]
        return bool(await self._acquire(keys=[self._calls], args=args))

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        """Wait for a slot and a concurrency lease, hold the lease for the call, free it.
        Callers in this process queue locally first, so only the calls that could run now
        reserve a slot or ask Redis for a lease."""
        async with self._here:
            start = time.perf_counter()
            if self._prepaid is not None:
                wait, self._prepaid = max(0.0, self._prepaid - time.time()), None
            else:
                wait = await self._within_reach()
            await asyncio.sleep(wait)
            lease = uuid.uuid4().hex
            while not await self._lease(lease):
                wait = POLL_SECONDS
                await asyncio.sleep(POLL_SECONDS)
            if wait > 0:
                RATE_LIMIT_WAIT_SECONDS.labels(self.provider).observe(time.perf_counter() - start)
            try:
                yield
            finally:
                await self.redis.zrem(self._calls, lease)
