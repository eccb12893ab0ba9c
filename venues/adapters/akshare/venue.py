"""AkshareVenue: China A-shares and ETFs (Eastmoney) and SHFE main-contract futures (Sina), the
sources akshare reads, behind the MarketData protocol; orders go to the attached PaperBroker.

Every request goes through one VenueGuard paced at ``config.rate_per_second`` (Eastmoney bans an
IP that calls too often); the universe listing is kept for a day, quotes for 3 s, and final bars
for good (BarsCache), so a second scan inside one bar sends no bar request at all.

Bars continue the held ones only when the venue's answer contains the last bar held (each answer is
asked from that bar on) at the same price (forward-adjusted prices move back in time at each
ex-dividend day: then the whole depth is asked again). An answer that starts later left a hole
(Sina serves only its latest ~1000 minute bars, Eastmoney only some months of minute bars): the
hole is logged and kept in ``gaps``, and the held bars are replaced by the answer rather than
joined across it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pandas as pd
import requests

from venues.adapters.akshare import instruments as ins
from venues.adapters.akshare.config import AkshareConfig
from venues.adapters.akshare.http import A_SHARES_FS, ETFS_FS, AkshareHttp, BadAnswer, NoData
from venues.adapters.akshare.parse import ParseError, eastmoney_klines, local_date_param, number, sina_bars
from venues.adapters.cache import BarsCache, QuoteCache
from venues.adapters.resilience import Transient, VenueGuard, retry_after_seconds
from venues.base import BrokeredVenue
from venues.clock import Clock
from venues.errors import UnknownSymbolError, UnknownTimeframeError, VenueError
from venues.models import AssetClass, Instrument, Quote
from venues.timeframes import Timeframe, parse_timeframe, resample

log = logging.getLogger(__name__)
T = TypeVar("T")

QUOTE_TTL = 3.0  # seconds
UNIVERSE_TTL = timedelta(days=1)
QUOTES_PER_REQUEST = 100
DEFAULT_BARS = 500  # bars asked for when a request gives neither start nor limit

# What each source serves natively; other timeframes are resampled on XSHG sessions from these.
_EQUITY_KLT = {"5m": "5", "15m": "15", "30m": "30", "1h": "60", "1d": "101"}
_FUTURES_PERIOD = {"1m": "1", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "1d": "daily"}
_RESAMPLED_FROM = {"4h": "1h", "1w": "1d"}
_TRADING_MINUTES = 240  # an A-share session: 09:30-11:30, 13:00-15:00


class AkshareVenue(BrokeredVenue):
    def __init__(
        self,
        config: AkshareConfig,
        clock: Clock,
        *,
        http: AkshareHttp | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = ins.VENUE
        self.broker = None
        self.config = config
        self.clock = clock
        self.http = http or AkshareHttp(config)
        self.guard = VenueGuard(
            self.name, self._classify, self._translate, rate_per_second=config.rate_per_second, sleep=sleep
        )
        self.quotes: QuoteCache[Quote] = QuoteCache(clock, QUOTE_TTL)
        self.bars_cache = BarsCache()
        self.gaps: list[str] = []  # holes found between held bars and the venue's answer
        self._universe: dict[str, Instrument] = {}
        self._by_upper: dict[str, str] = {}
        self._universe_at: datetime | None = None
        self._universe_lock = asyncio.Lock()
        self._asked_from: dict[tuple[str, str], datetime] = {}
        self._empty_at: dict[tuple[str, str], datetime] = {}  # when the venue last had no bars at all

    def __repr__(self) -> str:
        return f"AkshareVenue(rate={self.config.rate_per_second}/s, adjust={self.config.adjust or 'none'!r})"

    # --- requests ---

    async def _request(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        return await self.guard.call(what, lambda: asyncio.to_thread(fn, *args))

    def _classify(self, exc: BaseException) -> Transient | None:
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            if status == 429 or status >= 500:
                after = retry_after_seconds(exc.response.headers.get("Retry-After"), now=self.clock.now())
                return Transient(after)
            return None
        if isinstance(exc, (requests.ConnectionError, requests.Timeout, BadAnswer)):
            return Transient()
        return None

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            hint = (
                "; Eastmoney refuses an IP that called too often: lower TRADEOPS_AKSHARE_RATE and wait"
                if status in (403, 418)
                else ""
            )
            return VenueError(f"akshare: {exc.response.url.split('?')[0]} refused the request (HTTP {status}){hint}")
        if isinstance(exc, NoData):
            return VenueError(f"akshare: the venue has no bars for {exc} (delisted, or not listed yet)")
        if isinstance(exc, ParseError):
            return VenueError(f"akshare: {exc}")
        return exc

    # --- instruments ---

    async def _load_universe(self) -> None:
        now = self.clock.now()
        if self._universe_at is not None and now - self._universe_at < UNIVERSE_TTL:
            return
        async with self._universe_lock:
            if self._universe_at is not None and now - self._universe_at < UNIVERSE_TTL:
                return
            universe: dict[str, Instrument] = {}
            quotes: dict[str, Quote] = {}
            for board, fs in (("A-shares", A_SHARES_FS), ("ETFs", ETFS_FS)):
                for row in await self._listing(board, fs):
                    symbol, instrument, quote = self._listed(row, now)
                    if symbol is None or instrument is None:
                        continue
                    universe[symbol] = instrument
                    if quote is not None:
                        quotes[symbol] = quote
            for future in self.config.futures:
                instrument = ins.future_instrument(future)
                universe[instrument.symbol] = instrument
            self._universe = universe
            self._by_upper = {symbol.upper(): symbol for symbol in universe}
            self._universe_at = now
            self.quotes.put_many(quotes)

    async def _listing(self, board: str, fs: str) -> list[dict[str, Any]]:
        rows, total = await self._request(f"the {board} listing, page 1", self.http.listing_page, fs, 1)
        pages = math.ceil(total / len(rows)) if rows else 0
        for page in range(2, pages + 1):
            more, _ = await self._request(f"the {board} listing, page {page}", self.http.listing_page, fs, page)
            rows.extend(more)
        return rows

    def _listed(self, row: dict[str, Any], now: datetime) -> tuple[str | None, Instrument | None, Quote | None]:
        code, market, name = str(row.get("f12", "")), row.get("f13"), str(row.get("f14", ""))
        try:
            symbol = ins.equity_symbol(code, int(market))  # type: ignore[arg-type]
            instrument = ins.equity_instrument(symbol, name)
        except (TypeError, ValueError):
            log.warning("akshare: skipping a listing row that is not an A-share or ETF: %r", row)
            return None, None, None
        return instrument.symbol, instrument, self._quote(instrument.symbol, row, now)

    def _quote(self, symbol: str, row: dict[str, Any], now: datetime) -> Quote | None:
        last = number(row.get("f2"))
        if last is None:  # suspended, or before the first trade
            return None
        stamp = number(row.get("f124"))
        lots = number(row.get("f5"))
        return Quote(
            symbol=symbol,
            ts=datetime.fromtimestamp(stamp, UTC) if stamp else now,
            last=last,
            volume=None if lots is None else lots * 100,
            change_pct=number(row.get("f3")),
        )

    async def instruments(self) -> list[Instrument]:
        await self._load_universe()
        return list(self._universe.values())

    async def instrument(self, symbol: str) -> Instrument:
        await self._load_universe()
        found = self._by_upper.get(str(symbol).strip().upper())
        if found is None:
            raise UnknownSymbolError(str(symbol), self.name, self._universe)
        return self._universe[found]

    # --- quotes ---

    async def snapshot(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """Latest quotes: A-shares and ETFs in one batched request per 100 symbols, a future from
        its latest final minute bar. Symbols the venue does not list or quote (delisted,
        suspended) are left out and logged; they never fail the others."""
        wanted = list(dict.fromkeys(symbols))
        await self._load_universe()
        found, missing = self.quotes.get_many(wanted)
        equities: list[Instrument] = []
        futures: list[Instrument] = []
        for symbol in missing:
            known = self._by_upper.get(symbol.strip().upper())
            if known is None:
                log.warning("akshare: no quote for %s: the venue does not list it", symbol)
                continue
            instrument = self._universe[known]
            (futures if instrument.asset_class is AssetClass.CN_FUTURE else equities).append(instrument)
        fresh: dict[str, Quote] = {}
        now = self.clock.now()
        for i in range(0, len(equities), QUOTES_PER_REQUEST):
            chunk = equities[i : i + QUOTES_PER_REQUEST]
            by_secid = {ins.secid(x.symbol): x.symbol for x in chunk}
            rows = await self._request(f"quotes of {len(chunk)} symbols", self.http.quotes, list(by_secid))
            for row in rows:
                quoted = by_secid.get(f"{row.get('f13')}.{row.get('f12')}")
                quote = self._quote(quoted, row, now) if quoted else None
                if quoted and quote:
                    fresh[quoted] = quote
        for instrument in futures:
            bars = await self.bars(instrument.symbol, instrument.timeframe, limit=1)
            if len(bars):
                fresh[instrument.symbol] = Quote(
                    symbol=instrument.symbol,
                    ts=bars["close_time"].iloc[-1].to_pydatetime(),
                    last=float(bars["close"].iloc[-1]),
                )
        for symbol in (s for s in missing if s not in fresh):
            log.info("akshare: no quote for %s (suspended, or not traded yet)", symbol)
        self.quotes.put_many(fresh)
        return {s: q for s in wanted if (q := found.get(s) or fresh.get(s)) is not None}

    # --- bars ---

    def _source(self, instrument: Instrument, tf: Timeframe) -> Timeframe:
        native = _FUTURES_PERIOD if instrument.asset_class is AssetClass.CN_FUTURE else _EQUITY_KLT
        if tf.name in native:
            return tf
        if tf.name in _RESAMPLED_FROM:
            return parse_timeframe(_RESAMPLED_FROM[tf.name])
        valid = [*native, *_RESAMPLED_FROM]
        raise UnknownTimeframeError(
            tf.name, valid, reason=f"akshare serves {instrument.symbol} from {next(iter(native))} bars, not {tf.name}"
        )

    async def bars(
        self,
        symbol: str,
        timeframe: str | Timeframe,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Final bars (close_time <= now) opening in ``[start, end]``, the last ``limit`` of them.
        Native: 5m, 15m, 30m, 1h, 1d for A-shares (prices as ``config.adjust``), 1m to 1h and 1d
        for futures; 4h and 1w are resampled on XSHG sessions from 1h and 1d."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be zero or more, got {limit}")
        instrument = await self.instrument(symbol)
        tf = parse_timeframe(timeframe)
        source = self._source(instrument, tf)
        now = self.clock.now()
        depth = (limit or DEFAULT_BARS) * max(1, round(tf.delta / source.delta))
        need_from = start if start is not None else self._depth_start(source, depth, end or now)
        frame = await self._ensure(instrument, source, need_from, now)
        if source.name != tf.name:
            frame = resample(frame, tf, calendar=instrument.calendar, complete_at=pd.Timestamp(now))
        frame = frame[frame["close_time"] <= pd.Timestamp(now)]
        if start is not None:
            frame = frame[frame.index >= pd.Timestamp(start)]
        if end is not None:
            frame = frame[frame.index <= pd.Timestamp(end)]
        if limit is not None:
            frame = frame.iloc[-limit:] if limit else frame.iloc[0:0]
        return frame

    @staticmethod
    def _depth_start(source: Timeframe, bars: int, until: datetime) -> datetime:
        """A start date early enough for ``bars`` bars before ``until``: trading days from bars,
        then calendar days at 5 trading days a week, plus a margin for holidays."""
        per_day = 1 if source.delta >= timedelta(days=1) else max(1, _TRADING_MINUTES * 60 // source.seconds)
        trading_days = math.ceil(bars / per_day)
        return until - timedelta(days=math.ceil(trading_days * 7 / 5) + 10)

    async def _ensure(self, instrument: Instrument, tf: Timeframe, need_from: datetime, now: datetime) -> pd.DataFrame:
        key = (instrument.symbol, tf.name)
        held = self.bars_cache.get(key)
        if held is None or held.empty:
            empty_at = self._empty_at.get(key)
            if held is not None and empty_at is not None and now < empty_at + tf.delta:
                return held  # the venue had none a moment ago: no new bar can have closed since
            page = await self._fetch(instrument, tf, need_from, now)
            self._asked_from[key] = need_from
            frame = self.bars_cache.merge(key, _final(page, now))
            if frame.empty:
                self._empty_at[key] = now
            return frame
        is_window = instrument.asset_class is AssetClass.CN_FUTURE and tf.name != "1d"
        first = held.index[0].to_pydatetime()
        if not is_window and need_from < self._asked_from.get(key, first) and need_from < first:
            # Deeper history than held: ask from there up to the first bar held, which must be in it.
            older = _final(await self._fetch(instrument, tf, need_from, first), now)
            self._asked_from[key] = need_from
            if len(older) and held.index[0] not in older.index:
                self._gap(instrument.symbol, tf, f"older bars end at {older.index[-1]}, held ones start at {first}")
            held = self.bars_cache.merge(key, older)
        if self.bars_cache.up_to_date(key, now, tf.delta):
            return held
        last = held.index[-1]
        page = _final(await self._fetch(instrument, tf, last.to_pydatetime(), now), now)
        if len(page) and last not in page.index:
            self._gap(instrument.symbol, tf, f"held bars end at {last}, the venue's answer starts at {page.index[0]}")
            self.bars_cache.drop(key)
        elif last in page.index and not math.isclose(page.at[last, "close"], held.at[last, "close"], rel_tol=1e-9):
            # Forward-adjusted (qfq) prices are rebased at each ex-dividend day: every held bar is
            # stale then, so the whole depth is asked again rather than joined at a price jump.
            log.info("akshare: %s %s prices were re-adjusted; fetching them again", instrument.symbol, tf.name)
            self.bars_cache.drop(key)
            since = self._asked_from.get(key, held.index[0].to_pydatetime())
            page = _final(await self._fetch(instrument, tf, since, now), now)
        return self.bars_cache.merge(key, page)

    def _gap(self, symbol: str, tf: Timeframe, detail: str) -> None:
        message = f"{symbol} {tf.name}: gap between held bars and the venue's answer ({detail})"
        log.warning("akshare: %s; keeping the venue's answer only", message)
        self.gaps.append(message)

    async def _fetch(self, instrument: Instrument, tf: Timeframe, since: datetime, until: datetime) -> pd.DataFrame:
        symbol = instrument.symbol
        what = f"{tf.name} bars of {symbol}"
        if instrument.asset_class is AssetClass.CN_FUTURE:
            sina = ins.sina_symbol(symbol)
            period = _FUTURES_PERIOD[tf.name]
            if period == "daily":
                rows = await self._request(what, self.http.futures_daily, sina)
                return sina_bars(rows, None, what=what)
            rows = await self._request(what, self.http.futures_minutes, sina, period)
            return sina_bars(rows, tf.delta.to_pytimedelta(), what=what)
        klt = _EQUITY_KLT[tf.name]
        beg, end = local_date_param(since), local_date_param(until)
        lines = await self._request(what, self.http.klines, ins.secid(symbol), klt, self.config.adjust, beg, end)
        bar = None if tf.name == "1d" else tf.delta.to_pytimedelta()
        return eastmoney_klines(lines, bar, what=what)

    # --- trade calendar ---

    async def trade_days(self) -> list[date]:
        """A-share trading days since 1990 and through the year the exchange has published, from
        akshare's trade calendar (Sina's file, decoded by akshare: tool_trade_date_hist_sina)."""
        try:
            frame = await self._request("the A-share trade calendar", _trade_calendar)
        except VenueError:
            raise
        except Exception as exc:  # akshare's decoder met something that is not Sina's calendar
            raise VenueError(f"akshare: the trade calendar could not be read: {type(exc).__name__}: {exc}") from exc
        try:
            return sorted({pd.Timestamp(value).date() for value in frame["trade_date"]})
        except (KeyError, ValueError, TypeError) as exc:
            raise VenueError(f"akshare: the trade calendar has no trade_date dates: {exc}") from exc

    # --- LiveVenue ---

    async def health(self) -> str:
        instruments = await self.instruments()
        futures = [i.symbol for i in instruments if i.asset_class is AssetClass.CN_FUTURE]
        probe = "600519.SH" if "600519.SH" in self._universe else next(iter(self._universe), None)
        quoted = await self.snapshot([probe]) if probe else {}
        quote = f"; {probe} last {quoted[probe].last}" if probe in quoted else f"; no quote for {probe} now"
        return (
            f"{len(instruments) - len(futures)} A-shares and ETFs listed, SHFE {', '.join(futures)}{quote}; "
            f"paced at {self.config.rate_per_second:g} requests/s"
        )

    async def aclose(self) -> None:
        await asyncio.to_thread(self.http.close)


def _trade_calendar() -> pd.DataFrame:
    # akshare's package import is heavy (seconds): only when the calendar is asked for.
    from akshare.tool.trade_date_hist import tool_trade_date_hist_sina

    return tool_trade_date_hist_sina()


def _final(bars: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """The bars that are final at ``now``: the one still forming is dropped."""
    return bars[bars["close_time"] <= pd.Timestamp(now)]
