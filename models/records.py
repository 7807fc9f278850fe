"""Record shapes (expense, bill, invoice) and their validation: what a sync item carries.

Validation runs before anything is written, so a batch is created whole or not at all.
Money stays `Decimal` and is stored as a decimal string, exact on every backend.
"""

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
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
    RecordType,
)
from models.errors import InvalidInput

CURRENCIES = frozenset(list_currencies())
MAX_LINES = 100


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


NoNul = AfterValidator(_no_nul)  # no database text column can hold one
Name = Annotated[str, Field(min_length=1, max_length=255), NoNul]
Code = Annotated[str, Field(min_length=1, max_length=255), NoNul]
Description = Annotated[str, Field(max_length=4000), NoNul]
Amount = Annotated[Decimal, Field(gt=0, max_digits=18, allow_inf_nan=False)]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    currency: str
    reference: Annotated[str, Field(max_length=255), NoNul] | None = None

    def _check_currency(self, amounts: Sequence[tuple[str, Decimal]]) -> None:
        """ISO 4217 code, and no more decimal places than the currency has (babel's table)."""
        if self.currency not in CURRENCIES:
            raise ValueError(f"currency: '{self.currency}' is not an ISO 4217 currency code")
        places = get_currency_precision(self.currency)
        for path, amount in amounts:
            exponent = amount.normalize().as_tuple().exponent
            if isinstance(exponent, int) and -exponent > places:
                raise ValueError(f"{path}: {self.currency} amounts have at most {places} decimals")


class Line(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    description: Description = ""
    amount: Amount
    account_id: Code
    tax_rate_id: Code | None = None


class Expense(_Record):
    record_type: Literal[RecordType.EXPENSE] = RecordType.EXPENSE
    account_types: ClassVar[frozenset[AccountType]] = EXPENSE_ACCOUNT_TYPES
    kind: ClassVar[str] = "an expense"
    amount: Amount
    date: date
    account_id: Code
    tax_rate_id: Code | None = None
    description: Description = ""
    vendor_name: Name

    @model_validator(mode="after")
    def _valid_money(self) -> Self:
        self._check_currency([("amount", self.amount)])
        return self

    @property
    def total(self) -> Decimal:
        return self.amount

    @property
    def lines(self) -> list[Line]:
        """Its one line, so that every record is a list of lines to a ledger."""
        return [Line(amount=self.amount, account_id=self.account_id, tax_rate_id=self.tax_rate_id)]


class _LinedRecord(_Record):
    issue_date: date
    due_date: date
    lines: Annotated[list[Line], Field(min_length=1, max_length=MAX_LINES)]

    @model_validator(mode="after")
    def _valid_money_and_dates(self) -> Self:
        self._check_currency(
            [(f"lines.{i}.amount", line.amount) for i, line in enumerate(self.lines)]
        )
        if self.due_date < self.issue_date:
            raise ValueError("dueDate: must not be before issueDate")
        return self

    @property
    def total(self) -> Decimal:
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
    if not loc and ": " in message:  # model-level checks name their field themselves
        where, message = message.split(": ", 1)
        loc = [where]
    path = ".".join([prefix, *loc])
    return InvalidInput(f"{path}: {message}", field=path)
