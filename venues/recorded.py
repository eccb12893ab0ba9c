"""A venue over recorded bar series, seen through an injected clock: the machinery the replay
venue (shipped files) and the lake venue (the Parquet bars lake) share.

The venue never shows the future: every answer is cut at ``clock.now()`` by bar close time, so a
backtest or the offline demo sees exactly what a live venue would have shown at that moment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from venues.base import BrokeredVenue
from venues.calendars import get_calendar
from venues.clock import Clock, epoch_us, from_epoch_us
from venues.errors import UnknownTimeframeError
from venues.models import Instrument, Quote
from venues.timeframes import TIMEFRAMES, BarArrays, Timeframe, parse_timeframe, resample


@dataclass(frozen=True, slots=True)
class BarFrame:
    bars: pd.DataFrame
    arrays: BarArrays  # the same bars as plain arrays, for the paper broker's bar-by-bar matching

    @property
    def open_us(self) -> np.ndarray:
        """Bar open times, ascending."""
        return self.arrays.open_us

    @property
    def close_us(self) -> np.ndarray:
        """Bar close times, non-decreasing: what the cut at `now` searches."""
        return self.arrays.close_us

    @classmethod
    def of(cls, bars: pd.DataFrame) -> BarFrame:
        arrays = BarArrays.of(bars)
        close_us = arrays.close_us
        # searchsorted needs sorted close times. Native files give that (ascending opens, one bar
        # length or one session each), and resampling keeps it (a bucket closes at the max of its
        # nominal end and its members' closes, both non-decreasing); checked anyway because a
        # violation would silently leak future bars.
        if close_us.size > 1 and bool((np.diff(close_us) < 0).any()):
            raise ValueError("bar close times are not ascending; cannot cut the series at a moment")
        return cls(bars, arrays)

    def cut(
        self, now: datetime, start: datetime | None = None, end: datetime | None = None, limit: int | None = None
    ) -> slice:
        """The positions of the final bars at ``now`` (close time <= now) with open time in
        ``[start, end]``, the last ``limit`` of them."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be zero or more, got {limit}")
        # The arrays' own searchsorted: np.searchsorted's dispatch costs as much as the search,
        # and the paper broker cuts at every fire.
        arrays = self.arrays
        hi = int(arrays.close_us.searchsorted(epoch_us(now), side="right"))
        lo = 0
        if start is not None:
            lo = int(arrays.open_us.searchsorted(epoch_us(start), side="left"))
        if end is not None:
            hi = min(hi, int(arrays.open_us.searchsorted(epoch_us(end), side="right")))
        if limit is not None:
            lo = max(lo, hi - limit)
        return slice(lo, hi) if lo < hi else slice(0, 0)


@dataclass(slots=True)
class BarSeries:
    """One symbol's native bars plus everything derived from them once per process."""

    native: BarFrame
    timeframe: Timeframe
    calendar: str
    close: np.ndarray
    open: np.ndarray
    day: np.ndarray  # exchange-local session day of each bar (days since the epoch)
    session_volume: np.ndarray  # volume summed from the session's first bar up to each bar
    prev_close: np.ndarray  # last close of the previous session with bars (NaN for the first)
    _resampled: dict[str, BarFrame] = field(default_factory=dict)

    @classmethod
    def build(cls, native: pd.DataFrame, timeframe: Timeframe, calendar: str) -> BarSeries:
        # A bar belongs to the session of its exchange-local open date. That keeps US pre- and
        # post-market bars in their own day (exchange-calendars would put an after-hours minute in
        # the next session) and makes the 24/7 session the UTC day, as crypto venues report it.
        tz = get_calendar(calendar).tz
        local = pd.DatetimeIndex(native.index).tz_convert(tz).tz_localize(None)
        day = pd.Series(local.to_numpy().astype("datetime64[D]").astype("int64"), index=native.index)
        volume = native["volume"]
        session_volume = volume.groupby(day.to_numpy()).cumsum().to_numpy(dtype="float64")
        last_close = native["close"].groupby(day.to_numpy()).last()
        prev_close = last_close.shift(1).reindex(day.to_numpy()).to_numpy(dtype="float64")
        return cls(
            native=BarFrame.of(native),
            timeframe=timeframe,
            calendar=calendar,
            close=native["close"].to_numpy(dtype="float64"),
            open=native["open"].to_numpy(dtype="float64"),
            day=day.to_numpy(),
            session_volume=session_volume,
            prev_close=prev_close,
        )

    def serve_as(self, tf: Timeframe, bars: pd.DataFrame) -> None:
        """Answer ``tf`` with these bars (a venue's own coarser bars) instead of resampling."""
        self._resampled[tf.name] = BarFrame.of(bars)

    def frame(self, tf: Timeframe) -> BarFrame:
        if tf.name == self.timeframe.name:
            return self.native
        # Resampled once over the whole series, then cut at `now` by close time on each call.
        # That equals resampling only the bars visible at `now`: a bucket closes at or after every
        # member's close (resample takes the max of its nominal end and its members' closes), so
        # close_time <= now means every member was final at `now` and the bucket's open/high/low/
        # close/volume are exactly those of the visible bars; a bucket still forming has at least
        # one member closing after `now`, hence its own close_time > now, and the cut drops it. So
        # a partial bucket is never returned and no later bar leaks into an earlier answer.
        got = self._resampled.get(tf.name)
        if got is None:
            got = self._resampled[tf.name] = BarFrame.of(resample(self.native.bars, tf, calendar=self.calendar))
        return got


def _last_bars(series: BarSeries, now_us: int) -> tuple[int, int]:
    """Indices into ``series``' native bars at ``now_us``: the last final bar (closed by then; -1
    before the first) and the last bar opened before then (the one in progress when it is later)."""
    native = series.native.arrays
    closed = int(native.close_us.searchsorted(now_us, side="right")) - 1
    return closed, int(native.open_us.searchsorted(now_us, side="left")) - 1


class RecordedBarsVenue(BrokeredVenue):
    """MarketData over recorded series, cut at ``clock.now()``. A subclass says which symbols it
    has (``instrument_of``) and where their bars come from (``series``)."""

    name: str
    clock: Clock

    def instrument_of(self, symbol: str) -> Instrument:
        """The instrument, or UnknownSymbolError naming the valid symbols; loads no bars."""
        raise NotImplementedError

    def series(self, symbol: str) -> BarSeries:
        """The symbol's bars, loaded on first use; UnknownSymbolError for a symbol it does not have."""
        raise NotImplementedError

    async def bars(
        self,
        symbol: str,
        timeframe: str | Timeframe,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Final bars (close_time <= now) with open time in ``[start, end]``, the last ``limit``."""
        series = self.series(symbol)
        frame = series.frame(self._timeframe(symbol, series, timeframe))
        # A positional slice of the cached frame: copy-on-write (always on in pandas 3) keeps a
        # caller's edits from reaching the cache, without copying on every call.
        return frame.bars.iloc[frame.cut(self.clock.now(), start, end, limit)]

    async def bar_arrays(
        self,
        symbol: str,
        timeframe: str | Timeframe,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> BarArrays:
        """What :meth:`bars` serves, as array views of the cached series (no DataFrame is built)."""
        series = self.series(symbol)
        frame = series.frame(self._timeframe(symbol, series, timeframe))
        return frame.arrays[frame.cut(self.clock.now(), start, end, limit)]

    async def snapshot(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """A quote per symbol: the last traded price at the clock's now. That is the open of the
        native bar in progress when one has opened (its first trade has happened; nothing later in
        it is shown), else the close of the latest final bar. Symbols with no bar yet are left out.

        ``volume`` is summed over the latest final bar's session (exchange-local day; UTC day for
        24/7) up to that bar, ``change_pct`` is in percent against the previous session's last close.
        """
        instruments = [self.instrument_of(symbol) for symbol in symbols]  # an unknown symbol fails the whole call
        now = epoch_us(self.clock.now())
        quotes: dict[str, Quote] = {}
        for instrument in instruments:
            series = self.series(instrument.symbol)
            i, opened = _last_bars(series, now)
            if i < 0:
                continue
            last, ts, volume = float(series.close[i]), series.native.close_us[i], float(series.session_volume[i])
            prev = float(series.prev_close[i])
            if opened > i:  # a bar has opened since the last close: its open is the last trade
                last, ts = float(series.open[opened]), series.native.open_us[opened]
                if series.day[opened] != series.day[i]:  # a new session: nothing of it is final yet
                    volume, prev = 0.0, float(series.close[i])
            quotes[instrument.symbol] = Quote(
                symbol=instrument.symbol,
                ts=from_epoch_us(ts),
                last=last,
                volume=volume,
                change_pct=None if math.isnan(prev) else (last / prev - 1.0) * 100.0,
            )
        return quotes

    def last_trades(self, symbols: Sequence[str]) -> dict[str, float]:
        """``{symbol: snapshot(symbols)[symbol].last}`` without building the quotes: the price
        alone, for a caller that marks positions at every fire (the paper broker's account).
        Symbols with no bar yet are left out; UnknownSymbolError for an unknown one."""
        for symbol in symbols:
            self.instrument_of(symbol)  # an unknown symbol fails the whole call, as in snapshot
        now = epoch_us(self.clock.now())
        prices: dict[str, float] = {}
        for symbol in symbols:
            series = self.series(symbol)
            i, opened = _last_bars(series, now)
            if i < 0:
                continue
            prices[symbol] = float(series.open[opened]) if opened > i else float(series.close[i])
        return prices

    def last_prices(self, symbol: str, moments: Sequence[datetime]) -> np.ndarray:
        """The ``last`` :meth:`snapshot` gave at each of ``moments`` (ascending, none after the
        clock's now), in one vectorised pass; NaN where no bar had closed yet. For a backtest's
        equity points at the fires it passed over. ValueError for a moment after now."""
        return self.last_prices_us(symbol, np.array(list(map(epoch_us, moments)), dtype=np.int64))

    def last_prices_us(self, symbol: str, at: np.ndarray) -> np.ndarray:
        """:meth:`last_prices` at moments given as int64 microseconds since the epoch."""
        series = self.series(symbol)
        if at.size and int(at.max()) > epoch_us(self.clock.now()):
            raise ValueError(f"a price after the clock's now ({self.clock.now().isoformat()}) is not known yet")
        native = series.native.arrays
        closed = native.close_us.searchsorted(at, side="right") - 1
        opened = native.open_us.searchsorted(at, side="left") - 1
        prices = np.where(opened > closed, series.open[opened], series.close[np.maximum(closed, 0)])
        return np.where(closed < 0, np.nan, prices)

    # --- for the simulated-clock user ---

    def timeframes(self, symbol: str) -> list[str]:
        """The timeframes ``bars`` serves for ``symbol``: its native one and every coarser one."""
        native = parse_timeframe(self.instrument_of(symbol).timeframe)
        return [name for name, tf in TIMEFRAMES.items() if tf.delta >= native.delta]

    def available_range(self, symbol: str) -> tuple[datetime, datetime]:
        """(first bar open, last bar close) of the recorded series, to place a simulated clock."""
        native = self.series(symbol).native
        if native.open_us.size == 0:
            raise ValueError(f"{symbol!r} on {self.name!r} has no bars")
        return from_epoch_us(native.open_us[0]), from_epoch_us(native.close_us[-1])

    def _timeframe(self, symbol: str, series: BarSeries, timeframe: str | Timeframe) -> Timeframe:
        # The valid ones are listed only for an error: every bar read of a backtest passes here.
        try:
            tf = parse_timeframe(timeframe)
        except UnknownTimeframeError:
            raise UnknownTimeframeError(str(timeframe), self.timeframes(symbol)) from None
        if tf.delta < series.timeframe.delta:
            reason = f"{symbol} has {series.timeframe.name} bars at the finest, so {tf.name} is not available"
            raise UnknownTimeframeError(str(timeframe), self.timeframes(symbol), reason=reason) from None
        return tf
