"""`syncStats`: a company's items synced and failed per time bucket, for charts."""

from datetime import datetime
from enum import Enum

import strawberry

from api.context import Info
from models.stats import Bucket, default_since, sync_stats
from models.tables import utcnow


@strawberry.enum(description="How long each bucket of `syncStats` is.")
class StatsBucket(Enum):
    MINUTE = 60
    FIVE_MINUTES = 300
    HOUR = 3600


@strawberry.type(description="Items that reached an outcome within one bucket of time.")
class SyncStatsBucket:
    start: datetime
    synced: int = strawberry.field(description="Items that moved to SUCCESS.")
    failed: int = strawberry.field(description="Items that moved to FAILED (each failure).")
    failure_rate: float | None = strawberry.field(
        description="failed / (synced + failed); null for a bucket with neither."
    )

    @classmethod
    def from_bucket(cls, bucket: Bucket) -> "SyncStatsBucket":
        return cls(
            start=bucket.start,
            synced=bucket.synced,
            failed=bucket.failed,
            failure_rate=bucket.failure_rate,
        )


@strawberry.type(description="A company's sync history in even buckets, oldest first.")
class SyncStats:
    bucket_seconds: int
    failure_rate_threshold: float = strawberry.field(
        description="The failure rate at which a FAILURE_RATE alert is raised (over "
        "`ALERT_WINDOW_SECONDS`, not per bucket): the line a failure-rate chart draws."
    )
    buckets: list[SyncStatsBucket]


@strawberry.type
class StatsQuery:
    @strawberry.field(
        description="Items synced and failed per bucket from `since` (default: an hour ago "
        "for MINUTE and FIVE_MINUTES, a day ago for HOUR) until now, empty buckets included; "
        "at most 1,440 buckets."
    )
    async def sync_stats(
        self,
        info: Info,
        company_id: strawberry.ID,
        since: datetime | None = None,
        bucket: StatsBucket = StatsBucket.MINUTE,
    ) -> SyncStats:
        ctx = info.context
        owner = ctx.own(company_id)
        now = utcnow()
        buckets = await sync_stats(
            ctx.services.db,
            company_id=owner,
            since=since or default_since(now, bucket.value),
            until=now,
            bucket_seconds=bucket.value,
        )
        return SyncStats(
            bucket_seconds=bucket.value,
            failure_rate_threshold=ctx.services.settings.alert_failure_rate,
            buckets=[SyncStatsBucket.from_bucket(b) for b in buckets],
        )
