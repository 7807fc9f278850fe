"""QuickBooks Online's Accounting API (v3): expenses as Purchases, bills as Bills, invoices as
Invoices, up to 30 created by one `/batch` call, each operation answered on its own (the
entity, or its `Fault`). A call carries a `requestid` made from its documents' keys
(QuickBooks answers a repeated id with the first answer), and documents are read back by
their `DocNumber` (the client's reference) when an earlier call's outcome is unknown.

Limits per realm: 500 calls a minute and 10 at once (429, fault code 3001), of which 40
batch calls a minute: the batch calls are what we pace, the lookups below go beside them.
Faults are mapped by their code and the element at fault: 2500 "Invalid Reference Id" and
610 "Object Not Found" on an account or tax code are INVALID_ACCOUNT_ID /
INVALID_TAX_RATE_ID, 6000 business validation is VALIDATION_ERROR, 401 (3200) expires the
access token (refreshed once, then CONNECTION_EXPIRED), 5xx is PROVIDER_ERROR.

QuickBooks refers to everything by id: accounts' and tax codes' codes here are their ids.
Bills need a vendor and invoices a customer by reference, found by display name or created;
an invoice line sells a service item, one per income account ("Sync2Books <account id>"),
found or created the same way; a purchase is paid from the realm's first bank account.
Those ids are kept in Redis for a day.
Attachments go to `/upload` (multipart: an `Attachable` referencing the document, then the
file), at most 100 MiB each.
"""

import json
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

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

MINOR_VERSION = "75"
OPERATIONS_PER_BATCH = 30
BATCH_CALLS_PER_MINUTE = 40
ACCOUNT_TYPES = {
    "Expense": AccountType.EXPENSE,
    "Other Expense": AccountType.OVERHEADS,
    "Cost of Goods Sold": AccountType.DIRECTCOSTS,
    "Income": AccountType.REVENUE,
    "Other Income": AccountType.OTHERINCOME,
    "Bank": AccountType.BANK,
    "Credit Card": AccountType.CREDITCARD,
}
QUICKBOOKS_TYPES = {ours: theirs for theirs, ours in ACCOUNT_TYPES.items()} | {
    AccountType.SALES: "Income"
}


CLASS, DEPARTMENT = "Class", "Department"  # the tracking categories QuickBooks keeps
_TAX_CALCULATION = {
    LineAmountTypes.EXCLUSIVE: "TaxExcluded",
    LineAmountTypes.INCLUSIVE: "TaxInclusive",
    LineAmountTypes.NO_TAX: "NotApplicable",
}
_PAYMENT_TYPES = {"Bank": "Cash", "Credit Card": "CreditCard"}


class Unmappable(LedgerError):
    """A record QuickBooks cannot take, found while building its document: it fails alone."""


ATTACHMENT_BYTES = 100 * 1024 * 1024  # QuickBooks's documented limit for one attachment
_UPLOAD_BOUNDARY = "sync2books-attachment-7f3a9c"


class QuickBooksLedger:
    def __init__(
        self, services: Services, http: httpx.AsyncClient, *, realm_id: str, tokens: Tokens | None
    ) -> None:
        self.services = services
        self.realm_id = realm_id
        self.tokens = tokens
        self.http = LedgerHttp(
            http,
            base_url=f"{services.settings.quickbooks_api_url.rstrip('/')}/v3/company/{realm_id}",
            headers={"accept": "application/json"},
            tokens=tokens,
            classify=_classify,
        )
        self.memo = Memo(services.redis, keys.ledger("quickbooks", realm_id, "memo"))

    async def limits(self) -> Limits:
        settings = self.services.settings
        return Limits(
            min(settings.quickbooks_rate_limit_per_minute, BATCH_CALLS_PER_MINUTE),
            settings.quickbooks_max_concurrent,
            documents_per_call=OPERATIONS_PER_BATCH,
            app_per_minute=settings.quickbooks_app_rate_limit_per_minute,
            attachment_bytes=ATTACHMENT_BYTES,
        )

    async def remaining(self) -> Remaining:
        return Remaining()  # Intuit's answers do not say

    async def refresh(self) -> Tokens:
        return await refresh_grant(self.services.settings, Provider.QUICKBOOKS, self.tokens)

    async def reconnect(self) -> Tokens:
        raise Conflict("QuickBooks connects through its Link flow: start it with `reconnect`.")

    async def push(self, entries: Sequence[Entry]) -> list[Outcome]:
        operations = [
            await self._operation(n, "create", entry.record) for n, entry in enumerate(entries)
        ]
        return await self._batch(operations, entries)

    async def update(self, changes: Sequence[Change]) -> list[Outcome]:
        """Sparse updates carrying the whole record, each at the SyncToken our last push
        saw: QuickBooks refuses a stale one (5010, LEDGER_CONFLICT). Forced, they carry the
        document's current token instead."""
        tokens = await self._tokens(changes)
        operations = [
            await self._operation(
                n,
                "update",
                change.record,
                Id=change.external_id,
                SyncToken=tokens.get(change.key, change.version),
                sparse=True,
            )
            for n, change in enumerate(changes)
        ]
        return await self._batch(operations, changes)

    async def void(self, changes: Sequence[Change]) -> list[Outcome]:
        """Invoices are voided (`operation: void`); bills and purchases, which QuickBooks does
        not void, deleted (`operation: delete`); each at its SyncToken, as updates."""
        tokens = await self._tokens(changes)
        operations = [
            {
                "bId": str(n),
                "operation": "void" if isinstance(change.record, Invoice) else "delete",
                _entity(change.record): {
                    "Id": change.external_id,
                    "SyncToken": tokens.get(change.key, change.version),
                },
            }
            for n, change in enumerate(changes)
        ]
        return await self._batch(operations, changes)

    async def _operation(
        self, n: int, operation: str, record: Expense | Bill | Invoice, **fields: Any
    ) -> dict[str, Any] | LedgerError:  # Any: QuickBooks' JSON
        """The record's batch operation, or why QuickBooks cannot take it (it fails alone)."""
        try:
            document = await self._document(record)
        except Unmappable as refused:
            return refused
        return {"bId": str(n), "operation": operation, _entity(record): {**document, **fields}}

    async def _batch(
        self,
        operations: Sequence[dict[str, Any] | LedgerError],
        entries: Sequence[Entry] | Sequence[Change],
    ) -> list[Outcome]:  # Any: QuickBooks' JSON
        """One `/batch` call of the operations that could be built; each refused one keeps
        its refusal."""
        sent = [op for op in operations if not isinstance(op, LedgerError)]
        answer: dict[str, Any] = {}
        if sent:
            answer = await self.http.call(
                "POST",
                "/batch",
                json={"BatchItemRequest": sent},
                params={"minorversion": MINOR_VERSION, "requestid": call_key(entries)},
            )
        outcomes = _answered(answer, [entry.record for entry in entries])
        return [
            op if isinstance(op, LedgerError) else outcome
            for op, outcome in zip(operations, outcomes, strict=True)
        ]

    async def _tokens(self, changes: Sequence[Change]) -> dict[str, str | None]:
        """The current SyncTokens of the changes that need them: forced, or never seen."""
        unsure = [c for c in changes if c.force or c.version is None]
        return await self.versions(unsure) if unsure else {}

    async def versions(self, changes: Sequence[Change]) -> dict[str, str | None]:
        return {
            change.key: str(document.get("SyncToken"))
            for change, document in await self._read(changes)
        }

    async def held(self, changes: Sequence[Change]) -> dict[str, Written]:
        """Read back by id: a voided invoice shows a zero total, a deleted bill or purchase is
        gone; an update shows its date and total, at a newer SyncToken."""
        documents = dict((change.key, document) for change, document in await self._read(changes))
        shown = {}
        for change in changes:
            document = documents.get(change.key)
            if change.void:
                done = document is None or (
                    isinstance(change.record, Invoice)
                    and Decimal(str(document.get("TotalAmt", "NaN"))) == 0
                )
            else:
                done = document is not None and _shows(document, change)
            if done:
                token = None if document is None else str(document.get("SyncToken"))
                shown[change.key] = Written(change.external_id, token)
        return shown

    async def _read(self, changes: Sequence[Change]) -> list[tuple[Change, dict[str, Any]]]:
        """The changes' documents that exist, one query by ids per entity."""
        by_entity: dict[str, list[Change]] = {}
        for change in changes:
            by_entity.setdefault(_entity(change.record), []).append(change)
        found = []
        for entity, group in by_entity.items():
            listed = ", ".join(f"'{_quoted(change.external_id)}'" for change in group)
            statement = f"select * from {entity} where Id in ({listed})"
            by_id = {str(d["Id"]): d for d in await self._query(entity, statement)}
            found += [(c, by_id[c.external_id]) for c in group if c.external_id in by_id]
        return found

    async def attach(self, document_id: str, entry: Entry, file: File) -> str:
        """`/upload`: an `Attachable` that references the document, and the file, in one
        multipart body streamed from storage. A push made before (its outcome unknown) first
        queries the document's attachables: one of that name and size is the file."""
        entity = _entity(entry.record)
        if file.pushed_before:
            statement = (
                "select * from Attachable where AttachableRef.EntityRef.Type = "
                f"'{entity}' and AttachableRef.EntityRef.value = '{_quoted(document_id)}'"
            )
            for held in await self._query("Attachable", statement):
                if (held.get("FileName"), held.get("Size")) == (file.file_name, file.size):
                    return str(held["Id"])
        metadata = {
            "AttachableRef": [{"EntityRef": {"type": entity, "value": document_id}}],
            "FileName": file.file_name,
            "ContentType": file.content_type,
        }
        head, tail = _upload_parts(json.dumps(metadata).encode(), file)
        answer = await self.http.call(
            "POST",
            "/upload",
            content=_upload_body(head, file, tail),
            params={"minorversion": MINOR_VERSION},
            headers={
                "content-type": f"multipart/form-data; boundary={_UPLOAD_BOUNDARY}",
                "content-length": str(len(head) + file.size + len(tail)),
            },
        )
        (response,) = answer["AttachableResponse"]
        if "Fault" in response:
            raise _classified(400, response["Fault"].get("Error", []))
        return str(response["Attachable"]["Id"])

    async def find(self, entries: Sequence[Entry]) -> dict[str, Written]:
        """Documents with the entries' `DocNumber`s, one query per entity. An entry without a
        reference cannot be read back, and is taken as not written."""
        by_entity: dict[str, dict[str, Entry]] = {}
        for entry in entries:
            if entry.record.reference:
                number = entry.record.reference[:21]
                by_entity.setdefault(_entity(entry.record), {})[number] = entry
        found: dict[str, Written] = {}
        for entity, numbered in by_entity.items():
            listed = ", ".join(f"'{_quoted(number)}'" for number in numbered)
            statement = (
                f"select Id, DocNumber, SyncToken from {entity} where DocNumber in ({listed})"
            )
            for document in await self._query(entity, statement):
                if (match := numbered.get(document.get("DocNumber", ""))) is not None:
                    found[match.key] = Written(str(document["Id"]), str(document.get("SyncToken")))
        return found

    async def _document(self, record: Expense | Bill | Invoice) -> dict[str, Any]:  # Any: JSON
        if isinstance(record, Expense):
            return await self._purchase(record)
        if isinstance(record, Bill):
            return await self._bill(record)
        return await self._invoice(record)

    async def _purchase(self, expense: Expense) -> dict[str, Any]:  # Any: QuickBooks' JSON
        paying, payment_type = await self._paying(expense.payment_account_id)
        document = {
            "PaymentType": payment_type,
            "AccountRef": {"value": paying},
            "EntityRef": {
                "value": await self._named("Vendor", expense.vendor_name),
                "type": "Vendor",
            },
            "TxnDate": expense.date.isoformat(),
            **await self._priced(expense),
            "PrivateNote": expense.description[:4000],
            "Line": [
                await self._expense_line(line, expense.description)
                for line in expense.document_lines
            ],
        }
        return _numbered(document, expense.reference)

    async def _bill(self, bill: Bill) -> dict[str, Any]:  # Any: QuickBooks' JSON
        document = {
            "VendorRef": {"value": await self._named("Vendor", bill.vendor_name)},
            "TxnDate": bill.issue_date.isoformat(),
            "DueDate": bill.due_date.isoformat(),
            **await self._priced(bill),
            "Line": [await self._expense_line(line) for line in bill.lines],
        }
        return _numbered(document, bill.reference)

    async def _invoice(self, invoice: Invoice) -> dict[str, Any]:  # Any: QuickBooks' JSON
        lines = []
        for line in invoice.lines:
            item = (
                await self._existing("Item", line.item_code)
                if line.item_code is not None
                else await self._item(line.account_id)
            )
            detail: dict[str, Any] = {"ItemRef": {"value": item}}
            if line.quantity is not None and line.unit_amount is not None:
                detail["Qty"] = str(line.quantity)
                detail["UnitPrice"] = str(line.unit_amount)
            if line.tax_rate_id is not None:
                detail["TaxCodeRef"] = {"value": line.tax_rate_id}
            if (class_ref := await self._class_of(line)) is not None:
                detail["ClassRef"] = class_ref
            lines.append(
                {
                    "Amount": money(line.amount),
                    "Description": line.description,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": detail,
                }
            )
        document = {
            "CustomerRef": {"value": await self._named("Customer", invoice.customer_name)},
            "TxnDate": invoice.issue_date.isoformat(),
            "DueDate": invoice.due_date.isoformat(),
            **await self._priced(invoice),
            "Line": lines,
        }
        return _numbered(document, invoice.reference)

    async def _priced(self, record: Expense | Bill | Invoice) -> dict[str, Any]:  # Any: JSON
        """What every document says of its money and where it is reported: its currency and
        rate, how its lines read (`GlobalTaxCalculation`), and its department."""
        fields: dict[str, Any] = {
            "CurrencyRef": {"value": record.currency},
            "GlobalTaxCalculation": _TAX_CALCULATION[record.line_amount_types],
        }
        if record.currency_rate is not None:
            fields["ExchangeRate"] = str(record.currency_rate)
        departments = {
            t.option
            for line in record.document_lines
            for t in line.tracking
            if t.category == DEPARTMENT
        }
        if len(departments) > 1:
            raise Unmappable(
                SyncErrorCode.VALIDATION_ERROR,
                f"QuickBooks reports a whole document by one {DEPARTMENT}; its lines name"
                f" {', '.join(sorted(departments))}.",
            )
        if departments:
            (department,) = departments
            fields["DepartmentRef"] = {"value": await self._existing(DEPARTMENT, department)}
        return fields

    async def _expense_line(self, line: Line, description: str = "") -> dict[str, Any]:
        detail: dict[str, Any] = {"AccountRef": {"value": line.account_id}}  # Any: JSON
        if line.tax_rate_id is not None:
            detail["TaxCodeRef"] = {"value": line.tax_rate_id}
        if (class_ref := await self._class_of(line)) is not None:
            detail["ClassRef"] = class_ref
        return {
            "Amount": money(line.amount),
            "Description": line.description or description,
            "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": detail,
        }

    async def _class_of(self, line: Line) -> dict[str, str] | None:
        """The line's `ClassRef`, from its `Class` tracking; a category QuickBooks does not
        keep is refused."""
        for tracking in line.tracking:
            if tracking.category not in (CLASS, DEPARTMENT):
                raise Unmappable(
                    SyncErrorCode.VALIDATION_ERROR,
                    f"QuickBooks tracks by {CLASS} (per line) and {DEPARTMENT} (per document);"
                    f" '{tracking.category}' is neither.",
                )
        classes = [t.option for t in line.tracking if t.category == CLASS]
        return {"value": await self._existing(CLASS, classes[0])} if classes else None

    async def _existing(self, entity: str, name: str) -> str:
        """The id of the active class, department or item of that name: never made here."""

        async def find() -> str:
            statement = f"select Id from {entity} where Name = '{_quoted(name)}' and Active = true"
            found = await self._query(entity, statement)
            if not found:
                raise Unmappable(
                    SyncErrorCode.VALIDATION_ERROR,
                    f"QuickBooks has no active {entity} named '{name}'.",
                )
            return str(found[0]["Id"])

        return await self.memo.get(f"{entity}:{name}", find)

    async def _paying(self, account_id: str | None) -> tuple[str, str]:
        """The account an expense was paid from, and the `PaymentType` it makes: the first
        bank account when none is named."""
        if account_id is None:
            return await self._bank_account(), "Cash"

        async def find() -> str:
            statement = f"select Id, AccountType from Account where Id = '{_quoted(account_id)}'"
            found = await self._query("Account", statement)
            kind = found[0].get("AccountType") if found else None
            if kind not in _PAYMENT_TYPES:
                raise Unmappable(
                    SyncErrorCode.INVALID_ACCOUNT_ID,
                    f"Account {account_id} is not a bank or credit card account to pay from.",
                )
            return _PAYMENT_TYPES[kind]

        return account_id, await self.memo.get(f"paying:{account_id}", find)

    async def _create(
        self, entity: str, document: dict[str, Any]
    ) -> dict[str, Any]:  # Any: QuickBooks' JSON
        params = {"minorversion": MINOR_VERSION}
        answer = await self.http.call("POST", f"/{entity.lower()}", json=document, params=params)
        created: dict[str, Any] = answer[entity]
        return created

    async def _query(self, entity: str, statement: str) -> list[dict[str, Any]]:  # Any: JSON
        params = {"query": statement, "minorversion": MINOR_VERSION}
        answer = await self.http.call("GET", "/query", params=params)
        found: list[dict[str, Any]] = answer.get("QueryResponse", {}).get(entity, [])
        return found

    async def _named(self, entity: str, display_name: str) -> str:
        """The vendor's or customer's id, created if the realm has none of that name."""
        return await self._found_or_made(
            entity, "DisplayName", display_name, {"DisplayName": display_name}
        )

    async def _item(self, account_id: str) -> str:
        """The service item that posts an invoice line to this income account."""
        name = f"Sync2Books {account_id}"
        item = {"Name": name, "Type": "Service", "IncomeAccountRef": {"value": account_id}}
        return await self._found_or_made("Item", "Name", name, item)

    async def _found_or_made(
        self, entity: str, field: str, value: str, document: dict[str, Any]
    ) -> str:  # Any: QuickBooks' JSON
        """The id of the `entity` whose `field` is `value`, made from `document` if none is."""

        async def find() -> str:
            statement = f"select Id from {entity} where {field} = '{_quoted(value)}'"
            found = await self._query(entity, statement)
            if not found:
                try:
                    found = [await self._create(entity, document)]
                except LedgerError:  # a push beside this one made it first ("name in use")
                    found = await self._query(entity, statement)
                    if not found:
                        raise
            return str(found[0]["Id"])

        return await self.memo.get(f"{entity}:{value}", find)

    async def _bank_account(self) -> str:
        async def find() -> str:
            statement = "select Id from Account where AccountType = 'Bank' and Active = true"
            banks = await self._query("Account", statement)
            if not banks:
                raise LedgerError(
                    SyncErrorCode.VALIDATION_ERROR, "The company has no bank account to pay from."
                )
            return str(banks[0]["Id"])

        return await self.memo.get("bank", find)

    async def accounts(self) -> list[Account]:
        found = await self._query(
            "Account", "select * from Account where Active = true maxresults 1000"
        )
        return [
            Account(code=str(a["Id"]), name=a["Name"], type=ACCOUNT_TYPES[a["AccountType"]])
            for a in found
            if a.get("AccountType") in ACCOUNT_TYPES
        ]

    async def currencies(self) -> Currencies:
        """The home currency (`Preferences`), and, with multicurrency on, the realm's active
        `CompanyCurrency` codes."""
        (preferences,) = await self._query("Preferences", "select * from Preferences")
        money = preferences.get("CurrencyPrefs", {})
        base = money.get("HomeCurrency", {}).get("value", "USD")
        if not money.get("MultiCurrencyEnabled"):
            return Currencies(base, frozenset({base}))
        added = await self._query(
            "CompanyCurrency", "select * from CompanyCurrency where Active = true"
        )
        return Currencies(base, frozenset({base, *(c["Code"] for c in added)}))

    async def tracking_categories(self) -> list[TrackingCategory]:
        """QuickBooks' two dimensions as categories: `Class` (a line's `ClassRef`) and
        `Department` (the document's `DepartmentRef`, "Location" in some regions)."""
        categories = []
        for entity in (CLASS, DEPARTMENT):
            found = await self._query(entity, f"select * from {entity} where Active = true")
            if found:
                categories.append(TrackingCategory(entity, tuple(row["Name"] for row in found)))
        return categories

    async def tax_rates(self) -> list[TaxRate]:
        """Tax codes, each at the rate of its first component (QuickBooks' codes group rates)."""
        codes = await self._query("TaxCode", "select * from TaxCode where Active = true")
        rates = {
            str(r["Id"]): Decimal(str(r.get("RateValue", 0)))
            for r in await self._query("TaxRate", "select * from TaxRate")
        }
        return [
            TaxRate(code=str(c["Id"]), name=c["Name"], rate=_first_rate(c, rates)) for c in codes
        ]

    async def create_account(self, account: Account) -> Account:
        """QuickBooks gives the account its id, which is its code here; ours is its number."""
        document = {
            "Name": account.name,
            "AcctNum": account.code,
            "AccountType": QUICKBOOKS_TYPES[account.type],
        }
        made = await self._create("Account", document)
        return Account(code=str(made["Id"]), name=made["Name"], type=account.type)

    async def create_tax_rate(self, tax_rate: TaxRate) -> TaxRate:
        """Through QuickBooks' tax service: a code with one rate; the code is the id it gives."""
        detail = {
            "TaxRateName": tax_rate.name,
            "RateValue": str(tax_rate.rate),
            "TaxAgencyId": "1",
            "TaxApplicableOn": "Sales",
        }
        body = {"TaxCode": tax_rate.name, "TaxRateDetails": [detail]}
        made = await self.http.call(
            "POST", "/taxservice/taxcode", json=body, params={"minorversion": MINOR_VERSION}
        )
        return TaxRate(code=str(made["TaxCodeId"]), name=made["TaxCode"], rate=tax_rate.rate)


def _quoted(text: str) -> str:
    """A string inside a query's quotes: Intuit escapes with backslashes."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _numbered(document: dict[str, Any], reference: str | None) -> dict[str, Any]:  # Any: JSON
    """The client's reference as the document number (QuickBooks keeps 21 characters)."""
    if reference:
        document["DocNumber"] = reference[:21]
    return document


def _first_rate(code: dict[str, Any], rates: dict[str, Decimal]) -> Decimal:  # Any: JSON
    for kind in ("PurchaseTaxRateList", "SalesTaxRateList"):
        for detail in code.get(kind, {}).get("TaxRateDetail", []):
            rate_id = str(detail.get("TaxRateRef", {}).get("value"))
            if rate_id in rates:
                return rates[rate_id]
    return Decimal(0)


def _upload_parts(metadata: bytes, file: File) -> tuple[bytes, bytes]:
    """What goes before and after the file's bytes in an `/upload` body."""
    name = file.file_name.replace('"', "'")
    head = (
        f"--{_UPLOAD_BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file_metadata_0"\r\n'
        "Content-Type: application/json\r\n\r\n"
    ).encode() + metadata
    head += (
        f"\r\n--{_UPLOAD_BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file_content_0"; filename="{name}"\r\n'
        f"Content-Type: {file.content_type}\r\n\r\n"
    ).encode()
    return head, f"\r\n--{_UPLOAD_BOUNDARY}--\r\n".encode()


async def _upload_body(head: bytes, file: File, tail: bytes) -> AsyncIterator[bytes]:
    yield head
    async for chunk in file.chunks():
        yield chunk
    yield tail


def _answered(
    answer: dict[str, Any], records: Sequence[Expense | Bill | Invoice]
) -> list[Outcome]:  # Any: QuickBooks' JSON
    """Each batch operation's outcome, in order: its entity, or its fault."""
    answered = {str(a["bId"]): a for a in answer.get("BatchItemResponse", [])}
    outcomes: list[Outcome] = []
    for n, record in enumerate(records):
        one = answered.get(str(n), {})
        made = one.get(_entity(record))
        if made is not None:
            token = made.get("SyncToken")
            outcomes.append(Written(str(made["Id"]), None if token is None else str(token)))
        else:
            faults = _lowered(one.get("Fault", {}).get("Error", []))
            outcomes.append(_classified(400, faults))
    return outcomes


def _shows(document: dict[str, Any], change: Change) -> bool:  # Any: QuickBooks' JSON
    """Whether the document holds the change's record, at a token past the one we sent: its
    lines add up to `TotalAmt`, less its tax unless the lines include it."""
    record = change.record
    day = record.date if isinstance(record, Expense) else record.issue_date
    total = Decimal(str(document.get("TotalAmt", "NaN")))
    if record.line_amount_types is not LineAmountTypes.INCLUSIVE:
        total -= Decimal(str(document.get("TxnTaxDetail", {}).get("TotalTax", 0)))
    return (
        str(document.get("SyncToken")) != change.version
        and document.get("TxnDate") == day.isoformat()
        and total == record.total
    )


def _entity(record: Expense | Bill | Invoice) -> str:
    if isinstance(record, Expense):
        return "Purchase"
    return "Bill" if isinstance(record, Bill) else "Invoice"


def _faults(response: httpx.Response) -> list[dict[str, Any]]:  # Any: JSON
    """The fault's errors: QuickBooks capitalises its keys, except on 401s."""
    try:
        body = response.json()
    except ValueError:
        return []
    fault = body.get("Fault") or body.get("fault") or {}
    return _lowered(fault.get("Error") or fault.get("error") or [])


def _lowered(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:  # Any: JSON
    return [{key.lower(): value for key, value in error.items()} for error in errors]


def _classify(response: httpx.Response) -> LedgerError:
    error = _classified(response.status_code, _faults(response))
    if error.error.code is SyncErrorCode.RATE_LIMIT_EXCEEDED:
        error.retry_after = retry_after(response)  # Intuit documents none: then our backoff
    return error


def _classified(status: int, faults: list[dict[str, Any]]) -> LedgerError:  # Any: JSON
    """A call's or one batch operation's faults as our error code, in Intuit's words."""
    codes = {str(fault.get("code", "")).lstrip("0") for fault in faults}
    text = (
        " ".join(str(fault.get("detail") or fault.get("message") or "") for fault in faults).strip()
        or f"QuickBooks answered HTTP {status}."
    )
    if status == 413:
        return LedgerError(
            SyncErrorCode.ATTACHMENT_TOO_LARGE,
            f"QuickBooks takes attachments up to {ATTACHMENT_BYTES} bytes.",
        )
    if status == 429 or "3001" in codes:
        return LedgerError(SyncErrorCode.RATE_LIMIT_EXCEEDED, text)
    if "5010" in codes:  # Stale Object Error: changed since the SyncToken we sent
        return LedgerError(SyncErrorCode.LEDGER_CONFLICT, text)
    if status == 401 or codes & {"3200", "3100"}:
        return LedgerError(SyncErrorCode.CONNECTION_EXPIRED, text)
    if status >= 500:
        return LedgerError(SyncErrorCode.PROVIDER_ERROR, text)
    for fault in faults:
        if str(fault.get("code")) in ("2500", "610"):
            at_fault = f"{fault.get('element', '')} {fault.get('detail', '')}"
            if "Tax" in at_fault:
                return LedgerError(SyncErrorCode.INVALID_TAX_RATE_ID, text)
            if "Account" in at_fault:
                return LedgerError(SyncErrorCode.INVALID_ACCOUNT_ID, text)
    return LedgerError(SyncErrorCode.VALIDATION_ERROR, text)
