"""Backtest speed: tradeops' engine and backtesting.py on the same data, in one process.

The reference policy sma_cross 10/30 with no costs over the shipped BTC/USD 1h 2021 series (8,744
bars): `tradeops backtest`'s engine (a fresh SQLite database, the fast-forward driver jumping from
event to event over the candle closes, the replay venue cut at the clock, the paper broker on its
run ledger, an equity point per candle close) and backtesting.py's own SmaCross on the same bars as
a DataFrame. Each engine runs once to warm up (imports, first-call caches, the migrated empty
database tradeops copies for each run), then ``--repeat`` times (default 9); the best run of each
counts, as timeit takes its minimum: on a shared machine the slower runs measure the neighbours.
The settings are loaded once, outside the timed runs: reading them (environment, .env) is the
command's start-up, not the engine's work, and backtesting.py's timing has no configuration either.
Prints bars per second for each (wall clock; the CPU seconds of this process too), the ratio, the
fires tradeops stopped at, and whether the trades are the same. Figures only, no asserts. Run from
the repo root: ``.venv/bin/python benchmarks/backtest.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where "venues" would be
# benchmarks/venues.py rather than the venues package: the repo root goes first instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bot.backtest import backtest  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from scheduler.backtest.engine import BacktestSpec  # noqa: E402
from tests.test_backtest_crosscheck import peer_trades  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402
from venues.replay import ReplayVenue  # noqa: E402

START = datetime(2021, 1, 1, tzinfo=UTC)
END = datetime(2022, 1, 1, tzinfo=UTC)
FAST, SLOW = 10, 30


def peer(bars, repeat: int):  # type: ignore[no-untyped-def]
    """backtesting.py's SmaCross as the cross-check test runs it: best wall and CPU seconds, trades."""
    peer_trades(bars, FAST, SLOW)  # imports and first-call costs out of the timed runs
    walls, cpus = [], []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        trades = peer_trades(bars, FAST, SLOW)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), trades


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per engine; the best counts (default 9)")
    repeat = max(parser.parse_args().repeat, 1)
    bars = asyncio.run(ReplayVenue("crypto", SimulatedClock(END)).bars("BTC/USD", "1h", start=START, end=END))
    n = len(bars)
    peer_seconds, peer_cpu, peer_trades = peer(bars, repeat)
    spec = BacktestSpec(
        venue="replay-crypto",
        symbols=("BTC/USD",),
        timeframe="1h",
        start=START,
        end=END,
        policy="sma_cross",
        params={"fast": FAST, "slow": SLOW},
        capital=Decimal(1_000_000),
        profile="medium",
        costs=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp))
        asyncio.run(backtest(settings, spec))  # a first run: imports and caches out of the timed ones
        walls, cpus = [], []
        for _ in range(repeat):
            started, cpu = time.perf_counter(), time.process_time()
            result = asyncio.run(backtest(settings, spec))
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
    ours_seconds, ours_cpu = min(walls), min(cpus)
    ours = [(t.entry_time, t.exit_time) for t in result.trades if t.exit_time is not None]
    theirs = [(e.tz_localize(UTC).to_pydatetime(), x.tz_localize(UTC).to_pydatetime()) for e, x in
              zip(peer_trades.EntryTime, peer_trades.ExitTime, strict=True)]  # fmt: skip
    print(f"BTC/USD 1h 2021, sma_cross {FAST}/{SLOW}, no costs: {n} bars; best of {repeat} runs each")
    print(
        f"backtesting.py : {peer_seconds:8.4f} s  {n / peer_seconds:10.0f} bars/s  (cpu {peer_cpu:.4f} s)  "
        f"{len(peer_trades)} trades"
    )
    print(
        f"tradeops       : {ours_seconds:8.4f} s  {n / ours_seconds:10.0f} bars/s  (cpu {ours_cpu:.4f} s)  "
        f"{len(ours)} closed trades (database, driver, broker included; the clock stopped at {result.fires} "
        f"of {n} candle closes)"
    )
    print(f"ratio tradeops / backtesting.py speed: {peer_seconds / ours_seconds:.4f} (cpu {peer_cpu / ours_cpu:.4f})")
    print(f"identical trades: {ours == theirs}")


if __name__ == "__main__":
    main()
