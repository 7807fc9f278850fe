"""Mutation resolvers. Commands commit first; only then is the sync job enqueued."""

from collections.abc import Sequence
from typing import Annotated

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from api.context import Info
from api.inputs import (
    AccountInput,
    BillInput,
    BillUpdateInput,
    ExpenseInput,
    ExpenseUpdateInput,
    InvoiceInput,
    InvoiceUpdateInput,
    TaxRateInput,
    to_account,
    to_records,
    to_tax_rate,
)
from api.preflight import ledger_problems, preflight_refused
from api.types import (
    Account,
    Bill,
    Expense,
    Invoice,
    LedgerConnection,
    LedgerLink,
    SyncAttachment,
    SyncBatch,
    SyncItem,
    TaxRate,
    record_of,
)
from infra.queue import enqueue_sync
from ledgers.gateway import Gateway
from ledgers.gateway import limits as ledger_limits
from ledgers.link import start_link
from models.attachments import Upload as Sent
from models.attachments import attach_files
from models.batch import get_batch, retry_failed_items
from models.company import connection_of as ledger_connection
from models.connections import reconnected
from models.enums import Provider, RecordType
from models.errors import InvalidInput
from models.submissions import Record, attachment_field, submit_batch, submit_voids

IDEMPOTENCY_KEY = Annotated[
    str | None,
    strawberry.argument(
        description="1 to 255 characters, yours, per company: the same key with the same "
        "records within 24 hours returns the first call's result instead of a second batch "
        "(send it again after a timeout); with other records, CONFLICT."
    ),
]
PREFLIGHT = Annotated[
    bool,
    strawberry.argument(
        description="Refuse the whole request (BAD_USER_INPUT, `extensions.problems`) if the "
        "ledger's chart would refuse any record; see validateExpenses."
    ),
]


@strawberry.type
class CreateExpensesPayload:
    sync_batch_id: strawberry.ID
    batch: SyncBatch
    expenses: list[Expense]


@strawberry.type
class CreateBillsPayload:
    sync_batch_id: strawberry.ID
    batch: SyncBatch
    bills: list[Bill]


@strawberry.type
class CreateInvoicesPayload:
    sync_batch_id: strawberry.ID
    batch: SyncBatch
    invoices: list[Invoice]


FORCE = Annotated[
    bool,
    strawberry.argument(
        description="Write over changes made to the documents in the ledger since our last "
        "push; without it such an update fails with LEDGER_CONFLICT."
    ),
]


@strawberry.type
class UpdateExpensesPayload:
    sync_batch_id: strawberry.ID
    batch: SyncBatch
    expenses: list[Expense]


@strawberry.type
class UpdateBillsPayload:
    sync_batch_id: strawberry.ID
    batch: SyncBatch
    bills: list[Bill]


@strawberry.type
class UpdateInvoicesPayload:
    sync_batch_id: strawberry.ID
    batch: SyncBatch
    invoices: list[Invoice]


@strawberry.type
class VoidRecordsPayload:
    sync_batch_id: strawberry.ID
    batch: SyncBatch


UPDATES = (
    "Queue new content for records already created (each input: the whole record, and its "
    "recordId): a batch of UPDATE items, each applied after its record's earlier operations. "
    "A record not yet in the ledger (its create failed, or waits) is put there with it. All "
    "are valid or none is queued."
)


@strawberry.type
class RetryFailedItemsPayload:
    batch: SyncBatch
    items: list[SyncItem]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Queue expenses for sync; all are valid or none is created.")
    async def create_expenses(
        self,
        info: Info,
        company_id: strawberry.ID,
        expenses: list[ExpenseInput],
        preflight: PREFLIGHT = False,
        idempotency_key: IDEMPOTENCY_KEY = None,
    ) -> CreateExpensesPayload:
        batch, records = await _create(
            info, company_id, RecordType.EXPENSE, expenses, "expenses", preflight, idempotency_key
        )
        created = [r for r in records if isinstance(r, Expense)]
        return CreateExpensesPayload(sync_batch_id=batch.id, batch=batch, expenses=created)

    @strawberry.mutation(description="Queue bills for sync; all are valid or none is created.")
    async def create_bills(
        self,
        info: Info,
        company_id: strawberry.ID,
        bills: list[BillInput],
        preflight: PREFLIGHT = False,
        idempotency_key: IDEMPOTENCY_KEY = None,
    ) -> CreateBillsPayload:
        batch, records = await _create(
            info, company_id, RecordType.BILL, bills, "bills", preflight, idempotency_key
        )
        created = [r for r in records if isinstance(r, Bill)]
        return CreateBillsPayload(sync_batch_id=batch.id, batch=batch, bills=created)

    @strawberry.mutation(description="Queue invoices for sync; all are valid or none is created.")
    async def create_invoices(
        self,
        info: Info,
        company_id: strawberry.ID,
        invoices: list[InvoiceInput],
        preflight: PREFLIGHT = False,
        idempotency_key: IDEMPOTENCY_KEY = None,
    ) -> CreateInvoicesPayload:
        batch, records = await _create(
            info, company_id, RecordType.INVOICE, invoices, "invoices", preflight, idempotency_key
        )
        created = [r for r in records if isinstance(r, Invoice)]
        return CreateInvoicesPayload(sync_batch_id=batch.id, batch=batch, invoices=created)

    @strawberry.mutation(description=UPDATES)
    async def update_expenses(
        self,
        info: Info,
        company_id: strawberry.ID,
        expenses: list[ExpenseUpdateInput],
        idempotency_key: IDEMPOTENCY_KEY = None,
        preflight: PREFLIGHT = False,
        force: FORCE = False,
    ) -> UpdateExpensesPayload:
        batch, records = await _create(
            info, company_id, RecordType.EXPENSE, expenses, "expenses", preflight,
            idempotency_key, updating=True, force=force,
        )  # fmt: skip
        updated = [r for r in records if isinstance(r, Expense)]
        return UpdateExpensesPayload(sync_batch_id=batch.id, batch=batch, expenses=updated)

    @strawberry.mutation(description=UPDATES)
    async def update_bills(
        self,
        info: Info,
        company_id: strawberry.ID,
        bills: list[BillUpdateInput],
        idempotency_key: IDEMPOTENCY_KEY = None,
        preflight: PREFLIGHT = False,
        force: FORCE = False,
    ) -> UpdateBillsPayload:
        batch, records = await _create(
            info, company_id, RecordType.BILL, bills, "bills", preflight, idempotency_key,
            updating=True, force=force,
        )  # fmt: skip
        updated = [r for r in records if isinstance(r, Bill)]
        return UpdateBillsPayload(sync_batch_id=batch.id, batch=batch, bills=updated)

    @strawberry.mutation(description=UPDATES)
    async def update_invoices(
        self,
        info: Info,
        company_id: strawberry.ID,
        invoices: list[InvoiceUpdateInput],
        idempotency_key: IDEMPOTENCY_KEY = None,
        preflight: PREFLIGHT = False,
        force: FORCE = False,
    ) -> UpdateInvoicesPayload:
        batch, records = await _create(
            info, company_id, RecordType.INVOICE, invoices, "invoices", preflight,
            idempotency_key, updating=True, force=force,
        )  # fmt: skip
        updated = [r for r in records if isinstance(r, Invoice)]
        return UpdateInvoicesPayload(sync_batch_id=batch.id, batch=batch, invoices=updated)

    @strawberry.mutation(
        description="Void records (all of one type): a batch of VOID items, each applied after "
        "its record's earlier operations. A record that never reached the ledger is voided "
        "without a call; a voided record cannot be updated or voided again."
    )
    async def void_records(
        self,
        info: Info,
        company_id: strawberry.ID,
        record_ids: list[strawberry.ID],
        idempotency_key: IDEMPOTENCY_KEY = None,
        force: FORCE = False,
    ) -> VoidRecordsPayload:
        ctx = info.context
        created = await submit_voids(
            ctx.services,
            company_id=ctx.own(company_id),
            record_ids=[str(record_id) for record_id in record_ids],
            key=idempotency_key,
            force=force,
        )
        batch = SyncBatch.from_row(created.batch)
        return VoidRecordsPayload(sync_batch_id=batch.id, batch=batch)

    @strawberry.mutation(
        description="Attach files to an item, before or after it synced (a GraphQL multipart "
        "request). PDF, PNG, JPEG, HEIC, WebP or TIFF, read from the content, up to the ledger's "
        "size limit: else BAD_USER_INPUT naming the file (`extensions.field`, `syncCode`), and "
        "nothing is attached. Each is pushed once the item is SUCCESS; the same file twice is "
        "one attachment."
    )
    async def attach_files(
        self, info: Info, item_id: strawberry.ID, files: list[Upload]
    ) -> list[SyncAttachment]:
        ctx = info.context
        rows = await attach_files(
            ctx.services,
            company_id=ctx.company.id,
            item_id=item_id,
            uploads=[_sent(upload, f"files.{n}") for n, upload in enumerate(files)],
            max_bytes=await _largest_file(info, ctx.company.id),
        )
        return [SyncAttachment.from_row(row) for row in rows]

    @strawberry.mutation(description="Retry failed items: the ones named, or all when none are.")
    async def retry_failed_items(
        self, info: Info, batch_id: strawberry.ID, item_ids: list[strawberry.ID] | None = None
    ) -> RetryFailedItemsPayload:
        ctx = info.context
        services = ctx.services
        items = await retry_failed_items(
            services.db,
            bus=services.bus,
            company_id=ctx.company.id,
            batch_id=batch_id,
            item_ids=item_ids,
        )
        if items:
            await enqueue_sync(services.queue, batch_id=batch_id, company_id=ctx.company.id)
        batch = await get_batch(services.db, company_id=ctx.company.id, batch_id=batch_id)
        assert batch is not None  # retry_failed_items checked it is the caller's
        return RetryFailedItemsPayload(
            batch=SyncBatch.from_row(batch), items=[SyncItem.from_row(item) for item in items]
        )

    @strawberry.mutation(
        description="Connect the company's ledger afresh after it EXPIRED: the sandbox at "
        "once (a real ledger through its Link flow); then retry the failed items."
    )
    async def reconnect(self, info: Info, company_id: strawberry.ID) -> LedgerConnection:
        ctx = info.context
        owner = ctx.own(company_id)
        connection = await ledger_connection(ctx.services.db, company_id=owner)
        provider = Provider(connection.provider)
        if provider is not Provider.SANDBOX:
            link = await start_link(
                ctx.services, company_id=owner, provider=provider, base_url=ctx.base_url
            )
            return LedgerConnection.from_row(connection, link.authorization_url)
        gateway = await Gateway.open(ctx.services, ctx.ledger_for, connection)
        tokens = await gateway.reconnect()
        fresh = await reconnected(ctx.services, company_id=owner, tokens=tokens)
        return LedgerConnection.from_row(fresh)

    @strawberry.mutation(
        description="Start connecting the company to a real ledger (its Link flow): send the "
        "user to `authorizationUrl`; the ledger sends them back to this service, which "
        "connects the company. The URL works once, until `expiresAt`."
    )
    async def link_ledger(
        self, info: Info, company_id: strawberry.ID, provider: Provider
    ) -> LedgerLink:
        ctx = info.context
        owner = ctx.own(company_id)
        link = await start_link(
            ctx.services, company_id=owner, provider=provider, base_url=ctx.base_url
        )
        return LedgerLink(authorization_url=link.authorization_url, expires_at=link.expires_at)

    @strawberry.mutation(description="Create an account in the company's ledger.")
    async def create_account(
        self, info: Info, company_id: strawberry.ID, input: AccountInput
    ) -> Account:
        ctx = info.context
        gateway = await ctx.ledger(ctx.own(company_id))
        created = await gateway.create_account(to_account(input))
        return Account.from_row(created)

    @strawberry.mutation(description="Create a tax rate in the company's ledger.")
    async def create_tax_rate(
        self, info: Info, company_id: strawberry.ID, input: TaxRateInput
    ) -> TaxRate:
        ctx = info.context
        gateway = await ctx.ledger(ctx.own(company_id))
        created = await gateway.create_tax_rate(to_tax_rate(input))
        return TaxRate.from_row(created)


async def _create(
    info: Info,
    company_id: str,
    record_type: RecordType,
    inputs: Sequence[ExpenseInput | BillInput | InvoiceInput],
    field: str,
    preflight: bool,
    key: str | None,
    *,
    updating: bool = False,
    force: bool = False,
) -> tuple[SyncBatch, list[Expense | Bill | Invoice]]:
    """The create and update mutations' mapping: inputs to records and files,
    `submit_batch`, and the batch and records as the schema shows them."""
    ctx = info.context
    owner = ctx.own(company_id)
    records = to_records(
        record_type, inputs, field=field, limit=ctx.services.settings.max_records_per_batch
    )
    uploads = [
        [
            _sent(upload, attachment_field(field, n, m))
            for m, upload in enumerate(each.attachments or [])
        ]
        for n, each in enumerate(inputs)
    ]

    async def vet(records: Sequence[Record]) -> None:
        if found := await ledger_problems(ctx, owner, records, field=field):
            raise preflight_refused(found)

    created = await submit_batch(
        ctx.services,
        company_id=owner,
        record_type=record_type,
        records=records,
        uploads=uploads,
        field=field,
        max_bytes=await _largest_file(info, owner) if any(uploads) else 0,
        vet=vet if preflight else None,
        key=key,
        updates=[_record_id(each) for each in inputs] if updating else None,
        force=force,
    )
    ids = [_record_id(each) for each in inputs] if updating else created.item_ids
    shown = [record_of(i, r, owner) for i, r in zip(ids, records, strict=True)]
    return SyncBatch.from_row(created.batch), shown


def _record_id(each: ExpenseInput | BillInput | InvoiceInput) -> str:
    assert isinstance(each, ExpenseUpdateInput | BillUpdateInput | InvoiceUpdateInput)
    return str(each.record_id)


async def _largest_file(info: Info, company_id: str) -> int:
    """The largest file the company's ledger takes, within MAX_UPLOAD_BYTES."""
    ctx = info.context
    connection = await ledger_connection(ctx.services.db, company_id=company_id)
    allowed = await ledger_limits(ctx.ledger_for, connection)
    return min(allowed.attachment_bytes, ctx.services.settings.max_upload_bytes)


def _sent(upload: Upload, field: str) -> Sent:
    """An upload as Starlette spooled it (to disk past 1 MiB); anything else in its place (a
    JSON value) is refused."""
    if not isinstance(upload, UploadFile):
        message = "Send each file as a part of a GraphQL multipart request."
        raise InvalidInput(message, field=field)
    return Sent(upload.filename or "", upload.file)
