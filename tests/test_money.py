"""Our totals against the ledgers' own reckoning: the Xero fake computes a document's
`SubTotal`, `TotalTax` and `Total`, and the QuickBooks fake its `TotalAmt` and
`TxnTaxDetail`, each its own way, from lines shaped as each adapter sends them. For every
reading of the amounts (tax excluded, included, none), every currency precision (JPY 0,
USD 2, KWD 3) and awkward rates, they agree to the currency's smallest unit."""

from datetime import date
from decimal import Decimal

from babel.numbers import get_currency_precision
from hypothesis import given
from hypothesis import strategies as st

from models import money
from models.enums import LineAmountTypes
from models.records import Bill, Line
from tests.fake_quickbooks import reckoned as quickbooks_reckoning
from tests.fake_xero import totals as xeros_totals

RATES = {"HIGH": Decimal("20"), "GST": Decimal("15"), "HALF": Decimal("12.5")}
RATES |= {"NYC": Decimal("8.875"), "NONE": Decimal("0")}
QUICKBOOKS_READINGS = {
    LineAmountTypes.EXCLUSIVE: "TaxExcluded",
    LineAmountTypes.INCLUSIVE: "TaxInclusive",
    LineAmountTypes.NO_TAX: "NotApplicable",
}
READINGS = {
    LineAmountTypes.EXCLUSIVE: "Exclusive",
    LineAmountTypes.INCLUSIVE: "Inclusive",
    LineAmountTypes.NO_TAX: "NoTax",
}


@st.composite
def bills(draw: st.DrawFn) -> Bill:
    currency = draw(st.sampled_from(["JPY", "USD", "KWD"]))
    places = get_currency_precision(currency)
    amounts = st.decimals(
        min_value=Decimal(1).scaleb(-places), max_value=Decimal(99_999), places=places
    )
    taxed = st.tuples(amounts, st.sampled_from([*RATES, None]))
    lines = draw(
        st.lists(
            taxed.map(lambda given: Line(amount=given[0], account_id="429", tax_rate_id=given[1])),
            min_size=1,
            max_size=8,
        )
    )
    return Bill(
        vendor_name="Paper Co",
        issue_date=date(2026, 11, 1),
        due_date=date(2026, 12, 1),
        currency=currency,
        line_amount_types=draw(st.sampled_from(list(LineAmountTypes))),
        lines=lines,
    )


@given(bill=bills())
def test_our_totals_are_the_ledgers_to_the_smallest_unit(bill: Bill) -> None:
    ours = money.totals(bill, RATES)
    document = {
        "CurrencyCode": bill.currency,
        "LineAmountTypes": READINGS[bill.line_amount_types],
        "LineItems": [
            {
                "LineAmount": str(line.amount),
                "UnitAmount": str(line.amount),
                "TaxType": line.tax_rate_id,
            }
            for line in bill.lines
        ],
    }
    rates = {code: {"EffectiveRate": str(rate)} for code, rate in RATES.items()}
    theirs = xeros_totals(document, rates)
    assert (ours.sub_total, ours.tax, ours.total) == tuple(
        Decimal(str(theirs[name])).quantize(
            Decimal(1).scaleb(-get_currency_precision(bill.currency))
        )
        for name in ("SubTotal", "TotalTax", "Total")
    )
    if bill.line_amount_types is LineAmountTypes.INCLUSIVE:
        assert ours.total == bill.total  # the lines already hold their tax
    else:
        assert ours.sub_total == bill.total


@given(bill=bills())
def test_our_totals_are_quickbooks_to_the_smallest_unit(bill: Bill) -> None:
    ours = money.totals(bill, RATES)
    document = {
        "CurrencyRef": {"value": bill.currency},
        "GlobalTaxCalculation": QUICKBOOKS_READINGS[bill.line_amount_types],
        "Line": [
            {
                "Amount": str(line.amount),
                "DetailType": "AccountBasedExpenseLineDetail",
                "AccountBasedExpenseLineDetail": {"TaxCodeRef": {"value": line.tax_rate_id}},
            }
            for line in bill.lines
        ],
    }
    theirs = quickbooks_reckoning(document, RATES)
    unit = Decimal(1).scaleb(-get_currency_precision(bill.currency))
    total = Decimal(str(theirs["TotalAmt"])).quantize(unit)
    tax = Decimal(str(theirs["TxnTaxDetail"]["TotalTax"])).quantize(unit)
    assert (ours.total, ours.tax, ours.sub_total) == (total, tax, total - tax)
