"""arq worker settings: the sync job, the JSON wire format, and how a worker gets its context."""

import asyncio
import logging
from contextlib import AsyncExitStack
from functools import partial

from arq.cron import cron
from arq.worker import Worker, func

import ledgers
from infra.queue import QUEUE_NAME, SYNC_BATCH, deserialize, serialize
from infra.services import Services
from jobs.context import WorkerContext, attach, let_go
from jobs.sweeps import keep_history, reclaim_batches, requeue_unfinished
from jobs.sync import sync_batch
from jobs.webhooks import pump_webhooks
from ledgers.http import open_http
from ledgers.protocol import LedgerFactory

log = logging.getLogger(__name__)

MAX_SLICES = 1_000_000  # a batch's job runs again after each slice (arq counts them as tries)


def build_worker(
    services: Services,
    *,
    ledger_for: LedgerFactory | None = None,
    burst: bool = False,
) -> Worker:
    """A worker over already-open services. Signals are its host's (the API's uvicorn, or
    `run_worker`), which stops it with `close_worker`. It opens its own pool of HTTP
    connections (ledgers, webhook endpoints) when it starts."""
    settings = services.settings
    outside = AsyncExitStack()

    async def on_startup(ctx: dict[str, object]) -> None:
        http = await outside.enter_async_context(open_http())
        factory = ledger_for or partial(ledgers.ledger_for, services=services, http=http)
        attach(ctx, WorkerContext(services, factory, http))
        log.info("worker ready: up to %d batches at once", settings.worker_max_jobs)

    async def on_shutdown(ctx: dict[str, object]) -> None:
        await outside.aclose()

    return Worker(
        functions=[func(sync_batch, name=SYNC_BATCH, max_tries=MAX_SLICES)],
        cron_jobs=[
            cron(
                requeue_unfinished,
                second=set(range(0, 60, settings.recovery_seconds)),
                run_at_startup=True,
                unique=True,
            ),
            cron(
                reclaim_batches,
                second=set(range(0, 60, settings.sweep_seconds)),
                run_at_startup=True,
                unique=True,
            ),
            cron(
                keep_history,
                minute=set(range(0, 60, settings.history_sweep_minutes)),
                second=0,
                run_at_startup=True,
                unique=True,
            ),
            # Each second, one worker sends webhooks; a burst (tests) runs only what is queued.
            *([] if burst else [cron(pump_webhooks, second=set(range(60)), unique=True)]),
        ],
        job_timeout=settings.job_timeout_seconds,  # a backstop: a batch's job works in slices,
        # and a dead job's batch is reclaimed by its lease (jobs/lease.py), not by arq
        queue_name=QUEUE_NAME,
        redis_settings=services.redis_settings,  # its own pool: arq closes it on close()
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        after_job_end=let_go,  # a batch's lease, once arq has recorded how its job ended
        job_serializer=serialize,
        job_deserializer=deserialize,
        burst=burst,
        handle_signals=False,
        poll_delay=0.05,
        max_jobs=settings.worker_max_jobs,
        keep_result=0,  # a finished batch's job id is free at once for its next retry
    )


async def close_worker(worker: Worker) -> None:
    """`worker.close()`, finished where arq's stops short. It cancels the running jobs and
    gathers them; a job cancelled before its first step (picked a moment before the stop) ends
    cancelled, so that gather raises CancelledError before the jobs still handing their
    batches back are done, the Redis pool is closed or `on_shutdown` has run, and the process
    ended on a traceback. Here those are awaited and closed as arq's `close` would."""
    try:
        await worker.close()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # this task's own cancellation
            raise
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await worker.pool.delete(worker.health_check_key)
        if worker.on_shutdown is not None:
            await worker.on_shutdown(worker.ctx)
        await worker.pool.aclose(close_connection_pool=True)
