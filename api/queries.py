"""Query resolvers: authorise against the caller's company, call one model function, map."""

from collections.abc import Sequence
from datetime import datetime

import strawberry

from api.context import Info
from api.inputs import BillInput, ExpenseInput, InvoiceInput, to_records
from api.preflight import RecordProblem, ledger_problems
from api.types import (
    Account,
    LedgerConnection,
    LedgerRecord,
    RelayConnection,
    SyncBatch,
    SyncItem,
    TaxRate,
    TrackingCategory,
    batch_connection_of,
    items_of,
    relay_connection,
)
from models.batch import BatchFilter, get_batch, list_batches, search_items
from models.company import connection_of as ledger_connection
from models.enums import BatchStatus, ItemStatus, RecordType
from models.errors import NotFound
from models.events import last_event_id
from models.operations import get_record
from models.pagination import PageRequest


@strawberry.type(description="The company an API key belongs to.")
class Company:
    id: strawberry.ID
    name: str

    @strawberry.field(
        description="Its newest event's id: subscribe after it to hear only what comes next."
    )
    async def last_event_id(self, info: Info) -> strawberry.ID | None:
        event_id = await last_event_id(info.context.services.db, company_id=self.id)
        return None if event_id is None else strawberry.ID(str(event_id))


@strawberry.type
class Query:
    @strawberry.field(description="The caller's own company: who the API key belongs to.")
    def company(self, info: Info) -> Company:
        caller = info.context.company
        return Company(id=strawberry.ID(caller.id), name=caller.name)

    @strawberry.field(description="A batch of the caller's company, or null.")
    async def sync_batch(self, info: Info, id: strawberry.ID) -> SyncBatch | None:
        ctx = info.context
        row = await get_batch(ctx.services.db, company_id=ctx.company.id, batch_id=id)
        return SyncBatch.from_row(row) if row else None

    @strawberry.field(
        description="A record of the caller's company, with its operations; null when absent."
    )
    async def record(self, info: Info, id: strawberry.ID) -> LedgerRecord | None:
        ctx = info.context
        row = await get_record(ctx.services.db, company_id=ctx.company.id, record_id=id)
        return LedgerRecord.from_row(row) if row else None

    @strawberry.field(description="The company's batches, newest first; dates are inclusive.")
    async def sync_batches(
        self,
        info: Info,
        company_id: strawberry.ID,
        status: BatchStatus | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> RelayConnection[SyncBatch]:
        ctx = info.context
        page = await list_batches(
            ctx.services.db,
            company_id=ctx.own(company_id),
            where=BatchFilter(status=status, start=start_date, end=end_date),
            page=PageRequest(first=first, after=after, last=last, before=before),
        )
        return batch_connection_of(page)

    @strawberry.field(description="The batch's FAILED items, with their errors and hints.")
    async def failed_items(
        self,
        info: Info,
        batch_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
    ) -> RelayConnection[SyncItem]:
        return await items_of(info, batch_id, ItemStatus.FAILED, PageRequest(first, after))

    @strawberry.field(description="The batch's items, optionally of one status.")
    async def sync_items(
        self,
        info: Info,
        batch_id: strawberry.ID,
        status: ItemStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> RelayConnection[SyncItem]:
        return await items_of(info, batch_id, status, PageRequest(first, after))

    @strawberry.field(
        description="The company's items whose record has this `reference` (exactly, as the "
        "client gave it), newest first, across its batches."
    )
    async def search_items(
        self,
        info: Info,
        company_id: strawberry.ID,
        reference: str,
        first: int | None = None,
        after: str | None = None,
    ) -> RelayConnection[SyncItem]:
        ctx = info.context
        rows = await search_items(
            ctx.services.db,
            company_id=ctx.own(company_id),
            reference=reference,
            page=PageRequest(first=first, after=after),
        )
        return relay_connection(rows, SyncItem.from_row)

    @strawberry.field(description="The chart of accounts of the company's ledger.")
    async def accounts(self, info: Info, company_id: strawberry.ID) -> list[Account]:
        ctx = info.context
        gateway = await ctx.ledger(ctx.own(company_id))
        return [Account.from_row(a) for a in await gateway.accounts()]

    @strawberry.field(description="The tax rates of the company's ledger.")
    async def tax_rates(self, info: Info, company_id: strawberry.ID) -> list[TaxRate]:
        ctx = info.context
        gateway = await ctx.ledger(ctx.own(company_id))
        return [TaxRate.from_row(t) for t in await gateway.tax_rates()]

    @strawberry.field(
        description="The tracking categories of the company's ledger, with their active "
        "options: what a line's `tracking` may name."
    )
    async def tracking_categories(
        self, info: Info, company_id: strawberry.ID
    ) -> list[TrackingCategory]:
        ctx = info.context
        gateway = await ctx.ledger(ctx.own(company_id))
        return [TrackingCategory.from_row(c) for c in await gateway.tracking_categories()]

    @strawberry.field(description="Dry run: what the ledger would refuse; nothing is created.")
    async def validate_expenses(
        self, info: Info, company_id: strawberry.ID, expenses: list[ExpenseInput]
    ) -> list[RecordProblem]:
        return await _validate(info, company_id, RecordType.EXPENSE, expenses, "expenses")

    @strawberry.field(description="Dry run: what the ledger would refuse; nothing is created.")
    async def validate_bills(
        self, info: Info, company_id: strawberry.ID, bills: list[BillInput]
    ) -> list[RecordProblem]:
        return await _validate(info, company_id, RecordType.BILL, bills, "bills")

    @strawberry.field(description="Dry run: what the ledger would refuse; nothing is created.")
    async def validate_invoices(
        self, info: Info, company_id: strawberry.ID, invoices: list[InvoiceInput]
    ) -> list[RecordProblem]:
        return await _validate(info, company_id, RecordType.INVOICE, invoices, "invoices")

    @strawberry.field(description="The company's ledger connection, or null.")
    async def connection(self, info: Info, company_id: strawberry.ID) -> LedgerConnection | None:
        ctx = info.context
        try:
            row = await ledger_connection(ctx.services.db, company_id=ctx.own(company_id))
        except NotFound:
            return None
        return LedgerConnection.from_row(row)


async def _validate(
    info: Info,
    company_id: str,
    record_type: RecordType,
    inputs: Sequence[ExpenseInput | BillInput | InvoiceInput],
    field: str,
) -> list[RecordProblem]:
    ctx = info.context
    owner = ctx.own(company_id)
    limit = ctx.services.settings.max_records_per_batch
    records = to_records(record_type, inputs, field=field, limit=limit)
    found = await ledger_problems(ctx, owner, records, field=field)
    return [RecordProblem.from_problem(problem) for problem in found]
