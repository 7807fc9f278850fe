"""The worker's typed context: what arq's untyped `ctx` dict carries under one key."""

import asyncio
from dataclasses import dataclass
from functools import cached_property

import httpx

from infra.services import Services
from ledgers.protocol import LedgerFactory

_KEY = "sync2books"


@dataclass(frozen=True)
class WorkerContext:
    services: Services
    ledger_for: LedgerFactory
    http: httpx.AsyncClient  # to webhook endpoints

    @cached_property
    def pushes(self) -> asyncio.Semaphore:
        """The process's pushes in flight, across its jobs: within its database pool (the
        sandbox posts through it) and far from the thousand a chunk could start at once."""
        return asyncio.Semaphore(self.services.settings.worker_max_pushes)

    @cached_property
    def outages(self) -> dict[str, int]:
        """Outages each batch's job met in a row in this process: they are waited out with
        a growing pause, up to a cap (`jobs.sync.OUTAGE_RETRIES`)."""
        return {}


def attach(ctx: dict[str, object], context: WorkerContext) -> None:
    ctx[_KEY] = context


def from_ctx(ctx: dict[str, object]) -> WorkerContext:
    context = ctx[_KEY]
    assert isinstance(context, WorkerContext)
    return context
