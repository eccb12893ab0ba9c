"""Technical indicators over bar frames, on one timeframe or several.

Specs
    An indicator is asked for by a short spec string: ``name`` or ``name:p1,p2,...``. Valid forms
    (see ``VALID_FORMS``): ``adx:N``, ``atr:N``, ``bbands:N,STD``, ``ema:N``,
    ``macd:FAST,SLOW,SIGNAL``, ``obv``, ``rsi:N``, ``sma:N``. Parameters may be left out where there
    is a conventional default: ``rsi``, ``atr`` and ``adx`` = 14, ``macd`` = 12,26,9, ``bbands`` =
    20,2; ``sma`` and ``ema`` have none and need their length. Periods are integers down to TA-Lib's
    minimum (2 for rsi, adx, bbands and the MACD EMAs, else 1); MACD needs FAST < SLOW (TA-Lib would
    silently swap them). A bad spec raises ``IndicatorSpecError`` (a ``ValueError``) whose message
    names the spec and lists the valid forms. Parsing is cached per distinct string, because a scan
    calls ``compute`` with the same few specs for thousands of symbols.

Column names
    Columns are named exactly as pandas-ta-classic names them, so code and prompts written against
    that library read our frames unchanged: ``RSI_14``, ``EMA_20``, ``SMA_50``; ``MACD_12_26_9``,
    ``MACDh_12_26_9`` (histogram), ``MACDs_12_26_9`` (signal); ``ATRr_14`` (``r``: Wilder's RMA);
    ``BBL/BBM/BBU/BBB/BBP_20_2.0`` (lower, middle, upper, bandwidth in %, %B; the std is written
    as a Python float); ``ADX_14``, ``DMP_14`` (+DI), ``DMN_14`` (-DI); ``OBV``. ``parse_spec(s).columns``
    gives them without computing anything.

Values
    Values are TA-Lib's: ``compute`` calls ``talib`` on the raw arrays, which is what
    pandas-ta-classic does with ``talib=True``, minus its per-call pandas overhead (its ``df.ta``
    accessor takes about 1.9 ms per symbol for 500 bars and all eight indicators, against a 1 ms
    target; see benchmarks/indicators.py). pandas-ta-classic's own code (``talib=False``) is not an
    alternative: its MACD is seeded differently and, on SPY daily bars, starts eight bars earlier
    and differs from TA-Lib's by up to 0.07 over the first hundred bars. Bandwidth and %B are
    derived the way pandas-ta-classic derives them, including its replacement of an exactly zero
    range by machine epsilon. Where TA-Lib has its lookback the value is NaN; too few bars give
    all-NaN columns rather than an error (pandas-ta-classic would return ``None`` instead). TA-Lib
    seeds EMA, RSI, ATR, MACD and ADX from the first bar, so their values depend on where the
    history starts: compare implementations on the same history, not on slices of it.

Several timeframes, causally
    ``compute_mtf`` resamples base bars to higher timeframes (``venues.timeframes.resample``),
    computes specs there and aligns the results back onto the base index, suffixing each column with
    its timeframe (``RSI_14_4h``). Alignment (``align_to``) is by close time, never by open time:
    a base bar sees a higher-timeframe bar only once that bar is final, i.e. when
    ``higher.close_time <= base.close_time``, and then it sees the latest such bar. Aligning by open
    time would show a 4h bar's close on the first hour of those four: look-ahead that makes any
    backtest lie. The higher bar still being formed at the end of the history closes after every
    base bar there is, so it is never shown. Because every TA-Lib indicator at a bar depends only on
    that bar and earlier ones, the result on a truncated history equals the result on the full
    history for the rows kept. Live, the last base bar may itself be unfinished: ``now`` then keeps
    the higher bar it would complete out of view.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from sys import float_info

import numpy as np
import numpy.typing as npt
import pandas as pd
import talib

from venues.timeframes import OHLCV, Timeframe, parse_timeframe, resample, with_close_time

__all__ = [
    "INDICATORS",
    "VALID_FORMS",
    "IndicatorSpec",
    "IndicatorSpecError",
    "align_to",
    "compute",
    "compute_mtf",
    "parse_spec",
]

FloatArray = npt.NDArray[np.float64]
ParamValue = int | float

# TA-Lib rejects periods above this with TA_BAD_PARAM; we reject them earlier with a readable message.
_MAX_PERIOD = 100_000


@dataclass(frozen=True, slots=True)
class _Param:
    label: str  # as shown in the valid forms: N, STD, FAST, ...
    default: ParamValue | None  # None: no conventional value, so the spec must give one
    minimum: int = 1  # smallest period TA-Lib accepts; unused for float parameters
    is_float: bool = False


@dataclass(frozen=True, slots=True)
class _Indicator:
    name: str
    params: tuple[_Param, ...]
    inputs: tuple[str, ...]
    columns: Callable[[tuple[ParamValue, ...]], tuple[str, ...]]
    run: Callable[[Mapping[str, FloatArray], tuple[ParamValue, ...]], tuple[FloatArray, ...]]

    @property
    def form(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}:{','.join(p.label for p in self.params)}"


def _bbands(a: Mapping[str, FloatArray], p: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    close = a["close"]
    upper, mid, lower = talib.BBANDS(close, int(p[0]), float(p[1]), float(p[1]), talib.MA_Type.SMA)
    # pandas-ta-classic's non_zero_range: an exactly zero difference becomes epsilon (flat markets
    # would otherwise divide by zero). NaN != 0 holds, so the lookback NaNs pass through untouched.
    eps = float_info.epsilon
    width = upper - lower
    width = np.where(width != 0, width, eps)
    above = close - lower
    above = np.where(above != 0, above, eps)
    bandwidth = 100 * width / mid
    percent = above / width
    return lower, mid, upper, bandwidth, percent


def _macd(a: Mapping[str, FloatArray], p: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    macd, signal, hist = talib.MACD(a["close"], int(p[0]), int(p[1]), int(p[2]))
    return macd, hist, signal  # pandas-ta-classic's column order: line, histogram, signal


def _adx(a: Mapping[str, FloatArray], p: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    h, lo, c, n = a["high"], a["low"], a["close"], int(p[0])
    return talib.ADX(h, lo, c, n), talib.PLUS_DI(h, lo, c, n), talib.MINUS_DI(h, lo, c, n)


def _suffix(params: tuple[ParamValue, ...]) -> str:
    # int periods print as ints; the bbands std prints as a Python float ("2.0"), as pandas-ta-classic does.
    return "_".join(str(v) for v in params)


_TABLE: tuple[_Indicator, ...] = (
    _Indicator(
        "adx",
        (_Param("N", 14, minimum=2),),
        ("high", "low", "close"),
        lambda p: (f"ADX_{p[0]}", f"DMP_{p[0]}", f"DMN_{p[0]}"),
        _adx,
    ),
    _Indicator(
        "atr",
        (_Param("N", 14),),
        ("high", "low", "close"),
        lambda p: (f"ATRr_{p[0]}",),
        lambda a, p: (talib.ATR(a["high"], a["low"], a["close"], int(p[0])),),
    ),
    _Indicator(
        "bbands",
        (_Param("N", 20, minimum=2), _Param("STD", 2.0, is_float=True)),
        ("close",),
        lambda p: tuple(f"{k}_{_suffix(p)}" for k in ("BBL", "BBM", "BBU", "BBB", "BBP")),
        _bbands,
    ),
    _Indicator(
        "ema",
        (_Param("N", None),),
        ("close",),
        lambda p: (f"EMA_{p[0]}",),
        lambda a, p: (talib.EMA(a["close"], int(p[0])),),
    ),
    _Indicator(
        "macd",
        (_Param("FAST", 12, minimum=2), _Param("SLOW", 26, minimum=2), _Param("SIGNAL", 9)),
        ("close",),
        lambda p: (f"MACD_{_suffix(p)}", f"MACDh_{_suffix(p)}", f"MACDs_{_suffix(p)}"),
        _macd,
    ),
    _Indicator("obv", (), ("close", "volume"), lambda p: ("OBV",), lambda a, p: (talib.OBV(a["close"], a["volume"]),)),
    _Indicator(
        "rsi",
        (_Param("N", 14, minimum=2),),
        ("close",),
        lambda p: (f"RSI_{p[0]}",),
        lambda a, p: (talib.RSI(a["close"], int(p[0])),),
    ),
    _Indicator(
        "sma",
        (_Param("N", None),),
        ("close",),
        lambda p: (f"SMA_{p[0]}",),
        lambda a, p: (talib.SMA(a["close"], int(p[0])),),
    ),
)

INDICATORS: Mapping[str, _Indicator] = {ind.name: ind for ind in _TABLE}
VALID_FORMS = ", ".join(ind.form for ind in sorted(_TABLE, key=lambda ind: ind.name))


class IndicatorSpecError(ValueError):
    """A spec string that does not name a known indicator with valid parameters."""

    def __init__(self, spec: str, problem: str) -> None:
        self.spec = spec
        self.problem = problem
        super().__init__(f"{problem} in spec {spec!r}; valid: {VALID_FORMS}")


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """A parsed spec: equal specs (``rsi`` and ``rsi:14``) compare and hash equal."""

    name: str
    params: tuple[ParamValue, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return INDICATORS[self.name].columns(self.params)

    @property
    def inputs(self) -> tuple[str, ...]:
        return INDICATORS[self.name].inputs

    def __str__(self) -> str:
        return f"{self.name}:{','.join(str(v) for v in self.params)}" if self.params else self.name


_INT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def _parse_param(spec: str, ind: _Indicator, param: _Param, text: str) -> ParamValue:
    if param.is_float:
        # Refuse "nan", "inf", "1e3", "-2" by shape: only plain positive decimals are a sensible std.
        value = float(text) if _FLOAT.fullmatch(text) else math.nan
        if not (math.isfinite(value) and value > 0):
            raise IndicatorSpecError(spec, f"{ind.name} {param.label} must be a number > 0, got {text!r}")
        return value
    if not _INT.fullmatch(text) or not param.minimum <= int(text) <= _MAX_PERIOD:
        raise IndicatorSpecError(
            spec, f"{ind.name} {param.label} must be an integer in {param.minimum}..{_MAX_PERIOD}, got {text!r}"
        )
    return int(text)


@functools.lru_cache(maxsize=1024)
def parse_spec(spec: str) -> IndicatorSpec:
    """Parse ``name[:p1,p2,...]`` (case and surrounding blanks ignored); raise IndicatorSpecError."""
    if not isinstance(spec, str):
        raise IndicatorSpecError(repr(spec), f"spec must be a string, got {type(spec).__name__}")
    name, colon, rest = spec.strip().partition(":")
    name = name.strip().lower()
    ind = INDICATORS.get(name)
    if ind is None:
        raise IndicatorSpecError(spec, f"unknown indicator {name!r}")
    texts = [t.strip() for t in rest.split(",")] if colon else []
    if colon and not ind.params:
        raise IndicatorSpecError(spec, f"{ind.name} takes no parameters (form {ind.form!r})")
    if colon and len(texts) != len(ind.params):
        raise IndicatorSpecError(
            spec,
            f"{ind.name} takes {len(ind.params)} parameter{'s' if len(ind.params) > 1 else ''} "
            f"(form {ind.form!r}), got {len(texts)}",
        )
    if texts:
        params = tuple(_parse_param(spec, ind, p, t) for p, t in zip(ind.params, texts, strict=True))
    else:
        defaults = tuple(p.default for p in ind.params)
        if any(d is None for d in defaults):
            # A moving average has no conventional length; guessing one would hide a mistake.
            raise IndicatorSpecError(spec, f"{ind.name} needs its length (form {ind.form!r})")
        params = tuple(d for d in defaults if d is not None)
    if ind.name == "macd" and not params[0] < params[1]:
        # TA-Lib silently swaps FAST and SLOW; a reversed spec is more likely a typo than intent.
        raise IndicatorSpecError(spec, f"macd FAST must be smaller than SLOW, got {params[0]},{params[1]}")
    return IndicatorSpec(ind.name, params)


@dataclass(frozen=True, slots=True)
class _Plan:
    specs: tuple[IndicatorSpec, ...]
    columns: tuple[str, ...]
    inputs: tuple[str, ...]
    needed_by: Mapping[str, tuple[str, ...]]  # input column -> spec strings that need it


@functools.lru_cache(maxsize=256)
def _plan(specs: tuple[str, ...]) -> _Plan:
    parsed: list[IndicatorSpec] = []
    needed_by: dict[str, list[str]] = {}
    for text in specs:
        spec = parse_spec(text)
        # "rsi" and "rsi:14" are one indicator: compute it once, keep the columns unique.
        if spec in parsed:
            continue
        parsed.append(spec)
        for col in spec.inputs:
            needed_by.setdefault(col, []).append(text)
    columns = tuple(c for s in parsed for c in s.columns)
    inputs = tuple(c for c in OHLCV if c in needed_by)
    return _Plan(tuple(parsed), columns, inputs, {k: tuple(v) for k, v in needed_by.items()})


def _as_float(values: pd.Series) -> FloatArray:
    array = values.to_numpy()
    if array.dtype != np.float64:
        # int volumes, nullable Float64 with NA, object columns from hand-built frames
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    # TA-Lib wants C-contiguous float64; this copies only when the column is a strided view.
    return np.ascontiguousarray(array)


def compute(bars: pd.DataFrame, specs: Iterable[str]) -> pd.DataFrame:
    """Indicator columns for ``bars`` (same index), named as pandas-ta-classic names them.

    Only the OHLCV columns the specs need must be present. A spec repeated, or given once with
    and once without its default parameters, yields its columns once.
    """
    plan = _plan((specs,) if isinstance(specs, str) else tuple(specs))
    missing = [c for c in plan.inputs if c not in bars.columns]
    if missing:
        users = sorted({s for c in missing for s in plan.needed_by[c]})
        raise ValueError(
            f"bars lack column(s) {', '.join(repr(c) for c in missing)} needed by spec(s) "
            f"{', '.join(repr(s) for s in users)}; bars have {list(map(str, bars.columns))}"
        )
    arrays = {c: _as_float(bars[c]) for c in plan.inputs}
    # One (columns x rows) block: each column stays contiguous and pandas wraps it without copying.
    out = np.empty((len(plan.columns), len(bars)), dtype=np.float64)
    row = 0
    for spec in plan.specs:
        for values in INDICATORS[spec.name].run(arrays, spec.params):
            out[row] = values
            row += 1
    return pd.DataFrame(out.T, index=bars.index, columns=list(plan.columns), copy=False)


def _close_times(frame: pd.DataFrame, role: str) -> pd.Series:
    if "close_time" not in frame.columns:
        raise ValueError(f"{role} frame needs a close_time column (venues.timeframes.with_close_time adds it)")
    times = frame["close_time"]
    if times.isna().any():
        raise ValueError(f"{role} frame has missing close_time values")
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"{role} close_time must be tz-aware (UTC), got dtype {times.dtype}")
    if not times.is_monotonic_increasing:
        raise ValueError(f"{role} close_time must be sorted ascending")
    # merge_asof refuses keys of different resolution (us vs ns) or zone; normalise both sides.
    return times.dt.tz_convert("UTC").dt.as_unit("ns")


def align_to(base: pd.DataFrame, higher: pd.DataFrame, *, suffix: str = "") -> pd.DataFrame:
    """Carry ``higher``'s columns onto ``base``'s index, causally.

    Both frames need a ``close_time`` column, sorted ascending. Each base row gets the values of
    the latest ``higher`` row with ``close_time <= base.close_time`` (a bar closing exactly when
    the base bar closes is final by then, so it is included); rows before the first such bar get
    NaN. The result has ``base``'s index and ``higher``'s other columns, each name + ``suffix``.
    """
    left = pd.DataFrame({"close_time": _close_times(base, "base").array})
    right = higher.drop(columns="close_time").reset_index(drop=True)
    right.insert(0, "close_time", _close_times(higher, "higher").array)
    merged = pd.merge_asof(left, right, on="close_time", direction="backward", allow_exact_matches=True)
    result = merged.drop(columns="close_time")
    result.index = base.index
    if suffix:
        result.columns = [f"{c}{suffix}" for c in result.columns]
    return result


def compute_mtf(
    bars: pd.DataFrame,
    base_timeframe: str | Timeframe,
    specs_by_timeframe: Mapping[str, Iterable[str]] | Mapping[Timeframe, Iterable[str]],
    *,
    now: pd.Timestamp | None = None,
    calendar: str | None = None,
) -> pd.DataFrame:
    """Indicators over several timeframes, aligned causally onto the base bars' index.

    ``bars`` are bars of ``base_timeframe`` (``close_time`` is added as open + timeframe when
    absent). Each key of ``specs_by_timeframe`` is a timeframe not shorter than the base one: the
    base timeframe itself is computed on ``bars`` directly, a longer one on ``resample(bars, tf)``
    aligned with ``align_to``. Columns are the ``compute`` names suffixed with ``_<timeframe>``
    (``RSI_14_4h``), in mapping order. ``now`` drops higher-timeframe bars that are not final at
    that moment; pass it when the last base bar may still be forming, or that bar's partial data
    would leak into the higher bar that closes with it. With an exchange ``calendar``, daily bars
    are sessions (see ``venues.timeframes.resample``).
    """
    base_tf = parse_timeframe(base_timeframe)
    bars = with_close_time(bars, base_tf)
    parts: list[pd.DataFrame] = []
    for key, specs in specs_by_timeframe.items():
        tf = parse_timeframe(key)
        if tf.delta < base_tf.delta:
            raise ValueError(
                f"timeframe {tf.name!r} is shorter than the base timeframe {base_tf.name!r}; "
                "compute_mtf only aggregates upwards"
            )
        if tf == base_tf:
            values = compute(bars, specs)
        else:
            higher = resample(bars, tf, complete_at=now, calendar=calendar)
            values = align_to(bars, compute(higher, specs).assign(close_time=higher["close_time"]))
        parts.append(values.add_suffix(f"_{tf.name}"))
    if not parts:
        return pd.DataFrame(index=bars.index)
    result = pd.concat(parts, axis=1)
    # A timeframe given twice (e.g. "1h" and " 1h") must not produce duplicate columns.
    return result.loc[:, ~result.columns.duplicated()]
