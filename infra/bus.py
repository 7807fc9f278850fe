"""Pub/sub messages on Redis, sent best effort: a message only wakes listeners up (what it
announces is already committed), so a failed publish is logged and never fails the sender."""

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class Bus:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def publish(self, channel: str, message: str) -> None:
        try:
            await self.redis.publish(channel, message)
        except RedisError:
            log.warning("publish to %s failed", channel)
