"""Model features are causal: poisoning the future changes nothing at or before the cut."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from tools.features import BASE_FEATURES, build_features, default_higher, feature_names
from tools.indicators import compute
from venues.clock import SimulatedClock
from venues.replay.venue import ReplayVenue
from venues.timeframes import parse_timeframe


def replay_bars(market: str, symbol: str) -> pd.DataFrame:
    venue = ReplayVenue(market, SimulatedClock(datetime(2021, 1, 1, tzinfo=UTC)))
    series = venue.series(symbol)
    return series.frame(series.timeframe).bars


def poisoned(bars: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    """Every bar after position ``t`` replaced by a different, still well-formed bar."""
    rng = np.random.default_rng(seed)
    out = bars.copy()
    after = len(bars) - t - 1
    scale = np.exp(rng.normal(0, 0.2, after))
    for col in ("open", "high", "low", "close"):
        out.iloc[t + 1 :, out.columns.get_loc(col)] = bars[col].to_numpy()[t + 1 :] * scale
    out.iloc[t + 1 :, out.columns.get_loc("high")] = (
        out[["open", "high", "low", "close"]].iloc[t + 1 :].max(axis=1) * 1.01
    )
    out.iloc[t + 1 :, out.columns.get_loc("low")] = (
        out[["open", "high", "low", "close"]].iloc[t + 1 :].min(axis=1) * 0.99
    )
    out.iloc[t + 1 :, out.columns.get_loc("volume")] = rng.uniform(0, 1e6, after)
    return out


@pytest.mark.parametrize(
    ("market", "symbol", "timeframe", "calendar"),
    [("crypto", "BTC/USD", "1h", "24/7"), ("cn", "600519.SH", "1d", "XSHG"), ("us", "AMZN", "1h", "XNYS")],
)
def test_poisoning_the_future_changes_no_feature_at_or_before_t(
    market: str, symbol: str, timeframe: str, calendar: str
) -> None:
    bars = replay_bars(market, symbol)
    clean = build_features(bars, timeframe, calendar=calendar)
    # Cuts inside a higher bar, at its last base bar, and early in the series.
    for t in (len(bars) // 2, len(bars) // 2 + 1, len(bars) // 2 + 3, 300):
        dirty = build_features(poisoned(bars, t, seed=t), timeframe, calendar=calendar)
        pd.testing.assert_frame_equal(clean.iloc[: t + 1], dirty.iloc[: t + 1])
        # The poison is real: features after t do change.
        assert not clean.iloc[t + 1 :].equals(dirty.iloc[t + 1 :])


def test_a_higher_bar_is_seen_only_once_it_has_closed() -> None:
    bars = replay_bars("crypto", "BTC/USD").iloc[:400]
    feats = build_features(bars, "1h", higher=["4h"])
    close = bars["close"]
    # The 4h bar 08:00-12:00 of 2021-01-05 is final at 12:00: the base bar 11:00-12:00 sees it,
    # the base bar 08:00-09:00 (inside it) still sees the 04:00-08:00 bar.
    day = "2021-01-05"
    ret = np.log(close[f"{day} 11:00"] / close[f"{day} 07:00"])
    assert feats.loc[f"{day} 11:00", "htf_ret_1_4h"] == pytest.approx(ret)
    before = np.log(close[f"{day} 07:00"] / close[f"{day} 03:00"])
    for hour in ("08:00", "09:00", "10:00"):
        assert feats.loc[f"{day} {hour}", "htf_ret_1_4h"] == pytest.approx(before)


def test_features_reuse_the_screens_indicators() -> None:
    bars = replay_bars("crypto", "ETH/USDT").iloc[:500]
    feats = build_features(bars, "1h")
    ind = compute(bars, ["rsi:14", "adx:14", "atr:14"])
    pd.testing.assert_series_equal(feats["rsi_14"], ind["RSI_14"], check_names=False)
    pd.testing.assert_series_equal(feats["adx_14"], ind["ADX_14"], check_names=False)
    pd.testing.assert_series_equal(feats["atr_pct"], ind["ATRr_14"] / bars["close"], check_names=False)


def test_names_and_higher_timeframes() -> None:
    assert default_higher("1h") == ("4h", "1d")
    assert default_higher("1d") == ("1w",)
    assert feature_names("1h")[: len(BASE_FEATURES)] == list(BASE_FEATURES)
    assert "htf_trend_1d" in feature_names("1h")
    bars = replay_bars("crypto", "BTC/USD").iloc[:200]
    assert list(build_features(bars, "1h").columns) == feature_names("1h")
    with pytest.raises(ValueError, match="must be longer than the base timeframe '4h'"):
        build_features(bars, parse_timeframe("4h"), higher=["1h"])
