"""Bounded history: monthly partitions made ahead, retention that drops months whole (deletes
in batches on SQLite), archives read back by the CLI, and streams refused with
`EVENTS_EXPIRED` where the log they would resume from is gone."""

import asyncio
import gzip
import json
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text, update
from sqlmodel import col, select

from infra.services import Services
from models.company import NewCompany
from models.enums import DeliveryStatus
from models.history import archive_lines, ensure_partitions, is_partition, partitions, sweep
from models.tables import (
    PushAttempt,
    SyncEvent,
    SyncItem,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from tests.conftest import Api, RunJobs
from tests.helpers import batch_events, data, expense, new_batch
from tests.live import BATCH_EVENTS, COMPANY_EVENTS, GraphQLWebSocket
from tests.processes import cli, env_without_config
from tests.test_stats import STATS

_TABLES = ("sync_event", "push_attempt")
PAST = timedelta(days=150)  # its month ends more than 90 days ago, whatever today is


async def _backdate(services: Services, batch_id: str) -> None:
    """Move a batch's events and its items' push attempts back by `PAST`, as if it synced
    then (on PostgreSQL into that month's partition, made first)."""
    await ensure_partitions(services.db, utcnow() - PAST)
    async with services.db.transaction() as session:
        events = await session.scalars(select(SyncEvent).where(col(SyncEvent.batch_id) == batch_id))
        items = select(col(SyncItem.id)).where(col(SyncItem.batch_id) == batch_id)
        attempts = await session.scalars(
            select(PushAttempt).where(col(PushAttempt.item_id).in_(items))
        )
        for event in events:
            await session.execute(
                update(SyncEvent)
                .where(col(SyncEvent.id) == event.id)
                .values(occurred_at=event.occurred_at - PAST)
            )
        for attempt in attempts:
            await session.execute(
                update(PushAttempt)
                .where(col(PushAttempt.id) == attempt.id)
                .values(started_at=attempt.started_at - PAST)
            )


async def test_months_are_made_ahead_and_named_as_partitions(services: Services) -> None:
    if not services.db.is_postgres:
        assert await ensure_partitions(services.db, utcnow()) == []  # SQLite: one table each
        return
    now = utcnow()
    assert await ensure_partitions(services.db, now) == []  # the migration made them
    names = {p.name for p in await partitions(services.db)}
    month = f"{now:%Y_%m}"
    assert {f"sync_event_p{month}", f"push_attempt_p{month}"} <= names
    later = await ensure_partitions(services.db, now + timedelta(days=100))
    assert later and all(is_partition(name) for name in later)
    assert not is_partition("sync_event") and not is_partition("sync_event_p2026_1")


async def test_a_stream_resuming_before_what_retention_removed_is_refused(
    api: Api,
    company: NewCompany,
    services: Services,
    live_server: str,
    run_jobs: RunJobs,
    tmp_path: Path,
) -> None:
    old = await new_batch(api, company, [expense(), expense()])
    await run_jobs()
    new = await new_batch(api, company, [expense()])
    await run_jobs()
    await _backdate(services, old)
    gone = [str(e.id) for e in await batch_events(services.db, batch_id=old)]
    kept = [str(e.id) for e in await batch_events(services.db, batch_id=new)]

    archiving = services.settings.model_copy(update={"history_archive": True})
    _, removed = await sweep(services.db, services.storage, archiving, utcnow())
    rows = {table: sum(r.rows for r in removed if r.table == table) for table in _TABLES}
    assert rows == {"sync_event": len(gone), "push_attempt": 2}
    assert [str(e.id) for e in await batch_events(services.db, batch_id=old)] == []
    assert [str(e.id) for e in await batch_events(services.db, batch_id=new)] == kept

    cid = company.company.id
    async with GraphQLWebSocket.connect(live_server, company.api_key) as ws:
        await ws.subscribe("early", COMPANY_EVENTS, {"companyId": cid, "after": gone[0]})
        refused = await ws.next("early")
        await ws.subscribe("last", COMPANY_EVENTS, {"companyId": cid, "after": gone[-1]})
        replayed = await ws.events("last", count=len(kept))
    assert refused["type"] == "error", refused
    (problem,) = refused["payload"]
    assert problem["extensions"] == {
        "code": "EVENTS_EXPIRED",
        "field": "afterEventId",
        "oldestEventId": kept[0],
    }
    assert f"the oldest event kept is {kept[0]}" in problem["message"]
    assert [event["eventId"] for event in replayed] == kept  # nothing missed after the last gone

    async with GraphQLWebSocket.connect(live_server, company.api_key) as ws:
        await ws.subscribe("old", BATCH_EVENTS, {"batchId": old})  # from its first event
        refused = await ws.next("old")
        await ws.subscribe("new", BATCH_EVENTS, {"batchId": new})
        replayed = await ws.events("new", count=len(kept))
        done = await ws.next("new")
    assert refused["type"] == "error", refused
    (problem,) = refused["payload"]
    assert problem["extensions"]["code"] == "EVENTS_EXPIRED"
    assert problem["extensions"]["oldestEventId"] == kept[0]
    assert f"batch {old}: its first events are past retention" in problem["message"]
    assert [event["eventId"] for event in replayed] == kept
    assert done["type"] == "complete"

    if not services.db.is_postgres:
        return
    (dropped,) = [r for r in removed if r.table == "sync_event" and r.rows]  # and empty months
    assert dropped.partition and dropped.partition not in {
        p.name for p in await partitions(services.db)
    }
    assert dropped.archive is not None
    lines = await asyncio.to_thread(
        lambda: b"".join(archive_lines(services.storage, dropped.archive or ""))
    )
    assert [str(json.loads(line)["id"]) for line in lines.splitlines()] == gone
    env = env_without_config(DATABASE_URL=services.settings.database_url, DATA_DIR=str(tmp_path))
    listed = cli("history", "archives", cwd=tmp_path, env=env).split()
    assert dropped.archive in listed
    read = cli("history", "read", dropped.archive, cwd=tmp_path, env=env)
    assert [str(json.loads(line)["id"]) for line in read.splitlines()] == gone
    with gzip.open(tmp_path / "attachments" / dropped.archive) as packed:
        assert packed.read() == lines  # a plain gzip file: any tool reads it


async def test_settled_webhook_deliveries_past_retention_are_deleted_with_their_attempts(
    company: NewCompany, services: Services
) -> None:
    old = utcnow() - timedelta(days=91)
    endpoint = WebhookEndpoint(
        company_id=company.company.id,
        url="https://example.com/hook",
        event_types=["*"],
        sealed_secret="x",
    )
    deliveries = [
        WebhookDelivery(
            endpoint_id=endpoint.id,
            company_id=company.company.id,
            message_id=f"msg_{status}_{age}",
            event_type="sync.batch",
            payload={},
            status=status,
            created_at=when,
        )
        for status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED, DeliveryStatus.PENDING)
        for age, when in (("old", old), ("new", utcnow()))
    ]
    async with services.db.transaction() as session:
        session.add(endpoint)
        await session.flush()
        session.add_all(deliveries)
        await session.flush()
        session.add_all(
            WebhookAttempt(delivery_id=d.id, number=1, attempted_at=d.created_at, duration_ms=1)
            for d in deliveries
        )
    settings = services.settings.model_copy(update={"webhook_delivery_retention_days": 90})
    _, removed = await sweep(services.db, services.storage, settings, utcnow())
    assert [(r.table, r.rows) for r in removed if r.table == "webhook_delivery"] == [
        ("webhook_delivery", 2)
    ]
    async with services.db.sessions() as session:
        left = set(await session.scalars(select(col(WebhookDelivery.message_id))))
        attempts = await session.scalar(text("SELECT count(*) FROM webhook_attempt"))
    assert left == {"msg_SUCCEEDED_new", "msg_FAILED_new", "msg_PENDING_old", "msg_PENDING_new"}
    assert attempts == 4


async def test_stats_count_outcomes_across_months(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    batch_id = await new_batch(api, company, [expense(), expense()])
    await run_jobs()
    earlier = utcnow() - timedelta(days=35)  # last month's partition, on PostgreSQL
    await ensure_partitions(services.db, earlier)
    (moved, _) = [e for e in await batch_events(services.db, batch_id=batch_id)
                  if e.item_id and e.to_status == "SUCCESS"]  # fmt: skip
    async with services.db.transaction() as session:
        await session.execute(
            update(SyncEvent).where(col(SyncEvent.id) == moved.id).values(occurred_at=earlier)
        )
    since = (utcnow() - timedelta(days=40)).isoformat()
    answer = await api.gql(STATS, {"c": company.company.id, "since": since, "bucket": "HOUR"})
    busy = [b for b in data(answer)["syncStats"]["buckets"] if b["synced"]]
    assert [b["synced"] for b in busy] == [1, 1]
    assert (
        datetime.fromisoformat(busy[0]["start"])
        <= earlier
        < datetime.fromisoformat(busy[1]["start"])
    )


async def test_a_company_whose_whole_log_is_past_retention_resumes_from_its_last_event(
    api: Api, company: NewCompany, services: Services, live_server: str, run_jobs: RunJobs
) -> None:
    old = await new_batch(api, company, [expense()])
    await run_jobs()
    await _backdate(services, old)
    last = str((await batch_events(services.db, batch_id=old))[-1].id)
    await sweep(services.db, services.storage, services.settings, utcnow())
    company_query = "{ company { lastEventId } }"
    assert data(await api.gql(company_query))["company"]["lastEventId"] == last  # removed, yet
    new = await new_batch(api, company, [expense()])
    cid = company.company.id
    async with GraphQLWebSocket.connect(live_server, company.api_key) as ws:
        await ws.subscribe("1", COMPANY_EVENTS, {"companyId": cid, "after": last})
        await run_jobs()
        events = await ws.events("1", count=len(await batch_events(services.db, batch_id=new)))
    assert {event["batchId"] for event in events} == {new}  # none missed since
