"""The worker's typed context: what arq's untyped `ctx` dict carries under one key."""

import asyncio
from dataclasses import dataclass
from functools import cached_property

import httpx

from infra.services import Services
from jobs.lease import Lease
from ledgers.protocol import LedgerFactory

_KEY = "sync2books"
_LEASE = "sync2books.lease"  # in one job's ctx: arq gives each job a dict of its own


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


def hold(ctx: dict[str, object], lease: Lease) -> None:
    """The job holds `lease` until arq has recorded how the job ended (`let_go`)."""
    ctx[_LEASE] = lease


async def let_go(ctx: dict[str, object]) -> None:
    """arq's `after_job_end`: hand back the lease the job held, if it took one."""
    lease = ctx.pop(_LEASE, None)
    if isinstance(lease, Lease):
        await lease.let_go()
