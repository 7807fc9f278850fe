"""What every resolver gets: the process's services and the company the key belongs to."""

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader
from strawberry.types import Info as StrawberryInfo

from api.hub import Hub
from infra.db import rows_by_parent
from infra.services import Services
from infra.settings import Settings
from ledgers.chart import Chart
from ledgers.gateway import Gateway, Pace, completion_estimate, pace
from ledgers.protocol import LedgerFactory
from models.batch import documents_ahead, item_pages
from models.company import Caller, connection_of
from models.enums import ItemStatus, LimitHold
from models.errors import LedgerError, NotFound, Unauthenticated
from models.pagination import Page, PageRequest
from models.tables import (
    PushAttempt,
    SyncAttachment,
    SyncBatch,
    SyncItem,
    WebhookAttempt,
    utcnow,
)

# Opens a process's services and names its ledger adapters; the CLI and tests each pick one.
ItemPageKey = tuple[str, ItemStatus | None, PageRequest]  # batch id, status, page
Runtime = Callable[[Settings], AbstractAsyncContextManager[tuple[Services, LedgerFactory]]]


@dataclass
class Context:
    """Over HTTP the key is checked before the context exists; over WebSocket, at
    `connection_init`, which sets `caller` (and Strawberry sets `connection_params`)."""

    services: Services
    hub: Hub
    ledger_for: LedgerFactory
    base_url: str  # where this client reaches the service: see api.downloads.public_base
    caller: Caller | None = None
    connection_params: dict[str, Any] | None = field(default=None)  # Any: the client's JSON
    socket: WebSocket | None = None  # the connection, over WebSocket

    @property
    def company(self) -> Caller:
        if self.caller is None:
            raise Unauthenticated("Send the company API key first.")
        return self.caller

    @cached_property
    def push_attempts(self) -> DataLoader[str, list[PushAttempt]]:
        """One query for the attempts of every item a response shows."""
        db = self.services.db
        return DataLoader(
            lambda ids: rows_by_parent(db, PushAttempt, "item_id", ids, order="number")
        )

    @cached_property
    def attachments(self) -> DataLoader[str, list[SyncAttachment]]:
        """One query for the attachments of every item a response shows."""
        db = self.services.db
        return DataLoader(
            lambda ids: rows_by_parent(db, SyncAttachment, "item_id", ids, order="created_at")
        )

    @cached_property
    def item_pages(self) -> DataLoader[ItemPageKey, Page[SyncItem]]:
        """One query for the same page of every batch's items a response shows."""
        return DataLoader(self._item_pages)

    async def _item_pages(self, keys: list[ItemPageKey]) -> list[Page[SyncItem]]:
        asked: dict[tuple[ItemStatus | None, PageRequest], list[str]] = {}
        for batch_id, status, page in keys:
            asked.setdefault((status, page), []).append(batch_id)
        found: dict[ItemPageKey, Page[SyncItem]] = {}
        for (status, page), batch_ids in asked.items():
            pages = await item_pages(
                self.services.db,
                company_id=self.company.id,
                batch_ids=batch_ids,
                status=status,
                page=page,
            )
            found.update(((b, status, page), p) for b, p in zip(batch_ids, pages, strict=True))
        return [found[key] for key in keys]

    @cached_property
    def webhook_attempts(self) -> DataLoader[str, list[WebhookAttempt]]:
        """One query for the attempts of every delivery a response shows."""
        db = self.services.db
        return DataLoader(
            lambda ids: rows_by_parent(db, WebhookAttempt, "delivery_id", ids, order="number")
        )

    @cached_property
    def documents_ahead(self) -> DataLoader[str, dict[str, int]]:
        """One query for the backlog of every company whose batches a response shows."""
        db = self.services.db
        return DataLoader(
            lambda ids: asyncio.gather(*(documents_ahead(db, company_id=c) for c in ids))
        )

    @cached_property
    def paces(self) -> DataLoader[str, Pace | None]:
        """Each company's connection's pace, read once per response."""
        return DataLoader(lambda ids: asyncio.gather(*(self._pace(c) for c in ids)))

    async def _pace(self, company_id: str) -> Pace | None:
        try:
            connection = await connection_of(self.services.db, company_id=company_id)
        except NotFound:
            return None
        return await pace(self.services, self.ledger_for, connection)

    @cached_property
    def charts(self) -> DataLoader[str, Chart | None]:
        """Each company's ledger's chart (cached for every process), read once per response;
        None when the ledger cannot say."""
        return DataLoader(lambda ids: asyncio.gather(*(self._chart(c) for c in ids)))

    async def _chart(self, company_id: str) -> Chart | None:
        try:
            return await (await self.ledger(company_id)).chart()
        except (NotFound, LedgerError):
            return None

    async def estimated_completion(self, batch: SyncBatch) -> datetime | None:
        """`completion_estimate`, from what this response loads once per company."""
        ahead = (await self.documents_ahead.load(batch.company_id)).get(batch.id)
        found = await self.paces.load(batch.company_id)
        return completion_estimate(batch, ahead, found, utcnow())

    async def waiting_for(self, batch: SyncBatch) -> LimitHold | None:
        """The limit putting the batch's end off: DAY when today's calls cannot finish the
        documents up to its own, else the one holding its connection's next call now."""
        found = await self.paces.load(batch.company_id)
        if found is None:
            return None
        ahead = (await self.documents_ahead.load(batch.company_id)).get(batch.id)
        return LimitHold.DAY if ahead is not None and found.beyond_today(ahead) else found.held_by

    async def ledger(self, company_id: str) -> Gateway:
        """The company's ledger, through the gateway that paces every call to it."""
        connection = await connection_of(self.services.db, company_id=company_id)
        return await Gateway.open(self.services, self.ledger_for, connection)

    def own(self, company_id: str) -> str:
        """The caller's company id, if that is the one asked for; any other is not found."""
        if company_id != self.company.id:
            raise NotFound(f"company {company_id} not found")
        return company_id


Info = StrawberryInfo[Context, None]
