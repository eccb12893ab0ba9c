"""Requests per scan against a local fake of each real venue (figures printed, nothing asserted).

A scan screens a 300-symbol watchlist (tools.screen defaults: 15m base, 1h/4h/1d confirmations,
shortlist 50): its cost must grow with the shortlist, not the universe, and a second scan inside
the same bar must fetch no bars it already has. Each venue has a ``bench_<kind>()``; ``main()`` runs
the ones present.

    .venv/bin/python benchmarks/venues.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is named like the venues package: the script's own directory must not shadow it.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "benchmarks")]

from tests.fake_ccxt import FakeExchange  # noqa: E402
from tools.screen import ScreenConfig, screen  # noqa: E402
from venues.adapters.ccxt import CcxtConfig, CcxtVenue  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402

UNIVERSE = 300


def bench_ccxt() -> None:
    """OKX and Binance fakes with 300 spot markets: HTTP requests (as the fake counts them: markets
    and paging included) and guarded calls per scan, for a cold scan, a second scan in the same
    15-minute bar (the exchange answers the same tickers, so the shortlist is the same), and a scan
    after the next bar closed (prices moved: the shortlist may change, new names need history)."""
    start = datetime(2024, 1, 30, 19, 30, 5, tzinfo=UTC)
    print(f"ccxt: {UNIVERSE}-symbol spot watchlist, screen defaults (15m; 1h/4h/1d; shortlist 50)")
    print(f"{'exchange':<9} {'scan':<26} {'http':>5} {'calls':>5} {'tickers':>7} {'ohlcv':>5} {'wall ms':>8}")
    for exchange in ("okx", "binance"):
        with FakeExchange(exchange, start, extra_coins=UNIVERSE - 4) as fake:
            clock = SimulatedClock(start)
            venue = CcxtVenue(CcxtConfig(exchange, api_url=fake.url, rate_limit_ms=1), clock)
            asyncio.run(_scans(exchange, fake, venue, clock))


async def _scans(exchange: str, fake: FakeExchange, venue: CcxtVenue, clock: SimulatedClock) -> None:
    symbols = [i.symbol for i in await venue.instruments() if not i.perpetual][:UNIVERSE]
    config = ScreenConfig()
    steps = [
        ("cold", timedelta(0)),
        ("same bar, +5 min", timedelta(minutes=5)),
        ("next 15m bar closed", timedelta(minutes=10)),
    ]
    for label, advance in steps:
        clock.advance(advance)
        if label != "same bar, +5 min":  # same tickers answer: the same shortlist
            fake.now = clock.now()
        http, calls = sum(fake.requests.values()), venue.guard.requests
        tickers, ohlcv = fake.count("ticker"), fake.count("candles") + fake.count("klines")
        began = time.perf_counter()
        await screen(venue, symbols, config, now=clock.now())
        wall = (time.perf_counter() - began) * 1000
        print(
            f"{exchange:<9} {label:<26} {sum(fake.requests.values()) - http:>5} "
            f"{venue.guard.requests - calls:>5} {fake.count('ticker') - tickers:>7} "
            f"{fake.count('candles') + fake.count('klines') - ohlcv:>5} {wall:>8.0f}"
        )
    await venue.aclose()


def main() -> None:
    for bench in (bench_ccxt,):
        bench()


if __name__ == "__main__":
    main()
