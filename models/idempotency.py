"""Idempotent creates: a key, per company, names one batch for `KEPT` after its request.

A frontend whose create timed out sends it again with the same key and gets the first
answer, not a second batch. The key is claimed in the transaction that creates the batch,
under the table's primary key, so of two requests that arrive together (in any API
processes) one creates and the other, once the first has committed, gets its batch.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from infra.db import Database
from models.enums import RecordType
from models.errors import Conflict, InvalidInput
from models.tables import IdempotencyKey, utcnow

KEPT = timedelta(hours=24)
FIELD = "idempotencyKey"


@dataclass(frozen=True)
class Keyed:
    key: str
    fingerprint: str  # what the request held: the same key with other records is a conflict


def keyed(key: str, record_type: RecordType, payloads: Sequence[dict[str, Any]]) -> Keyed:
    """The request's key and fingerprint; a key of 1 to 255 characters."""
    if not 0 < len(key) <= 255:
        raise InvalidInput(f"{FIELD}: 1 to 255 characters", field=FIELD)
    body = json.dumps([record_type, payloads], sort_keys=True, separators=(",", ":"))
    return Keyed(key, hashlib.sha256(body.encode()).hexdigest())


async def first_batch(db: Database, *, company_id: str, keyed: Keyed) -> str | None:
    """The batch the key's first request created, if it was the same request within `KEPT`."""
    async with db.sessions() as session:
        row = await session.get(IdempotencyKey, (company_id, keyed.key))
    if row is None or row.created_at < utcnow() - KEPT:
        return None
    if row.fingerprint != keyed.fingerprint:
        raise Conflict(
            f"{FIELD}: already used for other records within 24 hours; use a new key",
            field=FIELD,
        )
    return row.batch_id


async def claim(session: AsyncSession, *, company_id: str, keyed: Keyed, batch_id: str) -> None:
    """Record the key for the batch being created; a concurrent claim waits, then fails on
    the primary key (`IntegrityError`). The key's lapsed use, if any, makes way."""
    await session.execute(
        delete(IdempotencyKey).where(
            col(IdempotencyKey.company_id) == company_id,
            col(IdempotencyKey.key) == keyed.key,
            col(IdempotencyKey.created_at) < utcnow() - KEPT,
        )
    )
    await session.execute(
        insert(IdempotencyKey).values(
            company_id=company_id,
            key=keyed.key,
            fingerprint=keyed.fingerprint,
            batch_id=batch_id,
            created_at=utcnow(),
        )
    )
