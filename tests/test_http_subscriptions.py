"""Subscriptions over plain HTTP, for clients that cannot hold a WebSocket: graphql-sse
(`Accept: text/event-stream`) and Apollo's multipart subscriptions (`Accept:
multipart/mixed;subscriptionSpec=1.0`), admitted and resumed as over WebSocket."""

import asyncio
import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import httpx

from infra.services import Services
from models.company import NewCompany
from tests.conftest import Api, RunJobs
from tests.helpers import batch_events, expense, new_batch
from tests.live import BATCH_EVENTS, COMPANY_EVENTS
from tests.node import ROOT, node, npm_project

SSE = "text/event-stream"
MULTIPART = 'multipart/mixed;subscriptionSpec="1.0", application/json'


async def http_stream(
    client: httpx.AsyncClient, accept: str, query: str, variables: dict[str, Any]
) -> AsyncGenerator[dict[str, Any]]:
    """Each result the server streams, as a client of that protocol reads it; ends when the
    server completes the stream."""
    body = {"query": query, "variables": variables}
    async with client.stream("POST", "/graphql", json=body, headers={"Accept": accept}) as answer:
        assert answer.status_code == 200, await answer.aread()
        if accept == SSE:
            assert answer.headers["content-type"] == SSE
            event = ""
            async for line in answer.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "next":
                    yield json.loads(line.removeprefix("data: "))
                elif event == "complete":
                    return
            return
        assert answer.headers["content-type"].startswith("multipart/mixed;boundary=graphql")
        buffered = ""
        async for chunk in answer.aiter_text():
            buffered += chunk
            *parts, buffered = buffered.split("\r\n--graphql")
            for part in parts:
                _, _, payload = part.partition("\r\n\r\n")
                message = json.loads(payload) if payload.strip() else {}
                if "payload" in message:  # {} is a heartbeat
                    yield message["payload"]
            if buffered.startswith("--"):
                return


async def _follow(client: httpx.AsyncClient, accept: str, batch_id: str) -> list[dict[str, Any]]:
    events = []
    async with aclosing(http_stream(client, accept, BATCH_EVENTS, {"batchId": batch_id})) as stream:
        async for result in stream:
            assert "errors" not in result, result
            events.append(result["data"]["syncBatchEvents"])
    return events


async def test_a_batch_followed_over_sse_and_multipart_replays_then_completes(
    api: Api, company: NewCompany, services: Services, live_server: str, run_jobs: RunJobs
) -> None:
    batch_id = await new_batch(api, company, [expense(), expense(accountId="999")])
    headers = {"Authorization": f"Bearer {company.api_key}"}
    async with httpx.AsyncClient(base_url=f"http://{live_server}", headers=headers) as client:
        followed = [asyncio.create_task(_follow(client, a, batch_id)) for a in (SSE, MULTIPART)]
        await asyncio.sleep(0.3)  # both replay the batch's creation, then wait for the worker
        await run_jobs()
        by_sse, by_multipart = await asyncio.wait_for(asyncio.gather(*followed), 10)
    logged = [str(e.id) for e in await batch_events(services.db, batch_id=batch_id)]
    assert [e["eventId"] for e in by_sse] == [e["eventId"] for e in by_multipart] == logged
    assert by_sse[-1]["toStatus"] == "COMPLETED"  # and then the server ended both streams


async def test_a_company_stream_over_http_resumes_after_an_event_id(
    api: Api, company: NewCompany, services: Services, live_server: str, run_jobs: RunJobs
) -> None:
    first = await new_batch(api, company, [expense(), expense()])
    await run_jobs()
    logged = [str(e.id) for e in await batch_events(services.db, batch_id=first)]
    seen = logged[2]  # a client read up to here before its connection dropped
    headers = {"Authorization": f"Bearer {company.api_key}"}
    variables = {"companyId": company.company.id, "after": seen}
    async with httpx.AsyncClient(base_url=f"http://{live_server}", headers=headers) as client:
        for accept in (SSE, MULTIPART):
            received: list[str] = []
            async with aclosing(http_stream(client, accept, COMPANY_EVENTS, variables)) as stream:
                async for result in stream:
                    received.append(result["data"]["companySyncEvents"]["eventId"])
                    if len(received) == len(logged) - 3:
                        break  # the replay: the rest of the first batch
            assert received == logged[3:], accept

        async def live_ones() -> list[str]:
            after = {"companyId": company.company.id, "after": logged[-1]}
            got: list[str] = []
            async with aclosing(http_stream(client, SSE, COMPANY_EVENTS, after)) as stream:
                async for result in stream:
                    got.append(result["data"]["companySyncEvents"]["eventId"])
                    if result["data"]["companySyncEvents"]["toStatus"] == "COMPLETED":
                        return got
            return got

        following = asyncio.create_task(live_ones())
        second = await new_batch(api, company, [expense()])
        await run_jobs()
        live = await asyncio.wait_for(following, 10)
    assert live == [str(e.id) for e in await batch_events(services.db, batch_id=second)]


async def test_http_streams_are_admitted_as_every_operation(
    company: NewCompany, other_company: NewCompany, live_server: str
) -> None:
    """No key: 401 before anything streams. Another company's id: NOT_FOUND, and the stream
    ends. The limits hold (aliases here), coded as over HTTP."""
    variables = {"companyId": company.company.id}
    body = {"query": COMPANY_EVENTS, "variables": variables}
    async with httpx.AsyncClient(base_url=f"http://{live_server}") as client:
        for accept in (SSE, MULTIPART):
            refused = await client.post("/graphql", json=body, headers={"Accept": accept})
            assert refused.status_code == 401
            assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        client.headers["Authorization"] = f"Bearer {other_company.api_key}"
        aliased = (
            "subscription { "
            + " ".join(
                f'a{n}: companySyncEvents(companyId: "{company.company.id}") {{ eventId }}'
                for n in range(21)
            )
            + " }"
        )
        for accept in (SSE, MULTIPART):
            foreign = [r async for r in http_stream(client, accept, COMPANY_EVENTS, variables)]
            assert [e["extensions"]["code"] for r in foreign for e in r["errors"]] == ["NOT_FOUND"]
            assert all(r["data"] is None for r in foreign)
            complex_ = [r async for r in http_stream(client, accept, aliased, {})]
            assert complex_[0]["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"


async def test_graphql_sse_and_apollo_client_follow_a_batch_over_http(
    api: Api, company: NewCompany, services: Services, live_server: str, run_jobs: RunJobs
) -> None:
    """The npm clients users bring: graphql-sse, and Apollo Client's HttpLink."""
    folder = npm_project(ROOT / "tests" / "js")
    batch_id = await new_batch(api, company, [expense()])
    args = [f"http://{live_server}/graphql", company.api_key, BATCH_EVENTS]
    clients = [
        asyncio.create_task(
            node(folder, "node", "subscribe-http.mjs", p, *args, json.dumps({"batchId": batch_id}))
        )
        for p in ("sse", "multipart")
    ]
    await asyncio.sleep(1.5)  # node starts, and both clients replay the batch's creation
    await run_jobs()
    outputs = await asyncio.wait_for(asyncio.gather(*clients), 60)
    logged = [str(e.id) for e in await batch_events(services.db, batch_id=batch_id)]
    for output in outputs:
        *results, end = output.strip().splitlines()
        assert end == "complete"
        assert [json.loads(r)["data"]["syncBatchEvents"]["eventId"] for r in results] == logged
