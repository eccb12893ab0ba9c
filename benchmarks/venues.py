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


import responses  # noqa: E402

from tests.fake_ccxt import FakeExchange  # noqa: E402
from tools.screen import ScreenConfig, screen  # noqa: E402
from venues.adapters.ccxt import CcxtConfig, CcxtVenue  # noqa: E402
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


CCXT_UNIVERSE = 300


def bench_ccxt() -> None:
    """OKX and Binance fakes with 300 spot markets: HTTP requests (as the fake counts them: markets
    and paging included) and guarded calls per scan, for a cold scan, a second scan in the same
    15-minute bar (the exchange answers the same tickers, so the shortlist is the same), and a scan
    after the next bar closed (prices moved: the shortlist may change, new names need history)."""
    start = datetime(2024, 1, 30, 19, 30, 5, tzinfo=UTC)
    print(f"ccxt: {CCXT_UNIVERSE}-symbol spot watchlist, screen defaults (15m; 1h/4h/1d; shortlist 50)")
    print(f"{'exchange':<9} {'scan':<26} {'http':>5} {'calls':>5} {'tickers':>7} {'ohlcv':>5} {'wall ms':>8}")
    for exchange in ("okx", "binance"):
        with FakeExchange(exchange, start, extra_coins=CCXT_UNIVERSE - 4) as fake:
            clock = SimulatedClock(start)
            venue = CcxtVenue(CcxtConfig(exchange, api_url=fake.url, rate_limit_ms=1), clock)
            asyncio.run(_scans(exchange, fake, venue, clock))


async def _scans(exchange: str, fake: FakeExchange, venue: CcxtVenue, clock: SimulatedClock) -> None:
    symbols = [i.symbol for i in await venue.instruments() if not i.perpetual][:CCXT_UNIVERSE]
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
    bench_ccxt()
    bench_alpaca()
    print("-- akshare")
    for label, figure in bench_akshare():
        print(f"{label:55s} {figure}")


if __name__ == "__main__":
    main()
