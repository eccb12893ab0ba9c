"""Market calendars from exchange-calendars (XSHG, XNYS, 24/7, ...), cached per name.

Sessions are identified by their exchange-local date (a ``datetime.date``). The 24/7 calendar's
session is the UTC day, which is what crypto venues report daily bars in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import pandas as pd

from venues.clock import ensure_utc

if TYPE_CHECKING:
    import exchange_calendars

# exchange-calendars needs a start bound; our shipped data begins in 2010.
_CALENDAR_START = "2010-01-01"


@dataclass(frozen=True, slots=True)
class Session:
    day: date
    open: datetime
    close: datetime
    break_start: datetime | None = None
    break_end: datetime | None = None

    def is_open_at(self, moment: datetime) -> bool:
        if not (self.open <= moment < self.close):
            return False
        return not (self.break_start and self.break_end and self.break_start <= moment < self.break_end)


@cache
def get_calendar(name: str) -> exchange_calendars.ExchangeCalendar:
    import exchange_calendars as xcals  # heavy import: only when a calendar is used

    try:
        return xcals.get_calendar(name, start=_CALENDAR_START)
    except xcals.errors.InvalidCalendarName:
        raise ValueError(f"unknown market calendar {name!r}; e.g. XSHG, XNYS, 24/7") from None


def _utc(ts: Any) -> datetime | None:
    if ts is None or pd.isna(ts):
        return None
    return pd.Timestamp(ts).tz_convert("UTC").to_pydatetime()


def _label(day: date) -> pd.Timestamp:
    return pd.Timestamp(day)


def session(calendar: str, day: date) -> Session | None:
    """The session on ``day`` or None when the market does not trade that day."""
    cal = get_calendar(calendar)
    label = _label(day)
    if not cal.is_session(label):
        return None
    open_, close = cal.session_open_close(label)
    brk_start, brk_end = cal.session_break_start_end(label) if cal.session_has_break(label) else (None, None)
    return Session(day, _utc(open_), _utc(close), _utc(brk_start), _utc(brk_end))  # type: ignore[arg-type]


def sessions_between(calendar: str, start: date, end: date) -> list[Session]:
    cal = get_calendar(calendar)
    labels = cal.sessions_in_range(_label(start), _label(end))
    return [s for s in (session(calendar, label.date()) for label in labels) if s is not None]


def trading_day(calendar: str, moment: datetime) -> date:
    """The session a moment belongs to: the current one while open, else the next one."""
    cal = get_calendar(calendar)
    ts = pd.Timestamp(ensure_utc(moment)).floor("min")
    return cal.minute_to_session(ts, direction="next").date()


def previous_session(calendar: str, day: date) -> Session | None:
    cal = get_calendar(calendar)
    label = cal.date_to_session(_label(day), direction="next")
    prev = cal.previous_session(label)
    return session(calendar, prev.date())


def is_open(calendar: str, moment: datetime) -> bool:
    cal = get_calendar(calendar)
    return bool(cal.is_trading_minute(pd.Timestamp(ensure_utc(moment))))


def next_session_day(calendar: str, day: date) -> date:
    cal = get_calendar(calendar)
    label = cal.date_to_session(_label(day), direction="next")
    return cal.next_session(label).date()


def add_trading_time(calendar: str, start: datetime, duration: timedelta) -> datetime:
    """The moment ``duration`` of open-market time after ``start``: lunch breaks, nights, weekends
    and holidays do not count. An approval window opened at 11:25 in Shanghai with 15 minutes
    ends at 13:10; opened after the close, it runs from the next open."""
    start = ensure_utc(start)
    if calendar == "24/7":
        return start + duration
    remaining = duration
    day = trading_day(calendar, start)
    for _ in range(400):  # a year and more of sessions; a duration longer than that is a bug
        current = session(calendar, day)
        if current is not None:
            spans = [(current.open, current.close)]
            if current.break_start and current.break_end:
                spans = [(current.open, current.break_start), (current.break_end, current.close)]
            for span_open, span_close in spans:
                begin = max(span_open, start)
                if begin >= span_close:
                    continue
                available = span_close - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
        day = next_session_day(calendar, day)
    raise ValueError(f"{duration} of trading time is more than a year of {calendar} sessions")


def next_open(calendar: str, moment: datetime) -> datetime | None:
    """When the market next opens after ``moment``; None while it is open (and always for 24/7).
    A lunch break counts as closed: the answer is then the end of the break."""
    moment = ensure_utc(moment)
    if calendar == "24/7" or is_open(calendar, moment):
        return None
    current = session(calendar, trading_day(calendar, moment))
    if current is None:  # pragma: no cover - trading_day always names a session
        return None
    if current.break_end is not None and current.open <= moment < current.break_end:
        return current.break_end
    if moment < current.open:
        return current.open
    following = session(calendar, next_session_day(calendar, current.day))
    return following.open if following else None
