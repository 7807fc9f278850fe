"""Trusted documents: a manifest's documents by hash, and `TRUSTED_DOCUMENTS=only` refusing
every other document over every transport, while the monitor and introspection still run."""

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from api.app import create_app
from api.trusted import PAGES, TrustedDocuments
from infra.services import Services
from infra.settings import Settings
from models.company import NewCompany
from tests.conftest import RunJobs, runtime_of
from tests.helpers import expense, new_batch
from tests.live import GraphQLWebSocket, serving

LISTED = "query Mine { company { id name } }"
CREATE = """mutation Create($c: ID!, $e: [ExpenseInput!]!) {
  createExpenses(companyId: $c, expenses: $e) { syncBatchId } }"""
UNLISTED = "query Other { company { name lastEventId } }"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """A manifest as GraphQL Code Generator's client preset writes it."""
    path = tmp_path / "persisted-documents.json"
    path.write_text(json.dumps({f"sha256:{_hash(text)}": text for text in (LISTED, CREATE)}))
    return path


async def _served(services: Services, settings: Settings) -> AsyncIterator[str]:
    async with serving(create_app(settings, runtime=runtime_of(services))) as address:
        yield address


@pytest.fixture
async def only(services: Services, live_settings: Settings, manifest: Path) -> AsyncIterator[str]:
    trusted = {"trusted_documents": "only", "trusted_documents_manifest": manifest}
    async for address in _served(services, live_settings.model_copy(update=trusted)):
        yield address


def _client(address: str, company: NewCompany) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {company.api_key}"}
    return httpx.AsyncClient(base_url=f"http://{address}", headers=headers)


async def test_only_trusted_documents_run_by_hash_or_by_text(
    only: str, company: NewCompany
) -> None:
    async with _client(only, company) as client:
        by_id = await client.post("/graphql", json={"documentId": f"sha256:{_hash(LISTED)}"})
        apq = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": _hash(LISTED)}}}
        by_apq = await client.post("/graphql", json=apq)
        by_get = await client.get("/graphql", params={"documentId": f"sha256:{_hash(LISTED)}"})
        respaced = await client.post("/graphql", json={"query": LISTED.replace(" ", "\n  ")})
        for answer in (by_id, by_apq, by_get, respaced):
            assert answer.status_code == 200
            assert answer.json()["data"]["company"]["name"] == company.company.name

        refused = (await client.post("/graphql", json={"query": UNLISTED})).json()
        assert refused["data"] is None
        assert refused["errors"][0]["extensions"]["code"] == "DOCUMENT_NOT_TRUSTED"
        unknown = await client.post("/graphql", json={"documentId": f"sha256:{_hash(UNLISTED)}"})
        assert unknown.status_code == 400
        assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"

        schema = (await client.post("/graphql", json={"query": get_introspection_query()})).json()
        assert schema["data"]["__schema"]["queryType"]["name"] == "Query"  # GraphiQL, codegen
        pages = PAGES[0].read_text()  # the monitor's own documents
        mine = await client.post("/graphql", json={"query": pages, "operationName": "Company"})
        assert mine.json()["data"]["company"]["id"] == company.company.id


async def test_only_trusted_subscriptions_run_over_websocket_and_sse(
    only: str, company: NewCompany, api: Any, run_jobs: RunJobs
) -> None:
    pages = PAGES[0].read_text()
    async with GraphQLWebSocket.connect(only, company.api_key) as socket:
        variables = {"c": company.company.id}
        await socket.subscribe("mine", pages, variables, "Events")  # the monitor's live path
        untrusted = "subscription { companySyncEvents(companyId: $c) { eventId } }"
        await socket.subscribe(
            "other", untrusted.replace("{ companySync", "($c: ID!) { companySync", 1), variables
        )
        refused = await socket.next("other")
        assert refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "DOCUMENT_NOT_TRUSTED"
        batch_id = await new_batch(api, company, [expense()])
        await run_jobs()
        events = await socket.events("mine", count=5)
    assert {e["batchId"] for e in events} == {batch_id}
    async with _client(only, company) as client:
        sse = {"Accept": "text/event-stream"}
        body = {"query": "subscription S($c: ID!) { companySyncEvents(companyId: $c) { eventId } }",
                "variables": {"c": company.company.id}}  # fmt: skip
        answer = await client.post("/graphql", json=body, headers=sse)
        assert "DOCUMENT_NOT_TRUSTED" in answer.text and "event: complete" in answer.text


async def test_without_only_any_document_runs_and_hashes_still_resolve(
    services: Services, live_settings: Settings, manifest: Path, company: NewCompany
) -> None:
    settings = live_settings.model_copy(update={"trusted_documents_manifest": manifest})
    async for address in _served(services, settings):
        async with _client(address, company) as client:
            other = (await client.post("/graphql", json={"query": UNLISTED})).json()
            by_id = await client.post("/graphql", json={"documentId": _hash(LISTED)})
        assert other["data"]["company"]["name"] == by_id.json()["data"]["company"]["name"]


def test_a_manifest_whose_hash_is_not_its_documents_is_refused_at_start(
    settings: Settings, tmp_path: Path
) -> None:
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({f"sha256:{_hash(LISTED)}": UNLISTED}))
    with pytest.raises(ValueError, match="is not the SHA-256 of its document"):
        TrustedDocuments.load(settings.model_copy(update={"trusted_documents_manifest": forged}))
