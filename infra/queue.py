"""The job queue's names and wire format, shared by whoever enqueues and the worker."""

import json
import time
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix

from infra import keys
from infra.tracing import carrier

QUEUE_NAME = keys.QUEUE
SYNC_BATCH = "sync_batch"
FIRST_TURN_SECONDS = 60.0  # a first turn goes before jobs that became ready this long since
FIRST_TURNS_PER_MINUTE = 60  # a company's batches queued as first turns, a minute at most


def serialize(message: dict[str, Any]) -> bytes:  # Any: arq's job envelope
    """JSON, not arq's pickle default: a queue entry is data, never code to unpickle."""
    return json.dumps(message).encode()


def deserialize(raw: bytes) -> dict[str, Any]:  # Any: arq's job envelope
    message: dict[str, Any] = json.loads(raw)
    return message


_SYNC_PREFIX = "sync:"


def sync_job_id(batch_id: str) -> str:
    """A batch's usual job id: enqueueing a batch whose job is already queued or running is a
    no-op. Its lease (`jobs.lease`) keeps any two jobs of a batch from working at once."""
    return _SYNC_PREFIX + batch_id


def _batch_of(job_id: str) -> str | None:
    """The batch a sync job id names (a fresh one carries a suffix); None for other jobs."""
    if not job_id.startswith(_SYNC_PREFIX):
        return None
    return job_id.removeprefix(_SYNC_PREFIX).split(":", 1)[0]


async def running_jobs(queue: ArqRedis, batch_ids: Collection[str]) -> dict[str, str]:
    """The sync jobs arq counts as running, by batch, among these batches'. A worker killed
    after arq marked a job running and before the job took its lease leaves one such until
    its in-progress key expires (the job timeout + 10 s)."""
    wanted = set(batch_ids)
    queued = [raw.decode() for raw in await queue.zrange(QUEUE_NAME, 0, -1)]
    theirs = [job_id for job_id in queued if _batch_of(job_id) in wanted]
    if not theirs:
        return {}
    async with queue.pipeline(transaction=False) as pipe:
        for job_id in theirs:
            pipe.exists(in_progress_key_prefix + job_id)
        running = await pipe.execute()
    return {
        batch_id: job_id
        for job_id, is_running in zip(theirs, running, strict=True)
        if is_running and (batch_id := _batch_of(job_id))
    }


async def enqueue_sync(
    queue: ArqRedis, *, batch_id: str, company_id: str | None = None, fresh: bool = False
) -> bool:
    """Ask a worker to sync the batch's unfinished items; False if its job is already there.
    A `fresh` job has an id of its own: for a batch whose job died (`jobs.lease`).

    New work of a company (`company_id` given: a batch created, retried, given files) is a
    first turn, up to `FIRST_TURNS_PER_MINUTE` of the company's a minute: arq's queue, ordered
    by when each job is due, gets it as if due `FIRST_TURN_SECONDS` ago. When more work is
    ready than the workers can run, a company that sends a batch now and then so goes before
    the jobs that busy companies' batches queue to resume, not behind all of them; a company
    that sends many gets no more first turns than that.

    The job carries the current trace's context, if any, so its spans join the request's;
    without one its arguments are as they were before tracing (a worker not yet upgraded
    still takes them)."""
    job_id = sync_job_id(batch_id) + (f":{uuid.uuid4().hex[:12]}" if fresh else "")
    headers = carrier()
    options: dict[str, Any] = {"trace": headers} if headers else {}  # Any: arq's keywords
    if company_id is not None and await _first_turn(queue, company_id):
        options["_defer_until"] = datetime.now(UTC) - timedelta(seconds=FIRST_TURN_SECONDS)
    job = await queue.enqueue_job(
        SYNC_BATCH, batch_id, _job_id=job_id, _queue_name=QUEUE_NAME, **options
    )
    return job is not None


async def _first_turn(queue: ArqRedis, company_id: str) -> bool:
    window = keys.first_turns(company_id, int(time.time() // 60))
    async with queue.pipeline(transaction=False) as pipe:
        pipe.incr(window)
        pipe.expire(window, 61)
        taken, _ = await pipe.execute()
    return int(taken) <= FIRST_TURNS_PER_MINUTE


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
