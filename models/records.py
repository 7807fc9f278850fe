"""Record shapes (expense, bill, invoice) and their validation: what a sync item carries.

Validation runs before anything is written, so a batch is created whole or not at all.
Money stays `Decimal` and is stored as a decimal string, exact on every backend.
"""

import re
from collections.abc import Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal, Self

from babel.numbers import get_currency_precision, list_currencies
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from models.enums import (
    EXPENSE_ACCOUNT_TYPES,
    INCOME_ACCOUNT_TYPES,
    AccountType,
    LineAmountTypes,
    RecordType,
)
from models.errors import InvalidInput

CURRENCIES = frozenset(list_currencies())
_PATH = re.compile(r"[a-z][A-Za-z]*(\.\w+)*")  # a field's path in a model check's message
MAX_LINES = 100
MISSING = {  # what a missing field's message says where "Field required" is not enough
    ("Expense", "vendorName"): "Field required: who was paid (vendorName, or its alias merchant)",
}
MAX_TRACKING = 2  # categories per line, as Xero allows


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


NoNul = AfterValidator(_no_nul)  # no database text column can hold one
Name = Annotated[str, Field(min_length=1, max_length=255), NoNul]
Code = Annotated[str, Field(min_length=1, max_length=255), NoNul]
Description = Annotated[str, Field(max_length=4000), NoNul]
Amount = Annotated[Decimal, Field(gt=0, max_digits=18, allow_inf_nan=False)]
Quantity = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=4, allow_inf_nan=False)]
UnitAmount = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=4, allow_inf_nan=False)]
Rate = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=10, allow_inf_nan=False)]


def rounded(amount: Decimal, currency: str) -> Decimal:
    """The amount in the currency's precision (babel's table: JPY 0, USD 2, KWD 3 decimals),
    half away from zero, as ledgers round."""
    return amount.quantize(Decimal(1).scaleb(-get_currency_precision(currency)), ROUND_HALF_UP)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    currency: str
    reference: Annotated[str, Field(max_length=255), NoNul] | None = None
    line_amount_types: LineAmountTypes = LineAmountTypes.EXCLUSIVE
    currency_rate: Rate | None = None  # None: the ledger's own rate for the date

    @model_validator(mode="before")
    @classmethod
    def _priced(cls, data: Any) -> Any:  # Any: values on their way to validation
        """A line given as quantity x unitAmount gets its amount, in the currency's precision."""
        if not isinstance(data, dict) or data.get("currency") not in CURRENCIES:
            return data
        lines = data.get("lines")
        if not isinstance(lines, list):
            return data
        priced = [_priced_line(n, line, data["currency"]) for n, line in enumerate(lines)]
        return {**data, "lines": priced}

    def _check_lines(self, lines: Sequence["Line"], prefix: str) -> None:
        """Each line's amount in the currency's precision, and equal to quantity x unitAmount
        (rounded so) where both are given."""
        self._check_currency([(f"{prefix}{i}.amount", line.amount) for i, line in enumerate(lines)])
        for i, line in enumerate(lines):
            if line.quantity is None or line.unit_amount is None:
                continue
            expected = rounded(line.quantity * line.unit_amount, self.currency)
            if line.amount != expected:
                raise ValueError(
                    f"{prefix}{i}.amount: quantity x unitAmount is {expected} {self.currency},"
                    f" not {line.amount}"
                )

    def _check_currency(self, amounts: Sequence[tuple[str, Decimal]]) -> None:
        """ISO 4217 code, and no more decimal places than the currency has (babel's table)."""
        if self.currency not in CURRENCIES:
            upper = self.currency.upper()
            hint = f": use upper case ({upper})" if upper in CURRENCIES else ", e.g. USD"
            raise ValueError(f"currency: '{self.currency}' is not an ISO 4217 currency code{hint}")
        places = get_currency_precision(self.currency)
        for path, amount in amounts:
            exponent = amount.normalize().as_tuple().exponent
            if isinstance(exponent, int) and -exponent > places:
                raise ValueError(f"{path}: {self.currency} amounts have at most {places} decimals")


def _priced_line(n: int, line: Any, currency: str) -> Any:  # Any: a line being validated
    if not isinstance(line, dict) or line.get("amount") is not None:
        return line
    given = {key: value for key, value in line.items() if key != "amount"}
    quantity = line.get("quantity")
    unit = line.get("unit_amount", line.get("unitAmount"))
    if (quantity is None) != (unit is None):
        missing = "unitAmount" if unit is None else "quantity"
        raise ValueError(f"lines.{n}.{missing}: quantity and unitAmount go together")
    if quantity is None:
        return given  # no amount, and nothing to make it of: "Field required"
    try:
        return {**given, "amount": rounded(Decimal(str(quantity)) * Decimal(str(unit)), currency)}
    except (InvalidOperation, ValueError):
        return given  # the quantity or unit amount is refused in its own words


class Tracking(BaseModel):
    """A line's option in one of the ledger's tracking categories (Xero's Region, say; a class
    or a department in QuickBooks)."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    category: Name
    option: Name


class Line(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    description: Description = ""
    quantity: Quantity | None = None  # validated before the amount made of them
    unit_amount: UnitAmount | None = None
    amount: Amount
    account_id: Code
    tax_rate_id: Code | None = None
    item_code: Code | None = None
    tracking: Annotated[list[Tracking], Field(max_length=MAX_TRACKING)] = []

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Quantity with unit amount, and one option per category."""
        if (self.quantity is None) != (self.unit_amount is None):
            missing = "unitAmount" if self.unit_amount is None else "quantity"
            raise ValueError(f"{missing}: quantity and unitAmount go together")
        seen: set[str] = set()
        for n, tracking in enumerate(self.tracking):
            if tracking.category in seen:
                raise ValueError(
                    f"tracking.{n}.category: '{tracking.category}' is already on this line"
                )
            seen.add(tracking.category)
        return self


class Expense(_Record):
    """An amount on one account (`amount`, `account_id`, `tax_rate_id`), or split over
    `lines`: one of the two."""

    record_type: Literal[RecordType.EXPENSE] = RecordType.EXPENSE
    account_types: ClassVar[frozenset[AccountType]] = EXPENSE_ACCOUNT_TYPES
    kind: ClassVar[str] = "an expense"
    amount: Amount | None = None
    date: date
    account_id: Code | None = None
    tax_rate_id: Code | None = None
    lines: Annotated[list[Line], Field(min_length=1, max_length=MAX_LINES)] | None = None
    description: Description = ""
    vendor_name: Name
    payment_account_id: Code | None = None  # the bank or card it was paid from

    @model_validator(mode="after")
    def _valid_money(self) -> Self:
        if self.lines is None:
            if self.amount is None:
                raise ValueError("amount: Field required (or give lines)")
            if self.account_id is None:
                raise ValueError("accountId: Field required (or give lines)")
            self._check_currency([("amount", self.amount)])
            return self
        if self.amount is not None or self.account_id is not None or self.tax_rate_id:
            raise ValueError("lines: give lines, or amount and accountId, not both")
        self._check_lines(self.lines, "lines.")
        return self

    @property
    def document_lines(self) -> list[Line]:
        """Its lines; the single-amount form as one line."""
        if self.lines is not None:
            return self.lines
        assert self.amount is not None and self.account_id is not None  # validated
        return [Line(amount=self.amount, account_id=self.account_id, tax_rate_id=self.tax_rate_id)]

    @property
    def total(self) -> Decimal:
        """The sum of its lines, as given (with or without tax: `line_amount_types`)."""
        return sum((line.amount for line in self.document_lines), Decimal(0))


class _LinedRecord(_Record):
    issue_date: date
    due_date: date
    lines: Annotated[list[Line], Field(min_length=1, max_length=MAX_LINES)]

    @model_validator(mode="after")
    def _valid_money_and_dates(self) -> Self:
        self._check_lines(self.lines, "lines.")
        if self.due_date < self.issue_date:
            raise ValueError("dueDate: must not be before issueDate")
        return self

    @property
    def document_lines(self) -> list[Line]:
        """The lines of its document (as every record has: see `Expense`)."""
        return self.lines

    @property
    def total(self) -> Decimal:
        """The sum of its lines, as given (with or without tax: `line_amount_types`)."""
        return sum((line.amount for line in self.lines), Decimal(0))


class Bill(_LinedRecord):
    record_type: Literal[RecordType.BILL] = RecordType.BILL
    account_types: ClassVar[frozenset[AccountType]] = EXPENSE_ACCOUNT_TYPES
    kind: ClassVar[str] = "a bill"
    vendor_name: Name


class Invoice(_LinedRecord):
    record_type: Literal[RecordType.INVOICE] = RecordType.INVOICE
    account_types: ClassVar[frozenset[AccountType]] = INCOME_ACCOUNT_TYPES
    kind: ClassVar[str] = "an invoice"
    customer_name: Name


Record = Annotated[Expense | Bill | Invoice, Field(discriminator="record_type")]
_RECORD = TypeAdapter[Expense | Bill | Invoice](Record)
_MODELS: dict[RecordType, type[Expense | Bill | Invoice]] = {
    RecordType.EXPENSE: Expense,
    RecordType.BILL: Bill,
    RecordType.INVOICE: Invoice,
}


def kind_of(record_type: RecordType) -> str:
    """The record type as a sentence names it: "an expense"."""
    return _MODELS[record_type].kind


def parse_records(
    record_type: RecordType, raw: Sequence[dict[str, Any]], *, field: str, limit: int
) -> list[Expense | Bill | Invoice]:
    """Validate every record or none; the error names the first bad field by its GraphQL path."""
    if not raw:
        raise InvalidInput(f"{field}: at least one record is required", field=field)
    if len(raw) > limit:
        raise InvalidInput(f"{field}: at most {limit} records per request", field=field)
    model = _MODELS[record_type]
    records = []
    for index, data in enumerate(raw):
        try:
            records.append(model.model_validate(data))
        except ValidationError as exc:
            raise _invalid(exc, f"{field}.{index}") from None
    return records


def load_record(payload: dict[str, Any]) -> Expense | Bill | Invoice:
    """A record back from a sync item's stored payload."""
    return _RECORD.validate_python(payload)


def dump_record(record: Expense | Bill | Invoice) -> dict[str, Any]:
    return record.model_dump(mode="json")


def _invalid(exc: ValidationError, prefix: str) -> InvalidInput:
    first = exc.errors()[0]
    loc = [to_camel(str(part)) if isinstance(part, str) else str(part) for part in first["loc"]]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = MISSING.get((exc.title, ".".join(loc)), message)
    where, _, rest = message.partition(": ")
    if rest and _PATH.fullmatch(where):  # model-level checks name their field themselves
        loc, message = [*loc, where], rest
    path = ".".join([prefix, *loc])
    return InvalidInput(f"{path}: {message}", field=path)
