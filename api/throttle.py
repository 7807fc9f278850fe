"""Per-key request limits, shared by every API process through Redis.

A fixed window per key and minute: cheap (one pipelined round trip a request) and exact
enough for a limit whose purpose is to stop a runaway client, not to meter it.
"""

import time

from redis.asyncio import Redis

from infra import keys


async def seconds_until_allowed(redis: Redis, *, key_hash: str, per_minute: int) -> float:
    """0 if this request is within the key's limit; else how long until the next window."""
    now = time.time()
    window = keys.requests(key_hash, int(now // 60))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(window)
        pipe.expire(window, 61)
        count, _ = await pipe.execute()
    return 0.0 if count <= per_minute else 60 - now % 60
