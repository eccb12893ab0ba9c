"""The lake venue (`--venue lake`): bars from the Parquet lake, cut at the injected clock like the
replay venue, so a simulated run or a backtest over lake data never sees a future bar."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from bot.console import run_command
from bot.services import open_services
from bot.settings import load_settings
from storage.backfill import backfill
from storage.lake import BarsLake
from storage.watchlists import WatchlistSpec
from tests.lake_support import FlakySource, utc
from venues.clock import SimulatedClock
from venues.errors import UnknownSymbolError
from venues.lake import LakeVenue
from venues.replay import ReplayVenue

pytestmark = pytest.mark.usefixtures("hermetic")

LAKE_START = utc("2021-05-01")
LAKE_END = utc("2021-08-01")
DATASETS = [
    ("crypto", "ETH/USDT", "1h"),
    ("crypto", "ETH/USDT", "1d"),  # a coarser timeframe the venue served: used as it is
    ("crypto", "BTC/USD", "1h"),
    ("cn", "510300.SH", "5m"),
    ("cn", "600519.SH", "1d"),
    ("us", "SPY", "1m"),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake-venue") / "data"
    lake = BarsLake(root / "lake")

    async def fill() -> None:
        for market, symbol, timeframe in DATASETS:
            source = FlakySource(market)
            await backfill(lake, source, symbol, timeframe, LAKE_START, LAKE_END, clock=source.clock)

    asyncio.run(fill())
    return root


@pytest.fixture
def lake(data_dir: Path) -> BarsLake:
    return BarsLake(data_dir / "lake")


MOMENTS = [
    utc("2021-07-06T06:00:05"),
    utc("2021-07-06T06:59:59.999999"),
    utc("2021-07-06T07:00"),  # exactly a 1h close
    utc("2021-07-07T03:31"),  # inside the Shanghai lunch break
    utc("2021-07-08T07:00"),  # the A-share close
    utc("2021-07-09T13:45"),  # inside the US open's first hour
    utc("2021-07-12T00:00"),
]


@pytest.mark.parametrize("now", MOMENTS, ids=lambda m: m.isoformat())
async def test_the_lake_venue_never_serves_a_bar_closing_after_now(lake: BarsLake, now: pd.Timestamp) -> None:
    venue = LakeVenue(lake.lake_series(), SimulatedClock(now))
    everything = LakeVenue(lake.lake_series(), SimulatedClock(LAKE_END + timedelta(days=30)))
    for _market, symbol, _ in DATASETS:
        for timeframe in venue.timeframes(symbol):
            bars = await venue.bars(symbol, timeframe)
            assert (pd.DatetimeIndex(bars["close_time"]) <= now).all(), (symbol, timeframe)
            # ... and the cut is exact: the next bar of the full series closes after now.
            full = await everything.bars(symbol, timeframe)
            later = full[pd.DatetimeIndex(full.index) > (bars.index[-1] if len(bars) else LAKE_START)]
            if len(later):
                assert later["close_time"].iloc[0] > now, (symbol, timeframe)


@pytest.mark.parametrize("now", MOMENTS, ids=lambda m: m.isoformat())
async def test_the_lake_venue_answers_as_the_replay_venue_did(lake: BarsLake, now: pd.Timestamp) -> None:
    clock = SimulatedClock(now)
    venue = LakeVenue(lake.lake_series(), clock)
    replays = {m: ReplayVenue(m, clock) for m in ("crypto", "cn", "us")}
    for market, symbol, _ in DATASETS:
        replay = replays[market]
        for timeframe in venue.timeframes(symbol):
            got = await venue.bars(symbol, timeframe, start=LAKE_START, limit=300)
            want = await replay.bars(symbol, timeframe, start=LAKE_START, limit=300)
            pd.testing.assert_frame_equal(got, want, check_freq=False, obj=f"{symbol} {timeframe}")
        assert await venue.snapshot([symbol]) == await replay.snapshot([symbol])


async def test_instruments_and_symbols(lake: BarsLake, data_dir: Path) -> None:
    venue = LakeVenue(lake.lake_series(), SimulatedClock(utc("2021-07-06")))
    instruments = {i.symbol: i for i in await venue.instruments()}
    assert set(instruments) == {"ETH/USDT", "BTC/USD", "510300.SH", "600519.SH", "SPY"}
    eth = instruments["ETH/USDT"]
    replay_eth = await ReplayVenue("crypto", SimulatedClock(utc("2021-07-06"))).instrument("ETH/USDT")
    assert eth == replay_eth.model_copy(update={"venue": "lake"})  # fees, lots, calendar: the source's
    assert venue.timeframes("ETH/USDT")[0] == "1h" and venue.timeframes("600519.SH")[0] == "1d"
    assert venue.source_of("ETH/USDT") == ("replay-crypto", "ETH/USDT")
    with pytest.raises(
        UnknownSymbolError, match=re.escape("valid symbols: 510300.SH, 600519.SH, BTC/USD, ETH/USDT, SPY")
    ):
        await venue.bars("XRP/USD", "1h")
    # The same symbol from a second source: both are qualified by their source venue.
    other = BarsLake(data_dir.parent / "two-sources")
    for source in (FlakySource("crypto"), FlakySource("crypto", name="binance")):
        await backfill(other, source, "BTC/USD", "1h", utc("2021-07-01"), utc("2021-07-03"), clock=source.clock)
    both = LakeVenue(other.lake_series(), SimulatedClock(utc("2021-07-02")))
    assert sorted(i.symbol for i in await both.instruments()) == ["binance:BTC/USD", "replay-crypto:BTC/USD"]
    with pytest.raises(UnknownSymbolError, match=re.escape("binance:BTC/USD, replay-crypto:BTC/USD")):
        await both.bars("BTC/USD", "1h")
    assert len(await both.bars("binance:BTC/USD", "1h")) == 24


async def test_services_offer_the_lake_venue_after_the_replay_ones(data_dir: Path, tmp_path: Path) -> None:
    clock = SimulatedClock(utc("2021-07-06T06:00:05"))
    async with open_services(load_settings(data_dir=tmp_path / "empty"), clock=clock) as services:
        assert list(services.venues) == ["replay-crypto", "replay-cn", "replay-us"]
    async with open_services(load_settings(data_dir=data_dir), clock=clock) as services:
        assert list(services.venues) == ["replay-crypto", "replay-cn", "replay-us", "lake"]
        lake = services.venues["lake"]
        assert (await lake.broker_required().account("USDT")).cash > 0
        # A watchlist on the lake venue scans through the same path as replay.
        services.watchlists.ensure(
            WatchlistSpec(name="lake-eth", venue="lake", symbols=("ETH/USDT",), timeframe="1h"), at=clock.now()
        )
        out, ok = await run_command(services, "/scan lake-eth")
        assert ok, out
        assert "lake-eth" in out and "scan at 2021-07-06T06:00:05" in out
        # A bare symbol two venues list names the choices; VENUE:SYMBOL picks one.
        out, ok = await run_command(services, "/chart ETH/USDT")
        assert not ok and "pick one: replay-crypto:ETH/USDT, lake:ETH/USDT" in out, out
        for venue in ("lake", "replay-crypto"):
            out, ok = await run_command(services, f"/chart {venue}:ETH/USDT")
            assert ok and f"chart: {services.charts_dir}" in out, out
