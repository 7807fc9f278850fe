"""Webhooks against a real HTTP receiver on loopback: signed, retried, replayable, disabled."""

import asyncio
import json
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from infra.services import Services
from jobs.worker import build_worker, close_worker
from models.company import NewCompany
from tests.conftest import Api, RunJobs
from tests.helpers import CREATE_EXPENSES, data, error, expense
from tests.processes import free_port
from tests.receiver import CREATE_ENDPOINT, Receiver, create_endpoint, pump, receiving

DELIVERIES = """
query($endpointId: ID!, $status: WebhookDeliveryStatus) {
  webhookDeliveries(endpointId: $endpointId, status: $status) {
    totalCount
    edges { node {
      id messageId eventType status attemptCount nextAttemptAt payload
      attempts { number statusCode error durationMs }
    } }
  }
}
"""
REPLAY = "mutation($id: ID!) { replayWebhookDelivery(id: $id) { id status } }"
ENDPOINTS = "query($c: ID!) { webhookEndpoints(companyId: $c) { id enabled disabledReason } }"


async def _sync(api: Api, company: NewCompany, run_jobs: RunJobs) -> str:
    variables = {
        "companyId": company.company.id,
        "expenses": [expense(), expense(accountId="999", reference="bad-1")],
    }
    batch_id: str = data(await api.gql(CREATE_EXPENSES, variables))["createExpenses"]["syncBatchId"]
    await run_jobs()
    return batch_id


async def _deliveries(api: Api, endpoint_id: str, status: str | None = None) -> list[Any]:
    variables = {"endpointId": endpoint_id, "status": status}
    found = data(await api.gql(DELIVERIES, variables))["webhookDeliveries"]
    return [edge["node"] for edge in found["edges"]]


async def test_events_are_delivered_signed_once_each(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    receiver = Receiver()
    async with receiving(receiver) as url:
        endpoint_id, secret = await create_endpoint(api, company, url)
        batch_id = await _sync(api, company, run_jobs)
        await pump(services)
        await pump(services)  # nothing is sent twice
    assert secret.startswith("whsec_")
    payloads = [Webhook(secret).verify(body, headers) for headers, body in receiver.received]
    assert sorted(p["type"] for p in payloads) == ["batch.completed", "item.failed"]
    completed = next(p for p in payloads if p["type"] == "batch.completed")["data"]
    assert completed["batchId"] == batch_id and completed["toStatus"] == "COMPLETED"
    assert completed["batch"]["successCount"] == completed["batch"]["failedCount"] == 1
    failed = next(p for p in payloads if p["type"] == "item.failed")["data"]
    assert failed["error"]["code"] == "INVALID_ACCOUNT_ID" and failed["error"]["hint"]
    assert failed["reference"] == "bad-1" and failed["itemId"].startswith("itm_")
    assert (failed["recordId"], failed["operation"]) == (failed["itemId"], "CREATE")
    headers, body = receiver.received[0]
    with pytest.raises(WebhookVerificationError):  # another secret, or a changed body, fails
        Webhook("whsec_" + "A" * 32).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"COMPLETED", b"FAILED"), headers)
    deliveries = await _deliveries(api, endpoint_id)
    assert {d["status"] for d in deliveries} == {"SUCCEEDED"}
    assert {d["messageId"] for d in deliveries} == {h["webhook-id"] for h, _ in receiver.received}
    assert all(d["attempts"][0]["statusCode"] == 204 for d in deliveries)


async def test_a_receiver_down_for_a_while_gets_everything_once_it_is_back(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    services.settings.webhook_retry_schedule = [0, 0, 0, 0]
    port = free_port()
    endpoint_id, secret = await create_endpoint(api, company, f"http://127.0.0.1:{port}/hook")
    await _sync(api, company, run_jobs)
    await pump(services)  # nothing listens: refused
    await pump(services)
    (waiting, _) = await _deliveries(api, endpoint_id, "PENDING")
    assert waiting["attemptCount"] == 2 and waiting["attempts"][0]["statusCode"] is None
    assert waiting["attempts"][0]["error"]

    receiver = Receiver(status=503)
    async with receiving(receiver, port=port):
        await pump(services)  # up, but failing
        receiver.status = 200
        await pump(services)  # back
    assert {d["status"] for d in await _deliveries(api, endpoint_id)} == {"SUCCEEDED"}
    statuses = [a["statusCode"] for a in (await _deliveries(api, endpoint_id))[0]["attempts"]]
    assert statuses == [None, None, 503, 200]
    ids = [headers["webhook-id"] for headers, _ in receiver.received]
    assert len(ids) == 4 and len(set(ids)) == 2  # the same message id on every attempt
    for headers, body in receiver.received:
        Webhook(secret).verify(body, headers)


async def test_a_delivery_that_gave_up_is_replayed_and_a_failing_endpoint_disabled(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    services.settings.webhook_retry_schedule = [0]
    receiver = Receiver(status=500)
    async with receiving(receiver) as url:
        endpoint_id, _ = await create_endpoint(api, company, url, "BATCH_COMPLETED")
        await _sync(api, company, run_jobs)
        await pump(services)
        await pump(services)
        (gave_up,) = await _deliveries(api, endpoint_id, "FAILED")
        assert gave_up["attemptCount"] == 2 and gave_up["nextAttemptAt"] is None

        receiver.status = 200
        replayed = data(await api.gql(REPLAY, {"id": gave_up["id"]}))["replayWebhookDelivery"]
        assert replayed["status"] == "PENDING"
        await pump(services)
        (delivered,) = await _deliveries(api, endpoint_id)
        assert delivered["status"] == "SUCCEEDED" and delivered["attemptCount"] == 3

        services.settings.webhook_disable_after_seconds = 0
        receiver.status = 500
        await _sync(api, company, run_jobs)
        await pump(services)  # the failure streak starts…
        await pump(services)  # …and, at once past the limit, the endpoint is disabled
    endpoints = data(await api.gql(ENDPOINTS, {"c": company.company.id}))["webhookEndpoints"]
    assert endpoints[0]["enabled"] is False and "failed" in endpoints[0]["disabledReason"]
    refused = await api.gql(REPLAY, {"id": gave_up["id"]})
    assert error(refused)["extensions"]["code"] == "BAD_USER_INPUT"


async def test_the_worker_sends_webhooks_by_itself(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    receiver = Receiver()
    async with receiving(receiver) as url:
        await create_endpoint(api, company, url, "BATCH_COMPLETED")
        await _sync(api, company, run_jobs)
        worker = build_worker(services)
        task = asyncio.create_task(worker.async_run())
        try:
            for _ in range(100):
                if receiver.received:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await close_worker(worker)
    (only,) = receiver.received
    assert json.loads(only[1])["type"] == "batch.completed"


async def test_endpoints_check_their_input_and_owner(
    api: Api, company: NewCompany, other_company: NewCompany
) -> None:
    bad_url = await api.gql(
        CREATE_ENDPOINT,
        {
            "companyId": company.company.id,
            "input": {"url": "ftp://x", "eventTypes": ["ALERT_RAISED"]},
        },
    )
    assert error(bad_url)["extensions"]["code"] == "BAD_USER_INPUT"
    no_types = await api.gql(
        CREATE_ENDPOINT,
        {"companyId": company.company.id, "input": {"url": "https://x.test/", "eventTypes": []}},
    )
    assert error(no_types)["extensions"]["field"] == "eventTypes"
    endpoint_id, _ = await create_endpoint(api, company, "https://hooks.example.com/in")
    theirs = await api.gql(DELIVERIES, {"endpointId": endpoint_id}, key=other_company.api_key)
    assert error(theirs)["extensions"]["code"] == "NOT_FOUND"
    listed = await api.gql(ENDPOINTS, {"c": company.company.id}, key=other_company.api_key)
    assert error(listed)["extensions"]["code"] == "NOT_FOUND"


async def test_private_addresses_are_refused_unless_allowed(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    services.settings.webhook_allow_private_networks = False
    receiver = Receiver()
    async with receiving(receiver) as url:
        endpoint_id, _ = await create_endpoint(api, company, url, "BATCH_COMPLETED")
        await _sync(api, company, run_jobs)
        await pump(services)
    assert receiver.received == []
    (refused,) = await _deliveries(api, endpoint_id)
    assert "non-public address" in refused["attempts"][0]["error"]
