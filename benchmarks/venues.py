"""Requests per scan against a local fake of each real venue (figures printed, no asserts).

Each ``bench_<kind>()`` screens a watchlist of its venue as a scan does (one snapshot, then bars
of the shortlist on the base and confirm timeframes) against a fake of the venue's API fed with
recorded payloads, and counts the HTTP requests the venue sent: for the first scan (cold caches),
a second scan inside the same bar (everything held: no bar request), and a scan after the next
base bar has closed. Run from the repo root: ``.venv/bin/python benchmarks/venues.py``.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on the path, where this very file would
# shadow the `venues` package: the repo root takes its place.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import responses  # noqa: E402

from tools.screen import ScreenConfig, screen  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402


def bench_akshare() -> list[tuple[str, str]]:
    """The akshare venue over the Eastmoney/Sina fake (tests/akshare_fake.py: recorded 510300.SH 5m
    and 600519.SH daily bars) on 2021-12-15 at 10:07 Shanghai; an 8-symbol A-share/ETF watchlist,
    15m base with 1h/4h/1d confirmation."""
    from tests.akshare_fake import A_SHARES, ETFS, FakeAkshareApi
    from venues.adapters.akshare import AkshareConfig, AkshareVenue
    from venues.adapters.akshare.instruments import equity_symbol

    now = datetime(2021, 12, 15, 2, 7, tzinfo=UTC)
    clock = SimulatedClock(now)
    config = AkshareConfig(rate_per_second=1000)  # the fake does not ban: pacing is not measured here
    api = FakeAkshareApi(clock, config)
    symbols = [equity_symbol(code, market) for code, market, _ in A_SHARES + ETFS]
    screen_config = ScreenConfig(timeframe="15m", min_score=0.0)
    rows: list[tuple[str, str]] = []

    async def run() -> None:
        venue = AkshareVenue(config, clock)
        sent = 0

        def step(label: str) -> None:
            nonlocal sent
            rows.append((label, f"{venue.guard.requests - sent} requests ({dict(api.calls)})"))
            sent = venue.guard.requests
            api.calls.clear()

        await venue.instruments()
        step("universe listing (A-shares + ETFs, pages of 100)")
        result = await screen(venue, symbols, screen_config, now=clock.now())
        step(f"first scan of {len(symbols)} symbols, {len(result.shortlisted)} shortlisted")
        clock.advance(timedelta(seconds=5))
        await screen(venue, symbols, screen_config, now=clock.now())
        step("second scan in the same 15m bar")
        clock.advance(timedelta(minutes=9))
        await screen(venue, symbols, screen_config, now=clock.now())
        step("scan after the next 15m bar closed")
        await venue.aclose()

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        api.install(mock)
        asyncio.run(run())
    return rows


BENCHES = {"akshare": bench_akshare}


def main() -> None:
    for kind, bench in BENCHES.items():
        print(f"-- {kind}")
        for label, figure in bench():
            print(f"{label:55s} {figure}")


if __name__ == "__main__":
    main()
