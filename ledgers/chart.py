"""Preflight: find the records a ledger would refuse before anything is queued.

Checks every record's currency (enabled), every line's account (known, and of a class the
record may post to), tax rate and tracking (an active option of an active category), and an
expense's payment account (a bank or credit card), against the ledger's chart. The chart is
read through the gateway once per `CHART_SECONDS` and connection, and kept in Redis so every
API process shares it; creating an account or a tax rate through the gateway forgets it.
"""

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from redis.asyncio import Redis

from infra import keys
from ledgers.protocol import Account, Currencies, TaxRate, TrackingCategory
from models.enums import PAYMENT_ACCOUNT_TYPES, AccountType
from models.errors import HINTS, SyncErrorCode
from models.records import Bill, Expense, Invoice, Line

CHART_SECONDS = 300


@dataclass(frozen=True)
class Problem:
    """What the ledger would refuse, where: `field` is the GraphQL path of the bad value."""

    index: int
    field: str
    code: SyncErrorCode
    message: str

    @property
    def hint(self) -> str:
        return HINTS[self.code]


@dataclass(frozen=True)
class Chart:
    accounts: dict[str, AccountType]
    tax_rates: dict[str, Decimal]  # percent, by code
    tracking: dict[str, frozenset[str]]  # active categories and their active options
    currencies: Currencies


@dataclass(frozen=True)
class Readers:
    """How the chart is read from the ledger, one paced call each."""

    accounts: Callable[[], Awaitable[list[Account]]]
    tax_rates: Callable[[], Awaitable[list[TaxRate]]]
    tracking: Callable[[], Awaitable[list[TrackingCategory]]]
    currencies: Callable[[], Awaitable[Currencies]]


def _key(connection_id: str) -> str:
    return keys.chart(connection_id)


async def cached(redis: Redis, connection_id: str, read: Readers) -> Chart:
    """The connection's chart from the cache, else read from the ledger."""
    stored_chart = await redis.get(_key(connection_id))
    if stored_chart is not None:
        stored = json.loads(stored_chart)
        return Chart(
            stored["accounts"],
            {code: Decimal(rate) for code, rate in stored["taxRates"].items()},
            {name: frozenset(options) for name, options in stored["tracking"].items()},
            Currencies(stored["baseCurrency"], frozenset(stored["currencies"])),
        )
    found = Chart(
        {account.code: account.type for account in await read.accounts()},
        {rate.code: rate.rate for rate in await read.tax_rates()},
        {c.name: frozenset(c.options) for c in await read.tracking() if c.active},
        await read.currencies(),
    )
    stored = {
        "accounts": found.accounts,
        "taxRates": {code: str(rate) for code, rate in found.tax_rates.items()},
        "tracking": {name: sorted(options) for name, options in found.tracking.items()},
        "baseCurrency": found.currencies.base,
        "currencies": sorted(found.currencies.enabled),
    }
    await redis.set(_key(connection_id), json.dumps(stored), ex=CHART_SECONDS)
    return found


async def forget(redis: Redis, *, connection_id: str) -> None:
    await redis.delete(_key(connection_id))


def problems(
    records: Sequence[Expense | Bill | Invoice], chart: Chart, *, field: str
) -> list[Problem]:
    """Every reference the chart does not allow, in record order."""
    found = []
    for index, record in enumerate(records):
        if record.currency not in chart.currencies.enabled:
            message = (
                f"The ledger has not enabled {record.currency} (its base currency is"
                f" {chart.currencies.base}): ask the accountant to enable {record.currency}."
            )
            where = f"{field}.{index}.currency"
            found.append(Problem(index, where, SyncErrorCode.VALIDATION_ERROR, message))
        for path, line in _lines(record, f"{field}.{index}"):
            account_type = chart.accounts.get(line.account_id)
            if account_type is None:
                message = f"Account code '{line.account_id}' is not in the ledger's chart."
                found.append(
                    Problem(index, f"{path}.accountId", SyncErrorCode.INVALID_ACCOUNT_ID, message)
                )
            elif account_type not in record.account_types:
                message = (
                    f"Account code '{line.account_id}' is a {account_type} account "
                    f"and cannot be used on {record.kind}."
                )
                found.append(
                    Problem(index, f"{path}.accountId", SyncErrorCode.VALIDATION_ERROR, message)
                )
            if line.tax_rate_id is not None and line.tax_rate_id not in chart.tax_rates:
                message = f"Tax rate '{line.tax_rate_id}' is not in the ledger's tax rates."
                found.append(
                    Problem(index, f"{path}.taxRateId", SyncErrorCode.INVALID_TAX_RATE_ID, message)
                )
            found += _tracking_problems(index, path, line, chart)
        if isinstance(record, Expense) and record.payment_account_id is not None:
            kind = chart.accounts.get(record.payment_account_id)
            if kind not in PAYMENT_ACCOUNT_TYPES:
                message = (
                    f"Account code '{record.payment_account_id}' is not a bank or credit card"
                    " account of the ledger: an expense is paid from one."
                )
                where = f"{field}.{index}.paymentAccountId"
                found.append(Problem(index, where, SyncErrorCode.INVALID_ACCOUNT_ID, message))
    return found


def _tracking_problems(index: int, path: str, line: Line, chart: Chart) -> list[Problem]:
    found = []
    for n, tracking in enumerate(line.tracking):
        options = chart.tracking.get(tracking.category)
        if options is None:
            known = ", ".join(sorted(chart.tracking)) or "none"
            message = (
                f"Tracking category '{tracking.category}' is not an active category of the"
                f" ledger (it has: {known})."
            )
            where = f"{path}.tracking.{n}.category"
        elif tracking.option not in options:
            message = (
                f"Tracking option '{tracking.option}' is not an active option of"
                f" '{tracking.category}' (it has: {', '.join(sorted(options))})."
            )
            where = f"{path}.tracking.{n}.option"
        else:
            continue
        found.append(Problem(index, where, SyncErrorCode.VALIDATION_ERROR, message))
    return found


def _lines(record: Expense | Bill | Invoice, path: str) -> list[tuple[str, Line]]:
    """Each line with its GraphQL path: an unsplit expense's one line is the expense itself."""
    if isinstance(record, Expense) and record.lines is None:
        return [(path, line) for line in record.document_lines]
    return [(f"{path}.lines.{n}", line) for n, line in enumerate(record.document_lines)]
