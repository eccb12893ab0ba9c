"""Model features from bars, computed causally over the base timeframe and coarser ones.

Every feature at bar t uses bar t and earlier bars only (``tests/test_features.py`` changes every
bar after t and checks that nothing at or before t moves). The indicators are the screen's own
(``tools.indicators.compute``, TA-Lib's values); what is added here is arithmetic on them that makes
them comparable across symbols and price levels: distances in ATRs, ATR as a share of the price.

Base timeframe (names as in ``BASE_FEATURES``)
    ``ret_1``, ``ret_4``, ``ret_24``: log return of the close over 1, 4 and 24 bars;
    ``vol_24``: standard deviation of 1-bar log returns over 24 bars; ``vol_ratio``: ``vol_24`` over
    the same over 96 bars (volatility expanding > 1); ``rsi_14``; ``macd_atr``, ``macd_hist_atr``:
    MACD(12,26,9) line and histogram in ATR(14)s; ``atr_pct``: ATR(14) / close;
    ``atr_ratio``: ATR(14) / ATR(50); ``adx_14`` and ``di_diff`` (+DI minus -DI);
    ``close_ema20_atr``: (close - EMA20) / ATR; ``ema20_ema50_atr``: (EMA20 - EMA50) / ATR;
    ``bb_pct_b``: Bollinger %B (20, 2); ``volume_z``: z-score of log(1 + volume) against the
    previous 96 bars (the bar itself included).

Higher timeframes (suffix ``_<tf>``, e.g. ``htf_trend_4h``)
    ``htf_trend``: (close - EMA20) / ATR(14) of the higher bar; ``htf_ema_slope``: (EMA20 - EMA50)
    / ATR(14); ``htf_rsi``: RSI(14); ``htf_ret_1``: log return of the last final higher bar. The
    higher bars are ``venues.timeframes.resample`` of the base bars (on the exchange's sessions
    with a ``calendar``), computed there and carried onto the base bars with
    ``tools.indicators.align_to``: a base bar sees a higher bar only once that bar's close time is
    at or before its own. A higher bar still forming is never seen. Where no final higher bar has
    enough history yet the value is NaN (gradient-boosted trees take NaN as "unknown").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tools.indicators import align_to, compute
from venues.timeframes import TIMEFRAMES, Timeframe, parse_timeframe, resample, with_close_time

__all__ = [
    "BASE_FEATURES",
    "FEATURE_VERSION",
    "HIGHER_FEATURES",
    "build_features",
    "default_higher",
    "feature_names",
]

FEATURE_VERSION = 1  # bump when a feature's definition changes: a model is only valid on its version

BASE_FEATURES = (
    "ret_1",
    "ret_4",
    "ret_24",
    "vol_24",
    "vol_ratio",
    "rsi_14",
    "macd_atr",
    "macd_hist_atr",
    "atr_pct",
    "atr_ratio",
    "adx_14",
    "di_diff",
    "close_ema20_atr",
    "ema20_ema50_atr",
    "bb_pct_b",
    "volume_z",
)
HIGHER_FEATURES = ("htf_trend", "htf_ema_slope", "htf_rsi", "htf_ret_1")

_BASE_SPECS = ("ema:20", "ema:50", "rsi:14", "macd:12,26,9", "adx:14", "atr:14", "atr:50", "bbands:20,2")
_HIGHER_SPECS = ("ema:20", "ema:50", "rsi:14", "atr:14")
_VOLUME_WINDOW = 96


def default_higher(timeframe: str | Timeframe) -> tuple[str, ...]:
    """The two standard timeframes at least four times the base one (1h -> 4h, 1d; 1d -> 1w)."""
    base = parse_timeframe(timeframe)
    return tuple(tf.name for tf in TIMEFRAMES.values() if tf.delta >= 4 * base.delta)[:2]


def feature_names(timeframe: str | Timeframe, higher: Sequence[str] | None = None) -> list[str]:
    """The columns ``build_features`` returns, in order."""
    tfs = default_higher(timeframe) if higher is None else tuple(parse_timeframe(t).name for t in higher)
    return [*BASE_FEATURES, *(f"{name}_{tf}" for tf in tfs for name in HIGHER_FEATURES)]


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    # A zero ATR (a flat series) has no scale: NaN rather than an infinite distance.
    return numerator / denominator.where(denominator > 0)


def _base(bars: pd.DataFrame) -> pd.DataFrame:
    ind = compute(bars, _BASE_SPECS)
    close = bars["close"].astype("float64")
    log_close = pd.Series(np.log(close.where(close > 0)), index=bars.index)
    ret = log_close.diff()
    atr = ind["ATRr_14"]
    log_volume = pd.Series(np.log1p(bars["volume"].astype("float64").clip(lower=0)), index=bars.index)
    vol_mean = log_volume.rolling(_VOLUME_WINDOW, min_periods=_VOLUME_WINDOW // 2).mean()
    vol_std = log_volume.rolling(_VOLUME_WINDOW, min_periods=_VOLUME_WINDOW // 2).std()
    vol_24 = ret.rolling(24).std()
    out = pd.DataFrame(
        {
            "ret_1": ret,
            "ret_4": log_close.diff(4),
            "ret_24": log_close.diff(24),
            "vol_24": vol_24,
            "vol_ratio": _ratio(vol_24, ret.rolling(96).std()),
            "rsi_14": ind["RSI_14"],
            "macd_atr": _ratio(ind["MACD_12_26_9"], atr),
            "macd_hist_atr": _ratio(ind["MACDh_12_26_9"], atr),
            "atr_pct": _ratio(atr, close),
            "atr_ratio": _ratio(atr, ind["ATRr_50"]),
            "adx_14": ind["ADX_14"],
            "di_diff": ind["DMP_14"] - ind["DMN_14"],
            "close_ema20_atr": _ratio(close - ind["EMA_20"], atr),
            "ema20_ema50_atr": _ratio(ind["EMA_20"] - ind["EMA_50"], atr),
            "bb_pct_b": ind["BBP_20_2.0"],
            "volume_z": _ratio(log_volume - vol_mean, vol_std),
        },
        index=bars.index,
    )
    return out[list(BASE_FEATURES)]


def _higher(bars: pd.DataFrame, tf: Timeframe, calendar: str | None) -> pd.DataFrame:
    higher = resample(bars, tf, calendar=calendar)
    ind = compute(higher, _HIGHER_SPECS)
    close = higher["close"].astype("float64")
    atr = ind["ATRr_14"]
    values = pd.DataFrame(
        {
            "htf_trend": _ratio(close - ind["EMA_20"], atr),
            "htf_ema_slope": _ratio(ind["EMA_20"] - ind["EMA_50"], atr),
            "htf_rsi": ind["RSI_14"],
            "htf_ret_1": np.log(close.where(close > 0)).diff(),
            "close_time": higher["close_time"],
        },
        index=higher.index,
    )
    return align_to(bars, values, suffix=f"_{tf.name}")


def build_features(
    bars: pd.DataFrame,
    timeframe: str | Timeframe,
    *,
    higher: Sequence[str] | None = None,
    calendar: str | None = None,
) -> pd.DataFrame:
    """Features of every bar of ``bars`` (same index; columns ``feature_names(timeframe, higher)``).

    ``bars`` is a bar frame of ``timeframe`` (``open, high, low, close, volume``, ``close_time``
    added as open + timeframe when absent), final bars only, ascending. ``higher`` defaults to
    ``default_higher(timeframe)``; each must be longer than ``timeframe`` (ValueError otherwise).
    ``calendar`` is the exchange-calendars name for session-aware higher bars (None or "24/7":
    the UTC grid). Rows during warm-up hold NaN; floats only.
    """
    base_tf = parse_timeframe(timeframe)
    bars = with_close_time(bars, base_tf)
    tfs = default_higher(base_tf) if higher is None else tuple(parse_timeframe(t).name for t in higher)
    parts = [_base(bars)]
    for name in tfs:
        tf = parse_timeframe(name)
        if tf.delta <= base_tf.delta:
            raise ValueError(
                f"higher timeframe {tf.name!r} must be longer than the base timeframe {base_tf.name!r}; "
                f"valid: {', '.join(t.name for t in TIMEFRAMES.values() if t.delta > base_tf.delta) or 'none'}"
            )
        parts.append(_higher(bars, tf, None if calendar == "24/7" else calendar))
    out = pd.concat(parts, axis=1).astype("float64")
    return out[feature_names(base_tf, tfs)]
