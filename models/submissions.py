"""Submitting records: the create mutations' one command, from validated records and their
files to a queued batch. Nothing is created until every file is checked and the records
vetted; the batch's job is queued once it has committed."""

from collections.abc import Awaitable, Callable, Sequence

from infra.queue import enqueue_sync
from infra.services import Services
from infra.storage import Scanned
from models.attachments import Files, Upload, add_files, checked
from models.batch import Changes, Created, create_batch, create_batch_once
from models.enums import RecordType, SyncOperation
from models.errors import InvalidInput
from models.operations import Operation, type_of_records
from models.records import Bill, Expense, Invoice, dump_record

Record = Expense | Bill | Invoice
Vet = Callable[[Sequence[Record]], Awaitable[None]]  # raises to refuse the records


async def submit_batch(
    services: Services,
    *,
    company_id: str,
    record_type: RecordType,
    records: Sequence[Record],
    uploads: Sequence[Sequence[Upload]],
    field: str,
    max_bytes: int,
    vet: Vet | None = None,
    key: str | None = None,
    updates: Sequence[str] | None = None,
    force: bool = False,
) -> Created:
    """Queue the records as one batch, each with its files (`uploads`, in record order);
    under an idempotency `key`, the first request's batch again (`replayed`). With
    `updates` (record ids, in record order), each record is the new content of that record,
    written over any changes made in the ledger meanwhile if `force`."""
    scans = await _checked(services, uploads, field=field, max_bytes=max_bytes)
    if vet is not None:
        await vet(records)
    changes = None
    if updates is not None:
        operations = [
            Operation(record_id, SyncOperation.UPDATE, dump_record(record), force)
            for record_id, record in zip(updates, records, strict=True)
        ]
        changes = Changes(operations, field)
    created = await _made(services, company_id, record_type, records, changes, key)
    if not created.replayed:
        files = [
            Files(item_id, sent, scanned)
            for item_id, sent, scanned in zip(created.item_ids, uploads, scans, strict=True)
            if sent
        ]
        await add_files(services, company_id=company_id, batch_id=created.batch.id, files=files)
        await enqueue_sync(services.queue, batch_id=created.batch.id, company_id=company_id)
    return created


async def submit_voids(
    services: Services,
    *,
    company_id: str,
    record_ids: Sequence[str],
    key: str | None = None,
    force: bool = False,
) -> Created:
    """Queue voids of the records (all of one type) as one batch; `force`: void documents
    changed in the ledger since our last push all the same."""
    record_type = await type_of_records(
        services.db,
        company_id=company_id,
        record_ids=record_ids,
        limit=services.settings.max_records_per_batch,
    )
    operations = [Operation(record_id, SyncOperation.VOID, force=force) for record_id in record_ids]
    changes = Changes(operations, "recordIds")
    created = await _made(services, company_id, record_type, (), changes, key)
    if not created.replayed:
        await enqueue_sync(services.queue, batch_id=created.batch.id, company_id=company_id)
    return created


async def _made(
    services: Services,
    company_id: str,
    record_type: RecordType,
    records: Sequence[Record],
    changes: Changes | None,
    key: str | None,
) -> Created:
    """The batch made, or under a key the first request's found."""
    db, bus = services.db, services.bus
    records = records if changes is None else ()
    if key is not None:
        return await create_batch_once(
            db, bus=bus, company_id=company_id, record_type=record_type, records=records,
            changes=changes, key=key,
        )  # fmt: skip
    batch, item_ids = await create_batch(
        db, bus=bus, company_id=company_id, record_type=record_type, records=records,
        changes=changes,
    )  # fmt: skip
    return Created(batch, item_ids, replayed=False)


async def _checked(
    services: Services, uploads: Sequence[Sequence[Upload]], *, field: str, max_bytes: int
) -> list[list[Scanned]]:
    """Each record's files, checked before anything is created: one refused file refuses the
    request, naming it (`expenses.3.attachments.0`)."""
    if not any(uploads):
        return [[] for _ in uploads]
    most = services.settings.max_files_per_request
    if sum(map(len, uploads)) > most:
        message = f"Send at most {most} files with the records; attach more with attachFiles."
        raise InvalidInput(message, field=field)
    named = {
        attachment_field(field, n, m): one
        for n, sent in enumerate(uploads)
        for m, one in enumerate(sent)
    }
    found = iter((await checked(named, max_bytes=max_bytes)).values())  # in the order sent
    return [[next(found) for _ in sent] for sent in uploads]


def attachment_field(field: str, record: int, file: int) -> str:
    """Where a record's file was sent, as errors name it: `expenses.3.attachments.0`."""
    return f"{field}.{record}.attachments.{file}"
