"""arq worker settings: the sync job, the JSON wire format, and how a worker gets its context."""

from functools import partial

from arq.worker import Worker, func

from jobs import providers
from jobs.context import WorkerContext, attach
from jobs.sync import sync_batch
from models.ledger import LedgerFactory
from models.queue import QUEUE_NAME, SYNC_BATCH, deserialize, serialize
from models.services import Services


def build_worker(
    services: Services,
    *,
    ledger_for: LedgerFactory | None = None,
    burst: bool = False,
    in_process: bool = False,
) -> Worker:
    """A worker over already-open services; `in_process` leaves signals to the host (the API)."""
    context = WorkerContext(
        services, ledger_for or partial(providers.ledger_for, services=services)
    )

    async def on_startup(ctx: dict[str, object]) -> None:
        attach(ctx, context)

    return Worker(
        functions=[
            func(sync_batch, name=SYNC_BATCH, timeout=services.settings.job_timeout_seconds)
        ],
        queue_name=QUEUE_NAME,
        redis_settings=services.redis_settings,  # its own pool: arq closes it on close()
        on_startup=on_startup,
        job_serializer=serialize,
        job_deserializer=deserialize,
        burst=burst,
        handle_signals=not in_process,
        poll_delay=0.1,
        keep_result=60,
    )
