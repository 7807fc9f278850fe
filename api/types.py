"""GraphQL object types, each built from its row by one classmethod."""

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

import strawberry

from api.context import Info
from api.downloads import download_url
from ledgers.gateway import Budget, budget
from ledgers.protocol import Account as AccountRow
from ledgers.protocol import TaxRate as TaxRateRow
from ledgers.protocol import TrackingCategory as TrackingCategoryRow
from models import money
from models.batch import list_items
from models.enums import (
    TERMINAL_BATCH_STATUSES,
    AccountType,
    BatchStatus,
    ConnectionStatus,
    ItemStatus,
    LimitHold,
    LineAmountTypes,
    Provider,
    RecordType,
    SyncOperation,
)
from models.errors import SyncError as SyncErrorValue
from models.errors import SyncErrorCode
from models.operations import record_history
from models.pagination import Keyset, Page, PageRequest, encode_cursor, page_size
from models.records import Bill as BillRecord
from models.records import Expense as ExpenseRecord
from models.records import Invoice as InvoiceRecord
from models.records import Line, load_record
from models.tables import Connection
from models.tables import PushAttempt as PushAttemptRow
from models.tables import SyncAttachment as SyncAttachmentRow
from models.tables import SyncBatch as SyncBatchRow
from models.tables import SyncItem as SyncItemRow
from models.tables import SyncRecord as SyncRecordRow

# The models' enums are the GraphQL enums: registered once, under their public names.
strawberry.enum(BatchStatus, name="SyncBatchStatus")
strawberry.enum(ItemStatus, name="SyncItemStatus")
strawberry.enum(
    LimitHold,
    name="RateLimitHold",
    description="A ledger limit that can put a call off: the connection's calls a minute "
    "(CONNECTION), its calls a day (DAY: the next after midnight UTC), or our app's calls a "
    "minute across every company of the ledger (APP).",
)
strawberry.enum(RecordType, name="RecordType")
strawberry.enum(ConnectionStatus, name="ConnectionStatus")
strawberry.enum(AccountType, name="AccountType")
strawberry.enum(SyncErrorCode, name="SyncErrorCode")
strawberry.enum(Provider, name="LedgerProvider")
strawberry.enum(SyncOperation, name="SyncOperation")
strawberry.enum(LineAmountTypes, name="LineAmountTypes")

N = TypeVar("N")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def _cursor(root: "Edge[Any]") -> str:
    """Encoded when asked for: a page of 1,000 nodes seldom shows their cursors."""
    return encode_cursor(root.key)


@strawberry.type
class Edge(Generic[N]):
    key: strawberry.Private[Keyset]
    cursor: str = strawberry.field(resolver=_cursor)
    node: N


@strawberry.type(name="Connection")
class RelayConnection(Generic[N]):
    """A Relay connection; named `<Node>Connection` in the schema."""

    edges: list[Edge[N]]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="Why an item or a batch failed, and what to do about it.")
class SyncError:
    code: SyncErrorCode
    message: str
    hint: str
    retryable: bool

    @classmethod
    def from_parts(cls, code: str | None, message: str | None) -> "SyncError | None":
        if code is None:
            return None
        error = SyncErrorValue(SyncErrorCode(code), message or "")
        return cls(
            code=error.code, message=error.message, hint=error.hint, retryable=error.retryable
        )


@strawberry.type(description="One push of an item to the ledger.")
class PushAttempt:
    number: int = strawberry.field(description="1 for the first push of the item, and so on.")
    started_at: datetime
    duration_ms: float
    error: SyncError | None = strawberry.field(description="Why it failed; null if it succeeded.")

    @classmethod
    def from_row(cls, row: PushAttemptRow) -> "PushAttempt":
        return cls(
            number=row.number,
            started_at=row.started_at,
            duration_ms=row.duration_ms,
            error=SyncError.from_parts(row.error_code, row.error_message),
        )


@strawberry.type(description="A line's option in one of the ledger's tracking categories.")
class Tracking:
    category: str
    option: str


@strawberry.type
class RecordLine:
    description: str
    amount: Decimal = strawberry.field(description="quantity x unitAmount, where they are given.")
    account_id: str
    tax_rate_id: str | None
    quantity: Decimal | None
    unit_amount: Decimal | None
    item_code: str | None
    tracking: list[Tracking]

    @classmethod
    def from_line(cls, line: Line) -> "RecordLine":
        return cls(
            description=line.description,
            amount=line.amount,
            account_id=line.account_id,
            tax_rate_id=line.tax_rate_id,
            quantity=line.quantity,
            unit_amount=line.unit_amount,
            item_code=line.item_code,
            tracking=[Tracking(category=t.category, option=t.option) for t in line.tracking],
        )


@strawberry.type(
    description="A record's totals as its ledger reckons them: each line's tax at the "
    "ledger's rate, rounded to the currency's precision, then summed."
)
class RecordTotals:
    sub_total: Decimal = strawberry.field(description="Before tax.")
    total_tax: Decimal
    total: Decimal


@strawberry.type
class PricedRecord:
    """What every record type answers of its money at its ledger's rates."""

    company_id: strawberry.Private[str]
    content: strawberry.Private[ExpenseRecord | BillRecord | InvoiceRecord]

    @strawberry.field(
        description="At the ledger's tax rates (its chart, cached for five minutes); null "
        "when the ledger cannot say. A tax rate the ledger does not have counts as none."
    )
    async def totals(self, info: Info) -> RecordTotals | None:
        chart = await info.context.charts.load(self.company_id)
        if chart is None:
            return None
        found = money.totals(self.content, chart.tax_rates)
        return RecordTotals(sub_total=found.sub_total, total_tax=found.tax, total=found.total)


AMOUNTS = "How the lines' amounts read: before tax, with tax included, or untaxed."
RATE = "Units of the company's base currency per unit of `currency`; null: the ledger's rate."


@strawberry.type(description="An expense as created; its id is the id of its sync item.")
class Expense(PricedRecord):
    id: strawberry.ID
    amount: Decimal = strawberry.field(description="The sum of its lines.")
    currency: str
    date: date
    account_id: str = strawberry.field(description="Its first line's account.")
    tax_rate_id: str | None = strawberry.field(description="Its first line's tax rate.")
    description: str
    vendor_name: str
    reference: str | None
    lines: list[RecordLine] = strawberry.field(description="One, unless it was split.")
    line_amount_types: LineAmountTypes = strawberry.field(description=AMOUNTS)
    currency_rate: Decimal | None = strawberry.field(description=RATE)
    payment_account_id: str | None = strawberry.field(
        description="The bank or card account it was paid from; null: the ledger's first bank."
    )


@strawberry.type(description="A bill as created; its id is the id of its sync item.")
class Bill(PricedRecord):
    id: strawberry.ID
    vendor_name: str
    issue_date: date
    due_date: date
    currency: str
    total: Decimal = strawberry.field(description="The sum of its lines.")
    lines: list[RecordLine]
    reference: str | None
    line_amount_types: LineAmountTypes = strawberry.field(description=AMOUNTS)
    currency_rate: Decimal | None = strawberry.field(description=RATE)


@strawberry.type(description="An invoice as created; its id is the id of its sync item.")
class Invoice(PricedRecord):
    id: strawberry.ID
    customer_name: str
    issue_date: date
    due_date: date
    currency: str
    total: Decimal = strawberry.field(description="The sum of its lines.")
    lines: list[RecordLine]
    reference: str | None
    line_amount_types: LineAmountTypes = strawberry.field(description=AMOUNTS)
    currency_rate: Decimal | None = strawberry.field(description=RATE)


SyncRecord = Annotated[Expense | Bill | Invoice, strawberry.union("SyncRecord")]


def record_of(
    item_id: str, record: ExpenseRecord | BillRecord | InvoiceRecord, company_id: str
) -> Expense | Bill | Invoice:
    lines = [RecordLine.from_line(line) for line in record.document_lines]
    if isinstance(record, ExpenseRecord):
        return Expense(
            company_id=company_id,
            content=record,
            id=strawberry.ID(item_id),
            amount=record.total,
            currency=record.currency,
            date=record.date,
            account_id=lines[0].account_id,
            tax_rate_id=lines[0].tax_rate_id,
            description=record.description,
            vendor_name=record.vendor_name,
            reference=record.reference,
            lines=lines,
            line_amount_types=record.line_amount_types,
            currency_rate=record.currency_rate,
            payment_account_id=record.payment_account_id,
        )
    if isinstance(record, BillRecord):
        return Bill(
            company_id=company_id,
            content=record,
            id=strawberry.ID(item_id),
            vendor_name=record.vendor_name,
            issue_date=record.issue_date,
            due_date=record.due_date,
            currency=record.currency,
            total=record.total,
            lines=lines,
            reference=record.reference,
            line_amount_types=record.line_amount_types,
            currency_rate=record.currency_rate,
        )
    return Invoice(
        company_id=company_id,
        content=record,
        id=strawberry.ID(item_id),
        customer_name=record.customer_name,
        issue_date=record.issue_date,
        due_date=record.due_date,
        currency=record.currency,
        total=record.total,
        lines=lines,
        reference=record.reference,
        line_amount_types=record.line_amount_types,
        currency_rate=record.currency_rate,
    )


@strawberry.type(description="A file on an item, pushed to the ledger once the item is SUCCESS.")
class SyncAttachment:
    id: strawberry.ID
    item_id: strawberry.ID
    file_name: str
    content_type: str = strawberry.field(description="Read from the file's content.")
    size: int = strawberry.field(description="In bytes.")
    sha256: str = strawberry.field(description="Hex: what the file is stored and found by.")
    status: ItemStatus
    error: SyncError | None
    external_id: str | None = strawberry.field(description="The ledger's id, once attached.")
    created_at: datetime
    updated_at: datetime
    company_id: strawberry.Private[str]

    @classmethod
    def from_row(cls, row: SyncAttachmentRow) -> "SyncAttachment":
        return cls(
            id=strawberry.ID(row.id),
            item_id=strawberry.ID(row.item_id),
            file_name=row.file_name,
            content_type=row.content_type,
            size=row.size,
            sha256=row.sha256,
            status=row.status,
            error=SyncError.from_parts(row.error_code, row.error_message),
            external_id=row.external_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            company_id=row.company_id,
        )

    @strawberry.field(
        description="Where to download the file: signed, for this company's file only, and "
        "short-lived (DOWNLOAD_URL_SECONDS); ask again for a fresh one."
    )
    def download_url(self, info: Info) -> str:
        ctx = info.context
        return download_url(ctx.base_url, ctx.services.vault, self.company_id, self.id)


@strawberry.type(
    description="One operation on a record on its way to the ledger: its create, an update "
    "or its void."
)
class SyncItem:
    id: strawberry.ID
    batch_id: strawberry.ID
    record_type: RecordType
    record_id: strawberry.ID = strawberry.field(
        description="The record it is an operation on: the id its create returned."
    )
    operation: SyncOperation
    sequence: int = strawberry.field(
        description="Its place in its record's operations (1: the create), the order the "
        "ledger gets them in."
    )
    status: ItemStatus
    attempts: int = strawberry.field(description="Pushes so far: see pushAttempts.")
    external_id: str | None = strawberry.field(description="The ledger's id, once synced.")
    reference: str | None = strawberry.field(description="The client's own reference, echoed.")
    error: SyncError | None
    note: str | None = strawberry.field(
        description="Why it succeeded without a push of its own, when it did: the ledger "
        "already held newer content, or the record never reached the ledger (a void)."
    )
    created_at: datetime
    updated_at: datetime
    payload: strawberry.Private[dict[str, Any]]  # Any: the record's JSON
    company_id: strawberry.Private[str]

    @strawberry.field(description="The record's content this operation carries.")
    def record(self) -> SyncRecord:
        """Read from the row's JSON only when asked: most item pages never show it."""
        return record_of(self.record_id, load_record(self.payload), self.company_id)

    @classmethod
    def from_row(cls, row: SyncItemRow) -> "SyncItem":
        return cls(
            id=strawberry.ID(row.id),
            batch_id=strawberry.ID(row.batch_id),
            record_type=row.record_type,
            record_id=strawberry.ID(row.record_id),
            operation=row.operation,
            sequence=row.sequence,
            status=row.status,
            attempts=row.attempts,
            external_id=row.external_id,
            reference=row.reference,
            error=SyncError.from_parts(row.error_code, row.error_message),
            note=row.note,
            created_at=row.created_at,
            updated_at=row.updated_at,
            payload=row.payload,
            company_id=row.company_id,
        )

    @strawberry.field(description="Every push to the ledger, oldest first, retries included.")
    async def push_attempts(self, info: Info) -> list[PushAttempt]:
        rows = await info.context.push_attempts.load(self.id)
        return [PushAttempt.from_row(row) for row in rows]

    @strawberry.field(description="The files attached to the record, oldest first.")
    async def attachments(self, info: Info) -> list[SyncAttachment]:
        rows = await info.context.attachments.load(self.id)
        return [SyncAttachment.from_row(row) for row in rows]


async def items_of(
    info: Info, batch_id: str, status: ItemStatus | None, page: PageRequest
) -> RelayConnection[SyncItem]:
    """A page of the batch's items, if the batch is the caller's; else an empty page."""
    ctx = info.context
    rows = await list_items(
        ctx.services.db, company_id=ctx.company.id, batch_id=batch_id, status=status, page=page
    )
    return relay_connection(rows, SyncItem.from_row)


@strawberry.type(description="Records queued together for one company's ledger.")
class SyncBatch:
    id: strawberry.ID
    company_id: strawberry.ID
    record_type: RecordType
    status: BatchStatus
    item_count: int
    pending_count: int
    processing_count: int
    success_count: int
    failed_count: int
    error: SyncError | None = strawberry.field(
        description="Why the batch FAILED as a whole; item failures are on the items."
    )
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    row: strawberry.Private[SyncBatchRow]

    @strawberry.field(
        description="When the batch should be done, from its connection's backlog and pace "
        "(and its own pace so far); null once it has ended."
    )
    async def estimated_completion_at(self, info: Info) -> datetime | None:
        if self.status in TERMINAL_BATCH_STATUSES:
            return None
        return await info.context.estimated_completion(self.row)

    @strawberry.field(
        description="The ledger limit putting the batch's end off: DAY when today's calls "
        "cannot finish it (its estimatedCompletionAt is then after midnight UTC), else the one "
        "holding its connection's next call now; null when none does, or once it has ended."
    )
    async def waiting_for(self, info: Info) -> LimitHold | None:
        if self.status in TERMINAL_BATCH_STATUSES:
            return None
        return await info.context.waiting_for(self.row)

    @strawberry.field(description="The batch's items in the order they were given.")
    async def items(
        self,
        info: Info,
        status: ItemStatus | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> RelayConnection[SyncItem]:
        page = PageRequest(first, after, last, before)
        if page.has_cursor:  # a place in this batch's list: a page of its own
            return await items_of(info, self.id, status, page)
        page_size(page)  # a bad size is refused here, not for every batch loaded with it
        rows = await info.context.item_pages.load((self.id, status, page))
        return relay_connection(rows, SyncItem.from_row)

    @classmethod
    def from_row(cls, row: SyncBatchRow) -> "SyncBatch":
        return cls(
            id=strawberry.ID(row.id),
            company_id=strawberry.ID(row.company_id),
            record_type=row.record_type,
            status=row.status,
            item_count=row.item_count,
            pending_count=row.pending_count,
            processing_count=row.processing_count,
            success_count=row.success_count,
            failed_count=row.failed_count,
            error=SyncError.from_parts(row.error_code, row.error_message),
            created_at=row.created_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
            updated_at=row.updated_at,
            row=row,
        )


@strawberry.type(
    name="Record",
    description="A record through its life: its create, updates and void, and what the "
    "ledger holds of it.",
)
class LedgerRecord:
    id: strawberry.ID = strawberry.field(description="The id its create returned.")
    record_type: RecordType
    external_id: str | None = strawberry.field(
        description="Its document's id in the ledger; null while it has none."
    )
    version: int = strawberry.field(
        description="Which of its operations the ledger holds: the `sequence` of the newest "
        "that succeeded (1: the create's content), 0 before any did."
    )
    voided: bool = strawberry.field(description="A void of it succeeded: it cannot change.")
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="Its operations, newest first.")
    async def items(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> RelayConnection[SyncItem]:
        ctx = info.context
        rows = await record_history(
            ctx.services.db,
            company_id=ctx.company.id,
            record_id=self.id,
            page=PageRequest(first, after, last, before),
        )
        return relay_connection(rows, SyncItem.from_row)

    @classmethod
    def from_row(cls, row: SyncRecordRow) -> "LedgerRecord":
        return cls(
            id=strawberry.ID(row.id),
            record_type=row.record_type,
            external_id=row.external_id,
            version=row.applied_sequence,
            voided=row.voided,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def batch_connection_of(page: Page[SyncBatchRow]) -> RelayConnection[SyncBatch]:
    return relay_connection(page, SyncBatch.from_row)


R = TypeVar("R")


def relay_connection(page: Page[R], build: Callable[[R], N]) -> RelayConnection[N]:
    edges = [Edge(key=key, node=build(row)) for key, row in page.rows]
    return RelayConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=encode_cursor(page.rows[0][0]) if page.rows else None,
            end_cursor=encode_cursor(page.rows[-1][0]) if page.rows else None,
        ),
        total_count=page.total,
    )


@strawberry.type
class Account:
    code: str
    name: str
    type: AccountType

    @classmethod
    def from_row(cls, row: AccountRow) -> "Account":
        return cls(code=row.code, name=row.name, type=row.type)


@strawberry.type
class TaxRate:
    code: str
    name: str
    rate: Decimal = strawberry.field(description="Percent, e.g. 15 for 15%.")

    @classmethod
    def from_row(cls, row: TaxRateRow) -> "TaxRate":
        return cls(code=row.code, name=row.name, rate=row.rate)


@strawberry.type(
    description="A dimension the ledger reports lines by: Xero's tracking categories; "
    "QuickBooks' `Class` (per line) and `Department` (per document)."
)
class TrackingCategory:
    name: str
    options: list[str] = strawberry.field(description="Its active options.")
    active: bool

    @classmethod
    def from_row(cls, row: TrackingCategoryRow) -> "TrackingCategory":
        return cls(name=row.name, options=list(row.options), active=row.active)


@strawberry.type(description="What the ledger allows the connection, and what is left of it.")
class RateLimit:
    calls_per_minute: int
    concurrent: int = strawberry.field(description="Calls at once.")
    documents_per_call: int = strawberry.field(
        description="Records one call carries: a push of 1,000 takes 1,000 / this calls."
    )
    remaining_this_minute: int = strawberry.field(
        description="As the ledger last said where it says (Xero), else by our count."
    )
    daily_limit: int | None = strawberry.field(description="Calls a day; null: none.")
    daily_remaining: int | None
    app_calls_per_minute: int | None = strawberry.field(
        description="Our app's calls a minute to this ledger across every company (Xero: "
        "10,000); null: none."
    )
    app_remaining_this_minute: int | None
    held_by: LimitHold | None = strawberry.field(
        description="The limit putting the next call off now; null: it could be made now."
    )

    @classmethod
    def from_budget(cls, found: Budget) -> "RateLimit":
        return cls(
            calls_per_minute=found.limits.per_minute,
            concurrent=found.limits.concurrent,
            documents_per_call=found.limits.documents_per_call,
            remaining_this_minute=found.remaining_this_minute,
            daily_limit=found.limits.per_day,
            daily_remaining=found.remaining_today,
            app_calls_per_minute=found.limits.app_per_minute,
            app_remaining_this_minute=found.app_remaining_this_minute,
            held_by=found.held_by,
        )


@strawberry.type(name="Connection", description="A company's link to its accounting system.")
class LedgerConnection:
    provider: str
    status: ConnectionStatus
    expires_at: datetime | None
    tenant_id: str | None = strawberry.field(
        description="The organisation in the ledger: Xero's tenant id, QuickBooks' realm id."
    )
    authorization_url: str | None = strawberry.field(
        default=None,
        description="Set by `reconnect` for a ledger that connects through its Link flow: "
        "send the user there to connect again.",
    )
    row: strawberry.Private[Connection]

    @strawberry.field(description="The ledger's limits for this connection, and what is left.")
    async def rate_limit(self, info: Info) -> RateLimit:
        ctx = info.context
        return RateLimit.from_budget(await budget(ctx.services, ctx.ledger_for, self.row))

    @strawberry.field(
        description="The organisation's base currency, as its ledger says; null when the "
        "ledger cannot say."
    )
    async def base_currency(self, info: Info) -> str | None:
        chart = await info.context.charts.load(self.row.company_id)
        return None if chart is None else chart.currencies.base

    @strawberry.field(
        description="Every currency the ledger has enabled, the base too: a record in any "
        "other is refused (by preflight, or by the ledger)."
    )
    async def currencies(self, info: Info) -> list[str] | None:
        chart = await info.context.charts.load(self.row.company_id)
        return None if chart is None else sorted(chart.currencies.enabled)

    @classmethod
    def from_row(cls, row: Connection, authorization_url: str | None = None) -> "LedgerConnection":
        return cls(
            provider=row.provider,
            status=row.status,
            expires_at=row.expires_at,
            tenant_id=row.tenant_id,
            authorization_url=authorization_url,
            row=row,
        )


@strawberry.type(description="A Link flow started: where to send the user, and until when.")
class LedgerLink:
    authorization_url: str
    expires_at: datetime
