"""Requests per scan against a local fake of each real venue: the screen's cost must grow with the
shortlist, not the universe, and a second scan inside the same bar must fetch no bars it has.

Each venue has a ``bench_<kind>()`` printing its figures (no asserts); ``main()`` runs those present.
Run from the repo root: `.venv/bin/python benchmarks/venues.py`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where "venues" would be this file
# rather than the venues package: the repo root goes first instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from tools.screen import ScreenConfig, screen  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402


def bench_alpaca(universe: int = 300) -> None:
    """A ``universe``-symbol watchlist on the fake Alpaca (copies of the shipped real SPY 1m bars),
    screened at 15m with 1h/4h confirmation: scan 1 (cold), scan 2 (same bar), scan 3 (one 15m
    bar later). Pacing is off here (the adapter's default is 3 requests a second)."""
    from tests.fake_alpaca import KEY_ID, SECRET, FakeAlpaca, shipped_bars
    from venues.adapters.alpaca.config import AlpacaConfig
    from venues.adapters.alpaca.venue import AlpacaVenue

    spy = shipped_bars()["SPY"]
    symbols = [f"S{i:03d}" for i in range(universe)]
    clock = SimulatedClock(datetime(2021, 8, 10, 18, 30, 5, tzinfo=UTC))
    fake = FakeAlpaca(now=clock.now, bars={s: spy for s in symbols})
    config = ScreenConfig(timeframe="15m", confirm=("1h", "4h"))
    with fake.serving():
        venue_config = AlpacaConfig(
            api_key=KEY_ID, secret_key=SECRET, trading_url=fake.url, data_url=fake.url, rate_per_second=1000.0
        )
        venue = AlpacaVenue(venue_config, clock)

        async def scans() -> None:
            moments = [clock.now(), clock.now() + timedelta(minutes=5), clock.now() + timedelta(minutes=15)]
            labels = ["scan 1 (cold)", "scan 2 (same bar)", "scan 3 (next 15m bar)"]
            for label, moment in zip(labels, moments, strict=True):
                clock.advance_to(moment)
                before = dict(fake.hits)
                sent = venue.requests
                started = time.perf_counter()
                result = await screen(venue, symbols, config, now=clock.now())
                wall = (time.perf_counter() - started) * 1000
                hits = {k: v - before.get(k, 0) for k, v in fake.hits.items() if v - before.get(k, 0)}
                print(
                    f"alpaca {label}: universe {result.universe}, shortlist {len(result.shortlisted)}, "
                    f"requests {venue.requests - sent} ({', '.join(f'{k} x{v}' for k, v in sorted(hits.items()))}), "
                    f"{wall:.0f} ms"
                )
            await venue.aclose()

        asyncio.run(scans())


def main() -> None:
    for name, bench in sorted(globals().items()):
        if name.startswith("bench_") and callable(bench):
            bench()


if __name__ == "__main__":
    main()
