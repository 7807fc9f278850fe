"""The one way to a ledger: every call of a connection, the API's reads and the worker's pushes
alike, waits its turn in the connection's budget (`Limiter`, in Redis, shared by every
process) before it goes out. A frontend polling `accounts` then slows the sync down a little
instead of spending the ledger's minute and causing 429s.

The gateway also keeps the connection usable (its token refreshed before it expires, or once
the ledger refuses it) and the chart that preflight checks against (`ledgers.chart`),
forgotten when an account or a tax rate is created through it.
"""

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from infra.services import Services
from infra.tracing import tracer
from ledgers import chart
from ledgers.limiter import Limiter
from ledgers.protocol import (
    Account,
    Change,
    Currencies,
    Entry,
    Ledger,
    LedgerFactory,
    Limits,
    TaxRate,
    TrackingCategory,
    Written,
)
from ledgers.refresh import usable_connection
from models.batch import progress_completion
from models.enums import ConnectionStatus, LimitHold
from models.secrets import Tokens
from models.tables import Connection, SyncBatch

T = TypeVar("T")


@dataclass(frozen=True)
class Budget:
    """A connection's limits and what is left of them: as the ledger last said where it
    says (Xero), else from our own count of the calls made through the gateway."""

    limits: Limits
    remaining_this_minute: int
    remaining_today: int | None
    app_remaining_this_minute: int | None  # None: the app has no such limit
    held_by: LimitHold | None  # the limit putting the next call off now; None: it could go now


async def limits(ledger_for: LedgerFactory, connection: Connection) -> Limits:
    """What the connection's ledger allows (its configuration: no call to the ledger)."""
    return await ledger_for(connection).limits()


async def budget(services: Services, ledger_for: LedgerFactory, connection: Connection) -> Budget:
    """The connection's budget, read without a call to the ledger."""
    ledger = ledger_for(connection)
    limits = await ledger.limits()
    said = await ledger.remaining()
    limiter = _limiter(services, connection, limits)
    this_minute, today = await limiter.used()
    app = await limiter.app_left()
    slot = await limiter.next_slot()
    if said.today is not None:
        remaining_today: int | None = said.today
    else:
        remaining_today = None if limits.per_day is None else max(0, limits.per_day - today)
    return Budget(
        limits,
        remaining_this_minute=(
            said.this_minute
            if said.this_minute is not None
            else max(0, limits.per_minute - this_minute)
        ),
        remaining_today=remaining_today,
        app_remaining_this_minute=None if app is None else max(0, app),
        held_by=slot.held_by,
    )


@dataclass(frozen=True)
class Pace:
    """How fast the connection takes documents: after the calls already given their slots
    (`wait_seconds`), `documents_per_second` at its rate, each call full; and within its
    calls a day, if it has such a limit."""

    wait_seconds: float
    documents_per_second: float
    documents_per_call: int = 1
    per_day: int | None = None
    calls_left_today: int | None = None
    held_by: LimitHold | None = None  # the limit putting the connection's next call off now

    def beyond_today(self, documents: int) -> bool:
        """Whether the documents need more calls than are left of today's."""
        if self.calls_left_today is None:
            return False
        return -(-documents // self.documents_per_call) > self.calls_left_today

    def done_at(self, documents: int, now: datetime) -> datetime:
        """When the last of `documents` should have gone: past today's calls, the rest go
        after midnight UTC, a day's calls a day."""
        if not self.beyond_today(documents) or self.per_day is None:
            return now + timedelta(
                seconds=self.wait_seconds + documents / self.documents_per_second
            )
        rest = -(-documents // self.documents_per_call) - (self.calls_left_today or 0)
        days, calls = divmod(rest - 1, self.per_day)
        midnight = datetime.combine(now.date() + timedelta(days=1 + days), datetime.min.time(), UTC)
        seconds_a_call = self.documents_per_call / self.documents_per_second
        return midnight + timedelta(seconds=(calls + 1) * seconds_a_call)


def completion_estimate(
    batch: SyncBatch, ahead: int | None, pace: Pace | None, now: datetime
) -> datetime | None:
    """When an unfinished batch should be done: at the connection's `pace`, once the
    documents queued before it (`ahead`) have gone, or at the pace it has gone so far,
    whichever is later; None when neither is known."""
    by_rate = None if ahead is None or pace is None else pace.done_at(ahead, now)
    estimates = [e for e in (by_rate, progress_completion(batch, now)) if e is not None]
    return max(estimates, default=None)


async def pace(services: Services, ledger_for: LedgerFactory, connection: Connection) -> Pace:
    allowed = await limits(ledger_for, connection)
    limiter = _limiter(services, connection, allowed)
    slot = await limiter.next_slot()
    _, today = await limiter.used()
    return Pace(
        slot.wait,
        allowed.per_minute / 60 * allowed.documents_per_call,
        allowed.documents_per_call,
        allowed.per_day,
        None if allowed.per_day is None else max(0, allowed.per_day - today),
        slot.held_by,
    )


def _limiter(services: Services, connection: Connection, limits: Limits) -> Limiter:
    return Limiter(
        services.redis,
        connection_id=connection.id,
        provider=connection.provider,
        limits=limits,
        lease_seconds=services.settings.job_timeout_seconds,
    )


class Gateway:
    def __init__(
        self,
        services: Services,
        ledger_for: LedgerFactory,
        connection: Connection,
        ledger: Ledger,
        limiter: Limiter,
    ) -> None:
        self.services = services
        self.ledger_for = ledger_for
        self.connection = connection
        self.ledger = ledger
        self.limiter = limiter

    @classmethod
    async def open(
        cls, services: Services, ledger_for: LedgerFactory, connection: Connection
    ) -> "Gateway":
        """The connection's gateway, its access token refreshed first if it is expiring."""
        connection = await usable_connection(services, ledger_for, connection)
        ledger = ledger_for(connection)
        limiter = _limiter(services, connection, await ledger.limits())
        return cls(services, ledger_for, connection, ledger, limiter)

    async def usable(self, *, refused: Connection | None = None) -> bool:
        """Whether the connection still works, its token refreshed first if it is expiring,
        or if the ledger `refused` the tokens of that copy (unless a call beside this one has
        already renewed them: a worker's calls run at once)."""
        seen = refused or self.connection
        fresh = await usable_connection(
            self.services, self.ledger_for, seen, force=refused is not None
        )
        if fresh is not seen:  # read under the refresh lock: the newest there is
            self.connection, self.ledger = fresh, self.ledger_for(fresh)
        return fresh.status is ConnectionStatus.ACTIVE

    @asynccontextmanager
    async def turn(self, operation: str, item_ids: Sequence[str] = ()) -> AsyncIterator[Ledger]:
        """The adapter, once the connection's budget allows one call: make exactly one.
        A push is one call, however many documents it carries. The call is a span,
        `ledger <operation>`, naming the items it carries and how long it waited its turn."""
        queued = time.perf_counter()
        async with self.limiter.call():
            attributes: dict[str, AttributeValue] = {
                "sync2books.provider": self.connection.provider,
                "sync2books.company_id": self.connection.company_id,
                "sync2books.connection_id": self.connection.id,
                "sync2books.ledger.wait_ms": round((time.perf_counter() - queued) * 1000, 1),
            }
            if item_ids:
                attributes["sync2books.item_ids"] = list(item_ids)
            with tracer.start_as_current_span(
                f"ledger {operation}", kind=SpanKind.CLIENT, attributes=attributes
            ):
                yield self.ledger

    async def _paced(
        self, operation: str, call: Callable[[Ledger], Awaitable[T]], item_ids: Sequence[str] = ()
    ) -> T:
        async with self.turn(operation, item_ids) as ledger:
            return await call(ledger)

    async def find(self, entries: Sequence[Entry]) -> dict[str, Written]:
        keys = [entry.key for entry in entries]
        return await self._paced("find", lambda ledger: ledger.find(entries), keys)

    async def versions(self, changes: Sequence[Change]) -> dict[str, str | None]:
        keys = [change.key for change in changes]
        return await self._paced("versions", lambda ledger: ledger.versions(changes), keys)

    async def held(self, changes: Sequence[Change]) -> dict[str, Written]:
        keys = [change.key for change in changes]
        return await self._paced("held", lambda ledger: ledger.held(changes), keys)

    async def accounts(self) -> list[Account]:
        return await self._paced("accounts", lambda ledger: ledger.accounts())

    async def reconnect(self) -> Tokens:
        """New tokens from a ledger that grants them without its user (the sandbox)."""
        return await self._paced("reconnect", lambda ledger: ledger.reconnect())

    async def tax_rates(self) -> list[TaxRate]:
        return await self._paced("tax_rates", lambda ledger: ledger.tax_rates())

    async def tracking_categories(self) -> list[TrackingCategory]:
        return await self._paced("tracking_categories", lambda ledger: ledger.tracking_categories())

    async def currencies(self) -> Currencies:
        return await self._paced("currencies", lambda ledger: ledger.currencies())

    async def chart(self) -> chart.Chart:
        """The chart preflight checks against: from the cache, else four paced reads."""
        redis, connection_id = self.services.redis, self.connection.id
        return await chart.cached(
            redis,
            connection_id,
            chart.Readers(self.accounts, self.tax_rates, self.tracking_categories, self.currencies),
        )

    async def create_account(self, account: Account) -> Account:
        created = await self._paced("create_account", lambda ledger: ledger.create_account(account))
        await chart.forget(self.services.redis, connection_id=self.connection.id)
        return created

    async def create_tax_rate(self, tax_rate: TaxRate) -> TaxRate:
        created = await self._paced(
            "create_tax_rate", lambda ledger: ledger.create_tax_rate(tax_rate)
        )
        await chart.forget(self.services.redis, connection_id=self.connection.id)
        return created
