"""Uploads as clients send them, friendly and hostile, to a running server: one part mapped
to several paths arrives whole at each; every body that breaks the multipart request spec is
a JSON 400 naming its fault, and the connection goes on; download links are the address the
client used, followed as given."""

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.services import Services
from infra.settings import Settings
from models.company import NewCompany
from tests.conftest import Api, RunJobs, asgi_api
from tests.helpers import (
    BOUNDARY,
    CREATE_EXPENSES,
    PDF,
    Part,
    data,
    expense,
    multipart_body,
    spec_parts,
    upload,
)
from tests.live import GraphQLWebSocket
from tests.node import node, npm_project

JS = Path(__file__).parent / "js"
ATTACHMENTS = """
query($b: ID!) { syncBatch(id: $b) { status items { edges { node { id status
  attachments { size sha256 status downloadUrl } } } } } }"""


def _big_pdf(megabytes: int) -> bytes:
    """A PDF past Starlette's in-memory limit (1 MiB), so it is spooled to disk, and unlike
    any other test's file."""
    return PDF + os.urandom(megabytes * 1024 * 1024)


@pytest.fixture
async def client(live_server: str, company: NewCompany) -> AsyncIterator[httpx.AsyncClient]:
    """The company's client of the running server, on one keep-alive connection."""
    async with httpx.AsyncClient(
        base_url=f"http://{live_server}",
        headers={"Authorization": f"Bearer {company.api_key}"},
        limits=httpx.Limits(max_connections=1),
        timeout=30,
    ) as http:
        yield http


async def _post(
    client: httpx.AsyncClient, body: bytes, content_type: str | None = None
) -> httpx.Response:
    kind = content_type or f"multipart/form-data; boundary={BOUNDARY}"
    return await client.post("/graphql", content=body, headers={"Content-Type": kind})


def _local_port(response: httpx.Response) -> int:
    port: int = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


async def _item(client: httpx.AsyncClient, company: NewCompany) -> tuple[str, str]:
    """A new expense's batch and item."""
    variables = {"companyId": company.company.id, "expenses": [expense()]}
    response = await client.post(
        "/graphql", json={"query": CREATE_EXPENSES, "variables": variables}
    )
    created = data(response.json())["createExpenses"]
    return created["syncBatchId"], created["expenses"][0]["id"]


async def _items(client: httpx.AsyncClient, batch_id: str) -> list[dict[str, Any]]:
    response = await client.post(
        "/graphql", json={"query": ATTACHMENTS, "variables": {"b": batch_id}}
    )
    batch = data(response.json())["syncBatch"]
    return [edge["node"] for edge in batch["items"]["edges"]]


async def _downloaded(url: str) -> bytes:
    """The link followed as given, by a client that knows nothing else of the server."""
    async with httpx.AsyncClient(timeout=30) as stranger:
        response = await stranger.get(url)
    assert response.status_code == 200, (url, response.text)
    assert response.headers["content-length"] == str(len(response.content))
    return response.content


async def test_a_part_mapped_to_several_paths_is_read_once_and_whole_at_each(
    client: httpx.AsyncClient, company: NewCompany, run_jobs: RunJobs
) -> None:
    _, item_id = await _item(client, company)
    pdf = _big_pdf(5)
    three = ["variables.files.0", "variables.files.1", "variables.files.2"]
    parts = spec_parts({"item": item_id, "files": [None] * 3}, {"0": three}, ("0", "r.pdf", pdf))
    attached = data((await _post(client, multipart_body(parts))).json())["attachFiles"]
    assert len({a["id"] for a in attached}) == 1  # the same file on one item: one attachment
    assert (attached[0]["size"], attached[0]["sha256"]) == (
        len(pdf),
        hashlib.sha256(pdf).hexdigest(),
    )

    records = [expense(attachments=[None]), expense(attachments=[None])]
    to_both = {"0": ["variables.expenses.0.attachments.0", "variables.expenses.1.attachments.0"]}
    variables = {"companyId": company.company.id, "expenses": records}
    parts = spec_parts(variables, to_both, ("0", "r.pdf", pdf), query=CREATE_EXPENSES)
    created = data((await _post(client, multipart_body(parts))).json())["createExpenses"]
    await run_jobs()
    items = await _items(client, created["syncBatchId"])
    assert [item["status"] for item in items] == ["SUCCESS", "SUCCESS"]
    for item in items:  # pushed whole: the sandbox checks each file's SHA-256
        (file,) = item["attachments"]
        assert (file["size"], file["status"]) == (len(pdf), "SUCCESS")
        assert await _downloaded(file["downloadUrl"]) == pdf


async def test_apollo_upload_clients_reused_file_arrives_whole_everywhere(
    live_server: str, company: NewCompany, run_jobs: RunJobs, tmp_path: Path
) -> None:
    folder = npm_project(JS)
    pdf = _big_pdf(3)
    (tmp_path / "receipt.pdf").write_bytes(pdf)
    async with httpx.AsyncClient(base_url=f"http://{live_server}") as http:
        http.headers["Authorization"] = f"Bearer {company.api_key}"
        _, item_id = await _item(http, company)
        args = [f"http://{live_server}/graphql", company.api_key, item_id, company.company.id]
        sent = json.loads(
            await node(folder, "node", "upload.mjs", *args, str(tmp_path / "receipt.pdf"))
        )
        digest = hashlib.sha256(pdf).hexdigest()
        assert {(a["size"], a["sha256"]) for a in sent["attached"]["attachFiles"]} == {
            (len(pdf), digest)
        }
        await run_jobs()
        items = await _items(http, sent["created"]["createExpenses"]["syncBatchId"])
    assert [
        (i["status"], [(f["sha256"], f["status"]) for f in i["attachments"]]) for i in items
    ] == [("SUCCESS", [(digest, "SUCCESS")])] * 2


MAP_FAULTS: dict[str, tuple[dict[str, Any] | None, object, str]] = {  # → the field named
    "a number for the path list": ({"files": [None]}, {"0": 1}, "map.0"),
    "an empty path list": ({"files": [None]}, {"0": []}, "map.0"),
    "a number in the path list": ({"files": [None]}, {"0": [1]}, "map.0.0"),
    "an index out of range": ({"files": [None]}, {"0": ["variables.files.5"]}, "map.0.0"),
    "a negative index": ({"files": [None]}, {"0": ["variables.files.-1"]}, "map.0.0"),
    "a non-numeric index": ({"files": [None]}, {"0": ["variables.files.x"]}, "map.0.0"),
    "a path through a string": ({"files": [None]}, {"0": ["variables.item.x"]}, "map.0.0"),
    "a path onto a value": ({"files": [None]}, {"0": ["variables.item"]}, "map.0.0"),
    "a path past the operations": ({"files": [None]}, {"0": ["variables.nope.0"]}, "map.0.0"),
    "null variables": (None, {"0": ["variables.files.0"]}, "map.0.0"),
    "a part never sent": ({"files": [None]}, {"9": ["variables.files.0"]}, "map.9"),
    "a plain field for a file": (
        {"files": [None]},
        {"operations": ["variables.files.0"]},
        "map.operations",
    ),
    "a map that is a list": ({"files": [None]}, ["variables.files.0"], "map"),
    "two parts at one path": (
        {"files": [None]},
        {"0": ["variables.files.0"], "1": ["variables.files.0"]},
        "map.1.0",
    ),
}


async def test_a_broken_map_is_a_json_400_naming_its_entry_and_the_connection_goes_on(
    client: httpx.AsyncClient, company: NewCompany
) -> None:
    _, item_id = await _item(client, company)
    for fault, (variables, mapping, field) in MAP_FAULTS.items():
        if isinstance(variables, dict):
            variables["item"] = item_id
        parts = spec_parts(variables, mapping, ("0", "a.pdf", PDF), ("1", "b.pdf", PDF))
        refused = await _post(client, multipart_body(parts))
        await _refused_cleanly(client, refused, field=field, fault=fault)


PART_FAULTS: dict[str, tuple[list[Part], str]] = {  # the parts → the field named
    "operations as a file": ([("operations", "o.json", b"{}"), ("map", None, b"{}")], "operations"),
    "map as a file": (
        [("operations", None, b'{"query": "{ __typename }"}'), ("map", "m.json", b"{}")],
        "map",
    ),
    "no operations": ([("map", None, b"{}")], "operations"),
    "operations not JSON": (
        [("operations", None, b"{not json"), ("map", None, b"{}")],
        "operations",
    ),
    "operations not an object": (
        [("operations", None, b"[1]"), ("map", None, b"{}")],
        "operations",
    ),
    "operations not UTF-8": (
        [("operations", None, b"\xff\xfe"), ("map", None, b"{}")],
        "operations",
    ),
    "map not JSON": (
        [("operations", None, b'{"query": "{ __typename }"}'), ("map", None, b"{")],
        "map",
    ),
}


async def test_a_broken_part_is_a_json_400_naming_it(client: httpx.AsyncClient) -> None:
    for fault, (parts, field) in PART_FAULTS.items():
        refused = await _post(client, multipart_body(parts))
        await _refused_cleanly(client, refused, field=field, fault=fault)


_FINE = multipart_body([("operations", None, b'{"query": "{ __typename }"}'), ("map", None, b"{}")])
_NAMELESS = b"--%s\r\nContent-Disposition: form-data\r\n\r\nx\r\n--%s--\r\n" % (
    BOUNDARY.encode(),
    BOUNDARY.encode(),
)
FRAMING_FAULTS: dict[str, tuple[bytes, str | None, str | None]] = {  # → the field named
    "no boundary": (_FINE, "multipart/form-data", None),
    "another boundary": (_FINE, "multipart/form-data; boundary=not-the-one", None),
    "a JSON body": (b'{"query": "{ __typename }"}', None, None),
    "a part without a name": (_NAMELESS, None, None),
    "cut short": (_FINE[: len(_FINE) // 2], None, "operations"),  # what came had no operations
    "no parts": (b"", None, "operations"),
}


async def test_broken_framing_is_a_json_400(client: httpx.AsyncClient) -> None:
    for fault, (body, content_type, field) in FRAMING_FAULTS.items():
        refused = await _post(client, body, content_type)
        await _refused_cleanly(client, refused, field=field, fault=fault)


async def _refused_cleanly(
    client: httpx.AsyncClient, refused: httpx.Response, *, field: str | None, fault: str
) -> None:
    """400, JSON, BAD_REQUEST with `field` where one is named; then the same connection
    answers the next request."""
    assert refused.status_code == 400, (fault, refused.text)
    assert refused.headers["content-type"].startswith("application/json"), (fault, refused.text)
    (error,) = refused.json()["errors"]
    assert error["extensions"].get("code") == "BAD_REQUEST", (fault, error)
    assert error["extensions"].get("field") == field, (fault, error)
    port = _local_port(refused)
    after = await client.post("/graphql", json={"query": "{ __typename }"})
    assert after.json() == {"data": {"__typename": "Query"}}, fault
    assert _local_port(after) == port, fault  # the same connection, still open


async def test_download_links_are_the_address_the_client_used(
    client: httpx.AsyncClient, company: NewCompany, live_server: str
) -> None:
    batch_id, item_id = await _item(client, company)
    parts = spec_parts(
        {"item": item_id, "files": [None]}, {"0": ["variables.files.0"]}, ("0", "r.pdf", PDF)
    )
    data((await _post(client, multipart_body(parts))).json())
    ((file,),) = [item["attachments"] for item in await _items(client, batch_id)]
    assert file["downloadUrl"].startswith(f"http://{live_server}/attachments/")
    assert await _downloaded(file["downloadUrl"]) == PDF

    async with GraphQLWebSocket.connect(live_server, company.api_key) as ws:  # over WebSocket
        await ws.subscribe("1", ATTACHMENTS, {"b": batch_id})
        answer = await ws.next("1")
    ((file,),) = [
        e["node"]["attachments"] for e in answer["payload"]["data"]["syncBatch"]["items"]["edges"]
    ]
    assert await _downloaded(file["downloadUrl"]) == PDF  # http://, not ws://


async def test_public_url_names_the_links_when_set(
    services: Services, settings: Settings, company: NewCompany, api: Api
) -> None:
    variables = {"companyId": company.company.id, "expenses": [expense()]}
    created = data(await api.gql(CREATE_EXPENSES, variables))["createExpenses"]
    data(await upload(api, created["expenses"][0]["id"], [("r.pdf", PDF, "application/pdf")]))
    behind_a_proxy = settings.model_copy(update={"public_url": "https://books.example.com/"})
    async with asgi_api(services, behind_a_proxy, company.api_key) as proxied:
        batch = data(await proxied.gql(ATTACHMENTS, {"b": created["syncBatchId"]}))["syncBatch"]
    ((file,),) = [e["node"]["attachments"] for e in batch["items"]["edges"]]
    assert file["downloadUrl"].startswith("https://books.example.com/attachments/att_")
