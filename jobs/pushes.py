"""A call of items to the ledger and what became of each: looked for first when pushed
before, pushed with their keys, retried as `jobs.retries` decides, and recorded in one
transition."""

import asyncio
import logging
import time
from collections.abc import Sequence

from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from infra.db import is_outage, refused_because
from infra.metrics import PUSH_SECONDS
from jobs.context import WorkerContext
from jobs.retries import Next, Retries, backoff
from ledgers.gateway import Gateway
from ledgers.protocol import Entry
from models.enums import ItemStatus
from models.errors import TRANSIENT, LedgerError, SyncError, SyncErrorCode
from models.records import load_record
from models.tables import SyncItem, utcnow
from models.transitions import Attempt, ItemMove, transition

log = logging.getLogger(__name__)

OUTAGE_RETRY_SECONDS = 1  # the first wait for our database or Redis; it doubles…
OUTAGE_WAITS = 5  # waits within one push before its job's outage handling takes over


async def push(deps: WorkerContext, gateway: Gateway, items: Sequence[SyncItem]) -> list[ItemMove]:
    """Push the items in one call (again, for those a transient failure left), retrying with
    backoff up to `max_push_attempts`, and return each one's move.

    Items pushed before, by an earlier job or attempt whose outcome is unknown, are first
    looked for in the ledger: the ones found succeeded. A call that fails as a whole after
    the ledger may have written (a timeout, a dropped connection, a 5xx) is repeated
    identically, with the same idempotency key, so the ledger answers what it did.

    A refused access token is refreshed once and the call made again at once. A 429's
    Retry-After holds every call to the ledger (the limiter) for that long; when it is longer
    than `retry_max_seconds` (a daily limit), the items go back to PENDING and the batch's
    job is deferred until then, holding no worker meanwhile (`jobs.retries`). An outage of
    our own Redis or database spends no attempt."""
    settings = deps.services.settings
    retries = Retries(gateway, settings)
    entries, moves = _loaded(items)
    attempts: dict[str, list[Attempt]] = {key: [] for key in entries}
    pending = [entries[item.id] for item in items if item.id in entries]
    pushed_before = {item.id for item in items if item.attempts}
    unknown = [entry for entry in pending if entry.key in pushed_before]
    outage_waits = 0
    while pending:
        retry_after: float | None = None
        connection = gateway.connection
        started_at, start = utcnow(), time.perf_counter()
        try:
            if unknown:
                found = await gateway.find(unknown)
                for key, external_id in found.items():
                    moves[key] = _moved(key, ItemStatus.SUCCESS, attempts, external_id)
                pending, unknown = [entry for entry in pending if entry.key not in found], []
                if not pending:
                    break
            keys = [entry.key for entry in pending]
            async with gateway.turn("push", keys) as ledger, deps.pushes:  # our turn, a slot
                started_at, start = utcnow(), time.perf_counter()  # the call, not the wait
                try:
                    outcomes = await ledger.push(pending)
                finally:
                    PUSH_SECONDS.labels(connection.provider).observe(time.perf_counter() - start)
        except LedgerError as exc:
            error, retry_after = exc.error, exc.retry_after
        except (DBAPIError, RedisError) as exc:  # our own database or Redis: not the ledger's
            outage_waits += 1
            if not is_outage(exc) or outage_waits > OUTAGE_WAITS:
                raise
            log.warning(
                "push interrupted by our own outage: %r; again in %ss",
                exc,
                OUTAGE_RETRY_SECONDS,
                extra={"batch_id": items[0].batch_id},
            )
            await asyncio.sleep(OUTAGE_RETRY_SECONDS)  # no attempt spent (the keys make a
            continue  # post that did happen a no-op)
        except Exception as exc:  # an adapter's bug or an unclassified vendor failure: transient
            log.exception("push failed unexpectedly", extra={"batch_id": items[0].batch_id})
            message = f"The accounting system failed unexpectedly ({type(exc).__name__})."
            error = SyncError(SyncErrorCode.PROVIDER_ERROR, message)
        else:
            took = _ms_since(start)
            again = []
            for entry, outcome in zip(pending, outcomes, strict=True):
                failure = outcome.error if isinstance(outcome, LedgerError) else None
                attempts[entry.key].append(Attempt(started_at, took, failure))
                if failure is None:
                    moves[entry.key] = _moved(entry.key, ItemStatus.SUCCESS, attempts, str(outcome))
                elif (
                    failure.code in TRANSIENT
                    and len(attempts[entry.key]) < settings.max_push_attempts
                ):
                    again.append(entry)
                else:
                    moves[entry.key] = _moved(entry.key, ItemStatus.FAILED, attempts, error=failure)
            pending = again
            if pending:
                await asyncio.sleep(backoff(len(attempts[pending[0].key]), None, settings))
            continue
        took = _ms_since(start)
        for entry in pending:
            attempts[entry.key].append(Attempt(started_at, took, error))
        tries = len(attempts[pending[0].key])
        following = await retries.after(error, retry_after, tries=tries, used=connection)
        if following is Next.PENDING:  # e.g. a daily limit: the job is deferred
            return _all(moves, pending, ItemStatus.PENDING, attempts)
        if following is Next.FAILED:
            return _all(moves, pending, ItemStatus.FAILED, attempts, error=error)
    return [moves[item.id] for item in items]


async def settle(deps: WorkerContext, batch_id: str, moves: list[ItemMove]) -> list[ItemMove]:
    """Record the chunk's outcomes in one transition. When the database refuses it (a value it
    cannot hold), record them one by one: the item it refuses fails with PROVIDER_ERROR, and
    the rest of the chunk is recorded as it went."""
    db, bus = deps.services.db, deps.services.bus
    try:
        await transition(db, bus=bus, batch_id=batch_id, moves=moves)
        return moves
    except DBAPIError as exc:
        if is_outage(exc):
            raise
    settled = []
    for move in moves:
        try:
            await transition(db, bus=bus, batch_id=batch_id, moves=[move])
        except DBAPIError as exc:
            if is_outage(exc):
                raise
            message = f"The outcome could not be recorded ({refused_because(exc)})."
            error = SyncError(SyncErrorCode.PROVIDER_ERROR, message)
            move = ItemMove(move.item_id, ItemStatus.FAILED, error=error, attempts=move.attempts)
            await transition(db, bus=bus, batch_id=batch_id, moves=[move])
        settled.append(move)
    return settled


def _loaded(items: Sequence[SyncItem]) -> tuple[dict[str, Entry], dict[str, ItemMove]]:
    """Each item's record, by item id; an item whose stored record no longer validates (a row
    written by hand, or by an older version) fails alone, before any push."""
    entries: dict[str, Entry] = {}
    moves: dict[str, ItemMove] = {}
    for item in items:
        try:
            entries[item.id] = Entry(item.id, load_record(item.payload))
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            message = (
                f"The stored record is not valid ({where}: {problem['msg']}); create it again."
            )
            error = SyncError(SyncErrorCode.PROVIDER_ERROR, message)
            moves[item.id] = ItemMove(item.id, ItemStatus.FAILED, error=error)
    return entries, moves


def _moved(
    key: str,
    to: ItemStatus,
    attempts: dict[str, list[Attempt]],
    external_id: str | None = None,
    error: SyncError | None = None,
) -> ItemMove:
    return ItemMove(key, to, error=error, external_id=external_id, attempts=attempts[key])


def _all(
    moves: dict[str, ItemMove],
    pending: Sequence[Entry],
    to: ItemStatus,
    attempts: dict[str, list[Attempt]],
    error: SyncError | None = None,
) -> list[ItemMove]:
    """Every item's move: the ones settled, and the rest moved `to`."""
    rest = {e.key: _moved(e.key, to, attempts, error=error) for e in pending}
    return list({**moves, **rest}.values())


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
