"""The transition function: legal moves only, counters in step, no double claims."""

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from infra.queue import enqueue_sync
from infra.services import Services
from jobs.context import WorkerContext
from jobs.sync import run_sync
from ledgers import books as sandbox
from models.batch import create_batch, get_batch, retry_failed_items
from models.company import NewCompany
from models.enums import BatchStatus, ItemStatus, RecordType
from models.errors import Conflict, SyncError, SyncErrorCode
from models.tables import Company, SyncBatch, SyncEvent, batches_in
from models.transitions import ItemMove, transition
from tests.helpers import batch_events, expense_record


async def _new_batch(
    services: Services, company: NewCompany, count: int, **overrides: Any
) -> tuple[str, list[str]]:
    """A batch of `count` alike expenses (`overrides` as in `expense()`), not yet synced."""
    batch, item_ids = await create_batch(
        services.db,
        bus=services.bus,
        company_id=company.company.id,
        record_type=RecordType.EXPENSE,
        records=[expense_record(**overrides)] * count,
    )
    return batch.id, item_ids


async def _batch(services: Services, company: NewCompany, batch_id: str) -> SyncBatch:
    batch = await get_batch(services.db, company_id=company.company.id, batch_id=batch_id)
    assert batch is not None
    return batch


async def test_moves_update_counters_and_derive_the_batch_status(
    services: Services, company: NewCompany
) -> None:
    batch_id, (a, b) = await _new_batch(services, company, 2)
    move = ItemMove
    await transition(
        services.db, bus=services.bus, batch_id=batch_id, moves=[move(a, ItemStatus.PROCESSING)]
    )
    batch = await _batch(services, company, batch_id)
    assert (batch.status, batch.pending_count, batch.processing_count) == (
        BatchStatus.PROCESSING,
        1,
        1,
    )
    assert batch.started_at is not None

    error = SyncError(SyncErrorCode.VALIDATION_ERROR, "bad")
    await transition(
        services.db,
        bus=services.bus,
        batch_id=batch_id,
        moves=[move(a, ItemStatus.FAILED, error=error), move(b, ItemStatus.PROCESSING)],
    )
    events = await transition(
        services.db,
        bus=services.bus,
        batch_id=batch_id,
        moves=[move(b, ItemStatus.SUCCESS, external_id="x")],
    )
    assert [(e.item_id, e.to_status) for e in events] == [(b, "SUCCESS"), (None, "COMPLETED")]
    batch = await _batch(services, company, batch_id)
    assert batch.status is BatchStatus.COMPLETED and batch.completed_at is not None
    assert (
        batch.pending_count,
        batch.processing_count,
        batch.success_count,
        batch.failed_count,
    ) == (0, 0, 1, 1)


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], ItemStatus.SUCCESS),  # PENDING → SUCCESS skips PROCESSING
        ([], ItemStatus.PENDING),  # PENDING → PENDING
        ([ItemStatus.PROCESSING, ItemStatus.SUCCESS], ItemStatus.PENDING),  # SUCCESS is final
        ([ItemStatus.PROCESSING, ItemStatus.SUCCESS], ItemStatus.FAILED),
    ],
)
async def test_illegal_item_moves_are_refused_and_change_nothing(
    services: Services, company: NewCompany, path: list[ItemStatus], illegal: ItemStatus
) -> None:
    batch_id, (item,) = await _new_batch(services, company, 1)
    for status in path:
        await transition(
            services.db, bus=services.bus, batch_id=batch_id, moves=[ItemMove(item, status)]
        )
    before = await _batch(services, company, batch_id)
    logged = len(await batch_events(services.db, batch_id=batch_id))
    with pytest.raises(Conflict):
        await transition(
            services.db, bus=services.bus, batch_id=batch_id, moves=[ItemMove(item, illegal)]
        )
    assert await _batch(services, company, batch_id) == before
    assert len(await batch_events(services.db, batch_id=batch_id)) == logged


async def test_concurrent_claims_take_each_item_once(
    services: Services, company: NewCompany
) -> None:
    batch_id, item_ids = await _new_batch(services, company, 40)
    claims = [ItemMove(item_id, ItemStatus.PROCESSING) for item_id in item_ids]
    results = await asyncio.gather(
        *(
            transition(services.db, bus=services.bus, batch_id=batch_id, moves=claims, strict=False)
            for _ in range(4)
        )
    )
    claimed = [e.item_id for events in results for e in events if e.item_id]
    assert sorted(claimed) == sorted(item_ids)
    batch = await _batch(services, company, batch_id)
    assert (batch.pending_count, batch.processing_count) == (0, 40)


async def test_two_workers_on_one_batch_push_each_item_exactly_once(
    services: Services, company: NewCompany, worker_context: WorkerContext
) -> None:
    batch_id, item_ids = await _new_batch(services, company, 180)
    await enqueue_sync(services.queue, batch_id=batch_id)
    await asyncio.gather(
        run_sync(worker_context, batch_id=batch_id), run_sync(worker_context, batch_id=batch_id)
    )

    async with services.db.sessions() as session:
        posted = await sandbox.records(session, company_id=company.company.id)
        claims = await session.scalar(
            select(func.count()).where(
                col(SyncEvent.batch_id) == batch_id,
                col(SyncEvent.item_id).is_not(None),
                col(SyncEvent.to_status) == ItemStatus.PROCESSING,
            )
        )
    assert sorted(r.idempotency_key for r in posted) == sorted(item_ids)
    assert claims == 180
    events = await batch_events(services.db, batch_id=batch_id)  # in id order
    assert [e.company_seq for e in events] == list(range(1, len(events) + 1))
    batch = await _batch(services, company, batch_id)
    assert (batch.status, batch.success_count, batch.pending_count) == (
        BatchStatus.COMPLETED,
        180,
        0,
    )


async def test_concurrent_retry_all_retries_each_failed_item_once(
    services: Services, company: NewCompany, worker_context: WorkerContext
) -> None:
    batch_id, item_ids = await _new_batch(services, company, 30, accountId="999")
    await run_sync(worker_context, batch_id=batch_id)
    retried = await asyncio.gather(
        *(
            retry_failed_items(
                services.db,
                bus=services.bus,
                company_id=company.company.id,
                batch_id=batch_id,
                item_ids=None,
            )
            for _ in range(3)
        )
    )
    ids = [item.id for items in retried for item in items]
    assert sorted(ids) == sorted(item_ids)
    after = await _batch(services, company, batch_id)
    assert (after.status, after.pending_count, after.failed_count) == (
        BatchStatus.PROCESSING,
        30,
        0,
    )


async def test_money_stays_exact_through_the_database_and_the_ledger(
    services: Services, company: NewCompany, worker_context: WorkerContext
) -> None:
    batch_id, _ = await _new_batch(services, company, 1, amount="123456789012345.67")
    await run_sync(worker_context, batch_id=batch_id)
    async with services.db.sessions() as session:
        (posted,) = await sandbox.records(session, company_id=company.company.id)
    assert posted.amount == "123456789012345.67"


async def test_the_company_counts_its_batches_in_each_status_as_they_move(
    services: Services, company: NewCompany
) -> None:
    await _new_batch(services, company, 1)  # stays PENDING
    done, (item,) = await _new_batch(services, company, 1)
    broken, _ = await _new_batch(services, company, 2)
    bus = services.bus
    await transition(
        services.db, bus=bus, batch_id=done, moves=[ItemMove(item, ItemStatus.PROCESSING)]
    )
    failure = SyncError(SyncErrorCode.VALIDATION_ERROR, "no")
    await transition(
        services.db, bus=bus, batch_id=done, moves=[ItemMove(item, ItemStatus.FAILED, failure)]
    )
    expired = SyncError(SyncErrorCode.CONNECTION_EXPIRED, "gone")
    await transition(services.db, bus=bus, batch_id=broken, moves=[], fail_batch=expired)
    await retry_failed_items(  # COMPLETED reopens: PROCESSING
        services.db, bus=bus, company_id=company.company.id, batch_id=done, item_ids=None
    )
    async with services.db.sessions() as session:
        rows = await session.execute(
            select(col(SyncBatch.status), func.count())
            .where(col(SyncBatch.company_id) == company.company.id)
            .group_by(col(SyncBatch.status))
        )
        counted: dict[BatchStatus, int] = {status: n for status, n in rows}
        row = await session.get(Company, company.company.id)
    assert row is not None
    kept = {status: getattr(row, batches_in(status)) for status in BatchStatus}
    assert kept == {status: counted.get(status, 0) for status in BatchStatus}
    assert kept[BatchStatus.PENDING] == 1 and sum(kept.values()) == 3
