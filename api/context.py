"""What every resolver gets: the process's services and the company the key belongs to."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader
from strawberry.types import Info as StrawberryInfo

from api.hub import Hub
from models.batch import item_pages
from models.company import connection_of
from ledgers.refresh import usable_connection
from models.db import rows_by_parent
from models.enums import ItemStatus
from models.errors import NotFound, Unauthenticated
from ledgers.protocol import Ledger, LedgerFactory
from models.pagination import Page, PageRequest
from models.services import Services
from models.settings import Settings
from models.tables import Company, Connection, PushAttempt, SyncItem, WebhookAttempt

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
    caller: Company | None = None
    connection_params: dict[str, Any] | None = field(default=None)  # Any: the client's JSON
    socket: WebSocket | None = None  # the connection, over WebSocket

    @property
    def company(self) -> Company:
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

    async def ledger(self, company_id: str) -> tuple[Connection, Ledger]:
        """The company's connection, its access token refreshed first if it is about to
        expire (as the worker does), and an adapter holding it."""
        connection = await connection_of(self.services.db, company_id=company_id)
        connection = await usable_connection(self.services, self.ledger_for, connection)
        return connection, self.ledger_for(connection)

    def own(self, company_id: str) -> str:
        """The caller's company id, if that is the one asked for; any other is not found."""
        if company_id != self.company.id:
            raise NotFound(f"company {company_id} not found")
        return company_id


Info = StrawberryInfo[Context, None]
