"""The job queue's names and wire format, shared by whoever enqueues and the worker."""

import json
from typing import Any

from arq.connections import ArqRedis

QUEUE_NAME = "sync2books:queue"
SYNC_BATCH = "sync_batch"


def serialize(message: dict[str, Any]) -> bytes:  # Any: arq's job envelope
    """JSON, not arq's pickle default: a queue entry is data, never code to unpickle."""
    return json.dumps(message).encode()


def deserialize(raw: bytes) -> dict[str, Any]:  # Any: arq's job envelope
    message: dict[str, Any] = json.loads(raw)
    return message


async def enqueue_sync(queue: ArqRedis, *, batch_id: str) -> None:
    """Ask a worker to push the batch's PENDING items; called only after the batch is committed."""
    await queue.enqueue_job(SYNC_BATCH, batch_id, _queue_name=QUEUE_NAME)
