"""The job queue's names and wire format, shared by whoever enqueues and the worker."""

import json
import uuid
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix

from infra import keys
from infra.tracing import carrier

QUEUE_NAME = keys.QUEUE
SYNC_BATCH = "sync_batch"


def serialize(message: dict[str, Any]) -> bytes:  # Any: arq's job envelope
    """JSON, not arq's pickle default: a queue entry is data, never code to unpickle."""
    return json.dumps(message).encode()


def deserialize(raw: bytes) -> dict[str, Any]:  # Any: arq's job envelope
    message: dict[str, Any] = json.loads(raw)
    return message


def sync_job_id(batch_id: str) -> str:
    """A batch's usual job id: enqueueing a batch whose job is already queued or running is a
    no-op. Its lease (`jobs.lease`) keeps any two jobs of a batch from working at once."""
    return f"sync:{batch_id}"


async def enqueue_sync(queue: ArqRedis, *, batch_id: str, fresh: bool = False) -> bool:
    """Ask a worker to sync the batch's unfinished items; False if its job is already there.
    A `fresh` job has an id of its own: for a batch whose job died (`jobs.lease`).

    The job carries the current trace's context, if any, so its spans join the request's;
    without one its arguments are as they were before tracing (a worker not yet upgraded
    still takes them)."""
    job_id = sync_job_id(batch_id) + (f":{uuid.uuid4().hex[:12]}" if fresh else "")
    headers = carrier()
    traced: dict[str, Any] = {"trace": headers} if headers else {}  # Any: arq's keywords
    job = await queue.enqueue_job(
        SYNC_BATCH, batch_id, _job_id=job_id, _queue_name=QUEUE_NAME, **traced
    )
    return job is not None


async def forget_job(queue: ArqRedis, job_id: str) -> None:
    """Take a dead job out of arq: it would run again once its in-progress key expired, and
    until then its id would refuse a new job for its batch."""
    async with queue.pipeline(transaction=True) as pipe:
        pipe.zrem(QUEUE_NAME, job_id)
        pipe.delete(
            *(
                prefix + job_id
                for prefix in (job_key_prefix, in_progress_key_prefix, retry_key_prefix)
            )
        )
        await pipe.execute()
