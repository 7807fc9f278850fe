"""The sandbox ledger's adapter: validates and posts records the way a real ledger does.

Its books live in our database (`ledgers.books`, reached through its `Books`) and its call
counters in Redis, so the API process and every worker see the same ledger. A push posts up
to `DOCUMENTS_PER_CALL` records in one transaction, each checked on its own, as Xero's
`summarizeErrors=false` does. It answers with Xero's wording, which the classification maps
from, and misbehaves as configured per company (`sandbox configure`): a per-minute rate limit
and a concurrency limit (429 with Retry-After, as Xero's), 503s, latency, posts recorded yet
answered with a timeout, and revoked tokens. Its tokens are real: random, expiring, the
refresh token single-use (`models.sandbox.SandboxGrant`).
"""

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from infra import keys
from infra.services import Services
from ledgers.books import BASE_CURRENCY, CURRENCIES, STANDARD_TRACKING, Books, BooksChart
from ledgers.protocol import (
    Account,
    Change,
    Currencies,
    Entry,
    File,
    Limits,
    Outcome,
    Remaining,
    TaxRate,
    TrackingCategory,
    Written,
)
from models.enums import PAYMENT_ACCOUNT_TYPES
from models.errors import LedgerError, SyncErrorCode
from models.records import Bill, Expense, Invoice
from models.sandbox import SandboxBehaviour
from models.secrets import Tokens

CALL_SECONDS = 30.0  # the longest a call counts as in flight
DOCUMENTS_PER_CALL = 50  # as Xero, unless configured


class SandboxLedger:
    def __init__(self, services: Services, *, company_id: str, tokens: Tokens | None) -> None:
        self.books = Books(services.db, company_id=company_id)
        self.redis = services.redis
        self.settings = services.settings
        self.company_id = company_id
        self.tokens = tokens
        self._refreshes = keys.sandbox(company_id, "refreshes")

    async def limits(self) -> Limits:
        return self._limits(await self.books.behaviour())

    def _limits(self, knobs: SandboxBehaviour) -> Limits:
        return Limits(
            per_minute=knobs.rate_limit_per_minute or self.settings.sandbox_rate_limit_per_minute,
            concurrent=knobs.max_concurrent or self.settings.sandbox_max_concurrent,
            documents_per_call=knobs.documents_per_call or DOCUMENTS_PER_CALL,
            attachment_bytes=self.settings.sandbox_attachment_bytes,
            per_day=self.settings.sandbox_daily_limit,
            app_per_minute=self.settings.sandbox_app_rate_limit_per_minute,
        )

    async def remaining(self) -> Remaining:
        """As Xero's headers say: what is left of the company's minute."""
        limits = await self.limits()
        calls = await self.redis.get(self._minute(time.time()))
        return Remaining(this_minute=max(0, limits.per_minute - int(calls or 0)))

    def _minute(self, now: float) -> str:
        return keys.sandbox(self.company_id, f"minute:{int(now // 60)}")

    async def refresh(self) -> Tokens:
        fresh = None if self.tokens is None else await self.books.refresh(self.tokens.refresh_token)
        if fresh is None:
            raise LedgerError(
                SyncErrorCode.CONNECTION_EXPIRED,
                "400 invalid_grant: the refresh token has expired, was used or was revoked.",
            )
        await self.redis.incr(self._refreshes)
        return fresh

    async def refreshes(self) -> int:
        """How many times its token was refreshed, for tests that check it happens once."""
        return int(await self.redis.get(self._refreshes) or 0)

    async def reconnect(self) -> Tokens:
        return await self.books.grant()

    async def push(self, entries: Sequence[Entry]) -> list[Outcome]:
        return await self._write(len(entries), lambda: self.books.post(entries, _validate))

    async def update(self, changes: Sequence[Change]) -> list[Outcome]:
        return await self._write(len(changes), lambda: self.books.change(changes, _validate))

    async def void(self, changes: Sequence[Change]) -> list[Outcome]:
        return await self._write(len(changes), lambda: self.books.change(changes, _validate))

    async def versions(self, changes: Sequence[Change]) -> dict[str, str | None]:
        """Each document's version (the sandbox refuses stale changes itself, as QuickBooks)."""
        async with self._call(self._limits(await self._gate())):
            return await self.books.versions(changes)

    async def held(self, changes: Sequence[Change]) -> dict[str, Written]:
        """The sandbox keeps each document's content and status: they are compared."""
        async with self._call(self._limits(await self._gate())):
            return await self.books.held(changes)

    async def _write(
        self, documents: int, write: Callable[[], Awaitable[list[Outcome]]]
    ) -> list[Outcome]:
        """One call that writes documents, as the company's sandbox is set to behave: its
        limits, its weather, and posts recorded yet answered with a timeout."""
        knobs = await self._gate()
        limits = self._limits(knobs)
        if documents > limits.documents_per_call:
            raise LedgerError(
                SyncErrorCode.VALIDATION_ERROR,
                f"400 Bad Request: at most {limits.documents_per_call} documents per call.",
            )
        async with self._call(limits):
            await _weather(knobs)
            outcomes = await write()
            if random.random() < knobs.timeout_rate:
                raise LedgerError(
                    SyncErrorCode.PROVIDER_ERROR,
                    "The request timed out; the ledger may or may not have recorded it.",
                )
            return outcomes

    async def attach(self, document_id: str, entry: Entry, file: File) -> str:
        """Kept in the sandbox's books, which check what arrived against the size and SHA-256."""
        knobs = await self._gate()
        limits = self._limits(knobs)
        if file.size > limits.attachment_bytes:
            raise LedgerError(
                SyncErrorCode.ATTACHMENT_TOO_LARGE,
                f"413 Payload Too Large: attachments are at most {limits.attachment_bytes} bytes.",
            )
        async with self._call(limits):
            await _weather(knobs)
            return await self.books.attach(document_id, file)

    async def find(self, entries: Sequence[Entry]) -> dict[str, Written]:
        """The sandbox keeps each post's key: the records are looked up by it."""
        async with self._call(self._limits(await self._gate())):
            return await self.books.found([entry.key for entry in entries])

    async def _gate(self) -> SandboxBehaviour:
        knobs, allowed = await self.books.gate(self.tokens.access_token if self.tokens else None)
        if not allowed:
            raise LedgerError(
                SyncErrorCode.CONNECTION_EXPIRED,
                "401 Unauthorized: the access token has expired or was revoked.",
            )
        return knobs

    @asynccontextmanager
    async def _call(self, limits: Limits) -> AsyncIterator[None]:
        """Count the call against the company's minute and its calls in flight, as Xero does.

        A call in flight is a member of a sorted set scored by when it began, and counts for
        at most `CALL_SECONDS`: a caller that died mid-call does not hold its place forever."""
        now = time.time()
        minute = self._minute(now)
        in_flight = keys.sandbox(self.company_id, "in-flight")
        call = uuid.uuid4().hex
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(minute)
            pipe.expire(minute, 61)
            pipe.zremrangebyscore(in_flight, "-inf", now - CALL_SECONDS)
            pipe.zadd(in_flight, {call: now})
            pipe.expire(in_flight, int(CALL_SECONDS) + 1)
            pipe.zcard(in_flight)
            calls, _, _, _, _, running = await pipe.execute()
        try:
            if calls > limits.per_minute:
                raise LedgerError(
                    SyncErrorCode.RATE_LIMIT_EXCEEDED,
                    f"429 Too Many Requests: more than {limits.per_minute} calls this minute "
                    "(X-Rate-Limit-Problem: minute).",
                    retry_after=60 - now % 60,
                )
            if running > limits.concurrent:
                raise LedgerError(
                    SyncErrorCode.RATE_LIMIT_EXCEEDED,
                    f"429 Too Many Requests: more than {limits.concurrent} calls at once "
                    "(X-Rate-Limit-Problem: concurrent).",
                    retry_after=1,
                )
            yield
        finally:
            await self.redis.zrem(in_flight, call)

    async def accounts(self) -> list[Account]:
        return await self.books.accounts()

    async def tax_rates(self) -> list[TaxRate]:
        return await self.books.tax_rates()

    async def currencies(self) -> Currencies:
        return Currencies(BASE_CURRENCY, CURRENCIES)

    async def tracking_categories(self) -> list[TrackingCategory]:
        return [TrackingCategory(name, options) for name, options in STANDARD_TRACKING.items()]

    async def create_account(self, account: Account) -> Account:
        await self.books.add_account(account)
        return account

    async def create_tax_rate(self, tax_rate: TaxRate) -> TaxRate:
        await self.books.add_tax_rate(tax_rate)
        return tax_rate


async def _weather(knobs: SandboxBehaviour) -> None:
    """What every call meets, as configured: its latency, then maybe a transient failure."""
    if knobs.latency_ms:
        await asyncio.sleep(knobs.latency_ms / 1000)
    if random.random() < knobs.transient_error_rate:
        raise LedgerError(
            SyncErrorCode.PROVIDER_ERROR, "503 Service Unavailable: try again shortly."
        )


def _validate(record: Expense | Bill | Invoice, chart: BooksChart) -> None:
    """Refuse what a ledger refuses: unknown codes, the wrong kind of account, a currency the
    books have not enabled, tracking they do not keep, empty totals."""
    if record.currency not in CURRENCIES:
        raise LedgerError(
            SyncErrorCode.VALIDATION_ERROR,
            f"The currency {record.currency} is not enabled for this organisation: ask the"
            f" accountant to enable {record.currency}.",
        )
    for line in record.document_lines:
        kind = chart.accounts.get(line.account_id)
        if kind is None:
            raise LedgerError(
                SyncErrorCode.INVALID_ACCOUNT_ID,
                f"Account code '{line.account_id}' is not a valid code for this document.",
            )
        if kind not in record.account_types:
            raise LedgerError(
                SyncErrorCode.VALIDATION_ERROR,
                f"Account code '{line.account_id}' is a {kind.value} account "
                f"and cannot be used on {record.kind}.",
            )
        if line.tax_rate_id is not None and line.tax_rate_id not in chart.tax_rates:
            raise LedgerError(
                SyncErrorCode.INVALID_TAX_RATE_ID,
                f"The TaxType code '{line.tax_rate_id}' is not a valid tax type.",
            )
        for tracking in line.tracking:
            options = STANDARD_TRACKING.get(tracking.category)
            if options is None or tracking.option not in options:
                raise LedgerError(
                    SyncErrorCode.VALIDATION_ERROR,
                    f"The tracking option '{tracking.option}' of category"
                    f" '{tracking.category}' does not exist or is archived.",
                )
    if isinstance(record, Expense) and record.payment_account_id is not None:
        paying = chart.accounts.get(record.payment_account_id)
        if paying not in PAYMENT_ACCOUNT_TYPES:
            raise LedgerError(
                SyncErrorCode.INVALID_ACCOUNT_ID,
                f"Account code '{record.payment_account_id}' is not a bank or credit card"
                " account: an expense is paid from one.",
            )
    if record.total <= 0:
        raise LedgerError(SyncErrorCode.VALIDATION_ERROR, "The document total must be positive.")
