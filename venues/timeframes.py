"""Timeframes and resampling of bar frames.

A bar frame is a pandas DataFrame indexed by the bar's open time (``DatetimeIndex``, UTC, named
``ts``) with float columns ``open, high, low, close, volume`` and a ``close_time`` column (UTC): the
moment the bar is final. Keeping the close time explicit lets daily bars of an exchange close at the
session close (15:00 Shanghai) rather than at midnight, and lets every consumer check causality
with one comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from venues.errors import UnknownTimeframeError

_MONDAY_ORIGIN = pd.Timestamp("1970-01-05", tz="UTC")
OHLCV = ["open", "high", "low", "close", "volume"]
BAR_COLUMNS = [*OHLCV, "close_time"]


@dataclass(frozen=True, slots=True)
class Timeframe:
    name: str
    delta: pd.Timedelta

    @property
    def seconds(self) -> int:
        return int(self.delta.total_seconds())

    def __str__(self) -> str:
        return self.name


TIMEFRAMES: dict[str, Timeframe] = {
    name: Timeframe(name, pd.Timedelta(delta))
    for name, delta in [
        ("1m", "1min"),
        ("5m", "5min"),
        ("15m", "15min"),
        ("30m", "30min"),
        ("1h", "1h"),
        ("4h", "4h"),
        ("1d", "1D"),
        ("1w", "7D"),
    ]
}


def parse_timeframe(value: str | Timeframe) -> Timeframe:
    if isinstance(value, Timeframe):
        return value
    key = value.strip() if isinstance(value, str) else value
    try:
        return TIMEFRAMES[key]
    except (KeyError, TypeError):
        raise UnknownTimeframeError(str(value), TIMEFRAMES) from None


@dataclass(frozen=True, slots=True)
class BarArrays:
    """A bar frame as plain numpy arrays, for code that walks bars one at a time (the paper
    broker's matching): ``open_us`` and ``close_us`` are the open and close times in microseconds
    since the epoch (int64), ``open/high/low/close`` the prices (float64), one entry per bar in
    time order. Indexing a numpy array costs a fraction of a pandas column lookup."""

    open_us: np.ndarray
    close_us: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    @classmethod
    def of(cls, bars: pd.DataFrame) -> BarArrays:
        """The arrays of a bar frame (the layout above)."""
        return cls(
            pd.DatetimeIndex(bars.index).as_unit("us").asi8,
            pd.DatetimeIndex(bars["close_time"]).as_unit("us").asi8,
            *(bars[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close")),
        )

    def __len__(self) -> int:
        return len(self.open_us)

    def __getitem__(self, rows: slice) -> BarArrays:
        """The bars of a positional slice (views, no copy)."""
        return BarArrays(
            self.open_us[rows], self.close_us[rows], self.open[rows], self.high[rows], self.low[rows], self.close[rows]
        )


def empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame(
        {c: pd.Series(dtype="float64") for c in OHLCV} | {"close_time": pd.Series(dtype="datetime64[us, UTC]")},
        index=pd.DatetimeIndex([], tz="UTC", name="ts", dtype="datetime64[us, UTC]"),
    )
    return frame


def with_close_time(bars: pd.DataFrame, timeframe: str | Timeframe) -> pd.DataFrame:
    """Add ``close_time = open + timeframe`` where a frame lacks it."""
    if "close_time" in bars.columns:
        return bars
    tf = parse_timeframe(timeframe)
    out = bars.copy()
    out["close_time"] = out.index + tf.delta
    return out


_AGGREGATION = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "close_time": "max"}


def resample(
    bars: pd.DataFrame,
    timeframe: str | Timeframe,
    *,
    complete_at: pd.Timestamp | None = None,
    calendar: str | None = None,
) -> pd.DataFrame:
    """Aggregate bars into ``timeframe`` buckets.

    Without a calendar (or with 24/7) buckets sit on the UTC epoch grid (weeks start on Monday).
    With an exchange ``calendar`` they follow the exchange's sessions, as its own bars do:
    - intraday buckets are counted from the session open, and again from the end of a lunch break
      (A-share 1h bars end at 10:30, 11:30, 14:00, 15:00; a bucket cut short by the break or the
      close ends there); only bars that overlap the regular hours count;
    - a daily bar is the session: open at the session open, final at the session close;
    - a weekly bar gathers the week's sessions and is final at the close of the week's last
      scheduled session.

    A bucket's close time is its nominal end, or the latest close time of its members when that is
    later, so no bucket is final before every bar in it is. With ``complete_at``, buckets whose
    close time is after that moment are dropped: a partly formed bar is never returned as final.
    """
    tf = parse_timeframe(timeframe)
    if bars.empty:
        return empty_bars()
    if "close_time" not in bars.columns:
        raise ValueError("resample needs a close_time column: add it with with_close_time(bars, source_timeframe)")
    if calendar is not None and calendar != "24/7":
        agg = _resample_on_sessions(bars, tf, calendar)
    else:
        # 1970-01-05 is a Monday: weekly buckets start on Mondays, shorter ones on the epoch grid.
        origin = _MONDAY_ORIGIN if tf.name == "1w" else "epoch"
        agg = bars.resample(tf.delta, origin=origin, label="left", closed="left").agg(_AGGREGATION)
        agg = agg[agg["open"].notna()]
        agg["close_time"] = _later(agg["close_time"], agg.index + tf.delta)
    if complete_at is not None:
        agg = agg[agg["close_time"] <= complete_at]
    agg.index.name = "ts"
    return agg[BAR_COLUMNS]


def _utc_index(values: np.ndarray, unit: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(values.astype(f"datetime64[{unit}]")).tz_localize("UTC")


def _later(a: pd.Series, b: pd.Index | pd.Series) -> pd.Series:
    b_series = pd.Series(pd.DatetimeIndex(b).as_unit(pd.DatetimeIndex(a).unit), index=a.index)
    return a.where(a > b_series, b_series)


def _resample_on_sessions(bars: pd.DataFrame, tf: Timeframe, calendar: str) -> pd.DataFrame:
    from venues.calendars import get_calendar
    from venues.calendars import schedule as sessions_of

    cal = get_calendar(calendar)
    index = pd.DatetimeIndex(bars.index)
    unit = index.unit
    local_day = index.tz_convert(cal.tz).tz_localize(None).normalize()
    schedule = sessions_of(calendar, local_day)

    def column(name: str) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(schedule[name]).tz_convert("UTC").as_unit(unit)

    opens, closes = column("open"), column("close")
    close_times = pd.DatetimeIndex(bars["close_time"]).as_unit(unit)
    # Bars that overlap the regular hours; a pre- or post-market print belongs to no exchange bar.
    inside = np.asarray((close_times > opens) & (index < closes))
    if not inside.any():  # only pre- or post-market bars so far: no exchange bar yet
        return empty_bars()
    if tf.delta >= pd.Timedelta(days=1):
        members = bars[inside]
        days = local_day[inside]
        # Weekly: the Monday of each session's week, in exchange-local dates.
        key = days - pd.to_timedelta(days.day_of_week, unit="D") if tf.name == "1w" else days
        agg = members.groupby(key).agg(_AGGREGATION)
        first_day = pd.Series(days, index=days).groupby(key).min()
        first_days = pd.DatetimeIndex(first_day.to_numpy())
        session_open = pd.DatetimeIndex(sessions_of(calendar, first_days)["open"]).tz_convert("UTC")
        if tf.name == "1w":
            week_end = agg.index + pd.Timedelta(days=7)
            sessions = sessions_of(calendar, pd.date_range(agg.index.min(), agg.index.max() + pd.Timedelta(days=6)))
            last_close = [
                sessions["close"][(sessions.index >= start) & (sessions.index < end)].max()
                for start, end in zip(agg.index, week_end, strict=True)
            ]
            nominal_close = pd.DatetimeIndex(last_close).tz_convert("UTC")
        else:
            nominal_close = pd.DatetimeIndex(sessions_of(calendar, pd.DatetimeIndex(agg.index))["close"]).tz_convert(
                "UTC"
            )
        agg["close_time"] = _later(agg["close_time"], nominal_close)
        agg.index = session_open.as_unit(unit)
        return agg
    # Intraday: segments are [open, break start) and [break end, close), buckets counted from
    # each segment's start and cut at its end.
    has_break = "break_start" in schedule.columns
    no_break = pd.DatetimeIndex([pd.NaT] * len(index), tz="UTC").as_unit(unit)
    brk_start = column("break_start") if has_break else no_break
    brk_end = column("break_end") if has_break else brk_start
    after_break = np.asarray(brk_end.notna() & (close_times > brk_end))
    in_break = np.asarray(brk_start.notna() & (index >= brk_start) & (close_times <= brk_end))
    inside &= ~in_break
    if not inside.any():
        return empty_bars()
    seg_start = np.where(after_break, brk_end.asi8, opens.asi8)
    seg_end = np.where(np.asarray(brk_start.notna()) & ~after_break, brk_start.asi8, closes.asi8)
    step = int(tf.delta / pd.Timedelta(1, unit=unit))
    k = np.maximum((index.asi8 - seg_start) // step, 0)
    bucket = seg_start + k * step
    bucket_end = np.minimum(bucket + step, seg_end)
    # A source bar may straddle a bucket's end (an hourly bar 17:00-18:00 in the US 13:30-17:30
    # bucket): the bucket is final only when that bar is, i.e. at the end rounded up to the source
    # bars' grid. Without this, a bucket cut at `now` before the straddler closed would be returned
    # and then change.
    source = int(np.median(close_times.asi8 - index.asi8)) if len(index) else 0
    if source > 0:
        bucket_end = -(-bucket_end // source) * source
    keys = _utc_index(bucket[inside], unit)
    members = bars[inside]
    agg = members.groupby(keys).agg(_AGGREGATION)
    ends = pd.Series(_utc_index(bucket_end[inside], unit), index=keys).groupby(level=0).max()
    agg["close_time"] = _later(agg["close_time"], ends.reindex(agg.index))
    return agg
