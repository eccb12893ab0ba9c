"""Sizing, exit tranches and the costed proposal, against numbers worked out by hand.

Every expectation has its arithmetic in a comment (fee schedules as in venues.models, slippage
rounded to the tick against the trader as in venues.costs.slipped_price), so a wrong expectation
is as easy to spot as a wrong result."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import replay_instrument
from tools.models import Action, Signal
from tools.sizing import DEFAULT_EXIT_WEIGHTS, exit_tranches, normalized_weights, propose, risk_based_qty
from venues.models import AssetClass, CryptoFees, FundingTerms, Instrument

D = Decimal
SLIP = D(10)  # bps, against the trader on both legs
# Fee rates of this trade date: stamp duty 0.05%, transfer fee 0.001% (venues/fee_rates.py).
ON = date(2024, 6, 3)

# Instruments as the replay catalogue builds them (venues/replay/catalog.py), written out so a
# catalogue change cannot silently move the hand-computed numbers below.
MOUTAI = replay_instrument("600519.SH")
ETF = replay_instrument("510300.SH")
BTC = replay_instrument("BTC/USD")
AMZN = replay_instrument("AMZN")


def buy(symbol: str, entry: str, stop: str, *take_profits: str) -> Signal:
    return Signal(
        action=Action.BUY,
        symbol=symbol,
        entry=D(entry),
        stop=D(stop),
        take_profits=tuple(D(tp) for tp in take_profits),
        confidence=0.8,
    )


def size(
    signal: Signal,
    instrument: Instrument,
    *,
    equity: str,
    cash: str | None = None,
    risk_pct: str = "0.01",
    max_pct: str = "0.20",
) -> tuple[Decimal, list[str]]:
    return risk_based_qty(
        signal,
        instrument,
        equity=D(equity),
        available_cash=D(cash if cash is not None else equity),
        risk_per_trade_pct=D(risk_pct),
        max_position_pct=D(max_pct),
        slippage_bps=SLIP,
    )


# --- risk-based quantity ------------------------------------------------------------------------


def test_quantity_is_the_risk_budget_over_the_slipped_per_unit_risk() -> None:
    # entry 100 x 1.001 = 100.10 (up to the tick); stop 95 x 0.999 = 94.905 -> 94.90 (down to the tick)
    # per-unit risk 100.10 - 94.90 = 5.20; budget 100000 x 1% = 1000 -> 1000 / 5.20 = 192.3 -> 192
    # (caps not binding: 20% of 100000 / 100.10 = 199.8; cash 100000 / (100.10 x 1.01) = 989)
    qty, notes = size(buy("AMZN", "100", "95", "110"), AMZN, equity="100000")
    assert qty == D(192)
    assert notes == []


def test_quantity_is_capped_by_the_max_position_share_of_equity() -> None:
    # stop 99 x 0.999 = 98.901 -> 98.90; per-unit 1.20; by risk 1000 / 1.20 = 833.3
    # by value 20% x 100000 / 100.10 = 199.8 -> 199, which is what may be bought
    qty, notes = size(buy("AMZN", "100", "99", "110"), AMZN, equity="100000")
    assert qty == D(199)
    assert notes == ["size capped at 20% of equity"]


def test_quantity_is_capped_by_the_cash_with_room_for_the_buy_fees() -> None:
    # by risk 192.3 (as above), by value 199.8, by cash 5050 / (100.10 x 1.01 = 101.101) = 49.95 -> 49
    # (without the 1% kept for fees 5050 / 100.10 = 50.4 would buy 50 and leave no cash for the fee)
    qty, notes = size(buy("AMZN", "100", "95", "110"), AMZN, equity="100000", cash="5050")
    assert qty == D(49)
    assert notes == ["size capped by available cash"]


def test_a_share_quantity_rounds_down_to_the_lot_of_100() -> None:
    # entry 1800 x 1.001 = 1801.80; stop 1750 x 0.999 = 1748.25; per-unit 53.55
    # by risk 1000000 x 1% / 53.55 = 186.7 -> 100 (down, never up to 200: that would risk 1.07%)
    # by value 35% x 1000000 / 1801.80 = 194.2, not binding
    qty, notes = size(buy("600519.SH", "1800", "1750", "1900"), MOUTAI, equity="1000000", max_pct="0.35")
    assert qty == D(100)
    assert notes == []


def test_a_share_size_is_zero_with_a_note_when_not_one_lot_fits() -> None:
    # by risk 200000 x 1% / 53.55 = 37.3 shares: less than a lot of 100
    qty, notes = size(buy("600519.SH", "1800", "1750", "1900"), MOUTAI, equity="200000", max_pct="0.35")
    assert qty == 0
    assert notes == ["less than one lot (100) fits the risk budget"]


def test_etf_value_cap_then_lot_rounding() -> None:
    # tick 0.001: entry 4 x 1.001 = 4.004; stop 3.9 x 0.999 = 3.8961 -> 3.896; per-unit 0.108
    # by risk 100000 x 1% / 0.108 = 9259.3; by value 35% x 100000 / 4.004 = 8741.3 -> lot -> 8700
    qty, notes = size(buy("510300.SH", "4", "3.9", "4.2"), ETF, equity="100000", max_pct="0.35")
    assert qty == D(8700)
    assert notes == ["size capped at 35% of equity"]


def test_crypto_quantity_rounds_down_to_the_step() -> None:
    # entry 50000 x 1.001 = 50050.00; stop 45000 x 0.999 = 44955.00; per-unit 5095
    # by risk 100000 x 1% / 5095 = 0.196270... -> step 0.0001 -> 0.1962
    # by value 20% x 100000 / 50050 = 0.3996, not binding
    qty, notes = size(buy("BTC/USD", "50000", "45000", "60000"), BTC, equity="100000")
    assert qty == D("0.1962")
    assert notes == []


def test_crypto_order_below_the_venue_minimum_notional_is_sized_zero() -> None:
    # A tiny account (uncapped) shows the minimum: by risk 60 x 1% / 5095 = 0.000118 -> 0.0001,
    # worth 0.0001 x 50050 = 5.005 USD, under the venue's 10 USD minimum.
    qty, notes = size(buy("BTC/USD", "50000", "45000", "60000"), BTC, equity="60", max_pct="1")
    assert qty == 0
    assert notes == ["order value below the venue minimum of 10 USD"]


# --- exit tranches and weights -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("instrument", "qty", "expected"),
    [
        # 30% / 40% of 1000 are whole lots; the last target takes the remaining 300
        (MOUTAI, "1000", ["300", "400", "300"]),
        # cumulative 150 -> 100, 350 -> 300 (TP2 200), remainder 200
        (MOUTAI, "500", ["100", "200", "200"]),
        # 30 and 40 shares are less than a lot: a one-lot position exits whole at the last target
        (MOUTAI, "100", ["0", "0", "100"]),
        # cumulative 0.02727 -> 0.0272, 0.06363 -> 0.0636 (TP2 0.0364), remainder 0.0909 - 0.0636 = 0.0273
        (BTC, "0.0909", ["0.0272", "0.0364", "0.0273"]),
        # cumulative 60 -> 0, 140 -> 100, 200: what TP1 cannot sell rolls to TP2
        (MOUTAI, "200", ["0", "100", "100"]),
        # lot 1: cumulative 3.3 -> 3, 7.7 -> 7 (TP2 4), remainder 4
        (AMZN, "11", ["3", "4", "4"]),
    ],
)
def test_exit_tranches_are_30_40_30_with_cumulative_lot_rounding(
    instrument: Instrument, qty: str, expected: list[str]
) -> None:
    tranches = exit_tranches(instrument, D(qty), DEFAULT_EXIT_WEIGHTS)
    assert tranches == [D(x) for x in expected]
    assert sum(tranches) == D(qty)  # nothing is left behind


def test_exit_tranches_with_two_targets_and_with_no_plan() -> None:
    assert exit_tranches(MOUTAI, D(1000), normalized_weights(DEFAULT_EXIT_WEIGHTS, 2)) == [D(300), D(700)]
    assert exit_tranches(MOUTAI, D(1000), ()) == [D(1000)]


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (1, ("1.0",)),  # one target takes everything: 0.3 + 0.4 + 0.3
        (2, ("0.3", "0.7")),  # TP2 takes its 40% and TP3's 30%
        (3, ("0.3", "0.4", "0.3")),
        (0, ()),
    ],
)
def test_normalized_weights_fold_missing_targets_into_the_last(targets: int, expected: tuple[str, ...]) -> None:
    weights = normalized_weights(DEFAULT_EXIT_WEIGHTS, targets)
    assert weights == tuple(D(w) for w in expected)
    assert not weights or sum(weights) == 1


# --- propose(): the numbers on the card ---------------------------------------------------------


def test_a_share_proposal_with_three_targets() -> None:
    # 500 shares, entry 1800, stop 1750, TP 1850 / 1900 / 1950, tranches 100 / 200 / 200 (see above).
    # Buy: fill 1800 x 1.001 = 1801.80; 500 x 1801.80 = 900900.00: commission 225.225 -> 225.23,
    #   transfer 9.009 -> 9.01, no stamp duty on a buy: fee 234.24; slippage 1.80 x 500 = 900.00
    #   entry costs 1134.24
    # TP1 100 @ 1850: fill 1848.15; 184815.00: commission 46.20375 -> 46.20, stamp 92.4075 -> 92.41,
    #   transfer 1.84815 -> 1.85: fee 140.46; slippage 1.85 x 100 = 185.00; gross 50 x 100 = 5000
    # TP2 200 @ 1900: fill 1898.10; 379620.00: commission 94.905 -> 94.91, stamp 189.81,
    #   transfer 3.7962 -> 3.80: fee 288.52; slippage 1.90 x 200 = 380.00; gross 100 x 200 = 20000
    # TP3 200 @ 1950: fill 1948.05; 389610.00: commission 97.4025 -> 97.40, stamp 194.805 -> 194.81,
    #   transfer 3.8961 -> 3.90: fee 296.11; slippage 1.95 x 200 = 390.00; gross 150 x 200 = 30000
    # exit costs 140.46 + 185 + 288.52 + 380 + 296.11 + 390 = 1680.09
    # expected = 55000 - 1134.24 - 1680.09 = 52185.67; costs 1134.24 + 1680.09 = 2814.33
    # Stop: fill 1750 x 0.999 = 1748.25; (1801.80 - 1748.25) x 500 = 26775.00; sell 874125.00:
    #   commission 218.53125 -> 218.53, stamp 437.0625 -> 437.06, transfer 8.74125 -> 8.74: 664.33
    #   loss = 26775.00 + 234.24 + 664.33 = 27673.57
    p = propose(buy("600519.SH", "1800", "1750", "1850", "1900", "1950"), MOUTAI, D(500), slippage_bps=SLIP, on=ON)
    assert (p.venue, p.symbol, p.currency) == ("replay-cn", "600519.SH", "CNY")
    assert p.qty == D(500)
    assert p.notional == D(900000)
    assert p.expected_net_profit == D("52185.67")
    assert p.fees_round_trip == D("2814.33")
    assert p.loss_at_stop == D("27673.57")
    assert p.reward_risk == pytest.approx(52185.67 / 27673.57)
    # the card shows the real tranches' shares (100 / 200 / 200 of 500), the plan asked 30/40/30
    assert p.exit_qtys == (D(100), D(200), D(200))
    assert p.exit_weights == (D("0.2"), D("0.4"), D("0.4"))
    assert p.planned_exit_weights == DEFAULT_EXIT_WEIGHTS


def test_etf_proposal_pays_minimum_commissions_and_whole_ticks_of_slippage() -> None:
    # 1000 units, entry 4, stop 3.9, one target 4.2 (it takes the whole position).
    # Buy: fill 4.004; 4004.000 x 0.025% = 1.00 -> the 5 CNY minimum; slippage 0.004 x 1000 = 4.000
    # TP 4.2: 4.2 x 0.999 = 4.1958 -> 4.195 (down to the 0.001 tick, against the seller);
    #   4195 x 0.025% = 1.05 -> 5 minimum; an ETF pays no stamp duty; slippage 0.005 x 1000 = 5.000
    # expected = 200 - (5 + 4) - (5 + 5) = 181.00; costs 19.00
    # Stop: 3.9 x 0.999 = 3.8961 -> 3.896; (4.004 - 3.896) x 1000 = 108 + 5 + 5 = 118.00
    p = propose(buy("510300.SH", "4", "3.9", "4.2"), ETF, D(1000), slippage_bps=SLIP, on=ON)
    assert p.expected_net_profit == D("181.00")
    assert p.fees_round_trip == D("19.00")
    assert p.loss_at_stop == D("118.00")
    assert p.reward_risk == pytest.approx(181 / 118)
    assert p.exit_weights == (D("1.0"),)


def test_crypto_proposal_charges_taker_bps_on_both_legs() -> None:
    # 0.1 BTC, entry 50000, stop 49000, TP 52000; taker 25 bps.
    # Buy: fill 50050.00; 5005 x 0.25% = 12.5125; slippage 50 x 0.1 = 5
    # TP: fill 51948.00; 5194.8 x 0.25% = 12.987; slippage 52 x 0.1 = 5.2; gross 2000 x 0.1 = 200
    # expected = 200 - 12.5125 - 5 - 12.987 - 5.2 = 164.3005
    # Stop: fill 48951.00; 1099 x 0.1 = 109.9 + 12.5125 + 4895.1 x 0.25% = 12.23775 -> 134.65025
    p = propose(buy("BTC/USD", "50000", "49000", "52000"), BTC, D("0.1"), slippage_bps=SLIP, on=ON)
    assert p.expected_net_profit == D("164.3005")
    assert p.loss_at_stop == D("134.65025")
    assert p.reward_risk == pytest.approx(164.3005 / 134.65025)


def test_sell_proposal_realises_the_gain_over_the_cost_basis_after_stamp_duty() -> None:
    # Sell 200 at 1900 held at an average cost of 1800: fill 1898.10; 379620.00: commission 94.91,
    # stamp 189.81, transfer 3.80 = 288.52; realised (1898.10 - 1800) x 200 - 288.52 = 19331.48
    # costs 288.52 + slippage 1.90 x 200 = 668.52; nothing is at risk: no stop, no reward/risk
    sell = Signal(action=Action.SELL, symbol="600519.SH", entry=D(1900))
    p = propose(sell, MOUTAI, D(200), slippage_bps=SLIP, avg_cost=D(1800), on=ON)
    assert p.expected_net_profit == D("19331.48")
    assert p.fees_round_trip == D("668.52")
    assert p.notional == D(380000)
    assert (p.loss_at_stop, p.reward_risk) == (0, 0.0)


def test_zero_quantity_proposal_costs_nothing_and_keeps_the_notes() -> None:
    signal = buy("600519.SH", "1800", "1750", "1900", "2000")
    p = propose(signal, MOUTAI, D(0), slippage_bps=SLIP, notes=("less than one lot (100) fits the risk budget",), on=ON)
    assert (p.qty, p.notional, p.expected_net_profit, p.loss_at_stop, p.reward_risk) == (0, 0, 0, 0, 0.0)
    assert p.exit_weights == (D("0.3"), D("0.7"))
    assert p.notes == ("less than one lot (100) fits the risk budget",)


# --- an exit plan the venue can execute to the end -----------------------------------------------

# A futures-like instrument: one contract is the lot and the step; no minimum notional.
FUTURE = Instrument(
    venue="t",
    symbol="rb2110",
    asset_class=AssetClass.CN_FUTURE,
    currency="CNY",
    lot_size=D(1),
    qty_step=D(1),
    tick_size=D(1),
    fees=CryptoFees(maker_bps=D(1), taker_bps=D(1)),  # a stand-in: tranches do not look at fees
    calendar="XSHG",
    timeframe="1d",
)


@pytest.mark.parametrize(
    ("qty", "expected"),
    [
        ("1", ["0", "0", "1"]),  # cumulative 0.3 -> 0, 0.7 -> 0: one contract exits at TP3
        ("2", ["0", "1", "1"]),  # cumulative 0.6 -> 0, 1.4 -> 1
        ("5", ["1", "2", "2"]),  # cumulative 1.5 -> 1, 3.5 -> 3
    ],
)
def test_futures_tranches_are_whole_contracts(qty: str, expected: list[str]) -> None:
    assert exit_tranches(FUTURE, D(qty), DEFAULT_EXIT_WEIGHTS) == [D(x) for x in expected]


def test_btc_tranches_below_the_minimum_at_the_stop_merge_into_the_next_target() -> None:
    # BTC/USD: step 0.0001, 10 USD minimum. At a stop fill of 32983.50 the smallest sellable tranche
    # is 10 / 32983.50 = 0.000303 -> 0.0004. 0.0011 BTC at 30/40/30: cumulative 0.00033 -> 0.0003,
    # 0.00077 -> 0.0007, so 0.0003 / 0.0004 / 0.0004; TP1's 0.0003 is too small and joins TP2.
    assert exit_tranches(BTC, D("0.0011"), DEFAULT_EXIT_WEIGHTS, stop_fill=D("32983.50")) == [
        D(0),
        D("0.0007"),
        D("0.0004"),
    ]
    # Without the stop only the step counts: the tranches the plan would have without a minimum.
    assert exit_tranches(BTC, D("0.0011"), DEFAULT_EXIT_WEIGHTS) == [D("0.0003"), D("0.0004"), D("0.0004")]
    # 0.0010: 0.0003 / 0.0004 / 0.0003; TP1 joins TP2 (0.0007) and TP3's 0.0003 goes back to TP2 too.
    assert exit_tranches(BTC, D("0.0010"), DEFAULT_EXIT_WEIGHTS, stop_fill=D("32983.50")) == [
        D(0),
        D("0.0010"),
        D(0),
    ]


def test_the_stored_shares_of_the_real_tranches_give_back_those_tranches() -> None:
    # What the card shows and the trade plan stores (tools/exits.py recomputes from it, without the stop).
    p = propose(buy("BTC/USD", "34000", "33000", "35500", "36500", "37500"), BTC, D("0.0011"), slippage_bps=D(5), on=ON)
    assert p.exit_qtys == (D(0), D("0.0007"), D("0.0004"))
    assert p.exit_weights == (D(0), D("0.0007") / D("0.0011"), D("0.0004") / D("0.0011"))
    assert exit_tranches(BTC, p.qty, p.exit_weights) == list(p.exit_qtys)


def test_the_expected_profit_is_computed_on_the_merged_tranches() -> None:
    # 0.0011 BTC, entry 34000, stop 33000, TP 35500 / 36500 / 37500, 5 bps slippage, taker 25 bps.
    # Tranches 0 / 0.0007 / 0.0004 (above). Buy: fill 34017.00; 37.4187 x 0.25% = 0.09354675;
    #   slippage 17 x 0.0011 = 0.0187
    # TP2 0.0007 @ 36500: fill 36481.75; 25.537225 x 0.25% = 0.06384306 (1e-8); slippage 0.012775;
    #   gross 2500 x 0.0007 = 1.75
    # TP3 0.0004 @ 37500: fill 37481.25; 14.9925 x 0.25% = 0.03748125; slippage 0.0075; gross 1.40
    # expected = 3.15 - 0.09354675 - 0.0187 - 0.06384306 - 0.012775 - 0.03748125 - 0.0075 = 2.91615394
    p = propose(buy("BTC/USD", "34000", "33000", "35500", "36500", "37500"), BTC, D("0.0011"), slippage_bps=D(5), on=ON)
    assert p.expected_net_profit == D("2.91615394")


def _tranche_case() -> st.SearchStrategy[tuple[Instrument, Decimal, tuple[Decimal, ...], Decimal]]:
    increments = st.sampled_from([D("0.0001"), D("0.001"), D("0.01"), D(1), D(100)])
    minimums = st.sampled_from([D(0), D(1), D(5), D(10), D(100)])
    prices = st.decimals(min_value=D("0.01"), max_value=D(100000), places=2)
    parts = st.lists(st.integers(min_value=0, max_value=10), min_size=1, max_size=3).filter(lambda p: sum(p) > 0)

    @st.composite
    def case(draw: st.DrawFn) -> tuple[Instrument, Decimal, tuple[Decimal, ...], Decimal]:
        increment, minimum, stop_fill = draw(increments), draw(minimums), draw(prices)
        lots = draw(st.integers(min_value=1, max_value=5000))
        instrument = FUTURE.model_copy(update={"lot_size": increment, "qty_step": increment, "min_notional": minimum})
        raw = draw(parts)
        weights = normalized_weights(tuple(D(x) / D(sum(raw)) for x in raw), len(raw))
        return instrument, increment * lots, weights, stop_fill

    return case()


@settings(max_examples=300, deadline=None)
@given(_tranche_case())
def test_every_non_zero_tranche_clears_the_venue_at_the_stop_and_they_sum_to_the_entry(
    case: tuple[Instrument, Decimal, tuple[Decimal, ...], Decimal],
) -> None:
    instrument, qty, weights, stop_fill = case
    tranches = exit_tranches(instrument, qty, weights, stop_fill=stop_fill)
    assert len(tranches) == len(weights)
    assert sum(tranches) == qty
    increment = instrument.lot_size
    assert all(t >= 0 and t % increment == 0 for t in tranches)
    sold = [t for t in tranches if t > 0]
    if qty * stop_fill >= instrument.min_notional:
        # the whole position can be sold at the stop, so every tranche can be sold there too
        assert all(t * stop_fill >= instrument.min_notional for t in sold)
    else:
        # nothing smaller than the whole would clear the minimum: one tranche, at the last target
        assert tranches[-1] == qty
    # shares of the entry give the same tranches back (what tools/exits.py does with a stored plan)
    shares = tuple(t / qty if t else D(0) for t in tranches)
    assert exit_tranches(instrument, qty, shares) == tranches


# --- shorts (sell-to-open): risk = stop - entry, targets bought back below, carry counted --------

ETH = replay_instrument("ETH/USDT")  # Binance USDT-M perpetual: 10 bps both sides, step 0.0001
SPY = replay_instrument("SPY")  # US equity on the margin account: zero commission, borrow 0.30%/yr


def short(symbol: str, entry: str, stop: str, *take_profits: str, horizon: int = 48, tf: str = "1h") -> Signal:
    return Signal(
        action=Action.SHORT,
        symbol=symbol,
        entry=D(entry),
        stop=D(stop),
        take_profits=tuple(D(tp) for tp in take_profits),
        horizon_bars=horizon,
        timeframe=tf,
        confidence=0.8,
    )


def test_a_short_is_sized_by_the_slipped_stop_above_less_the_slipped_entry() -> None:
    # sold at 2000 x 0.999 = 1998.00; stop bought at 2100 x 1.001 = 2102.10: 104.10 a unit at risk
    # 1000 / 104.10 = 9.60614... -> 9.6061 (value cap 20000 / 1998 = 10.01; margin 100000 / (1998 x 1.01))
    qty, notes = size(short("ETH/USDT", "2000", "2100", "1850"), ETH, equity="100000")
    assert (qty, notes) == (D("9.6061"), [])


def test_a_short_is_capped_by_the_cash_its_margin_needs() -> None:
    # 100% initial margin: 5000 / (1998 x 1.01) = 2.4777... -> 2.4777
    qty, notes = size(short("ETH/USDT", "2000", "2100", "1850"), ETH, equity="100000", cash="5000")
    assert qty == D("2.4777")
    assert notes == ["size capped by available cash"]


def test_a_short_where_the_instrument_cannot_be_shorted_sizes_to_zero_with_the_reason() -> None:
    qty, notes = size(short("BTC/USD", "34000", "35000", "32000"), BTC, equity="100000")
    assert qty == 0
    assert notes == ["BTC/USD cannot be sold short: spot crypto is never sold short here (only perpetuals are)"]


def with_funding(instrument: Instrument, rate_8h: str) -> Instrument:
    return instrument.model_copy(update={"funding": FundingTerms(rate_8h=D(rate_8h), basis=f"test rate {rate_8h}")})


def test_a_short_proposal_buys_back_at_the_targets_and_pays_a_negative_funding_over_the_time_stop() -> None:
    # 10 ETH sold at 1998.00: fee 19.98, slippage 2.00 x 10 = 20.00 -> entry costs 39.98
    # TP1 3 at 1850 (buy fill 1851.85): gross 150 x 3 = 450; fee 5.55555 + slippage 5.55 = 11.10555
    # TP2 4 at 1750 (1751.75): gross 1000; fee 7.007 + 7.00 = 14.007
    # TP3 3 at 1650 (1651.65): gross 1050; fee 4.95495 + 4.95 = 9.90495  -> exit costs 35.0175
    # funding -0.01% per 8 h: shorts pay longs; over 48 h = 0.06% of 20000 = 12.00
    # expected 2500 - 39.98 - 35.0175 - 12 = 2413.0025
    # loss at stop: (2102.10 - 1998.00) x 10 = 1041.00 + 19.98 + buy fee 21.021 + funding 12 = 1094.001
    eth = with_funding(ETH, "-0.0001")
    p = propose(short("ETH/USDT", "2000", "2100", "1850", "1750", "1650"), eth, D(10), slippage_bps=SLIP, on=ON)
    assert p.exit_qtys == (D(3), D(4), D(3))
    assert p.carry_cost == D("12.00")
    assert p.expected_net_profit == D("2413.0025")
    assert p.fees_round_trip == D("86.9975")
    assert p.loss_at_stop == D("1094.001")
    assert p.reward_risk == pytest.approx(2413.0025 / 1094.001)
    assert "short pays funding of 0.0600% over 48 h (test rate -0.0001): 12.00 USDT" in p.notes


def test_funding_a_short_would_receive_is_counted_as_zero() -> None:
    # The replay perpetual's assumed +0.01% per 8 h is paid by longs to shorts: the short's plan
    # counts none of it (a rate can turn), and says so. Same numbers as above without the 12.00.
    p = propose(short("ETH/USDT", "2000", "2100", "1850", "1750", "1650"), ETH, D(10), slippage_bps=SLIP, on=ON)
    assert p.carry_cost == 0
    assert p.expected_net_profit == D("2425.0025") and p.loss_at_stop == D("1082.001")
    assert any(n.startswith("short would receive funding of 0.0600% over 48 h, counted as zero") for n in p.notes)


def test_a_long_perpetual_pays_a_positive_funding_over_the_time_stop_in_its_costs() -> None:
    # 10 ETH bought at 2000 x 1.001 = 2002.00 (fee 20.02, slippage 20.00: entry costs 40.02); one
    # target 2100 (sell fill 2097.90: fee 20.979 + slippage 21.00); funding +0.03% per 8 h over
    # 24 bars of 1h = 0.09% of 20000 = 18.00, paid by the long.
    # expected 1000 - 40.02 - 41.979 - 18 = 900.001
    # loss at stop 1900 (sell fill 1898.10): 103.90 x 10 = 1039 + 20.02 + 18.981 + 18 = 1096.001
    eth = with_funding(ETH, "0.0003")
    signal = buy("ETH/USDT", "2000", "1900", "2100").model_copy(update={"horizon_bars": 24, "timeframe": "1h"})
    p = propose(signal, eth, D(10), slippage_bps=SLIP, exit_weights=(D(1),), on=ON)
    assert p.carry_cost == D("18.00")
    assert p.expected_net_profit == D("900.001")
    assert p.loss_at_stop == D("1096.001")
    assert "long pays funding of 0.0900% over 24 h (test rate 0.0003): 18.00 USDT" in p.notes
    # The same long with a negative rate would be paid: nothing counted, not a negative cost.
    credited = propose(signal, with_funding(ETH, "-0.0003"), D(10), slippage_bps=SLIP, exit_weights=(D(1),), on=ON)
    assert credited.carry_cost == 0 and credited.expected_net_profit == D("918.001")


def test_the_funding_a_long_pays_counts_in_its_risk_per_unit() -> None:
    # Risk per unit: |2002.00 - 1898.10| = 103.90, plus the funding over 24 h: 0.09% of 2000 = 1.80.
    # 1000 / 105.70 = 9.4607... -> 9.4607 (without funding 1000 / 103.90 = 9.6246)
    signal = buy("ETH/USDT", "2000", "1900", "2100").model_copy(update={"horizon_bars": 24, "timeframe": "1h"})
    assert size(signal, with_funding(ETH, "0.0003"), equity="100000")[0] == D("9.4607")
    assert size(signal, with_funding(ETH, "-0.0003"), equity="100000")[0] == D("9.6246")


def test_a_us_equity_short_pays_the_borrow_fee_over_the_time_stop() -> None:
    # 100 SPY worth 43000 for 48 h at 0.30% a year: 43000 x 0.003 x 48 / 8760 = 0.7068...
    p = propose(short("SPY", "430", "435", "420"), SPY, D(100), slippage_bps=SLIP, on=ON)
    assert p.carry_cost.quantize(D("0.0001")) == D("0.7068")
    assert any(n.startswith("short pays borrow of 0.0016% over 48 h") and n.endswith(": 0.71 USD") for n in p.notes)


def test_a_short_without_a_time_stop_says_its_carry_is_not_counted() -> None:
    p = propose(short("ETH/USDT", "2000", "2100", "1850", horizon=0), ETH, D(1), slippage_bps=SLIP, on=ON)
    assert p.carry_cost == 0
    assert any(n.startswith("short funding not counted: no time stop") for n in p.notes)


@pytest.mark.parametrize(
    ("stop", "targets", "message"),
    [
        ("1900", ("1850",), "a SHORT's stop 1900 must be above its entry 2000"),
        ("2000", ("1850",), "a SHORT's stop 2000 must be above its entry 2000"),
        ("2100", ("2050",), "TP1 2050 must be above zero and below the entry 2000"),
        ("2100", ("1850", "1900"), "TP2 1900 must be above zero and below TP1 1850"),
        ("2100", ("1850", "0"), "TP2 0 must be above zero and below TP1 1850"),
    ],
)
def test_a_short_signal_needs_its_stop_above_and_its_targets_below_descending(
    stop: str, targets: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        short("ETH/USDT", "2000", stop, *targets)


def test_a_short_signal_needs_a_stop_and_a_target() -> None:
    with pytest.raises(ValueError, match="a SHORT needs an entry, a stop and at least one take-profit"):
        Signal(action=Action.SHORT, symbol="ETH/USDT", entry=D(2000), stop=D(2100))
    assert short("ETH/USDT", "2000", "2100", "1900", "1800").long is False


# --- the venue's minimum order quantity (ccxt's limits.amount.min, whole shares, A-share lots) ---

BTC_MIN = BTC.model_copy(update={"min_qty": D("0.001"), "min_notional": D(0)})  # step 0.0001, orders >= 0.001


def test_a_size_below_the_minimum_quantity_is_skipped_naming_the_minimum() -> None:
    # Equity 100: 20% caps the value at 20 USD = 0.0004995 BTC at the 40040 fill, under 0.001.
    signal = buy("BTC/USD", "40000", "39000", "44000")
    assert size(signal, BTC_MIN, equity="100") == (
        D(0),
        ["size capped at 20% of equity", "0.0004995 BTC/USD fits, below the venue's minimum order quantity of 0.001"],
    )
    # Equity 1000: 0.0049 BTC, above it.
    assert size(signal, BTC_MIN, equity="1000")[0] == D("0.0049")


def test_exit_tranches_below_the_minimum_quantity_are_merged() -> None:
    # 0.003 at 30/40/30 is 0.0009 / 0.0012 / 0.0009: both 0.0009 are under 0.001, so one exit at TP2.
    assert exit_tranches(BTC_MIN, D("0.003"), DEFAULT_EXIT_WEIGHTS) == [D(0), D("0.003"), D(0)]
    assert exit_tranches(BTC, D("0.003"), DEFAULT_EXIT_WEIGHTS) == [D("0.0009"), D("0.0012"), D("0.0009")]
