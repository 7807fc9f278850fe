"""The workers' crons: a batch whose job died gets a new one, and an unfinished batch that
never got one is queued."""

import logging

from infra.queue import enqueue_sync, forget_job
from jobs.context import from_ctx
from jobs.lease import held, reclaim_expired
from models.batch import unfinished_batches

log = logging.getLogger(__name__)


async def requeue_unfinished(ctx: dict[str, object]) -> None:
    """arq cron: queue every unfinished batch no job holds. A no-op where its job is queued;
    it finds batches whose enqueue never happened (a crash after the commit)."""
    deps = from_ctx(ctx)
    unfinished = await unfinished_batches(deps.services.db)
    holding = await held(deps.services.redis, unfinished)
    for batch_id in unfinished:
        if batch_id not in holding and await enqueue_sync(deps.services.queue, batch_id=batch_id):
            log.warning("unfinished batch had no job: queued", extra={"batch_id": batch_id})


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
