"""Alerts: raised on a high failure rate or an expired connection, queried, streamed, sent by
webhook, and cleared when the rate recovers or the company reconnects."""

import asyncio
from urllib.parse import urlsplit

from prometheus_client import REGISTRY
from standardwebhooks import Webhook

from infra.services import Services
from ledgers import books as sandbox
from models.company import NewCompany
from tests.conftest import Api, RunJobs
from tests.helpers import CREATE_EXPENSES, RETRY, data, error, expense
from tests.live import GraphQLWebSocket
from tests.receiver import Receiver, create_endpoint, pump, receiving

ALERTS = """
query($c: ID!, $status: AlertStatus) {
  alerts(companyId: $c, status: $status) {
    id kind status failureRate failedCount totalCount message clearedAt
  }
}
"""
COMPANY_ALERTS = "subscription($c: ID!) { companyAlerts(companyId: $c) { id kind status } }"
CREATE_ACCOUNT = """
mutation($c: ID!) { createAccount(companyId: $c, input: {code: "999", name: "Misc", type: EXPENSE})
{ code } }
"""


async def _subscribed(listening: float = 1) -> None:
    """Until the subscriptions listen (the live server runs in this process): only then can
    they hear what is published."""
    for _ in range(250):
        if REGISTRY.get_sample_value("sync2books_alert_subscriptions") == listening:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the subscription never listened")


async def test_a_high_failure_rate_raises_an_alert_that_clears_when_it_recovers(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs, live_server: str
) -> None:
    services.settings.alert_min_items = 4
    services.settings.alert_failure_rate = 0.5
    receiver = Receiver()
    cid = company.company.id
    async with (
        receiving(receiver) as url,
        GraphQLWebSocket.connect(live_server, company.api_key) as client,
    ):
        _, secret = await create_endpoint(api, company, url, "ALERT_RAISED", "ALERT_CLEARED")
        await client.subscribe("a", COMPANY_ALERTS, {"c": cid})
        await _subscribed()

        records = [expense(), *(expense(accountId="999") for _ in range(3))]
        created = data(await api.gql(CREATE_EXPENSES, {"companyId": cid, "expenses": records}))
        await run_jobs()
        (raised,) = data(await api.gql(ALERTS, {"c": cid, "status": "ACTIVE"}))["alerts"]
        assert raised["kind"] == "FAILURE_RATE" and raised["failureRate"] == 0.75
        assert (raised["failedCount"], raised["totalCount"]) == (3, 4)
        assert (await client.events("a", count=1))[0] == {
            "id": raised["id"],
            "kind": "FAILURE_RATE",
            "status": "ACTIVE",
        }

        await api.gql(CREATE_ACCOUNT, {"c": cid})
        batch_id = created["createExpenses"]["syncBatchId"]
        data(await api.gql(RETRY, {"batchId": batch_id}))
        await run_jobs()  # 3 of 7 failed now: below the threshold
        (cleared,) = data(await api.gql(ALERTS, {"c": cid}))["alerts"]
        assert cleared["status"] == "CLEARED" and cleared["clearedAt"]
        assert (await client.events("a", count=1))[0]["status"] == "CLEARED"
        await pump(services)

    sent = [Webhook(secret).verify(body, headers) for headers, body in receiver.received]
    assert [(p["type"], p["data"]["alertId"]) for p in sent] == [
        ("alert.raised", raised["id"]),
        ("alert.cleared", raised["id"]),
    ]


async def test_an_expired_connection_raises_an_alert_until_reconnected(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    receiver = Receiver()
    cid = company.company.id
    async with receiving(receiver) as url:
        await create_endpoint(api, company, url, "CONNECTION_EXPIRED")
        async with services.db.transaction() as session:
            await sandbox.expire_access_token(session, company_id=cid)
            await sandbox.revoke(session, company_id=cid)
        for _ in range(2):  # a second batch's failure raises no second alert
            await api.gql(CREATE_EXPENSES, {"companyId": cid, "expenses": [expense()]})
            await run_jobs()
        (alert,) = data(await api.gql(ALERTS, {"c": cid}))["alerts"]
        assert alert["kind"] == "CONNECTION_EXPIRED" and alert["status"] == "ACTIVE"
        assert "reconnect" in alert["message"]
        await pump(services)

        reconnect = "mutation($c: ID!) { reconnect(companyId: $c) { status } }"
        data(await api.gql(reconnect, {"c": cid}))
        (alert,) = data(await api.gql(ALERTS, {"c": cid}))["alerts"]
        assert alert["status"] == "CLEARED"
    ((_, body),) = receiver.received
    assert b'"type":"connection.expired"' in body


async def test_alerts_are_listed_at_most_a_page_at_a_time(api: Api, company: NewCompany) -> None:
    query = "query($c: ID!, $n: Int!) { alerts(companyId: $c, first: $n) { id } }"
    refused = await api.gql(query, {"c": company.company.id, "n": 101})
    assert error(refused)["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
    assert data(await api.gql(query, {"c": company.company.id, "n": 100}))["alerts"] == []


async def _listening(services: Services) -> int:
    """Redis connections listening on a pattern: the live hubs' (one per app here), counted
    on this test worker's database only (the other pytest-xdist worker shares the server)."""
    db = int(urlsplit(services.redis_url).path.lstrip("/") or 0)
    clients = await services.redis.client_list()
    return sum(1 for client in clients if int(client["psub"]) and int(client["db"]) == db)


async def _connection_alert(
    api: Api, services: Services, company: NewCompany, run_jobs: RunJobs
) -> str:
    """Expire the company's connection and sync: the CONNECTION_EXPIRED alert it raises."""
    cid = company.company.id
    async with services.db.transaction() as session:
        await sandbox.expire_access_token(session, company_id=cid)
        await sandbox.revoke(session, company_id=cid)
    await api.gql(CREATE_EXPENSES, {"companyId": cid, "expenses": [expense()]})
    await run_jobs()
    alerts = data(await api.gql(ALERTS, {"c": cid, "status": "ACTIVE"}))["alerts"]
    alert_id: str = alerts[0]["id"]
    return alert_id


async def test_alert_subscriptions_share_one_connection_and_resume_after_an_alert(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs, live_server: str
) -> None:
    cid = company.company.id
    first = await _connection_alert(api, services, company, run_jobs)
    data(await api.gql("mutation($c: ID!) { reconnect(companyId: $c) { status } }", {"c": cid}))
    second = await _connection_alert(api, services, company, run_jobs)  # after the first cleared
    after = """subscription($c: ID!, $a: ID) {
      companyAlerts(companyId: $c, afterAlertId: $a) { id status } }"""
    connections = await _listening(services)
    async with GraphQLWebSocket.connect(live_server, company.api_key) as client:
        for n in range(5):
            await client.subscribe(f"s{n}", after, {"c": cid, "a": first})
        await _subscribed(5)
        for n in range(5):  # what changed since the first alert's clear: the second, raised
            assert await client.events(f"s{n}", count=1) == [{"id": second, "status": "ACTIVE"}]
        assert await _listening(services) == connections  # the hubs', however many subscribe
        data(await api.gql("mutation($c: ID!) { reconnect(companyId: $c) { status } }", {"c": cid}))
        for n in range(5):  # then live
            assert await client.events(f"s{n}", count=1) == [{"id": second, "status": "CLEARED"}]
        await client.subscribe("bad", after, {"c": cid, "a": "alr_unknown"})
        refused = await client.next("bad")
    assert refused["type"] == "error"
    assert refused["payload"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "afterAlertId",
    }
