"""The workers' crons: a batch whose job died gets a new one, an unfinished batch that
never got one is queued, and history is kept within its retention."""

import logging

from infra.queue import enqueue_sync, forget_job, running_jobs
from jobs.context import from_ctx
from jobs.lease import Lease, held, reclaim_expired
from models.batch import unfinished_batches
from models.history import sweep
from models.tables import utcnow

log = logging.getLogger(__name__)


async def requeue_unfinished(ctx: dict[str, object]) -> None:
    """arq cron: queue every unfinished batch no job holds. A no-op where its job is queued;
    it finds batches whose enqueue never happened (a crash after the commit).

    A job arq runs that holds no lease either died before it took it or is taking it now:
    a lease in its name tells which, as its own job renews it and a dead one's lapses (and
    `reclaim_batches` gives the batch a new job)."""
    deps = from_ctx(ctx)
    redis, queue = deps.services.redis, deps.services.queue
    unfinished = await unfinished_batches(deps.services.db)
    holding = await held(redis, unfinished)
    with_job = []
    for batch_id in unfinished:
        if batch_id in holding:
            continue
        if await enqueue_sync(queue, batch_id=batch_id):
            log.warning("unfinished batch had no job: queued", extra={"batch_id": batch_id})
        else:
            with_job.append(batch_id)
    seconds = deps.services.settings.lease_seconds
    for batch_id, job_id in (await running_jobs(queue, with_job)).items():
        if await Lease(redis, batch_id=batch_id, job_id=job_id, seconds=seconds).take():
            log.info("running job %s had no lease: one in its name", job_id,
                     extra={"batch_id": batch_id})  # fmt: skip


async def reclaim_batches(ctx: dict[str, object]) -> None:
    """arq cron, one worker every `SWEEP_SECONDS`: a batch whose job stopped renewing its lease
    (a worker killed, a machine gone) gets a new job at once, with an id of its own."""
    deps = from_ctx(ctx)
    queue = deps.services.queue
    for lapsed in await reclaim_expired(deps.services.redis):
        await forget_job(queue, lapsed.job_id)
        await enqueue_sync(queue, batch_id=lapsed.batch_id, fresh=True)
        log.warning(
            "batch's job %s died: a new job took over",
            lapsed.job_id,
            extra={"batch_id": lapsed.batch_id},
        )


async def keep_history(ctx: dict[str, object]) -> None:
    """arq cron, one worker every `HISTORY_SWEEP_MINUTES` and at start: the coming months'
    partitions made ahead, and whatever is past retention removed (`models.history`)."""
    services = from_ctx(ctx).services
    made, removed = await sweep(services.db, services.storage, services.settings, utcnow())
    if made:
        log.info("history: partitions made ahead: %s", ", ".join(made))
    for gone in removed:
        log.info("history: %d %s rows past retention removed", gone.rows, gone.table,
                 extra={"partition": gone.partition, "archive": gone.archive})  # fmt: skip
