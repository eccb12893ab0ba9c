"""An n-symbol universe made from the shipped real replay series, for scan and screen benchmarks.

``build_universe(n, clock)`` returns a ``MarketData`` (venue name ``"universe"``) whose symbol ``i``
(0-based) is named ``U<i>:<source>``, e.g. ``U0009:ETH/USDT``, and is:

- **source** ``j = i % S``: the i-th symbol takes the shipped series in catalog order, cycling
  (S = 8 with all markets: BTC/USD, ETH/USDT, 510300.SH, 600519.SH, 601318.SH, 000001.SZ, AMZN,
  SPY; ``markets=`` restricts them);
- **time offset** ``d_i``: the symbol shows its source *as it was* ``d_i`` earlier, with every
  timestamp moved forward by ``d_i``. At clock time T its latest bar is the source's latest final
  bar at ``T - d_i``, relabelled to end at or before T. Offsets are whole days for 24/7 series and
  whole weeks for exchange series (so sessions stay on weekdays; holidays do not move with them).
  With ``k = i // S`` (the k-th copy of that source) the offset is ``(k * 37) % (m + 1)`` units,
  where ``m`` is half the source's history before the clock's time *when the universe is built*
  (its recorded span if the clock is past its end), in whole units. So at that time every symbol
  has a quote and at least half the history its source has then. Built at 2021-08-12T20:00Z (the
  screen benchmark's moment, inside SPY's six recorded weeks): 0..111 days for the crypto pairs,
  0..68 weeks for the daily A-shares, 0..8 weeks for 510300.SH, 0..15 weeks for AMZN, 0..3 weeks
  for SPY. Before a source's first bar ``m`` is 0;
- **price scale** ``s_i = 0.5 + frac(i * golden ratio)`` rounded to 4 places, in [0.5, 1.5): open,
  high, low, close (and bid/ask) are multiplied by it; volume and change_pct are unchanged.

RSI, ADX and the other rules are scale-free, so two symbols with the same source and offset screen
alike; with n = 1,000 built at 2021-08-12T20:00Z there are 460 distinct (source, offset) paths. Everything is served
through ``ReplayVenue`` (one per market and offset, sharing its per-process cache of parsed files
and resampled frames), so bars are final-only and daily bars are sessions, as in the replay venue.
``snapshot`` is one call for any number of symbols. Nothing here is random: the same ``n`` gives the
same universe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd

from venues.base import MarketData
from venues.clock import Clock
from venues.errors import UnknownSymbolError
from venues.models import Instrument, Quote
from venues.replay import MARKETS, ReplayVenue
from venues.timeframes import BAR_COLUMNS, Timeframe

GOLDEN = (math.sqrt(5) - 1) / 2
_PRICES = ["open", "high", "low", "close"]


class _OffsetClock:
    """``clock`` seen ``offset`` earlier."""

    def __init__(self, clock: Clock, offset: timedelta) -> None:
        self._clock = clock
        self._offset = offset

    def now(self) -> datetime:
        return self._clock.now() - self._offset

    async def sleep_until(self, moment: datetime) -> None:
        await self._clock.sleep_until(moment + self._offset)


class _Member:
    __slots__ = ("instrument", "market", "offset", "scale", "source")

    def __init__(self, instrument: Instrument, market: str, source: str, offset: timedelta, scale: float) -> None:
        self.instrument = instrument
        self.market = market
        self.source = source
        self.offset = offset
        self.scale = scale


class UniverseMarket:
    """MarketData over offset, scaled copies of the shipped series; see the module docstring."""

    def __init__(self, clock: Clock, members: Sequence[_Member], name: str = "universe") -> None:
        self.name = name
        self.clock = clock
        self._members = {m.instrument.symbol: m for m in members}
        self._venues: dict[tuple[str, timedelta], ReplayVenue] = {}

    def _member(self, symbol: str) -> _Member:
        try:
            return self._members[symbol]
        except (KeyError, TypeError):
            raise UnknownSymbolError(str(symbol), self.name, self._members) from None

    def _venue(self, member: _Member) -> ReplayVenue:
        key = (member.market, member.offset)
        venue = self._venues.get(key)
        if venue is None:
            venue = self._venues[key] = ReplayVenue(member.market, _OffsetClock(self.clock, member.offset))
        return venue

    async def instruments(self) -> list[Instrument]:
        return [m.instrument for m in self._members.values()]

    async def instrument(self, symbol: str) -> Instrument:
        return self._member(symbol).instrument

    async def snapshot(self, symbols: Sequence[str]) -> dict[str, Quote]:
        members = [self._member(s) for s in symbols]  # an unknown symbol fails the whole call
        groups: dict[tuple[str, timedelta], list[_Member]] = {}
        for m in members:
            groups.setdefault((m.market, m.offset), []).append(m)
        found: dict[str, Quote] = {}
        for group in groups.values():
            quotes = await self._venue(group[0]).snapshot(list(dict.fromkeys(m.source for m in group)))
            for m in group:
                q = quotes.get(m.source)
                if q is not None:
                    found[m.instrument.symbol] = q.model_copy(
                        update={
                            "symbol": m.instrument.symbol,
                            "ts": q.ts + m.offset,
                            "last": q.last * m.scale,
                            "bid": None if q.bid is None else q.bid * m.scale,
                            "ask": None if q.ask is None else q.ask * m.scale,
                        }
                    )
        return {s: found[s] for s in symbols if s in found}

    async def bars(
        self,
        symbol: str,
        timeframe: str | Timeframe,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        m = self._member(symbol)
        d = m.offset
        frame = await self._venue(m).bars(
            m.source,
            timeframe,
            start=None if start is None else start - d,
            end=None if end is None else end - d,
            limit=limit,
        )
        # Built from arrays (positional, no index alignment): this wrapper should cost the
        # benchmark little more than the replay venue itself.
        columns: dict[str, object] = {c: frame[c].to_numpy() * m.scale for c in _PRICES}
        columns["volume"] = frame["volume"].to_numpy()
        columns["close_time"] = (pd.DatetimeIndex(frame["close_time"]) + d).array
        return pd.DataFrame(columns, index=frame.index + d, columns=BAR_COLUMNS)


def build_universe(n: int, clock: Clock, *, markets: Sequence[str] | None = None) -> MarketData:
    """An ``n``-symbol universe over the shipped series of ``markets`` (default all), on ``clock``."""
    if n < 1:
        raise ValueError(f"a universe needs at least one symbol, got n={n}")
    keys = list(MARKETS) if markets is None else [k.strip().lower() for k in markets]
    unknown = [k for k in keys if k not in MARKETS]
    if unknown:
        raise ValueError(f"unknown replay market(s) {unknown}; valid: {', '.join(MARKETS)}")
    now = clock.now()
    sources: list[tuple[str, Instrument, timedelta, int]] = []  # market, instrument, offset unit, max units
    for key in keys:
        probe = ReplayVenue(key, clock)
        for series in MARKETS[key].series:
            inst = series.instrument
            first, last = probe.available_range(inst.symbol)
            unit = timedelta(days=1) if inst.calendar == "24/7" else timedelta(weeks=1)
            history = max(timedelta(0), min(now, last) - first)
            sources.append((key, inst, unit, int(history / 2 // unit)))
    width = max(4, len(str(n - 1)))
    members: list[_Member] = []
    for i in range(n):
        market, inst, unit, most = sources[i % len(sources)]
        offset = unit * ((i // len(sources) * 37) % (most + 1))
        scale = round(0.5 + (i * GOLDEN) % 1.0, 4)
        symbol = f"U{i:0{width}d}:{inst.symbol}"
        shown = f"{inst.name or inst.symbol}, {offset.days} days back, prices x{scale}"
        member_inst = inst.model_copy(update={"venue": "universe", "symbol": symbol, "name": shown})
        members.append(_Member(member_inst, market, inst.symbol, offset, scale))
    return UniverseMarket(clock, members)
