"""OCC option symbols (parse and format, round trip over generated symbols) and vertical spreads:
max loss, max gain, breakeven and the card's lines."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.options import SpreadError, VerticalSpread, spread_card_lines
from venues.options import OccSymbol, OccSymbolError, OptionRight, is_occ_symbol


def test_the_issue_example() -> None:
    occ = OccSymbol.parse("SPY251121P00550000")
    assert occ == OccSymbol("SPY", date(2025, 11, 21), OptionRight.PUT, Decimal(550))
    assert occ.describe() == "SPY 2025-11-21 550 put"
    assert OccSymbol.parse("aapl240419c00172500").strike == Decimal("172.5")
    assert str(OccSymbol("BRK.B", date(2026, 1, 16), OptionRight.CALL, Decimal("0.5"))) == "BRK.B260116C00000500"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("SPY", "does not have that shape"),
        ("SPY251121X00550000", "does not have that shape"),
        ("SPY251131P00550000", "2025-11-31 is not a date"),
        ("TOOLONGX251121P00550000", "does not have that shape"),
        ("SPY251121P0055000", "does not have that shape"),
    ],
)
def test_bad_symbols_say_what_is_expected(text: str, problem: str) -> None:
    with pytest.raises(OccSymbolError, match=problem) as caught:
        OccSymbol.parse(text)
    assert "e.g. SPY251121P00550000" in str(caught.value)
    assert not is_occ_symbol(text) or "date" in problem


roots = st.from_regex(r"[A-Z][A-Z0-9.]{0,5}", fullmatch=True)
expiries = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
strikes = st.integers(min_value=1, max_value=99_999_999).map(lambda t: Decimal(t) / 1000)


@given(roots, expiries, st.sampled_from(list(OptionRight)), strikes)
def test_format_and_parse_round_trip(root: str, expiry: date, right: OptionRight, strike: Decimal) -> None:
    occ = OccSymbol(root, expiry, right, strike)
    text = occ.format()
    assert len(text) == len(root) + 15
    assert OccSymbol.parse(text) == occ
    assert OccSymbol.parse(text).format() == text


def leg(strike: int, right: str = "C") -> OccSymbol:
    return OccSymbol.parse(f"SPY251121{right}{strike * 1000:08d}")


def test_a_bull_call_debit_spread() -> None:
    spread = VerticalSpread(leg(550), leg(560), contracts=2, net=Decimal("3.20"))
    assert (spread.name, spread.max_loss, spread.max_gain, spread.breakeven) == (
        "bull call spread",
        Decimal("640.00"),
        Decimal("1360.00"),
        Decimal("553.20"),
    )
    assert spread_card_lines(spread) == [
        "bull call spread SPY 2025-11-21, 2 contracts",
        "  buy  SPY251121C00550000  (550 call)",
        "  sell SPY251121C00560000  (560 call)",
        "  net debit 3.20 a share = 640.00 USD",
        "  max loss 640.00 USD, max gain 1,360.00 USD, breakeven 553.20",
    ]


def test_credit_and_put_spreads() -> None:
    bull_put = VerticalSpread(leg(540, "P"), leg(550, "P"), contracts=1, net=Decimal("-2.50"))
    assert (bull_put.name, bull_put.max_gain, bull_put.max_loss, bull_put.breakeven) == (
        "bull put spread",
        Decimal("250.00"),
        Decimal("750.00"),
        Decimal("547.50"),
    )
    assert spread_card_lines(bull_put)[3] == "  net credit 2.50 a share = 250.00 USD"
    bear_put = VerticalSpread(leg(550, "P"), leg(540, "P"), contracts=1, net=Decimal("4"))
    assert (bear_put.name, bear_put.max_loss, bear_put.max_gain, bear_put.breakeven) == (
        "bear put spread",
        Decimal("400.00"),
        Decimal("600.00"),
        Decimal("546"),
    )
    bear_call = VerticalSpread(leg(560), leg(550), contracts=1, net=Decimal("-3"))
    assert (bear_call.name, bear_call.max_gain, bear_call.max_loss) == ("bear call spread", 300, 700)


@pytest.mark.parametrize(
    ("long", "short", "net", "problem"),
    [
        (leg(550), leg(550), Decimal(1), "different strikes"),
        (leg(550), leg(560, "P"), Decimal(1), "share underlying, expiry and right"),
        (leg(550), leg(560), Decimal(-1), "bought for a debit: net must be > 0"),
        (leg(560), leg(550), Decimal(1), "sold for a credit: net must be < 0"),
        (leg(550), leg(560), Decimal(10), "not below the strike width 10"),
        (leg(550), leg(560), Decimal(0), "not 0"),
    ],
)
def test_what_is_not_a_vertical_spread(long: OccSymbol, short: OccSymbol, net: Decimal, problem: str) -> None:
    with pytest.raises(SpreadError, match=problem):
        VerticalSpread(long, short, contracts=1, net=net)
