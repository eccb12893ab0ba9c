"""Screen throughput: tools.screen.screen over a 1,000-symbol universe at a fixed moment.

The universe is benchmarks/universe.py's (offset, scaled copies of the eight shipped real series,
served through ReplayVenue). The screen runs with its defaults (base 15m, confirm 1h/4h/1d,
shortlist 50, top 5, min score 0.6): one snapshot of 1,000 symbols, bars for at most 50 of them.
What a long-running bot pays once is reported separately: building the universe (parsing the
shipped files, building the exchange calendars) and the first scan (resampling each series to
the higher timeframes once, as the replay venue caches them). Then ``RUNS`` scans, half an hour
apart from 2021-08-12T20:00Z, are timed with the caches warm, as in a running bot. The figure of
merit is CPU ms per *screened* symbol: total CPU of one scan / universe size (target <= 1 ms).
Run from the repo root: ``.venv/bin/python benchmarks/screen.py``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.universe import build_universe  # noqa: E402
from tools.screen import ScreenConfig, ScreenResult, screen  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402

SYMBOLS = 1_000
MOMENT = datetime(2021, 8, 12, 20, 0, tzinfo=UTC)  # Thursday: US close; A-shares closed; crypto on
RUNS = 5
TARGET_MS = 1.0


class _CountingBars:
    """Counts ``bars`` calls; everything else goes straight to the universe."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.bars_calls = 0

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    async def bars(self, *args: Any, **kwargs: Any) -> Any:
        self.bars_calls += 1
        return await self.inner.bars(*args, **kwargs)


async def main() -> None:
    clock = SimulatedClock(MOMENT - timedelta(hours=1))
    wall0 = time.perf_counter()
    market = _CountingBars(build_universe(SYMBOLS, clock))
    build_wall = time.perf_counter() - wall0
    symbols = [i.symbol for i in await market.instruments()]
    config = ScreenConfig()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await screen(market, symbols, config, now=clock.now())
    cold_cpu, cold_wall = time.process_time() - cpu0, time.perf_counter() - wall0

    market.bars_calls = 0
    results: list[ScreenResult] = []
    cpu = wall = 0.0
    for run in range(RUNS):
        clock.advance_to(MOMENT + run * timedelta(minutes=30))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        results.append(await screen(market, symbols, config, now=clock.now()))
        cpu += time.process_time() - cpu0
        wall += time.perf_counter() - wall0
    n = SYMBOLS
    shortlisted = sum(len(r.shortlisted) for r in results) / RUNS
    candidates = sum(len(r.candidates) for r in results) / RUNS
    print(
        f"screen: {n} symbols at {MOMENT:%Y-%m-%dT%H:%MZ} (+{RUNS} runs 30 min apart): "
        f"{cpu * 1e3 / RUNS / n:.3f} ms cpu per screened symbol, {wall * 1e3 / RUNS:.1f} ms wall per scan "
        f"(shortlist {shortlisted:g}, {market.bars_calls / RUNS:g} bars calls, candidates {candidates:g} per scan; "
        f"target <= {TARGET_MS:g} ms); "
        f"once: universe build {build_wall * 1e3:.0f} ms wall, "
        f"first scan {cold_cpu * 1e3:.0f} ms cpu, {cold_wall * 1e3:.0f} ms wall"
    )
    first = results[0]
    for c in first.candidates:
        print(f"  {c.symbol} score {c.score:.2f} on {c.timeframe}, last {c.last_price:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
