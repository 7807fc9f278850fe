"""Where attachment files live: a directory under `DATA_DIR` on the embedded default, or
S3-compatible object storage (`STORAGE_URL`), through obstore's one API for both.

A file is addressed by its company and SHA-256, so the same file uploaded twice is stored
once. Files move in chunks both ways: no process holds a whole file in memory.
"""

import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO

import filetype
import obstore
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, ObjectStore, S3Store

from infra.settings import Settings

ACCEPTED_TYPES = frozenset(
    {"application/pdf", "image/png", "image/jpeg", "image/heic", "image/webp", "image/tiff"}
)
"""What the ledgers take and auditors read: receipts and invoices, scanned or photographed."""

CHUNK_BYTES = 1024 * 1024
PART_BYTES = 5 * 1024 * 1024  # S3's smallest multipart part
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Scanned:
    """What a file is, read from its bytes: never from its name or its declared type."""

    sha256: str
    size: int
    content_type: str | None  # None: not one of ACCEPTED_TYPES


def scan(file: IO[bytes]) -> Scanned:
    """Hash, measure and sniff a file in one pass (blocking: run it in a thread)."""
    file.seek(0)
    digest = hashlib.sha256()
    head = file.read(_SNIFF_BYTES)
    size = len(head)
    digest.update(head)
    while chunk := file.read(CHUNK_BYTES):
        size += len(chunk)
        digest.update(chunk)
    file.seek(0)
    kind = filetype.guess(head)
    content_type = kind.mime if kind is not None and kind.mime in ACCEPTED_TYPES else None
    return Scanned(digest.hexdigest(), size, content_type)


class Storage:
    def __init__(self, store: ObjectStore, *, part_bytes: int = CHUNK_BYTES) -> None:
        """`part_bytes`: what a put holds in memory per part in flight (S3 needs 5 MiB)."""
        self.store = store
        self.part_bytes = part_bytes

    @staticmethod
    def key(company_id: str, sha256: str) -> str:
        return f"{company_id}/{sha256}"

    async def put(self, key: str, file: IO[bytes]) -> None:
        """Store the file under `key`, unless a file is there already (it is the same one)."""
        if await self.exists(key):
            return
        file.seek(0)
        await obstore.put_async(
            self.store, key, _chunks_of(file), chunk_size=self.part_bytes, max_concurrency=1
        )

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self.store, key)
        except (NotFoundError, FileNotFoundError):
            return False
        return True

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        """The file's bytes, a chunk at a time."""
        result = await obstore.get_async(self.store, key)
        async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
            yield bytes(chunk)

    def chunks_blocking(self, key: str) -> Iterator[bytes]:
        """`chunks`, for a short-lived process (the CLI): one that read through obstore's
        async API could abort as its runtime shut down at exit."""
        for chunk in obstore.get(self.store, key).stream(min_chunk_size=CHUNK_BYTES):
            yield bytes(chunk)

    def put_blocking(self, key: str, file: IO[bytes]) -> None:
        """Store the file under `key`, replacing what is there; blocking, as `chunks_blocking`
        (history's archives, which the CLI writes too)."""
        file.seek(0)
        obstore.put(self.store, key, file, chunk_size=self.part_bytes, max_concurrency=1)

    def keys_blocking(self, prefix: str) -> list[str]:
        """The keys under `prefix`, sorted; blocking, as `chunks_blocking`."""
        pages = obstore.list(self.store, prefix=prefix)
        return sorted(str(meta["path"]) for page in pages for meta in page)


async def _chunks_of(file: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := file.read(CHUNK_BYTES):
        yield chunk


def open_storage(settings: Settings) -> Storage:
    """The store `STORAGE_URL` names (s3://bucket[/prefix]), else `DATA_DIR/attachments`."""
    if settings.storage_url is None:
        root = settings.data_dir / "attachments"
        return Storage(LocalStore(root.resolve(), mkdir=True))
    secret = settings.storage_secret_access_key
    config: dict[str, str] = {"region": settings.storage_region}
    if settings.storage_access_key_id is not None and secret is not None:
        config |= {
            "access_key_id": settings.storage_access_key_id,
            "secret_access_key": secret.get_secret_value(),
        }
    if settings.storage_endpoint is not None:
        config["endpoint"] = settings.storage_endpoint
    client = {"allow_http": True} if (settings.storage_endpoint or "").startswith("http:") else {}
    store = S3Store.from_url(settings.storage_url, config=config, client_options=client)  # type: ignore[arg-type]
    return Storage(store, part_bytes=PART_BYTES)
