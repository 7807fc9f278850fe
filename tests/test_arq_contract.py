"""What the worker relies on of arq, pinned against a real Redis: a batch's job runs in slices
by raising `Retry` (arq counts each slice as a try), `after_job_end` runs once arq has
recorded how a job ended (a job's lease is let go there), and `infra.queue` knows where arq
keeps a job. An arq release that changes either fails here, not in production."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from arq import Retry, Worker, create_pool, func
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.typing import StartupShutdown
from arq.worker import Function

from infra.queue import QUEUE_NAME, deserialize, forget_job, running_jobs, serialize
from infra.services import redis_settings
from jobs.worker import close_worker

SLICES = 12  # more than arq's default of five tries


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(
        redis_settings(redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=QUEUE_NAME,
    )
    await pool.flushdb()
    yield pool
    await pool.aclose()


def _worker(redis_url: str, function: Function, **options: Any) -> Worker:
    """A worker with `function`, set up as ours is (the wire format, no results kept, signals
    left to its host); `options`: more of arq's."""
    return Worker(
        functions=[function],
        queue_name=QUEUE_NAME,
        redis_settings=redis_settings(redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        poll_delay=0.01,
        keep_result=0,
        handle_signals=False,
        **options,
    )


async def _run_burst(
    redis_url: str, function: Function, *, after_job_end: StartupShutdown | None = None
) -> Worker:
    """Run the queued jobs with `function` in a burst worker, to the end."""
    worker = _worker(redis_url, function, burst=True, after_job_end=after_job_end)
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return worker


async def test_a_job_raising_retry_runs_again_under_its_id_up_to_its_max_tries(
    queue: ArqRedis, redis_url: str
) -> None:
    tries: list[int] = []

    async def sliced(ctx: dict[str, object]) -> None:
        tries.append(int(str(ctx["job_try"])))
        if len(tries) < SLICES:
            raise Retry(defer=0)  # the rest of the batch, behind the other jobs

    await queue.enqueue_job("sliced", _job_id="sync:bat_1", _queue_name=QUEUE_NAME)
    worker = await _run_burst(redis_url, func(sliced, name="sliced", max_tries=1_000_000))
    assert tries == list(range(1, SLICES + 1))
    assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (1, SLICES - 1, 0)


async def test_after_job_end_runs_once_a_retry_is_recorded(queue: ArqRedis, redis_url: str) -> None:
    seen: list[tuple[int, bool, float | None]] = []

    async def sliced(ctx: dict[str, object]) -> None:
        if ctx["job_try"] == 1:
            raise Retry(defer=0.2)

    async def after(ctx: dict[str, object]) -> None:
        job_id = str(ctx["job_id"])
        running = bool(await queue.exists(in_progress_key_prefix + job_id))
        seen.append((int(str(ctx["job_try"])), running, await queue.zscore(QUEUE_NAME, job_id)))

    await queue.enqueue_job("sliced", _job_id="sync:bat_1", _queue_name=QUEUE_NAME)
    enqueued = await queue.zscore(QUEUE_NAME, "sync:bat_1")
    await _run_burst(redis_url, func(sliced, name="sliced", max_tries=3), after_job_end=after)
    assert enqueued is not None
    (first, retried, score), (second, *finished) = seen
    assert (first, retried) == (1, False) and score is not None and score >= enqueued + 200
    assert (second, finished) == (2, [False, None])


async def test_forgetting_a_dead_job_frees_its_id_for_a_new_one(queue: ArqRedis) -> None:
    assert await queue.enqueue_job("sliced", _job_id="sync:bat_1", _queue_name=QUEUE_NAME)
    assert await queue.enqueue_job("sliced", _job_id="sync:bat_1", _queue_name=QUEUE_NAME) is None
    await queue.set(in_progress_key_prefix + "sync:bat_1", b"1")  # as a killed worker leaves it
    await forget_job(queue, "sync:bat_1")
    assert await queue.zcard(QUEUE_NAME) == 0
    assert await queue.keys("arq:*") == []
    assert await queue.enqueue_job("sliced", _job_id="sync:bat_1", _queue_name=QUEUE_NAME)


async def test_jobs_marked_running_are_found_by_their_batch(queue: ArqRedis) -> None:
    for job_id in ("sync:bat_1", "sync:bat_2:0a1b2c", "sync:bat_3", "cron:sweep"):
        assert await queue.enqueue_job("sliced", _job_id=job_id, _queue_name=QUEUE_NAME)
    for job_id in ("sync:bat_2:0a1b2c", "sync:bat_3", "cron:sweep"):
        await queue.set(in_progress_key_prefix + job_id, b"1")
    found = await running_jobs(queue, ["bat_1", "bat_2", "bat_4"])
    assert found == {"bat_2": "sync:bat_2:0a1b2c"}


async def _closed_as_a_job_is_picked(
    redis_url: str, close: Callable[[Worker], Coroutine[Any, Any, None]]
) -> tuple[Worker, "asyncio.Task[None]", list[str]]:
    """Run a worker until it picks its one queued job and close it with `close` at that moment:
    the job's task (arq's `run_job`) is cancelled before its first step is done, as a stop a
    moment after a pick cancels it. The closing task, done, and what `on_shutdown` saw."""
    shut: list[str] = []

    async def on_shutdown(ctx: dict[str, object]) -> None:
        shut.append("on_shutdown")

    worker = _worker(redis_url, func(_never_runs, name="sliced"), on_shutdown=on_shutdown)
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Task[None]] = []

    def close_at_pick(
        loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> "asyncio.Task[Any]":
        task = asyncio.Task(coro, loop=loop, **kwargs)
        if getattr(coro, "__qualname__", "") == "Worker.run_job" and not closing:
            closing.append(loop.create_task(close(worker)))  # its first step follows the job's
        return task

    loop.set_task_factory(close_at_pick)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await worker.async_run()  # until the close cancels it
        assert closing, "the worker never picked its job"
        await asyncio.wait(closing)
    finally:
        loop.set_task_factory(None)
    return worker, closing[0], shut


async def _never_runs(ctx: dict[str, object]) -> None:
    raise AssertionError("the job ran: it was picked after the stop")


async def test_arqs_close_raises_when_a_job_was_cancelled_before_its_first_step(
    queue: ArqRedis, redis_url: str
) -> None:
    """Why `close_worker` exists: arq's `close` gathers the jobs it cancelled, and one cancelled
    before its first step makes it raise before its pool is closed and `on_shutdown` has run."""
    await queue.enqueue_job("sliced", _job_id="sync:bat_1", _queue_name=QUEUE_NAME)
    worker, closing, shut = await _closed_as_a_job_is_picked(redis_url, Worker.close)
    assert closing.cancelled() and shut == []
    await worker.pool.aclose(close_connection_pool=True)  # left open


async def test_close_worker_finishes_what_arqs_close_left_undone(
    queue: ArqRedis, redis_url: str
) -> None:
    await queue.enqueue_job("sliced", _job_id="sync:bat_1", _queue_name=QUEUE_NAME)
    _, closing, shut = await _closed_as_a_job_is_picked(redis_url, close_worker)
    assert not closing.cancelled() and closing.exception() is None and shut == ["on_shutdown"]
    assert await queue.zscore(QUEUE_NAME, "sync:bat_1") is not None  # queued for the next worker
