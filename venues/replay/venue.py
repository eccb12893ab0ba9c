"""ReplayVenue: market data over real recorded bars shipped in the package, seen through an
injected clock (the cut at ``clock.now()`` lives in venues.recorded)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from venues.clock import Clock
from venues.errors import UnknownSymbolError
from venues.models import Instrument
from venues.recorded import BarSeries, RecordedBarsVenue
from venues.replay.catalog import DATA_DIR, MARKETS, ReplayMarket, ReplaySeries, find_market
from venues.replay.loader import load_bar_file
from venues.timeframes import parse_timeframe


@cache
def _load_series(path: str, stamp: tuple[int, int], timeframe: str, calendar: str) -> BarSeries:
    """Parsed once per process; ``stamp`` (mtime, size) makes an edited user file load afresh."""
    del stamp  # part of the cache key only
    native = load_bar_file(path, timeframe=timeframe, calendar=calendar)
    return BarSeries.build(native, parse_timeframe(timeframe), calendar)


class ReplayVenue(RecordedBarsVenue):
    """Market data for one replay market ("crypto", "cn", "us"), cut at ``clock.now()``.

    ``data_dir`` replaces the shipped data directory; it must hold files named as in the catalog
    (only those of the symbols actually asked for). Orders go through ``broker`` once the
    application attaches one (a PaperBroker); until then the order methods raise VenueError.
    """

    def __init__(self, market: str, clock: Clock, *, data_dir: Path | None = None) -> None:
        self._market: ReplayMarket = find_market(market)
        self.name = self._market.venue
        self.broker = None
        self.clock = clock
        self.data_dir = DATA_DIR if data_dir is None else Path(data_dir)
        self._specs: dict[str, ReplaySeries] = {s.instrument.symbol: s for s in self._market.series}
        # Files load on first use of a symbol, so creating a venue costs nothing.
        self._loaded: dict[str, BarSeries] = {}

    @staticmethod
    def markets() -> list[str]:
        return list(MARKETS)

    @property
    def market(self) -> str:
        return self._market.key

    @property
    def calendar(self) -> str:
        return self._market.calendar

    def __repr__(self) -> str:
        return f"ReplayVenue({self._market.key!r}, data_dir={str(self.data_dir)!r})"

    def _spec(self, symbol: str) -> ReplaySeries:
        try:
            return self._specs[symbol]
        except (KeyError, TypeError):
            raise UnknownSymbolError(str(symbol), self.name, self._specs) from None

    def series(self, symbol: str) -> BarSeries:
        series = self._loaded.get(symbol)
        if series is None:
            spec = self._spec(symbol)
            path = (self.data_dir / spec.file).resolve()
            try:
                st = os.stat(path)
                stamp = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = (0, 0)  # the loader reports the missing file
            series = _load_series(str(path), stamp, spec.instrument.timeframe, spec.instrument.calendar)
            self._loaded[symbol] = series
        return series

    # --- RecordedBarsVenue ---

    def instrument_of(self, symbol: str) -> Instrument:
        return self._spec(symbol).instrument

    async def instruments(self) -> list[Instrument]:
        return [s.instrument for s in self._market.series]

    async def instrument(self, symbol: str) -> Instrument:
        return self._spec(symbol).instrument
