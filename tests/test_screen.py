"""tools.screen on the real replay data under a simulated clock: pinned real moments where a symbol
is and is not a candidate, the reasons' numbers, deterministic ranking, the cost bound (bars only
for the shortlist), daily-only symbols, unknown symbols and moments before any data."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from benchmarks.universe import build_universe
from tools.screen import MIN_BASE_BARS, ScreenConfig, ScreenResult, screen
from venues.base import BatchMarketData, MarketData, bars_many
from venues.clock import SimulatedClock
from venues.errors import UnknownSymbolError, UnknownTimeframeError, VenueUnavailable
from venues.models import Instrument, Quote
from venues.replay import DATA_DIR, ReplayVenue

CN = ["510300.SH", "600519.SH", "601318.SH", "000001.SZ"]
CRYPTO = ["BTC/USD", "ETH/USDT"]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


class Counting:
    """A thin wrapper around a venue counting what the screen asks of it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.snapshots: list[int] = []
        self.bars_calls: Counter[tuple[str, str]] = Counter()
        self.instrument_calls: Counter[str] = Counter()

    async def instruments(self) -> list[Instrument]:
        return await self.inner.instruments()

    async def instrument(self, symbol: str) -> Instrument:
        self.instrument_calls[symbol] += 1
        return await self.inner.instrument(symbol)

    async def snapshot(self, symbols: Sequence[str]) -> dict[str, Quote]:
        self.snapshots.append(len(symbols))
        return await self.inner.snapshot(symbols)

    async def bars(self, symbol: str, timeframe: str, **kwargs: Any) -> pd.DataFrame:
        self.bars_calls[(symbol, timeframe)] += 1
        return await self.inner.bars(symbol, timeframe, **kwargs)


class Aliased:
    """Several names for one real series: identical data, so identical scores."""

    def __init__(self, inner: ReplayVenue, aliases: dict[str, str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.aliases = aliases

    async def instruments(self) -> list[Instrument]:
        return [await self.instrument(a) for a in self.aliases]

    async def instrument(self, symbol: str) -> Instrument:
        real = await self.inner.instrument(self.aliases[symbol])
        return real.model_copy(update={"symbol": symbol})

    async def snapshot(self, symbols: Sequence[str]) -> dict[str, Quote]:
        quotes = await self.inner.snapshot([self.aliases[s] for s in symbols])
        return {s: quotes[self.aliases[s]].model_copy(update={"symbol": s}) for s in symbols}

    async def bars(self, symbol: str, timeframe: str, **kwargs: Any) -> pd.DataFrame:
        return await self.inner.bars(self.aliases[symbol], timeframe, **kwargs)


async def run(market: str, symbols: Sequence[str], now: datetime, **config: Any) -> ScreenResult:
    return await screen(ReplayVenue(market, SimulatedClock(now)), symbols, ScreenConfig(**config), now=now)


def assert_accounts_for_everyone(result: ScreenResult, symbols: Sequence[str]) -> None:
    chosen = [c.symbol for c in result.candidates]
    assert set(chosen).isdisjoint(result.skipped)
    assert sorted([*chosen, *result.skipped]) == sorted(set(symbols))
    assert result.universe == len(set(symbols))
    for c in result.candidates:
        assert c.indicators and all(isinstance(v, float) and math.isfinite(v) for v in c.indicators.values())


# --- configuration ------------------------------------------------------------------------------


def test_config_defaults_and_normalisation() -> None:
    config = ScreenConfig()
    assert (config.timeframe, config.confirm, config.lookback) == ("15m", ("1h", "4h", "1d"), 200)
    assert (config.shortlist, config.top_n, config.min_score, config.min_change_pct) == (50, 5, 0.6, None)
    assert ScreenConfig(confirm=("1d", " 1h")).confirm == ("1h", "1d")  # ascending: the first is the lowest
    assert ScreenConfig(confirm="4h").confirm == ("4h",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeframe": "15min"}, "unknown timeframe '15min'; valid timeframes: 1m, 5m"),
        (
            {"confirm": ("15m", "1h")},
            "confirm timeframes must be coarser than the base timeframe 15m; not coarser: 15m",
        ),
        ({"confirm": ("1h", "1h")}, "confirm timeframes must be distinct; repeated: 1h"),
        ({"confirm": ()}, "confirm needs at least one timeframe"),
        ({"lookback": 30}, f"lookback 30 is too short: the rules need at least {MIN_BASE_BARS} bars"),
        ({"top_n": 10, "shortlist": 5}, "top_n 10 is larger than shortlist 5"),
        ({"min_score": 1.5}, "less than or equal to 1"),
        ({"shortlist": 0}, "greater than or equal to 1"),
        ({"min_change_pct": float("nan")}, "finite number"),
        ({"shortlsit": 5}, "Extra inputs are not permitted"),
    ],
)
def test_config_errors_say_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        ScreenConfig(**kwargs)


# --- pinned real moments --------------------------------------------------------------------------


async def test_csi300_etf_is_a_candidate_on_the_morning_of_2021_07_22() -> None:
    # 10:00 Shanghai on 2021-07-22: the CSI 300 ETF in a 15m uptrend, confirmed on 1h, 4h and 1d.
    now = utc(2021, 7, 22, 2)
    result = await run("cn", CN, now)
    assert_accounts_for_everyone(result, CN)
    assert [c.symbol for c in result.candidates] == ["510300.SH"]
    c = result.candidates[0]
    assert (c.venue, c.timeframe, c.score, c.direction) == ("replay-cn", "15m", 1.0, "long")
    assert c.bar_close == utc(2021, 7, 22, 2)
    # The latest final 15m bar ends with the 5m bar opening 01:55Z, whose close in the file is 5.223.
    row = pd.read_csv(DATA_DIR / "510300.SH_5m_2021-04-22_2022-01-18_tdx.csv", index_col="timestamp")
    assert c.last_price == row.loc["2021-07-22T01:55:00Z", "close"] == 5.223
    assert c.reasons == (
        "15m uptrend: close 5.223 > EMA20 5.201 > EMA50 5.184",
        "RSI(14) 63.3 on 15m, in the 50-70 band",
        "MACD histogram 0.0006194 > 0 and rising from 0.0003525 on 15m",
        "ADX(14) 24.0: trending, +DI 28.7 > -DI 11.6",
        "not overextended: close 1.39 ATR above EMA20 (ATR(14) 0.01548), within 1.5 ATR",
        # 10:00 Shanghai: the 09:30-10:30 hour is still forming, so the last final 1h bar (like the
        # 4h bar and the daily session) is the previous afternoon's.
        "1h: close 5.204 above EMA20 5.174, RSI(14) 57.8 > 50: confirmed",
        "4h: close 5.204 above EMA20 5.172, RSI(14) 54.9 > 50: confirmed",
        "1d: close 5.204 above EMA20 5.179, RSI(14) 52.3 > 50: confirmed",
    )
    assert set(c.indicators) == {
        *(f"{k}_15m" for k in ("EMA_20", "EMA_50", "RSI_14", "MACD_12_26_9", "MACDh_12_26_9", "MACDs_12_26_9")),
        *(f"{k}_15m" for k in ("ADX_14", "DMP_14", "DMN_14", "ATRr_14")),
        *(f"{k}_{tf}" for k in ("EMA_20", "RSI_14") for tf in ("1h", "4h", "1d")),
    }
    assert c.indicators["RSI_14_15m"] == pytest.approx(63.3, abs=0.05)
    assert c.indicators["ADX_14_15m"] == pytest.approx(24.0, abs=0.05)
    # The daily A-shares were falling that week: each fails the required trend rule, with numbers.
    assert result.skipped == {
        "600519.SH": "trend rule failed on 1d: close 1969.00 at or below EMA20 2011.88 (needs close > EMA20 > EMA50)",
        "601318.SH": "trend rule failed on 1d: close 58.08 at or below EMA20 61.46 (needs close > EMA20 > EMA50)",
        "000001.SZ": "trend rule failed on 1d: close 20.45 at or below EMA20 21.73 (needs close > EMA20 > EMA50)",
    }


async def test_csi300_etf_is_no_candidate_in_the_sell_off_of_2021_07_28() -> None:
    result = await run("cn", ["510300.SH"], utc(2021, 7, 28, 2))
    assert result.candidates == ()
    assert result.shortlisted == ("510300.SH",)
    assert result.skipped == {
        "510300.SH": "trend rule failed on 15m: close 4.775 at or below EMA20 4.904 (needs close > EMA20 > EMA50)"
    }


async def test_bitcoin_on_its_native_hourly_bars_at_2021_07_28() -> None:
    result = await run("crypto", CRYPTO, utc(2021, 7, 28))
    assert [(c.symbol, c.score) for c in result.candidates] == [("BTC/USD", 0.9), ("ETH/USDT", 0.85)]
    btc = result.candidates[0]
    assert (btc.timeframe, btc.last_price, btc.bar_close) == ("1h", 39487.31, utc(2021, 7, 28))
    assert btc.reasons[0] == ("BTC/USD: only 1h bars, base timeframe 15m is finer; screened on 1h, confirmed on 4h, 1d")
    # It lost only the extension points: 0.20 + 0.15 + 0.10 + 0.05 + 0.15 + 0.25 = 0.90.
    assert "overextended: close 2.09 ATR above EMA20 (ATR(14) 650.4): no points" in btc.reasons
    assert "ADX(14) 22.3: trending, +DI 29.5 > -DI 13.0" in btc.reasons
    assert "1d: close 39487.31 above EMA20 34056.78, RSI(14) 69.3 > 50: confirmed" in btc.reasons
    assert not any(k.endswith("_15m") for k in btc.indicators)
    eth = result.candidates[1]
    assert "ADX(14) 16.9 <= 20, no clear trend on 1h: no points" in eth.reasons


async def test_the_first_confirmation_is_required() -> None:
    # BTC's 1h trend held on 2021-05-21 14:00Z, but the 4h close was below its EMA20.
    result = await run("crypto", ["BTC/USD"], utc(2021, 5, 21, 14))
    assert result.candidates == ()
    assert result.skipped["BTC/USD"] == (
        "first confirmation failed: 4h: close 41181.04 at or below EMA20 41261.79, RSI(14) 46.9 <= 50: not confirmed"
    )


async def test_daily_only_a_shares_are_screened_on_days_and_confirmed_on_weeks() -> None:
    # After Friday's close, 2021-01-15: Moutai, Ping An Bank and Ping An Insurance all in uptrends.
    now = utc(2021, 1, 15, 8)
    market = Counting(ReplayVenue("cn", SimulatedClock(now)))
    result = await screen(market, CN, ScreenConfig(), now=now)
    assert_accounts_for_everyone(result, CN)
    assert [(c.symbol, c.score) for c in result.candidates] == [
        ("600519.SH", 0.95),
        ("000001.SZ", 0.9),
        ("601318.SH", 0.85),
    ]
    moutai = result.candidates[0]
    assert moutai.timeframe == "1d"
    assert moutai.bar_close == utc(2021, 1, 15, 7)  # the session close, 15:00 Shanghai
    assert moutai.last_price == 2082.0  # the file's 2021-01-15 close
    assert moutai.reasons[0] == (
        "600519.SH: only 1d bars, base timeframe 15m is finer; screened on 1d, confirmed on 1w "
        "(no configured confirm timeframe is coarser than 1d)"
    )
    assert "MACD histogram 7.671 > 0 but not rising (was 15.22) on 1d" in moutai.reasons
    # At 16:00 Shanghai on Friday 2021-01-15 this week's bar is final (the week's last session
    # closed at 15:00), so the weekly close is today's 2082.00.
    assert "1w: close 2082.00 above EMA20 1799.82, RSI(14) 80.3 > 50: confirmed" in moutai.reasons
    assert {"RSI_14_1d", "EMA_20_1w", "RSI_14_1w"} <= set(moutai.indicators)
    # The ETF's recorded 5m bars start on 2021-04-22.
    assert result.skipped == {"510300.SH": "no quote at 2021-01-15T08:00Z: no final bar yet"}
    assert {tf for _, tf in market.bars_calls} == {"1d", "1w"}
    assert "510300.SH" not in market.instrument_calls


async def test_a_confirm_timeframe_without_enough_bars_is_dropped_with_a_note() -> None:
    # Four weeks after the ETF's series starts there are 15 daily sessions: the 1d check is dropped,
    # earns nothing, and the symbol is still a candidate on 15m, 1h and 4h.
    result = await run("cn", ["510300.SH"], utc(2021, 5, 17, 8))
    (c,) = result.candidates
    assert c.score == pytest.approx(0.20 + 0.15 + 0.15 + 0.10 + 2 * 0.25 / 3, abs=1e-4)
    assert c.reasons[-1] == "1d confirmation dropped: 15 bars, need 30"
    assert "MACD histogram -0.005546 <= 0 on 15m: no points" in c.reasons
    assert not any(k.endswith("_1d") for k in c.indicators)


async def test_not_enough_history_is_a_reason_not_an_error() -> None:
    result = await run("cn", ["510300.SH"], utc(2021, 4, 22, 3))
    assert result.candidates == ()
    assert result.skipped == {"510300.SH": "not enough history: 6 15m bars at 2021-04-22T03:00Z, need 60"}


async def test_a_moment_before_any_data() -> None:
    now = utc(2020, 6, 1)
    market = Counting(ReplayVenue("us", SimulatedClock(now)))
    result = await screen(market, ["AMZN", "SPY"], ScreenConfig(), now=now)
    assert result == ScreenResult(
        universe=2,
        shortlisted=(),
        candidates=(),
        skipped={
            "AMZN": "no quote at 2020-06-01T00:00Z: no final bar yet",
            "SPY": "no quote at 2020-06-01T00:00Z: no final bar yet",
        },
    )
    assert market.snapshots == [2] and not market.bars_calls


async def test_unknown_symbols_propagate_with_the_valid_ones() -> None:
    market = Counting(ReplayVenue("cn", SimulatedClock(utc(2021, 7, 22, 2))))
    with pytest.raises(UnknownSymbolError, match=r"unknown symbol '600000\.SH' on venue 'replay-cn'; valid symbols: "):
        await screen(market, ["510300.SH", "600000.SH"], ScreenConfig(), now=utc(2021, 7, 22, 2))
    assert not market.bars_calls  # found by the snapshot, before any bars were fetched


async def test_empty_universe() -> None:
    result = await run("cn", [], utc(2021, 7, 22, 2))
    assert result == ScreenResult(universe=0, shortlisted=(), candidates=(), skipped={})


# --- ranking, cost and causality --------------------------------------------------------------


async def test_ranking_is_by_score_then_symbol_whatever_the_input_order() -> None:
    now = utc(2021, 7, 28)
    aliases = {f"{name}-{i}": name for name in CRYPTO for i in range(3)}  # equal data, equal scores
    symbols = list(aliases)
    results = []
    for seed in range(3):
        random.Random(seed).shuffle(symbols)
        market = Aliased(ReplayVenue("crypto", SimulatedClock(now)), aliases)
        results.append(await screen(market, symbols, ScreenConfig(top_n=4), now=now))
    first = results[0]
    assert [(c.symbol, c.score) for c in first.candidates] == [
        ("BTC/USD-0", 0.9),
        ("BTC/USD-1", 0.9),
        ("BTC/USD-2", 0.9),
        ("ETH/USDT-0", 0.85),
    ]
    assert first.skipped == {
        "ETH/USDT-1": "score 0.85 ranks 5th, beyond top_n 4",
        "ETH/USDT-2": "score 0.85 ranks 6th, beyond top_n 4",
    }
    assert all(r.candidates == first.candidates for r in results[1:])
    assert all(r.skipped == first.skipped for r in results[1:])


async def test_min_score_and_min_change_pct() -> None:
    now = utc(2021, 7, 28)
    high = await run("crypto", CRYPTO, now, min_score=0.88)
    assert [c.symbol for c in high.candidates] == ["BTC/USD"]
    assert high.skipped["ETH/USDT"] == "score 0.85 below min_score 0.88; missed: ADX(14) 16.9 <= 20, no clear trend"
    gainers = await run("crypto", CRYPTO, now, min_change_pct=50)
    assert gainers.shortlisted == () and gainers.candidates == ()
    assert gainers.skipped["BTC/USD"].endswith("below min_change_pct +50.00%")
    assert gainers.skipped["BTC/USD"].startswith("change +")


async def test_the_shortlist_bounds_the_bars_calls() -> None:
    now = utc(2021, 8, 12, 20)
    universe = build_universe(200, SimulatedClock(now))
    symbols = [i.symbol for i in await universe.instruments()]
    market = Counting(universe)
    config = ScreenConfig(shortlist=12, top_n=3)
    result = await screen(market, symbols, config, now=now)
    assert_accounts_for_everyone(result, symbols)
    assert market.snapshots == [200]  # one batched call for the whole universe
    assert len(result.shortlisted) == 12
    fetched = {symbol for symbol, _ in market.bars_calls}
    assert fetched <= set(result.shortlisted)
    assert set(market.instrument_calls) == set(result.shortlisted)
    assert sum(market.bars_calls.values()) <= 12 * (1 + len(config.confirm))
    assert max(market.bars_calls.values()) == 1  # each (symbol, timeframe) once
    assert 1 <= len(result.candidates) <= 3
    not_shortlisted = [s for s in symbols if s not in result.shortlisted]
    assert all(result.skipped[s].startswith("not shortlisted: change ") for s in not_shortlisted)
    assert any("ranks 13th of 200 (shortlist 12)" in result.skipped[s] for s in not_shortlisted)
    # The shortlist is the strongest movers of the snapshot.
    quotes = await universe.snapshot(symbols)
    top = sorted(symbols, key=lambda s: (-(quotes[s].change_pct or -math.inf), s))[:12]
    assert list(result.shortlisted) == top


async def test_nothing_after_now_is_used_even_when_the_venue_clock_is_ahead() -> None:
    now = utc(2021, 7, 22, 2)
    at_now = await run("cn", ["510300.SH"], now)
    ahead = ReplayVenue("cn", SimulatedClock(utc(2021, 7, 22, 2, 7)))  # a 5m bar into the next 15m bar
    later = await screen(ahead, ["510300.SH"], ScreenConfig(), now=now)
    assert later.candidates == at_now.candidates
    assert later.candidates[0].bar_close == now


async def test_screen_is_deterministic() -> None:
    now = utc(2021, 1, 15, 8)
    a, b = await run("cn", CN, now), await run("cn", list(reversed(CN)), now)
    assert a.candidates == b.candidates
    assert a.skipped == b.skipped
    assert isinstance(ReplayVenue("cn", SimulatedClock(now)), MarketData)


async def test_a_confirm_timeframe_the_venue_cannot_serve_is_dropped_with_its_message() -> None:
    class No4h(Counting):
        async def bars(self, symbol: str, timeframe: str, **kwargs: Any) -> pd.DataFrame:
            if timeframe == "4h":
                raise UnknownTimeframeError("4h", ["1h", "1d"], reason="this venue has no 4h candles")
            return await super().bars(symbol, timeframe, **kwargs)

    now = utc(2021, 7, 22, 2)
    result = await screen(No4h(ReplayVenue("cn", SimulatedClock(now))), ["510300.SH"], ScreenConfig(), now=now)
    (c,) = result.candidates
    assert c.reasons[-1] == "4h confirmation dropped: this venue has no 4h candles; valid timeframes: 1h, 1d"
    assert c.score == pytest.approx(1 - 0.25 / 3, abs=1e-4)


# --- batches: the default loop for venues without multi-symbol bars ---------------------------


async def test_bars_many_loops_over_bars_for_a_venue_without_a_batch_method() -> None:
    now = utc(2021, 7, 28)
    market = Counting(ReplayVenue("crypto", SimulatedClock(now)))
    assert not isinstance(market, BatchMarketData)
    batch = await bars_many(market, ["BTC/USD", "NOPE", "BTC/USD", "ETH/USDT"], "1h", end=now, limit=50)
    assert list(batch.bars) == ["BTC/USD", "ETH/USDT"] and list(batch.errors) == ["NOPE"]
    assert isinstance(batch.errors["NOPE"], UnknownSymbolError)
    assert market.bars_calls == Counter({("BTC/USD", "1h"): 1, ("NOPE", "1h"): 1, ("ETH/USDT", "1h"): 1})
    assert batch.bars["ETH/USDT"].equals(await market.inner.bars("ETH/USDT", "1h", end=now, limit=50))

    class Broken(Counting):
        async def bars(self, symbol: str, timeframe: str, **kwargs: Any) -> pd.DataFrame:
            raise RuntimeError("a bug, not a symbol's failure")

    with pytest.raises(RuntimeError, match="a bug"):
        await bars_many(Broken(market.inner), ["BTC/USD", "ETH/USDT"], "1h", end=now, limit=50)


async def test_one_failing_symbol_never_stops_the_scan() -> None:
    class Flaky(Counting):
        async def bars(self, symbol: str, timeframe: str, **kwargs: Any) -> pd.DataFrame:
            if symbol == "ETH/USDT":
                raise VenueUnavailable("replay-crypto", f"{timeframe} bars of {symbol}", "HTTP 503, three times")
            return await super().bars(symbol, timeframe, **kwargs)

    now = utc(2021, 7, 28)
    healthy = await run("crypto", CRYPTO, now)
    result = await screen(Flaky(ReplayVenue("crypto", SimulatedClock(now))), CRYPTO, ScreenConfig(), now=now)
    assert result.skipped == {
        "ETH/USDT": "no 1h bars: replay-crypto did not answer 1h bars of ETH/USDT: HTTP 503, three times"
    }
    assert result.candidates == tuple(c for c in healthy.candidates if c.symbol != "ETH/USDT")
