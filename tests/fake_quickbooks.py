"""A local QuickBooks Online: Intuit's OAuth2 (the realm id comes back in the redirect) and the
v3 Accounting API endpoints the adapter uses, with Intuit's documented fault shapes.

- Every call needs a live bearer token: 401 with fault code 3200 otherwise.
- Limits per realm: `per_minute` and `concurrent`, else 429 with fault code 3001;
  `throttle(n)` makes the next n calls 429.
- A create with a `requestid` already seen gets the first answer again.
- `/batch` takes up to 30 operations, each answered on its own by `bId` (the entity, or its
  `Fault`); `lose_answers(n)`: the next n batches are written, then answered 504.
  Operations: `create`; `update` (sparse or not) at the document's `SyncToken`, else fault
  5010 "Stale Object Error"; `void` of an invoice (its amounts become 0, "Voided" in its
  note); `delete` of a bill or purchase. Each write moves the `SyncToken` on, as does
  `edit(id, **fields)`, a change made in QuickBooks itself. Documents carry their `TotalAmt`.
- Faults: 2500 "Invalid Reference Id" and 610 "Object Not Found" name the element at fault;
  6000 is business validation (here: a date before `closed_before`, the books' closing date).
- Queries: the small subset of Intuit's query language the adapter sends.
"""

import json
import re
import time
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from babel.numbers import get_currency_precision
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fake_oauth import FakeAuthorizationServer

_QUERY = re.compile(
    r"select (?P<fields>\*|\w+(?:, \w+)*) from (?P<entity>\w+)(?: where (?P<where>.+?))?"
    r"(?: maxresults \d+)?$",
    re.IGNORECASE,
)
_CONDITION = re.compile(r"([\w.]+) = (?:'((?:[^'\\]|\\.)*)'|(true|false))")
_IN = re.compile(r"(\w+) in \((.*)\)", re.IGNORECASE)
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


ATTACHMENT_BYTES = 100 * 1024 * 1024


def _lookup(row: dict[str, Any], name: str) -> Any:  # Any: a JSON value
    """A query's (dotted) field in a row, as QuickBooks reads `AttachableRef.EntityRef.Type`:
    a list stands for any of its entries (here, the first), names match in any case."""
    value: Any = row
    for part in name.split("."):
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict):
            return None
        value = next((v for k, v in value.items() if k.lower() == part.lower()), None)
    return value


TAX_CALCULATIONS = ("TaxExcluded", "TaxInclusive", "NotApplicable")


def _row(entity_id: str, **fields: Any) -> dict[str, Any]:
    return {"Id": entity_id, "Active": True, "SyncToken": "0", **fields}


@dataclass
class FakeQuickBooks:
    realm_id: str = "9130357766900456"
    auth: FakeAuthorizationServer = field(default_factory=FakeAuthorizationServer)
    per_minute: int = 500
    concurrent: int = 10
    closed_before: date | None = None
    tables: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {
            "Account": {
                "35": _row("35", Name="Checking", AccountType="Bank"),
                "41": _row("41", Name="Mastercard", AccountType="Credit Card"),
                "79": _row("79", Name="Sales of Product Income", AccountType="Income"),
                "7": _row("7", Name="Advertising", AccountType="Expense"),
                "13": _row("13", Name="Meals and Entertainment", AccountType="Expense"),
            },
            "TaxRate": {"3": _row("3", Name="VAT 20%", RateValue=20)},
            "TaxCode": {
                "2": _row(
                    "2",
                    Name="20.0% S",
                    PurchaseTaxRateList={"TaxRateDetail": [{"TaxRateRef": {"value": "3"}}]},
                ),
            },
            "Vendor": {},
            "Customer": {},
            "Item": {},
            "Class": {"5": _row("5", Name="Retail"), "6": _row("6", Name="Wholesale")},
            "Preferences": {
                "1": _row(
                    "1",
                    CurrencyPrefs={"HomeCurrency": {"value": "USD"}, "MultiCurrencyEnabled": True},
                )
            },
            "CompanyCurrency": {"3": _row("3", Code="CAD", Name="Canadian Dollar")},
            "Department": {
                "1": _row("1", Name="Boston"),
                "2": {**_row("2", Name="Old Town"), "Active": False},
            },
        }
    )
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # id: document
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)  # requestid: answer
    calls: list[float] = field(default_factory=list)
    throttled: int = 0
    next_id: int = 100
    lost_answers: int = 0
    document_calls: list[int] = field(default_factory=list)  # the operations each batch carried
    attachables: dict[str, dict[str, Any]] = field(default_factory=dict)  # id: Attachable
    attachable_bytes: dict[str, bytes] = field(default_factory=dict)  # id: the file

    def __post_init__(self) -> None:
        self.auth.extra = {"realmId": self.realm_id}

    def app(self) -> Starlette:
        base = f"/v3/company/{self.realm_id}"
        return Starlette(
            routes=[
                *self.auth.routes(),
                Route(base + "/query", self.query),
                Route(base + "/taxservice/taxcode", self.create_tax_code, methods=["POST"]),
                Route(base + "/batch", self.batch, methods=["POST"]),
                Route(base + "/upload", self.upload, methods=["POST"]),
                Route(base + "/{entity}", self.create, methods=["POST"]),
            ]
        )

    def lose_answers(self, calls: int) -> None:
        self.lost_answers = calls

    def throttle(self, calls: int) -> None:
        self.throttled = calls

    def _new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def _gate(self, request: Request) -> Response | None:
        if not self.auth.authorized(request):
            error = {
                "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                "detail": "Token expired",
                "code": "3200",
            }
            return JSONResponse({"fault": {"error": [error], "type": "AUTHENTICATION"}}, 401)
        now = time.time()
        self.calls = [t for t in self.calls if t > now - 60]
        if self.throttled or len(self.calls) >= self.per_minute:
            self.throttled = max(0, self.throttled - 1)
            return _fault(
                429,
                "3001",
                "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                "The request limit was reached.",
                kind="SERVICE",
            )
        self.calls.append(now)
        return None

    async def query(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        match = _QUERY.match(request.query_params.get("query", "").strip())
        known = {*self.tables, "Purchase", "Bill", "Invoice", "Attachable"}
        if match is None or match["entity"] not in known:
            return _fault(400, "4000", "Error parsing query", "QueryParserError")
        rows = list(self.tables.get(match["entity"], {}).values()) + [
            d for d in self.documents.values() if d["type"] == match["entity"]
        ]
        if match["entity"] == "Attachable":
            rows = list(self.attachables.values())
        for name, text, flag in _CONDITION.findall(match["where"] or ""):
            wanted: Any = (flag == "true") if flag else _unquoted(text)
            rows = [row for row in rows if _lookup(row, name) == wanted]
        for name, listed in _IN.findall(match["where"] or ""):
            values = {_unquoted(text) for text in _QUOTED.findall(listed)}
            rows = [row for row in rows if row.get(name) in values]
        if match["fields"] != "*":
            fields = match["fields"].split(", ")
            rows = [{name: row[name] for name in fields if name in row} for row in rows]
        answer = {match["entity"]: rows, "startPosition": 1, "maxResults": len(rows)}
        return JSONResponse({"QueryResponse": answer if rows else {}, "time": _now()})

    def _replayed(self, request: Request) -> Response | None:
        """The first answer again, for a `requestid` already answered."""
        request_id = request.query_params.get("requestid")
        if request_id is None or request_id not in self.answers:
            return None
        status, body = self.answers[request_id]
        return JSONResponse(body, status)

    async def batch(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        if (replayed := self._replayed(request)) is not None:
            return replayed
        request_id = request.query_params.get("requestid")
        operations = (await request.json())["BatchItemRequest"]
        self.document_calls.append(len(operations))
        if len(operations) > 30:
            return _fault(400, "4000", "Too many operations", "A batch takes 30 at most.")
        answered = []
        for operation in operations:
            (entity,) = [key for key in operation if key not in ("bId", "operation")]
            kind = operation.get("operation", "create")
            if kind == "create":
                refusal = self._refusal(entity, operation[entity])
            else:
                refusal = self._change_refusal(entity, kind, operation[entity])
            if refusal is not None:
                fault = json.loads(bytes(refusal.body))["Fault"]
                answered.append({"bId": operation["bId"], "Fault": fault})
            elif kind == "create":
                stored = self._store(entity, operation[entity])
                answered.append({"bId": operation["bId"], entity: stored})
            else:
                changed = self._changed(kind, operation[entity])
                answered.append({"bId": operation["bId"], entity: changed})
        body = {"BatchItemResponse": answered, "time": _now()}
        if request_id is not None:
            self.answers[request_id] = (200, body)
        if self.lost_answers:
            self.lost_answers -= 1
            return Response("upstream request timeout", 504)
        return JSONResponse(body)

    async def upload(self, request: Request) -> Response:
        """`/upload`: an Attachable's metadata and its file, as multipart parts `_0`."""
        if (refused := self._gate(request)) is not None:
            return refused
        if int(request.headers.get("content-length", 0)) > ATTACHMENT_BYTES + 64 * 1024:
            return Response("Request Entity Too Large", 413)
        async with request.form() as form:
            metadata = json.loads(str(form["file_metadata_0"]))
            sent = form["file_content_0"]
            assert not isinstance(sent, str)
            content = await sent.read()
        (ref,) = metadata["AttachableRef"]
        document = self.documents.get(ref["EntityRef"]["value"])
        if document is None or document["type"] != ref["EntityRef"]["type"]:
            fault = {"Message": "Object Not Found", "Detail": "The document was not found.",
                     "code": "610"}  # fmt: skip
            return JSONResponse({"AttachableResponse": [{"Fault": {"Error": [fault]}}]})
        made = {
            "Id": self._new_id(),
            "FileName": metadata["FileName"],
            "ContentType": metadata["ContentType"],
            "Size": len(content),
            "AttachableRef": metadata["AttachableRef"],
        }
        self.attachables[made["Id"]] = made
        self.attachable_bytes[made["Id"]] = content
        if self.lost_answers:
            self.lost_answers -= 1
            return Response("upstream request timeout", 504)
        return JSONResponse({"AttachableResponse": [{"Attachable": made}], "time": _now()})

    def _change_refusal(
        self, entity: str, kind: str, document: dict[str, Any]
    ) -> Response | None:  # Any: QuickBooks' JSON
        held = self.documents.get(str(document.get("Id")))
        if held is None or held["type"] != entity:
            return _fault(400, "610", "Object Not Found", "Object Not Found : the document.")
        if str(document.get("SyncToken")) != held["SyncToken"]:
            detail = (
                f"Stale Object Error : You and {held.get('editor', 'another user')} were "
                "working on this at the same time. Refresh and try again."
            )
            return _fault(400, "5010", "Stale Object Error", detail)
        if kind == "void" and entity != "Invoice":
            return _fault(400, "4000", "Unsupported operation", "Only invoices are voided.")
        if kind == "delete" and entity == "Invoice":
            return None
        if kind == "update":
            return self._refusal(entity, {**held, **document})
        return None

    def _changed(self, kind: str, document: dict[str, Any]) -> dict[str, Any]:  # Any: JSON
        held = self.documents[str(document["Id"])]
        if kind == "delete":
            del self.documents[held["Id"]]
            return {"Id": held["Id"], "status": "Deleted", "domain": "QBO"}
        if kind == "void":
            for line in held.get("Line", []):
                line["Amount"] = 0
            held["PrivateNote"] = "Voided"
        else:
            held.update({k: v for k, v in document.items() if k != "sparse"})
        held.update(reckoned(held, self.percents()))
        held["SyncToken"] = str(int(held["SyncToken"]) + 1)
        return {k: v for k, v in held.items() if k != "type"}

    def percents(self) -> dict[str, Decimal]:
        """Each tax code's rate: its first component's, as the codes group rates."""
        rates = {rid: Decimal(str(row["RateValue"])) for rid, row in self.tables["TaxRate"].items()}
        found = {}
        for code_id, code in self.tables["TaxCode"].items():
            for kind in ("PurchaseTaxRateList", "SalesTaxRateList"):
                details = code.get(kind, {}).get("TaxRateDetail", [])
                if details and code_id not in found:
                    found[code_id] = rates.get(str(details[0]["TaxRateRef"]["value"]), Decimal(0))
        return found

    def edit(self, document_id: str, **fields: Any) -> None:  # Any: QuickBooks' JSON values
        """Change a document as an accountant would, in QuickBooks itself."""
        held = self.documents[document_id]
        held.update(fields, editor="Accountant")
        held.update(reckoned(held, self.percents()))
        held["SyncToken"] = str(int(held["SyncToken"]) + 1)

    def _store(self, entity: str, document: dict[str, Any]) -> dict[str, Any]:
        stored = {**document, "Id": self._new_id(), "SyncToken": "0"}
        if "Line" in document:
            stored.update(reckoned(document, self.percents()))
        if entity in self.tables:
            self.tables[entity][stored["Id"]] = {"Active": True, **stored}
        else:
            self.documents[stored["Id"]] = {"type": entity, **stored}
        return stored

    async def create(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        if (replayed := self._replayed(request)) is not None:
            return replayed
        request_id = request.query_params.get("requestid")
        entity = {
            "purchase": "Purchase",
            "bill": "Bill",
            "invoice": "Invoice",
            "vendor": "Vendor",
            "customer": "Customer",
            "item": "Item",
            "account": "Account",
        }.get(request.path_params["entity"])
        if entity is None:
            return _fault(400, "4000", "Unsupported operation", "ValidationFault")
        document = await request.json()
        refusal = self._refusal(entity, document)
        if refusal is not None:
            return refusal
        body = {entity: self._store(entity, document), "time": _now()}
        if request_id is not None:
            self.answers[request_id] = (200, body)
        return JSONResponse(body)

    def _refusal(self, entity: str, document: dict[str, Any]) -> Response | None:
        references = [("AccountRef", "Account", document.get("AccountRef"))]
        references.append(("IncomeAccountRef", "Account", document.get("IncomeAccountRef")))
        references.append(("DepartmentRef", "Department", document.get("DepartmentRef")))
        for line in document.get("Line", []):
            detail = line.get(line.get("DetailType", ""), {})
            references.append(("AccountRef", "Account", detail.get("AccountRef")))
            references.append(("TaxCodeRef", "TaxCode", detail.get("TaxCodeRef")))
            references.append(("ItemRef", "Item", detail.get("ItemRef")))
            references.append(("ClassRef", "Class", detail.get("ClassRef")))
        if document.get("GlobalTaxCalculation", "TaxExcluded") not in TAX_CALCULATIONS:
            detail = f"Invalid enumeration: GlobalTaxCalculation {document['GlobalTaxCalculation']}"
            return _fault(400, "2010", "Request has invalid or unsupported property", detail)
        currency = document.get("CurrencyRef", {}).get("value")
        home = self.tables["Preferences"]["1"]["CurrencyPrefs"]["HomeCurrency"]["value"]
        added = {row["Code"] for row in self.tables["CompanyCurrency"].values() if row["Active"]}
        if currency is not None and currency not in {home, *added}:
            detail = f"Business Validation Error: The currency {currency} is not enabled."
            return _fault(400, "6000", "A business validation error has occurred", detail)
        if entity == "Purchase":
            paying = self.tables["Account"].get(str(document.get("AccountRef", {}).get("value")))
            wanted = {"Cash": "Bank", "CreditCard": "Credit Card"}.get(
                document.get("PaymentType", "")
            )
            if paying is not None and paying.get("AccountType") != wanted:
                detail = "The account must be a bank account for cash and a credit card for credit."
                return _fault(400, "6000", "A business validation error has occurred", detail)
        for element, table, ref in references:
            if ref is None:
                continue
            row = self.tables[table].get(str(ref.get("value")))
            if row is None:
                name = "Accounts" if table == "Account" else table
                detail = f"Invalid Reference Id : {name} element id {ref.get('value')} not found"
                return _fault(400, "2500", "Invalid Reference Id", detail, element=element)
            if not row.get("Active", True):
                detail = (
                    "Object Not Found : Something you're trying to use has been made "
                    "inactive. Check the fields with accounts, customers, items, vendors "
                    "or employees."
                )
                return _fault(400, "610", "Object Not Found", detail, element=element)
        txn_date = document.get("TxnDate")
        if self.closed_before and txn_date and date.fromisoformat(txn_date) < self.closed_before:
            return _fault(
                400,
                "6000",
                "A business validation error has occurred while processing your request",
                "Business Validation Error: The transaction date is in a closed period.",
            )
        if entity in ("Vendor", "Customer") and any(
            row.get("DisplayName") == document.get("DisplayName")
            for row in self.tables[entity].values()
        ):
            return _fault(400, "6240", "Duplicate Name Exists Error", "The name is in use.")
        return None

    async def create_tax_code(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        wanted = await request.json()
        rate_id, code_id = self._new_id(), self._new_id()
        details = []
        for detail in wanted["TaxRateDetails"]:
            self.tables["TaxRate"][rate_id] = _row(
                rate_id, Name=detail["TaxRateName"], RateValue=float(detail["RateValue"])
            )
            details.append({**detail, "TaxRateId": rate_id})
        rates = {"TaxRateDetail": [{"TaxRateRef": {"value": rate_id}}]}
        self.tables["TaxCode"][code_id] = _row(
            code_id, Name=wanted["TaxCode"], SalesTaxRateList=rates
        )
        return JSONResponse(
            {"TaxCode": wanted["TaxCode"], "TaxCodeId": code_id, "TaxRateDetails": details}
        )


def _fault(
    status: int, code: str, message: str, detail: str, *, element: str = "", kind: str = ""
) -> Response:
    error = {"Message": message, "Detail": detail, "code": code, "element": element}
    fault = {"Error": [error], "type": kind or "ValidationFault"}
    return JSONResponse({"Fault": fault, "time": _now()}, status)


def reckoned(document: dict[str, Any], percents: dict[str, Decimal]) -> dict[str, Any]:
    """What QuickBooks computes of a document (Any: its JSON): each line's tax at its tax
    code's rate, rounded to the currency's precision, then summed into `TxnTaxDetail`; the
    `TotalAmt` with tax, as `GlobalTaxCalculation` reads the lines' amounts."""
    reading = document.get("GlobalTaxCalculation", "TaxExcluded")
    currency = document.get("CurrencyRef", {}).get("value", "USD")
    unit = Decimal(1).scaleb(-get_currency_precision(currency))
    given = tax = Decimal(0)
    for line in document.get("Line", []):
        amount = Decimal(str(line.get("Amount", 0)))
        detail = line.get(line.get("DetailType", ""), {})
        rate = percents.get(str(detail.get("TaxCodeRef", {}).get("value")), Decimal(0))
        given += amount
        if reading == "TaxInclusive":
            tax += (amount * rate / (100 + rate)).quantize(unit, ROUND_HALF_UP)
        elif reading == "TaxExcluded":
            tax += (amount * rate / 100).quantize(unit, ROUND_HALF_UP)
    total = given if reading == "TaxInclusive" else given + tax
    return {"TotalAmt": float(total), "TxnTaxDetail": {"TotalTax": float(tax)}}


def _unquoted(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-08:00")
