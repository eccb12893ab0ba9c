"""CcxtVenue: crypto spot and USDT perpetuals of any ccxt exchange, behind the Venue protocol.

- Markets load once (one ``load_markets``) and again after a day on the venue's clock; instruments
  carry the market's real maker/taker fees, amount step, price tick and minimum notional. A
  perpetual's FundingTerms hold the current funding rate, signed (``fetch_funding_rate``, re-read
  hourly when the instrument is asked for), else the assumed default of venues.models.
- ``snapshot``: one ``fetch_tickers`` per market type asked (spot, swap) for the whole batch, quotes
  kept 3 s; per-symbol ``fetch_ticker`` only on an exchange without fetchTickers. A symbol the
  exchange does not answer for is left out and its reason kept in ``quote_problems``.
- ``bars``: ``fetch_ohlcv`` paged by ``since``; every page must start at the bar after the last one
  held. A page that starts later (OKX's history pages hold fewer bars than asked) is asked again
  with a window the venue must fill whole; only a gap the re-request confirms is accepted, and it is
  recorded in ``gaps``. The bar still forming is dropped; final bars are cached (BarsCache), so a
  second call inside the same bar sends nothing.
Every request goes through VenueGuard (retries on transient failures with Retry-After, breaker);
ccxt's own limiter paces them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pandas as pd

from venues.adapters.cache import BarsCache, QuoteCache
from venues.adapters.ccxt import parse
from venues.adapters.ccxt.client import classifier, make_exchange, translator
from venues.adapters.ccxt.config import CcxtConfig
from venues.adapters.resilience import CircuitBreaker, RetryPolicy, VenueGuard
from venues.base import BrokeredVenue
from venues.clock import Clock, ensure_utc
from venues.errors import UnknownSymbolError, UnknownTimeframeError, VenueError
from venues.models import FundingTerms, Instrument, Quote
from venues.timeframes import TIMEFRAMES, Timeframe, parse_timeframe

log = logging.getLogger(__name__)

MARKETS_TTL = timedelta(days=1)
MARKETS_RETRY = timedelta(minutes=10)  # after a failed daily reload
FUNDING_TTL = timedelta(hours=1)
QUOTE_TTL_S = 3.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)
_MAX_PAGES = 500  # a runaway guard (5,000 bars at most are asked: 50 pages of OKX's 100)


def _ms(moment: datetime) -> int:
    return int((moment - _EPOCH) / timedelta(milliseconds=1))


def _from_ms(value: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(value))


def bar_open(moment: datetime, tf: Timeframe) -> datetime:
    """Open time of the bar ``moment`` falls in, on the exchange's UTC grid (weeks from Monday)."""
    origin = _MONDAY if tf.name == "1w" else _EPOCH
    step = tf.delta.to_pytimedelta()
    return origin + ((moment - origin) // step) * step


def last_final_open(now: datetime, tf: Timeframe) -> datetime:
    """Open time of the newest bar closed by ``now``."""
    return bar_open(now, tf) - tf.delta.to_pytimedelta()


class CcxtVenue(BrokeredVenue):
    """Market data of one ccxt exchange; the venue's name is the exchange id (``okx``, ``binance``).
    ``exchange`` replaces the ccxt object built from ``config`` (tests); ``sleep`` is the guard's."""

    def __init__(
        self,
        config: CcxtConfig,
        clock: Clock,
        *,
        exchange: Any | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.name = config.exchange
        self.broker = None
        self.clock = clock
        self.exchange = exchange if exchange is not None else make_exchange(config)
        classify = classifier(self.exchange, clock.now)
        translate = translator(self.name, lambda: list(self._instruments))
        self.guard = VenueGuard(self.name, classify, translate, retry=retry, breaker=breaker, sleep=sleep)
        # Orders are never re-sent blindly: the broker looks an order up before sending it again.
        self.order_guard = VenueGuard(
            self.name, classify, translate, retry=RetryPolicy(attempts=1), breaker=self.guard.breaker, sleep=sleep
        )
        self.quotes: QuoteCache[Quote] = QuoteCache(clock, QUOTE_TTL_S)
        self.bars_cache = BarsCache()
        self.quote_problems: dict[str, str] = {}  # symbol -> why the exchange gave no quote last time
        self.gaps: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
        self._instruments: dict[str, Instrument] = {}
        self._markets_at: datetime | None = None
        self._markets_lock = asyncio.Lock()
        self._funding: dict[str, tuple[datetime, FundingTerms]] = {}
        self._page_limits: dict[str, int] = {}
        self._covered_from: dict[tuple[str, str], datetime] = {}
        self._bar_locks: dict[tuple[str, str], asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"CcxtVenue({self.name!r}, sandbox={self.config.sandbox})"

    # --- markets ---

    async def _markets(self) -> dict[str, Instrument]:
        now = self.clock.now()
        if self._markets_at is not None and now - self._markets_at < MARKETS_TTL:
            return self._instruments
        async with self._markets_lock:
            if self._markets_at is not None and now - self._markets_at < MARKETS_TTL:
                return self._instruments
            reload = self._markets_at is not None
            try:
                markets = await self.guard.call("load_markets", lambda: self.exchange.load_markets(reload=reload))
            except VenueError as exc:
                if not reload:
                    raise
                # Yesterday's markets still trade: keep them and try again in a while.
                log.warning("%s: markets not reloaded, keeping those of %s: %s", self.name, self._markets_at, exc)
                self._markets_at = now - MARKETS_TTL + MARKETS_RETRY
                return self._instruments
            mode = int(self.exchange.precisionMode)
            instruments: dict[str, Instrument] = {}
            for market in markets.values():
                if not parse.wanted(market, self.config.market_types):
                    continue
                funding = self._funding.get(market["symbol"])
                instruments[market["symbol"]] = parse.instrument(
                    self.name, market, mode, funding[1] if funding else None
                )
            if not instruments:
                kinds = " and ".join(self.config.market_types)
                raise VenueError(f"{self.name} lists no active {kinds} markets (TRADEOPS_CCXT_MARKETS)")
            self._instruments = instruments
            self._markets_at = now
            return instruments

    async def instruments(self) -> list[Instrument]:
        return list((await self._markets()).values())

    async def instrument(self, symbol: str) -> Instrument:
        """The instrument, or UnknownSymbolError naming the valid symbols. A perpetual's funding rate
        is re-read when an hour old (a failure keeps the last known or assumed rate, logged)."""
        instruments = await self._markets()
        found = instruments.get(symbol)
        if found is None:
            raise UnknownSymbolError(symbol, self.name, instruments)
        if not found.perpetual or not self.exchange.has.get("fetchFundingRate"):
            return found
        now = self.clock.now()
        held = self._funding.get(symbol)
        if held is not None and now - held[0] < FUNDING_TTL:
            return found
        try:
            rate = await self.guard.call("fetch_funding_rate", lambda: self.exchange.fetch_funding_rate(symbol))
        except VenueError as exc:
            log.warning("%s: funding rate of %s not read, keeping %s: %s", self.name, symbol, found.funding, exc)
            self._funding[symbol] = (now, found.funding or parse.ASSUMED_FUNDING)
            return found
        terms = parse.funding_terms(rate, self.name)
        self._funding[symbol] = (now, terms)
        found = found.model_copy(update={"funding": terms})
        self._instruments[symbol] = found
        return found

    def _market_type(self, instrument: Instrument) -> str:
        return "swap" if instrument.perpetual else "spot"

    # --- quotes ---

    async def snapshot(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """Quotes of ``symbols`` in one ``fetch_tickers`` per market type. A symbol the exchange does
        not list is never sent (it would fail the whole batch) and is left out: the screen skips it
        with UnknownSymbolError's message and screens the others. A listed one the exchange does not
        quote is left out too, its reason kept in ``quote_problems``. Transient failures of the batch
        raise VenueUnavailable after the retries."""
        instruments = await self._markets()
        wanted = [symbol for symbol in dict.fromkeys(symbols) if symbol in instruments]
        found, missing = self.quotes.get_many(wanted)
        if missing:
            fetched = await self._fetch_quotes(missing, instruments)
            self.quotes.put_many(fetched)
            found.update(fetched)
        return {symbol: found[symbol] for symbol in wanted if symbol in found}

    async def _fetch_quotes(self, symbols: list[str], instruments: dict[str, Instrument]) -> dict[str, Quote]:
        now = self.clock.now()
        tickers: dict[str, Any] = {}
        problems: dict[str, str] = {}
        if self.exchange.has.get("fetchTickers"):
            by_type: dict[str, list[str]] = {}
            for symbol in symbols:
                by_type.setdefault(self._market_type(instruments[symbol]), []).append(symbol)
            for batch in by_type.values():
                answer = await self.guard.call("fetch_tickers", partial(self.exchange.fetch_tickers, batch))
                tickers.update(answer or {})
        else:
            for symbol in symbols:
                try:
                    tickers[symbol] = await self.guard.call("fetch_ticker", partial(self.exchange.fetch_ticker, symbol))
                except VenueError as exc:
                    problems[symbol] = str(exc)
        quotes: dict[str, Quote] = {}
        for symbol in symbols:
            ticker = tickers.get(symbol)
            made = parse.quote(symbol, ticker, now) if ticker else None
            if made is None:
                problems.setdefault(symbol, f"{self.name} returned no price for {symbol}")
            else:
                quotes[symbol] = made
        for symbol, why in problems.items():
            log.warning("%s: no quote for %s: %s", self.name, symbol, why)
        for symbol in quotes:
            self.quote_problems.pop(symbol, None)
        self.quote_problems.update(problems)
        return quotes

    # --- bars ---

    def timeframes(self) -> list[str]:
        """Our timeframe names the exchange serves natively."""
        return [name for name in TIMEFRAMES if name in (self.exchange.timeframes or {})]

    def _timeframe(self, timeframe: str | Timeframe) -> Timeframe:
        valid = self.timeframes()
        try:
            tf = parse_timeframe(timeframe)
        except UnknownTimeframeError:
            raise UnknownTimeframeError(str(timeframe), valid) from None
        if tf.name not in valid:
            reason = f"{self.name} does not serve {tf.name} bars"
            raise UnknownTimeframeError(tf.name, valid, reason=reason)
        return tf

    async def bars(
        self,
        symbol: str,
        timeframe: str | Timeframe,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Final bars (close_time <= now) with open time in ``[start, end]``, the last ``limit``
        (without start or limit: the last ``config.default_bars``). Raises UnknownSymbolError,
        UnknownTimeframeError, VenueUnavailable."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be zero or more, got {limit}")
        instrument = await self.instrument(symbol)
        tf = self._timeframe(timeframe)
        now = self.clock.now()
        newest = last_final_open(now, tf)
        until = min(newest, bar_open(ensure_utc(end), tf)) if end is not None else newest
        if start is not None:  # the first bar opening at or after start
            begin = ensure_utc(start)
            first = bar_open(begin, tf)
            first = first if first == begin else first + tf.delta.to_pytimedelta()
        else:
            count = limit if limit is not None else self.config.default_bars
            first = until - tf.delta.to_pytimedelta() * max(count - 1, 0)
        span = int((newest - first) / tf.delta.to_pytimedelta()) + 1 if first <= newest else 0
        if span > self.bars_cache.max_bars:
            raise VenueError(
                f"{self.name}: {symbol} {tf.name} from {first:%Y-%m-%d %H:%M} UTC to now is {span} bars; at most "
                f"{self.bars_cache.max_bars} are served live: start later (or fetch history with a backfill)"
            )
        key = (instrument.symbol, tf.name)
        lock = self._bar_locks.setdefault(key, asyncio.Lock())
        async with lock:
            frame = await self._ensure(key, instrument, tf, first, newest, now)
        if frame is None or frame.empty:
            return parse.empty_bars()
        out = frame.loc[(frame.index >= pd.Timestamp(first)) & (frame.index <= pd.Timestamp(until))]
        if limit is not None:
            out = out.iloc[-limit:] if limit else out.iloc[0:0]
        return out

    async def _ensure(
        self,
        key: tuple[str, str],
        instrument: Instrument,
        tf: Timeframe,
        first: datetime,
        newest: datetime,
        now: datetime,
    ) -> pd.DataFrame | None:
        """The cached frame, extended to cover ``[first, newest]`` with as few requests as the cache allows."""
        step = tf.delta.to_pytimedelta()
        covered = self._covered_from.get(key)
        held = self.bars_cache.get(key)
        if covered is None or held is None:
            held = self._keep(key, first, await self._fetch_range(instrument, tf, first, newest))
            return held
        if first < covered:
            held = self._keep(key, first, await self._fetch_range(instrument, tf, first, covered - step))
        if not self.bars_cache.up_to_date(key, now, step):
            resume = self.bars_cache.next_open(key, step) or first
            if resume <= newest:
                held = self._keep(key, None, await self._fetch_range(instrument, tf, resume, newest))
        return held

    def _keep(self, key: tuple[str, str], covered_from: datetime | None, bars: pd.DataFrame) -> pd.DataFrame:
        """Merge into the cache; remember from when the venue was asked (bars before a listing do
        not exist, so the first bar held may be later), unless the cache dropped its oldest bars."""
        held = self.bars_cache.merge(key, bars)
        if covered_from is not None:
            self._covered_from[key] = covered_from
        if len(held) >= self.bars_cache.max_bars:
            self._covered_from[key] = held.index[0].to_pydatetime()
        return held

    def _page_limit(self, instrument: Instrument) -> int:
        kind = self._market_type(instrument)
        learned = self._page_limits.get(kind)
        if learned is not None:
            return learned
        features = (self.exchange.features or {}).get(kind) or {}
        if kind == "swap":
            features = features.get("linear") or features
        try:
            limit = int((features.get("fetchOHLCV") or {}).get("limit") or 500)
        except (TypeError, ValueError):
            limit = 500
        self._page_limits[kind] = limit
        return limit

    async def _page(self, symbol: str, tf: Timeframe, since: datetime, limit: int) -> list[list[Any]]:
        rows = await self.guard.call(
            f"fetch_ohlcv {symbol} {tf.name}",
            lambda: self.exchange.fetch_ohlcv(symbol, tf.name, since=_ms(since), limit=limit),
        )
        # Newest-first answers (OKX) are sorted; rows before `since` are not this page's.
        return sorted((r for r in rows or [] if int(r[0]) >= _ms(since)), key=lambda r: int(r[0]))

    async def _fetch_range(
        self, instrument: Instrument, tf: Timeframe, first: datetime, last: datetime
    ) -> pd.DataFrame:
        """Final bars opening in ``[first, last]``, paged by ``since``, each page checked to continue
        the previous one."""
        symbol = instrument.symbol
        step = tf.delta.to_pytimedelta()
        step_ms = int(step / timedelta(milliseconds=1))
        rows: list[list[Any]] = []
        expected = first
        for _ in range(_MAX_PAGES):
            if expected > last:
                break
            limit = self._page_limit(instrument)
            page = await self._page(symbol, tf, expected, limit)
            if page and _from_ms(page[0][0]) != expected:
                # Fewer bars than asked come from the far end of the window (OKX history pages), or
                # the venue really has no bars here: ask for a window the venue must fill whole.
                retry_limit = max(1, min(len(page), limit))
                again = await self._page(symbol, tf, expected, retry_limit)
                if again and _from_ms(again[0][0]) == expected:
                    if retry_limit < limit:
                        log.info("%s: %s pages hold %d bars, not %d", self.name, symbol, retry_limit, limit)
                        self._page_limits[self._market_type(instrument)] = retry_limit
                    page = again
                else:
                    page = again or page
                    if rows:  # before the first bar held it is the listing date, not a gap
                        gap = (expected, _from_ms(page[0][0]))
                        self.gaps.setdefault((symbol, tf.name), []).append(gap)
                        log.warning(
                            "%s: %s %s has no bars from %s to %s (confirmed by a second request)",
                            self.name,
                            symbol,
                            tf.name,
                            gap[0].isoformat(),
                            gap[1].isoformat(),
                        )
            if not page:
                break
            # A hole inside the page ends it there: the next request starts at the hole and must
            # confirm it like any page that begins late.
            hole = next((i for i in range(1, len(page)) if int(page[i][0]) - int(page[i - 1][0]) != step_ms), None)
            if hole is not None:
                page = page[:hole]
            rows.extend(page)
            after = _from_ms(page[-1][0]) + step
            if after <= expected:  # no progress: the venue repeats itself
                break
            expected = after
        else:
            raise VenueError(f"{self.name}: {symbol} {tf.name} bars did not end after {_MAX_PAGES} pages")
        frame = parse.bars_frame(rows, tf)
        return frame.loc[frame.index <= pd.Timestamp(last)]

    # --- LiveVenue ---

    async def health(self) -> str:
        """Markets loaded, one quote, and the sandbox balance when orders go to the exchange."""
        instruments = await self._markets()
        symbol = next((s for s in ("BTC/USDT", "BTC/USDT:USDT") if s in instruments), next(iter(instruments)))
        quote = (await self.snapshot([symbol])).get(symbol)
        seen = f"{symbol} last {quote.last:g}" if quote else f"no quote for {symbol}"
        spot = sum(1 for i in instruments.values() if not i.perpetual)
        line = f"{len(instruments)} markets ({spot} spot, {len(instruments) - spot} USDT perpetuals); {seen}"
        account = getattr(self.broker, "exchange_balance", None)
        if account is not None:
            line += f"; sandbox account: {await account()}"
        else:
            line += "; orders: paper broker on the exchange's rules"
        return line

    async def aclose(self) -> None:
        await self.exchange.close()
