"""ReplayVenue and its loader: causality at every clock time, the shipped data pinned to known real
numbers, and a DataFileError with file and line for each kind of malformed file."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import venues.replay
from venues.base import MarketData, Venue, bar_arrays, last_trades
from venues.calendars import session
from venues.clock import SimulatedClock, from_epoch_us
from venues.errors import DataFileError, UnknownSymbolError, UnknownTimeframeError, VenueError
from venues.models import CnEquityFees, CryptoFees, OrderRequest, UsEquityFees
from venues.replay import DATA_DIR, MARKETS, ReplayVenue, load_bar_file
from venues.timeframes import BAR_COLUMNS, TIMEFRAMES, parse_timeframe, resample

ALL = [(m.key, s.instrument.symbol) for m in MARKETS.values() for s in m.series]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC") if "Z" in text or "+" in text else pd.Timestamp(text, tz="UTC")


def venue_at(market: str, moment: datetime) -> ReplayVenue:
    return ReplayVenue(market, SimulatedClock(moment))


@cache
def full(market: str, symbol: str) -> pd.DataFrame:
    """The whole shipped series, read directly: the reference the venue's answers are checked against."""
    spec = next(s for s in MARKETS[market].series if s.instrument.symbol == symbol)
    return load_bar_file(DATA_DIR / spec.file, timeframe=spec.instrument.timeframe, calendar=spec.instrument.calendar)


def native_tf(market: str, symbol: str) -> str:
    return next(s.instrument.timeframe for s in MARKETS[market].series if s.instrument.symbol == symbol)


# --- causality, over random clock times and timeframes ---------------------------------------


@st.composite
def moments(draw: st.DrawFn, market: str, symbol: str) -> datetime:
    """Random instants in and around the data, and instants right at (and a microsecond around) bar
    closes, where an off-by-one cut would show."""
    if draw(st.booleans()):
        return draw(
            st.datetimes(min_value=datetime(2018, 6, 1), max_value=datetime(2022, 6, 1), timezones=st.just(UTC))
        )
    closes = full(market, symbol)["close_time"]
    edge = closes.iloc[draw(st.integers(0, len(closes) - 1))].to_pydatetime()
    return edge + timedelta(microseconds=draw(st.sampled_from([-1, 0, 1])))


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, str, datetime]:
    market, symbol = draw(st.sampled_from(ALL))
    return market, symbol, draw(st.sampled_from(list(TIMEFRAMES))), draw(moments(market, symbol))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
async def test_bars_never_show_the_future(case: tuple[str, str, str, datetime]) -> None:
    market, symbol, tf, now = case
    venue = venue_at(market, now)
    native = full(market, symbol)
    if parse_timeframe(tf).delta < parse_timeframe(native_tf(market, symbol)).delta:
        with pytest.raises(UnknownTimeframeError):
            await venue.bars(symbol, tf)
        return

    got = await venue.bars(symbol, tf)
    assert list(got.columns) == BAR_COLUMNS
    assert (got["close_time"] <= now).all()

    visible = native[native["close_time"] <= now]
    last = await venue.bars(symbol, native_tf(market, symbol), limit=1)
    if visible.empty:
        assert last.empty
    else:
        pd.testing.assert_frame_equal(last, visible.iloc[-1:], check_freq=False)

    if tf == native_tf(market, symbol):
        pd.testing.assert_frame_equal(got, visible, check_freq=False)
        return
    # Every bucket the venue returns is final: all its member bars, in the whole recording, have
    # closed by `now` (so it never changes later) ...
    calendar = MARKETS[market].calendar
    whole = resample(native, tf, calendar=calendar)
    final = whole[whole["close_time"] <= pd.Timestamp(now)]
    pd.testing.assert_frame_equal(got, final, check_freq=False)
    # ... and exactly what resampling only the bars known at `now` gives: no look-ahead, and no
    # bucket whose straddling member bar (17:00-18:00 in the US 13:30-17:30 4h bucket) is still open.
    direct = resample(visible, tf, complete_at=pd.Timestamp(now), calendar=calendar)
    pd.testing.assert_frame_equal(got, direct, check_freq=False)


# Random windows: a start some days around the clock (or none), an end some days after it (or
# none), a limit (or none).
windows = given(
    case=cases(),
    start_days=st.one_of(st.none(), st.integers(-400, 400)),
    span_days=st.one_of(st.none(), st.integers(0, 60)),
    limit=st.one_of(st.none(), st.integers(0, 50)),
)


def window(now: datetime, start_days: int | None, span_days: int | None) -> tuple[datetime | None, datetime | None]:
    start = None if start_days is None else now + timedelta(days=start_days)
    return start, None if start is None or span_days is None else start + timedelta(days=span_days)


@settings(max_examples=100, deadline=None)
@windows
async def test_bars_window_and_limit(
    case: tuple[str, str, str, datetime], start_days: int | None, span_days: int | None, limit: int | None
) -> None:
    market, symbol, _, now = case
    tf = native_tf(market, symbol)
    start, end = window(now, start_days, span_days)
    got = await venue_at(market, now).bars(symbol, tf, start=start, end=end, limit=limit)

    ref = full(market, symbol)
    ref = ref[ref["close_time"] <= now]
    if start is not None:
        ref = ref[ref.index >= start]
    if end is not None:
        ref = ref[ref.index <= end]
    if limit is not None:
        ref = ref.iloc[len(ref) - min(limit, len(ref)) :]
    assert got.index.equals(ref.index)


@settings(max_examples=100, deadline=None)
@windows
async def test_bar_arrays_are_the_bars_frame_as_arrays(
    case: tuple[str, str, str, datetime], start_days: int | None, span_days: int | None, limit: int | None
) -> None:
    # The paper broker matches on bar_arrays: the same bars, cut at the same moment, as bars().
    market, symbol, tf, now = case
    if parse_timeframe(tf).delta < parse_timeframe(native_tf(market, symbol)).delta:
        tf = native_tf(market, symbol)
    start, end = window(now, start_days, span_days)
    venue = venue_at(market, now)
    frame = await venue.bars(symbol, tf, start=start, end=end, limit=limit)

    class FramesOnly:  # a venue that serves frames only: the helper converts them
        async def bars(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
            return await venue.bars(*args, **kwargs)

    for got in (
        await bar_arrays(venue, symbol, tf, start=start, end=end, limit=limit),
        await bar_arrays(cast(MarketData, FramesOnly()), symbol, tf, start=start, end=end, limit=limit),
    ):
        assert len(got) == len(frame)
        assert [from_epoch_us(t) for t in got.open_us.tolist()] == [t.to_pydatetime() for t in frame.index]
        assert [from_epoch_us(t) for t in got.close_us.tolist()] == [t.to_pydatetime() for t in frame["close_time"]]
        for column in ("open", "high", "low", "close"):
            assert getattr(got, column).tolist() == frame[column].tolist()


async def test_returned_frames_do_not_alias_the_cache() -> None:
    venue = venue_at("crypto", utc(2021, 3, 1))
    first = await venue.bars("BTC/USD", "4h", limit=5)
    first.loc[first.index[-1], "close"] = -1.0
    again = await venue.bars("BTC/USD", "4h", limit=5)
    assert again["close"].iloc[-1] > 0


# --- daily A-share bars: final at the session close --------------------------------------------


async def test_daily_a_share_bar_appears_at_the_shanghai_close() -> None:
    before = await venue_at("cn", utc(2021, 6, 1, 6, 59)).bars("600519.SH", "1d", limit=1)
    at = await venue_at("cn", utc(2021, 6, 1, 7, 0)).bars("600519.SH", "1d", limit=1)
    assert before.index[-1] == ts("2021-05-31T01:30Z")
    assert at.index[-1] == ts("2021-06-01T01:30Z")  # 09:30 Shanghai, the session open
    assert at["close_time"].iloc[-1] == ts("2021-06-01T07:00Z")  # 15:00 Shanghai

    quote_before = (await venue_at("cn", utc(2021, 6, 1, 6, 59)).snapshot(["600519.SH"]))["600519.SH"]
    quote_at = (await venue_at("cn", utc(2021, 6, 1, 7, 0)).snapshot(["600519.SH"]))["600519.SH"]
    # During the session the last trade known is the day's open (the bar itself is not final);
    # nothing of the day is counted yet, and the change is against the previous close.
    assert quote_before.ts == utc(2021, 6, 1, 1, 30)
    day = full("cn", "600519.SH").loc[ts("2021-06-01T01:30Z")]
    previous = full("cn", "600519.SH").loc[ts("2021-05-31T01:30Z")]
    assert quote_before.last == day["open"]
    assert quote_before.volume == 0.0
    assert quote_before.change_pct == pytest.approx((day["open"] / previous["close"] - 1) * 100)
    assert quote_at.ts == utc(2021, 6, 1, 7)
    assert quote_at.last == day["close"]


def test_daily_bars_sit_on_calendar_sessions() -> None:
    frame = full("cn", "600519.SH")
    for day in ["2019-01-02", "2020-02-03", "2021-06-25", "2021-12-31"]:
        s = session("XSHG", date.fromisoformat(day))
        assert s is not None
        row = frame.loc[pd.Timestamp(s.open)]
        assert row["close_time"] == pd.Timestamp(s.close)
    assert (frame.index.strftime("%H:%M") == "01:30").all()
    assert (frame["close_time"].dt.strftime("%H:%M") == "07:00").all()


# --- the shipped data, pinned to known real numbers -------------------------------------------

PINS = [
    # market, symbol, rows, first open time, first open, last open time, last close
    ("crypto", "BTC/USD", 8744, "2021-01-01T06:00Z", 29255.71, "2021-12-31T23:00Z", 46202.09),
    ("crypto", "ETH/USDT", 8760, "2021-01-01T00:00Z", 737.18, "2021-12-31T23:00Z", 3676.02),
    ("cn", "510300.SH", 8736, "2021-04-22T01:30Z", 5.101, "2022-01-18T06:55Z", 4.881),
    ("cn", "600519.SH", 730, "2019-01-02T01:30Z", 609.98, "2021-12-31T01:30Z", 2050.0),
    ("cn", "601318.SH", 730, "2019-01-02T01:30Z", 56.04, "2021-12-31T01:30Z", 50.41),
    ("cn", "000001.SZ", 730, "2019-01-02T01:30Z", 9.39, "2021-12-31T01:30Z", 16.48),
    ("us", "AMZN", 3547, "2021-01-01T00:00Z", 162.8, "2021-12-31T22:00Z", 166.73),
    ("us", "SPY", 12131, "2021-07-01T16:56Z", 429.5, "2021-08-13T20:43Z", 445.77),
]


@pytest.mark.parametrize(("market", "symbol", "rows", "first_ts", "first_open", "last_ts", "last_close"), PINS)
async def test_shipped_series(
    market: str, symbol: str, rows: int, first_ts: str, first_open: float, last_ts: str, last_close: float
) -> None:
    venue = venue_at(market, utc(2030, 1, 1))
    bars = await venue.bars(symbol, native_tf(market, symbol))
    assert len(bars) == rows
    assert bars.index[0] == ts(first_ts)
    assert bars["open"].iloc[0] == first_open
    assert bars.index[-1] == ts(last_ts)
    assert bars["close"].iloc[-1] == last_close
    first, last = venue.available_range(symbol)
    assert first == ts(first_ts).to_pydatetime()
    assert last == bars["close_time"].iloc[-1].to_pydatetime()


def test_btc_has_its_two_real_gaps() -> None:
    idx = full("crypto", "BTC/USD").index
    steps = pd.Series(idx[1:] - idx[:-1], index=idx[1:])
    gaps = steps[steps > pd.Timedelta("1h")]
    assert list(gaps.index) == [ts("2021-01-11T09:00Z"), ts("2021-06-22T09:00Z")]
    assert list(gaps) == [pd.Timedelta("4h"), pd.Timedelta("8h")]
    eth = full("crypto", "ETH/USDT").index
    assert ((eth[1:] - eth[:-1]) == pd.Timedelta("1h")).all()


def test_a_share_intraday_sessions_and_lunch_gap() -> None:
    frame = full("cn", "510300.SH")
    day = frame.loc["2021-04-22"]
    assert len(day) == 48
    assert day.index[0] == ts("2021-04-22T01:30Z")  # 09:30 Shanghai
    assert ts("2021-04-22T03:25Z") in day.index  # the last morning bar ends at 11:30
    assert ts("2021-04-22T03:30Z") not in day.index
    after_morning = day.index[day.index.get_loc(ts("2021-04-22T03:25Z")) + 1]
    assert after_morning == ts("2021-04-22T05:00Z")  # 13:00 Shanghai, a 95-minute gap
    assert day["close_time"].iloc[-1] == ts("2021-04-22T07:00Z")
    per_day = frame.groupby(frame.index.date).size()
    assert len(per_day) == 182 and (per_day == 48).all()


async def test_a_share_hourly_resample_respects_the_lunch_break() -> None:
    bars = await venue_at("cn", utc(2021, 4, 22, 8)).bars("510300.SH", "1h")
    # Session-anchored like the exchange's own 60-minute bars: 09:30-10:30, 10:30-11:30,
    # 13:00-14:00, 14:00-15:00 Shanghai.
    assert [t.strftime("%H:%M") for t in bars.index] == ["01:30", "02:30", "05:00", "06:00"]
    assert [t.strftime("%H:%M") for t in bars["close_time"]] == ["02:30", "03:30", "06:00", "07:00"]
    day = full("cn", "510300.SH").loc["2021-04-22"]
    assert bars["volume"].sum() == day["volume"].sum()
    assert bars["open"].iloc[0] == 5.101


def test_shipped_files_stay_inside_the_package() -> None:
    assert Path(venues.replay.__file__).resolve().parent / "data" == DATA_DIR
    provenance = (DATA_DIR / "PROVENANCE.md").read_text(encoding="utf-8")
    shipped = sorted(p.name for p in DATA_DIR.glob("*.csv"))
    assert shipped == sorted(s.file for m in MARKETS.values() for s in m.series)
    for name in shipped:
        assert f"`{name}`" in provenance
    assert sum(p.stat().st_size for p in DATA_DIR.iterdir()) < 4_000_000


# --- catalog, protocols and errors -------------------------------------------------------------


async def test_catalog() -> None:
    clock = SimulatedClock(utc(2021, 6, 1))
    crypto, cn, us = (ReplayVenue(m, clock) for m in ("crypto", "cn", "us"))
    assert (crypto.name, cn.name, us.name) == ("replay-crypto", "replay-cn", "replay-us")
    assert [i.symbol for i in await crypto.instruments()] == ["BTC/USD", "ETH/USDT"]
    assert [i.symbol for i in await cn.instruments()] == ["510300.SH", "600519.SH", "601318.SH", "000001.SZ"]
    assert [i.symbol for i in await us.instruments()] == ["AMZN", "SPY"]

    btc = await crypto.instrument("BTC/USD")
    assert btc.fees == CryptoFees(maker_bps=Decimal(15), taker_bps=Decimal(25))
    assert (btc.currency, btc.min_notional, btc.qty_step, btc.calendar, btc.timeframe) == (
        "USD",
        Decimal(10),
        Decimal("0.0001"),
        "24/7",
        "1h",
    )
    eth = await crypto.instrument("ETH/USDT")
    assert (eth.currency, eth.min_notional) == ("USDT", Decimal(5))
    assert eth.fees == CryptoFees(maker_bps=Decimal(10), taker_bps=Decimal(10))

    etf = await cn.instrument("510300.SH")
    assert etf.fees == CnEquityFees(stamp_duty_applies=False, transfer_fee_applies=False)
    assert (etf.tick_size, etf.timeframe, etf.name) == (Decimal("0.001"), "5m", "沪深300ETF")
    for inst in await cn.instruments():
        assert (inst.lot_size, inst.settlement_days, inst.price_limit_pct) == (Decimal(100), 1, Decimal("0.10"))
        assert (inst.currency, inst.calendar) == ("CNY", "XSHG")
    maotai = await cn.instrument("600519.SH")
    assert (maotai.fees, maotai.tick_size, maotai.timeframe, maotai.name) == (
        CnEquityFees(),
        Decimal("0.01"),
        "1d",
        "贵州茅台",
    )

    assert (await us.instrument("AMZN")).timeframe == "1h"
    assert (await us.instrument("SPY")).timeframe == "1m"
    for inst in await us.instruments():
        assert (inst.fees, inst.lot_size, inst.calendar, inst.currency) == (UsEquityFees(), Decimal(1), "XNYS", "USD")


async def test_protocols_and_missing_broker() -> None:
    venue = ReplayVenue("replay-us", SimulatedClock(utc(2021, 6, 1)))  # the venue name works too
    assert isinstance(venue, MarketData)
    assert isinstance(venue, Venue)
    assert venue.broker is None
    with pytest.raises(VenueError, match="no broker"):
        await venue.place_order(OrderRequest(client_order_id="x1", symbol="AMZN", side="buy", qty=Decimal(1)))


def test_unknown_market_lists_the_markets() -> None:
    with pytest.raises(ValueError, match="unknown replay market 'forex'") as info:
        ReplayVenue("forex", SimulatedClock(utc(2021, 6, 1)))
    for name in ("crypto", "cn", "us", "replay-crypto", "replay-cn", "replay-us"):
        assert name in str(info.value)


async def test_unknown_symbol_lists_the_venue_symbols() -> None:
    venue = venue_at("crypto", utc(2021, 6, 1))
    for call in (venue.instrument("BTCUSDT"), venue.bars("BTCUSDT", "1h"), venue.snapshot(["BTC/USD", "BTCUSDT"])):
        with pytest.raises(UnknownSymbolError) as info:
            await call
        assert "'BTCUSDT'" in str(info.value) and "replay-crypto" in str(info.value)
        assert "BTC/USD, ETH/USDT" in str(info.value)
    with pytest.raises(UnknownSymbolError):
        venue.available_range("AMZN")


@pytest.mark.parametrize("timeframe", ["1m", "5m", "2h", "daily"])
async def test_unknown_or_finer_timeframe_lists_what_the_symbol_has(timeframe: str) -> None:
    venue = venue_at("crypto", utc(2021, 6, 1))
    with pytest.raises(UnknownTimeframeError) as info:
        await venue.bars("BTC/USD", timeframe)
    assert str(info.value).endswith("valid timeframes: 1h, 4h, 1d, 1w")
    assert venue.timeframes("BTC/USD") == ["1h", "4h", "1d", "1w"]
    assert venue_at("cn", utc(2021, 6, 1)).timeframes("600519.SH") == ["1d", "1w"]


async def test_bars_argument_checks() -> None:
    venue = venue_at("crypto", utc(2021, 6, 1))
    with pytest.raises(ValueError, match="naive"):
        await venue.bars("BTC/USD", "1h", start=datetime(2021, 5, 1))
    with pytest.raises(ValueError, match="limit"):
        await venue.bars("BTC/USD", "1h", limit=-1)
    empty = await venue.bars("BTC/USD", "1h", limit=0)
    assert empty.empty and list(empty.columns) == BAR_COLUMNS
    before = await venue_at("crypto", utc(2020, 1, 1)).bars("BTC/USD", "1d")
    assert before.empty and list(before.columns) == BAR_COLUMNS


# --- snapshot -----------------------------------------------------------------------------------


async def test_snapshot_crypto_sums_the_utc_day() -> None:
    now = utc(2021, 6, 1, 7, 30)
    quotes = await venue_at("crypto", now).snapshot(["BTC/USD", "ETH/USDT"])
    assert set(quotes) == {"BTC/USD", "ETH/USDT"}
    frame = full("crypto", "BTC/USD")
    visible = frame[frame["close_time"] <= now]
    today = visible.loc["2021-06-01"]
    q = quotes["BTC/USD"]
    # 07:30Z: the 07:00Z bar is in progress, so the last trade known is its open; the volume
    # counts the final bars of the day only (the 06:00Z bar is the last of them).
    assert q.ts == utc(2021, 6, 1, 7)
    assert q.last == frame.loc[pd.Timestamp(utc(2021, 6, 1, 7)), "open"]
    assert q.volume == pytest.approx(today["volume"].sum())
    assert len(today) == 7
    prev_close = frame.loc["2021-05-31", "close"].iloc[-1]
    assert q.change_pct == pytest.approx((q.last / prev_close - 1) * 100)


@pytest.mark.parametrize(("market", "symbol"), [("crypto", "BTC/USD"), ("cn", "600519.SH"), ("cn", "510300.SH")])
async def test_last_prices_are_the_snapshots_last_at_each_moment(market: str, symbol: str) -> None:
    # Bar closes, moments inside a bar in progress (its open is the last trade), session gaps,
    # and a moment before the first bar (NaN).
    first = ReplayVenue(market, SimulatedClock(utc(2030, 1, 1))).available_range(symbol)[0]
    moments = [first - timedelta(hours=1)] + [first + timedelta(minutes=37 * k) for k in range(0, 400, 7)]
    venue = venue_at(market, moments[-1])
    prices = venue.last_prices(symbol, moments)
    for moment, price in zip(moments, prices, strict=True):
        quote = (await venue_at(market, moment).snapshot([symbol])).get(symbol)
        if quote is None:
            assert np.isnan(price)
        else:
            assert price == quote.last
    with pytest.raises(ValueError, match="not known yet"):
        venue.last_prices(symbol, [moments[-1] + timedelta(microseconds=1)])


@pytest.mark.parametrize("market", ["crypto", "cn", "us"])
async def test_last_trades_are_the_snapshots_lasts(market: str) -> None:
    # Every symbol of the market together, at bar closes, inside bars in progress, across session
    # gaps and before some symbols' first bar: the same prices as the snapshot, the same ones left out.
    venue = venue_at(market, utc(2030, 1, 1))
    symbols = [i.symbol for i in await venue.instruments()]
    first = min(venue.available_range(s)[0] for s in symbols)
    for k in range(0, 400, 7):
        moment = first - timedelta(hours=1) + timedelta(minutes=37 * k)
        at = venue_at(market, moment)
        quotes = await at.snapshot(symbols)
        assert at.last_trades(symbols) == {s: q.last for s, q in quotes.items()}
        assert await last_trades(at, symbols) == at.last_trades(symbols)
        assert await last_trades(cast(MarketData, _SnapshotOnly(at)), symbols) == at.last_trades(symbols)
    with pytest.raises(UnknownSymbolError):
        venue.last_trades([symbols[0], "NOPE"])


class _SnapshotOnly:
    """A market without ``last_trades``: the helper reads the snapshot instead."""

    def __init__(self, venue: ReplayVenue) -> None:
        self.snapshot = venue.snapshot


async def test_snapshot_leaves_out_symbols_without_a_bar_yet() -> None:
    # 2021-04-22 01:40Z: 510300's first two 5m bars are final; the daily stocks' bar of the day is
    # in progress, so their last trade is the day's open, with nothing of the day counted yet.
    quotes = await venue_at("cn", utc(2021, 4, 22, 1, 40)).snapshot(["510300.SH", "600519.SH"])
    etf = quotes["510300.SH"]
    assert (etf.ts, etf.last, etf.volume) == (utc(2021, 4, 22, 1, 40), 5.091, 29487900 + 18135700)
    assert etf.change_pct is None  # no earlier session in the file
    maotai = quotes["600519.SH"]
    assert maotai.ts == utc(2021, 4, 22, 1, 30)
    daily = full("cn", "600519.SH")
    assert maotai.last == daily.loc["2021-04-22", "open"].iloc[0]
    assert maotai.volume == 0.0
    prev = daily.loc["2021-04-21", "close"].iloc[0]
    assert maotai.change_pct == pytest.approx((maotai.last / prev - 1) * 100)

    assert await venue_at("cn", utc(2021, 4, 22, 1, 34)).snapshot(["510300.SH"]) == {}
    assert await venue_at("us", utc(2020, 1, 1)).snapshot(["AMZN", "SPY"]) == {}
    assert await venue_at("us", utc(2021, 6, 1)).snapshot([]) == {}


async def test_snapshot_us_keeps_after_hours_in_its_own_day() -> None:
    # 2021-03-01 00:00Z is 2021-02-28 19:00 New York (winter): Sunday evening has no bars, so at
    # 2021-03-02 01:00Z (Monday 20:00 ET) the latest bar is Monday's 19:00 ET after-hours bar and the
    # session volume covers Monday's pre-, regular and post-market bars only.
    now = utc(2021, 3, 2, 1)
    q = (await venue_at("us", now).snapshot(["AMZN"]))["AMZN"]
    frame = full("us", "AMZN")
    local = frame.index.tz_convert("America/New_York")
    monday = frame[(local.date == date(2021, 3, 1)) & (frame["close_time"] <= now)]
    assert q.ts == monday["close_time"].iloc[-1].to_pydatetime()
    assert q.volume == pytest.approx(monday["volume"].sum())
    friday = frame[local.date == date(2021, 2, 26)]
    assert q.change_pct == pytest.approx((q.last / friday["close"].iloc[-1] - 1) * 100)


# --- user-supplied data and the loader's checks -------------------------------------------------

HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = [
    "2021-01-01T00:00:00Z,10,11,9,10.5,100\n",
    "2021-01-01T01:00:00Z,10.5,12,10,11,200\n",
    "2021-01-01T02:00:00Z,11,11.5,10.5,11.2,300\n",
]


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def with_row(line: int, row: str) -> str:
    """The good file with its ``line`` (1-based, header = 1) replaced by ``row``."""
    rows = list(GOOD)
    rows[line - 2] = row
    return HEADER + "".join(rows)


BAD_INTRADAY = [
    ("missing-column", "timestamp,open,high,low,close\n2021-01-01T00:00:00Z,1,1,1,1\n", 1, "missing column(s) volume"),
    ("no-time-column", "time,open,high,low,close,volume\n", 1, "timestamp (or date)"),
    ("empty-file", "", 1, "empty"),
    ("bad-timestamp", with_row(3, "2021-13-01T01:00:00Z,10,11,9,10,1\n"), 3, "cannot parse timestamp"),
    ("bad-number", with_row(4, "2021-01-01T02:00:00Z,11,11.5,abc,11.2,300\n"), 4, "'abc' as a number in column 'low'"),
    ("empty-number", with_row(3, "2021-01-01T01:00:00Z,10,11,9,,1\n"), 3, "missing value (NaN) in column 'close'"),
    ("nan-number", with_row(2, "2021-01-01T00:00:00Z,NaN,11,9,10,1\n"), 2, "missing value (NaN) in column 'open'"),
    ("inf-number", with_row(2, "2021-01-01T00:00:00Z,10,inf,9,10,1\n"), 2, "non-finite"),
    ("negative-price", with_row(3, "2021-01-01T01:00:00Z,-1,11,-2,10,1\n"), 3, "open must be a positive price"),
    ("negative-volume", with_row(4, "2021-01-01T02:00:00Z,11,11.5,10.5,11.2,-3\n"), 4, "volume must not be negative"),
    ("high-below-body", with_row(3, "2021-01-01T01:00:00Z,10,10.5,9,11,1\n"), 3, "high 10.5 is below max(open, close)"),
    (
        "low-above-body",
        with_row(2, "2021-01-01T00:00:00Z,10,11,10.2,10.5,1\n"),
        2,
        "low 10.2 is above min(open, close)",
    ),
    ("unsorted", with_row(4, "2021-01-01T00:30:00Z,11,11.5,10.5,11.2,300\n"), 4, "sorted ascending"),
    ("duplicate", with_row(4, "2021-01-01T01:00:00Z,11,11.5,10.5,11.2,300\n"), 4, "duplicate timestamp"),
    ("overlap", with_row(3, "2021-01-01T00:30:00Z,10,11,9,10,1\n"), 3, "less than the timeframe 1h"),
    ("extra-field", with_row(3, "2021-01-01T01:00:00Z,10,11,9,10,1,7\n"), 3, "Expected 6 fields"),
    ("short-row", with_row(3, "2021-01-01T01:00:00Z,10,11,9,10\n"), 3, "missing value (NaN) in column 'volume'"),
    ("blank-line", with_row(3, "\n"), 3, "blank line"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [c[1:] for c in BAD_INTRADAY], ids=[c[0] for c in BAD_INTRADAY])
def test_malformed_intraday_file(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataFileError) as info:
        load_bar_file(path, timeframe="1h", calendar="24/7")
    assert info.value.path == str(path)
    assert info.value.line == line
    assert f"{path}, line {line}:" in str(info.value)
    assert fragment in str(info.value)


def test_the_first_bad_line_wins(tmp_path: Path) -> None:
    text = HEADER + GOOD[0] + "2021-01-01T01:00:00Z,10,9,9,10,1\n" + "2021-01-01T02:00:00Z,x,11,9,10,1\n"
    with pytest.raises(DataFileError) as info:
        load_bar_file(write(tmp_path, text), timeframe="1h", calendar="24/7")
    assert info.value.line == 3 and "high" in str(info.value)


def test_header_problems_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(DataFileError) as info:
        load_bar_file(write(tmp_path, "ts,o,h,l,c,v\n"), timeframe="1h", calendar="24/7")
    assert "expected timestamp,open,high,low,close,volume" in str(info.value)
    assert "date,open,high,low,close,volume" in str(info.value)
    with pytest.raises(DataFileError, match="means daily bars"):
        load_bar_file(write(tmp_path, "date,open,high,low,close,volume\n"), timeframe="1h", calendar="XSHG")
    with pytest.raises(DataFileError, match="file not found"):
        load_bar_file(tmp_path / "nope.csv", timeframe="1h", calendar="24/7")


DAILY = "date,open,high,low,close,volume\n2021-06-01,10,11,9,10.5,100\n2021-06-02,10.5,12,10,11,200\n"
BAD_DAILY = [
    ("holiday", DAILY + "2021-06-14,11,12,10,11,1\n", 4, "2021-06-14 is not a trading session of the XSHG calendar"),
    ("weekend", DAILY.replace("2021-06-02", "2021-06-05"), 3, "not a trading session"),
    ("before-calendar", DAILY.replace("2021-06-01", "2009-06-01"), 2, "covers 2010-01-04"),
    ("bad-date", DAILY.replace("2021-06-02", "2021/06/02"), 3, "cannot parse date '2021/06/02'"),
    ("unsorted", DAILY + "2021-05-31,11,12,10,11,1\n", 4, "sorted ascending"),
    ("duplicate", DAILY + "2021-06-02,11,12,10,11,1\n", 4, "duplicate date"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [c[1:] for c in BAD_DAILY], ids=[c[0] for c in BAD_DAILY])
def test_malformed_daily_file(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataFileError) as info:
        load_bar_file(path, timeframe="1d", calendar="XSHG")
    assert (info.value.path, info.value.line) == (str(path), line)
    assert fragment in str(info.value)


def test_loader_layout_and_timestamp_forms(tmp_path: Path) -> None:
    text = HEADER + "2021-01-01T08:00:00+08:00,10,11,9,10.5,100\n2021-01-01 01:00:00,10.5,12,10,11,200\n"
    frame = load_bar_file(write(tmp_path, text), timeframe="1h", calendar="24/7")
    assert list(frame.columns) == BAR_COLUMNS and frame.index.name == "ts"
    assert str(frame.index.dtype) == "datetime64[us, UTC]" and str(frame["close_time"].dtype) == "datetime64[us, UTC]"
    assert list(frame.index) == [ts("2021-01-01T00:00Z"), ts("2021-01-01T01:00Z")]
    assert frame["close_time"].iloc[-1] == ts("2021-01-01T02:00Z")
    assert frame["open"].dtype == np.float64
    assert load_bar_file(write(tmp_path, HEADER), timeframe="1h", calendar="24/7").empty


async def test_user_data_dir(tmp_path: Path) -> None:
    write(tmp_path, HEADER + "".join(GOOD), name="BTC-USD_1h_2021_alpaca.csv")
    venue = ReplayVenue("crypto", SimulatedClock(utc(2021, 1, 1, 2)), data_dir=tmp_path)
    bars = await venue.bars("BTC/USD", "1h")
    assert list(bars["close"]) == [10.5, 11.0]
    # An edited file is read afresh by a new venue, not served from the per-process cache.
    write(tmp_path, HEADER + "".join(GOOD[:1]), name="BTC-USD_1h_2021_alpaca.csv")
    again = await ReplayVenue("crypto", SimulatedClock(utc(2021, 1, 1, 2)), data_dir=tmp_path).bars("BTC/USD", "1h")
    assert len(again) == 1
    with pytest.raises(DataFileError, match="file not found"):
        await venue.bars("ETH/USDT", "1h")
