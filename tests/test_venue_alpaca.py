"""The alpaca adapter against a local fake of Alpaca's APIs (tests/fake_alpaca.py) through
alpaca-py's url_override: instruments from assets, one batched snapshot, paged bars with
continuity checks and the bars cache, faults (429 with Retry-After, 5xx, timeout, bad key, an
unknown symbol in a batch, a paging gap), and the paper-only configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from agent.llm.tools import Toolbox
from bot.core import Caller, CommandCore
from bot.doctor import venue_checks
from bot.services import Services, open_services
from bot.settings import load_settings
from bot.venues import uses_live_data
from storage.paper_ledger import SqlPaperLedger
from storage.users import Role
from storage.watchlists import WatchlistSpec
from tests.fake_alpaca import KEY_ID, SECRET, FakeAlpaca, alpaca_settings, recorded, shipped_bars
from tests.support import Sleeps
from tools.options import VerticalSpread, spread_card_lines
from tools.screen import ScreenConfig, screen
from venues.adapters.alpaca.broker import AlpacaBroker, order_from_alpaca, order_status
from venues.adapters.alpaca.client import AlpacaApi
from venues.adapters.alpaca.config import AlpacaConfig, AlpacaConfigError
from venues.adapters.alpaca.parse import (
    FRACTIONAL_STEP,
    instrument_from_asset,
    page_token_position,
    quote_from_snapshot,
)
from venues.adapters.alpaca.venue import AlpacaVenue, PagingGapError
from venues.adapters.resilience import RetryPolicy
from venues.clock import SimulatedClock
from venues.errors import (
    OrderRejected,
    UnknownSymbolError,
    UnknownTimeframeError,
    VenueAuthError,
    VenueError,
    VenueUnavailable,
)
from venues.models import US_MARGIN_SHORT, OrderRequest, OrderStatus, OrderType, Side
from venues.options import OccSymbol, OptionLeg, OptionRight

pytestmark = pytest.mark.usefixtures("hermetic")

# A Tuesday in the shipped bars' range, NYSE open (the day after the July 5 holiday).
NOW = datetime(2021, 7, 6, 18, 30, 5, tzinfo=UTC)
BAR_ROUTE = "GET /v2/stocks/bars"
SNAP_ROUTE = "GET /v2/stocks/snapshots"


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(NOW)


@pytest.fixture
def fake(clock: SimulatedClock) -> Iterator[FakeAlpaca]:
    with FakeAlpaca(now=clock.now, page_size=100).serving() as served:
        yield served


def config_for(fake: FakeAlpaca, **overrides: object) -> AlpacaConfig:
    values: dict[str, object] = {
        "api_key": KEY_ID,
        "secret_key": SECRET,
        "trading_url": fake.url,
        "data_url": fake.url,
        "rate_per_second": 1000.0,
        "timeout": 2.0,
    }
    values.update(overrides)
    return AlpacaConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_venue(fake: FakeAlpaca, clock: SimulatedClock, sleeps: Sleeps, **overrides: object) -> AlpacaVenue:
    config = config_for(fake, **overrides)
    api = AlpacaApi(config, clock, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02), sleep=sleeps)
    return AlpacaVenue(config, clock, api=api)


@pytest.fixture
async def venue(fake: FakeAlpaca, clock: SimulatedClock, sleeps: Sleeps) -> AsyncIterator[AlpacaVenue]:
    made = make_venue(fake, clock, sleeps)
    yield made
    await made.aclose()


def bar_requests(fake: FakeAlpaca) -> list[dict[str, str]]:
    return [query for method, path, query in fake.requests if path == "/v2/stocks/bars"]


# --- configuration ---


def test_a_live_trading_url_is_refused() -> None:
    with pytest.raises(AlpacaConfigError, match=r"live trading API.*only trades paper"):
        AlpacaConfig(api_key="k", secret_key="s", trading_url="https://api.alpaca.markets")


def test_config_names_the_settings_and_hides_the_keys() -> None:
    with pytest.raises(AlpacaConfigError, match="TRADEOPS_ALPACA_API_KEY and TRADEOPS_ALPACA_SECRET_KEY"):
        AlpacaConfig(api_key="k", secret_key=" ")
    with pytest.raises(AlpacaConfigError, match="valid: iex, sip"):
        AlpacaConfig(api_key="k", secret_key="s", feed="otc")  # type: ignore[arg-type]
    with pytest.raises(AlpacaConfigError, match="has a path"):
        AlpacaConfig(api_key="k", secret_key="s", data_url="http://127.0.0.1:1/v2")
    shown = repr(AlpacaConfig(api_key="PKSECRETKEYID", secret_key="verysecret"))
    assert "PKSECRETKEYID" not in shown and "verysecret" not in shown


# --- parsing (pure) ---


def test_instrument_from_the_recorded_asset() -> None:
    asset = recorded("trading", "get_asset")
    apple = instrument_from_asset(asset, "alpaca")
    assert (apple.symbol, apple.calendar, apple.currency) == ("AAPL", "XNYS", "USD")
    assert apple.qty_step == FRACTIONAL_STEP and apple.min_notional == Decimal(1)
    assert apple.short == US_MARGIN_SHORT and apple.fees.kind == "us_equity"
    whole = instrument_from_asset(dict(asset, fractionable=False, easy_to_borrow=False), "alpaca")
    assert whole.qty_step == Decimal(1) and whole.min_notional == 0
    assert whole.short is None and "hard to borrow" in (whole.short_refusal() or "")
    assert "does not allow shorting" in (
        instrument_from_asset(dict(asset, shortable=False), "alpaca").short_refusal() or ""
    )


def test_quote_from_the_recorded_snapshot() -> None:
    quote = quote_from_snapshot("AAPL", recorded("data", "get_snapshot")["AAPL"])
    assert quote is not None
    assert (quote.last, quote.bid, quote.ask, quote.volume) == (161.1998, 161.19, 161.2, 31749988.0)
    assert quote.change_pct == pytest.approx((161.1998 / 160.62 - 1) * 100)
    assert quote_from_snapshot("X", None) is None


# --- market data ---


async def test_instruments_come_from_the_asset_list_once(venue: AlpacaVenue, fake: FakeAlpaca) -> None:
    assert {i.symbol for i in await venue.instruments()} == {"AMZN", "SPY"}
    assert (await venue.instrument("SPY")).timeframe == "1m"
    with pytest.raises(UnknownSymbolError, match="unknown symbol 'NOPE' on venue 'alpaca'; valid symbols: AMZN, SPY"):
        await venue.instrument("NOPE")
    assert fake.hits["GET /v2/assets"] == 1


async def test_snapshot_is_one_call_and_an_unknown_symbol_never_fails_the_batch(
    venue: AlpacaVenue, fake: FakeAlpaca
) -> None:
    quotes = await venue.snapshot(["AMZN", "NOPE", "SPY"])
    assert set(quotes) == {"AMZN", "SPY"}
    assert quotes["AMZN"].last == 183.86  # the 17:00 bar's close, the last final one at 18:30
    assert venue.left_out == {"NOPE": "alpaca does not list 'NOPE'"}
    snaps = [q for m, p, q in fake.requests if p == "/v2/stocks/snapshots"]
    assert len(snaps) == 1 and snaps[0]["symbols"] == "AMZN,SPY" and snaps[0]["feed"] == "iex"
    await venue.snapshot(["AMZN", "SPY"])  # inside the quote TTL: no request
    assert fake.hits[SNAP_ROUTE] == 1


async def test_bars_drop_the_forming_bar_and_a_second_call_fetches_nothing(
    venue: AlpacaVenue, fake: FakeAlpaca, clock: SimulatedClock
) -> None:
    bars = await venue.bars("AMZN", "1h", limit=150)
    assert len(bars) == 150
    assert bars.index[-1] == pd.Timestamp("2021-07-06T17:00Z")  # the 18:00 bar is still forming
    assert (bars["close_time"] <= pd.Timestamp(NOW)).all()
    expected = fake.frame("AMZN", "1Hour")
    expected = expected[expected.index < pd.Timestamp("2021-07-06T18:00Z")].iloc[-150:]
    assert bars[["open", "high", "low", "close", "volume"]].equals(expected.astype("float64"))
    sent = fake.hits[BAR_ROUTE]
    assert sent == 2  # 151 bars asked, 100 a page: two pages, descending
    assert bar_requests(fake)[0]["sort"] == "desc" and bar_requests(fake)[0]["adjustment"] == "split"

    again = await venue.bars("AMZN", "1h", limit=150)
    assert again.equals(bars) and fake.hits[BAR_ROUTE] == sent  # inside the same bar: nothing sent

    clock.advance_to(NOW + timedelta(hours=1))  # the 18:00 bar has closed
    later = await venue.bars("AMZN", "1h", limit=150)
    assert later.index[-1] == pd.Timestamp("2021-07-06T18:00Z")
    assert fake.hits[BAR_ROUTE] == sent + 1
    assert bar_requests(fake)[-1]["start"] == "2021-07-06T18:00:00Z"  # only what it lacks


async def test_daily_bars_are_sessions_final_at_the_close(venue: AlpacaVenue) -> None:
    bars = await venue.bars("AMZN", "1d", limit=3)
    # July 5 is a holiday and July 6 is still trading at 18:30 UTC: the last final session is July 2.
    assert list(bars.index.strftime("%Y-%m-%d")) == ["2021-06-30", "2021-07-01", "2021-07-02"]
    assert bars["close_time"].iloc[-1] == pd.Timestamp("2021-07-02T20:00Z")


async def test_bars_reaching_back_fetch_only_the_older_ones(venue: AlpacaVenue, fake: FakeAlpaca) -> None:
    await venue.bars("AMZN", "1h", limit=50)
    first = await venue.bars("AMZN", "1h", limit=50)
    more = await venue.bars("AMZN", "1h", limit=120)
    assert len(more) == 120 and more.iloc[-50:].equals(first)
    assert more.index.is_monotonic_increasing and not more.index.duplicated().any()
    last = bar_requests(fake)[-1]
    assert last["sort"] == "desc" and pd.Timestamp(last["end"]) < first.index[0]


async def test_cold_bars_with_an_end_in_the_past_still_get_the_limit(venue: AlpacaVenue, fake: FakeAlpaca) -> None:
    end = datetime(2021, 7, 2, 15, 0, tzinfo=UTC)  # two sessions before the clock's now
    bars = await venue.bars("AMZN", "1h", end=end, limit=40)
    assert len(bars) == 40 and bars.index[-1] == pd.Timestamp(end)
    assert bars[["open", "close"]].equals(
        final(fake, "AMZN", "1Hour", end + timedelta(hours=1), last=40)[["open", "close"]]
    )


async def test_multi_symbol_bars_page_until_done(venue: AlpacaVenue, fake: FakeAlpaca) -> None:
    start = datetime(2021, 7, 1, 13, 0, tzinfo=UTC)
    batch = await venue.bars_many(["AMZN", "SPY"], "1h", start=start)
    assert not batch.errors
    got = batch.bars
    for symbol in ("AMZN", "SPY"):
        expected = fake.frame(symbol, "1Hour")
        expected = expected[
            (expected.index >= pd.Timestamp(start)) & (expected.index < pd.Timestamp("2021-07-06T18:00Z"))
        ]
        assert got[symbol][["open", "close"]].equals(expected[["open", "close"]].astype("float64")), symbol
    served = len(fake.frame("AMZN", "1Hour").loc[start:NOW]) + len(fake.frame("SPY", "1Hour").loc[start:NOW])
    assert fake.hits[BAR_ROUTE] == -(-served // 100)  # every page, the limit counting across both symbols


# --- batches of symbols (bars_many) ---

BATCH_AT = datetime(2021, 8, 10, 18, 30, 5, tzinfo=UTC)  # SPY's recorded 1m bars run 2021-07-01..08-13


@contextmanager
def spy_copies(
    n: int, clock: SimulatedClock, sleeps: Sleeps, **fake_options: Any
) -> Iterator[tuple[FakeAlpaca, AlpacaVenue, list[str]]]:
    """A fake listing ``n`` copies of the recorded SPY bars (S000, S001, ...) and a venue on it."""
    spy = shipped_bars()["SPY"]
    symbols = [f"S{i:03d}" for i in range(n)]
    with FakeAlpaca(now=clock.now, bars={s: spy for s in symbols}, **fake_options).serving() as served:
        # A page of thousands of bars takes the fake a while on a busy machine: a timeout retried
        # would show as an extra request.
        yield served, make_venue(served, clock, sleeps, timeout=30.0), symbols


def final(fake: FakeAlpaca, symbol: str, timeframe: str, now: datetime, last: int | None = None) -> pd.DataFrame:
    """The fake's bars of ``symbol`` that are final at ``now`` (their open + length <= now), the
    ``last`` of them: what the venue must give for these intraday timeframes."""
    frame = fake.frame(symbol, timeframe)
    length = pd.Timedelta(str(timeframe).replace("Min", "min").replace("Hour", "h"))
    frame = frame[frame.index + length <= pd.Timestamp(now)][["open", "high", "low", "close", "volume"]]
    return (frame if last is None else frame.iloc[-last:]).astype("float64")


async def test_a_batch_costs_one_request_series_and_nothing_more_inside_the_bar(sleeps: Sleeps) -> None:
    clock = SimulatedClock(BATCH_AT)
    with spy_copies(10, clock, sleeps) as (fake, venue, symbols):
        batch = await venue.bars_many(symbols, "15m", end=BATCH_AT, limit=201)
        assert not batch.errors and list(batch.bars) == symbols
        expected = final(fake, "S000", "15Min", BATCH_AT, last=201)
        for symbol in symbols:
            assert batch.bars[symbol][["open", "high", "low", "close", "volume"]].equals(expected), symbol
        (query,) = bar_requests(fake)  # 10 symbols x ~230 bars: one page of 10,000
        assert query["symbols"] == ",".join(symbols) and query["sort"] == "asc"

        clock.advance(timedelta(minutes=5))  # the same 15m bar: nothing can have closed
        again = await venue.bars_many(symbols, "15m", end=clock.now(), limit=201)
        assert all(again.bars[s].equals(batch.bars[s]) for s in symbols) and fake.hits[BAR_ROUTE] == 1

        clock.advance(timedelta(minutes=10))  # the 18:30 bar has closed: one request for all, from it
        later = await venue.bars_many(symbols, "15m", end=clock.now(), limit=201)
        assert fake.hits[BAR_ROUTE] == 2 and bar_requests(fake)[-1]["start"] == "2021-08-10T18:30:00Z"
        assert all(later.bars[s].index[-1] == pd.Timestamp("2021-08-10T18:30Z") for s in symbols)

        # Point in time: a batch cut at an earlier end is what bars() gives for each symbol, from the cache.
        cut = datetime(2021, 8, 6, 15, 0, tzinfo=UTC)
        past = await venue.bars_many(symbols[:3], "15m", end=cut, limit=80)
        for symbol in symbols[:3]:
            assert past.bars[symbol].index[-1] == pd.Timestamp(cut)
            assert past.bars[symbol].equals(await venue.bars(symbol, "15m", end=cut, limit=80))
        assert fake.hits[BAR_ROUTE] == 2
        await venue.aclose()


async def test_a_batch_with_an_unknown_symbol_reports_it_and_serves_the_others(
    venue: AlpacaVenue, fake: FakeAlpaca
) -> None:
    batch = await venue.bars_many(["SPY", "NOPE", "AMZN"], "1h", limit=20)
    assert list(batch.errors) == ["NOPE"] and isinstance(batch.errors["NOPE"], UnknownSymbolError)
    assert "unknown symbol 'NOPE' on venue 'alpaca'; valid symbols: AMZN, SPY" in str(batch.errors["NOPE"])
    assert list(batch.bars) == ["SPY", "AMZN"] and all(len(f) == 20 for f in batch.bars.values())
    assert all("NOPE" not in q["symbols"] for q in bar_requests(fake))  # it would fail the whole batch
    assert bar_requests(fake)[0]["symbols"] == "AMZN,SPY"


async def test_a_page_boundary_inside_a_symbols_bars_loses_and_repeats_nothing(
    venue: AlpacaVenue, fake: FakeAlpaca
) -> None:
    # 100 bars a page and the limit counting across symbols: AMZN's ~300 extended-hours 1h bars of
    # the window end mid-page, and pages end inside each symbol's bars.
    batch = await venue.bars_many(["AMZN", "SPY"], "1h", limit=150)
    tokens = [page_token_position(q["page_token"]) for q in bar_requests(fake) if "page_token" in q]
    assert len(tokens) >= 3
    splits = [
        (symbol, moment)
        for symbol, moment in filter(None, tokens)
        if moment < final(fake, symbol, "1Hour", NOW).index[-1]
    ]
    assert {symbol for symbol, _ in splits} == {"AMZN"}, tokens  # a page ended inside AMZN's bars
    amzn = batch.bars["AMZN"]
    assert amzn[["open", "high", "low", "close", "volume"]].equals(final(fake, "AMZN", "1Hour", NOW, last=150))
    # SPY's recorded bars begin on 2021-07-01, fewer than 150 1h bars: all of them, and one
    # more window asked back (for SPY alone) found none older.
    assert batch.bars["SPY"][["open", "close"]].equals(final(fake, "SPY", "1Hour", NOW)[["open", "close"]])
    assert bar_requests(fake)[-1]["symbols"] == "SPY"
    sent = fake.hits[BAR_ROUTE]
    assert (await venue.bars("SPY", "1h", limit=150)).equals(batch.bars["SPY"])
    assert fake.hits[BAR_ROUTE] == sent  # its history is known to be complete: not asked again


async def test_a_batch_alpaca_refuses_is_asked_again_one_symbol_at_a_time(sleeps: Sleeps) -> None:
    clock = SimulatedClock(BATCH_AT)
    with spy_copies(3, clock, sleeps, refused_bars=frozenset({"S001"})) as (fake, venue, symbols):
        batch = await venue.bars_many(symbols, "1h", limit=30)
        assert list(batch.errors) == ["S001"]
        assert "alpaca refused the request (HTTP 422): no bars served for S001" in str(batch.errors["S001"])
        assert list(batch.bars) == ["S000", "S002"] and all(len(f) == 30 for f in batch.bars.values())
        first, *alone = [q["symbols"] for q in bar_requests(fake)]
        assert first == "S000,S001,S002" and sorted(alone) == ["S000", "S001", "S002"]  # those, at once
        await venue.aclose()


async def test_a_batch_during_an_outage_costs_the_retries_once_not_per_symbol(sleeps: Sleeps) -> None:
    clock = SimulatedClock(BATCH_AT)
    with spy_copies(5, clock, sleeps) as (fake, venue, symbols):
        fake.fail(BAR_ROUTE, 503, times=10)
        batch = await venue.bars_many(symbols, "1h", limit=30)
        assert not batch.bars and list(batch.errors) == symbols
        assert all(isinstance(e, VenueUnavailable) for e in batch.errors.values())
        assert fake.hits[BAR_ROUTE] == 3  # the guard's three attempts, for the whole batch
        await venue.aclose()


async def test_a_paging_gap_in_a_batch_fails_its_symbols(venue: AlpacaVenue, fake: FakeAlpaca) -> None:
    fake.gap_once = True
    batch = await venue.bars_many(["AMZN", "SPY"], "1h", limit=150)
    assert not batch.bars and set(batch.errors) == {"AMZN", "SPY"}
    assert all(isinstance(e, PagingGapError) for e in batch.errors.values())


async def test_the_screen_fetches_the_shortlist_in_batches_whatever_its_size(sleeps: Sleeps) -> None:
    config = ScreenConfig(timeframe="15m", confirm=("1h", "4h"), shortlist=50, min_score=0)
    sent: dict[int, int] = {}
    for n in (3, 40):
        clock = SimulatedClock(BATCH_AT)
        with spy_copies(n, clock, sleeps) as (fake, venue, symbols):
            result = await screen(venue, symbols, config, now=clock.now())
            assert len(result.candidates) == min(n, 5) and len(result.shortlisted) == n
            sent[n] = fake.hits[BAR_ROUTE]
            clock.advance(timedelta(minutes=5))
            again = await screen(venue, symbols, config, now=clock.now())
            assert again.candidates == result.candidates and fake.hits[BAR_ROUTE] == sent[n]  # same bar
            await venue.aclose()
    # One window per timeframe, and one more back for 4h (the recorded bars hold fewer than 201
    # of them); 40 symbols' 15m bars fill two pages of 10,000.
    assert sent == {3: 4, 40: 5}


async def test_the_screen_on_alpaca_is_point_in_time_and_skips_a_failing_symbol(sleeps: Sleeps) -> None:
    config = ScreenConfig(timeframe="15m", confirm=("1h", "4h"), min_score=0)
    clock = SimulatedClock(BATCH_AT)
    with spy_copies(4, clock, sleeps) as (_, venue, symbols):
        at_now = await screen(venue, symbols, config, now=BATCH_AT)
        await venue.aclose()
    ahead = SimulatedClock(BATCH_AT + timedelta(minutes=40))  # the venue's clock runs ahead of the scan
    with spy_copies(4, ahead, sleeps, refused_bars=frozenset({"S002"})) as (_, venue, symbols):
        later = await screen(venue, symbols, config, now=BATCH_AT)
        await venue.aclose()
    assert [c.symbol for c in at_now.candidates] == symbols
    assert later.skipped == {"S002": "no 15m bars: alpaca refused the request (HTTP 422): no bars served for S002"}
    kept = [c for c in at_now.candidates if c.symbol != "S002"]
    assert later.candidates == tuple(kept)
    assert all(c.bar_close == pd.Timestamp("2021-08-10T18:30Z") for c in later.candidates)


async def test_a_paging_gap_is_detected(venue: AlpacaVenue, fake: FakeAlpaca) -> None:
    fake.gap_once = True
    with pytest.raises(PagingGapError, match=r"paging gap in alpaca 1h bars of AMZN.*would be skipped"):
        await venue.bars("AMZN", "1h", start=datetime(2021, 6, 1, tzinfo=UTC))


async def test_timeframes_alpaca_does_not_serve_are_refused(venue: AlpacaVenue) -> None:
    with pytest.raises(UnknownTimeframeError, match="valid timeframes: 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w"):
        await venue.bars("AMZN", "2h")


async def test_unknown_symbol_bars_cost_no_request(venue: AlpacaVenue, fake: FakeAlpaca) -> None:
    with pytest.raises(UnknownSymbolError):
        await venue.bars("NOPE", "1h")
    assert fake.hits[BAR_ROUTE] == 0


# --- faults ---


async def test_429_waits_as_long_as_retry_after_says(venue: AlpacaVenue, fake: FakeAlpaca, sleeps: Sleeps) -> None:
    await venue.instruments()
    fake.fail(SNAP_ROUTE, 429, retry_after="2")
    quotes = await venue.snapshot(["AMZN"])
    assert "AMZN" in quotes and fake.hits[SNAP_ROUTE] == 2
    # The Retry-After wait is one of the sleeps (the request pacing may sleep a few ms before it).
    assert sleeps.waits and max(sleeps.waits) >= 2.0, sleeps.waits


async def test_5xx_then_success(venue: AlpacaVenue, fake: FakeAlpaca, sleeps: Sleeps) -> None:
    fake.fail(BAR_ROUTE, 503, times=2)
    bars = await venue.bars("AMZN", "1h", limit=20)
    assert len(bars) == 20 and fake.hits[BAR_ROUTE] == 3 and len(sleeps.waits) == 2


async def test_a_5xx_that_lasts_is_reported_as_unavailable(venue: AlpacaVenue, fake: FakeAlpaca) -> None:
    fake.fail(BAR_ROUTE, 500, times=10)
    with pytest.raises(VenueUnavailable, match=r"alpaca did not answer 1h bars of AMZN: APIError.*after 3 tries"):
        await venue.bars("AMZN", "1h", limit=20)


async def test_a_timeout_is_retried_then_reported(fake: FakeAlpaca, clock: SimulatedClock, sleeps: Sleeps) -> None:
    venue = make_venue(fake, clock, sleeps, timeout=0.2)
    await venue.instruments()
    fake.slow(SNAP_ROUTE, 1.0)
    with pytest.raises(VenueUnavailable, match="alpaca did not answer snapshots of 1 symbols: ReadTimeout"):
        await venue.snapshot(["AMZN"])
    assert fake.hits[SNAP_ROUTE] == 3
    del fake.delays[SNAP_ROUTE]
    assert "AMZN" in await venue.snapshot(["AMZN"])
    await venue.aclose()


async def test_a_bad_key_names_the_settings_and_is_not_retried(
    fake: FakeAlpaca, clock: SimulatedClock, sleeps: Sleeps
) -> None:
    venue = make_venue(fake, clock, sleeps, api_key="PKWRONGKEY123", secret_key="wrong-secret-456")
    with pytest.raises(VenueAuthError) as caught:
        await venue.instruments()
    message = str(caught.value)
    assert "TRADEOPS_ALPACA_API_KEY and TRADEOPS_ALPACA_SECRET_KEY" in message and "HTTP 401" in message
    assert "PKWRONGKEY123" not in message and "wrong-secret-456" not in message
    assert fake.hits["GET /v2/assets"] == 1 and not sleeps.waits
    await venue.aclose()


async def test_health_says_what_answered(venue: AlpacaVenue) -> None:
    assert await venue.health() == "2 tradable US equities; market open; SPY 432.19 (iex feed)"


# --- end to end: the bot on the alpaca venue, through the command core ---

E2E_AT = datetime(2021, 8, 10, 18, 30, 5, tzinfo=UTC)  # SPY's recorded 1m bars run 2021-07-01..08-13


@pytest.fixture
def e2e_clock() -> SimulatedClock:
    return SimulatedClock(E2E_AT)


@pytest.fixture
def e2e_fake(e2e_clock: SimulatedClock) -> Iterator[FakeAlpaca]:
    with FakeAlpaca(now=e2e_clock.now).serving() as served:
        yield served


@pytest.fixture
async def alpaca_services(tmp_path: Path, e2e_fake: FakeAlpaca, e2e_clock: SimulatedClock) -> AsyncIterator[Services]:
    settings = alpaca_settings(e2e_fake, tmp_path / "data")
    assert uses_live_data(settings)
    async with open_services(settings, clock=e2e_clock) as opened:
        opened.users.grant(TRADER.platform, TRADER.user_id, Role.TRADER, at=e2e_clock.now(), display_name="tom")
        yield opened


TRADER = Caller("telegram", 1002, "tom")


async def test_scan_chart_and_signal_work_on_alpaca_as_on_replay(
    alpaca_services: Services, e2e_fake: FakeAlpaca
) -> None:
    core = CommandCore(alpaca_services)
    assert set(alpaca_services.venues) == {"alpaca"}

    refused = await core.handle(TRADER, "/watch add us alpaca:NOPE")
    assert not refused.ok and "unknown symbol 'NOPE' on venue 'alpaca'; valid symbols: AMZN, SPY" in refused.text
    created = await core.handle(TRADER, "/watch add us alpaca:SPY AMZN")
    assert created.ok and "watchlist us created on alpaca (15m): SPY AMZN" in created.text, created.text
    # A symbol Alpaca stopped listing after the watchlist was made: the scan goes on without it.
    spec = alpaca_services.watchlists.get("us")
    assert spec is not None
    alpaca_services.watchlists.set_symbols("us", (*spec.symbols, "NOPE"), at=E2E_AT)

    report = await alpaca_services.scanner.scan(alpaca_services.watchlists.get("us"), trigger="manual")  # type: ignore[arg-type]
    assert not report.error, report.error
    assert report.universe == 3 and report.shortlisted == 2
    assert report.skipped["NOPE"].startswith("unknown symbol 'NOPE' on venue 'alpaca'")
    assert "AMZN" in report.skipped  # its recorded bars are hourly: no 15m history to screen on
    snapshot_calls = e2e_fake.hits[SNAP_ROUTE]
    assert snapshot_calls == 1
    bars_sent = e2e_fake.hits[BAR_ROUTE]

    reply = await core.handle(TRADER, "/scan us")
    assert reply.ok and "us: 3 symbols" in reply.text, reply.text
    assert e2e_fake.hits[BAR_ROUTE] == bars_sent  # a second scan inside the same bar: no bar request

    chart = await core.handle(TRADER, "/chart alpaca:AMZN 1h")
    assert chart.ok and chart.text == "AMZN 1h" and chart.images, chart.text
    assert chart.images[0].endswith(".png")

    signal = await core.handle(TRADER, "/signal alpaca:SPY")
    assert signal.ok, signal.text
    assert signal.text.startswith("SPY: "), signal.text
    assert isinstance(alpaca_services.venues["alpaca"].broker, AlpacaBroker)
    positions = await core.handle(TRADER, "/positions")
    assert positions.ok, positions.text


def test_doctor_reports_the_alpaca_venue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeAlpaca) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)  # alpaca-py's own variable names work too
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    monkeypatch.setenv("TRADEOPS_ALPACA_TRADING_URL", fake.url)
    monkeypatch.setenv("TRADEOPS_ALPACA_DATA_URL", fake.url)
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path / "data"))
    checks = {c.name: c for c in venue_checks(load_settings())}
    assert checks["venue alpaca"].ok, checks["venue alpaca"].detail
    assert checks["venue alpaca"].detail == (
        "alpaca: 2 tradable US equities; market open; SPY 432.19 (iex feed); paper account equity 103820.56 USD"
    )

    monkeypatch.setenv("APCA_API_SECRET_KEY", "wrong-secret-for-doctor")
    bad = {c.name: c for c in venue_checks(load_settings())}["venue alpaca"]
    assert not bad.ok and "TRADEOPS_ALPACA_API_KEY" in bad.detail and "wrong-secret-for-doctor" not in bad.detail

    monkeypatch.setenv("TRADEOPS_ALPACA_TRADING_URL", "https://api.alpaca.markets")
    live = {c.name: c for c in venue_checks(load_settings())}["venue alpaca"]
    assert not live.ok and "only trades paper" in live.detail


# --- orders on the paper account ---

ORDER_ROUTE = "POST /v2/orders"


@pytest.fixture
async def broker(
    e2e_fake: FakeAlpaca, e2e_clock: SimulatedClock, engine: Engine, sleeps: Sleeps
) -> AsyncIterator[AlpacaBroker]:
    venue = make_venue(e2e_fake, e2e_clock, sleeps)
    made = AlpacaBroker(venue.name, venue.api, venue, e2e_clock, SqlPaperLedger(engine))
    venue.broker = made
    yield made
    await venue.aclose()


def test_alpaca_statuses_map_onto_ours() -> None:
    assert order_status("new") is order_status("partially_filled") is OrderStatus.PENDING
    assert order_status("filled") is OrderStatus.FILLED
    assert order_status("canceled") is order_status("expired") is OrderStatus.CANCELLED
    assert order_status("rejected") is OrderStatus.REJECTED
    recorded_order = order_from_alpaca(recorded("trading", "limit_order"), "alpaca")
    assert (recorded_order.type, recorded_order.limit_price, recorded_order.status) == (
        OrderType.LIMIT,
        Decimal(300),
        OrderStatus.PENDING,
    )


async def test_a_market_order_fills_at_alpaca(broker: AlpacaBroker, e2e_fake: FakeAlpaca) -> None:
    order = await broker.place(OrderRequest(client_order_id="sig-1", symbol="SPY", side=Side.BUY, qty=Decimal(3)))
    assert order.status is OrderStatus.PENDING and order.client_order_id == "sig-1"
    sent = e2e_fake.orders["sig-1"]
    assert (sent["symbol"], sent["side"], sent["type"], sent["time_in_force"]) == ("SPY", "buy", "market", "day")
    fills = await broker.process()
    assert [(f.client_order_id, f.qty, f.side) for f in fills] == [("sig-1", Decimal(3), Side.BUY)]
    assert (await broker.order("sig-1")).status is OrderStatus.FILLED  # type: ignore[union-attr]
    positions = await broker.positions()
    assert [(p.symbol, p.qty) for p in positions] == [("SPY", Decimal(3))]
    account = await broker.account()
    assert account.currency == "USD" and account.equity == Decimal("103820.56")  # the recorded account


async def test_an_order_retried_after_a_429_is_placed_once(
    broker: AlpacaBroker, e2e_fake: FakeAlpaca, sleeps: Sleeps
) -> None:
    # Alpaca took the order, then the answer was a 429 (a proxy's rate limit): the retry looks the
    # order up by its client order id before sending it again, and finds it.
    e2e_fake.fail(ORDER_ROUTE, 429, retry_after="1", after_work=True)
    order = await broker.place(OrderRequest(client_order_id="sig-2", symbol="SPY", side=Side.BUY, qty=Decimal(2)))
    assert order.client_order_id == "sig-2"
    assert e2e_fake.hits[ORDER_ROUTE] == 1 and list(e2e_fake.orders) == ["sig-2"]
    assert sleeps.waits[0] >= 1.0
    again = await broker.place(OrderRequest(client_order_id="sig-2", symbol="SPY", side=Side.BUY, qty=Decimal(2)))
    assert again.client_order_id == "sig-2" and e2e_fake.hits[ORDER_ROUTE] == 1  # the same id twice: one order
    with pytest.raises(VenueError, match="already used by another order"):
        await broker.place(OrderRequest(client_order_id="sig-2", symbol="SPY", side=Side.SELL, qty=Decimal(2)))


async def test_a_limit_order_is_cancelled_at_alpaca(broker: AlpacaBroker, e2e_fake: FakeAlpaca) -> None:
    request = OrderRequest(
        client_order_id="sig-3",
        symbol="SPY",
        side=Side.BUY,
        qty=Decimal(1),
        type=OrderType.LIMIT,
        limit_price=Decimal(300),
    )
    placed = await broker.place(request)
    assert placed.limit_price == Decimal(300) and e2e_fake.orders["sig-3"]["limit_price"] == 300
    cancelled = await broker.cancel("sig-3")
    assert cancelled.status is OrderStatus.CANCELLED and e2e_fake.orders["sig-3"]["status"] == "canceled"
    with pytest.raises(VenueError, match="already cancelled"):
        await broker.cancel("sig-3")


async def test_refusals_are_clear(broker: AlpacaBroker, e2e_fake: FakeAlpaca) -> None:
    with pytest.raises(UnknownSymbolError):
        await broker.place(OrderRequest(client_order_id="sig-4", symbol="NOPE", side=Side.BUY, qty=Decimal(1)))
    e2e_fake.fail(ORDER_ROUTE, 403)
    with pytest.raises(OrderRejected, match=r"alpaca refused buy 1 SPY: fake 403"):
        await broker.place(OrderRequest(client_order_id="sig-5", symbol="SPY", side=Side.BUY, qty=Decimal(1)))
    assert e2e_fake.hits[ORDER_ROUTE] == 1 and not e2e_fake.orders


async def test_exits_rest_here_and_go_to_alpaca_when_a_bar_reaches_them(
    broker: AlpacaBroker, e2e_fake: FakeAlpaca, e2e_clock: SimulatedClock
) -> None:
    await broker.place(OrderRequest(client_order_id="sig-6", symbol="SPY", side=Side.BUY, qty=Decimal(3)))
    (entry,) = await broker.process()
    spy = e2e_fake.bars["SPY"]
    ahead = spy[(spy.index >= pd.Timestamp(E2E_AT)) & (spy.index < pd.Timestamp(E2E_AT + timedelta(minutes=30)))]
    target_price = Decimal(str(round(float(ahead["high"].max()) - 0.01, 2)))
    assert target_price > entry.price  # the recorded half hour reaches it
    target = OrderRequest(
        client_order_id="sig-6-tp1",
        symbol="SPY",
        side=Side.SELL,
        qty=Decimal(1),
        type=OrderType.LIMIT,
        limit_price=target_price,
        parent="sig-6",
    )
    stop = OrderRequest(
        client_order_id="sig-6-sl",
        symbol="SPY",
        side=Side.SELL,
        qty=Decimal(3),
        type=OrderType.STOP,
        stop_price=entry.price - Decimal(20),
        parent="sig-6",
    )
    await broker.place(target)
    await broker.place(stop)
    assert set(e2e_fake.orders) == {"sig-6"}  # exits rest here, not at Alpaca
    await broker.process()
    assert set(e2e_fake.orders) == {"sig-6"}  # no bar after the fill yet

    e2e_clock.advance_to(E2E_AT + timedelta(minutes=31))
    await broker.process()
    sent = e2e_fake.orders["sig-6-tp1"]
    assert (sent["side"], sent["type"], Decimal(sent["qty"])) == ("sell", "market", Decimal(1))
    fills = await broker.process()
    assert [f.client_order_id for f in fills] == ["sig-6-tp1"]
    assert (await broker.order("sig-6-sl")).status is OrderStatus.PENDING  # type: ignore[union-attr]
    amended = await broker.amend("sig-6-sl", stop_price=entry.price)
    assert amended.stop_price == entry.price
    assert [(p.symbol, p.qty) for p in await broker.positions()] == [("SPY", Decimal(2))]


# --- options ---


async def test_the_option_chain_has_greeks_and_iv(venue: AlpacaVenue, fake: FakeAlpaca) -> None:
    chain = await venue.option_chain("SPY")
    assert len(chain) == 2 * 11 * 2  # two expiries, 11 strikes, calls and puts
    assert chain == sorted(chain, key=lambda q: (q.expiry, q.strike, q.right.value))
    first = chain[0]
    assert first.underlying == "SPY" and first.expiry == date(2021, 7, 9)  # the next Friday after July 6
    assert first.implied_volatility == 0.2 and first.delta is not None and first.bid is not None
    puts = await venue.option_chain("SPY", right=OptionRight.PUT, strike_min=Decimal(430), strike_max=Decimal(432))
    assert len(puts) == 6  # two expiries x strikes 430, 431, 432
    assert {(q.right, q.strike) for q in puts} == {(OptionRight.PUT, Decimal(k)) for k in (430, 431, 432)}
    assert all(q.delta is not None and q.delta < 0 for q in puts)
    last = [p for m, p, q in fake.requests if p.startswith("/v1beta1/options/snapshots/")][-1]
    assert last == "/v1beta1/options/snapshots/SPY"
    with pytest.raises(UnknownSymbolError):
        await venue.option_chain("NOPE")


async def test_the_llm_may_read_the_option_chain(alpaca_services: Services) -> None:
    toolbox = Toolbox(alpaca_services.deps, "alpaca", "SPY")
    assert "option_chain" in {spec["function"]["name"] for spec in toolbox.specs()}
    answer = await toolbox.call("option_chain", '{"right": "put", "band_pct": 1}')
    assert answer["underlying"] == "SPY" and answer["expiry"] == "2021-08-13", answer
    assert answer["columns"] == "symbol,right,strike,bid,ask,iv,delta,gamma,theta,vega"
    assert answer["contracts"] and all(row[1] == "put" and row[6] < 0 for row in answer["contracts"])
    last = answer["last"]
    assert all(abs(row[2] - last) <= last * 0.01 for row in answer["contracts"])
    bad = await toolbox.call("option_chain", '{"right": "straddle"}')
    assert bad["error"].startswith("bad arguments for option_chain")
    other = await toolbox.call("option_chain", '{"underlying": "NOPE"}')
    assert other["error"].startswith("unknown symbol 'NOPE'")


async def test_option_paper_orders_single_and_multi_leg(
    broker: AlpacaBroker, e2e_fake: FakeAlpaca, sleeps: Sleeps
) -> None:
    put = "SPY210820P00440000"
    contract = await broker._market.instrument(put)  # a contract of a listed underlying
    assert (contract.asset_class.value, contract.name) == ("us_option", "SPY 2021-08-20 440 put")
    single = await broker.place(OrderRequest(client_order_id="opt-1", symbol=put, side=Side.BUY, qty=Decimal(1)))
    assert single.symbol == put and e2e_fake.orders["opt-1"]["symbol"] == put

    spread = VerticalSpread(
        OccSymbol.parse("SPY210820C00440000"), OccSymbol.parse("SPY210820C00445000"), contracts=2, net=Decimal("1.85")
    )
    assert spread_card_lines(spread)[-1] == "  max loss 370.00 USD, max gain 630.00 USD, breakeven 441.85"
    legs = [OptionLeg(spread.long_leg, buy=True), OptionLeg(spread.short_leg, buy=False)]
    e2e_fake.fail(ORDER_ROUTE, 429, retry_after="1", after_work=True)
    placed = await broker.place_legs("opt-2", legs, spread.contracts, limit_price=spread.net)
    assert placed["client_order_id"] == "opt-2" and e2e_fake.hits[ORDER_ROUTE] == 2  # opt-1, then opt-2 once
    sent = e2e_fake.orders["opt-2"]
    assert (sent["order_class"], sent["type"], sent["limit_price"], Decimal(sent["qty"])) == ("mleg", "limit", 1.85, 2)
    assert [(leg["symbol"], leg["side"], leg["ratio_qty"]) for leg in sent["legs"]] == [
        ("SPY210820C00440000", "buy", 1.0),
        ("SPY210820C00445000", "sell", 1.0),
    ]
    with pytest.raises(UnknownSymbolError):
        await broker.place_legs("opt-3", [OptionLeg(OccSymbol.parse("NOPE210820C00001000"), buy=True)] * 2, 1)
    with pytest.raises(OrderRejected, match="2 to 4 legs"):
        await broker.place_legs("opt-4", legs[:1], 1)


async def test_an_approved_signal_is_ordered_at_alpaca_with_its_exits_here(tmp_path: Path) -> None:
    clock = SimulatedClock(datetime(2021, 7, 20, 15, 15, 5, tzinfo=UTC))  # SPY proposes a buy here
    with FakeAlpaca(now=clock.now).serving() as fake:
        settings = alpaca_settings(fake, tmp_path / "data", risk_profile="high")
        async with open_services(settings, clock=clock) as services:
            services.users.grant(TRADER.platform, TRADER.user_id, Role.TRADER, at=clock.now(), display_name="tom")
            spec = WatchlistSpec(name="us", venue="alpaca", symbols=("SPY",), timeframe="15m", min_score=0.5)
            services.watchlists.create(spec, at=clock.now())
            core = CommandCore(services)
            report = await services.scanner.scan(spec, trigger="manual")  # its min_score, 0.5
            assert len(report.pending) == 1, (report.skipped, report.walks)
            signal_id = report.pending[0].signal_id
            approved = await core.handle(TRADER, f"/approve {signal_id}")
            assert approved.ok, approved.text
            entries = [o for o in fake.orders.values() if o["symbol"] == "SPY"]
            assert [o["client_order_id"] for o in entries] == [signal_id], fake.orders
            broker = services.venues["alpaca"].broker
            assert isinstance(broker, AlpacaBroker)
            await broker.process()
            exits = [o for o in await broker.orders() if o.parent == signal_id]
            assert exits and all(o.status is OrderStatus.PENDING for o in exits)  # resting here
            assert set(fake.orders) == {signal_id}  # not at Alpaca
