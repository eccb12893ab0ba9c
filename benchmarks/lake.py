"""Bars lake speed: `backfill` rows/s and `sql --lake` query times for a year of 1h bars.

The bars are real: the replay venue's 2021 hours of BTC/USD and ETH/USDT (17,504 bars), backfilled
through the same ``storage.backfill.backfill`` the command runs (every chunk a durable Parquet part
plus an atomic manifest update, fsyncs included) into a fresh lake in a temp directory, once with
the default chunk of 5,000 bars and once with 100-bar chunks (many checkpoints). Then DuckDB
queries over the ``bars`` view, each timed as `tradeops sql --lake` runs it (a new locked-down
connection, the statement check, the query), median of 20. Also the lake venue's first load of a
symbol and a `bars()` call on it. Figures only, no asserts. Run from the repo root:
``.venv/bin/python benchmarks/lake.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from storage.backfill import DEFAULT_CHUNK_BARS, backfill  # noqa: E402
from storage.lake import BarsLake  # noqa: E402
from storage.lake_sql import query_lake  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402
from venues.lake import LakeVenue  # noqa: E402
from venues.replay import ReplayVenue  # noqa: E402

START = datetime(2021, 1, 1, tzinfo=UTC)
END = datetime(2022, 1, 1, tzinfo=UTC)
SYMBOLS = ("BTC/USD", "ETH/USDT")
QUERIES = {
    "count per symbol": "select symbol, count(*) from bars group by symbol",
    "daily OHLC (365 x 2 rows)": (
        "select symbol, date_trunc('day', ts) as day, first(open order by ts) as open, max(high) as high, "
        "min(low) as low, last(close order by ts) as close, sum(volume) as volume from bars group by all"
    ),
    "one month of one symbol": (
        "select * from bars where symbol = 'ETH/USDT' and ts >= '2021-06-01' and ts < '2021-07-01' order by ts"
    ),
    "all rows": "select * from bars",
}


async def backfill_year(lake: BarsLake, chunk_bars: int) -> tuple[int, float, int]:
    clock = SimulatedClock(datetime(2022, 6, 1, tzinfo=UTC))
    venue = ReplayVenue("crypto", clock)
    for symbol in SYMBOLS:  # load the recorded files before timing: the venue's cost is not the lake's
        await venue.bars(symbol, "1h", limit=1)
    rows = parts = 0
    started = time.perf_counter()
    for symbol in SYMBOLS:
        report = await backfill(lake, venue, symbol, "1h", START, END, clock=clock, chunk_bars=chunk_bars)
        rows += report.rows_written
        parts += report.parts_written
    return rows, time.perf_counter() - started, parts


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for chunk_bars in (DEFAULT_CHUNK_BARS, 100):
            lake = BarsLake(Path(tmp) / f"lake-{chunk_bars}")
            rows, seconds, parts = asyncio.run(backfill_year(lake, chunk_bars))
            size = sum(p.stat().st_size for p in lake.root.rglob("*.parquet"))
            print(
                f"backfill, chunks of {chunk_bars} bars: {rows} rows in {seconds * 1000:.0f} ms = "
                f"{rows / seconds:,.0f} rows/s ({parts} parts, {size / 1024:.0f} KiB of zstd Parquet)"
            )
            _, again, _ = asyncio.run(backfill_year(lake, chunk_bars))
            print(f"  second run over the same year (nothing to fetch): {again * 1000:.0f} ms")
        lake = BarsLake(Path(tmp) / f"lake-{DEFAULT_CHUNK_BARS}")
        for name, query in QUERIES.items():
            times = []
            for _ in range(20):
                started = time.perf_counter()
                result = query_lake(lake, query)
                times.append(time.perf_counter() - started)
            print(
                f"sql --lake, {name}: median {statistics.median(times) * 1000:.1f} ms, "
                f"min {min(times) * 1000:.1f} ms ({len(result.rows)} rows)"
            )
        clock = SimulatedClock(datetime(2021, 12, 1, tzinfo=UTC))
        started = time.perf_counter()
        venue = LakeVenue(lake.lake_series(), clock)
        bars = asyncio.run(venue.bars("ETH/USDT", "4h", limit=500))
        print(
            f"lake venue: manifests + first load of ETH/USDT + 4h resample + bars(limit=500): "
            f"{(time.perf_counter() - started) * 1000:.0f} ms ({len(bars)} bars)"
        )
        print(f"lake venue: bars(1h, limit=500) once loaded: {asyncio.run(_per_call_ms(venue)):.3f} ms per call")


async def _per_call_ms(venue: LakeVenue, calls: int = 1000) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await venue.bars("ETH/USDT", "1h", limit=500)
    return (time.perf_counter() - started) * 1000 / calls


if __name__ == "__main__":
    main()
