"""Status events on Redis pub/sub: one channel per company, a small JSON payload per event.

The SyncEvent table is the truth; a published event is only the wake-up for live listeners,
so a failed publish is logged and never fails the transition that committed it.
"""

import json
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlmodel import col, select

from models.db import Database
from models.errors import HINTS, RETRYABLE, SyncErrorCode
from models.tables import SyncEvent

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "sync2books:events:"


def company_channel(company_id: str) -> str:
    return CHANNEL_PREFIX + company_id


def event_payload(event: SyncEvent) -> dict[str, Any]:  # Any: JSON values
    error = None
    if event.error_code is not None:
        code = SyncErrorCode(event.error_code)
        error = {
            "code": code.value,
            "message": event.error_message,
            "hint": HINTS[code],
            "retryable": code in RETRYABLE,
        }
    return {
        "eventId": str(event.id),
        "companyId": event.company_id,
        "batchId": event.batch_id,
        "itemId": event.item_id,
        "fromStatus": event.from_status,
        "toStatus": event.to_status,
        "occurredAt": event.occurred_at.isoformat(),
        "error": error,
    }


class EventBus:
    """Publishes committed events, pipelined: one round trip per transition, not per event."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def publish(self, events: Sequence[SyncEvent]) -> None:
        if not events:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.publish(
                        company_channel(event.company_id), json.dumps(event_payload(event))
                    )
                await pipe.execute()
        except RedisError:
            log.warning("publish failed for events %s..%s", events[0].id, events[-1].id)


async def batch_events(db: Database, *, batch_id: str, after: int = 0) -> list[SyncEvent]:
    """The batch's logged transitions after event id `after`, in order."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(SyncEvent)
            .where(SyncEvent.batch_id == batch_id, col(SyncEvent.id) > after)
            .order_by(col(SyncEvent.id))
        )
        return list(rows)
