"""What every resolver gets: the process's services and the company the key belongs to."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from strawberry.types import Info as StrawberryInfo

from models.errors import NotFound
from models.ledger import LedgerFactory
from models.services import Services
from models.settings import Settings
from models.tables import Company

# Opens a process's services and names its ledger adapters; the CLI and tests each pick one.
Runtime = Callable[[Settings], AbstractAsyncContextManager[tuple[Services, LedgerFactory]]]


@dataclass(frozen=True)
class Context:
    services: Services
    company: Company
    ledger_for: LedgerFactory

    def own(self, company_id: str) -> str:
        """The caller's company id, if that is the one asked for; any other is not found."""
        if company_id != self.company.id:
            raise NotFound(f"company {company_id} not found")
        return company_id


Info = StrawberryInfo[Context, None]
