"""Money as ledgers reckon it: each line's tax rounded to the currency's precision, then
summed (Xero and QuickBooks both round per line), read as the record's `line_amount_types`
says: amounts before tax, with tax included, or untaxed."""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from models.enums import LineAmountTypes
from models.records import Bill, Expense, Invoice, rounded


@dataclass(frozen=True)
class Totals:
    sub_total: Decimal  # before tax
    tax: Decimal
    total: Decimal


def line_tax(amount: Decimal, percent: Decimal, reading: LineAmountTypes, currency: str) -> Decimal:
    """The tax in one line's amount at `percent`, rounded to the currency's precision."""
    if reading is LineAmountTypes.NO_TAX:
        return rounded(Decimal(0), currency)
    if reading is LineAmountTypes.INCLUSIVE:
        return rounded(amount * percent / (100 + percent), currency)
    return rounded(amount * percent / 100, currency)


def totals(record: Expense | Bill | Invoice, rates: Mapping[str, Decimal]) -> Totals:
    """The record's totals at the ledger's tax rates (`rates`: percent by tax rate code; a
    line without one, or with a code not there, is untaxed)."""
    reading, currency = record.line_amount_types, record.currency
    given = tax = Decimal(0)
    for line in record.document_lines:
        percent = rates.get(line.tax_rate_id or "", Decimal(0))
        given += line.amount
        tax += line_tax(line.amount, percent, reading, currency)
    if reading is LineAmountTypes.INCLUSIVE:
        return Totals(given - tax, tax, given)
    return Totals(given, tax, given + tax)
