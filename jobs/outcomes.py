"""What a chunk's outcomes tell the operator and the company: counters and a log line per
failure, and the company's failure-rate alert."""

import logging
from collections.abc import Sequence

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from infra.metrics import ITEM_FAILURES, PUSH_ATTEMPTS
from jobs.context import WorkerContext
from models.alerts import judge_failure_rate, record_outcomes
from models.enums import ItemStatus
from models.tables import SyncBatch
from models.transitions import ItemMove

log = logging.getLogger(__name__)


def report(provider: str, batch: SyncBatch, moves: Sequence[ItemMove]) -> None:
    """Count the items' outcomes, and log each failure with what identifies it."""
    for move in moves:
        if move.to is ItemStatus.PENDING:  # put back until the ledger allows: no outcome yet
            continue
        PUSH_ATTEMPTS.labels(provider).observe(len(move.attempts))
        if move.error is None:
            continue
        ITEM_FAILURES.labels(provider, move.error.code).inc()
        log.warning(
            "item failed: %s",
            move.error.message,
            extra={
                "company_id": batch.company_id,
                "batch_id": batch.id,
                "item_id": move.item_id,
                "provider": provider,
                "code": move.error.code,
                "attempts": len(move.attempts),
            },
        )


async def judge(deps: WorkerContext, batch: SyncBatch, moves: Sequence[ItemMove]) -> None:
    """Add the chunk's outcomes to the company's failure-rate window, and raise or clear its
    alert. Alerts advise: an outage here is logged and never stops the sync."""
    failed = sum(move.to is ItemStatus.FAILED for move in moves)
    succeeded = sum(move.to is ItemStatus.SUCCESS for move in moves)
    try:
        window = await record_outcomes(
            deps.services.redis,
            deps.services.settings,
            company_id=batch.company_id,
            succeeded=succeeded,
            failed=failed,
        )
        await judge_failure_rate(deps.services, company_id=batch.company_id, window=window)
    except (DBAPIError, RedisError) as exc:
        log.warning("failure-rate alert not judged: %r", exc, extra={"batch_id": batch.id})
