"""The ccxt adapter against a local fake of OKX and Binance (tests/fake_ccxt.py) fed with ccxt's
recorded responses: instruments with the exchanges' real rules, one batched tickers call, bars
paged and checked for continuity, the caches, faults (429 with Retry-After, 503, timeouts, bad
keys), and orders to the sandbox placed once."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
import pandas as pd
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from bot.cli import app
from bot.core import Caller, CommandCore
from bot.logs import redact
from bot.services import open_services
from bot.settings import load_settings
from bot.venues import VenueConfigError, live_venues
from storage.paper_ledger import SqlPaperLedger
from storage.users import Role
from tests.fake_ccxt import FIXTURES, VALID_KEY, FakeExchange
from tests.support import Sleeps, restored_logging
from tools.models import Action, Signal
from tools.risk import RiskContext, check, profile
from tools.sizing import propose, risk_based_qty
from venues.adapters.ccxt import (
    CcxtConfig,
    CcxtConfigError,
    CcxtVenue,
    SandboxBroker,
    exchange_client_id,
    parse,
    validate_exchange_id,
)
from venues.adapters.ccxt.client import make_exchange, rewrite_urls
from venues.adapters.resilience import RetryPolicy
from venues.clock import SimulatedClock
from venues.errors import UnknownSymbolError, UnknownTimeframeError, VenueAuthError, VenueError, VenueUnavailable
from venues.models import AssetClass, CryptoFees, OrderRequest, OrderStatus, OrderType, Side
from venues.paper import PaperBroker, PaperBrokerConfig

# Just after the recorded OKX/Binance BTC/USDT 1h candles (16:00, 17:00, 18:00 UTC on 2024-01-30).
NOW = datetime(2024, 1, 30, 19, 30, 5, tzinfo=UTC)
EXCHANGES = ["okx", "binance"]


@pytest.fixture(params=EXCHANGES)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeExchange]:
    with FakeExchange(request.param, NOW) as running:
        yield running


def make_venue(fake: FakeExchange, clock: SimulatedClock | None = None, **changes: Any) -> tuple[CcxtVenue, Sleeps]:
    sleeps = Sleeps()
    config = CcxtConfig(fake.exchange, api_url=fake.url, rate_limit_ms=1, **changes)
    venue = CcxtVenue(
        config, clock or SimulatedClock(NOW), sleep=sleeps, retry=RetryPolicy(attempts=4, base_delay=0.01)
    )
    venue.exchange.timeout_on_exit = 0  # ccxt waits 250 ms on close for TLS shutdowns; the fake speaks plain HTTP
    return venue, sleeps


@pytest.fixture
async def venue(fake: FakeExchange) -> AsyncIterator[CcxtVenue]:
    made, _ = make_venue(fake)
    try:
        yield made
    finally:
        await made.aclose()


# --- configuration ---


def test_an_unknown_exchange_id_is_refused_with_valid_ones() -> None:
    with pytest.raises(CcxtConfigError) as raised:
        validate_exchange_id("okex5")
    assert "'okex5'" in str(raised.value) and "okx" in str(raised.value) and "ccxt.exchanges" in str(raised.value)
    assert validate_exchange_id("binance") == "binance"


def test_keys_without_the_sandbox_are_refused() -> None:
    with pytest.raises(CcxtConfigError) as raised:
        CcxtConfig("okx", api_key="k", secret="s", password="p")
    assert "TRADEOPS_CCXT_SANDBOX=true" in str(raised.value) and "remove" in str(raised.value)
    shown = repr(CcxtConfig("okx", api_key="key-value", secret="secret-value", password="pass-value", sandbox=True))
    assert "value" not in shown and "sandbox=True" in shown


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("sandbox", [False, True])
def test_the_api_url_replaces_every_rest_base_keeping_the_path(exchange: str, sandbox: bool) -> None:
    original = getattr(ccxt_async, exchange)()
    expected = rewrite_urls(original.urls["test" if sandbox else "api"], "http://127.0.0.1:9")
    made = make_exchange(CcxtConfig(exchange, api_url="http://127.0.0.1:9/", sandbox=sandbox))

    def strings(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        return [value] if isinstance(value, str) else []

    urls = strings(made.urls["api"])
    assert urls and all(u.startswith("http://127.0.0.1:9") for u in urls), urls
    assert made.urls["api"] == expected
    if exchange == "binance":  # the path is kept: each API family stays apart on one host
        assert made.urls["api"]["fapiPublic"] == "http://127.0.0.1:9/fapi/v1"
        assert made.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    else:
        assert made.urls["api"]["rest"] == "http://127.0.0.1:9"
    assert made.isSandboxModeEnabled is sandbox


# --- instruments ---


async def test_instruments_carry_the_exchange_rules(venue: CcxtVenue, fake: FakeExchange) -> None:
    instruments = {i.symbol: i for i in await venue.instruments()}
    assert set(instruments) == {
        "BTC/USDT", "ETH/USDT", "SOL/USDT", "LTC/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT"
    }  # fmt: skip
    spot = instruments["BTC/USDT"]
    assert spot.asset_class is AssetClass.CRYPTO and not spot.perpetual and spot.short is None
    assert (spot.min_qty, spot.tick_size, spot.currency, spot.calendar) == (
        Decimal("0.00001"), Decimal("0.1"), "USDT", "24/7"
    )  # fmt: skip
    # OKX's BTC-USDT lot (lotSz 1e-8) is finer than its minimum (minSz 0.00001); Binance's step is it.
    assert spot.qty_step == (Decimal("0.00000001") if fake.exchange == "okx" else Decimal("0.00001"))
    perp = await venue.instrument("BTC/USDT:USDT")
    assert perp.perpetual and perp.short is not None and perp.funding is not None and spot.funding is None
    # The current funding rate is read (+0.03% per 8 h in the fake: longs pay), not the assumed 0.01%.
    assert perp.funding.rate_8h == Decimal("0.0003") and fake.exchange in perp.funding.basis
    assert "longs pay shorts" in perp.funding.basis
    market = venue.exchange.markets
    assert spot.fees == CryptoFees(
        maker_bps=Decimal(str(market["BTC/USDT"]["maker"])) * 10_000,
        taker_bps=Decimal(str(market["BTC/USDT"]["taker"])) * 10_000,
    )
    if fake.exchange == "okx":
        # OKX's swap is quoted in contracts of 0.01 BTC, lot and minimum 0.01 contract: 0.0001 BTC.
        assert perp.qty_step == perp.min_qty == Decimal("0.0001") and spot.min_notional == 0
        assert (spot.fees.maker_bps, spot.fees.taker_bps) == (Decimal(10), Decimal(15))
    else:
        assert perp.qty_step == perp.min_qty == Decimal("0.001") and perp.min_notional == Decimal(100)
        assert spot.min_notional == Decimal(5) and spot.fees.taker_bps == Decimal(10)
    assert fake.count("instruments") + fake.count("exchangeInfo") == 2  # spot and swap, once


async def test_markets_load_once_and_again_after_a_day(fake: FakeExchange) -> None:
    clock = SimulatedClock(NOW)
    venue, _ = make_venue(fake, clock)
    try:
        for _ in range(3):
            await venue.instruments()
        loads = fake.count("instruments") + fake.count("exchangeInfo")
        clock.advance(timedelta(days=1))
        await venue.instrument("ETH/USDT")
        assert fake.count("instruments") + fake.count("exchangeInfo") == 2 * loads
        # A day later the markets endpoint fails: yesterday's markets are kept, asked again in 10 min.
        clock.advance(timedelta(days=1))
        fake.fail("instruments" if fake.exchange == "okx" else "exchangeInfo", 400, times=1)
        assert (await venue.instrument("ETH/USDT")).symbol == "ETH/USDT"
        failed = fake.count("instruments") + fake.count("exchangeInfo")
        clock.advance(timedelta(minutes=5))
        await venue.instruments()
        assert fake.count("instruments") + fake.count("exchangeInfo") == failed
        clock.advance(timedelta(minutes=5))
        await venue.instruments()
        # asked again (the failed attempt's other market type may still have been in flight when counted)
        assert fake.count("instruments") + fake.count("exchangeInfo") > failed
    finally:
        await venue.aclose()


async def test_an_unknown_symbol_names_the_valid_ones(venue: CcxtVenue) -> None:
    with pytest.raises(UnknownSymbolError) as raised:
        await venue.instrument("DOGE/USDT")
    assert "BTC/USDT" in str(raised.value) and "DOGE/USDT" in str(raised.value)


async def test_without_a_funding_rate_the_assumed_one_is_kept(fake: FakeExchange) -> None:
    fake.has_funding = False
    venue, _ = make_venue(fake)
    try:
        perp = await venue.instrument("ETH/USDT:USDT")
        assert perp.funding is not None and perp.funding.rate_8h == Decimal("0.0001")
        assert "assumed" in perp.funding.basis
    finally:
        await venue.aclose()


# --- snapshot ---


async def test_a_snapshot_is_one_tickers_call_per_market_type_and_cached(venue: CcxtVenue, fake: FakeExchange) -> None:
    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "LTC/USDT", "BTC/USDT:USDT"]
    quotes = await venue.snapshot(symbols)
    assert list(quotes) == symbols
    assert fake.count("ticker") == 2  # one spot batch, one swap batch
    assert all(q.ts <= NOW and q.last > 0 for q in quotes.values())
    await venue.snapshot(symbols)  # within the 3-second quote TTL: nothing sent
    assert fake.count("ticker") == 2


async def test_the_recorded_ticker_parses_as_ccxt_says(fake: FakeExchange) -> None:
    fake.recorded_ticker = True
    venue, _ = make_venue(fake)
    recorded = json.loads((FIXTURES / f"ccxt_{fake.exchange}_static_responses.json").read_text())
    expected = recorded["methods"]["fetchTicker"][0]["parsedResponse"]
    try:
        quote = (await venue.snapshot(["BTC/USDT"]))["BTC/USDT"]
    finally:
        await venue.aclose()
    assert (quote.last, quote.bid, quote.ask) == (expected["last"], expected["bid"], expected["ask"])
    assert quote.volume == pytest.approx(expected["baseVolume"])
    assert quote.change_pct == pytest.approx(expected["percentage"])


async def test_a_symbol_the_exchange_does_not_quote_is_left_out_and_reported(
    venue: CcxtVenue, fake: FakeExchange
) -> None:
    await venue.instruments()
    # Listed in the markets, but the tickers answer leaves it out (delisted since the markets loaded).
    fake.unquoted.add("SOL")
    quotes = await venue.snapshot(["BTC/USDT", "SOL/USDT", "ETH/USDT"])
    assert set(quotes) == {"BTC/USDT", "ETH/USDT"}
    assert "SOL/USDT" in venue.quote_problems and "no price" in venue.quote_problems["SOL/USDT"]


async def test_a_symbol_the_exchange_does_not_list_is_never_sent_and_the_scan_goes_on(
    venue: CcxtVenue, fake: FakeExchange
) -> None:
    from tools.screen import ScreenConfig, screen

    quotes = await venue.snapshot(["BTC/USDT", "DOGE/NOPE", "ETH/USDT"])
    assert set(quotes) == {"BTC/USDT", "ETH/USDT"}  # the batch was not failed by the bad symbol
    result = await screen(venue, ["BTC/USDT", "DOGE/NOPE", "ETH/USDT"], ScreenConfig(), now=NOW)
    assert result.universe == 3
    assert result.skipped["DOGE/NOPE"].startswith(
        f"unknown symbol 'DOGE/NOPE' on venue '{fake.exchange}'; valid symbols: "
    )


async def test_without_fetch_tickers_one_bad_symbol_does_not_fail_the_batch(
    venue: CcxtVenue, fake: FakeExchange
) -> None:
    await venue.instruments()
    venue.exchange.has["fetchTickers"] = False
    fake.fail("ticker", 400, query="SOL")
    quotes = await venue.snapshot(["BTC/USDT", "SOL/USDT", "ETH/USDT"])
    assert set(quotes) == {"BTC/USDT", "ETH/USDT"} and fake.count("ticker") == 3
    assert "SOL/USDT" in venue.quote_problems["SOL/USDT"] and "unknown symbol" in venue.quote_problems["SOL/USDT"]


async def test_repeated_failures_open_the_breaker(fake: FakeExchange) -> None:
    fake.fail("ticker", 503, times=100)
    venue, _ = make_venue(fake)
    try:
        for _ in range(5):
            venue.quotes.clear()
            with pytest.raises(VenueUnavailable):
                await venue.snapshot(["BTC/USDT"])
        sent = fake.count("ticker")
        with pytest.raises(VenueUnavailable) as raised:
            await venue.snapshot(["BTC/USDT"])
    finally:
        await venue.aclose()
    assert "paused after 5 failures in a row" in str(raised.value) and fake.count("ticker") == sent


@pytest.mark.parametrize(
    ("mode", "value", "step"),
    [(4, "0.001", Decimal("0.001")), (4, 1e-08, Decimal("1E-8")), (2, 3, Decimal("0.001")), (3, 5, None)],
)
def test_market_precision_becomes_a_step_in_each_ccxt_mode(mode: int, value: Any, step: Decimal | None) -> None:
    assert parse.step(value, mode) == step


def test_a_bad_market_type_setting_is_refused_with_the_valid_ones(engine: Engine) -> None:
    settings = load_settings(ccxt_exchange="okx", ccxt_markets="spot,futures")
    with pytest.raises(VenueConfigError) as raised:
        live_venues(settings, SimulatedClock(NOW), engine)
    assert "'futures'" in str(raised.value) and "spot, swap" in str(raised.value)
    with pytest.raises(ValueError, match="unknown ccxt exchange 'kraken2'"):
        load_settings(ccxt_exchange="kraken2")


# --- bars ---


def continuous(frame: pd.DataFrame, step: timedelta) -> bool:
    return bool((frame.index.to_series().diff().dropna() == step).all())


async def test_bars_are_final_continuous_and_carry_the_recorded_rows(venue: CcxtVenue, fake: FakeExchange) -> None:
    window = await venue.bars(
        "BTC/USDT", "1h", start=datetime(2024, 1, 30, 9, 30, tzinfo=UTC), end=datetime(2024, 1, 30, 12, 59, tzinfo=UTC)
    )
    assert list(window.index.hour) == [10, 11, 12]
    bars = await venue.bars("BTC/USDT", "1h", limit=48)
    assert len(bars) == 48 and continuous(bars, timedelta(hours=1))
    assert bars["close_time"].iloc[-1] <= NOW  # the 19:00 bar still forming is dropped
    assert bars.index[-1] == pd.Timestamp("2024-01-30 18:00", tz="UTC")
    recorded = json.loads((FIXTURES / f"ccxt_{fake.exchange}_static_responses.json").read_text())
    rows = recorded["methods"]["fetchOHLCV"][0]["parsedResponse"]  # spot BTC/USDT 1h, oldest first
    for ms, o, h, low, c, v in rows:
        bar = bars.loc[pd.Timestamp(ms, unit="ms", tz="UTC")]
        assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]) == (o, h, low, c, v)


async def test_okx_history_pages_hold_fewer_bars_than_asked_and_none_is_skipped() -> None:
    with FakeExchange("okx", NOW) as fake:
        venue, _ = make_venue(fake)
        try:
            # A naive loop (since = last + 1) over ccxt's own calls: each page of 300 asked comes back
            # as the newest 100 of its window, so two thirds of the bars are silently skipped.
            exchange = venue.exchange
            start = int((NOW - timedelta(minutes=900)).timestamp() * 1000)
            since, naive = start, []
            while True:
                page = sorted(await exchange.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=300))
                page = [row for row in page if row[0] < int(NOW.timestamp() * 1000) - 60_000]
                if not page:
                    break
                naive += page
                since = page[-1][0] + 1
            assert len(naive) < 900 * 0.5
            requests_before = fake.count("candles")
            bars = await venue.bars("BTC/USDT", "1m", limit=900)
        finally:
            await venue.aclose()
    assert len(bars) == 900 and continuous(bars, timedelta(minutes=1))
    assert bars.index[0] == pd.Timestamp(NOW.replace(second=0)) - pd.Timedelta(minutes=900)
    # One short page is asked again with the venue's real page size (100), learned from then on.
    assert fake.count("candles") - requests_before == 9 + 1
    assert venue.gaps == {}


async def test_a_gap_of_the_venue_is_confirmed_recorded_and_crossed(fake: FakeExchange, caplog: Any) -> None:
    inst = "BTC-USDT" if fake.exchange == "okx" else "BTCUSDT"
    hole = (
        int(datetime(2024, 1, 30, 10, tzinfo=UTC).timestamp() * 1000),
        int(datetime(2024, 1, 30, 13, tzinfo=UTC).timestamp() * 1000),
    )
    fake.gaps[(inst, "1H" if fake.exchange == "okx" else "1h")] = [hole]
    venue, _ = make_venue(fake)
    try:
        with caplog.at_level(logging.WARNING):
            bars = await venue.bars("BTC/USDT", "1h", limit=24)
    finally:
        await venue.aclose()
    missing = {pd.Timestamp(2024, 1, 30, h, tz="UTC") for h in (10, 11, 12)}
    assert not missing & set(bars.index)
    assert bars.index[-1] == pd.Timestamp("2024-01-30 18:00", tz="UTC")
    assert venue.gaps == {
        ("BTC/USDT", "1h"): [(datetime(2024, 1, 30, 10, tzinfo=UTC), datetime(2024, 1, 30, 13, tzinfo=UTC))]
    }
    assert "has no bars from 2024-01-30T10:00:00+00:00" in caplog.text


async def test_a_second_call_inside_the_bar_fetches_nothing(fake: FakeExchange) -> None:
    clock = SimulatedClock(NOW)
    venue, _ = make_venue(fake, clock)
    try:
        first = await venue.bars("ETH/USDT", "15m", limit=100)
        sent = venue.guard.requests
        assert first.index[-1] == pd.Timestamp("2024-01-30 19:15", tz="UTC")
        clock.advance(timedelta(minutes=5))  # 19:35: the 19:30 bar is still forming
        again = await venue.bars("ETH/USDT", "15m", limit=100)
        assert venue.guard.requests == sent
        pd.testing.assert_frame_equal(first, again)
        clock.advance(timedelta(minutes=10))  # 19:45: the 19:30 bar has closed
        fake.now = clock.now()
        newer = await venue.bars("ETH/USDT", "15m", limit=100)
        assert venue.guard.requests == sent + 1
        assert newer.index[-1] == pd.Timestamp("2024-01-30 19:30", tz="UTC") and len(newer) == 100
        assert newer.index[-2] == again.index[-1]
    finally:
        await venue.aclose()


async def test_more_bars_than_the_cache_holds_are_refused_with_the_limit(venue: CcxtVenue) -> None:
    with pytest.raises(VenueError) as raised:
        await venue.bars("BTC/USDT", "1m", start=NOW - timedelta(days=30))
    assert "from 2023-12-31 19:31 UTC to now is 43199 bars; at most 5000" in str(raised.value)
    assert len(await venue.bars("BTC/USDT", "1m", limit=5000)) == 5000


async def test_a_timeframe_the_exchange_lacks_is_refused_with_the_valid_ones(venue: CcxtVenue) -> None:
    with pytest.raises(UnknownTimeframeError) as raised:
        await venue.bars("BTC/USDT", "2d")
    assert "1m" in str(raised.value) and "1d" in str(raised.value)
    del venue.exchange.timeframes["4h"]
    with pytest.raises(UnknownTimeframeError) as raised:
        await venue.bars("BTC/USDT", "4h")
    assert f"{venue.name} does not serve 4h bars" in str(raised.value) and "4h," not in str(raised.value)


# --- faults ---


async def test_a_429_waits_for_retry_after_then_succeeds(fake: FakeExchange) -> None:
    fake.fail("ticker", 429, retry_after="7")
    venue, sleeps = make_venue(fake)
    try:
        quotes = await venue.snapshot(["BTC/USDT"])
    finally:
        await venue.aclose()
    assert "BTC/USDT" in quotes
    assert len(sleeps.waits) == 1 and sleeps.waits[0] >= 7
    assert fake.count("ticker") == 2


async def test_a_503_then_success_is_retried(fake: FakeExchange) -> None:
    fake.fail("candles" if fake.exchange == "okx" else "klines", 503, times=2)
    venue, sleeps = make_venue(fake)
    try:
        bars = await venue.bars("BTC/USDT", "1h", limit=5)
    finally:
        await venue.aclose()
    assert len(bars) == 5 and len(sleeps.waits) == 2


async def test_a_timeout_is_retried_and_repeated_ones_say_so(fake: FakeExchange) -> None:
    fake.fail("ticker", delay=0.5)
    venue, sleeps = make_venue(fake, timeout_s=0.2)
    try:
        assert "BTC/USDT" in await venue.snapshot(["BTC/USDT"])
        assert len(sleeps.waits) == 1
        fake.fail("ticker", delay=0.5, times=4)
        venue.quotes.clear()
        with pytest.raises(VenueUnavailable) as raised:
            await venue.snapshot(["BTC/USDT"])
    finally:
        await venue.aclose()
    assert "RequestTimeout" in str(raised.value) and "after 4 tries" in str(raised.value)


async def test_a_bad_key_names_the_settings_and_shows_no_secret(fake: FakeExchange, engine: Engine) -> None:
    venue, _ = make_venue(fake, api_key="wrong-key-123", secret="s3cr3t-value", password="pa55phrase", sandbox=True)
    broker = SandboxBroker(venue, PaperBroker(venue.name, venue, venue.clock, SqlPaperLedger(engine)))
    try:
        with pytest.raises(VenueAuthError) as raised:
            await broker.exchange_balance()
    finally:
        await venue.aclose()
    text = str(raised.value)
    assert "TRADEOPS_CCXT_API_KEY" in text and "wrong-key-123" not in text and "s3cr3t" not in text
    assert fake.count("/balance" if fake.exchange == "okx" else "/account") == 1  # a 401 is not retried


# --- end to end: the command core and the CLI on a ccxt venue ---

TRADER = Caller("telegram", 1002, "tom")


@pytest.mark.usefixtures("hermetic")
async def test_scan_chart_and_signal_work_on_the_exchange_as_on_replay(tmp_path: Path) -> None:
    with FakeExchange("okx", NOW) as fake:
        settings = load_settings(data_dir=tmp_path / "data", ccxt_exchange="okx", ccxt_api_url=fake.url)
        clock = SimulatedClock(NOW)
        async with open_services(settings, clock=clock) as services:
            assert list(services.venues) == ["okx"]
            venue = services.venues["okx"]
            assert isinstance(venue, CcxtVenue) and isinstance(venue.broker, PaperBroker)
            services.users.grant("telegram", TRADER.user_id, Role.TRADER, at=clock.now(), display_name="tom")
            core = CommandCore(services)
            added = await core.handle(
                TRADER, "/watch add majors okx:BTC/USDT okx:ETH/USDT okx:SOL/USDT okx:eth/usdt:usdt"
            )
            assert added.ok and "(15m): BTC/USDT ETH/USDT SOL/USDT ETH/USDT:USDT" in added.text, added.text
            scanned = await core.handle(TRADER, "/scan majors")
            assert scanned.ok and "scan at 2024-01-30T19:30:05" in scanned.text, scanned.text
            assert fake.count("/market/tickers") == 2  # spot and swap, one call each for the whole list
            chart = await core.handle(TRADER, "/chart okx:BTC/USDT 1h")
            assert chart.ok and "BTC/USDT 1h" in chart.text and chart.images, chart.text
            assert chart.images[0].endswith(".png")
            signal = await core.handle(TRADER, "/signal okx:ETH/USDT:USDT")
            assert signal.ok and "ETH/USDT:USDT" in signal.text, signal.text
            unknown = await core.handle(TRADER, "/chart okx:DOGE/USDT")
            assert not unknown.ok and "unknown symbol 'DOGE/USDT' on venue 'okx'" in unknown.text
            # The exchange stops quoting one name: the scan goes on with the others and says why.
            fake.unquoted.add("SOL")
            venue.quotes.clear()
            majors = next(w for w in services.watchlists.all() if w.name == "majors")
            report = await services.scanner.scan(majors, trigger="manual")
            assert not report.error and report.universe == 4
            assert report.skipped["SOL/USDT"] == "no quote at 2024-01-30T19:30Z: okx returned no price for SOL/USDT"
            requests = fake.count("")
            again = await core.handle(TRADER, "/chart okx:BTC/USDT 1h")  # same bar: from the caches
            assert again.ok and fake.count("") == requests


@pytest.mark.usefixtures("hermetic")
@pytest.mark.parametrize("funded", [False, True])
async def test_paper_cash_per_quote_currency_and_a_market_without_any_is_skipped_naming_the_setting(
    tmp_path: Path, funded: bool
) -> None:
    # OKX lists BTC and ETH against USDC too. Without TRADEOPS_PAPER_CASH_CCXT the paper account holds
    # only USDT (TRADEOPS_PAPER_CASH_USDT): a USDC candidate is skipped with the setting named, never
    # walked into a silent zero size; with it, each currency has its own cash and is walked.
    extra = {"paper_cash_ccxt": "usdc=5000, USDT=20000"} if funded else {}
    universe = ("BTC/USDT", "ETH/USDT", "BTC/USDC", "ETH/USDC")
    with FakeExchange("okx", NOW, stable_quotes=("USDC",)) as fake:
        settings = load_settings(data_dir=tmp_path / "data", ccxt_exchange="okx", ccxt_api_url=fake.url, **extra)
        clock = SimulatedClock(NOW)
        async with open_services(settings, clock=clock) as services:
            venue = services.venues["okx"]
            assert (await venue.instrument("BTC/USDC")).currency == "USDC"
            broker = venue.broker_required()
            usdt, usdc = await broker.account("USDT"), await broker.account("USDC")
            assert usdt.cash == Decimal(20_000 if funded else 100_000) and not usdt.unfunded
            services.users.grant("telegram", TRADER.user_id, Role.TRADER, at=clock.now(), display_name="tom")
            core = CommandCore(services)
            added = await core.handle(TRADER, "/watch add stables " + " ".join(f"okx:{s}" for s in universe))
            assert added.ok, added.text
            spec = next(w for w in services.watchlists.all() if w.name == "stables").model_copy(
                update={"timeframe": "5m"}  # the fake's 5m series gives candidates in both currencies
            )
            report = await services.scanner.scan(spec, trigger="manual")
            assert {"BTC/USDC", "ETH/USDC", "BTC/USDT"} <= {c.symbol for c in report.candidates}, report
            walked = {w.signal_id for w in report.walks}
            signal = await core.handle(TRADER, "/signal okx:BTC/USDC")
            if funded:
                assert usdc.cash == Decimal(5000) and not usdc.unfunded
                assert report.not_walked == {} and len(walked) == len(report.candidates)
                assert signal.ok or "no paper cash" not in signal.text, signal.text
            else:
                assert usdc.cash == 0 and usdc.equity == 0
                why = (
                    "skipped: no paper cash in USDC on okx: fund it with TRADEOPS_PAPER_CASH_CCXT, e.g. "
                    'TRADEOPS_PAPER_CASH_CCXT="USDT=100000,USDC=10000" (a CURRENCY=AMOUNT list)'
                )
                assert report.not_walked == {"BTC/USDC": why, "ETH/USDC": why}
                assert len(walked) == len(report.candidates) - 2  # the USDT ones are walked as before
                assert not signal.ok and signal.text == f"BTC/USDC {why}"
                # The paper broker refuses a USDC order with the same reason, whoever sends it.
                order = await broker.place(
                    OrderRequest(client_order_id="usdc0001", symbol="BTC/USDC", side=Side.BUY, qty=Decimal("0.001"))
                )
                assert order.status is OrderStatus.REJECTED and order.reason.startswith(
                    "no paper cash in USDC on okx: fund it with TRADEOPS_PAPER_CASH_CCXT"
                )
                # /pnl leaves the currency out rather than listing an empty account.
                pnl = await core.handle(TRADER, "/pnl")
                assert "USDT" in pnl.text and "USDC" not in pnl.text, pnl.text


@pytest.mark.usefixtures("hermetic")
def test_tradeops_scan_and_doctor_on_the_real_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeExchange("binance", None) as fake:
        monkeypatch.setenv("TRADEOPS_CCXT_EXCHANGE", "binance")
        monkeypatch.setenv("TRADEOPS_CCXT_API_URL", fake.url)
        monkeypatch.setenv("TRADEOPS_CCXT_MARKETS", "spot")
        monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path / "data"))
        runner = CliRunner()
        with restored_logging():
            added = runner.invoke(app, ["chat", "-c", "/watch add majors BTC/USDT ETH/USDT SOL/USDT"])
            assert added.exit_code == 0, added.output
            scanned = runner.invoke(app, ["scan", "majors", "--json"])
            assert scanned.exit_code == 0, scanned.output
            doctor = runner.invoke(app, ["doctor"])
        assert "venue ccxt" in doctor.output and "binance: 4 markets (4 spot, 0 USDT perpetuals)" in doctor.output
        report = json.loads(scanned.output)
        assert report["ok"], report
        assert fake.count("/ticker/24hr") >= 1 and fake.count("/fapi/") == 0


# --- orders: entries to the sandbox, placed once ---


def test_client_order_ids_fit_each_exchange_and_stay_distinct() -> None:
    okx_ok, binance_ok = re.compile(r"^[A-Za-z0-9]{1,32}$"), re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
    assert exchange_client_id("okx", "a1b2c3d4e5f6") == "a1b2c3d4e5f6"
    assert exchange_client_id("binance", "a1b2c3d4e5f6") == "a1b2c3d4e5f6"
    ids = ["a1b2c3d4e5f6-tp1", "a1b2c3d4e5f6-tp2", "x" * 64, "x" * 63 + "y", "sig_2024.01:30-btc"]
    for exchange, pattern in (("okx", okx_ok), ("binance", binance_ok), ("bybit", okx_ok)):
        made = [exchange_client_id(exchange, i) for i in ids]
        assert all(pattern.match(m) for m in made), made
        assert len(set(made)) == len(ids)
        assert made == [exchange_client_id(exchange, i) for i in ids]  # the same every time


def sandbox_venue(fake: FakeExchange, engine: Engine, **changes: Any) -> tuple[CcxtVenue, SandboxBroker]:
    keys = {"api_key": VALID_KEY, "secret": "test-secret", "password": "test-pass", "sandbox": True}
    venue, _ = make_venue(fake, **(keys | changes))
    paper = PaperBroker(
        venue.name, venue, venue.clock, SqlPaperLedger(engine), PaperBrokerConfig({"USDT": Decimal(10_000)})
    )
    broker = SandboxBroker(venue, paper)
    venue.broker = broker
    return venue, broker


def entry(client_order_id: str = "c0ffee01", qty: str = "0.01") -> OrderRequest:
    return OrderRequest(client_order_id=client_order_id, symbol="BTC/USDT", side=Side.BUY, qty=Decimal(qty))


async def test_an_entry_goes_to_the_sandbox_once_and_its_exits_stay_paper(fake: FakeExchange, engine: Engine) -> None:
    venue, broker = sandbox_venue(fake, engine)
    try:
        order = await venue.place_order(entry())
        assert order.status in (OrderStatus.PENDING, OrderStatus.FILLED) and order.venue == fake.exchange
        assert fake.order_posts == 1 and list(fake.orders) == ["c0ffee01"]
        sent = fake.orders["c0ffee01"]
        assert (sent.get("instId") or sent.get("symbol")) in ("BTC-USDT", "BTCUSDT")
        assert (sent.get("sz") or sent.get("quantity")) in ("0.01", "0.01000000")
        again = await venue.place_order(entry())  # the same client order id: nothing new is sent
        assert again.client_order_id == order.client_order_id and fake.order_posts == 1
        stop = OrderRequest(
            client_order_id="c0ffee01-sl", symbol="BTC/USDT", side=Side.SELL, qty=Decimal("0.01"),
            type=OrderType.STOP, stop_price=Decimal(40000), parent="c0ffee01",
        )  # fmt: skip
        child = await venue.place_order(stop)
        assert child.status is OrderStatus.PENDING and fake.order_posts == 1  # the exit stays paper
        assert "free USDT" in await broker.exchange_balance() or fake.exchange == "binance"
    finally:
        await venue.aclose()


async def test_an_entry_the_paper_ledger_refuses_is_taken_back_from_the_sandbox(
    fake: FakeExchange, engine: Engine
) -> None:
    venue, broker = sandbox_venue(fake, engine)
    broker.paper = PaperBroker(
        venue.name, venue, venue.clock, SqlPaperLedger(engine), PaperBrokerConfig({"USDT": Decimal(10)})
    )
    try:
        order = await venue.place_order(entry("cafe0001"))
    finally:
        await venue.aclose()
    assert order.status is OrderStatus.REJECTED and "insufficient" in order.reason
    assert "was cancelled there" in order.reason and fake.order_posts == 1
    placed = fake.orders["cafe0001"]
    assert placed.get("state") == "canceled" or placed.get("status") == "CANCELED"


@pytest.mark.parametrize("fault", ["429", "timeout"])
async def test_an_order_whose_answer_was_lost_is_looked_up_not_sent_again(
    fake: FakeExchange, engine: Engine, fault: str
) -> None:
    path = "/trade/" if fake.exchange == "okx" else "/api/v3/order"
    if fault == "429":  # the exchange took the order, then answered 429
        fake.fail(path, 429, retry_after="1", after_handling=True, method="POST")
    else:  # the exchange took the order; its answer comes after our timeout
        fake.fail(path, delay=0.6, after_handling=True, method="POST")
    venue, _ = sandbox_venue(fake, engine, timeout_s=0.3)
    try:
        order = await venue.place_order(entry("feed0001"))
    finally:
        await venue.aclose()
    assert order.client_order_id == "feed0001"
    assert fake.order_posts == 1 and list(fake.orders) == ["feed0001"]
    assert len(fake.simulated_trading) == 1  # one POST: looked up after the lost answer, found, not re-sent


async def test_a_create_refused_with_503_is_looked_up_then_sent_once_more(fake: FakeExchange, engine: Engine) -> None:
    path = "/trade/" if fake.exchange == "okx" else "/api/v3/order"
    fake.fail(path, 503, method="POST")  # answered before the exchange took the order
    venue, _ = sandbox_venue(fake, engine)
    try:
        order = await venue.place_order(entry("beef0001"))
    finally:
        await venue.aclose()
    assert order.client_order_id == "beef0001"
    assert len(fake.simulated_trading) == 2 and fake.order_posts == 1 and list(fake.orders) == ["beef0001"]
    if fake.exchange == "okx":  # ccxt's sandbox mode marks every OKX request as demo trading
        assert fake.simulated_trading == ["1", "1"]


def test_no_order_path_reaches_a_live_account(fake: FakeExchange, engine: Engine) -> None:
    venue, _ = make_venue(fake)  # no sandbox
    paper = PaperBroker(venue.name, venue, venue.clock, SqlPaperLedger(engine))
    with pytest.raises(VenueError) as raised:
        SandboxBroker(venue, paper)
    assert "never sends an order to a live account" in str(raised.value)
    settings = load_settings(ccxt_exchange=fake.exchange, ccxt_api_key="k-123456", ccxt_secret="s-123456")
    with pytest.raises(VenueConfigError) as refused:
        live_venues(settings, SimulatedClock(NOW), engine)
    assert "TRADEOPS_CCXT_SANDBOX=true" in str(refused.value) and "k-123456" not in str(refused.value)


# --- the exchange's minimum order size (limits.amount.min) on a small account ---


async def test_okx_minimum_order_size_bites_a_small_account_in_sizing_the_gate_and_the_broker(engine: Engine) -> None:
    with FakeExchange("okx", NOW) as fake:
        clock = SimulatedClock(NOW)
        venue, _ = make_venue(fake, clock)
        broker = PaperBroker(venue.name, venue, clock, SqlPaperLedger(engine), PaperBrokerConfig({"USDT": Decimal(2)}))
        try:
            btc = await venue.instrument("BTC/USDT")  # OKX BTC-USDT: lot 1e-8 BTC, minimum 0.00001 BTC
            last = Decimal(str((await venue.snapshot(["BTC/USDT"]))["BTC/USDT"].last))
            entry = last.quantize(Decimal("0.1"))
            signal = Signal(
                action=Action.BUY,
                symbol="BTC/USDT",
                entry=entry,
                stop=(entry * Decimal("0.98")).quantize(Decimal("0.1")),
                take_profits=((entry * Decimal("1.05")).quantize(Decimal("0.1")),),
                confidence=0.8,
            )
            # 2 USDT of equity: 20% is 0.40 USDT, about 0.0000092 BTC at ~43,400, under the minimum.
            qty, notes = risk_based_qty(
                signal,
                btc,
                equity=Decimal(2),
                available_cash=Decimal(2),
                risk_per_trade_pct=Decimal("0.01"),
                max_position_pct=Decimal("0.2"),
                slippage_bps=Decimal(5),
            )
            assert qty == 0 and notes[-1].endswith("BTC/USDT fits, below the venue's minimum order quantity of 0.00001")
            # A proposal of 0.000005 BTC (whole lots of 1e-8) is blocked by the gate ...
            small = propose(signal, btc, Decimal("0.000005"), slippage_bps=Decimal(5), on=NOW.date())
            context = RiskContext(now=NOW, equity=Decimal(1000), day_start_equity=Decimal(1000))
            verdict, _ = check(small, context, profile("high"), btc, slippage_bps=Decimal(5))
            assert verdict.decision == "block" and (
                "size 0.000005 BTC/USDT is below the venue's minimum order quantity of 0.00001" in verdict.reasons
            )
            # ... and refused by the paper broker, which takes the minimum itself.
            tiny = await broker.place(
                OrderRequest(client_order_id="tiny0001", symbol="BTC/USDT", side=Side.BUY, qty=Decimal("0.000005"))
            )
            assert tiny.status is OrderStatus.REJECTED
            assert tiny.reason == (
                "quantity 0.000005 of BTC/USDT is below its minimum order quantity of 0.00001 "
                "(the venue refuses smaller orders)"
            )
            least = await broker.place(
                OrderRequest(client_order_id="least001", symbol="BTC/USDT", side=Side.BUY, qty=Decimal("0.00001"))
            )
            assert least.status is OrderStatus.PENDING, least.reason
        finally:
            await venue.aclose()


# --- funding: the live rate, paid by longs or shorts as its sign says ---


async def test_a_negative_funding_rate_keeps_its_sign(fake: FakeExchange) -> None:
    fake.funding_rate = "-0.00020000"
    venue, _ = make_venue(fake)
    try:
        perp = await venue.instrument("BTC/USDT:USDT")
    finally:
        await venue.aclose()
    assert perp.funding is not None and perp.funding.rate_8h == Decimal("-0.0002")
    assert "-0.0200% per 8h" in perp.funding.basis and "shorts pay longs" in perp.funding.basis


def test_a_funding_rate_of_another_interval_is_scaled_to_8_hours() -> None:
    terms = parse.funding_terms({"fundingRate": 0.0001, "interval": "4h"}, "binance")
    assert terms.rate_8h == Decimal("0.0002") and "+0.0100% per 4h" in terms.basis
    assert parse.funding_terms(None, "okx").rate_8h == Decimal("0.0001")  # the assumed baseline


@pytest.mark.parametrize(("side", "qty"), [(Side.SELL, Decimal("-0.01")), (Side.BUY, Decimal("0.01"))])
async def test_a_perpetual_held_across_a_funding_time_settles_the_live_rate(
    engine: Engine, side: Side, qty: Decimal
) -> None:
    # The fake's +0.03% per 8 h: the long pays it, the short receives it.
    with FakeExchange("okx", NOW) as fake:
        clock = SimulatedClock(NOW)
        venue, _ = make_venue(fake, clock)
        ledger = SqlPaperLedger(engine)
        broker = PaperBroker(venue.name, venue, clock, ledger, PaperBrokerConfig({"USDT": Decimal(10_000)}))
        try:
            entry = OrderRequest(client_order_id="f00d0001", symbol="BTC/USDT:USDT", side=side, qty=Decimal("0.01"))
            await broker.place(entry)
            clock.advance_to(datetime(2024, 1, 31, 0, 5, tzinfo=UTC))  # across the 00:00 UTC funding
            fake.now = clock.now()
            await broker.process()
            position = next(p for p in await broker.positions() if p.symbol == "BTC/USDT:USDT")
            fill = (await broker.fills("f00d0001"))[0]
            mark = datetime(2024, 1, 31, tzinfo=UTC)
            last = await venue.bars("BTC/USDT:USDT", "1m", end=mark - timedelta(minutes=1), limit=1)
        finally:
            await venue.aclose()
    assert position.qty == qty and ledger.last_carry("okx", "BTC/USDT:USDT", "USDT") == mark
    paid = (qty * Decimal(str(last["close"].iloc[-1])) * Decimal("0.0003")).quantize(Decimal("1e-8"))
    assert fill.ts < mark and position.realized_pnl == -paid  # only the funding is realized while it is open


async def test_the_keys_are_registered_as_secrets_when_the_venue_is_built(fake: FakeExchange, engine: Engine) -> None:
    settings = load_settings(
        ccxt_exchange=fake.exchange,
        ccxt_api_url=fake.url,
        ccxt_api_key=VALID_KEY,
        ccxt_secret="secret-91bd2e",
        ccxt_password="pass-5e6f70",
        ccxt_sandbox=True,
    )
    venues = live_venues(settings, SimulatedClock(NOW), engine)
    venue = venues[fake.exchange]
    assert isinstance(venue, CcxtVenue) and isinstance(venue.broker, SandboxBroker)
    assert venue.exchange.isSandboxModeEnabled
    assert redact(f"{VALID_KEY} secret-91bd2e pass-5e6f70") == "*** *** ***"
    assert logging.getLogger("ccxt").getEffectiveLevel() >= logging.INFO
    try:
        health = await venue.health()  # what `tradeops doctor` prints: markets, a quote, the sandbox account
    finally:
        await venue.aclose()
    assert "6 markets (4 spot, 2 USDT perpetuals); BTC/USDT last" in health and "sandbox account: free " in health
