"""The worker's typed context: what arq's untyped `ctx` dict carries under one key."""

from dataclasses import dataclass

from models.ledger import LedgerFactory
from models.services import Services

_KEY = "sync2books"


@dataclass(frozen=True)
class WorkerContext:
    services: Services
    ledger_for: LedgerFactory


def attach(ctx: dict[str, object], context: WorkerContext) -> None:
    ctx[_KEY] = context


def from_ctx(ctx: dict[str, object]) -> WorkerContext:
    context = ctx[_KEY]
    assert isinstance(context, WorkerContext)
    return context
