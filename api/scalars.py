"""Date, DateTime and Decimal as this API reads them.

Strawberry's own parsers raise errors that carry no location, so a bad literal could not be
traced to its field; raising ValueError lets GraphQL attach the offending node. DateTime
also insists on a UTC offset, and Decimal on a finite number.
"""

import datetime as dt
import decimal
from collections.abc import Callable
from operator import methodcaller
from typing import TypeVar

from strawberry.types.scalar import ScalarDefinition

T = TypeVar("T")


def _strings_only(parse: Callable[[str], T], kind: str) -> Callable[[object], T]:
    def parse_value(value: object) -> T:
        if not isinstance(value, str):
            raise ValueError(f"{kind} must be a string")
        return parse(value)

    return parse_value


# graphql-core puts what a scalar says in quotes and the value given after it: no value here


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("not a date: use YYYY-MM-DD") from None


def _datetime(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError("a date-time needs a UTC offset, e.g. 2026-01-31T00:00:00Z")
    return parsed


def _decimal(value: object) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError('a decimal must be a string such as "12.50" or a number')
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        raise ValueError("not a decimal number") from None
    if not number.is_finite():
        raise ValueError("not a finite decimal number")
    return number


_isoformat = methodcaller("isoformat")

SCALARS: dict[object, ScalarDefinition] = {
    dt.date: ScalarDefinition(
        name="Date",
        description="A calendar date, YYYY-MM-DD.",
        specified_by_url=None,
        serialize=_isoformat,
        parse_value=_strings_only(_date, "Date"),
        parse_literal=None,
        origin=dt.date,
    ),
    dt.datetime: ScalarDefinition(
        name="DateTime",
        description="An ISO 8601 date-time with an offset, e.g. 2026-01-31T09:00:00+00:00.",
        specified_by_url=None,
        serialize=_isoformat,
        parse_value=_strings_only(_datetime, "DateTime"),
        parse_literal=None,
        origin=dt.datetime,
    ),
    decimal.Decimal: ScalarDefinition(
        name="Decimal",
        description='An exact decimal number, sent as a string such as "12.50".',
        specified_by_url=None,
        serialize=str,
        parse_value=_decimal,
        parse_literal=None,
        origin=decimal.Decimal,
    ),
}
