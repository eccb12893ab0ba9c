"""Session-aware APScheduler 3 triggers: when a bar has closed, plus a small delay for the data.

The same trigger objects drive the live :class:`~apscheduler.schedulers.asyncio.AsyncIOScheduler`
and the simulated-clock :class:`scheduler.driver.FastForwardDriver`, so a demo or a backtest fires
exactly when live would.

Contract (as APScheduler's own CronTrigger / IntervalTrigger):

* ``get_next_fire_time(previous_fire_time, now)`` returns an aware datetime (always UTC here), or
  None when there will be no more fires. Without a previous fire time the result is the first fire
  at or after ``now``; with one it is the first fire strictly after it (even when that is before
  ``now``: APScheduler then collects the missed fires and coalesces them).
* ``__getstate__`` / ``__setstate__`` so a job using the trigger can be stored in a job store.

Every trigger here also has ``bar_close(fire_time)``: the close of the bar a fire is for
(``fire_time - delay``). A scan reads bars up to that moment and no further.

Calendars come from exchange-calendars through :mod:`venues.calendars`: no hand-written holiday
tables. exchange-calendars only knows a calendar up to a horizon (for XSHG, the last year whose
holidays it ships, :attr:`SessionTrigger.last_session`); past it the sessions are the trading days
the application registered (akshare's trade calendar) or else weekdays (see venues.calendars).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import accumulate, repeat
from typing import Any, Protocol, overload, runtime_checkable
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger

from venues.calendars import get_calendar, next_session_day, session, session_on_or_after
from venues.clock import ensure_utc
from venues.timeframes import parse_timeframe

__all__ = [
    "DEFAULT_DELAY",
    "BarTrigger",
    "CandleCloseTrigger",
    "DailyTrigger",
    "FireGrid",
    "SessionTrigger",
    "fire_times",
    "trigger_for",
]

logger = logging.getLogger(__name__)

DEFAULT_DELAY = timedelta(seconds=5)
ALWAYS_OPEN = "24/7"
_ONE_DAY = timedelta(days=1)
_ONE_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATE_VERSION = 1


@runtime_checkable
class BarTrigger(Protocol):
    """A trigger whose fires are bar closes (plus a delay)."""

    every: timedelta
    delay: timedelta

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None: ...

    def bar_close(self, fire_time: datetime) -> datetime: ...


# --------------------------------------------------------------------------------------------------
# argument checks and formatting


def _as_every(every: timedelta | str) -> timedelta:
    if isinstance(every, str):
        every = parse_timeframe(every).delta.to_pytimedelta()
    if not isinstance(every, timedelta):
        raise TypeError(f"every must be a datetime.timedelta (or a timeframe such as '30m'), got {every!r}")
    if every <= timedelta(0):
        raise ValueError(f"every must be positive, got {_fmt(every)}")
    if every > _ONE_DAY:
        raise ValueError(f"every must be at most one day, got {_fmt(every)}")
    return every


def _as_delay(delay: timedelta) -> timedelta:
    if not isinstance(delay, timedelta):
        raise TypeError(f"delay must be a datetime.timedelta, got {delay!r}")
    if delay < timedelta(0):
        raise ValueError(f"delay must not be negative, got {_fmt(delay)}")
    if delay >= _ONE_DAY:
        raise ValueError(f"delay must be less than one day, got {_fmt(delay)}")
    return delay


def _fmt(delta: timedelta) -> str:
    """``30m``, ``1h30m``, ``5s``, ``200ms``, ``-1s``."""
    micros = delta // _ONE_US
    if micros == 0:
        return "0s"
    sign, micros = ("-", -micros) if micros < 0 else ("", micros)
    parts = []
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{unit}")
    if micros:
        parts.append(f"{micros // 1000}ms" if micros % 1000 == 0 else f"{micros}us")
    return sign + "".join(parts)


def _start_point(previous_fire_time: datetime | None, now: datetime) -> datetime:
    """The earliest acceptable fire: at/after ``now`` first, strictly after the previous fire then."""
    if previous_fire_time is not None:
        return ensure_utc(previous_fire_time) + _ONE_US
    return ensure_utc(now)


class FireGrid(Sequence[datetime]):
    """``size`` fire times spaced ``every`` apart from ``first``: a list of them that makes each
    datetime only when it is read. A backtest passes over thousands of candle closes between the
    fires it stops at, and usually needs only their number and span (as epoch arrays)."""

    __slots__ = ("every", "first", "size")

    def __init__(self, first: datetime, every: timedelta, size: int) -> None:
        if size < 0:
            raise ValueError(f"a fire grid holds zero or more fires, got {size}")
        self.first = first
        self.every = every
        self.size = size

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> datetime: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[datetime]: ...

    def __getitem__(self, index: int | slice) -> datetime | Sequence[datetime]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.size)
            if step != 1:
                return list(self)[index]
            return FireGrid(self.first + start * self.every, self.every, max(stop - start, 0))
        position = index + self.size if index < 0 else index
        if not 0 <= position < self.size:
            raise IndexError(f"fire {index} of a grid of {self.size}")
        # Multiplication of a timedelta by an integer is exact, as the repeated addition of __iter__.
        return self.first + position * self.every

    def bisect_left(self, moment: datetime) -> int:
        """The index of the first fire at or after ``moment`` (``len`` when none): what
        ``bisect.bisect_left(grid, moment)`` gives, by arithmetic on the grid."""
        steps = -((self.first - moment) // self.every)  # ceil((moment - first) / every)
        return min(max(steps, 0), self.size)

    def __iter__(self) -> Iterator[datetime]:
        if not self.size:
            return iter(())
        return accumulate(repeat(self.every, self.size - 1), datetime.__add__, initial=self.first)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FireGrid):  # the same fires: the spacing of one fire or none is moot
            if self.size != other.size:
                return False
            return self.size == 0 or (self.first == other.first and (self.size == 1 or self.every == other.every))
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == self.size and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which do not hash

    def __repr__(self) -> str:
        return f"FireGrid({self.first.isoformat()}, every {_fmt(self.every)}, {self.size} fires)"


# --------------------------------------------------------------------------------------------------
# exchange sessions


@lru_cache(maxsize=16_384)
def _session_bar_closes(calendar: str, day: date, every: timedelta) -> tuple[datetime, ...]:
    """Bar closes of one session, counted from the open and again from the end of the break.

    The last bar of each part closes at the part's end even when it is shorter than ``every``.
    When ``every`` covers the whole session (open to close) there is one bar: the session close.
    """
    sess = session(calendar, day)
    if sess is None:
        return ()
    if every >= sess.close - sess.open:
        return (sess.close,)
    if sess.break_start is not None and sess.break_end is not None:
        parts = [(sess.open, sess.break_start), (sess.break_end, sess.close)]
    else:
        parts = [(sess.open, sess.close)]
    closes: list[datetime] = []
    for part_open, part_close in parts:
        if part_close <= part_open:
            continue
        moment = part_open + every
        while moment < part_close:
            closes.append(moment)
            moment += every
        closes.append(part_close)
    return tuple(closes)


def _first_session_close_at_or_after(calendar: str, every: timedelta, target: datetime) -> datetime | None:
    first = get_calendar(calendar).first_session.date()
    # A session is labelled with its exchange-local date, which is within a day of the UTC date.
    day = session_on_or_after(calendar, max(target.date() - timedelta(days=1), first))
    # Past exchange-calendars' last session, sessions come from the registered trading days or,
    # failing those, weekdays (venues.calendars): the trigger keeps firing either way.
    for _ in range(400):
        closes = _session_bar_closes(calendar, day, every)
        if closes and closes[-1] >= target:
            return closes[bisect.bisect_left(closes, target)]
        day = next_session_day(calendar, day)
    logger.error("no %s session within 400 sessions of %s: the trigger stops firing", calendar, target.isoformat())
    return None


class SessionTrigger(BaseTrigger):
    """Fires when a bar of length ``every`` has closed on an exchange calendar, plus ``delay``.

    Bars are counted from the session open and again from the end of the lunch break where there is
    one; a partial last bar (session part not a multiple of ``every``) closes at the part's end; an
    ``every`` covering the whole session gives one bar closing at the session close. Holidays,
    weekends and early closes come from the calendar.

    XSHG, 30m: 10:00 10:30 11:00 11:30 13:30 14:00 14:30 15:00 Asia/Shanghai (+ delay).
    XNYS, 30m: 10:00 ... 16:00 America/New_York, 10:00 ... 13:00 on an early-close day.
    XNYS, 1h: 10:30 11:30 ... 15:30 16:00 (the last bar is half an hour).
    """

    __slots__ = ("calendar", "delay", "every")

    def __init__(self, calendar: str, every: timedelta | str, delay: timedelta = DEFAULT_DELAY) -> None:
        self.every = _as_every(every)
        self.delay = _as_delay(delay)
        if not isinstance(calendar, str):
            raise TypeError(f"calendar must be a calendar name such as 'XSHG', got {calendar!r}")
        get_calendar(calendar)  # unknown names fail here: "unknown market calendar 'X'; e.g. XSHG, ..."
        self.calendar = calendar

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        target = _start_point(previous_fire_time, now) - self.delay
        close = _first_session_close_at_or_after(self.calendar, self.every, target)
        return None if close is None else close + self.delay

    def bar_close(self, fire_time: datetime) -> datetime:
        return ensure_utc(fire_time) - self.delay

    @property
    def last_session(self) -> date:
        """The last session exchange-calendars knows; later sessions come from venues.calendars'
        registered trading days, or weekdays."""
        return get_calendar(self.calendar).last_session.date()

    def __getstate__(self) -> dict[str, Any]:
        return {"version": _STATE_VERSION, "calendar": self.calendar, "every": self.every, "delay": self.delay}

    def __setstate__(self, state: dict[str, Any]) -> None:
        _check_version(self, state)
        self.calendar = state["calendar"]
        self.every = state["every"]
        self.delay = state["delay"]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionTrigger):
            return NotImplemented
        return (self.calendar, self.every, self.delay) == (other.calendar, other.every, other.delay)

    def __hash__(self) -> int:
        return hash((SessionTrigger, self.calendar, self.every, self.delay))

    def __str__(self) -> str:
        return f"session[{self.calendar} every {_fmt(self.every)} +{_fmt(self.delay)}]"

    def __repr__(self) -> str:
        return f"<SessionTrigger (calendar={self.calendar!r}, every='{_fmt(self.every)}', delay='{_fmt(self.delay)}')>"


# --------------------------------------------------------------------------------------------------
# 24/7 candles


class CandleCloseTrigger(BaseTrigger):
    """Fires at candle closes on the UTC epoch grid, plus ``delay``, for markets that never close.

    ``every`` must divide one day so candles align to 00:00 UTC as exchanges' candles do:
    1h closes at :00, 15m at :00/:15/:30/:45, 4h at 00:00/04:00/... UTC. Sub-second values are
    allowed (tests use them).
    """

    __slots__ = ("delay", "every")

    def __init__(self, every: timedelta | str, delay: timedelta = DEFAULT_DELAY) -> None:
        every = _as_every(every)
        if _ONE_DAY % every:
            raise ValueError(
                f"every must divide one day evenly so candles align to 00:00 UTC "
                f"(e.g. 1m, 5m, 15m, 30m, 1h, 4h, 1d), got {_fmt(every)}"
            )
        self.every = every
        self.delay = _as_delay(delay)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        return self._first_fire_from(_start_point(previous_fire_time, now))

    def _first_fire_from(self, start: datetime) -> datetime:
        target = start - self.delay
        candles = -((_EPOCH - target) // self.every)  # ceil((target - epoch) / every), exact integers
        return _EPOCH + candles * self.every + self.delay

    def fire_times_before(self, previous_fire_time: datetime, moment: datetime) -> FireGrid:
        """Every fire after ``previous_fire_time`` and before ``moment``, in order: what calling
        ``get_next_fire_time(fire, fire)`` from it would give one by one, in one step (the grid is
        evenly spaced), as a :class:`FireGrid`; the grid's next point (``first + size x every``)
        is the next fire after them, the first at or after ``moment``."""
        first = self._first_fire_from(_start_point(previous_fire_time, previous_fire_time))
        count = max(-((first - ensure_utc(moment)) // self.every), 0)  # ceil((moment - first) / every)
        return FireGrid(first, self.every, count)

    def bar_close(self, fire_time: datetime) -> datetime:
        return ensure_utc(fire_time) - self.delay

    def __getstate__(self) -> dict[str, Any]:
        return {"version": _STATE_VERSION, "every": self.every, "delay": self.delay}

    def __setstate__(self, state: dict[str, Any]) -> None:
        _check_version(self, state)
        self.every = state["every"]
        self.delay = state["delay"]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CandleCloseTrigger):
            return NotImplemented
        return (self.every, self.delay) == (other.every, other.delay)

    def __hash__(self) -> int:
        return hash((CandleCloseTrigger, self.every, self.delay))

    def __str__(self) -> str:
        return f"candle[every {_fmt(self.every)} UTC +{_fmt(self.delay)}]"

    def __repr__(self) -> str:
        return f"<CandleCloseTrigger (every='{_fmt(self.every)}', delay='{_fmt(self.delay)}')>"


# --------------------------------------------------------------------------------------------------
# daily, at local wall-clock times


class DailyTrigger(BaseTrigger):
    """Fires every day at each of ``times`` (wall-clock times in ``timezone``, an IANA name), e.g.
    the daily summary at 18:00 Asia/Shanghai. Daylight saving time is followed: a time skipped by a
    spring-forward gap fires once, as the same clock reading after the gap (02:30 -> 03:30); a time
    repeated in autumn fires once, at its first occurrence.
    """

    __slots__ = ("times", "timezone")

    def __init__(self, times: Iterable[time], timezone: str) -> None:
        wanted = sorted({self._as_time(t) for t in times})
        if not wanted:
            raise ValueError("a daily trigger needs at least one time of day")
        self.times: tuple[time, ...] = tuple(wanted)
        ZoneInfo(timezone)  # an unknown name fails here (ZoneInfoNotFoundError)
        self.timezone = timezone

    @staticmethod
    def _as_time(value: time) -> time:
        if not isinstance(value, time) or value.tzinfo is not None:
            raise TypeError(f"times must be naive datetime.time values (wall-clock times), got {value!r}")
        return value

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        start = _start_point(previous_fire_time, now)
        zone = ZoneInfo(self.timezone)
        day = start.astimezone(zone).date() - _ONE_DAY
        while True:  # at most three days are looked at: yesterday's times may still be ahead in UTC
            for moment in self._fires_on(day, zone):
                if moment >= start:
                    return moment
            day += _ONE_DAY

    def _fires_on(self, day: date, zone: ZoneInfo) -> list[datetime]:
        # fold=0: an ambiguous time is its first occurrence; a time in a gap maps past the gap.
        fires = {datetime.combine(day, t, tzinfo=zone).astimezone(UTC) for t in self.times}
        return sorted(fires)

    def __getstate__(self) -> dict[str, Any]:
        return {"version": _STATE_VERSION, "times": self.times, "timezone": self.timezone}

    def __setstate__(self, state: dict[str, Any]) -> None:
        _check_version(self, state)
        self.times = tuple(state["times"])
        self.timezone = state["timezone"]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DailyTrigger):
            return NotImplemented
        return (self.times, self.timezone) == (other.times, other.timezone)

    def __hash__(self) -> int:
        return hash((DailyTrigger, self.times, self.timezone))

    def __str__(self) -> str:
        return f"daily[{' '.join(t.strftime('%H:%M') for t in self.times)} {self.timezone}]"

    def __repr__(self) -> str:
        return f"<DailyTrigger (times={[t.strftime('%H:%M:%S') for t in self.times]}, timezone={self.timezone!r})>"


def _check_version(trigger: BaseTrigger, state: dict[str, Any]) -> None:
    version = state.get("version", 1)
    if version > _STATE_VERSION:
        raise ValueError(
            f"got serialized data for version {version} of {type(trigger).__name__}, "
            f"but only versions up to {_STATE_VERSION} can be handled"
        )


# --------------------------------------------------------------------------------------------------
# helpers


def trigger_for(
    calendar: str, every: timedelta | str, delay: timedelta = DEFAULT_DELAY
) -> SessionTrigger | CandleCloseTrigger:
    """The trigger for a venue's calendar: candle closes for ``24/7``, exchange sessions otherwise."""
    if calendar == ALWAYS_OPEN:
        return CandleCloseTrigger(every, delay)
    return SessionTrigger(calendar, every, delay)


def fire_times(trigger: BaseTrigger, start: datetime, end: datetime) -> list[datetime]:
    """Every fire of ``trigger`` in ``[start, end]``, as the scheduler would produce them."""
    start, end = ensure_utc(start), ensure_utc(end)
    out: list[datetime] = []
    moment = trigger.get_next_fire_time(None, start)
    while moment is not None and ensure_utc(moment) <= end:
        out.append(ensure_utc(moment))
        moment = trigger.get_next_fire_time(moment, moment)
    return out
