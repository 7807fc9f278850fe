"""Attachments: files on items, checked by their content, stored by their SHA-256, then
pushed to the ledger after their item (`jobs/sync.py`).

A file is refused before anything is stored (the item stays as it was): one whose content is
none of `ACCEPTED_TYPES`, or larger than the limit. The same file attached twice to one item
is one attachment.
"""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from sqlmodel import col, select

from infra.queue import enqueue_sync
from infra.services import Services
from infra.storage import ACCEPTED_TYPES, Scanned, scan
from models.enums import ItemStatus
from models.errors import InvalidInput, NotFound, SyncErrorCode
from models.tables import SyncAttachment, SyncItem, is_id, new_id, utcnow
from models.transitions import add_attachments


@dataclass(frozen=True)
class Upload:
    """A file as it arrived: its name, and its bytes in a file we can read twice."""

    file_name: str
    file: IO[bytes]


async def attach_files(
    services: Services, *, company_id: str, item_id: str, uploads: Sequence[Upload], max_bytes: int
) -> list[SyncAttachment]:
    """Attach the files to the company's item and queue their push; returns each file's
    attachment, in the order sent (a file the item holds already: its attachment as it is)."""
    item = await _item(services, company_id=company_id, item_id=item_id)
    most = services.settings.max_files_per_request
    if not 1 <= len(uploads) <= most:
        raise InvalidInput(f"Send 1 to {most} files.", field="files")
    found = await checked({f"files.{n}": u for n, u in enumerate(uploads)}, max_bytes=max_bytes)
    scans = list(found.values())
    files = [Files(item.id, uploads, scans)]
    if await add_files(services, company_id=company_id, batch_id=item.batch_id, files=files):
        await enqueue_sync(services.queue, batch_id=item.batch_id, company_id=company_id)
    held = await _by_sha256(services, item_id=item.id)
    return [held[scanned.sha256] for scanned in scans]


@dataclass(frozen=True)
class Files:
    """One item's files, checked."""

    item_id: str
    uploads: Sequence[Upload]
    scans: Sequence[Scanned]


async def checked(uploads: Mapping[str, Upload], *, max_bytes: int) -> dict[str, Scanned]:
    """What each file is, by the field it was sent as (`files.0`), or BAD_USER_INPUT naming
    the first refused one. One file object sent as several fields (a multipart part mapped
    to several paths) is read once: two reads of one file never interleave."""
    files = {id(upload.file): upload.file for upload in uploads.values()}
    scans = await asyncio.gather(*(asyncio.to_thread(scan, file) for file in files.values()))
    of_file = dict(zip(files, scans, strict=True))
    found = {field: of_file[id(upload.file)] for field, upload in uploads.items()}
    for field, scanned in found.items():
        _check(scanned, name=_file_name(uploads[field].file_name), field=field, max_bytes=max_bytes)
    return found


async def add_files(
    services: Services, *, company_id: str, batch_id: str, files: Sequence[Files]
) -> bool:
    """Store the checked files and attach them to their items (the company's, of the batch),
    the ones an item holds already left as they are, in one transition; whether any was
    added. The caller queues the batch's job."""
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for entry in files:
        held = await _by_sha256(services, item_id=entry.item_id)
        for upload, scanned in zip(entry.uploads, entry.scans, strict=True):
            if scanned.sha256 in held or (entry.item_id, scanned.sha256) in rows:
                continue
            await services.storage.put(
                services.storage.key(company_id, scanned.sha256), upload.file
            )
            now = utcnow()
            rows[entry.item_id, scanned.sha256] = {
                "id": new_id("att"),
                "item_id": entry.item_id,
                "batch_id": batch_id,
                "company_id": company_id,
                "file_name": _file_name(upload.file_name),
                "content_type": scanned.content_type,
                "size": scanned.size,
                "sha256": scanned.sha256,
                "status": ItemStatus.PENDING,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
    if rows:
        await add_attachments(
            services.db, bus=services.bus, batch_id=batch_id, rows=list(rows.values())
        )
    return bool(rows)


def _check(scanned: Scanned, *, name: str, field: str, max_bytes: int) -> None:
    """Refused with its file name in the message, and the field it came in as `field`."""
    if scanned.content_type not in ACCEPTED_TYPES:
        raise InvalidInput(
            f"{name} ({field}) is not a PDF, PNG, JPEG, HEIC, WebP or TIFF (read from its"
            " content).",
            field=field,
            syncCode=SyncErrorCode.UNSUPPORTED_FILE_TYPE.value,
        )
    if scanned.size > max_bytes:
        raise InvalidInput(
            f"{name} ({field}) is {scanned.size} bytes; this item's ledger takes at most"
            f" {max_bytes}.",
            field=field,
            syncCode=SyncErrorCode.ATTACHMENT_TOO_LARGE.value,
        )


def _file_name(name: str) -> str:
    """The name's last path part (a browser may send a path), at most 255 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip() or "attachment"
    return base[-255:]


async def _item(services: Services, *, company_id: str, item_id: str) -> SyncItem:
    if is_id(item_id):
        async with services.db.sessions() as session:
            item = await session.get(SyncItem, item_id)
        if item is not None and item.company_id == company_id:
            return item
    raise NotFound(f"item {item_id} not found", field="itemId")


async def _by_sha256(services: Services, *, item_id: str) -> dict[str, SyncAttachment]:
    async with services.db.sessions() as session:
        rows = await session.scalars(
            select(SyncAttachment).where(col(SyncAttachment.item_id) == item_id)
        )
        return {row.sha256: row for row in rows}


async def get_attachment(
    services: Services, *, company_id: str, attachment_id: str
) -> SyncAttachment | None:
    """The attachment if it is this company's; another company's is as absent as a missing one."""
    if not is_id(attachment_id):
        return None
    async with services.db.sessions() as session:
        row = await session.get(SyncAttachment, attachment_id)
    return row if row is not None and row.company_id == company_id else None


async def attachments_in(
    services: Services, *, batch_id: str, status: ItemStatus, limit: int | None = None
) -> list[SyncAttachment]:
    """The batch's attachments in `status`, oldest first (the first `limit`)."""
    async with services.db.sessions() as session:
        rows = await session.scalars(
            select(SyncAttachment)
            .where(col(SyncAttachment.batch_id) == batch_id, col(SyncAttachment.status) == status)
            .order_by(col(SyncAttachment.created_at), col(SyncAttachment.id))
            .limit(limit)
        )
        return list(rows)
