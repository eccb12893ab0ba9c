"""The ccxt adapter against a local fake of OKX and Binance (tests/fake_ccxt.py) fed with ccxt's
recorded responses: instruments with the exchanges' real rules, one batched tickers call, bars
paged and checked for continuity, the caches, faults (429 with Retry-After, 503, timeouts, bad
keys), and orders to the sandbox placed once."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async
import pandas as pd
import pytest
from sqlalchemy import Engine

from storage.paper_ledger import SqlPaperLedger
from tests.fake_ccxt import FIXTURES, FakeExchange
from venues.adapters.ccxt import CcxtConfig, CcxtConfigError, CcxtVenue, SandboxBroker, validate_exchange_id
from venues.adapters.ccxt.client import make_exchange, rewrite_urls
from venues.adapters.resilience import RetryPolicy
from venues.clock import SimulatedClock
from venues.errors import UnknownSymbolError, UnknownTimeframeError, VenueAuthError, VenueUnavailable
from venues.models import AssetClass, CryptoFees
from venues.paper import PaperBroker

# Just after the recorded OKX/Binance BTC/USDT 1h candles (16:00, 17:00, 18:00 UTC on 2024-01-30).
NOW = datetime(2024, 1, 30, 19, 30, 5, tzinfo=UTC)
EXCHANGES = ["okx", "binance"]


class Sleeps:
    """VenueGuard's sleep: records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


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
    assert (spot.qty_step, spot.tick_size, spot.currency, spot.calendar) == (
        Decimal("0.00001"), Decimal("0.1"), "USDT", "24/7"
    )  # fmt: skip
    perp = await venue.instrument("BTC/USDT:USDT")
    assert perp.perpetual and perp.short is not None
    # The current funding rate is read (0.03% per 8 h in the fake), not the assumed 0.01%.
    assert perp.short.funding_rate_8h == Decimal("0.0003") and fake.exchange in perp.short.basis
    market = venue.exchange.markets
    assert spot.fees == CryptoFees(
        maker_bps=Decimal(str(market["BTC/USDT"]["maker"])) * 10_000,
        taker_bps=Decimal(str(market["BTC/USDT"]["taker"])) * 10_000,
    )
    if fake.exchange == "okx":
        # OKX's swap is quoted in contracts of 0.01 BTC, lot 0.01 contract: 0.0001 BTC a step.
        assert perp.qty_step == Decimal("0.0001") and spot.min_notional == 0
        assert (spot.fees.maker_bps, spot.fees.taker_bps) == (Decimal(10), Decimal(15))
    else:
        assert perp.qty_step == Decimal("0.001") and perp.min_notional == Decimal(100)
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
        assert perp.short is not None and perp.short.funding_rate_8h == Decimal("0.0001")
        assert "assumed" in perp.short.basis
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


# --- bars ---


def continuous(frame: pd.DataFrame, step: timedelta) -> bool:
    return bool((frame.index.to_series().diff().dropna() == step).all())


async def test_bars_are_final_continuous_and_carry_the_recorded_rows(venue: CcxtVenue, fake: FakeExchange) -> None:
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
    fake.fail("ticker", delay=1.0)
    venue, sleeps = make_venue(fake, timeout_s=0.2)
    try:
        assert "BTC/USDT" in await venue.snapshot(["BTC/USDT"])
        assert len(sleeps.waits) == 1
        fake.fail("ticker", delay=1.0, times=4)
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
