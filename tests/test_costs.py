"""Cost models, one market at a time, against numbers worked out by hand from each fee schedule.
The arithmetic is in the comments so a wrong expectation is as easy to spot as a wrong result."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tests.support import replay_instrument
from venues.costs import FeeBreakdown, fee_breakdown, fees, round_to_tick, round_trip_cost, slipped_price
from venues.fee_rates import REGULATORY_RATES, RateName, rate
from venues.models import AssetClass, CryptoFees, Instrument, Liquidity, Side, UsEquityFees

D = Decimal
# A trade date on which every rate the arithmetic below uses is in force (venues/fee_rates.py):
# stamp duty 0.05% (from 2023-08-28), transfer fee 0.001% (from 2022-04-29), SEC fee USD 27.80 per
# million (2024-05-22 to 2025-05-13), FINRA TAF USD 0.000166 a share capped at 8.30 (from 2024).
ON = date(2024, 6, 3)


# The common retail schedule: 0.025% commission (5 CNY minimum), 0.05% stamp duty on sells, 0.001% transfer.
STOCK = replay_instrument("600519.SH")


# The replay catalogue's ETF schedule: no stamp duty, no transfer fee; ETFs quote to 0.001.
ETF = replay_instrument("510300.SH")

BTC = Instrument(
    venue="t",
    symbol="BTC/USDT",
    asset_class=AssetClass.CRYPTO,
    currency="USDT",
    lot_size=D("0.0001"),
    qty_step=D("0.0001"),
    fees=CryptoFees(maker_bps=D(8), taker_bps=D(10)),
    calendar="24/7",
    timeframe="1h",
)


def us_stock(regulatory_fees: bool) -> Instrument:
    return Instrument(
        venue="t",
        symbol="AMZN",
        asset_class=AssetClass.US_EQUITY,
        currency="USD",
        fees=UsEquityFees(regulatory_fees=regulatory_fees),
        calendar="XNYS",
        timeframe="1h",
    )


# --- China A-shares ---------------------------------------------------------------------------


def test_a_share_buy_charges_commission_and_transfer_fee_but_no_stamp_duty() -> None:
    # 100 x 2011.01 = 201101.00; commission 0.025% = 50.27525 -> 50.28 (above the 5 minimum);
    # transfer 0.001% = 2.01101 -> 2.01; no stamp duty on a buy; total 52.29
    breakdown = fee_breakdown(STOCK, Side.BUY, D(100), D("2011.01"), on=ON)
    assert breakdown == FeeBreakdown(commission=D("50.28"), stamp_duty=D(0), transfer_fee=D("2.01"))
    assert breakdown.total == D("52.29")


def test_a_share_small_buy_pays_the_minimum_commission() -> None:
    # 100 x 10.00 = 1000.00; commission 0.025% = 0.25 -> the 5.00 minimum; transfer 0.001% = 0.01; total 5.01
    breakdown = fee_breakdown(STOCK, Side.BUY, D(100), D("10.00"), on=ON)
    assert breakdown.commission == D("5")
    assert breakdown.transfer_fee == D("0.01")
    assert fees(STOCK, Side.BUY, D(100), D("10.00"), on=ON) == D("5.01")


def test_a_share_sell_adds_stamp_duty() -> None:
    # 100 x 2011.01 = 201101.00; commission 50.28; stamp duty 0.05% = 100.5505 -> 100.55;
    # transfer 2.01; total 50.28 + 100.55 + 2.01 = 152.84
    breakdown = fee_breakdown(STOCK, Side.SELL, D(100), D("2011.01"), on=ON)
    assert breakdown == FeeBreakdown(commission=D("50.28"), stamp_duty=D("100.55"), transfer_fee=D("2.01"))
    assert breakdown.total == D("152.84")


def test_a_share_small_sell_pays_minimum_commission_plus_stamp_duty() -> None:
    # 100 x 10.00 = 1000.00; commission 0.25 -> 5.00 minimum; stamp 0.05% = 0.50; transfer 0.01; total 5.51
    assert fees(STOCK, Side.SELL, D(100), D("10.00"), on=ON) == D("5.51")


def test_etf_pays_neither_stamp_duty_nor_transfer_fee() -> None:
    # 10000 x 4.950 = 49500.00; commission 0.025% = 12.375 -> 12.38 (half up); no stamp duty, no transfer fee
    sell = fee_breakdown(ETF, Side.SELL, D(10000), D("4.950"), on=ON)
    assert sell == FeeBreakdown(commission=D("12.38"), stamp_duty=D(0), transfer_fee=D(0))
    assert fees(ETF, Side.BUY, D(10000), D("4.950"), on=ON) == D("12.38")


# --- crypto -----------------------------------------------------------------------------------


def test_crypto_taker_and_maker_rates() -> None:
    # 0.5 x 35000 = 17500; taker 10 bps = 17.50; maker 8 bps = 14.00
    assert fees(BTC, Side.BUY, D("0.5"), D(35000), Liquidity.TAKER, on=ON) == D("17.50")
    assert fees(BTC, Side.BUY, D("0.5"), D(35000), Liquidity.MAKER, on=ON) == D("14.00")
    # No stamp duty or sell surcharge in crypto: a sell costs what a buy does.
    assert fees(BTC, Side.SELL, D("0.5"), D(35000), Liquidity.MAKER, on=ON) == D("14.00")


def test_crypto_fee_is_kept_to_eight_decimals() -> None:
    # 0.0123 x 33333.33 = 409.999959; taker 10 bps = 0.409999959 -> 0.40999996 (1e-8, half up)
    assert fees(BTC, Side.BUY, D("0.0123"), D("33333.33"), on=ON) == D("0.40999996")


def test_crypto_default_liquidity_is_taker() -> None:
    # 1 x 20000 = 20000; taker 10 bps = 20.00
    assert fees(BTC, Side.BUY, D(1), D(20000), on=ON) == D("20.00")


# --- US equities ------------------------------------------------------------------------------


def test_us_equity_has_zero_commission() -> None:
    # 100 x 150.00 = 15000.00; commission 0 per share; regulatory fees off by default
    assert fees(us_stock(False), Side.BUY, D(100), D("150.00"), on=ON) == D(0)
    assert fees(us_stock(False), Side.SELL, D(100), D("150.00"), on=ON) == D(0)


def test_us_regulatory_fees_apply_to_sells_only_rounded_up_to_the_cent() -> None:
    # sell 100 x 150.00 = 15000.00; SEC 0.0000278 x 15000 = 0.417 -> up to 0.42;
    # TAF 100 x 0.000166 = 0.0166 -> up to 0.02; total 0.44 (half-up rounding would give 0.42 + 0.02 too,
    # so the next case pins the direction)
    instrument = us_stock(True)
    assert fee_breakdown(instrument, Side.SELL, D(100), D("150.00"), on=ON).regulatory_fee == D("0.44")
    # sell 10 x 100.00 = 1000.00; SEC 0.0278 -> up to 0.03 (half up: 0.03); TAF 10 x 0.000166 = 0.00166 -> up
    # to 0.01 (half up would be 0.00); total 0.04
    assert fees(instrument, Side.SELL, D(10), D("100.00"), on=ON) == D("0.04")
    # buys pay neither
    assert fees(instrument, Side.BUY, D(100), D("150.00"), on=ON) == D(0)


def test_us_taf_is_capped_per_trade() -> None:
    # sell 60000 x 10.01 = 600600.00; SEC 0.0000278 x 600600 = 16.69668 -> up to 16.70;
    # TAF 60000 x 0.000166 = 9.96 -> capped at 8.30; total 25.00
    assert fees(us_stock(True), Side.SELL, D(60000), D("10.01"), on=ON) == D("25.00")


# --- slippage and ticks -----------------------------------------------------------------------


def test_slipped_price_rounds_against_the_trader() -> None:
    stock = STOCK
    # buy: 2010.00 x 1.0005 = 2011.005 -> up to 2011.01
    assert slipped_price(stock, Side.BUY, D("2010.00"), D(5)) == D("2011.01")
    # sell: 2010.00 x 0.9995 = 2008.995 -> down to 2008.99 (nearest would be 2009.00, in the seller's favour)
    assert slipped_price(stock, Side.SELL, D("2010.00"), D(5)) == D("2008.99")
    # ETF tick 0.001: buy 4.950 x 1.0005 = 4.952475 -> 4.953; sell 4.950 x 0.9995 = 4.947525 -> 4.947
    assert slipped_price(ETF, Side.BUY, D("4.950"), D(5)) == D("4.953")
    assert slipped_price(ETF, Side.SELL, D("4.950"), D(5)) == D("4.947")


def test_slipped_price_with_no_slippage_is_the_price() -> None:
    assert slipped_price(STOCK, Side.BUY, D("2010.00"), D(0)) == D("2010.00")
    assert slipped_price(STOCK, Side.SELL, D("2010.00"), D(0)) == D("2010.00")


def test_slippage_on_a_cheap_stock_is_at_least_one_tick() -> None:
    # 3.00 x 1.0005 = 3.0015 -> up to 3.01: 5 bps become a whole 0.01 tick (33 bps)
    assert slipped_price(STOCK, Side.BUY, D("3.00"), D(5)) == D("3.01")
    # 3.00 x 0.9995 = 2.9985 -> down to 2.99
    assert slipped_price(STOCK, Side.SELL, D("3.00"), D(5)) == D("2.99")


@pytest.mark.parametrize(
    ("price", "up", "expected"),
    [
        ("2011.005", None, "2011.01"),  # nearest, half up
        ("2011.004", None, "2011.00"),
        ("2011.001", True, "2011.01"),
        ("2011.009", False, "2011.00"),
        ("2011.00", True, "2011.00"),  # already on the tick: unchanged either way
        ("2011.00", False, "2011.00"),
    ],
)
def test_round_to_tick(price: str, up: bool | None, expected: str) -> None:
    assert round_to_tick(D(price), D("0.01"), up=up) == D(expected)


def test_round_to_tick_with_no_tick_keeps_the_price() -> None:
    assert round_to_tick(D("1.23456"), D(0)) == D("1.23456")


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_cost_a_share_without_slippage() -> None:
    # buy 100 x 2010.00 = 201000.00: commission 50.25, transfer 2.01 -> 52.26
    # sell 100 x 2100.00 = 210000.00: commission 52.50, stamp 105.00, transfer 2.10 -> 159.60
    # total 52.26 + 159.60 = 211.86
    assert round_trip_cost(STOCK, D(100), D("2010.00"), D("2100.00"), on=ON) == D("211.86")


def test_round_trip_cost_a_share_with_slippage_matches_the_broker_fills() -> None:
    # the broker fills at the slipped, tick-rounded prices:
    # buy 2010.00 x 1.0005 = 2011.005 -> 2011.01; sell 2100.00 x 0.9995 = 2098.95 (on the tick)
    # slippage 100 x (2011.01 - 2010.00) + 100 x (2100.00 - 2098.95) = 101.00 + 105.00 = 206.00
    # buy fees at 2011.01: 52.29 (see above)
    # sell 100 x 2098.95 = 209895.00: commission 52.47375 -> 52.47; stamp 104.9475 -> 104.95;
    # transfer 2.09895 -> 2.10; 159.52
    # total 206.00 + 52.29 + 159.52 = 417.81
    assert round_trip_cost(STOCK, D(100), D("2010.00"), D("2100.00"), D(5), on=ON) == D("417.81")


def test_round_trip_cost_of_a_cheap_stock_counts_the_whole_tick_of_slippage() -> None:
    # buy 3.00 -> 3.01, sell 3.20 x 0.9995 = 3.1984 -> 3.19: slippage 1000 x 0.01 + 1000 x 0.01 = 20.00
    # buy 1000 x 3.01 = 3010.00: commission 0.7525 -> minimum 5.00; transfer 0.0301 -> 0.03; 5.03
    # sell 1000 x 3.19 = 3190.00: commission 5.00; stamp 1.595 -> 1.60; transfer 0.0319 -> 0.03; 6.63
    # total 20.00 + 5.03 + 6.63 = 31.66
    assert round_trip_cost(STOCK, D(1000), D("3.00"), D("3.20"), D(5), on=ON) == D("31.66")


def test_round_trip_cost_crypto() -> None:
    # buy 0.5 x 35000 x 1.001 (10 bps) = 0.5 x 35035.00 = 17517.50; taker 10 bps = 17.5175
    # sell 0.5 x 36000 x 0.999 = 0.5 x 35964.00 = 17982.00; taker 10 bps = 17.982
    # slippage 0.5 x 35 + 0.5 x 36 = 35.50; total 17.5175 + 17.982 + 35.50 = 70.9995
    assert round_trip_cost(BTC, D("0.5"), D(35000), D(36000), D(10), on=ON) == D("70.9995")


def test_round_trip_cost_us_equity_is_the_regulatory_fees_only() -> None:
    # buy 100 x 150.00: 0; sell 100 x 151.00 = 15100.00: SEC 0.41978 -> 0.42; TAF 0.0166 -> 0.02; 0.44
    assert round_trip_cost(us_stock(True), D(100), D("150.00"), D("151.00"), on=ON) == D("0.44")
    assert round_trip_cost(us_stock(False), D(100), D("150.00"), D("151.00"), on=ON) == D(0)


# --- rates of the trade date (venues/fee_rates.py) ----------------------------------------------

PING_AN = replay_instrument("601318.SH")


def test_issue_sell_of_601318_on_2021_07_08_pays_the_2021_rates() -> None:
    # The issue's input: sell 100 x 62.37 = 6237.00 CNY on 2021-07-08.
    # commission 0.025% = 1.55925 -> the 5.00 minimum; stamp duty 0.1% (until 2023-08-27) = 6.237 -> 6.24;
    # transfer fee 0.002% (until 2022-04-28) = 0.12474 -> 0.12; total 11.36 (today's rates would give 8.18)
    sell = fee_breakdown(PING_AN, Side.SELL, D(100), D("62.37"), on=date(2021, 7, 8))
    assert sell == FeeBreakdown(commission=D("5.00"), stamp_duty=D("6.24"), transfer_fee=D("0.12"))
    assert sell.total == D("11.36")
    assert fees(PING_AN, Side.SELL, D(100), D("62.37"), on=ON) == D("8.18")  # 5.00 + 3.12 + 0.06


def test_issue_buy_of_601318_on_2021_07_07_pays_no_stamp_duty() -> None:
    # buy 100 x 62.69 (that day's open) = 6269.00: commission 1.567 -> 5.00 minimum; no stamp duty on a
    # buy; transfer 0.002% = 0.12538 -> 0.13; total 5.13
    buy = fee_breakdown(PING_AN, Side.BUY, D(100), D("62.69"), on=date(2021, 7, 7))
    assert buy == FeeBreakdown(commission=D("5.00"), stamp_duty=D(0), transfer_fee=D("0.13"))
    assert buy.total == D("5.13")


@pytest.mark.parametrize(
    ("day", "stamp", "transfer", "total"),
    [
        # 6237.00 x 0.1% = 6.24; x 0.002% = 0.12474 -> 0.12
        ("2022-04-28", "6.24", "0.12", "11.36"),  # last day of the 0.002% transfer fee
        # from 2022-04-29 the transfer fee is 0.001%: 0.06237 -> 0.06; stamp still 0.1%
        ("2022-04-29", "6.24", "0.06", "11.30"),
        ("2023-08-27", "6.24", "0.06", "11.30"),  # last day of the 0.1% stamp duty (a Sunday)
        # from 2023-08-28 the stamp duty is 0.05%: 3.1185 -> 3.12
        ("2023-08-28", "3.12", "0.06", "8.18"),
    ],
)
def test_a_share_sell_pays_the_rates_in_force_on_each_boundary_day(
    day: str, stamp: str, transfer: str, total: str
) -> None:
    sell = fee_breakdown(PING_AN, Side.SELL, D(100), D("62.37"), on=date.fromisoformat(day))
    assert (sell.commission, sell.stamp_duty, sell.transfer_fee) == (D("5.00"), D(stamp), D(transfer))
    assert sell.total == D(total)


def test_etf_pays_no_stamp_duty_on_any_date() -> None:
    # 10000 x 4.950 = 49500.00 on 2021-07-08: commission 12.38 only, although A-shares paid 0.1% then
    assert fee_breakdown(ETF, Side.SELL, D(10000), D("4.950"), on=date(2021, 7, 8)) == FeeBreakdown(
        commission=D("12.38")
    )


def test_us_regulatory_fees_of_2021_and_of_2024() -> None:
    # sell 1000 x 150.00 = 150000.00
    # 2021-07-08: SEC USD 5.10 per million -> 0.765 -> up to 0.77; TAF 1000 x 0.000119 = 0.119 -> 0.12; 0.89
    # 2024-06-03: SEC USD 27.80 per million -> 4.17; TAF 1000 x 0.000166 = 0.166 -> 0.17; 4.34
    instrument = us_stock(True)
    assert fee_breakdown(instrument, Side.SELL, D(1000), D("150.00"), on=date(2021, 7, 8)).regulatory_fee == D("0.89")
    assert fee_breakdown(instrument, Side.SELL, D(1000), D("150.00"), on=ON).regulatory_fee == D("4.34")


def test_us_taf_cap_of_the_trade_date() -> None:
    # sell 60000 shares: TAF 60000 x 0.000119 = 7.14 -> capped at 5.95 (2021); x 0.000166 = 9.96 -> 8.30 (2024)
    # SEC on 600600.00: 2021 5.10/M = 3.06306 -> 3.07; 2024 27.80/M = 16.69668 -> 16.70
    instrument = us_stock(True)
    assert fees(instrument, Side.SELL, D(60000), D("10.01"), on=date(2021, 7, 8)) == D("9.02")  # 3.07 + 5.95
    assert fees(instrument, Side.SELL, D(60000), D("10.01"), on=ON) == D("25.00")  # 16.70 + 8.30


def test_sec_fee_changes_on_its_effective_date() -> None:
    # 2021-02-24 is the last day of USD 22.10 per million, 2021-02-25 the first of 5.10: on 100000.00
    # of proceeds 2.21 and 0.51; TAF 1000 x 0.000119 = 0.119 -> 0.12 on both days
    instrument = us_stock(True)
    assert fees(instrument, Side.SELL, D(1000), D("100.00"), on=date(2021, 2, 24)) == D("2.33")
    assert fees(instrument, Side.SELL, D(1000), D("100.00"), on=date(2021, 2, 25)) == D("0.63")


def test_a_date_before_the_table_is_an_error_not_a_guess() -> None:
    # The Shanghai transfer fee before 2015-08-01 was charged on par value: no rate of value expresses it.
    with pytest.raises(ValueError, match="no cn_transfer_fee rate known before 2015-08-01"):
        fees(PING_AN, Side.BUY, D(100), D("30.00"), on=date(2015, 7, 31))


def test_every_rate_row_names_its_source_and_each_history_is_in_date_order() -> None:
    for name in RateName:
        rows = [r for r in REGULATORY_RATES if r.name is name]
        assert rows, name
        assert [r.effective_from for r in rows] == sorted({r.effective_from for r in rows})
        assert all(r.source.strip() and r.value >= 0 for r in rows)
    assert rate(RateName.CN_STAMP_DUTY, date(2021, 7, 8)) == D("0.001")
    assert rate(RateName.CN_TRANSFER_FEE, date(2022, 4, 29)) == D("0.00001")
