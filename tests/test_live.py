"""Live subscriptions over real WebSockets: exact, ordered, resumable, and cleaned up."""

import asyncio
from typing import Any

from sqlalchemy import text

from infra.bus import Bus
from infra.services import Services
from models.batch import create_batch
from models.company import NewCompany
from models.enums import RecordType
from models.tables import SyncEvent
from tests.conftest import Api, RunJobs
from tests.helpers import RETRY, batch_events, data, expense, expense_record, new_batch
from tests.live import BATCH_EVENTS, COMPANY_EVENTS, LEGACY_WS, GraphQLWebSocket


def _ids(events: list[dict[str, Any]] | list[SyncEvent]) -> list[str]:
    return [e["eventId"] if isinstance(e, dict) else str(e.id) for e in events]


async def test_a_batch_stream_replays_then_follows_the_job_to_completion(
    api: Api, company: NewCompany, services: Services, live_server: str, run_jobs: RunJobs
) -> None:
    batch_id = await new_batch(api, company, [expense(), expense(accountId="999")])
    async with GraphQLWebSocket.connect(live_server, company.api_key) as client:
        await client.subscribe("1", BATCH_EVENTS, {"batchId": batch_id})
        replayed = await client.events("1", count=3)  # the batch and its two items, created
        await run_jobs()
        live = await client.events("1")  # until the stream completes

    logged = await batch_events(services.db, batch_id=batch_id)
    assert _ids(replayed + live) == _ids(logged)
    assert [e["toStatus"] for e in replayed] == ["PENDING"] * 3
    assert live[-1] == {
        "eventId": str(logged[-1].id),
        "batchId": batch_id,
        "itemId": None,
        "fromStatus": "PROCESSING",
        "toStatus": "COMPLETED",
        "error": None,
    }
    failed = next(e for e in live if e["toStatus"] == "FAILED")
    assert failed["error"] == {"code": "INVALID_ACCOUNT_ID", "retryable": False}


async def test_company_streams_are_exact_under_concurrent_batches_of_several_companies(
    api: Api,
    company: NewCompany,
    other_company: NewCompany,
    services: Services,
    live_server: str,
    run_jobs: RunJobs,
) -> None:
    async with (
        GraphQLWebSocket.connect(live_server, company.api_key) as modern,
        GraphQLWebSocket.connect(live_server, company.api_key, LEGACY_WS) as legacy,
        GraphQLWebSocket.connect(live_server, other_company.api_key) as other,
    ):
        mine = {"companyId": company.company.id, "after": "0"}  # all: whenever they join
        await modern.subscribe("a", COMPANY_EVENTS, mine)
        await legacy.subscribe("a", COMPANY_EVENTS, mine)
        await other.subscribe(
            "b", COMPANY_EVENTS, {"companyId": other_company.company.id, "after": "0"}
        )
        await asyncio.gather(
            *(new_batch(api, company, [expense(reference=f"a{i}")] * 15) for i in range(3)),
            *(new_batch(api, other_company, [expense(reference=f"b{i}")] * 10) for i in range(2)),
        )
        await asyncio.gather(run_jobs(), run_jobs())
        expected = await _company_log(services, company)
        assert _ids(await modern.events("a", count=len(expected))) == _ids(expected)
        assert _ids(await legacy.events("a", count=len(expected))) == _ids(expected)
        assert _ids(
            await other.events("b", count=len(await _company_log(services, other_company)))
        ) == _ids(await _company_log(services, other_company))
    assert len(expected) == 3 + 45 * 3 + 3 * 2  # created; three moves per item; batch moves


async def _company_log(services: Services, company: NewCompany) -> list[SyncEvent]:
    async with services.db.sessions() as session:
        rows = await session.execute(
            text("SELECT id FROM sync_event WHERE company_id = :c ORDER BY id"),
            {"c": company.company.id},
        )
        return [SyncEvent(id=row.id, company_id="", batch_id="", to_status="") for row in rows]


async def test_resuming_after_any_event_of_a_finished_batch_replays_exactly_the_rest(
    api: Api, company: NewCompany, services: Services, live_server: str, run_jobs: RunJobs
) -> None:
    batch_id = await new_batch(api, company, [expense(), expense(accountId="999")])
    await run_jobs()
    logged = _ids(await batch_events(services.db, batch_id=batch_id))
    async with GraphQLWebSocket.connect(live_server, company.api_key) as client:
        for index, after in enumerate(["0", *logged]):
            await client.subscribe(f"r{index}", BATCH_EVENTS, {"batchId": batch_id, "after": after})
        for index, after in enumerate(["0", *logged]):
            rest = [event_id for event_id in logged if int(event_id) > int(after)]
            assert _ids(await client.events(f"r{index}")) == rest, after


async def test_a_retry_reopens_a_finished_batch_for_new_subscribers(
    api: Api, company: NewCompany, services: Services, live_server: str, run_jobs: RunJobs
) -> None:
    batch_id = await new_batch(api, company, [expense(accountId="999")])
    await run_jobs()
    last = _ids(await batch_events(services.db, batch_id=batch_id))[-1]
    data(await api.gql(RETRY, {"batchId": batch_id}))
    async with GraphQLWebSocket.connect(live_server, company.api_key) as client:
        await client.subscribe("1", BATCH_EVENTS, {"batchId": batch_id, "after": last})
        reopened = await client.events("1", count=2)
        assert [(e["itemId"] is None, e["toStatus"]) for e in reopened] == [
            (True, "PROCESSING"),
            (False, "PENDING"),
        ]
        await run_jobs()
        rest = await client.events("1")
    assert rest[-1]["toStatus"] == "COMPLETED"


class _SilentBus(Bus):
    """Commits events but loses their pub/sub messages, as a dropped message would be."""

    async def publish(self, channel: str, message: str) -> None:
        return None


async def test_events_whose_message_was_lost_still_arrive_in_order(
    api: Api, company: NewCompany, services: Services, live_server: str
) -> None:
    async with GraphQLWebSocket.connect(live_server, company.api_key) as client:
        await client.subscribe("1", COMPANY_EVENTS, {"companyId": company.company.id, "after": "0"})
        await create_batch(
            services.db,
            bus=_SilentBus(services.redis),
            company_id=company.company.id,
            record_type=RecordType.EXPENSE,
            records=[expense_record()],
        )
        heard_quietly = await client.events("1", count=2, seconds=2)  # the log check finds them
        await new_batch(api, company, [expense()])  # published normally, after the lost ones
        heard_loudly = await client.events("1", count=2, seconds=2)
    logged = await _company_log(services, company)
    assert _ids(heard_quietly + heard_loudly) == _ids(logged)


async def test_a_company_stream_without_after_starts_from_now(
    api: Api, company: NewCompany, live_server: str, run_jobs: RunJobs
) -> None:
    history = await new_batch(api, company, [expense()])
    await run_jobs()
    async with GraphQLWebSocket.connect(live_server, company.api_key) as client:
        await client.subscribe("1", COMPANY_EVENTS, {"companyId": company.company.id})
        for attempt in range(50):  # until the subscription has joined: no history before it
            await new_batch(api, company, [expense(reference=f"new{attempt}")])
            try:
                first = await client.next("1", seconds=0.2)
                break
            except TimeoutError:
                continue
    assert first["type"] == "next"
    assert first["payload"]["data"]["companySyncEvents"]["batchId"] != history
