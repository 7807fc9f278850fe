"""Batch leases against a real Redis: one holder at a time, lapsed leases reclaimed once."""

import asyncio

import pytest

from infra import keys
from infra.services import Services
from jobs.lease import Lapsed, Lease, held, reclaim_expired
from tests.helpers import eventually


def _lease(services: Services, job_id: str, seconds: float = 5.0) -> Lease:
    return Lease(services.redis, batch_id="bat_1", job_id=job_id, seconds=seconds)


async def _deadline(services: Services) -> float:
    score: float | None = await services.redis.zscore(keys.LEASE_DEADLINES, "bat_1")
    assert score is not None
    return score


async def _redis_passed(services: Services, deadline: float) -> bool:
    """Whether Redis's clock, which leases go by, is past `deadline` (ms)."""
    seconds, micros = await services.redis.time()
    now_ms: int = seconds * 1000 + micros // 1000
    return now_ms > deadline


async def _renewed(services: Services, deadline: float) -> bool:
    """Whether the lease's deadline moved past `deadline`: its keeper renewed it."""
    return await _deadline(services) > deadline


async def test_one_job_holds_a_batch_until_it_lets_go(services: Services) -> None:
    first, second = _lease(services, "job-1"), _lease(services, "job-2")
    assert await first.take()
    assert await first.take()  # its own lease again, e.g. its next slice
    assert not await second.take()
    assert not await second.renew()
    await second.release()  # not its lease: nothing happens
    assert await held(services.redis, ["bat_1", "bat_2"]) == {"bat_1"}
    await first.release()
    assert await second.take()


async def test_a_lapsed_lease_is_reclaimed_once_and_names_its_dead_job(
    services: Services,
) -> None:
    dead = _lease(services, "job-dead", seconds=0.1)
    assert await dead.take()
    assert await reclaim_expired(services.redis) == []  # still live
    deadline = await _deadline(services)
    await eventually(lambda: _redis_passed(services, deadline), "the lease lapsed")
    assert await reclaim_expired(services.redis) == [Lapsed("bat_1", "job-dead")]
    assert await reclaim_expired(services.redis) == []
    assert not await dead.renew()  # the dead job, were it only slow, learns it lost the batch
    assert await _lease(services, "job-new").take()


async def test_a_kept_lease_is_renewed_and_the_body_cancelled_once_it_is_lost(
    services: Services,
) -> None:
    lease = _lease(services, "job-1", seconds=2)  # renewed every 0.5 s
    assert await lease.take()
    taken = await _deadline(services)
    with pytest.raises(asyncio.CancelledError):
        async with lease.kept():
            await eventually(lambda: _renewed(services, taken), "the lease renewed")
            assert await reclaim_expired(services.redis) == []
            await services.redis.hset(keys.LEASE_HOLDERS, "bat_1", "job-2")  # type: ignore[misc]
            await asyncio.sleep(60)  # cancelled once the next renewal finds the lease another's
    assert await held(services.redis, ["bat_1"]) == {"bat_1"}  # job-2's, left alone


async def test_a_kept_lease_is_held_after_its_body_ends_until_let_go(
    services: Services,
) -> None:
    lease = _lease(services, "job-1")
    assert await lease.take()
    async with lease.kept():
        pass
    assert await held(services.redis, ["bat_1"]) == {"bat_1"}  # until arq has recorded the end
    await lease.let_go()
    assert await held(services.redis, ["bat_1"]) == set()
    lost = _lease(services, "job-2")
    assert await lost.take()
    lost.lost = True  # as its keeper marks a lease another job took
    await lost.let_go()
    assert await held(services.redis, ["bat_1"]) == {"bat_1"}  # the other job's, left alone
