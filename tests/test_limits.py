"""Every ledger limit at once, against a real Redis: a connection's rate, its calls a day,
and our app's calls a minute across every connection of a provider; the one that puts a
call off is named, in the limiter, in `Connection.rateLimit` and in a batch's `waitingFor`.
The limiter's own tests run once (`postgres_only`): they touch no database."""

import asyncio
import contextlib
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from arq.constants import in_progress_key_prefix

from infra import keys
from infra.queue import QUEUE_NAME
from infra.services import Services
from jobs.worker import build_worker, close_worker
from ledgers.gateway import Pace
from ledgers.limiter import Limiter, Slot
from ledgers.protocol import Limits
from models.batch import get_batch, items_in
from models.company import NewCompany
from models.enums import ItemStatus, LimitHold
from models.errors import LedgerError, SyncErrorCode
from models.tables import utcnow
from tests.conftest import asgi_api
from tests.helpers import BUDGET, data, expense, new_batch

FAST = 60_000  # calls a minute: a connection's own pace never puts these calls off


def _limiter(services: Services, connection_id: str, **limits: int) -> Limiter:
    allowed = Limits(per_minute=FAST, concurrent=5, **limits)  # type: ignore[arg-type]
    return Limiter(
        services.redis,
        connection_id=connection_id,
        provider="sandbox",
        limits=allowed,
        lease_seconds=30,
    )


async def _clear_of_midnight() -> None:
    """Wait out the last 40 s of a UTC day: a day's limit would put calls off only briefly."""
    if 86_400 - time.time() % 86_400 < 40:
        await asyncio.sleep(45)


def _next_minute_in(seconds: float) -> bool:
    """Whether `seconds` from now is in the next minute or the one after (not this one)."""
    now = time.time()
    return (now + seconds) // 60 > now // 60


async def test_the_apps_calls_a_minute_hold_across_connections(
    services: Services, postgres_only: None
) -> None:
    if time.time() % 60 > 55:  # the minute about to turn would put no call off
        await asyncio.sleep(6)
    first, second = (_limiter(services, f"con_{n}", app_per_minute=3) for n in range(2))
    assert (await first.next_slot()).held_by is None
    for limiter in (first, second, first):
        assert await limiter.reserve() < 0.1  # at their own pace, well within a second
    put_off = await second.next_slot()
    assert put_off.held_by == LimitHold.APP and _next_minute_in(put_off.wait)
    assert await second.app_used() == 3
    assert abs(await second.reserve() - put_off.wait) < 0.1  # where the look said it would


async def test_a_connections_calls_a_day_put_the_next_one_off_to_tomorrow(
    services: Services, postgres_only: None
) -> None:
    await _clear_of_midnight()
    limiter = _limiter(services, "con_day", per_day=2)
    await limiter.reserve()
    await limiter.reserve()
    slot = await limiter.next_slot()
    assert slot.held_by == LimitHold.DAY
    midnight = (time.time() // 86400 + 1) * 86400
    assert abs(time.time() + slot.wait - midnight) < 1
    assert await limiter.used() == (2, 2)
    assert isinstance(slot, Slot)


async def test_the_rate_limit_names_the_app_limit_holding_a_company_back(
    services: Services, company: NewCompany
) -> None:
    if time.time() % 60 > 55:
        await asyncio.sleep(6)
    settings = services.settings.model_copy(update={"sandbox_app_rate_limit_per_minute": 2})
    limited = replace(services, settings=settings)
    other = _limiter(services, "con_other_company", app_per_minute=2)
    await other.reserve()
    await other.reserve()  # another company used the app's minute
    async with asgi_api(limited, settings, company.api_key) as api:
        told = data(await api.gql(BUDGET, {"c": company.company.id}))["connection"]["rateLimit"]
    assert (told["appCallsPerMinute"], told["appRemainingThisMinute"]) == (2, 0)
    assert told["heldBy"] == "APP"


async def test_a_batch_past_todays_calls_is_estimated_after_midnight_and_says_why(
    services: Services, company: NewCompany
) -> None:
    await _clear_of_midnight()
    settings = services.settings.model_copy(
        update={"sandbox_daily_limit": 3, "sandbox_rate_limit_per_minute": 60}
    )
    limited = replace(services, settings=settings)
    async with asgi_api(limited, settings, company.api_key) as api:
        small = await new_batch(api, company, [expense() for _ in range(100)])  # 2 calls of 50
        query = "query($b: ID!) { syncBatch(id: $b) { estimatedCompletionAt waitingFor } }"
        told = data(await api.gql(query, {"b": small}))["syncBatch"]
        assert told["waitingFor"] is None
        assert datetime.fromisoformat(told["estimatedCompletionAt"]) < utcnow() + timedelta(
            minutes=1
        )
        large = await new_batch(api, company, [expense() for _ in range(150)])  # 3 more calls
        told = data(await api.gql(query, {"b": large}))["syncBatch"]
    midnight = datetime.combine(utcnow().date() + timedelta(days=1), datetime.min.time(), UTC)
    assert told["waitingFor"] == "DAY"
    due = datetime.fromisoformat(told["estimatedCompletionAt"])
    assert midnight < due <= midnight + timedelta(seconds=3)  # 5 calls, 3 today: 2 after it


def test_the_pace_puts_calls_past_a_days_limit_into_the_following_days() -> None:
    now = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)
    pace = Pace(0.0, 50.0, documents_per_call=50, per_day=10, calls_left_today=2)
    assert pace.done_at(100, now) == now + timedelta(seconds=2)  # 2 calls: today
    assert pace.done_at(150, now) == datetime(2026, 12, 8, 0, 0, 1, tzinfo=UTC)
    assert pace.done_at(50 * 12, now) == datetime(2026, 12, 8, 0, 0, 10, tzinfo=UTC)
    assert pace.done_at(50 * 13, now) == datetime(2026, 12, 9, 0, 0, 1, tzinfo=UTC)


async def test_a_call_its_day_would_put_off_for_hours_is_refused_not_left_waiting(
    services: Services, postgres_only: None
) -> None:
    await _clear_of_midnight()
    limiter = _limiter(services, "con_spent", per_day=1)
    async with limiter.call():
        pass
    with pytest.raises(LedgerError) as refused:
        async with limiter.call():
            pass
    assert refused.value.error.code == SyncErrorCode.RATE_LIMIT_EXCEEDED
    assert "after midnight UTC" in refused.value.message
    assert refused.value.retry_after is not None and refused.value.retry_after > 0
    assert await limiter.used() == (1, 1)  # the refused call took no slot


async def test_a_batch_past_todays_calls_queues_its_job_for_tomorrow_holding_no_slot(
    services: Services, company: NewCompany
) -> None:
    await _clear_of_midnight()
    settings = services.settings.model_copy(update={"sandbox_daily_limit": 1})
    limited = replace(services, settings=settings)
    async with asgi_api(limited, settings, company.api_key) as api:
        batch_id = await new_batch(api, company, [expense() for _ in range(100)])  # 2 calls
    worker = build_worker(limited, burst=True)
    with contextlib.suppress(TimeoutError):  # a burst worker waits for the deferred job
        await asyncio.wait_for(worker.main(), 5)
    await close_worker(worker)
    batch = await get_batch(services.db, company_id=company.company.id, batch_id=batch_id)
    assert batch is not None and (batch.success_count, batch.pending_count) == (50, 50)
    waiting = await items_in(services.db, batch_id=batch_id, status=ItemStatus.PENDING, limit=None)
    assert [item.attempts for item in waiting] == [0] * 50  # never sent to be refused
    jobs = await services.queue.queued_jobs()
    (job_id,) = [job.job_id for job in jobs if job.function == "sync_batch" and job.job_id]
    midnight = datetime.combine(utcnow().date() + timedelta(days=1), datetime.min.time(), UTC)
    due = await services.queue.zscore(QUEUE_NAME, job_id)  # after midnight, not now
    assert due is not None and abs(due / 1000 - midnight.timestamp()) < 1
    assert not await services.redis.exists(in_progress_key_prefix + job_id)
    assert await services.redis.exists(keys.reserved_slot(batch_id))  # tomorrow's first call
