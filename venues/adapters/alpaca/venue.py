"""AlpacaVenue: US equities market data from Alpaca (alpaca-py), with orders through the broker
bot/venues.py attaches (AlpacaBroker: Alpaca's paper API).

Requests per scan: the asset list once a day (instruments), one snapshots call for the whole
universe (quotes cached ``quote_ttl`` seconds), and bars only for what the bars cache lacks, for
the whole shortlist at once (``bars_many``: Alpaca's multi-symbol bars, so a timeframe costs one
paged request series, or two on a cold cache when some symbol's history is shorter than asked):
a second scan inside the same bar sends no bar request at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from alpaca.common.enums import Sort
from alpaca.data.enums import DataFeed
from alpaca.data.requests import OptionChainRequest, StockSnapshotRequest
from alpaca.trading.enums import AssetClass as AlpacaAssetClass
from alpaca.trading.enums import AssetStatus, ContractType
from alpaca.trading.requests import GetAssetsRequest

from venues.adapters.alpaca.client import AlpacaApi, AlpacaApiError
from venues.adapters.alpaca.config import AlpacaConfig
from venues.adapters.alpaca.parse import (
    CALENDAR,
    TIMEFRAMES,
    alpaca_timeframe,
    bars_frame,
    instrument_from_asset,
    is_tradable_equity,
    iso,
    option_instrument,
    option_quote,
    page_token_position,
    quote_from_snapshot,
    window_start,
)
from venues.adapters.cache import BarsCache, QuoteCache
from venues.base import BarsBatch, BrokeredVenue
from venues.clock import Clock, ensure_utc
from venues.errors import UnknownSymbolError, UnknownTimeframeError, VenueError
from venues.models import Instrument, Quote
from venues.options import OccSymbol, OptionQuote, OptionRight, is_occ_symbol
from venues.timeframes import Timeframe, empty_bars, parse_timeframe

log = logging.getLogger(__name__)

PAGE_LIMIT = 10_000  # Alpaca's most items per market-data page (counted across all symbols)
DEFAULT_BARS = 1000  # bars fetched when neither start nor limit says how many
SNAPSHOT_CHUNK = 500  # symbols per snapshots request (keeps the URL short)
BARS_CHUNK = 500  # symbols per multi-symbol bars request series (keeps the URL short)
INSTRUMENTS_TTL = timedelta(hours=24)


class PagingGapError(VenueError):
    """Alpaca's next page would not continue where the last one ended: bars would be skipped."""


@dataclass
class _Held:
    """How far back the cached bars of one key are complete: ``since`` is the open time from which
    every bar is held (None: from the first bar Alpaca has)."""

    since: datetime | None
    fetched_at: datetime  # when the venue was last asked (a key with no bars is not asked again within a bar)


class AlpacaVenue(BrokeredVenue):
    """MarketData (and, with a broker attached, the Venue order API) for Alpaca's US equities."""

    calendar = CALENDAR

    def __init__(
        self,
        config: AlpacaConfig,
        clock: Clock,
        *,
        api: AlpacaApi | None = None,
        quote_ttl: float = 3.0,
    ) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock
        self.api = api or AlpacaApi(config, clock)
        self.broker = None
        self._instruments: dict[str, Instrument] = {}
        self._loaded_at: datetime | None = None
        self._load_lock = asyncio.Lock()
        self._quotes: QuoteCache[Quote] = QuoteCache(clock, quote_ttl)
        self._bars = BarsCache()
        self._held: dict[tuple[str, str], _Held] = {}
        self._key_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self.left_out: dict[str, str] = {}  # the last snapshot's symbols without a quote, and why

    def __repr__(self) -> str:
        return f"AlpacaVenue({self.name!r}, trading={self.config.trading_base!r}, data={self.config.data_base!r})"

    @property
    def requests(self) -> int:
        """Requests actually sent to Alpaca so far (retries included)."""
        return self.api.guard.requests

    # --- instruments ---

    async def _load_instruments(self) -> dict[str, Instrument]:
        now = self.clock.now()
        if self._loaded_at is not None and now - self._loaded_at < INSTRUMENTS_TTL:
            return self._instruments
        async with self._load_lock:
            if self._loaded_at is not None and self.clock.now() - self._loaded_at < INSTRUMENTS_TTL:
                return self._instruments
            query = GetAssetsRequest(status=AssetStatus.ACTIVE, asset_class=AlpacaAssetClass.US_EQUITY)
            assets: Any = await self.api.call("the asset list", lambda: self.api.trading.get_all_assets(query))
            loaded = {
                str(a["symbol"]): instrument_from_asset(a, self.name)
                for a in assets
                if isinstance(a, dict) and is_tradable_equity(a)
            }
            if not loaded:
                raise VenueError(f"{self.name} listed no tradable US equities (the assets endpoint answered empty)")
            self._instruments, self._loaded_at = loaded, self.clock.now()
            return loaded

    async def instruments(self) -> list[Instrument]:
        return list((await self._load_instruments()).values())

    async def instrument(self, symbol: str) -> Instrument:
        listed = await self._load_instruments()
        found = listed.get(symbol)
        if found is None and is_occ_symbol(symbol):
            occ = OccSymbol.parse(symbol)
            if occ.underlying in listed:
                return option_instrument(occ, self.name)  # a contract of a listed stock
        if found is None:
            raise UnknownSymbolError(symbol, self.name, listed)
        return found

    # --- quotes ---

    async def snapshot(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """Quotes of the listed ``symbols`` from Alpaca's snapshots, SNAPSHOT_CHUNK symbols per
        request (one request for a usual universe), cached ``quote_ttl`` seconds. A symbol Alpaca
        does not list is not sent (one unknown symbol would fail the whole batch) and is left out
        of the answer, with the reason in ``left_out``; so is one without a trade yet."""
        listed = await self._load_instruments()
        wanted = list(dict.fromkeys(symbols))
        self.left_out = {s: f"{self.name} does not list {s!r}" for s in wanted if s not in listed}
        known = [s for s in wanted if s in listed]
        quotes, missing = self._quotes.get_many(known)
        for i in range(0, len(missing), SNAPSHOT_CHUNK):
            chunk = missing[i : i + SNAPSHOT_CHUNK]
            query = StockSnapshotRequest(symbol_or_symbols=chunk, feed=DataFeed(self.config.feed))
            raw: Any = await self.api.call(
                f"snapshots of {len(chunk)} symbols", functools.partial(self.api.stocks.get_stock_snapshot, query)
            )
            fresh = {}
            for symbol in chunk:
                quote = quote_from_snapshot(symbol, raw.get(symbol) if isinstance(raw, dict) else None)
                if quote is None:
                    self.left_out[symbol] = f"{self.name} has no trade of {symbol} yet"
                else:
                    fresh[symbol] = quote
            self._quotes.put_many(fresh)
            quotes.update(fresh)
        if self.left_out:
            log.warning("%s snapshot left out: %s", self.name, "; ".join(self.left_out.values()))
        return {s: quotes[s] for s in known if s in quotes}

    # --- bars ---

    async def bars(
        self,
        symbol: str,
        timeframe: str | Timeframe,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Final bars (close_time <= now) of ``symbol`` with open time in ``[start, end]``, the last
        ``limit`` of them; Alpaca's own bars (split-adjusted; 1d = the session, final at its close).
        Bars held are never fetched again: only the ones after the newest held, once one can have
        closed, and older ones when a request reaches before what is held."""
        tf = self._timeframe(timeframe)
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be zero or more, got {limit}")
        await self.instrument(symbol)  # an unknown symbol costs no bar request
        start = ensure_utc(start) if start is not None else None
        end = ensure_utc(end) if end is not None else None
        key = (symbol, tf.name)
        async with self._key_locks[key]:
            await self._fill(key, tf, start, end, limit)
        frame = self._bars.get(key)
        if frame is None:
            return empty_bars()
        frame = frame[frame["close_time"] <= pd.Timestamp(self.clock.now())]
        if start is not None:
            frame = frame[frame.index >= pd.Timestamp(start)]
        if end is not None:
            frame = frame[frame.index <= pd.Timestamp(end)]
        if limit is not None:
            frame = frame.iloc[-limit:] if limit else frame.iloc[0:0]
        return frame

    async def _fill(
        self, key: tuple[str, str], tf: Timeframe, start: datetime | None, end: datetime | None, limit: int | None
    ) -> None:
        symbol = key[0]
        now = self.clock.now()
        held = self._held.get(key)
        frame = self._bars.get(key)
        if held is not None and frame is not None and frame.empty and now < held.fetched_at + tf.delta:
            return  # Alpaca had no bar for it a moment ago, and none can have closed since
        if held is None or frame is None or frame.empty:
            if start is not None:
                got = await self._fetch([symbol], tf, start=start, end=now)
                self._store(key, got.get(symbol), since=start)
            else:
                want = (limit or DEFAULT_BARS) + 1  # one more: the bar still forming may be among them
                got = await self._fetch([symbol], tf, end=now, limit=want, descending=True)
                rows = got.get(symbol)
                complete = rows is None or len(rows) < want  # fewer than asked: Alpaca has no older bars
                self._store(key, rows, since=None if complete or rows is None else rows.index[0].to_pydatetime())
            # The newest bars are held now; with an ``end`` in the past, older ones may still be needed.
            held = self._held[key]
        elif not self._bars.up_to_date(key, now, tf.delta):
            after = self._bars.next_open(key, tf.delta)
            got = await self._fetch([symbol], tf, start=after, end=now)
            self._store(key, got.get(symbol), since=held.since)
        if held.since is None:
            return
        frame = self._bars.get(key)
        assert frame is not None
        if start is not None and start < held.since:
            got = await self._fetch([symbol], tf, start=start, end=held.since - timedelta(microseconds=1))
            self._store(key, got.get(symbol), since=start)
        elif start is None:
            cut = pd.Timestamp(end) if end is not None else None
            have = int((frame.index <= cut).sum()) if cut is not None else len(frame)
            want = limit or DEFAULT_BARS
            if have < want:
                older_end = held.since - timedelta(microseconds=1)
                got = await self._fetch([symbol], tf, end=older_end, limit=want - have, descending=True)
                rows = got.get(symbol)
                complete = rows is None or len(rows) < want - have  # Alpaca has no older bars
                since = None if complete or rows is None else rows.index[0].to_pydatetime()
                self._store(key, rows, since=since)

    def _store(self, key: tuple[str, str], rows: pd.DataFrame | None, *, since: datetime | None) -> None:
        final = rows[rows["close_time"] <= pd.Timestamp(self.clock.now())] if rows is not None else empty_bars()
        self._bars.merge(key, final)
        self._held[key] = _Held(since=since, fetched_at=self.clock.now())

    async def bars_many(
        self,
        symbols: Sequence[str],
        timeframe: str | Timeframe,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> BarsBatch:
        """``bars(symbol, timeframe, start=, end=, limit=)`` of each symbol, the missing bars fetched
        for all of them at once with Alpaca's multi-symbol bars (paged, the page size counting
        across symbols), BARS_CHUNK symbols a request series; see :meth:`_prefetch`. Failures are
        per symbol (``errors``): an unknown symbol costs no request, and a batch Alpaca refuses (a
        symbol it stopped serving) is retried one symbol at a time so only the culprit fails."""
        batch = BarsBatch()
        wanted = list(dict.fromkeys(symbols))
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be zero or more, got {limit}")
        try:
            tf = self._timeframe(timeframe)
            listed = await self._load_instruments()
        except VenueError as exc:
            return BarsBatch(errors=dict.fromkeys(wanted, exc))
        # Option contracts (and unknown symbols) are not stock bars: one by one below.
        stocks = [s for s in wanted if s in listed]
        start = ensure_utc(start) if start is not None else None
        end = ensure_utc(end) if end is not None else None
        batch.errors.update(await self._prefetch(stocks, tf, start, end, limit))

        async def one(symbol: str) -> None:
            try:
                batch.bars[symbol] = await self.bars(symbol, tf, start=start, end=end, limit=limit)
            except VenueError as exc:
                batch.errors[symbol] = exc

        await asyncio.gather(*(one(s) for s in wanted if s not in batch.errors))
        return BarsBatch(
            bars={s: batch.bars[s] for s in wanted if s in batch.bars},
            errors={s: batch.errors[s] for s in wanted if s in batch.errors},
        )

    async def _prefetch(
        self, symbols: list[str], tf: Timeframe, start: datetime | None, end: datetime | None, limit: int | None
    ) -> dict[str, VenueError]:
        """Fill the bars cache of ``symbols`` with a few multi-symbol request series, so that the
        per-symbol ``bars`` calls that follow find what they need (or, for a symbol short of
        ``limit`` bars, fetch only its older ones).

        - Up to date (or answered empty within the last bar): nothing.
        - Holding bars: the ones after the newest held, one series per distinct next bar (usually
          one for the whole batch).
        - Cold: every bar since ``start`` or, without one, since :func:`window_start` sized for
          ``limit`` + 1 bars up to ``end``; a symbol with fewer than that gets one more window of
          that size back, and one with no bar at all in it is taken to have no older bars (listed
          since, or halted for longer than the whole lookback: its older bars would say nothing
          of today's market).

        Returns the symbols whose batch failed in a way per-symbol requests would only repeat
        (Alpaca unavailable, a paging gap, a refused key). A batch Alpaca refuses with a 4xx is
        left to the per-symbol calls."""
        now = self.clock.now()
        keys = sorted((s, tf.name) for s in symbols)
        failed: dict[str, VenueError] = {}
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:  # always in this order: two batches never wait on each other
                await stack.enter_async_context(self._key_locks[key])
            cold: list[str] = []
            stale: defaultdict[datetime, list[str]] = defaultdict(list)
            for key in keys:
                held, frame = self._held.get(key), self._bars.get(key)
                if held is None or frame is None or frame.empty:
                    if held is None or now >= held.fetched_at + tf.delta:
                        cold.append(key[0])
                elif not self._bars.up_to_date(key, now, tf.delta):
                    after = self._bars.next_open(key, tf.delta)
                    assert after is not None
                    stale[after].append(key[0])
            for after, group in stale.items():
                newer = await self._fetch_batch(group, tf, after, now, failed)
                if newer is None:
                    continue  # failed, or left to each symbol's own request
                for symbol in group:
                    key = (symbol, tf.name)
                    self._store(key, newer.get(symbol), since=self._held[key].since)
            if cold:
                await self._prefetch_cold(cold, tf, start, end, limit, now, failed)
        return failed

    async def _prefetch_cold(
        self,
        cold: list[str],
        tf: Timeframe,
        start: datetime | None,
        end: datetime | None,
        limit: int | None,
        now: datetime,
        failed: dict[str, VenueError],
    ) -> None:
        want = (limit or DEFAULT_BARS) + 1  # one more: the bar still forming may be among them
        first = start if start is not None else window_start(tf, min(end or now, now), want)
        got = await self._fetch_batch(cold, tf, first, now, failed)
        if got is None:
            return
        since: dict[str, datetime | None] = dict.fromkeys(cold, first)
        older: dict[str, pd.DataFrame] = {}
        cut = pd.Timestamp(min(end or now, now))
        short = [s for s in cold if s not in got or int((got[s].index <= cut).sum()) < want] if start is None else []
        if short:
            before = first - timedelta(microseconds=1)
            earlier = window_start(tf, before, want)
            answer = await self._fetch_batch(short, tf, earlier, before, failed)
            for symbol in short:
                if answer is None:
                    del since[symbol]  # left to its own request
                else:
                    since[symbol] = earlier if symbol in answer else None
            older = answer or {}
        for symbol, complete_from in since.items():
            key = (symbol, tf.name)
            if symbol in older:
                self._store(key, older[symbol], since=complete_from)
            self._store(key, got.get(symbol), since=complete_from)

    async def _fetch_batch(
        self, symbols: list[str], tf: Timeframe, start: datetime, end: datetime, failed: dict[str, VenueError]
    ) -> dict[str, pd.DataFrame] | None:
        """Bars of ``symbols`` in ``[start, end]``, BARS_CHUNK symbols a request series; None when
        the batch failed: every symbol is put in ``failed`` with the error, except when Alpaca
        refused the request (a 4xx: one symbol it will not serve fails the whole batch)."""
        got: dict[str, pd.DataFrame] = {}
        for i in range(0, len(symbols), BARS_CHUNK):
            chunk = symbols[i : i + BARS_CHUNK]
            try:
                got.update(await self._fetch(chunk, tf, start=start, end=end))
            except AlpacaApiError as exc:
                log.info("%s refused a batch of %s bars (%s): asking one symbol at a time", self.name, tf.name, exc)
                return None
            except VenueError as exc:
                failed.update(dict.fromkeys(symbols, exc))
                return None
        return got

    async def _fetch(
        self,
        symbols: list[str],
        tf: Timeframe,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> dict[str, pd.DataFrame]:
        """Every page of /v2/stocks/bars until Alpaca gives no next_page_token (``limit``, when
        given, counts bars across all symbols). Each page must continue the last one: the page
        token names the last bar served, which must be the last bar received (PagingGapError
        otherwise)."""
        params: dict[str, Any] = {
            "symbols": ",".join(symbols),
            "timeframe": alpaca_timeframe(tf),
            "feed": self.config.feed,
            "adjustment": "split",
            "sort": (Sort.DESC if descending else Sort.ASC).value,
        }
        if start is not None:
            params["start"] = iso(start)
        if end is not None:
            params["end"] = iso(end)
        rows: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        token: str | None = None
        received = 0
        what = f"{tf.name} bars of {', '.join(symbols[:3])}{' ...' if len(symbols) > 3 else ''}"
        while True:
            page_params = dict(params, limit=min(PAGE_LIMIT, limit - received) if limit else PAGE_LIMIT)
            if token is not None:
                page_params["page_token"] = token
            page: Any = await self.api.call(what, functools.partial(self.api.stocks.get, "/stocks/bars", page_params))
            served = (page or {}).get("bars") or {}
            for symbol, items in served.items():
                self._check_order(symbol, rows[symbol], items or [], descending, what)
                rows[symbol].extend(items or [])
                received += len(items or [])
            token = (page or {}).get("next_page_token")
            if not token or (limit is not None and received >= limit):
                break
            self._check_token(token, rows, what)
        return {symbol: bars_frame(items, tf) for symbol, items in rows.items() if items}

    @staticmethod
    def _check_order(
        symbol: str, have: list[dict[str, Any]], items: list[dict[str, Any]], desc: bool, what: str
    ) -> None:
        times = [pd.Timestamp(i["t"]) for i in items]
        if have:
            times.insert(0, pd.Timestamp(have[-1]["t"]))
        steps = (
            [b > a for a, b in itertools.pairwise(times)] if not desc else [b < a for a, b in itertools.pairwise(times)]
        )
        if not all(steps):
            raise PagingGapError(f"alpaca served {what} out of order for {symbol} (a page repeats or goes back)")

    @staticmethod
    def _check_token(token: str, rows: dict[str, list[dict[str, Any]]], what: str) -> None:
        position = page_token_position(token)
        if position is None:
            return  # an opaque token: nothing to check it against
        symbol, moment = position
        have = rows.get(symbol) or []
        last = pd.Timestamp(have[-1]["t"]).to_pydatetime() if have else None
        if last != moment:
            got = last.isoformat() if last else "no bar"
            raise PagingGapError(
                f"paging gap in alpaca {what}: the next page of {symbol} starts after {moment.isoformat()} "
                f"but the last bar received is {got}; bars in between would be skipped"
            )

    def _timeframe(self, timeframe: str | Timeframe) -> Timeframe:
        try:
            tf = parse_timeframe(timeframe)
        except UnknownTimeframeError:
            raise UnknownTimeframeError(str(timeframe), TIMEFRAMES) from None
        alpaca_timeframe(tf)
        return tf

    # --- options ---

    async def option_chain(
        self,
        underlying: str,
        *,
        expiry: date | None = None,
        right: OptionRight | None = None,
        strike_min: Decimal | None = None,
        strike_max: Decimal | None = None,
    ) -> list[OptionQuote]:
        """The option chain of a listed ``underlying`` with quotes, IV and Greeks (Alpaca's option
        snapshots, the indicative feed on a free plan), filtered as asked, sorted by expiry, strike
        and right. alpaca-py pages the chain (1,000 contracts a page) inside this one call."""
        await self.instrument(underlying)
        query = OptionChainRequest(
            underlying_symbol=underlying,
            expiration_date=expiry,
            type=ContractType(right.value) if right is not None else None,
            strike_price_gte=float(strike_min) if strike_min is not None else None,
            strike_price_lte=float(strike_max) if strike_max is not None else None,
        )
        raw: Any = await self.api.call(
            f"the option chain of {underlying}", functools.partial(self.api.options.get_option_chain, query)
        )
        quotes = [option_quote(symbol, snap) for symbol, snap in (raw or {}).items()]
        return sorted(quotes, key=lambda q: (q.expiry, q.strike, q.right.value))

    # --- LiveVenue ---

    async def market_clock(self) -> dict[str, Any]:
        """Alpaca's market clock: ``{"timestamp", "is_open", "next_open", "next_close"}``."""
        answer: Any = await self.api.call("the market clock", self.api.trading.get_clock)
        return dict(answer)

    async def health(self) -> str:
        listed = await self._load_instruments()
        clock = await self.market_clock()
        state = "open" if clock.get("is_open") else f"closed, opens {clock.get('next_open')}"
        probe = "SPY" if "SPY" in listed else next(iter(listed))
        quotes = await self.snapshot([probe])
        price = f"{probe} {quotes[probe].last:g}" if probe in quotes else f"no {probe} quote"
        parts = [f"{len(listed)} tradable US equities", f"market {state}", f"{price} ({self.config.feed} feed)"]
        broker = self.broker
        if broker is not None:
            account = await broker.account()
            parts.append(f"paper account equity {account.equity:.2f} {account.currency}")
        return "; ".join(parts)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.api.close)
