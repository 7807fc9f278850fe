"""Pace pushes to each ledger connection within its limits, across every worker process.

Calls per minute: each push reserves the connection's next free slot in Redis (GCRA: slots
`60 / per_minute` seconds apart, on Redis's clock so workers on other hosts agree) and waits
for it, so a large batch runs at the allowed rate instead of discovering it through 429s.
Calls at once: a lease per call in a sorted set, expiring by itself if its worker dies.
Each call is counted in its minute and its day, for what is left of the budget (`used`).
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from infra import keys
from infra.metrics import RATE_LIMIT_WAIT_SECONDS, RATE_LIMIT_WAITS
from ledgers.protocol import Limits

MARGIN = 1.02  # slots a little wider than the limit: a late call never crowds the next minute
POLL_SECONDS = 0.02  # how often a call waiting for a concurrency slot looks again

_NOW = "local t = redis.call('TIME') local now = t[1] + t[2] / 1000000 "
_RESERVE = (
    _NOW
    + """
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local next_slot = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], tostring(next_slot), 'PX', math.ceil((next_slot - now) * 1000) + 1000)
local minute = KEYS[2] .. ':' .. math.floor(slot / 60)
redis.call('INCR', minute)
redis.call('EXPIRE', minute, 120)
local day = KEYS[3] .. ':' .. math.floor(slot / 86400)
redis.call('INCR', day)
redis.call('EXPIRE', day, 172800)
return tostring(slot - now)
"""
)
_HOLD = (
    _NOW
    + """
local held = math.max(now + tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], tostring(held), 'PX', math.ceil((held - now) * 1000) + 1000)
"""
)
_BACKLOG = _NOW + "return tostring(math.max(0, tonumber(redis.call('GET', KEYS[1]) or '0') - now))"
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
        self._reserve = redis.register_script(_RESERVE)
        self._backlog = redis.register_script(_BACKLOG)
        self._hold = redis.register_script(_HOLD)
        self._acquire = redis.register_script(_ACQUIRE)
        self._here = asyncio.Semaphore(limits.concurrent)
        self._prepaid: float | None = None  # when a slot reserved before is due (time.time())

    async def reserve(self) -> float:
        """Take the connection's next free slot for a call to be made later, by whoever is
        handed it (`prepaid`): the seconds until it is due."""
        budget = [self._slots, self._minute, self._day]
        return float(await self._reserve(keys=budget, args=[self.interval]))

    def prepaid(self, due: float) -> None:
        """The next call takes a slot reserved before (`reserve`), due at `due` (time.time()),
        instead of reserving one."""
        self._prepaid = due

    @property
    def has_prepaid(self) -> bool:
        return self._prepaid is not None

    async def backlog(self) -> float:
        """Seconds until the connection's next free slot (others may be queued before us)."""
        return float(await self._backlog(keys=[self._slots]))

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
                wait = await self.reserve()
            await asyncio.sleep(wait)
            lease = uuid.uuid4().hex
            while not await self._lease(lease):
                wait = POLL_SECONDS
                await asyncio.sleep(POLL_SECONDS)
            if wait > 0:
                RATE_LIMIT_WAITS.labels(self.provider).inc()
                RATE_LIMIT_WAIT_SECONDS.labels(self.provider).observe(time.perf_counter() - start)
            try:
                yield
            finally:
                await self.redis.zrem(self._calls, lease)
