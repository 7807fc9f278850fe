"""Our totals against a ledger's own reckoning: the Xero fake computes a document's
`SubTotal`, `TotalTax` and `Total` its own way, from the lines as the Xero adapter sends them.
For every reading of the amounts (tax excluded, included, none), every currency precision
(JPY 0, USD 2, KWD 3) and awkward rates, the two agree to the currency's smallest unit."""

from datetime import date
from decimal import Decimal

from babel.numbers import get_currency_precision
from hypothesis import given
from hypothesis import strategies as st

from models import money
from models.enums import LineAmountTypes
from models.records import Bill, Line
from tests.fake_xero import totals as xeros_totals

RATES = {"HIGH": Decimal("20"), "GST": Decimal("15"), "HALF": Decimal("12.5")}
RATES |= {"NYC": Decimal("8.875"), "NONE": Decimal("0")}
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
