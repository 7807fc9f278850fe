"""Attachments end to end: a GraphQL multipart upload, checked by content, stored once by
SHA-256, pushed to the sandbox after its item, streamed as events, downloaded by a signed
link; and the store itself on a local directory and on an S3-compatible server."""

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto.server import ThreadedMotoServer
from pydantic import SecretStr
from sqlalchemy import func, select

from infra.services import Services
from infra.settings import Settings
from infra.storage import Storage, open_storage
from ledgers import books as sandbox
from models.company import NewCompany
from models.sandbox import SandboxAttachment
from tests.conftest import Api, RunJobs
from tests.helpers import (
    CREATE_EXPENSES,
    ELF,
    PDF,
    PNG,
    batch_events,
    create_expenses,
    data,
    expense,
    multipart,
    upload,
)
from tests.processes import cli, env_without_config, free_port

ITEM = """
query($b: ID!) { syncBatch(id: $b) { status items { edges { node { id status
  attachments { id fileName contentType size sha256 status externalId downloadUrl
    error { code message } } } } } } }"""
RETRY = "mutation($b: ID!) { retryFailedItems(batchId: $b) { items { id } } }"
BATCHES = "query($c: ID!) { syncBatches(companyId: $c) { totalCount } }"


async def _expense_item(api: Api, company: NewCompany, **overrides: Any) -> tuple[str, str]:
    created = await create_expenses(api, company, [expense(**overrides)])
    return created["syncBatchId"], created["expenses"][0]["id"]


async def _attachments(api: Api, batch_id: str) -> tuple[str, list[dict[str, Any]]]:
    batch = data(await api.gql(ITEM, {"b": batch_id}))["syncBatch"]
    (item,) = [edge["node"] for edge in batch["items"]["edges"]]
    return batch["status"], item["attachments"]


async def test_files_are_attached_once_pushed_after_their_item_and_downloaded(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs, tmp_path: Path
) -> None:
    batch_id, item_id = await _expense_item(api, company)
    sent = [("receipt.pdf", PDF, "application/pdf"), ("photo.png", PNG, "image/png")]
    attached = data(await upload(api, item_id, [*sent, ("again.pdf", PDF, "text/plain")]))
    first, second, again = attached["attachFiles"]
    assert again == first  # the same file twice is one attachment
    assert (first["contentType"], first["size"]) == ("application/pdf", len(PDF))
    assert first["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert (first["status"], second["contentType"]) == ("PENDING", "image/png")

    await run_jobs()
    status, files = await _attachments(api, batch_id)
    assert status == "COMPLETED"
    assert [(f["fileName"], f["status"]) for f in files] == [
        ("receipt.pdf", "SUCCESS"),
        ("photo.png", "SUCCESS"),
    ]
    assert all(f["externalId"] for f in files)
    async with services.db.sessions() as session:
        held = await session.scalar(select(func.count()).select_from(SandboxAttachment))
    assert held == 2

    moves = [
        (e.attachment_id, e.from_status, e.to_status)
        for e in await batch_events(services.db, batch_id=batch_id)
        if e.attachment_id == first["id"]
    ]
    assert moves == [
        (first["id"], None, "PENDING"),
        (first["id"], "PENDING", "PROCESSING"),
        (first["id"], "PROCESSING", "SUCCESS"),
    ]

    env = env_without_config(DATABASE_URL=services.settings.database_url)
    shown = cli("sandbox", "records", "--company-id", company.company.id, cwd=tmp_path, env=env)
    (record,) = [json.loads(line) for line in shown.splitlines()]
    kept = {(file["fileName"], file["sha256"]) for file in record["attachments"]}
    assert kept == {(f["fileName"], f["sha256"]) for f in files}  # pushed at once: any order

    url = httpx.URL(files[0]["downloadUrl"])
    downloaded = await api.http.get(url.raw_path.decode())
    assert downloaded.status_code == 200
    assert downloaded.content == PDF and downloaded.headers["content-type"] == "application/pdf"
    forged = await api.http.get(f"/attachments/{files[1]['id']}?{url.query.decode()}")
    assert forged.status_code == 403  # the token names one file


async def test_records_carry_their_files_when_created(
    api: Api, company: NewCompany, run_jobs: RunJobs
) -> None:
    records = [  # each file's place, null until the server puts the file there
        expense(reference="with", attachments=[None]),
        expense(reference="without"),
        expense(reference="two", attachments=[None, None]),
    ]
    variables = {"companyId": company.company.id, "expenses": records}
    files = {
        "variables.expenses.0.attachments.0": ("receipt.pdf", PDF, "application/pdf"),
        "variables.expenses.2.attachments.0": ("a.png", PNG, "image/png"),
        "variables.expenses.2.attachments.1": ("b.pdf", PDF, "application/pdf"),
    }
    created = data(await multipart(api, CREATE_EXPENSES, variables, files))["createExpenses"]
    await run_jobs()
    batch = data(await api.gql(ITEM, {"b": created["syncBatchId"]}))["syncBatch"]
    shown = {
        node["id"]: [(f["fileName"], f["status"]) for f in node["attachments"]]
        for node in (edge["node"] for edge in batch["items"]["edges"])
    }
    with_, without, two = (e["id"] for e in created["expenses"])
    assert shown[with_] == [("receipt.pdf", "SUCCESS")] and shown[without] == []
    assert sorted(shown[two]) == [("a.png", "SUCCESS"), ("b.pdf", "SUCCESS")]
    assert batch["status"] == "COMPLETED"

    variables["expenses"] = [records[1], {**records[1], "attachments": [None]}]
    files = {"variables.expenses.1.attachments.0": ("receipt.pdf", ELF, "application/pdf")}
    (refused,) = (await multipart(api, CREATE_EXPENSES, variables, files))["errors"]
    assert refused["extensions"]["field"] == "expenses.1.attachments.0"
    listed = data(await api.gql(BATCHES, {"c": company.company.id}))["syncBatches"]
    assert listed["totalCount"] == 1  # the refused request created nothing


async def test_a_refused_file_attaches_nothing(api: Api, company: NewCompany) -> None:
    batch_id, item_id = await _expense_item(api, company)
    renamed = await upload(
        api, item_id, [("ok.pdf", PDF, "application/pdf"), ("receipt.pdf", ELF, "application/pdf")]
    )
    (error,) = renamed["errors"]
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "files.1",
        "syncCode": "UNSUPPORTED_FILE_TYPE",
    }
    assert error["message"].startswith("receipt.pdf (files.1) is not a PDF, PNG,")  # by its name
    over = PDF + b"0" * (10 * 1024 * 1024)  # over the sandbox's limit, as Xero's: 10 MiB
    too_large = await upload(api, item_id, [("receipt.pdf", over, "application/pdf")])
    (error,) = too_large["errors"]
    assert (error["extensions"]["field"], error["extensions"]["syncCode"]) == (
        "files.0",
        "ATTACHMENT_TOO_LARGE",
    )
    assert error["message"].startswith(f"receipt.pdf (files.0) is {len(over)} bytes;")
    assert (await _attachments(api, batch_id))[1] == []


async def test_a_file_on_a_failed_item_fails_with_it_and_is_retried_with_it(
    api: Api, company: NewCompany, run_jobs: RunJobs
) -> None:
    batch_id, item_id = await _expense_item(api, company, accountId="999")
    await run_jobs()
    data(await upload(api, item_id, [("receipt.pdf", PDF, "application/pdf")]))
    status, _ = await _attachments(api, batch_id)
    assert status == "PROCESSING"  # attaching reopens the finished batch
    await run_jobs()
    status, (file,) = await _attachments(api, batch_id)
    assert (status, file["status"], file["error"]["code"]) == (
        "COMPLETED",
        "FAILED",
        "VALIDATION_ERROR",
    )
    data(await api.gql(RETRY, {"b": batch_id}))
    _, (file,) = await _attachments(api, batch_id)
    assert file["status"] == "PENDING"


async def test_a_file_the_ledger_refused_goes_on_when_retried(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    batch_id, item_id = await _expense_item(api, company)
    await run_jobs()
    async with services.db.transaction() as session:  # the ledger starts failing every call
        await sandbox.configure(session, company_id=company.company.id, transient_error_rate=1.0)
    data(await upload(api, item_id, [("receipt.pdf", PDF, "application/pdf")]))
    await run_jobs()
    status, (file,) = await _attachments(api, batch_id)
    assert (status, file["status"], file["error"]["code"]) == (
        "COMPLETED",
        "FAILED",
        "PROVIDER_ERROR",
    )
    async with services.db.transaction() as session:  # and recovers
        await sandbox.configure(session, company_id=company.company.id, transient_error_rate=0.0)
    retried = data(await api.gql(RETRY, {"b": batch_id}))["retryFailedItems"]["items"]
    assert [item["id"] for item in retried] == [item_id]  # the item, for its file
    await run_jobs()
    status, (file,) = await _attachments(api, batch_id)
    assert (status, file["status"], file["error"]) == ("COMPLETED", "SUCCESS", None)


async def test_another_company_can_neither_attach_nor_list(
    api: Api, company: NewCompany, other_company: NewCompany
) -> None:
    batch_id, item_id = await _expense_item(api, company)
    refused = await upload(
        api, item_id, [("receipt.pdf", PDF, "application/pdf")], key=other_company.api_key
    )
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["NOT_FOUND"]
    assert (await _attachments(api, batch_id))[1] == []


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto's), standing for the cloud."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _s3(settings: Settings, endpoint: str) -> Storage:
    bucket = f"attachments-{free_port()}"
    httpx.put(f"{endpoint}/{bucket}").raise_for_status()  # moto takes any credentials
    return open_storage(
        settings.model_copy(
            update={
                "storage_url": f"s3://{bucket}/sync2books",
                "storage_endpoint": endpoint,
                "storage_access_key_id": "test",
                "storage_secret_access_key": SecretStr("test"),
            }
        )
    )


@pytest.mark.parametrize("where", ["directory", "s3"])
async def test_the_store_keeps_a_file_once_and_streams_it_back(
    where: str, settings: Settings, tmp_path: Any, s3_endpoint: str
) -> None:
    storage = (
        open_storage(settings.model_copy(update={"data_dir": tmp_path}))
        if where == "directory"
        else _s3(settings, s3_endpoint)
    )
    body = PDF * 3000  # 15 MB: several chunks, and a multipart upload to S3
    key = storage.key("cmp_1", hashlib.sha256(body).hexdigest())
    assert not await storage.exists(key)
    await storage.put(key, io.BytesIO(body))
    await storage.put(key, io.BytesIO(body))  # the same file: already there
    assert await storage.exists(key)
    chunks = [chunk async for chunk in storage.chunks(key)]
    assert b"".join(chunks) == body and len(chunks) > 1
