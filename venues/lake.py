"""LakeVenue: market data served from the bars lake (`tradeops backfill`), replay-style.

Like the replay venue it is cut at the injected clock's ``now()`` by bar close time, so a backtest
or a simulated run over lake data never sees a bar that closes after now. Where the lake holds a
symbol in several timeframes, the finest is the native one; a coarser timeframe the lake has is
served as the venue recorded it, any other is resampled from the finest on the instrument's
calendar.

The lake's storage format is not known here (``venues`` imports no other package): the
application hands in one ``LakeSeries`` per dataset, with a loader.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from venues.clock import Clock
from venues.errors import UnknownSymbolError
from venues.models import Instrument
from venues.recorded import BarSeries, RecordedBarsVenue
from venues.timeframes import parse_timeframe

LAKE_VENUE = "lake"


@dataclass(frozen=True, slots=True)
class LakeSeries:
    source: str  # the venue the bars were downloaded from
    instrument: Instrument  # that venue's instrument (fees, lots, calendar)
    timeframe: str
    load: Callable[[], pd.DataFrame]  # the dataset's bars (venues.timeframes layout)


class LakeVenue(RecordedBarsVenue):
    """The lake's symbols: each is the source venue's symbol, or ``SOURCE:SYMBOL`` when more than
    one source venue has it (``okx:BTC/USDT`` and ``binance:BTC/USDT``); the qualified form is
    always accepted. Bars load on a symbol's first use."""

    def __init__(self, series: Sequence[LakeSeries], clock: Clock, *, name: str = LAKE_VENUE) -> None:
        self.name = name
        self.clock = clock
        self.broker = None
        by_key: dict[tuple[str, str], list[LakeSeries]] = defaultdict(list)
        for item in series:
            by_key[(item.source, item.instrument.symbol)].append(item)
        sources_of: dict[str, set[str]] = defaultdict(set)
        for source, symbol in by_key:
            sources_of[symbol].add(source)
        self._datasets: dict[str, list[LakeSeries]] = {}
        self._instruments: dict[str, Instrument] = {}
        self._aliases: dict[str, str] = {}
        for (source, symbol), items in sorted(by_key.items()):
            items.sort(key=lambda s: parse_timeframe(s.timeframe).delta)
            lake_symbol = symbol if len(sources_of[symbol]) == 1 else f"{source}:{symbol}"
            self._datasets[lake_symbol] = items
            self._instruments[lake_symbol] = items[0].instrument.model_copy(
                update={"venue": name, "symbol": lake_symbol, "timeframe": items[0].timeframe}
            )
            self._aliases[f"{source}:{symbol}"] = lake_symbol
        self._loaded: dict[str, BarSeries] = {}

    def __repr__(self) -> str:
        return f"LakeVenue({self.name!r}, symbols={list(self._instruments)!r})"

    @property
    def calendar(self) -> str:
        """The calendar its instruments share; 24/7 when they mix markets."""
        calendars = {i.calendar for i in self._instruments.values()}
        return calendars.pop() if len(calendars) == 1 else "24/7"

    def source_of(self, symbol: str) -> tuple[str, str]:
        """(source venue, source symbol) of a lake symbol."""
        item = self._datasets[self._resolve(symbol)][0]
        return item.source, item.instrument.symbol

    def _resolve(self, symbol: str) -> str:
        if symbol in self._instruments:
            return symbol
        found = self._aliases.get(symbol) if isinstance(symbol, str) else None
        if found is None:
            raise UnknownSymbolError(str(symbol), self.name, self._instruments)
        return found

    # --- RecordedBarsVenue ---

    def instrument_of(self, symbol: str) -> Instrument:
        return self._instruments[self._resolve(symbol)]

    def series(self, symbol: str) -> BarSeries:
        key = self._resolve(symbol)
        loaded = self._loaded.get(key)
        if loaded is None:
            finest, *coarser = self._datasets[key]
            calendar = finest.instrument.calendar
            loaded = BarSeries.build(finest.load(), parse_timeframe(finest.timeframe), calendar)
            for item in coarser:
                loaded.serve_as(parse_timeframe(item.timeframe), item.load())
            self._loaded[key] = loaded
        return loaded

    async def instruments(self) -> list[Instrument]:
        return list(self._instruments.values())

    async def instrument(self, symbol: str) -> Instrument:
        return self.instrument_of(symbol)
