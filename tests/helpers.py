"""GraphQL documents and record builders shared by the API tests."""

import asyncio
import io
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic.alias_generators import to_snake
from sqlmodel import col, select

from infra.db import Database
from models.company import NewCompany
from models.records import Expense
from models.tables import SyncEvent

if TYPE_CHECKING:
    from tests.conftest import Api

CREATE_EXPENSES = """
mutation Create($companyId: ID!, $expenses: [ExpenseInput!]!) {
  createExpenses(companyId: $companyId, expenses: $expenses) {
    syncBatchId
    batch { status itemCount pendingCount }
    expenses { id amount currency reference vendorName }
  }
}
"""

BUDGET = """query($c: ID!) { connection(companyId: $c) { rateLimit {
  callsPerMinute concurrent documentsPerCall remainingThisMinute dailyLimit dailyRemaining
  appCallsPerMinute appRemainingThisMinute heldBy } } }"""

BATCH = """
query Batch($id: ID!) {
  syncBatch(id: $id) {
    id status itemCount pendingCount processingCount successCount failedCount
    startedAt completedAt error { code }
    items { totalCount edges { node {
      id status attempts externalId reference error { code message hint retryable }
    } } }
  }
}
"""

RETRY = """
mutation Retry($batchId: ID!, $itemIds: [ID!]) {
  retryFailedItems(batchId: $batchId, itemIds: $itemIds) {
    batch { status pendingCount failedCount }
    items { id status }
  }
}
"""


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, *, seconds: float = 10
) -> None:
    """Until `check` holds, asked every 20 ms; fail naming `what` after `seconds`. Tests wait
    for conditions, never for time."""
    deadline = time.monotonic() + seconds
    while True:
        answer = check()
        if await answer if isinstance(answer, Awaitable) else answer:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(0.02)


def expense(**overrides: Any) -> dict[str, Any]:  # Any: GraphQL variable values
    return {
        "amount": "12.50",
        "currency": "USD",
        "date": "2026-11-02",
        "accountId": "429",
        "taxRateId": "INPUT",
        "description": "Team lunch",
        "vendorName": "Cafe Uno",
        **overrides,
    }


async def new_batch(
    api: "Api", company: NewCompany, expenses: list[dict[str, Any]], *, key: str | None = None
) -> str:
    """A batch of the company's expenses, created through the API (with `key`, another
    company's key, when a test wants its refusal); its id."""
    payload = await create_expenses(api, company, expenses, key=key)
    batch_id: str = payload["syncBatchId"]
    return batch_id


async def create_expenses(
    api: "Api", company: NewCompany, expenses: list[dict[str, Any]], *, key: str | None = None
) -> dict[str, Any]:
    """createExpenses' payload, for the company's `expenses`."""
    variables = {"companyId": company.company.id, "expenses": expenses}
    payload: dict[str, Any] = data(
        await api.gql(CREATE_EXPENSES, variables, key=key or company.api_key)
    )["createExpenses"]
    return payload


def expense_record(**overrides: Any) -> Expense:  # Any: field values
    """An expense as the models take it (snake_case fields), from `expense()`'s values."""
    fields = {to_snake(key): value for key, value in expense(**overrides).items()}
    return Expense.model_validate(fields)


def data(response: dict[str, Any]) -> dict[str, Any]:
    """The response's data, failing with its errors when there are any."""
    assert "errors" not in response, response["errors"]
    result: dict[str, Any] = response["data"]
    return result


def error(response: dict[str, Any]) -> dict[str, Any]:
    """The response's single error."""
    assert response.get("errors"), response
    assert len(response["errors"]) == 1, response["errors"]
    first: dict[str, Any] = response["errors"][0]
    return first


def metric_figures(text: str) -> dict[str, float]:
    """Prometheus text as {'name{labels}': value}."""
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


_TYPENAME = '{"query": "{ __typename }"}'
MALFORMED_BODIES = [  # each answered 400 BAD_REQUEST
    b"\xff\xfe not utf-8",
    b'{"query": "{ __typename \xff\xfe }"}',  # invalid UTF-8 inside a string
    _TYPENAME.encode("utf-16"),  # with a BOM: JSON on the wire is UTF-8
    _TYPENAME.encode("utf-16-le"),  # without one
    b'{"query": "{ __typename',  # ends mid-string
    b'{"query": "{ __typename }", "variables": {"n": ' + b"9" * 5000 + b"}}",  # over int's limit
    b'{"query": "{ __typename }", "operationName": 7}',
    b"[1, 2, 3]",
    b'"a string"',
    b"{not json",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"variables": ' + b"[" * 600 + b"]" * 600 + b"}",  # deep, yet within what json parses
    b'{"query": 42}',
    b'{"query": "{ __typename }", "variables": [1]}',
]
ODD_BODIES = [  # well-formed JSON, never a 5xx
    b'{"query": "query($b: ID!) { syncBatch(id: $b) { id } }", "variables": {"b": "\\ud800"}}',
    b'{"query": "{ syncBatch(id: 1) { id } }", "query": "{ __typename }"}',  # the last wins
]


PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n" + b"0" * 5000
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 3000
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 3000  # an executable, named receipt.pdf below
ATTACH = """
mutation($item: ID!, $files: [Upload!]!) {
  attachFiles(itemId: $item, files: $files) {
    id itemId fileName contentType size sha256 status externalId error { code }
  }
}"""


async def upload(
    api: "Api", item_id: str, files: list[tuple[str, bytes, str]], key: str | None = None
) -> dict[str, Any]:
    """attachFiles, its files sent as the GraphQL multipart request spec says."""
    variables = {"item": item_id, "files": [None] * len(files)}
    paths = {f"variables.files.{n}": file for n, file in enumerate(files)}
    return await multipart(api, ATTACH, variables, paths, key=key)


async def multipart(
    api: "Api",
    query: str,
    variables: dict[str, Any],
    files: dict[str, tuple[str, bytes, str]],
    key: str | None = None,
) -> dict[str, Any]:
    """An operation whose files (name, bytes, declared type, by the variable path each
    replaces) go as parts of a GraphQL multipart request, as apollo-upload-client sends it."""
    operations = {"query": query, "variables": variables}
    mapping = {str(n): [path] for n, path in enumerate(files)}
    parts = {
        str(n): (name, io.BytesIO(body), declared)
        for n, (name, body, declared) in enumerate(files.values())
    }
    response = await api.http.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps(mapping)},
        files=parts,
        headers={"Authorization": f"Bearer {key or api.key}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


BOUNDARY = "sync2books-test-boundary"
Part = tuple[str, str | None, bytes]  # name, file name (None: a plain field), content


def multipart_body(parts: list[Part], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body, written out byte by byte."""
    chunks = []
    for name, file_name, content in parts:
        disposition = f'form-data; name="{name}"'
        if file_name is not None:
            disposition += f'; filename="{file_name}"\r\nContent-Type: application/pdf'
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
        chunks.append(content + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def spec_parts(variables: object, mapping: object, *files: Part, query: str = ATTACH) -> list[Part]:
    """The parts of a GraphQL multipart request: `operations`, `map`, then the files."""
    operations = {"query": query, "variables": variables}
    return [
        ("operations", None, json.dumps(operations).encode()),
        ("map", None, json.dumps(mapping).encode()),
        *files,
    ]


async def batch_events(db: Database, *, batch_id: str) -> list[SyncEvent]:
    """The batch's logged transitions, in order: what a test checks its moves against."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(SyncEvent).where(col(SyncEvent.batch_id) == batch_id).order_by(col(SyncEvent.id))
        )
        return list(rows)
