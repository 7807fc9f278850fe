"""Uploads: `attachFiles` throughput, and the API process's memory while clients upload at once.

Each client sends its own file (different bytes, so each is stored) to its own item in one
multipart request, all at once. Memory is the API process's resident set, sampled every
20 ms, less what it held before: it should not grow with the files' size.
"""

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.footprint import rss_kib
from bench.pipeline import expense
from bench.service import Company, Service

ATTACH = "mutation($i: ID!, $f: [Upload!]!) { attachFiles(itemId: $i, files: $f) { status } }"
CREATE = """mutation($c: ID!, $e: [ExpenseInput!]!) {
  createExpenses(companyId: $c, expenses: $e) { expenses { id } } }"""
MIB = 1024 * 1024


@dataclass
class Uploads:
    clients: int
    mib_each: int
    seconds: float
    mib_per_second: float
    rss_before_mib: float
    rss_peak_mib: float


async def measure(service: Service, *, clients: int, mib_each: int) -> Uploads:
    company = await service.create_company("uploads")
    with tempfile.TemporaryDirectory() as folder:
        files = [_pdf(Path(folder) / f"{n}.pdf", n, mib_each) for n in range(clients)]
        async with httpx.AsyncClient(base_url=f"http://{service.address}", timeout=600) as http:
            answer = await http.post(
                "/graphql",
                json={
                    "query": CREATE,
                    "variables": {"c": company.id, "e": [expense(n) for n in range(clients)]},
                },
                headers=company.headers,
            )
            items = [e["id"] for e in answer.json()["data"]["createExpenses"]["expenses"]]
            before = rss_kib(service.api_pid)
            peak = [before]
            sampling = asyncio.create_task(_sample(service.api_pid, peak))
            start = time.perf_counter()
            await asyncio.gather(
                *(
                    _upload(http, company, item, file)
                    for item, file in zip(items, files, strict=True)
                )
            )
            seconds = time.perf_counter() - start
            sampling.cancel()
    return Uploads(
        clients, mib_each, seconds, clients * mib_each / seconds, before / 1024, max(peak) / 1024
    )


def _pdf(path: Path, n: int, mib: int) -> Path:
    """A PDF-looking file of `mib` MiB whose bytes are its own."""
    with path.open("wb") as out:
        out.write(b"%PDF-1.7\n%" + f"bench {n}\n".encode())
        block = bytes([n % 251]) * MIB
        for _ in range(mib):
            out.write(block)
    return path


async def _upload(http: httpx.AsyncClient, company: Company, item_id: str, path: Path) -> None:
    operations = {"query": ATTACH, "variables": {"i": item_id, "f": [None]}}
    with path.open("rb") as file:
        response = await http.post(
            "/graphql",
            data={
                "operations": json.dumps(operations),
                "map": json.dumps({"0": ["variables.f.0"]}),
            },
            files={"0": (path.name, file, "application/pdf")},
            headers=company.headers,
        )
    body = response.json()
    if "errors" in body:
        raise RuntimeError(body["errors"])


async def _sample(pid: int, peak: list[int]) -> None:
    while True:
        peak.append(rss_kib(pid))
        await asyncio.sleep(0.02)
