"""tools.indicators: names and values against TA-Lib and pandas-ta-classic, spec errors, causal MTF."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.indicators import (
    VALID_FORMS,
    IndicatorSpecError,
    align_to,
    compute,
    compute_mtf,
    parse_spec,
)
from venues.timeframes import OHLCV, resample, with_close_time

with warnings.catch_warnings():
    # pandas-ta-classic 0.8.32 builds its default Study objects at import with Timestamp.dayofyear,
    # deprecated in pandas 3: upstream noise, not ours.
    warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
    import pandas_ta_classic  # noqa: F401  (registers the DataFrame.ta accessor)

FIXTURES = Path(__file__).parent / "fixtures" / "indicators"
SPECS = ["rsi:14", "ema:20", "sma:50", "macd:12,26,9", "atr:14", "bbands:20,2", "adx:14", "obv"]
COLUMNS = [
    "RSI_14",
    "EMA_20",
    "SMA_50",
    "MACD_12_26_9",
    "MACDh_12_26_9",
    "MACDs_12_26_9",
    "ATRr_14",
    "BBL_20_2.0",
    "BBM_20_2.0",
    "BBU_20_2.0",
    "BBB_20_2.0",
    "BBP_20_2.0",
    "ADX_14",
    "DMP_14",
    "DMN_14",
    "OBV",
]
MTF_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def reference() -> pd.DataFrame:
    """The TA-Lib 0.8.2 reference table over SPY daily bars 1999-2020 (see fixtures/indicators/PROVENANCE.md)."""
    table = pd.read_csv(FIXTURES / "talib_reference_SPY_1d.csv")
    table.index = pd.DatetimeIndex(pd.to_datetime(table.pop("date"), utc=True), name="ts")
    return table


@functools.cache
def spy_bars() -> pd.DataFrame:
    return with_close_time(reference()[OHLCV].astype("float64"), "1d")


@functools.cache
def btc_bars() -> pd.DataFrame:
    """BTC/USD 1h bars, Jan-Mar 2021, with a real 3-hour gap before 2021-01-11T09:00Z."""
    frame = pd.read_csv(FIXTURES / "alpaca_BTC_USD-1h_2021-01-01_2021-03-04.csv")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"), utc=True), name="ts")
    return with_close_time(frame.astype("float64"), "1h")


def _utc_ns(times: pd.Series | pd.Index) -> np.ndarray:
    """Close times as naive UTC datetime64[ns], so numpy compares them (tz-aware ones become objects)."""
    if isinstance(times, pd.Series):
        times = pd.DatetimeIndex(times)
    return times.tz_convert("UTC").tz_localize(None).as_unit("ns").to_numpy()


@functools.cache
def spy_indicators() -> pd.DataFrame:
    return compute(spy_bars(), SPECS)


# --- names and values ------------------------------------------------------------------------------


def test_columns_are_named_like_pandas_ta_classic() -> None:
    result = spy_indicators()
    assert list(result.columns) == COLUMNS
    assert result.index.equals(spy_bars().index)
    assert (result.dtypes == "float64").all()


# The reference file's column -> ours. STOCH is in the file but not among our indicators.
REFERENCE_COLUMNS = {
    "SMA_20": "SMA_20",
    "EMA_20": "EMA_20",
    "RSI_14": "RSI_14",
    "MACD_12_26_9": "MACD_12_26_9",
    "MACDsignal_12_26_9": "MACDs_12_26_9",
    "MACDhist_12_26_9": "MACDh_12_26_9",
    "ATR_14": "ATRr_14",
    "BBU_20_2": "BBU_20_2.0",
    "BBM_20_2": "BBM_20_2.0",
    "BBL_20_2": "BBL_20_2.0",
    "ADX_14": "ADX_14",
    "OBV": "OBV",
}


@pytest.mark.parametrize(("ref_col", "our_col"), REFERENCE_COLUMNS.items())
def test_matches_talib_reference_table_over_whole_series(ref_col: str, our_col: str) -> None:
    # Whole series, never a slice: TA-Lib seeds EMA/RSI/ATR/MACD/ADX at the first bar.
    ours = compute(spy_bars(), [*SPECS, "sma:20", "ema:20"])[our_col].to_numpy()
    expected = reference()[ref_col].to_numpy(dtype="float64")
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected), err_msg="lookback NaNs differ")
    # Relative, not absolute: the table is written with %.10g, i.e. 10 significant digits, so its
    # rounding error is at most 5e-10 of each value whatever its size. An absolute 1e-8 would fail on
    # exact results (a 300.0 price-level EMA is stored to 7 decimals, OBV ~1e10 to the unit) and say
    # nothing about MACD histograms near 1e-5, which %.10g also keeps to 10 digits.
    np.testing.assert_allclose(ours, expected, rtol=1e-8, atol=0, equal_nan=True)


def test_matches_talib_called_directly_bit_for_bit() -> None:
    bars = spy_bars()
    o = {c: bars[c].to_numpy() for c in OHLCV}
    h, lo, c, v = o["high"], o["low"], o["close"], o["volume"]
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, mid, lower = talib.BBANDS(c, 20, 2.0, 2.0, talib.MA_Type.SMA)
    expected = {
        "RSI_14": talib.RSI(c, 14),
        "EMA_20": talib.EMA(c, 20),
        "SMA_50": talib.SMA(c, 50),
        "MACD_12_26_9": macd,
        "MACDh_12_26_9": hist,
        "MACDs_12_26_9": signal,
        "ATRr_14": talib.ATR(h, lo, c, 14),
        "BBL_20_2.0": lower,
        "BBM_20_2.0": mid,
        "BBU_20_2.0": upper,
        "ADX_14": talib.ADX(h, lo, c, 14),
        "DMP_14": talib.PLUS_DI(h, lo, c, 14),
        "DMN_14": talib.MINUS_DI(h, lo, c, 14),
        "OBV": talib.OBV(c, v),
    }
    result = spy_indicators()
    for column, values in expected.items():
        np.testing.assert_array_equal(result[column].to_numpy(), values, err_msg=column)


def _pandas_ta(bars: pd.DataFrame, spec: str) -> pd.DataFrame:
    """pandas-ta-classic's own output for one spec, TA-Lib mode."""
    parsed = parse_spec(spec)
    ta = bars[OHLCV].ta
    p = parsed.params
    calls = {
        "rsi": lambda: ta.rsi(length=p[0], talib=True),
        "ema": lambda: ta.ema(length=p[0], talib=True),
        "sma": lambda: ta.sma(length=p[0], talib=True),
        "macd": lambda: ta.macd(fast=p[0], slow=p[1], signal=p[2], talib=True),
        "atr": lambda: ta.atr(length=p[0], talib=True),
        "bbands": lambda: ta.bbands(length=p[0], std=p[1], talib=True),
        "adx": lambda: ta.adx(length=p[0], talib=True),
        "obv": lambda: ta.obv(talib=True),
    }
    out = calls[parsed.name]()
    return out.to_frame() if isinstance(out, pd.Series) else out


@pytest.mark.parametrize(
    "specs",
    [
        SPECS,
        ["rsi:7", "ema:9", "sma:3", "macd:5,35,5", "atr:5", "bbands:10,1.5", "adx:10", "obv"],
        ["rsi", "macd", "bbands", "atr", "adx", "bbands:30,3", "bbands:20,2.25"],
    ],
    ids=["listed", "other-params", "defaults"],
)
def test_names_and_values_equal_pandas_ta_classic_talib_mode(specs: list[str]) -> None:
    bars = spy_bars()
    expected = pd.concat([_pandas_ta(bars, s) for s in specs], axis=1)
    result = compute(bars, specs)
    assert list(result.columns) == list(expected.columns)
    # Both call the same TA-Lib functions and derive BBB/BBP with the same float operations, so
    # the values are identical; rtol=1e-12 only leaves room for a harmless reordering upstream.
    pd.testing.assert_frame_equal(result, expected, check_exact=False, rtol=1e-12, atol=0, check_freq=False)


def test_defaults_are_the_conventional_parameters() -> None:
    bars = spy_bars()
    short = compute(bars, ["rsi", "macd", "bbands", "atr", "adx", "obv"])
    explicit = compute(bars, ["rsi:14", "macd:12,26,9", "bbands:20,2", "atr:14", "adx:14", "obv"])
    pd.testing.assert_frame_equal(short, explicit)
    assert parse_spec("rsi") == parse_spec("rsi:14") == parse_spec(" RSI : 14 ")
    assert str(parse_spec("bbands")) == "bbands:20,2.0"


def test_repeated_or_equivalent_specs_give_columns_once() -> None:
    result = compute(spy_bars(), ["rsi", "rsi:14", "bbands:20,2", "bbands:20,2.0", "ema:20", "ema:20"])
    assert list(result.columns) == [
        "RSI_14",
        "BBL_20_2.0",
        "BBM_20_2.0",
        "BBU_20_2.0",
        "BBB_20_2.0",
        "BBP_20_2.0",
        "EMA_20",
    ]


def test_spec_columns_are_known_without_computing() -> None:
    assert [c for s in SPECS for c in parse_spec(s).columns] == COLUMNS


@pytest.mark.parametrize("n", [0, 1, 5, 20, 33])
def test_too_few_bars_give_nan_where_talib_has_its_lookback(n: int) -> None:
    bars = spy_bars().iloc[:n]
    result = compute(bars, SPECS)
    assert list(result.columns) == COLUMNS
    assert len(result) == n
    full = spy_indicators().iloc[:n]
    # Causal and seeded at the first bar: a prefix gives the full-history values, NaNs included.
    pd.testing.assert_frame_equal(result, full)
    lookback = {"RSI_14": 14, "SMA_50": 49, "MACD_12_26_9": 33, "ATRr_14": 14, "BBL_20_2.0": 19, "ADX_14": 27}
    for column, bars_needed in lookback.items():
        assert result[column].isna().sum() == min(n, bars_needed), column
    assert result["OBV"].notna().all()


def test_accepts_int_volume_and_close_only_frames() -> None:
    bars = spy_bars()
    as_int = bars.assign(volume=bars["volume"].astype("int64"))
    pd.testing.assert_frame_equal(compute(as_int, ["obv"]), compute(bars, ["obv"]))
    close_only = bars[["close"]]
    pd.testing.assert_frame_equal(compute(close_only, ["rsi", "ema:20"]), compute(bars, ["rsi", "ema:20"]))


def test_does_not_modify_the_input() -> None:
    bars = spy_bars().iloc[:300].copy()
    before = bars.copy()
    compute(bars, SPECS)
    pd.testing.assert_frame_equal(bars, before)


def test_missing_columns_are_named() -> None:
    bars = spy_bars()[["close", "high"]]
    with pytest.raises(ValueError, match=r"'low', 'volume'.*'atr:14'.*'obv'") as info:
        compute(bars, ["rsi", "atr:14", "obv"])
    assert not isinstance(info.value, IndicatorSpecError)


def test_parsing_is_cached() -> None:
    parse_spec.cache_clear()
    parse_spec("rsi:14")
    parse_spec("rsi:14")
    info = parse_spec.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    assert parse_spec("rsi:14") is parse_spec("rsi:14")


# --- spec errors ------------------------------------------------------------------------------------


def test_unknown_indicator_message() -> None:
    with pytest.raises(IndicatorSpecError) as info:
        parse_spec("rsx:14")
    assert str(info.value) == (
        "unknown indicator 'rsx' in spec 'rsx:14'; valid: adx:N, atr:N, bbands:N,STD, ema:N, "
        "macd:FAST,SLOW,SIGNAL, obv, rsi:N, sma:N"
    )


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("rsx:14", "unknown indicator"),
        ("", "unknown indicator"),
        (":14", "unknown indicator"),
        ("rsi14", "unknown indicator"),
        ("rsi:14,2", "takes 1 parameter"),
        ("macd:12,26", "takes 3 parameters"),
        ("bbands:20", "takes 2 parameters"),
        ("obv:1", "takes no parameters"),
        ("sma", "needs its length"),
        ("ema", "needs its length"),
        ("rsi:", "must be an integer"),
        ("rsi:0", "must be an integer"),
        ("rsi:-3", "must be an integer"),
        ("rsi:1", "must be an integer in 2.."),
        ("rsi:14.5", "must be an integer"),
        ("rsi:14.0", "must be an integer"),
        ("rsi:abc", "must be an integer"),
        ("atr:0", "must be an integer"),
        ("adx:1", "must be an integer"),
        ("sma:100001", "must be an integer"),
        ("bbands:1,2", "must be an integer"),
        ("bbands:20,0", "must be a number > 0"),
        ("bbands:20,-1", "must be a number > 0"),
        ("bbands:20,nan", "must be a number > 0"),
        ("bbands:20,inf", "must be a number > 0"),
        ("macd:26,12,9", "FAST must be smaller than SLOW"),
        ("macd:12,12,9", "FAST must be smaller than SLOW"),
        ("macd:12,26,0", "must be an integer"),
    ],
)
def test_bad_spec_raises_with_valid_list(spec: str, problem: str) -> None:
    with pytest.raises(IndicatorSpecError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert problem in message
    assert f"in spec {spec!r}" in message
    assert message.endswith(f"; valid: {VALID_FORMS}")
    assert info.value.spec == spec


def test_compute_raises_spec_error_before_touching_bars() -> None:
    with pytest.raises(IndicatorSpecError, match="'bogus'"):
        compute(pd.DataFrame(), ["rsi", "bogus"])


# --- several timeframes -------------------------------------------------------------------------------

BTC_MTF = {"1h": ["rsi"], "4h": ["rsi", "macd", "bbands"], "1d": ["rsi:14", "adx", "atr", "obv"]}
SPY_MTF = {"1w": ["rsi", "macd", "sma:10"]}


def test_mtf_columns_are_suffixed_with_timeframe() -> None:
    result = compute_mtf(btc_bars(), "1h", {"1h": ["rsi"], "4h": ["rsi", "macd"]})
    assert list(result.columns) == ["RSI_14_1h", "RSI_14_4h", "MACD_12_26_9_4h", "MACDh_12_26_9_4h", "MACDs_12_26_9_4h"]
    assert result.index.equals(btc_bars().index)
    # The base timeframe itself is computed on the bars as they are.
    np.testing.assert_array_equal(result["RSI_14_1h"].to_numpy(), compute(btc_bars(), ["rsi"])["RSI_14"].to_numpy())


def test_mtf_adds_close_time_when_bars_lack_it() -> None:
    bars = spy_bars().drop(columns="close_time")
    pd.testing.assert_frame_equal(compute_mtf(bars, "1d", SPY_MTF), compute_mtf(spy_bars(), "1d", SPY_MTF))


@pytest.mark.parametrize(("name", "base", "mapping"), [("btc", "1h", BTC_MTF), ("spy", "1d", SPY_MTF)])
def test_mtf_equals_an_independent_alignment(name: str, base: str, mapping: dict[str, list[str]]) -> None:
    bars = btc_bars() if name == "btc" else spy_bars()
    result = compute_mtf(bars, base, mapping)
    base_close = _utc_ns(bars["close_time"])
    for tf, specs in mapping.items():
        higher = resample(bars, tf)
        values = compute(higher, specs)
        # Index of the latest higher bar with close_time <= the base bar's close_time, or -1.
        pos = np.searchsorted(_utc_ns(higher["close_time"]), base_close, side="right") - 1
        for column in values.columns:
            expected = np.where(pos >= 0, values[column].to_numpy()[np.maximum(pos, 0)], np.nan)
            np.testing.assert_array_equal(result[f"{column}_{tf}"].to_numpy(), expected, err_msg=f"{column}_{tf}")
    # Sanity: the higher values really do show up (the alignment is not all NaN).
    assert result.iloc[-1].notna().all()


@functools.cache
def _full_mtf(name: str) -> pd.DataFrame:
    if name == "btc":
        return compute_mtf(btc_bars(), "1h", BTC_MTF)
    return compute_mtf(spy_bars(), "1d", SPY_MTF)


@MTF_SETTINGS
@given(name=st.sampled_from(["btc", "spy"]), fraction=st.floats(min_value=0.0, max_value=1.0))
def test_mtf_on_truncated_history_equals_full_history(name: str, fraction: float) -> None:
    """No look-ahead: what a row shows cannot change when later bars are added."""
    bars, base, mapping = (btc_bars(), "1h", BTC_MTF) if name == "btc" else (spy_bars(), "1d", SPY_MTF)
    cut = 1 + int(fraction * (len(bars) - 1))
    truncated = compute_mtf(bars.iloc[:cut], base, mapping)
    pd.testing.assert_frame_equal(truncated, _full_mtf(name).iloc[:cut], check_exact=True)


@MTF_SETTINGS
@given(
    gaps=st.lists(st.tuples(st.integers(0, 1499), st.integers(1, 60)), max_size=6),
    tf=st.sampled_from(["4h", "1d", "1w"]),
)
def test_higher_bar_never_seen_before_it_closes(gaps: list[tuple[int, int]], tf: str) -> None:
    bars = btc_bars()
    keep = np.ones(len(bars), dtype=bool)
    for start, length in gaps:  # holes like exchange outages, on top of the real one in the data
        keep[start : start + length] = False
    bars = bars[keep]
    if bars.empty:
        return
    higher = resample(bars, tf)
    carried = pd.DataFrame({"seen_close": higher["close_time"], "close_time": higher["close_time"]})
    seen = align_to(bars, carried)["seen_close"]
    base_close = bars["close_time"]
    shown = seen.notna()
    assert (seen[shown] <= base_close[shown]).all(), "a higher bar appeared before it closed"
    # ...and it is the latest one that had closed: no other higher bar closed in between.
    higher_close = _utc_ns(higher["close_time"])
    pos = np.searchsorted(higher_close, _utc_ns(base_close), side="right") - 1
    assert (shown.to_numpy() == (pos >= 0)).all()
    np.testing.assert_array_equal(_utc_ns(seen[shown]), higher_close[pos[pos >= 0]])


@settings(max_examples=100, deadline=None)
@given(
    base_steps=st.lists(st.integers(0, 7), min_size=1, max_size=40),
    higher_steps=st.lists(st.integers(0, 20), min_size=1, max_size=15),
)
def test_align_to_against_brute_force(base_steps: list[int], higher_steps: list[int]) -> None:
    """align_to alone, on arbitrary sorted close times with ties and equal stamps across frames."""
    origin = pd.Timestamp("2021-01-01", tz="UTC")
    base_close = origin + pd.to_timedelta(np.cumsum(base_steps), unit="h")
    higher_close = origin + pd.to_timedelta(np.cumsum(higher_steps), unit="h")
    base = pd.DataFrame({"close_time": base_close}, index=pd.RangeIndex(len(base_close)) + 100)
    higher = pd.DataFrame({"value": np.arange(len(higher_close), dtype="float64"), "close_time": higher_close})
    aligned = align_to(base, higher, suffix="_x")
    assert list(aligned.columns) == ["value_x"]
    assert aligned.index.equals(base.index)
    for i, closed_at in enumerate(base_close):
        eligible = [j for j, c in enumerate(higher_close) if c <= closed_at]
        expected = float(eligible[-1]) if eligible else np.nan  # the last of equal stamps wins
        np.testing.assert_equal(aligned["value_x"].iloc[i], expected)


def test_now_hides_a_higher_bar_completed_only_by_a_forming_base_bar() -> None:
    bars = btc_bars()
    # The 1h bar opening 23:00 closes at 00:00, together with the 4h bar 20:00-00:00. Cut there and
    # put `now` ten minutes before that close: the last base bar is still forming.
    end = bars.index.get_loc(pd.Timestamp("2021-01-03T23:00Z"))
    recent = bars.iloc[: end + 1]
    now = recent["close_time"].iloc[-1] - pd.Timedelta(minutes=10)
    mapping = {"4h": ["rsi", "macd"]}
    without_now = compute_mtf(recent, "1h", mapping)
    with_now = compute_mtf(recent, "1h", mapping, now=now)
    # Without `now` the forming bar would carry the 4h bar it completes; with it, the previous one.
    assert not without_now.iloc[-1].equals(without_now.iloc[-2])
    pd.testing.assert_series_equal(with_now.iloc[-1], with_now.iloc[-2], check_names=False)
    pd.testing.assert_frame_equal(with_now.iloc[:-1], without_now.iloc[:-1])


def test_mtf_rejects_lower_and_unknown_timeframes() -> None:
    with pytest.raises(ValueError, match="shorter than the base timeframe '1h'"):
        compute_mtf(btc_bars(), "1h", {"15m": ["rsi"]})
    with pytest.raises(ValueError, match="unknown timeframe '2h'"):
        compute_mtf(btc_bars(), "1h", {"2h": ["rsi"]})
    with pytest.raises(IndicatorSpecError):
        compute_mtf(btc_bars(), "1h", {"4h": ["rsi:0"]})


def test_mtf_with_no_timeframes_is_an_empty_frame_on_the_base_index() -> None:
    result = compute_mtf(btc_bars(), "1h", {})
    assert result.columns.empty
    assert result.index.equals(btc_bars().index)


def test_align_to_checks_its_inputs() -> None:
    bars = btc_bars().iloc[:50]
    higher = resample(bars, "4h")
    with pytest.raises(ValueError, match="base frame needs a close_time column"):
        align_to(bars.drop(columns="close_time"), higher)
    with pytest.raises(ValueError, match="higher close_time must be sorted"):
        align_to(bars, higher.iloc[::-1])
    naive = higher.assign(close_time=higher["close_time"].dt.tz_localize(None))
    with pytest.raises(ValueError, match="tz-aware"):
        align_to(bars, naive)
