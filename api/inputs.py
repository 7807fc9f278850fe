"""GraphQL input types, and their conversion to validated records (all or nothing)."""

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types.arguments import InputContext
from strawberry.types.base import (
    StrawberryContainer,
    StrawberryType,
    get_object_definition,
    has_object_definition,
)

from ledgers.protocol import Account, TaxRate
from models.enums import AccountType, LineAmountTypes, RecordType
from models.errors import InvalidInput
from models.records import Bill, Expense, Invoice, parse_records

Input = TypeVar("Input", bound=type)
Plan = tuple[tuple[str, str, "Nested | None"], ...]
_plans: dict[type, Plan] = {}


class Nested(NamedTuple):
    """A field holding inputs to build: of `cls`, one or a list of them; `ours` when `cls` is
    built by `_from_input` too (else Strawberry converts the value)."""

    kind: StrawberryType | type
    cls: type
    ours: bool


def built_as_coerced(cls: Input) -> Input:
    """Builds this input straight from the values graphql-core coerced.

    graphql-core has parsed every scalar and enum by then, and Strawberry's own conversion
    resolves each field's type again for every value: a third of a 1,000-record create.
    Nested inputs built this way too are built directly, without Strawberry's conversion of
    each list item. Through `from_input`, Strawberry's hook for types that build their own
    value."""
    get_object_definition(cls, strict=True).from_input = _from_input
    return cls


def _from_input(cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
    kwargs = {}
    for graphql_name, python_name, nested in _plans.get(cls) or _plan(cls, context):
        if graphql_name in value:
            field = value[graphql_name]
            if nested is not None and field is not None:
                field = _nested(nested, field, graphql_name, context)
            kwargs[python_name] = field
    return cls(**kwargs)


def _nested(nested: Nested, value: Any, name: str, context: InputContext) -> Any:
    if not nested.ours:
        return context.convert(value, nested.kind, name)
    if isinstance(value, list):
        return [None if item is None else _from_input(nested.cls, item, context) for item in value]
    return _from_input(nested.cls, value, context)


def _plan(cls: type, context: InputContext) -> Plan:
    """Each field's GraphQL name, Python name, and what it nests when it holds inputs."""
    definition = get_object_definition(cls, strict=True)
    plan = []
    for field in definition.fields:
        kind = field.resolve_type(type_definition=definition)
        inner = kind
        while isinstance(inner, StrawberryContainer):
            inner = inner.of_type
        nested = None
        if isinstance(inner, type) and has_object_definition(inner):
            ours = get_object_definition(inner, strict=True).from_input is _from_input
            nested = Nested(kind, inner, ours)
        plan.append((context.config.name_converter.from_field(field), field.python_name, nested))
    _plans[cls] = tuple(plan)
    return _plans[cls]


@built_as_coerced
@strawberry.input(description="A line's option in one of the ledger's tracking categories.")
class TrackingInput:
    category: str = strawberry.field(description="A category's name, e.g. Region.")
    option: str = strawberry.field(description="One of its options, e.g. North.")


@built_as_coerced
@strawberry.input
class LineInput:
    amount: Decimal | None = strawberry.field(
        default=None, description="Or quantity and unitAmount: then it is their product."
    )
    account_id: str = strawberry.field(description="An account code of the ledger.")
    tax_rate_id: str | None = strawberry.field(default=None, description="A tax rate code.")
    description: str = ""
    quantity: Decimal | None = strawberry.field(default=None, description="Up to 4 decimals.")
    unit_amount: Decimal | None = strawberry.field(default=None, description="Up to 4 decimals.")
    item_code: str | None = strawberry.field(
        default=None, description="The ledger's item (QuickBooks' sales lines need one)."
    )
    tracking: list[TrackingInput] | None = strawberry.field(
        default=None, description="At most two, each of a different category."
    )


AMOUNTS = "How the lines' amounts read (default EXCLUSIVE: before tax)."
RATE = (
    "Units of the company's base currency per unit of `currency` (greater than 0); "
    "absent: the ledger's own rate for the date."
)
FILES = "Files for the record (a multipart request): see attachFiles."


@built_as_coerced
@strawberry.input
class ExpenseInput:
    amount: Decimal | None = strawberry.field(
        default=None, description="Greater than 0, in the currency's precision; or `lines`."
    )
    currency: str = strawberry.field(description="ISO 4217 code, e.g. USD.")
    date: date
    account_id: str | None = strawberry.field(
        default=None, description="An expense account code, e.g. 429; or `lines`."
    )
    tax_rate_id: str | None = strawberry.field(default=None, description="e.g. INPUT or NONE.")
    description: str = ""
    vendor_name: str | None = strawberry.field(default=None, description="Or `merchant`.")
    merchant: str | None = None
    reference: str | None = strawberry.field(default=None, description="Your own id, echoed.")
    lines: list[LineInput] | None = strawberry.field(
        default=None, description="A split expense, instead of amount and accountId."
    )
    payment_account_id: str | None = strawberry.field(
        default=None,
        description="The bank or credit card account it was paid from; absent: the ledger's "
        "first bank account.",
    )
    line_amount_types: LineAmountTypes | None = strawberry.field(default=None, description=AMOUNTS)
    currency_rate: Decimal | None = strawberry.field(default=None, description=RATE)
    attachments: list[Upload] | None = strawberry.field(default=None, description=FILES)


@built_as_coerced
@strawberry.input
class BillInput:
    vendor_name: str
    issue_date: date
    due_date: date
    currency: str
    lines: list[LineInput]
    reference: str | None = None
    line_amount_types: LineAmountTypes | None = strawberry.field(default=None, description=AMOUNTS)
    currency_rate: Decimal | None = strawberry.field(default=None, description=RATE)
    attachments: list[Upload] | None = strawberry.field(default=None, description=FILES)


@built_as_coerced
@strawberry.input
class InvoiceInput:
    customer_name: str
    issue_date: date
    due_date: date
    currency: str
    lines: list[LineInput] = strawberry.field(description="Lines post to income accounts.")
    reference: str | None = None
    line_amount_types: LineAmountTypes | None = strawberry.field(default=None, description=AMOUNTS)
    currency_rate: Decimal | None = strawberry.field(default=None, description=RATE)
    attachments: list[Upload] | None = strawberry.field(default=None, description=FILES)


RECORD_ID = "The record it updates: the id its create returned."


@built_as_coerced
@strawberry.input(description="An expense's whole new content, and the record it updates.")
class ExpenseUpdateInput(ExpenseInput):
    record_id: strawberry.ID = strawberry.field(description=RECORD_ID)


@built_as_coerced
@strawberry.input(description="A bill's whole new content, and the record it updates.")
class BillUpdateInput(BillInput):
    record_id: strawberry.ID = strawberry.field(description=RECORD_ID)


@built_as_coerced
@strawberry.input(description="An invoice's whole new content, and the record it updates.")
class InvoiceUpdateInput(InvoiceInput):
    record_id: strawberry.ID = strawberry.field(description=RECORD_ID)


@strawberry.input
class AccountInput:
    code: str
    name: str
    type: AccountType


@strawberry.input
class TaxRateInput:
    code: str
    name: str
    rate: Decimal = strawberry.field(description="Percent, e.g. 15 for 15%.")


def to_records(
    record_type: RecordType,
    inputs: Sequence[ExpenseInput | BillInput | InvoiceInput],
    *,
    field: str,
    limit: int,
) -> list[Expense | Bill | Invoice]:
    raw: list[dict[str, Any]] = []  # Any: field values on their way to validation
    for data in map(_fields, inputs):
        if "merchant" in data:
            data.setdefault("vendor_name", data.pop("merchant"))
            data.pop("merchant", None)
        raw.append(data)
    return parse_records(record_type, raw, field=field, limit=limit)


def _fields(value: ExpenseInput | BillInput | InvoiceInput | LineInput) -> dict[str, Any]:
    """An input's fields as a plain dict, its lines too, for the record models to validate:
    `strawberry.asdict` deep-copies every value, a third of a 1,000-record create."""
    data = dict(vars(value))
    data.pop("attachments", None)  # files, not the record's: attached once it is created
    data.pop("record_id", None)  # which record an update is of, not its content
    if data.get("lines") is not None:
        data["lines"] = [_fields(line) for line in data["lines"]]
    if data.get("tracking") is not None:
        data["tracking"] = [vars(tracking) for tracking in data["tracking"]]
    return {key: value for key, value in data.items() if value is not None}


def to_account(data: AccountInput) -> Account:
    _check_names(data.code, data.name)
    return Account(data.code, data.name, data.type)


def to_tax_rate(data: TaxRateInput) -> TaxRate:
    _check_names(data.code, data.name)
    if not Decimal(0) <= data.rate <= Decimal(100):
        raise InvalidInput("input.rate: a percentage from 0 to 100", field="input.rate")
    return TaxRate(data.code, data.name, data.rate)


def _check_names(code: str, name: str) -> None:
    for field, value in (("input.code", code), ("input.name", name)):
        if not 0 < len(value.strip()) <= 255:
            raise InvalidInput(f"{field}: 1 to 255 characters", field=field)
        if "\x00" in value:
            raise InvalidInput(f"{field}: NUL characters are not allowed", field=field)
