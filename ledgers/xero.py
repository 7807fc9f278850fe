"""Xero's Accounting API: expenses as spend money (BankTransaction SPEND), bills as ACCPAY
invoices, invoices as ACCREC invoices, up to 50 created by one PUT with `summarizeErrors=false`
(each document answered on its own: `StatusAttributeString` OK or ERROR with its
`ValidationErrors`) and an `Idempotency-Key` made from the documents' keys, so the identical
call repeated after a timeout gets the first answer. Documents are read back by their
reference (`Reference`, or a bill's `InvoiceNumber`) when an earlier call's outcome is unknown.

Limits per tenant: 60 calls a minute, 5 at once, 5,000 a day. A 429 carries `Retry-After`
and `X-Rate-Limit-Problem` (minute, concurrent, day); the push is retried after it. Validation
failures are 400 `ValidationException`s whose messages name the field: "Account code '…' is
not a valid code for this document.", "The TaxType code '…' does not exist or cannot be used
for this type of transaction." Access tokens last 30 minutes; refresh tokens rotate on use.
A spend needs a bank account to pay from: the organisation's first active BANK account.
Attachments are PUT one file per call to the document's `/Attachments/{FileName}`, at most
10 MiB each (413 beyond) and 10 per document.
"""

from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from infra import keys
from infra.services import Services
from ledgers.http import LedgerHttp, Memo, call_key, money, retry_after
from ledgers.link import refresh_grant
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
from models.enums import AccountType, LineAmountTypes, Provider
from models.errors import Conflict, LedgerError, SyncErrorCode
from models.records import Bill, Expense, Invoice, Line
from models.secrets import Tokens

API = "/api.xro/2.0"
DOCUMENTS_PER_CALL = 50
DAILY_CALLS = 5000
_TYPES = {t.value for t in AccountType}


ATTACHMENT_BYTES = 10 * 1024 * 1024  # Xero's documented limit for one attachment


class XeroLedger:
    def __init__(
        self, services: Services, http: httpx.AsyncClient, *, tenant_id: str, tokens: Tokens | None
    ) -> None:
        self.services = services
        self.tokens = tokens
        self.http = LedgerHttp(
            http,
            base_url=services.settings.xero_api_url.rstrip("/") + API,
            headers={"xero-tenant-id": tenant_id, "accept": "application/json"},
            tokens=tokens,
            classify=_classify,
            observe=self._observe,
        )
        self.memo = Memo(services.redis, keys.ledger("xero", tenant_id, "memo"))
        self._remaining = keys.ledger("xero", tenant_id, "remaining:minute")
        self._remaining_today = keys.ledger("xero", tenant_id, "remaining:day")

    async def limits(self) -> Limits:
        settings = self.services.settings
        return Limits(
            settings.xero_rate_limit_per_minute,
            settings.xero_max_concurrent,
            documents_per_call=DOCUMENTS_PER_CALL,
            per_day=DAILY_CALLS,
            app_per_minute=settings.xero_app_rate_limit_per_minute,
            attachment_bytes=ATTACHMENT_BYTES,
            refuses_stale=False,
        )

    async def remaining(self) -> Remaining:
        minute, day = await self.services.redis.mget(self._remaining, self._remaining_today)
        return Remaining(
            this_minute=None if minute is None else int(minute),
            today=None if day is None else int(day),
        )

    async def _observe(self, response: httpx.Response) -> None:
        """Keep what Xero says is left of the tenant's minute (for a minute) and day (a day)."""
        told = [
            (key, int(response.headers[header]), seconds)
            for key, header, seconds in (
                (self._remaining, "x-minlimit-remaining", 60),
                (self._remaining_today, "x-daylimit-remaining", 86400),
            )
            if response.headers.get(header, "").isdigit()
        ]
        if told:
            async with self.services.redis.pipeline(transaction=False) as pipe:
                for key, value, seconds in told:
                    pipe.set(key, value, ex=seconds)
                await pipe.execute()

    async def refresh(self) -> Tokens:
        return await refresh_grant(self.services.settings, Provider.XERO, self.tokens)

    async def reconnect(self) -> Tokens:
        raise Conflict("Xero connects through its Link flow: start it with `reconnect`.")

    async def push(self, entries: Sequence[Entry]) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        for collection, group in _collections(entries).items():
            documents = [await self._document(entry.record) for entry in group]
            answer = await self.http.call(
                "PUT",
                f"/{collection}",
                json={collection: documents},
                params={"summarizeErrors": "false"},
                headers={"idempotency-key": call_key(group)},
            )
            id_field = _ID_FIELDS[collection]
            for entry, made in zip(group, answer[collection], strict=True):
                outcomes[entry.key] = _outcome(made, id_field)
        return [outcomes[entry.key] for entry in entries]

    async def update(self, changes: Sequence[Change]) -> list[Outcome]:
        """POST the documents with their ids: Xero writes each over the one it names."""
        return await self._changed(changes, lambda change: self._document(change.record))

    async def void(self, changes: Sequence[Change]) -> list[Outcome]:
        """POST each document's new status: a bill or invoice we wrote (AUTHORISED) becomes
        VOIDED; a spend money transaction is deleted (DELETED)."""

        async def voided(change: Change) -> dict[str, Any]:  # Any: Xero's JSON
            return {"Status": "DELETED" if isinstance(change.record, Expense) else "VOIDED"}

        return await self._changed(changes, voided)

    async def _changed(
        self,
        changes: Sequence[Change],
        body: Callable[[Change], Awaitable[dict[str, Any]]],  # Any: Xero's JSON
    ) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        for collection, group in _collections(changes).items():
            id_field = _ID_FIELDS[collection]
            documents = [{**await body(c), id_field: c.external_id} for c in group]
            answer = await self.http.call(
                "POST",
                f"/{collection}",
                json={collection: documents},
                params={"summarizeErrors": "false"},
                headers={"idempotency-key": call_key(group)},
            )
            for change, made in zip(group, answer[collection], strict=True):
                outcomes[change.key] = _outcome(made, id_field)
        return [outcomes[change.key] for change in changes]

    async def versions(self, changes: Sequence[Change]) -> dict[str, str | None]:
        """Xero has no concurrency token: each document's `UpdatedDateUTC`, read by id."""
        return {
            change.key: document.get("UpdatedDateUTC")
            for change, document in await self._read(changes)
            if document.get("Status") not in ("DELETED", "VOIDED")
        }

    async def held(self, changes: Sequence[Change]) -> dict[str, Written]:
        """Read back by id: a void shows as its status, an update as its contact, date,
        reference and total (our lines are tax-exclusive: the `SubTotal`)."""
        shown = {}
        for change, document in await self._read(changes):
            status = document.get("Status")
            done = (
                status in ("DELETED", "VOIDED")
                if change.void
                else status not in ("DELETED", "VOIDED") and _shows(document, change.record)
            )
            if done:
                written = Written(change.external_id, document.get("UpdatedDateUTC"))
                shown[change.key] = written
        return shown

    async def _read(self, changes: Sequence[Change]) -> list[tuple[Change, dict[str, Any]]]:
        """The changes' documents, one GET by ids per collection."""
        found = []
        for collection, group in _collections(changes).items():
            ids = ",".join(change.external_id for change in group)
            answer = await self.http.call("GET", f"/{collection}", params={"IDs": ids})
            by_id = {str(d[_ID_FIELDS[collection]]): d for d in answer[collection]}
            found += [(c, by_id[c.external_id]) for c in group if c.external_id in by_id]
        return found

    async def attach(self, document_id: str, entry: Entry, file: File) -> str:
        """PUT the file's bytes to the document's Attachments, streamed. A push made before
        (its outcome unknown) first lists them: a file of that name and size is there."""
        (collection,) = _collections([entry])
        path = f"/{collection}/{document_id}/Attachments"
        if file.pushed_before:
            held = await self.http.call("GET", path)
            for attachment in held.get("Attachments", []):
                if (attachment.get("FileName"), attachment.get("ContentLength")) == (
                    file.file_name,
                    file.size,
                ):
                    return str(attachment["AttachmentID"])
        online = {"IncludeOnline": "true"} if isinstance(entry.record, Invoice) else None
        answer = await self.http.call(
            "PUT",
            f"{path}/{quote(file.file_name, safe='')}",
            content=file.chunks(),
            params=online,
            headers={"content-type": file.content_type, "content-length": str(file.size)},
        )
        return str(answer["Attachments"][0]["AttachmentID"])

    async def find(self, entries: Sequence[Entry]) -> dict[str, Written]:
        """Documents with the entries' references: one GET per collection. An entry without
        a reference cannot be read back, and is taken as not written."""
        found: dict[str, Written] = {}
        for collection, group in _collections(entries).items():
            referenced = {
                (_reference_field(e.record), e.record.reference): e
                for e in group
                if e.record.reference
            }
            if not referenced:
                continue
            where = " || ".join(f'{name}=="{_quoted(value)}"' for name, value in referenced)
            answer = await self.http.call("GET", f"/{collection}", params={"where": where})
            for document in answer[collection]:
                for name in ("Reference", "InvoiceNumber"):
                    entry = referenced.get((name, document.get(name)))
                    if entry is not None and document.get("Status") != "DELETED":
                        document_id = str(document[_ID_FIELDS[collection]])
                        found[entry.key] = Written(document_id, document.get("UpdatedDateUTC"))
        return found

    async def _document(self, record: Expense | Bill | Invoice) -> dict[str, Any]:  # Any: JSON
        return await self._spend(record) if isinstance(record, Expense) else _invoice(record)

    async def _spend(self, expense: Expense) -> dict[str, Any]:  # Any: Xero's JSON
        return {
            "Type": "SPEND",
            "Contact": {"Name": expense.vendor_name},
            "BankAccount": {"Code": expense.payment_account_id or await self._bank_account()},
            "Date": expense.date.isoformat(),
            **_priced(expense),
            "Reference": expense.reference,
            "LineItems": [_line(line, expense.description) for line in expense.document_lines],
        }

    async def _bank_account(self) -> str:
        async def find() -> str:
            answer = await self.http.call("GET", "/Accounts", params={"where": 'Type=="BANK"'})
            banks = [a for a in answer["Accounts"] if a.get("Status", "ACTIVE") == "ACTIVE"]
            if not banks:
                raise LedgerError(
                    SyncErrorCode.VALIDATION_ERROR,
                    "The organisation has no bank account to record spending from.",
                )
            return str(banks[0]["Code"])

        return await self.memo.get("bank", find)

    async def accounts(self) -> list[Account]:
        answer = await self.http.call("GET", "/Accounts")
        return [
            Account(code=a["Code"], name=a["Name"], type=_account_type(a))
            for a in answer["Accounts"]
            if a.get("Type") in _TYPES and a.get("Code") and a.get("Status") == "ACTIVE"
        ]

    async def currencies(self) -> Currencies:
        """The organisation's `BaseCurrency` and the currencies it has added (`/Currencies`)."""
        (organisation,) = (await self.http.call("GET", "/Organisation"))["Organisations"]
        added = (await self.http.call("GET", "/Currencies"))["Currencies"]
        base = organisation["BaseCurrency"]
        return Currencies(base, frozenset({base, *(c["Code"] for c in added)}))

    async def tracking_categories(self) -> list[TrackingCategory]:
        answer = await self.http.call("GET", "/TrackingCategories")
        return [
            TrackingCategory(
                name=category["Name"],
                options=tuple(
                    o["Name"] for o in category.get("Options", []) if o.get("Status") == "ACTIVE"
                ),
                active=category.get("Status") == "ACTIVE",
            )
            for category in answer.get("TrackingCategories", [])
        ]

    async def tax_rates(self) -> list[TaxRate]:
        answer = await self.http.call("GET", "/TaxRates")
        return [
            TaxRate(code=t["TaxType"], name=t["Name"], rate=Decimal(str(t["EffectiveRate"])))
            for t in answer["TaxRates"]
            if t.get("Status") == "ACTIVE"
        ]

    async def create_account(self, account: Account) -> Account:
        body = {"Code": account.code, "Name": account.name, "Type": account.type.value}
        answer = await self.http.call("PUT", "/Accounts", json=body)
        made = answer["Accounts"][0]
        return Account(code=made["Code"], name=made["Name"], type=AccountType(made["Type"]))

    async def create_tax_rate(self, tax_rate: TaxRate) -> TaxRate:
        """Xero names the tax type itself (`TAX001`, …): the rate's code is the one it gives."""
        component = {"Name": tax_rate.name, "Rate": money(tax_rate.rate)}
        body = {"TaxRates": [{"Name": tax_rate.name, "TaxComponents": [component]}]}
        answer = await self.http.call("PUT", "/TaxRates", json=body)
        made = answer["TaxRates"][0]
        rate = Decimal(str(made.get("EffectiveRate", tax_rate.rate)))
        return TaxRate(code=made["TaxType"], name=made["Name"], rate=rate)


_ID_FIELDS = {"BankTransactions": "BankTransactionID", "Invoices": "InvoiceID"}


E = TypeVar("E", Entry, Change)


def _collections(entries: Sequence[E]) -> dict[str, list[E]]:
    """The entries by the collection that takes them: spends, or invoices and bills."""
    grouped: dict[str, list[E]] = {}
    for entry in entries:
        collection = "BankTransactions" if isinstance(entry.record, Expense) else "Invoices"
        grouped.setdefault(collection, []).append(entry)
    return grouped


def _outcome(made: dict[str, Any], id_field: str) -> Outcome:  # Any: Xero's JSON
    """One document's answer in a call with `summarizeErrors=false`."""
    if made.get("StatusAttributeString", "OK") == "OK":
        return Written(str(made[id_field]), made.get("UpdatedDateUTC"))
    return _refusal([e["Message"] for e in made.get("ValidationErrors", [])])


def _shows(document: dict[str, Any], record: Expense | Bill | Invoice) -> bool:  # Any: JSON
    """Whether the document holds the record as we write it: its lines add up to the
    document's `Total` when they include tax, else to its `SubTotal`."""
    contact = record.customer_name if isinstance(record, Invoice) else record.vendor_name
    day = record.date if isinstance(record, Expense) else record.issue_date
    inclusive = record.line_amount_types is LineAmountTypes.INCLUSIVE
    return (
        document.get("Contact", {}).get("Name") == contact
        and str(document.get("Date", ""))[:10] == day.isoformat()
        and Decimal(str(document.get("Total" if inclusive else "SubTotal", "NaN"))) == record.total
        and document.get("LineAmountTypes") == _AMOUNT_TYPES[record.line_amount_types]
        and document.get(_reference_field(record)) == record.reference
    )


def _reference_field(record: Expense | Bill | Invoice) -> str:
    return "InvoiceNumber" if isinstance(record, Bill) else "Reference"


def _quoted(text: str) -> str:
    """A string inside a `where` filter's double quotes."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _account_type(account: dict[str, Any]) -> AccountType:  # Any: Xero's JSON
    """A credit card is a BANK account of `BankAccountType` CREDITCARD in Xero."""
    if account.get("BankAccountType") == "CREDITCARD":
        return AccountType.CREDITCARD
    return AccountType(account["Type"])


_AMOUNT_TYPES = {
    LineAmountTypes.EXCLUSIVE: "Exclusive",
    LineAmountTypes.INCLUSIVE: "Inclusive",
    LineAmountTypes.NO_TAX: "NoTax",
}


def _priced(record: Expense | Bill | Invoice) -> dict[str, Any]:  # Any: Xero's JSON
    """What every document says of its money: how its lines read, and its rate if given."""
    fields: dict[str, Any] = {
        "CurrencyCode": record.currency,
        "LineAmountTypes": _AMOUNT_TYPES[record.line_amount_types],
    }
    if record.currency_rate is not None:
        fields["CurrencyRate"] = str(record.currency_rate)
    return fields


def _line(line: Line, description: str = "") -> dict[str, Any]:  # Any: Xero's JSON
    item: dict[str, Any] = {
        "Description": line.description or description or "—",
        "Quantity": str(line.quantity) if line.quantity is not None else 1,
        "UnitAmount": str(line.unit_amount) if line.unit_amount is not None else money(line.amount),
        "LineAmount": money(line.amount),
        "AccountCode": line.account_id,
    }
    if line.tax_rate_id is not None:
        item["TaxType"] = line.tax_rate_id
    if line.item_code is not None:
        item["ItemCode"] = line.item_code
    if line.tracking:
        item["Tracking"] = [{"Name": t.category, "Option": t.option} for t in line.tracking]
    return item


def _invoice(record: Bill | Invoice) -> dict[str, Any]:  # Any: Xero's JSON
    contact = record.vendor_name if isinstance(record, Bill) else record.customer_name
    document: dict[str, Any] = {
        "Type": "ACCPAY" if isinstance(record, Bill) else "ACCREC",
        "Contact": {"Name": contact},
        "Date": record.issue_date.isoformat(),
        "DueDate": record.due_date.isoformat(),
        **_priced(record),
        "Status": "AUTHORISED",
        "LineItems": [_line(line) for line in record.document_lines],
    }
    if record.reference:  # a bill's number is the supplier's; an invoice's reference is free
        document["InvoiceNumber" if isinstance(record, Bill) else "Reference"] = record.reference
    return document


def _classify(response: httpx.Response) -> LedgerError:
    """Xero's failure as our error code, in Xero's own words."""
    status = response.status_code
    if status == 429:
        problem = response.headers.get("x-rate-limit-problem", "minute")
        return LedgerError(
            SyncErrorCode.RATE_LIMIT_EXCEEDED,
            f"Xero's {problem} rate limit was reached.",
            retry_after=retry_after(response),
        )
    if status in (401, 403):
        return LedgerError(SyncErrorCode.CONNECTION_EXPIRED, _detail(response))
    if status == 413:
        return LedgerError(
            SyncErrorCode.ATTACHMENT_TOO_LARGE,
            f"Xero takes attachments up to {ATTACHMENT_BYTES} bytes.",
        )
    if status == 400:
        return _refusal(_validation_messages(response) or [_detail(response)])
    return LedgerError(SyncErrorCode.PROVIDER_ERROR, f"Xero answered HTTP {status}.")


def _refusal(messages: list[str]) -> LedgerError:
    """A document's validation errors as our error code, in Xero's words."""
    text = " ".join(messages) or "Xero refused the document."
    if any("Account code" in m for m in messages):
        return LedgerError(SyncErrorCode.INVALID_ACCOUNT_ID, text)
    if any("TaxType code" in m for m in messages):
        return LedgerError(SyncErrorCode.INVALID_TAX_RATE_ID, text)
    return LedgerError(SyncErrorCode.VALIDATION_ERROR, text)


def _validation_messages(response: httpx.Response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        return []
    return [
        error["Message"]
        for element in body.get("Elements", [])
        for error in element.get("ValidationErrors", [])
        if error.get("Message")
    ]


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"Xero answered HTTP {response.status_code}."
    return str(body.get("Detail") or body.get("Message") or body.get("Title") or body)
