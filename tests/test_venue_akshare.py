"""The akshare venue against a fake of its Eastmoney and Sina endpoints (`responses`, no network),
fed with recorded bars (tests/fixtures/akshare): instruments with the A-share and SHFE rules,
batched quotes, final bars only, caches, pacing, and the faults of the venue API."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import responses

from bot.core import Caller, CommandCore
from bot.services import Services, open_services
from bot.settings import load_settings
from storage.users import Role
from tests.akshare_fake import FIXTURES, FakeAkshareApi, minute_rows
from tests.support import Sleeps
from venues.adapters.akshare import AkshareConfig, AkshareVenue
from venues.adapters.akshare.config import Adjust
from venues.adapters.akshare.parse import SHANGHAI
from venues.clock import SimulatedClock
from venues.costs import fee_breakdown
from venues.errors import UnknownSymbolError, UnknownTimeframeError, VenueError, VenueUnavailable
from venues.models import AssetClass, CnEquityFees, Side

TRADER = Caller("telegram", 1002, "tom")

# Wednesday 2021-12-15, 10:07 in Shanghai: the morning session is running.
NOW = datetime(2021, 12, 15, 10, 7, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(NOW)


@pytest.fixture
def config() -> AkshareConfig:
    return AkshareConfig(rate_per_second=1000, page_size=4)


@pytest.fixture
def api(clock: SimulatedClock, config: AkshareConfig) -> Iterator[FakeAkshareApi]:
    fake = FakeAkshareApi(clock, config)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        yield fake


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def venue(api: FakeAkshareApi, clock: SimulatedClock, config: AkshareConfig, sleeps: Sleeps) -> AkshareVenue:
    return AkshareVenue(config, clock, sleep=sleeps)


# --- instruments ---


async def test_instruments_come_from_the_listings_with_the_a_share_rules(
    venue: AkshareVenue, api: FakeAkshareApi
) -> None:
    listed = {i.symbol: i for i in await venue.instruments()}
    # Six A-shares in two pages of four, two ETFs in one page, and the three SHFE main contracts.
    assert api.calls["listing"] == 3
    assert sorted(listed) == sorted(
        [
            "600519.SH",
            "000001.SZ",
            "300750.SZ",
            "688981.SH",
            "600200.SH",
            "430047.BJ",
            "510300.SH",
            "159915.SZ",
            "cu0",
            "au0",
            "ag0",
        ]
    )
    moutai = listed["600519.SH"]
    assert (moutai.asset_class, moutai.lot_size, moutai.tick_size) == (AssetClass.CN_EQUITY, 100, Decimal("0.01"))
    assert (moutai.settlement_days, moutai.price_limit_pct, moutai.calendar) == (1, Decimal("0.10"), "XSHG")
    assert moutai.name == "贵州茅台" and moutai.fees == CnEquityFees()
    assert listed["300750.SZ"].price_limit_pct == Decimal("0.20")  # ChiNext
    assert listed["688981.SH"].price_limit_pct == Decimal("0.20")  # STAR
    assert listed["600200.SH"].price_limit_pct == Decimal("0.05")  # risk warning: ST in the name
    assert listed["430047.BJ"].price_limit_pct == Decimal("0.30")  # Beijing
    etf = listed["510300.SH"]
    assert etf.tick_size == Decimal("0.001")
    assert etf.fees == CnEquityFees(stamp_duty_applies=False, transfer_fee_applies=False)
    assert listed["159915.SZ"].fees == etf.fees
    copper = listed["cu0"]
    assert copper.asset_class is AssetClass.CN_FUTURE
    assert (copper.multiplier, copper.tick_size, copper.settlement_days) == (5, 10, 0)
    assert copper.margin_rate == Decimal("0.10") and copper.short is not None
    assert (listed["au0"].multiplier, listed["au0"].tick_size) == (1000, Decimal("0.02"))
    assert (listed["ag0"].multiplier, listed["ag0"].tick_size) == (15, 1)
    # Kept for the day: asking again sends nothing.
    assert (await venue.instrument("600519.sh")).symbol == "600519.SH"
    assert api.calls["listing"] == 3


async def test_an_unknown_symbol_names_valid_ones_without_a_request(venue: AkshareVenue, api: FakeAkshareApi) -> None:
    await venue.instruments()
    sent = venue.guard.requests
    with pytest.raises(UnknownSymbolError, match=r"unknown symbol '999999\.SH' on venue 'akshare'.*600519\.SH"):
        await venue.bars("999999.SH", "1d", limit=5)
    assert venue.guard.requests == sent


def test_futures_fees_scale_by_the_contract() -> None:
    from venues.adapters.akshare.instruments import future_instrument

    copper, gold = future_instrument("cu0"), future_instrument("au0")
    day = datetime(2021, 12, 15).date()
    # One copper lot at 70,000 CNY/t is 350,000 CNY of copper: 0.005% of it is 17.50 CNY.
    assert fee_breakdown(copper, Side.BUY, Decimal(1), Decimal(70000), on=day).total == Decimal("17.50")
    # Gold is 10 CNY a lot, whatever the price.
    assert fee_breakdown(gold, Side.SELL, Decimal(3), Decimal("400.00"), on=day).total == Decimal("30.00")


def test_shfe_figures_are_the_sourced_ones() -> None:
    # Each figure is cited in venues/adapters/akshare/instruments.py; change it there with its source.
    from venues.adapters.akshare.instruments import FUTURES

    table = {
        p: (s.multiplier, s.tick, s.margin_rate, s.price_limit_pct, s.fees.rate, s.fees.per_lot)
        for p, s in FUTURES.items()
    }
    assert table == {
        "cu": (5, 10, Decimal("0.10"), Decimal("0.08"), Decimal("0.00005"), 0),
        "au": (1000, Decimal("0.02"), Decimal("0.17"), Decimal("0.15"), 0, 10),
        "ag": (15, 1, Decimal("0.17"), Decimal("0.15"), Decimal("0.00005"), 0),
    }


# --- quotes ---


async def test_snapshot_is_one_batched_request_cached_3_seconds(
    venue: AkshareVenue, api: FakeAkshareApi, clock: SimulatedClock
) -> None:
    quotes = await venue.snapshot(["510300.SH", "600519.SH", "000001.SZ"])
    # The listing quoted two of them a moment ago; only the one it showed no trade for is asked.
    assert api.calls["quotes"] == 1 and api.params[-1]["secids"] == "0.000001"
    clock.advance(timedelta(seconds=4))
    quotes = await venue.snapshot(["510300.SH", "600519.SH", "000001.SZ"])
    assert api.calls["quotes"] == 2
    assert api.params[-1]["secids"] == "1.510300,1.600519,0.000001"
    # 510300's last final 5m bar at 10:07 closes at 10:05 (label 10:05).
    etf = quotes["510300.SH"]
    recorded = pd.read_csv(FIXTURES / "510300.SH_5m_2021-10-08_2022-01-18_tdx.csv", index_col="timestamp")
    assert etf.last == pytest.approx(recorded.loc["2021-12-15T02:00:00Z", "close"])
    assert etf.ts == datetime(2021, 12, 15, 2, 5, tzinfo=UTC)
    assert etf.change_pct is not None
    assert "000001.SZ" not in quotes  # no bars recorded for it: the venue shows "-" as for a suspended stock
    clock.advance(timedelta(seconds=2))
    await venue.snapshot(["510300.SH", "600519.SH"])
    assert api.calls["quotes"] == 2  # within 3 s


async def test_an_unknown_symbol_in_a_batch_does_not_stop_the_others(
    venue: AkshareVenue, api: FakeAkshareApi, caplog: pytest.LogCaptureFixture
) -> None:
    await venue.instruments()
    venue.quotes.clear()
    with caplog.at_level(logging.WARNING):
        quotes = await venue.snapshot(["510300.SH", "999999.SH", "600519.SH"])
    assert set(quotes) == {"510300.SH", "600519.SH"}
    assert api.params[-1]["secids"] == "1.510300,1.600519"
    assert "no quote for 999999.SH: the venue does not list it" in caplog.text


# --- bars ---


async def test_daily_bars_are_final_and_match_the_recorded_ones(venue: AkshareVenue, api: FakeAkshareApi) -> None:
    bars = await venue.bars("600519.SH", "1d", limit=30)
    assert len(bars) == 30
    # Today's bar is still forming at 10:07: the last one is yesterday's, final at 15:00 Shanghai.
    assert bars.index[-1] == pd.Timestamp("2021-12-14T01:30Z")
    assert bars["close_time"].iloc[-1] == pd.Timestamp("2021-12-14T07:00Z")
    recorded = pd.read_csv(FIXTURES / "600519.SH_1d_2020-06_2022-01_baostock.csv", index_col="date")
    row = recorded.loc["2021-12-14"]
    assert bars["close"].iloc[-1] == pytest.approx(row["close"])
    assert bars["high"].iloc[-1] == pytest.approx(row["high"])
    assert bars["volume"].iloc[-1] == pytest.approx(round(row["volume"] / 100) * 100)  # lots of 100 on the wire
    assert api.params[-1]["fqt"] == "1" and api.params[-1]["klt"] == "101"  # qfq by default
    assert api.params[-1]["end"] == "20211215"


async def test_a_second_scan_inside_the_bar_sends_no_bar_request(
    venue: AkshareVenue, api: FakeAkshareApi, clock: SimulatedClock
) -> None:
    first = await venue.bars("510300.SH", "15m", limit=40)
    assert first.index[-1] == pd.Timestamp("2021-12-15T01:45Z")  # 09:45-10:00; 10:00-10:15 still forming
    assert (first["close_time"] <= pd.Timestamp(NOW)).all()
    sent = api.calls["kline"]
    clock.advance(timedelta(minutes=5))  # 10:12: the next bar has not closed
    again = await venue.bars("510300.SH", "15m", limit=40)
    assert api.calls["kline"] == sent
    pd.testing.assert_frame_equal(again, first)
    clock.advance(timedelta(minutes=4))  # 10:16: one more bar, asked from the last one held
    later = await venue.bars("510300.SH", "15m", limit=40)
    assert api.calls["kline"] == sent + 1
    assert api.params[-1]["beg"] == "20211215"
    assert later.index[-1] == pd.Timestamp("2021-12-15T02:00Z")
    pd.testing.assert_frame_equal(later.iloc[:-1], first.iloc[1:])
    assert venue.gaps == []


async def test_resampled_timeframes_and_an_unserved_one(venue: AkshareVenue) -> None:
    four = await venue.bars("510300.SH", "4h", limit=4)
    # A-share 4h buckets are the morning and the afternoon session; today's morning is not over.
    assert list(four.index.strftime("%m-%d %H:%M")) == ["12-13 01:30", "12-13 05:00", "12-14 01:30", "12-14 05:00"]
    assert (four["close_time"] <= pd.Timestamp(NOW)).all()
    weeks = await venue.bars("600519.SH", "1w", limit=2)
    assert weeks["close_time"].iloc[-1] == pd.Timestamp("2021-12-10T07:00Z")  # last week's Friday close
    with pytest.raises(UnknownTimeframeError, match="from 5m bars, not 1m"):
        await venue.bars("510300.SH", "1m", limit=5)


async def test_the_docs_sample_rows_parse_unadjusted_and_qfq(api: FakeAkshareApi, clock: SimulatedClock) -> None:
    sample = json.loads((FIXTURES / "akshare_stock_zh_a_hist_doc_sample.json").read_text("utf-8"))
    clock.advance_to(datetime(2024, 5, 29, 2, 0, tzinfo=UTC))
    for label, fqt in (("不复权", "0"), ("前复权", "1")):
        rows = sample["doc_printed_samples"][label]["rows_visible_in_docs"]
        # The docs' printout elided high, low and volume: high/low are taken from open/close here.
        api.raw_klines[("0.000001", "101", fqt)] = [
            f"{r['日期']},{r['开盘']},{r['收盘']},{max(r['开盘'], r['收盘'])},{min(r['开盘'], r['收盘'])},1000,0,"
            f"{r['振幅']},{r['涨跌幅']},{r['涨跌额']},{r['换手率']}"
            for r in rows
        ]
    cases: list[tuple[Adjust, float]] = [("", 9.49), ("qfq", 8.14)]
    for adjust, first_open in cases:
        venue = AkshareVenue(AkshareConfig(rate_per_second=1000, page_size=4, adjust=adjust), clock)
        bars = await venue.bars("000001.SZ", "1d", start=datetime(2017, 3, 1, tzinfo=UTC))
        assert api.params[-1]["fqt"] == ("1" if adjust else "0")
        assert bars["open"].iloc[0] == first_open
        assert bars.index[0] == pd.Timestamp("2017-03-01T01:30Z")
        assert bars["close"].iloc[-1] == 11.40 and bars.index[-1] == pd.Timestamp("2024-05-28T01:30Z")
        assert bars["volume"].iloc[-1] == 100_000  # 1000 lots


async def test_a_futures_window_that_skips_bars_is_a_gap(
    venue: AkshareVenue, api: FakeAkshareApi, clock: SimulatedClock
) -> None:
    start = datetime(2021, 12, 15, 9, 50, tzinfo=SHANGHAI)
    api.sina[("CU0", "1")] = minute_rows(start, 5, 70000, step=10)
    first = await venue.bars("cu0", "1m")
    assert len(first) == 5 and first["close"].iloc[-1] == 70040
    assert first.index[0] == pd.Timestamp("2021-12-15T01:49Z")  # the 09:50 label is 09:49-09:50
    # Sina serves only its latest window: the next one starts after a hole of 3 minutes.
    clock.advance_to(datetime(2021, 12, 15, 10, 20, tzinfo=SHANGHAI))
    api.sina[("CU0", "1")] = minute_rows(start + timedelta(minutes=8), 5, 71000, step=10)
    later = await venue.bars("cu0", "1m")
    assert venue.gaps and "cu0 1m: gap between held bars and the venue's answer" in venue.gaps[0]
    # Not joined across the hole: only the new window is kept.
    assert len(later) == 5 and later.index[0] == pd.Timestamp("2021-12-15T01:57Z")
    # A window that continues the held bars is no gap.
    clock.advance_to(datetime(2021, 12, 15, 10, 30, tzinfo=SHANGHAI))
    api.sina[("CU0", "1")] = minute_rows(start + timedelta(minutes=10), 8, 71020, step=10)
    final = await venue.bars("cu0", "1m")
    assert len(venue.gaps) == 1 and len(final) == 10
    quote = (await venue.snapshot(["cu0"]))["cu0"]
    assert quote.last == final["close"].iloc[-1]


async def test_futures_daily_bars(venue: AkshareVenue, api: FakeAkshareApi) -> None:
    api.sina[("AU0", "daily")] = [
        {"d": "2021-12-13", "o": "373.0", "h": "375.5", "l": "372.1", "c": "374.2", "v": "100", "p": "5", "s": "374"},
        {"d": "2021-12-14", "o": "374.2", "h": "376.0", "l": "371.0", "c": "372.0", "v": "90", "p": "5", "s": "373"},
        {"d": "2021-12-15", "o": "372.0", "h": "373.0", "l": "370.0", "c": "371.0", "v": "10", "p": "5", "s": "371"},
    ]
    bars = await venue.bars("au0", "1d")
    assert list(bars["close"]) == [374.2, 372.0]  # today's is not final before 15:00
    assert bars.index[0] == pd.Timestamp("2021-12-13T01:00Z")  # the day session opens at 09:00


# --- faults ---


async def test_429_waits_the_retry_after_then_succeeds(
    venue: AkshareVenue, api: FakeAkshareApi, sleeps: Sleeps
) -> None:
    await venue.instruments()
    api.fail("kline", 429, {"Retry-After": "7"})
    bars = await venue.bars("600519.SH", "1d", limit=3)
    assert len(bars) == 3
    assert api.calls["kline"] == 2
    assert sleeps.waits and sleeps.waits[0] >= 7


async def test_5xx_and_timeouts_are_retried(venue: AkshareVenue, api: FakeAkshareApi, sleeps: Sleeps) -> None:
    await venue.instruments()
    api.fail("kline", 502)
    api.fail("kline", 0)  # a read timeout
    bars = await venue.bars("600519.SH", "1d", limit=3)
    assert len(bars) == 3 and api.calls["kline"] == 3 and len(sleeps.waits) == 2


async def test_retries_run_out_into_venue_unavailable(venue: AkshareVenue, api: FakeAkshareApi) -> None:
    await venue.instruments()
    api.fail("kline", 503, times=4)
    with pytest.raises(VenueUnavailable, match=r"akshare did not answer 1d bars of 600519\.SH: HTTPError.*503"):
        await venue.bars("600519.SH", "1d", limit=3)
    assert api.calls["kline"] == 4


async def test_a_ban_is_not_retried_and_names_the_setting(venue: AkshareVenue, api: FakeAkshareApi) -> None:
    """No keys exist for akshare; Eastmoney's refusal of a banned IP (403) is its auth failure."""
    await venue.instruments()
    api.fail("kline", 403)
    with pytest.raises(VenueError, match=r"HTTP 403.*lower TRADEOPS_AKSHARE_RATE"):
        await venue.bars("600519.SH", "1d", limit=3)
    assert api.calls["kline"] == 1


async def test_requests_are_paced(api: FakeAkshareApi, clock: SimulatedClock) -> None:
    rate = 20.0
    venue = AkshareVenue(AkshareConfig(rate_per_second=rate, page_size=4), clock)
    started = time.monotonic()
    await venue.instruments()  # three listing pages
    await venue.bars("600519.SH", "1d", limit=3)
    await venue.bars("510300.SH", "1h", limit=3)
    elapsed = time.monotonic() - started
    assert venue.guard.requests == 5
    assert elapsed >= 4 / rate * 0.95  # five requests, four intervals at least


async def test_health_says_what_answered(venue: AkshareVenue) -> None:
    line = await venue.health()
    assert line.startswith("8 A-shares and ETFs listed, SHFE cu0, au0, ag0; 600519.SH last ")
    assert "paced at 1000 requests/s" in line
    await venue.aclose()


async def test_concurrent_first_calls_load_the_universe_once(venue: AkshareVenue, api: FakeAkshareApi) -> None:
    await asyncio.gather(venue.instruments(), venue.instrument("600519.SH"), venue.snapshot(["510300.SH"]))
    assert api.calls["listing"] == 3


# --- end to end: the command core on the akshare venue ---


def is_png(path: str) -> bool:
    return Path(path).read_bytes().startswith(b"\x89PNG")


@pytest.fixture
async def live_services(tmp_path: Path, api: FakeAkshareApi, clock: SimulatedClock) -> AsyncIterator[Services]:
    settings = load_settings(data_dir=tmp_path / "data", akshare=True, akshare_rate=10, market_data="live")
    async with open_services(settings, clock=clock) as opened:
        opened.users.grant(TRADER.platform, TRADER.user_id, Role.TRADER, at=clock.now(), display_name=TRADER.name)
        yield opened


async def test_scan_chart_and_signal_on_akshare_through_the_core(
    live_services: Services, api: FakeAkshareApi, clock: SimulatedClock
) -> None:
    assert list(live_services.venues) == ["akshare"]
    venue = live_services.venues["akshare"]
    assert isinstance(venue, AkshareVenue) and venue.broker is not None
    core = CommandCore(live_services)
    created = await core.handle(TRADER, "/watch add cnlive akshare:510300.SH 600519.SH")
    assert created.ok, created.text
    assert created.text == "watchlist cnlive created on akshare (15m): 510300.SH 600519.SH"

    scan = await core.handle(TRADER, "/scan cnlive")
    assert scan.ok, scan.text
    assert "cnlive: 2 symbols" in scan.text, scan.text
    sent = api.calls["kline"]
    again = await core.handle(TRADER, "/scan cnlive")  # the same bar: every bar is held
    assert again.ok, again.text
    assert api.calls["kline"] == sent

    chart = await core.handle(TRADER, "/chart akshare:510300.SH 1h")
    assert chart.ok, chart.text
    assert chart.text.startswith("510300.SH 1h"), chart.text
    assert is_png(chart.images[0])

    signal = await core.handle(TRADER, "/signal akshare:600519.SH")
    assert signal.ok, signal.text
    assert signal.text.startswith("600519.SH: "), signal.text


async def test_a_symbol_the_venue_fails_on_is_reported_and_the_scan_goes_on(
    venue: AkshareVenue, api: FakeAkshareApi
) -> None:
    from tools.screen import ScreenConfig, screen

    await venue.instruments()
    # 600519's first bar request meets four 503s (every try); 510300's are answered.
    api.fail("kline", 503, times=4, only={"secid": "1.600519"})
    result = await screen(venue, ["600519.SH", "510300.SH"], ScreenConfig(timeframe="15m"), now=NOW)
    assert result.universe == 2 and set(result.shortlisted) == {"600519.SH", "510300.SH"}
    assert result.skipped["600519.SH"].startswith(
        "no 15m bars: akshare did not answer 15m bars of 600519.SH: HTTPError: 503"
    ), result.skipped
    # 510300 was screened on its bars: its reason is a rule's, not the venue's.
    assert result.skipped["510300.SH"].startswith("trend rule failed on 15m"), result.skipped


def test_doctor_reports_the_akshare_venue_and_a_ban(tmp_path: Path) -> None:
    from bot.doctor import venue_checks
    from venues.clock import RealClock

    settings = load_settings(data_dir=tmp_path / "data", akshare=True, akshare_rate=10)
    api = FakeAkshareApi(RealClock(), settings.akshare_config)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        api.install(mock)
        checks = {check.name: check for check in venue_checks(settings)}
        assert checks["market data"].detail == "live"
        venue = checks["venue akshare"]
        assert venue.ok, venue.detail
        assert venue.detail.startswith("akshare: 8 A-shares and ETFs listed, SHFE cu0, au0, ag0; 600519.SH last ")
        # Eastmoney refusing the IP: said with the fix, no traceback.
        api.fail("listing", 403)
        banned = {check.name: check for check in venue_checks(settings)}["venue akshare"]
    assert not banned.ok
    assert "HTTP 403" in banned.detail and "lower TRADEOPS_AKSHARE_RATE" in banned.detail


async def test_readjusted_prices_are_fetched_again_not_joined(
    venue: AkshareVenue, api: FakeAkshareApi, clock: SimulatedClock
) -> None:
    first = await venue.bars("510300.SH", "15m", limit=40)
    # An ex-dividend day rebases every earlier forward-adjusted price (here by 1%).
    recorded = api.bars[("1.510300", "15m")]
    api.bars[("1.510300", "15m")] = recorded.assign(**{c: recorded[c] * 0.99 for c in ("open", "high", "low", "close")})
    clock.advance(timedelta(minutes=9))  # 10:16: the next bar has closed
    sent = api.calls["kline"]
    later = await venue.bars("510300.SH", "15m", limit=40)
    assert api.calls["kline"] == sent + 2  # the new bar showed the change; then the whole depth again
    assert later["close"].iloc[-2] == pytest.approx(first["close"].iloc[-1] * 0.99, rel=1e-3)
    assert venue.gaps == []


async def test_a_copper_position_through_the_core_counts_the_multiplier(
    live_services: Services, api: FakeAkshareApi, clock: SimulatedClock
) -> None:
    from venues.models import OrderRequest

    # Copper minute bars ending 10:00 to 10:12 Shanghai, up 10 CNY/t a minute from 70,000.
    api.sina[("CU0", "1")] = minute_rows(datetime(2021, 12, 15, 10, 0, tzinfo=SHANGHAI), 13, 70000, step=10)
    venue = live_services.venues["akshare"]
    broker = venue.broker_required()
    # At 10:07 the bar that opened at 10:06 is within the order latency: it fills at its open.
    placed = await broker.place(OrderRequest(client_order_id="cu-1", symbol="cu0", side=Side.BUY, qty=Decimal(1)))
    assert placed.status.value == "filled", placed.reason
    (fill,) = await broker.fills("cu-1")
    assert fill.price == Decimal(70060) + 40  # 70,060 and 5 bps of slippage, up to the 10 CNY tick
    clock.advance_to(datetime(2021, 12, 15, 10, 11, tzinfo=SHANGHAI))
    await broker.process()
    core = CommandCore(live_services)
    positions = await core.handle(TRADER, "/positions")
    assert positions.ok, positions.text
    (row,) = positions.data["positions"]
    # The last final bar (label 10:11) closed at 70,110: the move from the fill, times 5 t.
    assert Decimal(row["unrealized"]) == (Decimal(70110) - fill.price) * 5
    pnl = await core.handle(TRADER, "/pnl")
    (cny,) = [r for r in pnl.data["pnl"] if r["currency"] == "CNY"]
    assert Decimal(cny["unrealized"]) == Decimal(row["unrealized"])
    assert Decimal(cny["equity"]) == Decimal(cny["equity_start"]) - fill.fee + Decimal(row["unrealized"])
