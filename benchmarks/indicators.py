"""Indicator throughput: tools.indicators.compute over 1,000 symbols x 500 bars x 8 specs.

The symbols are real data: 1,000 different 500-bar windows of SPY daily bars 1999-2020 (the test
fixture tests/fixtures/indicators/talib_reference_SPY_1d.csv), each a full bar frame (UTC ``ts``
index, ``close_time``). Frames are built before timing; only ``compute`` is timed, once per symbol,
as a scan would call it. Run from the repo root: ``.venv/bin/python benchmarks/indicators.py``;
``--compare`` also times the same work through pandas-ta-classic's ``df.ta`` accessor.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from tools.indicators import compute  # noqa: E402
from venues.timeframes import OHLCV, with_close_time  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "indicators" / "talib_reference_SPY_1d.csv"
SPECS = ["rsi:14", "ema:20", "sma:50", "macd:12,26,9", "atr:14", "bbands:20,2", "adx:14", "obv"]
SYMBOLS = 1_000
BARS = 500
TARGET_MS = 1.0


def load_windows(symbols: int = SYMBOLS, bars: int = BARS) -> list[pd.DataFrame]:
    table = pd.read_csv(FIXTURE, usecols=["date", *OHLCV])
    table.index = pd.DatetimeIndex(pd.to_datetime(table.pop("date"), utc=True), name="ts")
    series = with_close_time(table.astype("float64"), "1d")
    # Evenly spaced start offsets over the 5,241 rows: every window is a different stretch of history.
    step = (len(series) - bars) / (symbols - 1)
    # .copy(): each symbol owns its arrays, as frames fetched per symbol would.
    return [series.iloc[round(i * step) : round(i * step) + bars].copy() for i in range(symbols)]


def accessor_ms(windows: list[pd.DataFrame]) -> float:
    """The same work through pandas-ta-classic's ``df.ta`` accessor (talib=True), for comparison."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.Pandas4Warning)  # upstream import-time noise
        import pandas_ta_classic  # noqa: F401

    def run(bars: pd.DataFrame) -> pd.DataFrame:
        ta = bars.ta
        parts = [
            ta.rsi(14, talib=True),
            ta.ema(20, talib=True),
            ta.sma(50, talib=True),
            ta.macd(12, 26, 9, talib=True),
            ta.atr(14, talib=True),
            ta.bbands(20, 2, talib=True),
            ta.adx(14, talib=True),
            ta.obv(talib=True),
        ]
        return pd.concat(parts, axis=1)

    run(windows[0])
    cpu0 = time.process_time()
    for bars in windows:
        run(bars)
    return (time.process_time() - cpu0) * 1e3 / len(windows)


def main() -> None:
    windows = load_windows()
    compute(windows[0], SPECS)  # warm up: spec parsing cache, first TA-Lib calls
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for bars in windows:
        compute(bars, SPECS)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = len(windows)
    print(
        f"indicators: {n} symbols x {BARS} bars x {len(SPECS)} specs: "
        f"{cpu * 1e3 / n:.3f} ms/symbol cpu, {wall * 1e3 / n:.3f} ms/symbol wall "
        f"(total {cpu:.3f} s cpu, {wall:.3f} s wall; target <= {TARGET_MS:g} ms)"
    )
    if "--compare" in sys.argv[1:]:
        sample = windows[:: max(1, n // 100)]
        ms = accessor_ms(sample)
        print(f"pandas-ta-classic df.ta accessor (talib=True), {len(sample)} symbols: {ms:.3f} ms/symbol cpu")


if __name__ == "__main__":
    main()
