"""A local Xero: identity (authorize, token), `/connections` and the Accounting API endpoints
the adapter uses, answering with the documented shapes, status codes and headers.

- Every API call needs a live bearer token (401 `TokenExpired` otherwise) and the tenant's
  `Xero-tenant-id` (403 otherwise).
- Limits per tenant: `per_minute` calls a minute and `concurrent` at once, else 429 with
  `Retry-After` and `X-Rate-Limit-Problem`; `throttle(n)` makes the next n calls 429.
- A document PUT with an `Idempotency-Key` already seen gets the first answer again.
- Up to 50 documents a PUT. With `summarizeErrors=false` each is answered on its own
  (`StatusAttributeString` OK or ERROR with its `ValidationErrors`); without it, one bad
  document fails the whole request with a 400 `ValidationException`.
- `GET` of a collection filters with `where` on `Reference` or `InvoiceNumber`, `||`-joined,
  or by `IDs` (comma-separated).
- A document POSTed with its id is updated (its fields replaced by those sent); a `Status`
  of `VOIDED` voids an AUTHORISED invoice or bill (one with payments is refused, as Xero
  does), `DELETED` deletes a spend money transaction or a draft. Every write stamps the
  document's `UpdatedDateUTC` (Xero's `/Date(ms+0000)/`); `edit(id, **fields)` changes a
  document as an accountant would.
- `lose_answers(n)`: the next n document PUTs are written, then answered 504, as a timeout.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from babel.numbers import get_currency_precision
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fake_oauth import FakeAuthorizationServer

API = "/api.xro/2.0"


TAX_TREATMENTS = ("Exclusive", "Inclusive", "NoTax")


def _category(name: str, options: dict[str, str], status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "TrackingCategoryID": f"tc-{name}",
        "Name": name,
        "Status": status,
        "Options": [
            {"TrackingOptionID": f"to-{option}", "Name": option, "Status": state}
            for option, state in options.items()
        ],
    }


def _account(code: str, name: str, kind: str, status: str = "ACTIVE") -> dict[str, str]:
    return {
        "AccountID": str(uuid.uuid4()),
        "Code": code,
        "Name": name,
        "Type": kind,
        "Status": status,
    }


ATTACHMENT_BYTES = 10 * 1024 * 1024
ATTACHMENTS_PER_DOCUMENT = 10


@dataclass
class FakeXero:
    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    auth: FakeAuthorizationServer = field(default_factory=FakeAuthorizationServer)
    per_minute: int = 60
    concurrent: int = 5
    accounts: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            a["Code"]: a
            for a in (
                _account("090", "Business Bank Account", "BANK"),
                {**_account("800", "Company Visa", "BANK"), "BankAccountType": "CREDITCARD"},
                _account("200", "Sales", "REVENUE"),
                _account("429", "General Expenses", "EXPENSE"),
                _account("453", "Office Expenses", "EXPENSE"),
            )
        }
    )
    tax_rates: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "NONE": {"Name": "No GST", "TaxType": "NONE", "EffectiveRate": 0, "Status": "ACTIVE"},
            "INPUT": {
                "Name": "GST on Expenses",
                "TaxType": "INPUT",
                "EffectiveRate": 15,
                "Status": "ACTIVE",
            },
            "OUTPUT": {
                "Name": "GST on Income",
                "TaxType": "OUTPUT",
                "EffectiveRate": 15,
                "Status": "ACTIVE",
            },
        }
    )
    base_currency: str = "USD"
    currencies: list[str] = field(default_factory=lambda: ["USD", "EUR"])  # added to the org
    tracking: list[dict[str, Any]] = field(
        default_factory=lambda: [
            _category("Region", {"North": "ACTIVE", "South": "ACTIVE", "West": "ARCHIVED"}),
            _category("Project", {"Apollo": "ACTIVE"}, status="ARCHIVED"),
        ]
    )
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # id: document
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)  # idempotency key: answer
    attachments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # document id
    attachment_bytes: dict[str, bytes] = field(default_factory=dict)  # AttachmentID: content
    calls: list[float] = field(default_factory=list)
    in_flight: int = 0
    throttled: int = 0
    throttled_as: tuple[str, int] = ("minute", 1)  # the problem and Retry-After of throttle()
    latency: float = 0.0
    lost_answers: int = 0
    calls_today: int = 0
    document_calls: list[int] = field(default_factory=list)  # the documents each write carried
    clock: int = 0  # the newest UpdatedDateUTC's milliseconds

    def app(self) -> Starlette:
        return Starlette(
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=self._remaining)],
            routes=[
                *self.auth.routes(),
                Route("/connections", self.connections),
                Route(API + "/Accounts", self.accounts_endpoint, methods=["GET", "PUT"]),
                Route(API + "/TaxRates", self.tax_rates_endpoint, methods=["GET", "PUT"]),
                Route(API + "/TrackingCategories", self.tracking_endpoint),
                Route(API + "/Organisation", self.organisation_endpoint),
                Route(API + "/Currencies", self.currencies_endpoint),
                Route(
                    API + "/BankTransactions",
                    self.documents_endpoint,
                    methods=["GET", "PUT", "POST"],
                ),
                Route(API + "/Invoices", self.documents_endpoint, methods=["GET", "PUT", "POST"]),
                Route(
                    API + "/{collection}/{document_id}/Attachments",
                    self.attachments_endpoint,
                    methods=["GET"],
                ),
                Route(
                    API + "/{collection}/{document_id}/Attachments/{file_name}",
                    self.attachments_endpoint,
                    methods=["PUT", "POST"],
                ),
            ],
        )

    async def _remaining(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """What is left of the tenant's limits, on every API answer, as Xero sends it."""
        response = await call_next(request)
        if request.url.path.startswith(API) and response.status_code != 429:
            response.headers["X-MinLimit-Remaining"] = str(self.per_minute - len(self.calls))
            response.headers["X-DayLimit-Remaining"] = str(5000 - self.calls_today)
        return response

    def lose_answers(self, calls: int) -> None:
        self.lost_answers = calls

    def throttle(self, calls: int, *, problem: str = "minute", retry_after: int = 1) -> None:
        self.throttled, self.throttled_as = calls, (problem, retry_after)

    async def connections(self, request: Request) -> Response:
        if not self.auth.authorized(request):
            return _unauthorized()
        tenant = {
            "id": str(uuid.uuid4()),
            "tenantId": self.tenant_id,
            "tenantType": "ORGANISATION",
            "tenantName": "Demo Company (NZ)",
            "createdDateUtc": "2026-11-26T00:00:00.0000000",
        }
        return JSONResponse([tenant])

    async def _gate(self, request: Request) -> Response | None:
        """Authorisation, tenant, then limits, in Xero's order."""
        if not self.auth.authorized(request):
            return _unauthorized()
        if request.headers.get("xero-tenant-id") != self.tenant_id:
            body = {
                "Type": None,
                "Title": "Forbidden",
                "Status": 403,
                "Detail": "AuthenticationUnsuccessful",
            }
            return JSONResponse(body, 403)
        now = time.time()
        self.calls = [t for t in self.calls if t > now - 60]
        problem, retry_after = None, 1
        if self.throttled:
            self.throttled -= 1
            problem, retry_after = self.throttled_as
        elif len(self.calls) >= self.per_minute:
            problem = "minute"
        elif self.in_flight >= self.concurrent:
            problem = "concurrent"
        if problem is not None:
            headers = {
                "Retry-After": str(retry_after),
                "X-Rate-Limit-Problem": problem,
                "X-MinLimit-Remaining": "0",
                "X-DayLimit-Remaining": "4000",
            }
            return Response("", 429, headers=headers)
        self.calls.append(now)
        self.calls_today += 1
        return None

    async def accounts_endpoint(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        if request.method == "GET":
            found = list(self.accounts.values())
            if request.query_params.get("where") == 'Type=="BANK"':
                found = [a for a in found if a["Type"] == "BANK"]
            return JSONResponse({"Accounts": found})
        wanted = await request.json()
        if wanted.get("Code") in self.accounts:
            return _invalid(["Please enter a unique Code."])
        made = _account(wanted["Code"], wanted["Name"], wanted["Type"])
        self.accounts[made["Code"]] = made
        return JSONResponse({"Accounts": [made]})

    async def organisation_endpoint(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        organisation = {"Name": "Demo Company", "BaseCurrency": self.base_currency}
        return JSONResponse({"Organisations": [organisation]})

    async def currencies_endpoint(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        listed = [{"Code": code, "Description": code} for code in self.currencies]
        return JSONResponse({"Currencies": listed})

    async def tracking_endpoint(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        return JSONResponse({"TrackingCategories": self.tracking})

    async def tax_rates_endpoint(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        if request.method == "GET":
            return JSONResponse({"TaxRates": list(self.tax_rates.values())})
        (wanted,) = (await request.json())["TaxRates"]
        tax_type = f"TAX{len(self.tax_rates):03d}"
        rate = sum(Decimal(str(c["Rate"])) for c in wanted["TaxComponents"])
        made = {
            "Name": wanted["Name"],
            "TaxType": tax_type,
            "EffectiveRate": float(rate),
            "Status": "ACTIVE",
        }
        self.tax_rates[tax_type] = made
        return JSONResponse({"TaxRates": [made]})

    async def documents_endpoint(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        collection = request.url.path.rsplit("/", 1)[-1]
        if request.method == "GET":
            return JSONResponse({collection: self._where(collection, request)})
        key = request.headers.get("idempotency-key")
        if key is not None and key in self.answers:
            status, body = self.answers[key]
            return JSONResponse(body, status)
        self.in_flight += 1
        try:
            await asyncio.sleep(self.latency)
            wanted = await request.json()
            if request.method == "POST":
                status, body = self._change(collection, request, wanted)
            else:
                status, body = self._create(collection, request, wanted)
            if key is not None:
                self.answers[key] = (status, body)
            if self.lost_answers and status == 200:
                self.lost_answers -= 1
                return Response("upstream request timeout", 504)
            return JSONResponse(body, status)
        finally:
            self.in_flight -= 1

    async def attachments_endpoint(self, request: Request) -> Response:
        """A document's attachments: listed, or one more PUT as raw bytes (10 MiB, 10 each)."""
        if (refused := await self._gate(request)) is not None:
            return refused
        document_id = request.path_params["document_id"]
        if document_id not in self.documents:
            return JSONResponse({"Title": "Not Found", "Status": 404}, 404)
        held = self.attachments.setdefault(document_id, [])
        if request.method == "GET":
            return JSONResponse({"Attachments": held})
        content = await request.body()
        if len(content) > ATTACHMENT_BYTES:
            return Response("Request Entity Too Large", 413)
        if len(held) >= ATTACHMENTS_PER_DOCUMENT:
            return _invalid([f"A document can hold {ATTACHMENTS_PER_DOCUMENT} attachments."])
        await asyncio.sleep(self.latency)
        made = {
            "AttachmentID": str(uuid.uuid4()),
            "FileName": request.path_params["file_name"],
            "MimeType": request.headers.get("content-type"),
            "ContentLength": len(content),
        }
        held.append(made)
        self.attachment_bytes[made["AttachmentID"]] = content
        if self.lost_answers:
            self.lost_answers -= 1
            return Response("upstream request timeout", 504)
        return JSONResponse({"Attachments": [made]})

    def _create(
        self, collection: str, request: Request, wanted: dict[str, Any]
    ) -> tuple[int, Any]:  # Any: Xero's JSON
        documents = wanted[collection]
        self.document_calls.append(len(documents))
        if len(documents) > 50:
            return 400, _invalid_body(["A maximum of 50 documents can be sent per request."])
        per_document = request.query_params.get("summarizeErrors", "true").lower() == "false"
        problems = [self._problems(document) for document in documents]
        if not per_document and any(problems):
            return 400, _invalid_body([p for found in problems for p in found])
        id_field = "BankTransactionID" if collection == "BankTransactions" else "InvoiceID"
        answered = []
        for document, found in zip(documents, problems, strict=True):
            if found:
                errors = [{"Message": message} for message in found]
                answered.append(
                    {**document, "StatusAttributeString": "ERROR", "ValidationErrors": errors}
                )
                continue
            stored = {
                **document,
                id_field: str(uuid.uuid4()),
                "Status": "AUTHORISED",
                **totals(document, self.tax_rates),
                "UpdatedDateUTC": self._stamp(),
            }
            self.documents[stored[id_field]] = stored
            answered.append({**stored, "StatusAttributeString": "OK"})
        return 200, {collection: answered}

    def _change(
        self, collection: str, request: Request, wanted: dict[str, Any]
    ) -> tuple[int, Any]:  # Any: Xero's JSON
        """Updates and status changes of documents named by their ids, each answered alone."""
        documents = wanted[collection]
        self.document_calls.append(len(documents))
        id_field = "BankTransactionID" if collection == "BankTransactions" else "InvoiceID"
        answered = []
        for document in documents:
            held = self.documents.get(str(document.get(id_field)))
            found = self._change_problems(held, document)
            if found:
                errors = [{"Message": message} for message in found]
                answered.append(
                    {**document, "StatusAttributeString": "ERROR", "ValidationErrors": errors}
                )
                continue
            assert held is not None
            held.update(document)
            if "LineItems" in document:
                held.update(totals(held, self.tax_rates))
            held["UpdatedDateUTC"] = self._stamp()
            answered.append({**held, "StatusAttributeString": "OK"})
        return 200, {collection: answered}

    def _change_problems(
        self, held: dict[str, Any] | None, document: dict[str, Any]
    ) -> list[str]:  # Any: Xero's JSON
        if held is None:
            return ["The document does not exist."]
        status = document.get("Status")
        if held["Status"] in ("VOIDED", "DELETED"):
            return [f"This document cannot be edited as it has a status of {held['Status']}."]
        if status == "VOIDED" and held.get("AmountPaid"):
            return ["This document cannot be voided as it has payments: remove them first."]
        if status == "VOIDED" and held["Status"] != "AUTHORISED":
            return ["Only AUTHORISED documents can be voided."]
        return [] if status in ("VOIDED", "DELETED") else self._problems({**held, **document})

    def edit(self, document_id: str, **fields: Any) -> None:  # Any: Xero's JSON values
        """Change a document as an accountant would, in Xero itself."""
        self.documents[document_id].update(fields, UpdatedDateUTC=self._stamp())

    def _stamp(self) -> str:
        """A new `UpdatedDateUTC`, later than every one before (Xero's milliseconds)."""
        self.clock = max(self.clock + 1, int(time.time() * 1000))
        return f"/Date({self.clock}+0000)/"

    def _where(self, collection: str, request: Request) -> list[dict[str, Any]]:
        wanted = [
            tuple(part.strip().split("==", 1))
            for part in request.query_params.get("where", "").split("||")
            if "==" in part
        ]
        kinds = ("SPEND",) if collection == "BankTransactions" else ("ACCPAY", "ACCREC")
        if ids := request.query_params.get("IDs"):
            id_field = "BankTransactionID" if collection == "BankTransactions" else "InvoiceID"
            return [d for d in self.documents.values() if d[id_field] in ids.split(",")]
        return [
            document
            for document in self.documents.values()
            if document.get("Type") in kinds
            and any(document.get(name) == value.strip('"') for name, value in wanted)
        ]

    def _problems(self, document: dict[str, Any]) -> list[str]:
        problems = []
        if document.get("Type") == "SPEND":
            bank = self.accounts.get(document.get("BankAccount", {}).get("Code", ""))
            if bank is None or bank["Type"] != "BANK":
                problems.append("The BankAccount field is mandatory and must be a bank account.")
        currency = document.get("CurrencyCode", self.base_currency)
        if currency not in {self.base_currency, *self.currencies}:
            problems.append(f"The currency {currency} has not been added to this organisation.")
        if document.get("LineAmountTypes", "Exclusive") not in TAX_TREATMENTS:
            problems.append(f"LineAmountTypes '{document['LineAmountTypes']}' is not valid.")
        tracked = {
            c["Name"]: {o["Name"] for o in c["Options"] if o["Status"] == "ACTIVE"}
            for c in self.tracking
            if c["Status"] == "ACTIVE"
        }
        for line in document.get("LineItems", []):
            if len(line.get("Tracking", [])) > 2:
                problems.append("A line item can have at most two tracking categories.")
            for tracking in line.get("Tracking", []):
                if tracking.get("Option") not in tracked.get(tracking.get("Name"), set()):
                    problems.append(
                        f"The TrackingOption '{tracking.get('Option')}' of category"
                        f" '{tracking.get('Name')}' does not exist or is archived."
                    )
            given = line.get("LineAmount")
            priced = Decimal(str(line["UnitAmount"])) * Decimal(str(line.get("Quantity", 1)))
            if given is not None and abs(Decimal(str(given)) - priced) >= Decimal("0.01"):
                problems.append("The LineAmount must equal Quantity multiplied by UnitAmount.")
            account = self.accounts.get(line.get("AccountCode", ""))
            if account is None or account["Status"] != "ACTIVE":
                code = line.get("AccountCode")
                problems.append(f"Account code '{code}' is not a valid code for this document.")
            tax_type = line.get("TaxType")
            if tax_type is not None and tax_type not in self.tax_rates:
                problems.append(
                    f"The TaxType code '{tax_type}' does not exist or cannot be used for this "
                    "type of transaction."
                )
        return problems


def totals(document: dict[str, Any], rates: dict[str, Any]) -> dict[str, Any]:  # Any: JSON
    """What Xero computes of a document's lines: each line's tax rounded to the currency's
    precision, then summed; `SubTotal` before tax and `Total` after, as `LineAmountTypes`
    reads the lines."""
    treatment = document.get("LineAmountTypes", "Exclusive")
    unit = Decimal(1).scaleb(-get_currency_precision(document.get("CurrencyCode", "USD")))
    subtotal = tax = Decimal(0)
    for line in document.get("LineItems", []):
        amount = Decimal(str(line.get("LineAmount", line["UnitAmount"])))
        if "LineAmount" not in line:
            amount *= Decimal(str(line.get("Quantity", 1)))
        rate = Decimal(str(rates.get(line.get("TaxType"), {}).get("EffectiveRate", 0)))
        if treatment == "NoTax":
            line_tax = Decimal(0)
        elif treatment == "Inclusive":
            line_tax = (amount * rate / (100 + rate)).quantize(unit, ROUND_HALF_UP)
        else:
            line_tax = (amount * rate / 100).quantize(unit, ROUND_HALF_UP)
        tax += line_tax
        subtotal += amount - line_tax if treatment == "Inclusive" else amount
    return {"SubTotal": float(subtotal), "TotalTax": float(tax), "Total": float(subtotal + tax)}


def _unauthorized() -> Response:
    body = {"Type": None, "Title": "Unauthorized", "Status": 401, "Detail": "TokenExpired"}
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return JSONResponse(body, 401, headers=headers)


def _invalid(messages: list[str]) -> Response:
    return JSONResponse(_invalid_body(messages), 400)


def _invalid_body(messages: list[str]) -> dict[str, Any]:  # Any: Xero's JSON
    return {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": [{"ValidationErrors": [{"Message": message} for message in messages]}],
    }
