"""Records that change: the same records created, then updated, then voided, one company at
a ledger's pace (the sandbox set to Xero's limits by default). Each phase is one request and
one batch; its seconds run from the request to the batch's terminal event, heard on the
company's subscription. At the end every record's document is read back from the sandbox
(`sandbox records`) and checked against its last operation."""

import json
import time
from dataclasses import dataclass

import httpx

from bench.pipeline import ATTEMPTS, expense, watch
from bench.service import Company, Service

CREATE = """mutation($c: ID!, $e: [ExpenseInput!]!) {
  createExpenses(companyId: $c, expenses: $e) { syncBatchId expenses { id } }
}"""
UPDATE = """mutation($c: ID!, $e: [ExpenseUpdateInput!]!) {
  updateExpenses(companyId: $c, expenses: $e) { syncBatchId }
}"""
VOID = """mutation($c: ID!, $r: [ID!]!) {
  voidRecords(companyId: $c, recordIds: $r) { syncBatchId }
}"""


@dataclass
class Phase:
    name: str
    records: int
    seconds: float
    rate_limited: int  # calls the ledger answered 429

    @property
    def per_second(self) -> float:
        return self.records / self.seconds


@dataclass
class Changes:
    phases: list[Phase]
    documents: int  # in the sandbox at the end
    as_last_operation: int  # of them, voided and holding the update's content


async def measure(
    service: Service, *, records: int, per_minute: int, documents_per_call: int
) -> Changes:
    (company,) = await service.create_companies("changes", 1)
    await service.cli(
        "sandbox", "configure", "--company-id", company.id,
        "--rate-limit-per-minute", str(per_minute), "--max-concurrent", "5",
        "--documents-per-call", str(documents_per_call),
    )  # fmt: skip
    finished, subscriber = await watch(service, company)
    phases = []
    async with httpx.AsyncClient(base_url=f"http://{service.address}", timeout=120) as http:

        async def phase(name: str, query: str, variables: dict[str, object]) -> dict[str, object]:
            started = time.time()
            made = await _post(http, company, query, {"c": company.id, **variables})
            (payload,) = made.values()
            batch_id = str(payload["syncBatchId"])
            ended = await finished.wait_for({batch_id})
            refused = await _refused(http, company, batch_id)
            phases.append(Phase(name, records, ended - started, refused))
            return dict(payload)

        created = await phase("create", CREATE, {"e": [expense(n) for n in range(records)]})
        record_ids = [e["id"] for e in created["expenses"]]  # type: ignore[attr-defined]
        updates = [
            {**expense(n), "amount": f"{2000 + n}.75", "recordId": record_id}
            for n, record_id in enumerate(record_ids)
        ]
        await phase("update", UPDATE, {"e": updates})
        await phase("void", VOID, {"r": record_ids})
    if subscriber.transport is not None:
        subscriber.transport.close()
    lines = await service.cli("sandbox", "records", "--company-id", company.id)
    documents = [json.loads(line) for line in lines.splitlines()]
    expected = {f"{2000 + n}.75" for n in range(records)}
    last = sum(d["status"] == "VOIDED" and d["amount"] in expected for d in documents)
    return Changes(phases, len(documents), last)


async def _post(
    http: httpx.AsyncClient, company: Company, query: str, variables: dict[str, object]
) -> dict[str, dict[str, object]]:
    response = await http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers=company.headers,
    )
    body = response.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, dict[str, object]] = body["data"]
    return data


async def _refused(http: httpx.AsyncClient, company: Company, batch_id: str) -> int:
    """The pushes of the batch's items the ledger answered 429."""
    refused, after = 0, None
    while True:
        data = await _post(http, company, ATTEMPTS, {"b": batch_id, "after": after})
        page = data["syncBatch"]["items"]
        assert isinstance(page, dict)
        for edge in page["edges"]:
            for attempt in edge["node"]["pushAttempts"]:
                error = attempt["error"]
                refused += error is not None and error["code"] == "RATE_LIMIT_EXCEEDED"
        if not page["pageInfo"]["hasNextPage"]:
            return refused
        after = page["pageInfo"]["endCursor"]
