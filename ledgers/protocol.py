"""What a ledger (accounting system) offers us, whatever the vendor: plain shapes and a Protocol.

Adapters (`ledgers.xero`, `ledgers.quickbooks`, `ledgers.sandbox`) implement `Ledger` and turn
vendor failures into `LedgerError`. Nothing outside `ledgers/` calls an adapter directly: the
API and the worker go through `ledgers.gateway`, which paces every call.
"""

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from models.enums import AccountType
from models.errors import LedgerError
from models.records import Bill, Expense, Invoice
from models.secrets import Tokens
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
class TrackingCategory:
    """A dimension the ledger reports lines by (Xero's tracking categories; QuickBooks'
    classes and departments), with its options."""

    name: str
    options: tuple[str, ...]
    active: bool = True


@dataclass(frozen=True)
class Currencies:
    """The organisation's base currency, and every currency it has enabled (the base too)."""

    base: str
    enabled: frozenset[str]


@dataclass(frozen=True)
class Limits:
    """What the ledger allows one connection: calls per minute, calls at once, documents per
    call, calls per day (None: no daily limit), and the size of one attachment; and what it
    allows our app across every connection (calls per minute; None: no such limit)."""

    per_minute: int
    concurrent: int
    documents_per_call: int = 1
    per_day: int | None = None
    app_per_minute: int | None = None  # the app's calls a minute across all its connections
    attachment_bytes: int = 10 * 1024 * 1024
    refuses_stale: bool = True  # a change to a document changed since is refused by the
    # ledger itself (QuickBooks' SyncToken); else `versions` is asked first (Xero)


@dataclass(frozen=True)
class Remaining:
    """What is left of the limits, as the ledger last said (Xero's `X-MinLimit-Remaining` and
    `X-DayLimit-Remaining`); None where it does not say."""

    this_minute: int | None = None
    today: int | None = None


@dataclass(frozen=True)
class Entry:
    """A record to post, with its key: our item id, which the ledger keeps (an idempotency key
    or a reference) so a repeated post is found rather than made twice."""

    key: str
    record: Expense | Bill | Invoice


@dataclass(frozen=True)
class File:
    """An attachment to put on a document: its key (our attachment id), what it is, and its
    stored bytes, read a chunk at a time."""

    key: str
    file_name: str
    content_type: str
    size: int
    sha256: str
    chunks: Callable[[], AsyncIterator[bytes]]
    pushed_before: bool = False  # an earlier push's outcome is unknown: look before adding


@dataclass(frozen=True)
class Change:
    """An update or a void of a document we wrote (`external_id`), keyed by our item id.
    `record` is the content to write (an update), or the record as it stands (a void).
    `version` is the document's as our last push left it: a ledger refuses the change with
    LEDGER_CONFLICT when the document has moved on since, unless `force`."""

    key: str
    external_id: str
    record: Expense | Bill | Invoice
    version: str | None
    force: bool = False
    void: bool = False


@dataclass(frozen=True)
class Written:
    """A document as a push left it: the ledger's id for it, and its version then
    (QuickBooks' SyncToken, Xero's UpdatedDateUTC, the sandbox's count), None where unknown."""

    external_id: str
    version: str | None = None


Outcome = Written | LedgerError
"""One record's outcome in a batch push: the document written, or why it was refused."""


class Ledger(Protocol):
    """One connection's adapter, holding the tokens it was made with: after a refresh, the
    connection's next adapter holds the new ones."""

    async def limits(self) -> Limits: ...

    async def remaining(self) -> Remaining:
        """What the ledger last said is left, without a call of its own."""
        ...

    async def refresh(self) -> Tokens:
        """Renew the grant with the refresh token (single-use at real ledgers: the old one
        stops working). Raises LedgerError(CONNECTION_EXPIRED) when refused: reconnect then."""
        ...

    async def reconnect(self) -> Tokens:
        """Connect afresh (the sandbox at once; a real ledger through its Link flow)."""
        ...

    async def push(self, entries: Sequence[Entry]) -> list[Outcome]:
        """Post up to `documents_per_call` records in one call, each once per key, and return
        one outcome per entry, in order: one bad record fails alone. Raises LedgerError when
        the call as a whole failed; after a timeout or a 5xx some records may be written, and
        `find` tells which."""
        ...

    async def find(self, entries: Sequence[Entry]) -> dict[str, Written]:
        """The documents of the entries it already holds, by key: how a push whose outcome
        is unknown is settled before anything is pushed again."""
        ...

    async def update(self, changes: Sequence[Change]) -> list[Outcome]:
        """Write each change's record over its document, up to `documents_per_call` in one
        call, one outcome per change, as `push`."""
        ...

    async def void(self, changes: Sequence[Change]) -> list[Outcome]:
        """Void (or delete, where the ledger voids no such document) each change's document,
        as `update`."""
        ...

    async def versions(self, changes: Sequence[Change]) -> dict[str, str | None]:
        """Each change's document's current version, by key (a document gone is absent):
        for a ledger that does not refuse stale changes itself, asked before they are sent."""
        ...

    async def held(self, changes: Sequence[Change]) -> dict[str, Written]:
        """The changes the documents already show (the content written, or voided), by key:
        how a change whose outcome is unknown is settled before it is sent again."""
        ...

    async def attach(self, document_id: str, entry: Entry, file: File) -> str:
        """Put the file on the document (`document_id`: the ledger's id of the entry's record)
        and return the ledger's id of the attachment. A file already on the document is found,
        not added again, so a push repeated after a crash attaches it once."""
        ...

    async def accounts(self) -> list[Account]: ...

    async def tax_rates(self) -> list[TaxRate]: ...

    async def tracking_categories(self) -> list[TrackingCategory]:
        """Its categories with their active options."""
        ...

    async def currencies(self) -> Currencies: ...

    async def create_account(self, account: Account) -> Account: ...

    async def create_tax_rate(self, tax_rate: TaxRate) -> TaxRate: ...


LedgerFactory = Callable[[Connection], Ledger]
"""The adapter for a connection: `ledgers.ledger_for` in production, fakes in tests."""
