"""Chart rendering speed: tools.charts.signal_chart on 50 real replay bar windows, and
equity_curve_chart on 20 curves; ms per chart, wall and CPU.

The bars are the shipped replay data (crypto, China A-shares, US equities; 120 bars each, at 50
different clock times between 2021-07-06 and 2021-08-10), fetched before timing; each timed call
renders one PNG to a temporary directory, as a scan does for each signal card. The first chart is
reported separately (it pays for font loading and first-use caches). Run from the repo root:
``.venv/bin/python benchmarks/charts.py``; ``--threads N`` also renders the 50 charts from N
worker threads (throughput, and a check that the bytes equal the serial renders); ``--baseline``
also times a plain ``mplfinance.plot(..., volume=True, savefig=...)`` on the same bars, for
comparison (run last: it rewrites the process-wide rcParams).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from tools.charts import equity_curve_chart, signal_chart  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402
from venues.replay import ReplayVenue  # noqa: E402

SCENARIOS = [  # market, symbol, timeframe, display time zone
    ("crypto", "BTC/USD", "1h", "UTC"),
    ("crypto", "ETH/USDT", "4h", "UTC"),
    ("cn", "510300.SH", "15m", "Asia/Shanghai"),
    ("cn", "600519.SH", "1d", "Asia/Shanghai"),
    ("cn", "000001.SZ", "1d", "Asia/Shanghai"),
    ("us", "AMZN", "1h", "America/New_York"),
    ("us", "SPY", "5m", "America/New_York"),
]
SIGNAL_CHARTS = 50
EQUITY_CHARTS = 20
BARS = 120
TARGET_MS = 50.0


async def _windows() -> list[tuple[str, str, str, pd.DataFrame]]:
    out = []
    for i in range(SIGNAL_CHARTS):
        market, symbol, timeframe, tz = SCENARIOS[i % len(SCENARIOS)]
        moment = datetime(2021, 7, 6, 20, tzinfo=UTC) + timedelta(hours=17 * i)
        bars = await ReplayVenue(market, SimulatedClock(moment)).bars(symbol, timeframe, limit=BARS)
        out.append((symbol, timeframe, tz, bars))
    return out


def signal_kwargs(i: int, symbol: str, timeframe: str, tz: str, bars: pd.DataFrame) -> dict[str, Any]:
    close = float(bars["close"].iloc[-1])
    rng = float((bars["high"] - bars["low"]).tail(14).mean())
    sign = 1 if i % 2 == 0 else -1
    return {
        "bars": bars,
        "symbol": symbol,
        "timeframe": timeframe,
        "side": "buy" if sign > 0 else "sell",
        "entry": close,
        "stop": close - sign * 1.5 * rng,
        "take_profits": [close + sign * k * rng for k in (1.5, 3.0, 4.5)],
        "tz": tz,
        "title_note": "benchmark",
    }


def equity_points(i: int) -> list[tuple[datetime, float]]:
    start = datetime(2021, 1, 1, tzinfo=UTC)
    n = 50 + 100 * i  # 50 ... 1,950 points
    value, points = 100_000.0, []
    for k in range(n):
        value *= 1 + 0.002 * (((k * 7919 + i) % 101) / 50 - 0.98)
        points.append((start + timedelta(hours=4 * k), value))
    return points


def _timed(calls: list, label: str) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for call in calls:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        call()
        walls.append((time.perf_counter() - wall0) * 1e3)
        cpus.append((time.process_time() - cpu0) * 1e3)
    walls_sorted = sorted(walls)
    p95 = walls_sorted[min(len(walls) - 1, round(0.95 * (len(walls) - 1)))]
    print(
        f"{label}: {len(calls)} charts: {statistics.mean(walls):.1f} ms/chart wall "
        f"(median {statistics.median(walls):.1f}, p95 {p95:.1f}, max {max(walls):.1f}), "
        f"{statistics.mean(cpus):.1f} ms/chart cpu"
    )
    return walls, cpus


def main() -> None:
    args = sys.argv[1:]
    windows = asyncio.run(_windows())
    with tempfile.TemporaryDirectory(prefix="tradeops-charts-") as tmp:
        out = Path(tmp)
        jobs = [signal_kwargs(i, *w) for i, w in enumerate(windows)]

        cpu0, wall0 = time.process_time(), time.perf_counter()
        signal_chart(**jobs[0], path=out / "cold.png")
        print(
            f"first chart (cold): {(time.perf_counter() - wall0) * 1e3:.1f} ms wall, "
            f"{(time.process_time() - cpu0) * 1e3:.1f} ms cpu"
        )
        walls, _ = _timed(
            [lambda i=i, job=job: signal_chart(**job, path=out / f"s{i}.png") for i, job in enumerate(jobs)],
            f"signal_chart ({BARS} bars, volume, entry/stop/3 TPs)",
        )
        sizes = [(out / f"s{i}.png").stat().st_size for i in range(len(jobs))]
        print(
            f"  PNG size: mean {statistics.mean(sizes) / 1024:.1f} KB (min {min(sizes) / 1024:.1f}, "
            f"max {max(sizes) / 1024:.1f}); target <= {TARGET_MS:g} ms per chart"
        )
        curves = [equity_points(i) for i in range(EQUITY_CHARTS)]
        _timed(
            [
                lambda i=i, c=c: equity_curve_chart(c, path=out / f"e{i}.png", currency="USD")
                for i, c in enumerate(curves)
            ],
            "equity_curve_chart (50-1,950 points)",
        )

        if "--threads" in args:
            workers = int(args[args.index("--threads") + 1])
            serial = [(out / f"s{i}.png").read_bytes() for i in range(len(jobs))]
            cpu0, wall0 = time.process_time(), time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                paths = list(pool.map(lambda ij: signal_chart(**ij[1], path=out / f"t{ij[0]}.png"), enumerate(jobs)))
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            same = sum(p.read_bytes() == s for p, s in zip(paths, serial, strict=True))
            print(
                f"{workers} threads: {len(jobs)} charts in {wall * 1e3:.0f} ms wall "
                f"({wall * 1e3 / len(jobs):.1f} ms/chart), "
                f"{cpu * 1e3 / len(jobs):.1f} ms/chart cpu; {same}/{len(jobs)} byte-identical to the serial renders"
            )

        if "--baseline" in args:
            import mplfinance as mpf

            def naive(job: dict[str, Any], path: Path) -> None:
                bars = job["bars"]
                assert isinstance(bars, pd.DataFrame)
                frame = bars[["open", "high", "low", "close", "volume"]].copy()
                frame.index = frame.index.tz_convert(str(job["tz"])).tz_localize(None)
                levels = [job["entry"], job["stop"], *job["take_profits"]]
                mpf.plot(
                    frame,
                    type="candle",
                    volume=True,
                    style="yahoo",
                    hlines={"hlines": levels, "colors": ["b", "r", "g", "g", "g"]},
                    title=f"{job['symbol']} {job['timeframe']}",
                    figsize=(7.2, 4.8),
                    savefig={"fname": path, "dpi": 150},
                    closefig=True,
                )

            naive(jobs[0], out / "b.png")
            _timed(
                [lambda i=i, job=job: naive(job, out / f"b{i}.png") for i, job in enumerate(jobs[:20])],
                "baseline mplfinance.plot(volume=True, savefig=...)",
            )
        if statistics.mean(walls) > TARGET_MS:
            print(f"  note: mean above the {TARGET_MS:g} ms target on this machine")


if __name__ == "__main__":
    main()
