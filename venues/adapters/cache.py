"""Caches every adapter shares: latest quotes for a few seconds, final bars for good.

- :class:`QuoteCache`: a TTL cache (cachetools) timed by the venue's clock, so a scan and the graph
  walks right after it share one tickers call.
- :class:`BarsCache`: final bars never change, so they are kept (LRU over symbol x timeframe) and a
  request asks the venue only for what it does not hold: nothing at all until the next bar can have
  closed, then the bars after the last one held.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

import pandas as pd
from cachetools import LRUCache, TTLCache

from venues.clock import Clock
from venues.timeframes import BAR_COLUMNS

V = TypeVar("V")


class QuoteCache(Generic[V]):
    """Values by symbol for ``ttl`` seconds of the clock's time."""

    def __init__(self, clock: Clock, ttl: float, *, maxsize: int = 20_000) -> None:
        self._cache: TTLCache[str, V] = TTLCache(maxsize=maxsize, ttl=ttl, timer=lambda: clock.now().timestamp())

    def get_many(self, symbols: Iterable[str]) -> tuple[dict[str, V], list[str]]:
        """(the cached values, the symbols missing), in the order asked."""
        found: dict[str, V] = {}
        missing: list[str] = []
        for symbol in symbols:
            value = self._cache.get(symbol)
            if value is None:
                missing.append(symbol)
            else:
                found[symbol] = value
        return found, missing

    def put_many(self, values: dict[str, V]) -> None:
        for symbol, value in values.items():
            self._cache[symbol] = value

    def clear(self) -> None:
        self._cache.clear()


class BarsCache:
    """Final bar frames (layout of venues.timeframes) by key, e.g. (symbol, timeframe); at most
    ``max_bars`` newest bars per key and ``maxsize`` keys (least recently used dropped first)."""

    def __init__(self, *, maxsize: int = 1024, max_bars: int = 5000) -> None:
        self._frames: LRUCache[Hashable, pd.DataFrame] = LRUCache(maxsize=maxsize)
        self.max_bars = max_bars

    def get(self, key: Hashable) -> pd.DataFrame | None:
        return self._frames.get(key)

    def next_open(self, key: Hashable, bar: timedelta) -> datetime | None:
        """Open time of the first bar not held (ask the venue from here); None when nothing is held."""
        frame = self._frames.get(key)
        if frame is None or frame.empty:
            return None
        return (frame.index[-1] + bar).to_pydatetime()

    def up_to_date(self, key: Hashable, now: datetime, bar: timedelta) -> bool:
        """Whether no new bar can have closed since the last one held (its close plus one bar > now).
        Sessions make this conservative: after a session ends it says "ask", and the venue answers
        with nothing new."""
        frame = self._frames.get(key)
        if frame is None or frame.empty:
            return False
        last_close = frame["close_time"].iloc[-1].to_pydatetime()
        return now < last_close + bar

    def merge(self, key: Hashable, bars: pd.DataFrame) -> pd.DataFrame:
        """Add final bars (a newer copy of a bar replaces the held one) and return the held frame."""
        held = self._frames.get(key)
        if held is not None and not held.empty and not bars.empty:
            frame = pd.concat([held, bars[BAR_COLUMNS]])
            frame = frame[~frame.index.duplicated(keep="last")].sort_index()
        elif bars.empty and held is not None:
            frame = held
        else:
            frame = bars[BAR_COLUMNS].sort_index()
        if len(frame) > self.max_bars:
            frame = frame.iloc[-self.max_bars :]
        self._frames[key] = frame
        return frame
