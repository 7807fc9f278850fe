"""`syncStats`: items synced and failed per bucket, counted from the event log."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from sqlalchemy import text, update

from infra.services import Services
from models.company import NewCompany
from models.stats import stats_query
from models.tables import SyncEvent
from tests.conftest import Api, RunJobs
from tests.helpers import CREATE_EXPENSES, RETRY, data, error, expense

STATS = """
query($c: ID!, $since: DateTime, $bucket: StatsBucket) {
  syncStats(companyId: $c, since: $since, bucket: $bucket) {
    bucketSeconds failureRateThreshold buckets { start synced failed failureRate }
  }
}
"""


async def test_stats_count_each_bucket_of_outcomes_with_empty_buckets_between(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    cid = company.company.id
    records = [expense(), expense(), expense(accountId="999")]
    created = data(await api.gql(CREATE_EXPENSES, {"companyId": cid, "expenses": records}))
    await run_jobs()
    batch_id = created["createExpenses"]["syncBatchId"]
    async with services.db.transaction() as session:  # the outcomes happened 30 minutes ago
        await session.execute(
            update(SyncEvent)
            .where(SyncEvent.batch_id == batch_id)
            .values(occurred_at=datetime.now(UTC) - timedelta(minutes=30))
        )
    data(await api.gql(RETRY, {"batchId": batch_id}))  # fails again, now
    await run_jobs()

    stats = data(await api.gql(STATS, {"c": cid}))["syncStats"]
    assert stats["bucketSeconds"] == 60 and stats["failureRateThreshold"] == 0.5
    buckets = stats["buckets"]
    assert len(buckets) in (60, 61)  # from the minute an hour ago to this one
    starts = [datetime.fromisoformat(b["start"]) for b in buckets]
    assert all(b - a == timedelta(minutes=1) for a, b in pairwise(starts))
    busy = [
        (b["synced"], b["failed"], b["failureRate"]) for b in buckets if b["synced"] or b["failed"]
    ]
    assert busy == [(2, 1, 1 / 3), (0, 1, 1.0)]  # half an hour ago; the retry's failure now
    assert buckets[0]["failureRate"] is None  # nothing ended then

    hourly = data(await api.gql(STATS, {"c": cid, "bucket": "HOUR"}))["syncStats"]["buckets"]
    assert sum(b["synced"] for b in hourly) == 2 and sum(b["failed"] for b in hourly) == 2


async def test_stats_refuse_a_span_of_too_many_buckets_or_the_future(
    api: Api, company: NewCompany
) -> None:
    cid = company.company.id
    week_ago = (datetime.now(UTC) - timedelta(days=7)).isoformat()
    answer = await api.gql(STATS, {"c": cid, "since": week_ago})
    assert error(answer)["extensions"]["code"] == "BAD_USER_INPUT"
    assert "1440 buckets" in error(answer)["message"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    answer = await api.gql(STATS, {"c": cid, "since": tomorrow})
    assert error(answer)["extensions"] == {"code": "BAD_USER_INPUT", "field": "since"}
    week = await api.gql(STATS, {"c": cid, "since": week_ago, "bucket": "HOUR"})
    assert len(data(week)["syncStats"]["buckets"]) in (169, 170)


async def test_stats_read_the_outcomes_index(services: Services) -> None:
    """At a million events the query must be a range of the partial index, not the log, in
    the one month's partition the range falls in."""
    if not services.db.is_postgres:
        return
    now = datetime.now(UTC).replace(day=15, hour=12)  # an hour well inside this month
    query = stats_query(services.db, "cmp_x", now - timedelta(hours=1), now, 60)
    async with services.db.engine.connect() as conn:
        await conn.execute(text("SET enable_seqscan = off"))  # an empty table: ask the index
        compiled = query.compile(dialect=conn.dialect)
        bound = tuple(compiled.params[name] for name in compiled.positiontup or ())
        plan = "\n".join(
            str(row[0]) for row in await conn.exec_driver_sql(f"EXPLAIN {compiled}", bound)
        )
    month = f"sync_event_p{now:%Y_%m}"  # the log is partitioned by month: only this one's read
    assert f"using {month}_company_id_occurred_at_to_status_idx on {month}" in plan, plan
    assert plan.count(" on sync_event_p") == 1, plan
