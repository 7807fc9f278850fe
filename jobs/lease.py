"""Batch leases: one job at a time works on a batch, and a dead job's batch is noticed in
seconds, not when arq's in-progress key expires (the job timeout + 10 s).

A job holds its batch's lease while it runs and renews it every quarter of
`LEASE_SECONDS`; it lets go once arq has recorded how it ended, deferred or cancelled (a
SIGTERM hands the batch back at once): let go any sooner, a worker killed in between would
leave a job arq counts as running and no lease to lapse. A lease nobody renewed is a job
that died: `reclaim_expired` (one worker, every `SWEEP_SECONDS`) takes it away and names the
dead job, so the batch gets a new one. Leases are deadlines in one sorted set, by Redis's
clock, so the sweep reads only the expired ones and workers' clocks never matter.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from infra import keys

log = logging.getLogger(__name__)


_NOW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
"""
_TAKE = (
    _NOW
    + """
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
local holder = redis.call('HGET', KEYS[2], ARGV[1])
if deadline and tonumber(deadline) > now and holder ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
)
_RENEW = (
    _NOW
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)
_RELEASE = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""
_RECLAIM = (
    _NOW
    + """
local lapsed = {}
for _, batch in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  table.insert(lapsed, batch)
  table.insert(lapsed, redis.call('HGET', KEYS[2], batch) or '')
  redis.call('ZREM', KEYS[1], batch)
  redis.call('HDEL', KEYS[2], batch)
end
return lapsed
"""
)


@dataclass(frozen=True)
class Lapsed:
    batch_id: str
    job_id: str  # the job that stopped renewing it


class Lease:
    """One job's hold on one batch."""

    def __init__(self, redis: Redis, *, batch_id: str, job_id: str, seconds: float) -> None:
        self.redis, self.batch_id, self.job_id = redis, batch_id, job_id
        self.ms = int(seconds * 1000)
        self.lost = False  # to another job, while kept

    async def _call(self, script: str, *extra: str) -> int:
        keys_and_args = (
            keys.LEASE_DEADLINES,
            keys.LEASE_HOLDERS,
            self.batch_id,
            self.job_id,
            *extra,
        )
        result: int = await self.redis.eval(script, 2, *keys_and_args)  # type: ignore[misc]
        return result

    async def take(self) -> bool:
        """True when this job holds the batch now (or did already); False while another does."""
        return bool(await self._call(_TAKE, str(self.ms)))

    async def renew(self) -> bool:
        """False once the lease is someone else's, or lapsed and reclaimed."""
        return bool(await self._call(_RENEW, str(self.ms)))

    async def release(self) -> None:
        await self._call(_RELEASE)

    async def let_go(self) -> None:
        """Release, unless the lease was lost to another job; Redis away, it lapses."""
        if not self.lost:
            with contextlib.suppress(RedisError, OSError):
                await self.release()

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew while the body runs; if the lease is lost, cancel the body (another job has
        the batch). The lease is still held when the body ends: `let_go` hands it back."""
        task = asyncio.current_task()
        assert task is not None
        keeper = asyncio.create_task(self._keep(task))
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep(self, task: asyncio.Task[object]) -> None:
        while True:
            await asyncio.sleep(self.ms / 4000)
            try:
                if await self.renew():
                    continue
            except (RedisError, OSError) as exc:  # Redis away: the sweep is too; try again
                log.warning("lease not renewed: %r", exc, extra={"batch_id": self.batch_id})
                continue
            log.warning("lease lost: another job has the batch", extra={"batch_id": self.batch_id})
            self.lost = True
            task.cancel()
            return


async def reclaim_expired(redis: Redis) -> list[Lapsed]:
    """Take away every lapsed lease, atomically: each is reclaimed once, whoever sweeps."""
    flat: list[bytes] = await redis.eval(_RECLAIM, 2, keys.LEASE_DEADLINES, keys.LEASE_HOLDERS)  # type: ignore[misc]
    return [Lapsed(flat[n].decode(), flat[n + 1].decode()) for n in range(0, len(flat), 2)]


async def held(redis: Redis, batch_ids: list[str]) -> set[str]:
    """Those of the batches a job holds now (lapsed leases included, until reclaimed)."""
    if not batch_ids:
        return set()
    deadlines = await redis.zmscore(keys.LEASE_DEADLINES, batch_ids)
    return {b for b, deadline in zip(batch_ids, deadlines, strict=True) if deadline is not None}
