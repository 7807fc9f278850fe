"""The sandbox ledger's own books: a built-in accounting system that lives in our database.

It plays a third party, so only `ledgers.sandbox` posts to it, through `Books`, each method
one transaction of its own; the session functions serve company creation and the `sandbox`
CLI (what was posted, how it misbehaves). Its chart is seeded like Xero's demo company. Its
tables are declared in `models.sandbox`, beside every other table.
"""

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    String,
    bindparam,
    delete,
    insert,
    literal,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col, select

from infra.db import Database, is_outage, refused_because
from ledgers.protocol import Account, Change, Entry, File, Outcome, TaxRate, Written
from models.enums import AccountType
from models.errors import Conflict, InvalidInput, LedgerError, NotFound, SyncErrorCode
from models.records import Bill, Expense, Invoice, dump_record, load_record
from models.sandbox import (
    SandboxAccount,
    SandboxAttachment,
    SandboxBehaviour,
    SandboxGrant,
    SandboxRecord,
    SandboxTaxRate,
)
from models.secrets import Tokens
from models.tables import Connection, new_id, utcnow

TOKEN_LIFETIME = timedelta(minutes=30)  # as Xero's access tokens
ACTIVE, VOIDED = "ACTIVE", "VOIDED"  # a document's status

STANDARD_ACCOUNTS = [
    Account("200", "Sales", AccountType.REVENUE),
    Account("260", "Other Revenue", AccountType.OTHERINCOME),
    Account("270", "Interest Income", AccountType.OTHERINCOME),
    Account("310", "Cost of Goods Sold", AccountType.DIRECTCOSTS),
    Account("400", "Advertising", AccountType.OVERHEADS),
    Account("404", "Bank Fees", AccountType.OVERHEADS),
    Account("408", "Cleaning", AccountType.OVERHEADS),
    Account("412", "Consulting & Accounting", AccountType.EXPENSE),
    Account("420", "Entertainment", AccountType.EXPENSE),
    Account("425", "Freight & Courier", AccountType.EXPENSE),
    Account("429", "General Expenses", AccountType.EXPENSE),
    Account("433", "Insurance", AccountType.EXPENSE),
    Account("441", "Legal Expenses", AccountType.EXPENSE),
    Account("445", "Light, Power, Heating", AccountType.EXPENSE),
    Account("449", "Motor Vehicle Expenses", AccountType.EXPENSE),
    Account("453", "Office Expenses", AccountType.EXPENSE),
    Account("461", "Printing & Stationery", AccountType.EXPENSE),
    Account("469", "Rent", AccountType.OVERHEADS),
    Account("473", "Repairs and Maintenance", AccountType.EXPENSE),
    Account("485", "Subscriptions", AccountType.EXPENSE),
    Account("489", "Telephone & Internet", AccountType.EXPENSE),
    Account("493", "Travel - National", AccountType.EXPENSE),
    Account("494", "Travel - International", AccountType.EXPENSE),
    Account("090", "Business Bank Account", AccountType.BANK),
    Account("091", "Business Savings Account", AccountType.BANK),
    Account("092", "Company Credit Card", AccountType.CREDITCARD),
]

STANDARD_TAX_RATES = [
    TaxRate("NONE", "No Tax", Decimal("0")),
    TaxRate("INPUT", "Tax on Purchases", Decimal("15")),
    TaxRate("OUTPUT", "Tax on Sales", Decimal("15")),
    TaxRate("EXEMPTINPUT", "Exempt Purchases", Decimal("0")),
    TaxRate("EXEMPTOUTPUT", "Exempt Sales", Decimal("0")),
]

STANDARD_TRACKING = {"Region": ("North", "South"), "Department": ("Sales", "Operations")}
BASE_CURRENCY = "USD"
CURRENCIES = frozenset({BASE_CURRENCY, "EUR", "GBP"})  # the ones the books have enabled


@dataclass(frozen=True)
class BooksChart:
    """What a check sees of the books: the accounts asked about (with their class) and the
    tax rates (with their percentages)."""

    accounts: dict[str, AccountType]
    tax_rates: dict[str, Decimal]


async def behaviour(session: AsyncSession, *, company_id: str) -> SandboxBehaviour:
    found = await session.get(SandboxBehaviour, company_id)
    return found if found is not None else SandboxBehaviour(company_id=company_id)


async def configure(
    session: AsyncSession, *, company_id: str, **changes: int | float | bool | None
) -> SandboxBehaviour:
    """Change the named knobs of a company's sandbox, keeping the others."""
    row = await behaviour(session, company_id=company_id)
    for name, value in changes.items():
        setattr(row, name, value)
    session.add(row)
    return row


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_tokens() -> tuple[Tokens, dict[str, Any]]:  # Any: column values
    tokens = Tokens(
        access_token=secrets.token_urlsafe(32),
        refresh_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + TOKEN_LIFETIME,
    )
    columns = {
        "access_digest": _digest(tokens.access_token),
        "access_expires_at": tokens.expires_at,
        "refresh_digest": _digest(tokens.refresh_token),
    }
    return tokens, columns


async def grant(session: AsyncSession, *, company_id: str) -> Tokens:
    """Connect (or reconnect) the company: new tokens, and the old ones stop working."""
    tokens, columns = _new_tokens()
    await revoke(session, company_id=company_id)
    session.add(SandboxGrant(company_id=company_id, **columns))
    return tokens


async def refresh(session: AsyncSession, *, company_id: str, refresh_token: str) -> Tokens | None:
    """New tokens for the current refresh token, None for any other. Single-use, as Xero's and
    QuickBooks': of callers racing with the same token, the conditional update lets one win."""
    tokens, columns = _new_tokens()
    result = await session.execute(
        update(SandboxGrant)
        .where(
            col(SandboxGrant.company_id) == company_id,
            col(SandboxGrant.refresh_digest) == _digest(refresh_token),
        )
        .values(**columns)
    )
    return tokens if result.rowcount == 1 else None  # type: ignore[attr-defined]


async def revoke(session: AsyncSession, *, company_id: str) -> None:
    """As when a user disconnects the app at the ledger: every token stops working."""
    await session.execute(delete(SandboxGrant).where(col(SandboxGrant.company_id) == company_id))


async def expire_access_token(session: AsyncSession, *, company_id: str) -> None:
    """As if the access token's 30 minutes had passed, at the ledger and in our connection: the
    next use must refresh it."""
    now = utcnow()
    await session.execute(
        update(SandboxGrant)
        .where(col(SandboxGrant.company_id) == company_id)
        .values(access_expires_at=now)
    )
    await session.execute(
        update(Connection).where(col(Connection.company_id) == company_id).values(expires_at=now)
    )


async def open_books(session: AsyncSession, company_id: str) -> Tokens:
    """A new company's books, with the standard chart of accounts and tax rates, and its
    first grant (`models.company.Connect`)."""
    seed(session, company_id=company_id)
    return await grant(session, company_id=company_id)


def seed(session: AsyncSession, *, company_id: str) -> None:
    """Give a newly connected company the standard chart of accounts and tax rates."""
    session.add_all(
        SandboxAccount(company_id=company_id, code=a.code, name=a.name, type=a.type)
        for a in STANDARD_ACCOUNTS
    )
    session.add_all(
        SandboxTaxRate(company_id=company_id, code=t.code, name=t.name, rate=str(t.rate))
        for t in STANDARD_TAX_RATES
    )


async def accounts(session: AsyncSession, *, company_id: str) -> list[Account]:
    rows = await session.scalars(
        select(SandboxAccount)
        .where(SandboxAccount.company_id == company_id)
        .order_by(col(SandboxAccount.code))
    )
    return [Account(r.code, r.name, r.type) for r in rows]


async def tax_rates(session: AsyncSession, *, company_id: str) -> list[TaxRate]:
    rows = await session.scalars(
        select(SandboxTaxRate)
        .where(SandboxTaxRate.company_id == company_id)
        .order_by(col(SandboxTaxRate.code))
    )
    return [TaxRate(r.code, r.name, Decimal(r.rate)) for r in rows]


async def records(session: AsyncSession, *, company_id: str) -> list[SandboxRecord]:
    rows = await session.scalars(
        select(SandboxRecord)
        .where(SandboxRecord.company_id == company_id)
        .order_by(col(SandboxRecord.id))
    )
    return list(rows)


async def attachments(
    session: AsyncSession, *, company_id: str
) -> dict[str, list[SandboxAttachment]]:
    """The files on the company's records, by the record's external id, oldest first."""
    rows = await session.scalars(
        select(SandboxAttachment)
        .where(col(SandboxAttachment.company_id) == company_id)
        .order_by(col(SandboxAttachment.id))
    )
    found: dict[str, list[SandboxAttachment]] = {}
    for row in rows:
        found.setdefault(row.record_external_id, []).append(row)
    return found


# The sandbox's per-call statements, built once: each call runs them with its own values.
_behaviours = SandboxBehaviour.__table__  # type: ignore[attr-defined]
_grants = SandboxGrant.__table__  # type: ignore[attr-defined]
_records = SandboxRecord.__table__  # type: ignore[attr-defined]
_accounts = SandboxAccount.__table__  # type: ignore[attr-defined]
_rates = SandboxTaxRate.__table__  # type: ignore[attr-defined]
_asked = select(bindparam("company_id", type_=String).label("company_id")).subquery()
_GATE = (
    select(_behaviours, _grants.c.access_digest, _grants.c.access_expires_at)
    .select_from(_asked)
    .outerjoin(_behaviours, _behaviours.c.company_id == _asked.c.company_id)
    .outerjoin(_grants, _grants.c.company_id == _asked.c.company_id)
)
_POSTED = select(_records.c.idempotency_key, _records.c.external_id, _records.c.version).where(
    _records.c.company_id == bindparam("company_id"),
    _records.c.idempotency_key.in_(bindparam("keys", expanding=True)),
)
_CHART = union_all(
    select(_accounts.c.code, _accounts.c.type, literal(None, String).label("rate")).where(
        _accounts.c.company_id == bindparam("company_id"),
        _accounts.c.code.in_(bindparam("account_codes", expanding=True)),
    ),
    select(_rates.c.code, literal(None, String).label("type"), _rates.c.rate).where(
        _rates.c.company_id == bindparam("company_id"),
        _rates.c.code.in_(bindparam("tax_codes", expanding=True)),
    ),
)


async def gate(
    conn: AsyncConnection, *, company_id: str, access_token: str | None
) -> tuple[SandboxBehaviour, bool]:
    """What every call first checks, in one query: how the sandbox behaves for the company,
    and whether the access token is its current, unexpired one."""
    row = (await conn.execute(_GATE, {"company_id": company_id})).mappings().one()
    knobs = (
        SandboxBehaviour(company_id=company_id)
        if row["company_id"] is None
        else SandboxBehaviour.model_validate(dict(row))
    )
    allowed = (
        access_token is not None
        and row["access_digest"] is not None
        and hmac.compare_digest(row["access_digest"], _digest(access_token))
        and row["access_expires_at"] > utcnow()
    )
    return knobs, allowed


Check = Callable[[Expense | Bill | Invoice, BooksChart], None]
"""Refuses a record, given which of its accounts (with their class) and tax rates exist."""


async def _chart(
    conn: AsyncConnection, *, company_id: str, records: Sequence[Expense | Bill | Invoice]
) -> BooksChart:
    """Which of the records' accounts (with their class) and tax rates the books have."""
    lines = [line for record in records for line in record.document_lines]
    paying = {
        r.payment_account_id for r in records if isinstance(r, Expense) and r.payment_account_id
    }
    chart = await conn.execute(
        _CHART,
        {
            "company_id": company_id,
            "account_codes": sorted({line.account_id for line in lines} | paying),
            "tax_codes": sorted({line.tax_rate_id for line in lines if line.tax_rate_id}),
        },
    )
    rows = chart.all()
    return BooksChart(
        accounts={code: AccountType(kind) for code, kind, _ in rows if kind is not None},
        tax_rates={code: Decimal(rate) for code, kind, rate in rows if kind is None},
    )


async def post(
    conn: AsyncConnection, *, company_id: str, entries: Sequence[Entry], check: Check
) -> list[Outcome]:
    """Record each entry once per key, in one statement, and return its document (the first
    one's, for a key posted before) or what `check` refused it for."""
    keys = [entry.key for entry in entries]
    posted = await found(conn, company_id=company_id, keys=keys)
    records = [entry.record for entry in entries]
    chart = await _chart(conn, company_id=company_id, records=records)
    outcomes: list[Outcome] = []
    new_rows = []
    for entry in entries:
        if entry.key in posted:
            outcomes.append(posted[entry.key])
            continue
        try:
            check(entry.record, chart)
        except LedgerError as refused:
            outcomes.append(refused)
            continue
        external_id = new_id("sbx")
        posted[entry.key] = Written(external_id, "1")  # a key twice in one call: one post
        outcomes.append(posted[entry.key])
        record = entry.record
        new_rows.append(
            {
                "company_id": company_id,
                "idempotency_key": entry.key,
                "external_id": external_id,
                "record_type": record.record_type,
                "amount": str(record.total),
                "currency": record.currency,
                "reference": record.reference,
                "payload": dump_record(record),
                "version": 1,
                "status": ACTIVE,
                "created_at": utcnow(),
                "updated_at": utcnow(),
            }
        )
    if new_rows:
        await conn.execute(_records.insert(), new_rows)
    return outcomes


async def found(
    conn: AsyncConnection, *, company_id: str, keys: Sequence[str]
) -> dict[str, Written]:
    """The documents of the keys posted before, by key."""
    rows = await conn.execute(_POSTED, {"company_id": company_id, "keys": list(keys)})
    return {key: Written(external_id, str(version)) for key, external_id, version in rows}


async def _documents(
    conn: AsyncConnection, *, company_id: str, external_ids: Sequence[str]
) -> dict[str, Any]:  # Any: the rows, by external id
    rows = await conn.execute(
        select(_records).where(
            _records.c.company_id == company_id,
            _records.c.external_id.in_(sorted(set(external_ids))),
        )
    )
    return {row.external_id: row for row in rows}


async def change(
    conn: AsyncConnection, *, company_id: str, changes: Sequence[Change], check: Check
) -> list[Outcome]:
    """Write each change over its document (an update, checked as a post is) or void it,
    unless the document is missing, voided, or moved on since the change's version (not
    forced): each one's new version, or why it was refused."""
    documents = await _documents(
        conn, company_id=company_id, external_ids=[c.external_id for c in changes]
    )
    held = {ext: (row.id, row.version, row.status) for ext, row in documents.items()}
    updates = [c.record for c in changes if not c.void]
    chart = await _chart(conn, company_id=company_id, records=updates)
    outcomes: list[Outcome] = []
    for one in changes:
        found = held.get(one.external_id)
        try:
            if found is None:
                raise LedgerError(
                    SyncErrorCode.VALIDATION_ERROR,
                    f"404 Not Found: no document {one.external_id}.",
                )
            row_id, current, status = found
            if status == VOIDED:
                raise LedgerError(
                    SyncErrorCode.VALIDATION_ERROR,
                    f"400 Bad Request: document {one.external_id} is voided and cannot change.",
                )
            if not one.force and one.version not in (None, str(current)):
                raise LedgerError(
                    SyncErrorCode.LEDGER_CONFLICT,
                    f"409 Conflict: document {one.external_id} is at version {current},"
                    f" changed in the ledger since version {one.version}.",
                )
            if not one.void:
                check(one.record, chart)
        except LedgerError as refused:
            outcomes.append(refused)
            continue
        version = current + 1
        values: dict[str, Any] = {"version": version, "updated_at": utcnow()}  # Any: columns
        if one.void:
            values["status"] = VOIDED
        else:
            values |= _content(one.record)
        await conn.execute(update(_records).where(_records.c.id == row_id).values(values))
        held[one.external_id] = (row_id, version, values.get("status", status))
        outcomes.append(Written(one.external_id, str(version)))
    return outcomes


def _content(record: Expense | Bill | Invoice) -> dict[str, Any]:  # Any: column values
    return {
        "record_type": record.record_type,
        "amount": str(record.total),
        "currency": record.currency,
        "reference": record.reference,
        "payload": dump_record(record),
    }


async def held(
    conn: AsyncConnection, *, company_id: str, changes: Sequence[Change]
) -> dict[str, Written]:
    """The changes the documents already show: the content written, or voided."""
    documents = await _documents(
        conn, company_id=company_id, external_ids=[c.external_id for c in changes]
    )
    shown = {}
    for one in changes:
        document = documents.get(one.external_id)
        if document is None:
            continue
        done = (
            document.status == VOIDED
            if one.void
            else document.status == ACTIVE and document.payload == dump_record(one.record)
        )
        if done:
            shown[one.key] = Written(one.external_id, str(document.version))
    return shown


async def edit(
    session: AsyncSession,
    *,
    company_id: str,
    external_id: str,
    amount: Decimal | None,
    description: str | None,
) -> SandboxRecord:
    """Change a document as an accountant would in the ledger: its amount (an unsplit
    expense's, else its first line's, quantity and unit price dropped) and description; its
    version moves on."""
    row = await session.scalar(
        select(SandboxRecord).where(
            col(SandboxRecord.company_id) == company_id,
            col(SandboxRecord.external_id) == external_id,
        )
    )
    if row is None:
        raise NotFound(f"no document {external_id} in this company's sandbox")
    if row.status == VOIDED:
        raise Conflict(f"document {external_id} is voided")
    content = dict(row.payload)
    lined = content.get("lines") is not None  # a bill, an invoice or a split expense
    place = dict(content["lines"][0]) if lined else content
    if amount is not None:
        place |= {"amount": str(amount), "quantity": None, "unit_amount": None}
    if description is not None:
        place["description"] = description
    if lined:
        content["lines"] = [place, *content["lines"][1:]]
    try:
        record = load_record(content)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise InvalidInput(
            f"the edit leaves no valid document: {problem}", field="amount"
        ) from None
    for name, value in _content(record).items():
        setattr(row, name, value)
    row.version += 1
    row.updated_at = utcnow()
    session.add(row)
    return row


class Books:
    """One company's books as its adapter uses them: each method its own transaction."""

    def __init__(self, db: Database, *, company_id: str) -> None:
        self.db = db
        self.company_id = company_id

    async def gate(self, access_token: str | None) -> tuple[SandboxBehaviour, bool]:
        async with self.db.engine.connect() as conn:
            return await gate(conn, company_id=self.company_id, access_token=access_token)

    async def behaviour(self) -> SandboxBehaviour:
        async with self.db.sessions() as session:
            return await behaviour(session, company_id=self.company_id)

    async def refresh(self, refresh_token: str) -> Tokens | None:
        async with self.db.transaction() as session:
            return await refresh(session, company_id=self.company_id, refresh_token=refresh_token)

    async def grant(self) -> Tokens:
        async with self.db.transaction() as session:
            return await grant(session, company_id=self.company_id)

    async def post(self, entries: Sequence[Entry], check: Check) -> list[Outcome]:
        """Post in one transaction. When the store refuses it (two calls racing with one key,
        or a record it cannot hold), each record is posted alone: a raced key finds the
        winner's post, and a record the store refuses fails alone, as a ledger's would."""
        try:
            return await self._post(entries, check)
        except DBAPIError as refused:
            if is_outage(refused):
                raise
        return [await self._post_alone(entry, check) for entry in entries]

    async def _post_alone(self, entry: Entry, check: Check) -> Outcome:
        try:
            (outcome,) = await self._post([entry], check)
        except DBAPIError as refused:
            if is_outage(refused):
                raise
            message = f"The ledger could not store this record ({refused_because(refused)})."
            return LedgerError(SyncErrorCode.PROVIDER_ERROR, message)
        return outcome

    async def _post(self, entries: Sequence[Entry], check: Check) -> list[Outcome]:
        async with self.db.writing() as conn:
            return await post(conn, company_id=self.company_id, entries=entries, check=check)

    async def attach(self, record_external_id: str, file: File) -> str:
        """Keep the file on the record once, after checking that what arrived is what was sent.
        Returns the attachment's id, the first one's for a file already on the record."""
        digest, size = hashlib.sha256(), 0
        async for chunk in file.chunks():
            digest.update(chunk)
            size += len(chunk)
        if (digest.hexdigest(), size) != (file.sha256, file.size):
            raise LedgerError(
                SyncErrorCode.VALIDATION_ERROR, "400 Bad Request: the file arrived damaged."
            )
        async with self.db.writing() as conn:
            record = await conn.scalar(
                select(col(SandboxRecord.id)).where(
                    col(SandboxRecord.company_id) == self.company_id,
                    col(SandboxRecord.external_id) == record_external_id,
                )
            )
            if record is None:
                raise LedgerError(
                    SyncErrorCode.VALIDATION_ERROR,
                    f"404 Not Found: no document {record_external_id} to attach the file to.",
                )
            held = select(col(SandboxAttachment.external_id)).where(
                col(SandboxAttachment.record_external_id) == record_external_id,
                col(SandboxAttachment.sha256) == file.sha256,
            )
            if (found := await conn.scalar(held)) is not None:
                return found
            external_id = new_id("sbf")
            await conn.execute(
                insert(SandboxAttachment).values(
                    company_id=self.company_id,
                    record_external_id=record_external_id,
                    external_id=external_id,
                    file_name=file.file_name,
                    content_type=file.content_type,
                    size=file.size,
                    sha256=file.sha256,
                    created_at=utcnow(),
                )
            )
            return external_id

    async def found(self, keys: Sequence[str]) -> dict[str, Written]:
        async with self.db.engine.connect() as conn:
            return await found(conn, company_id=self.company_id, keys=keys)

    async def change(self, changes: Sequence[Change], check: Check) -> list[Outcome]:
        """Change the documents in one transaction."""
        async with self.db.writing() as conn:
            return await change(conn, company_id=self.company_id, changes=changes, check=check)

    async def versions(self, changes: Sequence[Change]) -> dict[str, str | None]:
        async with self.db.engine.connect() as conn:
            documents = await _documents(
                conn, company_id=self.company_id, external_ids=[c.external_id for c in changes]
            )
        return {
            c.key: str(documents[c.external_id].version)
            for c in changes
            if c.external_id in documents and documents[c.external_id].status == ACTIVE
        }

    async def held(self, changes: Sequence[Change]) -> dict[str, Written]:
        async with self.db.engine.connect() as conn:
            return await held(conn, company_id=self.company_id, changes=changes)

    async def accounts(self) -> list[Account]:
        async with self.db.sessions() as session:
            return await accounts(session, company_id=self.company_id)

    async def tax_rates(self) -> list[TaxRate]:
        async with self.db.sessions() as session:
            return await tax_rates(session, company_id=self.company_id)

    async def add_account(self, account: Account) -> None:
        row = SandboxAccount(
            company_id=self.company_id, code=account.code, name=account.name, type=account.type
        )
        await self._insert(row, f"account code '{account.code}' already exists")

    async def add_tax_rate(self, tax_rate: TaxRate) -> None:
        row = SandboxTaxRate(
            company_id=self.company_id,
            code=tax_rate.code,
            name=tax_rate.name,
            rate=str(tax_rate.rate),
        )
        await self._insert(row, f"tax rate code '{tax_rate.code}' already exists")

    async def _insert(self, row: SandboxAccount | SandboxTaxRate, taken: str) -> None:
        try:
            async with self.db.transaction() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict(taken, field="input.code") from None
