"""What a ledger (accounting system) offers us, whatever the vendor: plain shapes and a Protocol.

Adapters in `ledgers/` implement `Ledger` and turn vendor failures into `LedgerError`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from models.enums import AccountType
from models.records import Bill, Expense, Invoice
from models.tables import Connection


@dataclass(frozen=True)
class Account:
    code: str
    name: str
    type: AccountType


@dataclass(frozen=True)
class TaxRate:
    code: str
    name: str
    rate: Decimal


@dataclass(frozen=True)
class Limits:
    """What the ledger allows one connection: calls per minute, and calls at once."""

    per_minute: int
    concurrent: int


@dataclass(frozen=True)
class Tokens:
    """An OAuth2 grant's tokens: stored only sealed (`models.secrets`), never shown or logged."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime  # the access token's


class Ledger(Protocol):
    """One connection's adapter, holding the tokens it was made with: after a refresh, the
    connection's next adapter holds the new ones."""

    async def limits(self) -> Limits: ...

    async def refresh(self) -> Tokens:
        """Renew the grant with the refresh token (single-use at real ledgers: the old one
        stops working). Raises LedgerError(CONNECTION_EXPIRED) when refused: reconnect then."""
        ...

    async def reconnect(self) -> Tokens:
        """Connect afresh (the sandbox at once; a real ledger through its Link flow)."""
        ...

    async def push(self, record: Expense | Bill | Invoice, *, idempotency_key: str) -> str:
        """Post the record once per key and return the ledger's id for it; raises LedgerError."""
        ...

    async def accounts(self) -> list[Account]: ...

    async def tax_rates(self) -> list[TaxRate]: ...

    async def create_account(self, account: Account) -> Account: ...

    async def create_tax_rate(self, tax_rate: TaxRate) -> TaxRate: ...


LedgerFactory = Callable[[Connection], Ledger]
"""The adapter for a connection: `ledgers.ledger_for` in production, fakes in tests."""
