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


def sync_job_id(batch_id: str) -> str:
    """One job id per batch: arq then never runs two jobs of a batch at once, and enqueueing a
    batch whose job is already queued or running is a no-op."""
    return f"sync:{batch_id}"


async def enqueue_sync(queue: ArqRedis, *, batch_id: str) -> bool:
    """Ask a worker to sync the batch's unfinished items; False if its job is already there."""
    job = await queue.enqueue_job(
        SYNC_BATCH, batch_id, _job_id=sync_job_id(batch_id), _queue_name=QUEUE_NAME
    )
    return job is not None
