"""A call of items to the ledger and what became of each: looked for first when pushed
before, pushed with their keys, retried as `jobs.retries` decides, and recorded in one
transition."""

import asyncio
import logging
import time
from collections.abc import Sequence

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from infra.db import is_outage, refused_because
from infra.metrics import PUSH_SECONDS
from jobs.context import WorkerContext
from jobs.retries import Next, Retries, backoff
from jobs.steps import Call, Step
from ledgers.gateway import Gateway
from ledgers.protocol import Change, Ledger, Outcome, Written
from models.enums import ItemStatus
from models.errors import TRANSIENT, LedgerError, SyncError, SyncErrorCode
from models.tables import utcnow
from models.transitions import Attempt, ItemMove, transition

log = logging.getLogger(__name__)

OUTAGE_RETRY_SECONDS = 1  # the first wait for our database or Redis; it doubles…
OUTAGE_WAITS = 5  # waits within one push before its job's outage handling takes over


async def push(deps: WorkerContext, gateway: Gateway, steps: Sequence[Step]) -> list[ItemMove]:
    """Make the steps' call (all of one kind: creates, updates or voids) in one call to the
    ledger (again, for those a transient failure left), retrying with backoff up to
    `max_push_attempts`, and return each item's move.

    Changes pushed before, by an earlier job or attempt whose outcome is unknown, are first
    looked for in the ledger (`held`): the ones it shows succeeded. (Creates are looked for
    before they are planned: `jobs.steps`.) A call that fails as a whole after the ledger may
    have written (a timeout, a dropped connection, a 5xx) is repeated identically, with the
    same idempotency key, so the ledger answers what it did.

    A refused access token is refreshed once and the call made again at once. A 429's
    Retry-After holds every call to the ledger (the limiter) for that long; when it is longer
    than `retry_max_seconds` (a daily limit), the items go back to PENDING and the batch's
    job is deferred until then, holding no worker meanwhile (`jobs.retries`). An outage of
    our own Redis or database spends no attempt."""
    settings = deps.services.settings
    retries = Retries(gateway, settings)
    by_key = {step.key: step for step in steps}
    moves: dict[str, ItemMove] = {}
    attempts: dict[str, list[Attempt]] = {key: [] for key in by_key}
    pending = list(by_key)
    changes = [step.change() for step in steps if step.call is not Call.CREATE]
    unknown = [change for change in changes if by_key[change.key].item.attempts]
    unchecked = (
        []
        if gateway.limiter.limits.refuses_stale
        else [c for c in changes if not c.force and c.version is not None]
    )
    outage_waits = 0
    batch_id = steps[0].item.batch_id if steps else ""
    while pending:
        retry_after: float | None = None
        connection = gateway.connection
        started_at, start = utcnow(), time.perf_counter()
        try:
            if unknown:
                for key, written in (await gateway.held(unknown)).items():
                    moves[key] = _moved(by_key[key], ItemStatus.SUCCESS, attempts, written)
                pending, unknown = [key for key in pending if key not in moves], []
            if unchecked:  # a ledger that takes stale changes: compare versions first
                current = await gateway.versions([c for c in unchecked if c.key in pending])
                for change in unchecked:
                    if change.key in current and current[change.key] != change.version:
                        conflict = _conflict(change, current[change.key])
                        attempts[change.key].append(Attempt(utcnow(), 0.0, conflict))
                        moves[change.key] = _moved(
                            by_key[change.key], ItemStatus.FAILED, attempts, error=conflict
                        )
                pending, unchecked = [key for key in pending if key not in moves], []
            if not pending:
                break
            async with gateway.turn(steps[0].call.span, pending) as ledger, deps.pushes:
                started_at, start = utcnow(), time.perf_counter()  # the call, not the wait
                try:
                    outcomes = await _call(ledger, [by_key[key] for key in pending])
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
                extra={"batch_id": batch_id},
            )
            await asyncio.sleep(OUTAGE_RETRY_SECONDS)  # no attempt spent (the keys make a
            continue  # post that did happen a no-op)
        except Exception as exc:  # an adapter's bug or an unclassified vendor failure: transient
            log.exception("push failed unexpectedly", extra={"batch_id": batch_id})
            message = f"The accounting system failed unexpectedly ({type(exc).__name__})."
            error = SyncError(SyncErrorCode.PROVIDER_ERROR, message)
        else:
            took = _ms_since(start)
            again = []
            for key, outcome in zip(pending, outcomes, strict=True):
                failure = outcome.error if isinstance(outcome, LedgerError) else None
                attempts[key].append(Attempt(started_at, took, failure))
                if not isinstance(outcome, LedgerError):
                    moves[key] = _moved(by_key[key], ItemStatus.SUCCESS, attempts, outcome)
                elif failure is not None and (
                    failure.code in TRANSIENT and len(attempts[key]) < settings.max_push_attempts
                ):
                    again.append(key)
                else:
                    moves[key] = _moved(by_key[key], ItemStatus.FAILED, attempts, error=failure)
            pending = again
            if pending:
                await asyncio.sleep(backoff(len(attempts[pending[0]]), None, settings))
            continue
        took = _ms_since(start)
        for key in pending:
            attempts[key].append(Attempt(started_at, took, error))
        tries = len(attempts[pending[0]])
        following = await retries.after(error, retry_after, tries=tries, used=connection)
        if following is Next.PENDING:  # e.g. a daily limit: the job is deferred
            return _all(moves, [by_key[key] for key in pending], ItemStatus.PENDING, attempts)
        if following is Next.FAILED:
            rest = [by_key[key] for key in pending]
            return _all(moves, rest, ItemStatus.FAILED, attempts, error=error)
    return [moves[step.key] for step in steps]


async def _call(ledger: Ledger, steps: Sequence[Step]) -> list[Outcome]:
    """The ledger call that makes the steps: all creates, updates or voids."""
    kind = steps[0].call
    if kind is Call.CREATE:
        return await ledger.push([step.entry() for step in steps])
    changes = [step.change() for step in steps]
    return await (ledger.update(changes) if kind is Call.UPDATE else ledger.void(changes))


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


def _conflict(change: Change, version: str | None) -> SyncError:
    return SyncError(
        SyncErrorCode.LEDGER_CONFLICT,
        f"Document {change.external_id} was changed in the ledger since our last push"
        f" (version {change.version}, now {version}).",
    )


def _moved(
    step: Step,
    to: ItemStatus,
    attempts: dict[str, list[Attempt]],
    written: Written | None = None,
    error: SyncError | None = None,
) -> ItemMove:
    if written is None:
        return ItemMove(step.item.id, to, error=error, attempts=attempts[step.key])
    return ItemMove(
        step.item.id,
        to,
        external_id=written.external_id,
        attempts=attempts[step.key],
        applied=step.applied(written.external_id, written.version),
    )


def _all(
    moves: dict[str, ItemMove],
    pending: Sequence[Step],
    to: ItemStatus,
    attempts: dict[str, list[Attempt]],
    error: SyncError | None = None,
) -> list[ItemMove]:
    """Every item's move: the ones settled, and the rest moved `to`."""
    rest = {step.key: _moved(step, to, attempts, error=error) for step in pending}
    return list({**moves, **rest}.values())


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
