"""Market calendars from exchange-calendars (XSHG, XNYS, 24/7, ...), cached per name.

Sessions are identified by their exchange-local date (a ``datetime.date``). The 24/7 calendar's
session is the UTC day, which is what crypto venues report daily bars in.

Beyond a calendar's last session (exchange-calendars ships about a year ahead: XSHG ends on
2026-12-31 in the installed release) sessions come from trading days registered by the
application (``register_sessions``: A-share trading days from akshare's trade calendar, stored in the
database by bot/), at the hours of the calendar's last known session. Where none are registered,
every weekday is taken as a session: ``assumed_weekdays`` says so, for `tradeops doctor` and the
chat to warn (holidays would be traded on).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

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


# Trading days registered beyond a library calendar's last session, per calendar name.
_REGISTERED: dict[str, frozenset[date]] = {}
_REGISTERED_SOURCE: dict[str, str] = {}
# Days beyond the library and the registered days that were taken as weekday sessions.
_ASSUMED: dict[str, set[date]] = {}


def register_sessions(calendar: str, days: Iterable[date], *, source: str) -> int:
    """Trading days of ``calendar`` to use after its library's last session (earlier ones are
    ignored: the library stays the authority there). Replaces what was registered. Returns how
    many days are beyond the library's last session."""
    last = library_last_session(calendar)
    beyond = frozenset(d for d in days if d > last)
    _REGISTERED[calendar] = beyond
    _REGISTERED_SOURCE[calendar] = source
    _ASSUMED.pop(calendar, None)
    _session_cached.cache_clear()
    return len(beyond)


def unregister_sessions(calendar: str) -> None:
    """Forget the registered trading days (and the weekdays assumed so far) of ``calendar``."""
    _REGISTERED.pop(calendar, None)
    _REGISTERED_SOURCE.pop(calendar, None)
    _ASSUMED.pop(calendar, None)
    _session_cached.cache_clear()


def library_last_session(calendar: str) -> date:
    return get_calendar(calendar).last_session.date()


def known_until(calendar: str) -> tuple[date, str]:
    """(the last day whose sessions are known, where they come from)."""
    registered = _REGISTERED.get(calendar)
    if registered:
        return max(registered), _REGISTERED_SOURCE[calendar]
    return library_last_session(calendar), "exchange-calendars"


def assumed_weekdays(calendar: str) -> list[date]:
    """The days asked about so far that had to be taken as weekday sessions (no calendar knows them)."""
    return sorted(_ASSUMED.get(calendar, ()))


def zone_name(calendar: str) -> str:
    """The IANA time zone of a market calendar ("Asia/Shanghai" for XSHG); "UTC" for 24/7 markets.
    Raises ValueError for an unknown calendar."""
    if calendar == "24/7":
        return "UTC"
    return str(get_calendar(calendar).tz)


def local_text(moment: datetime, zone: str) -> str:
    """``moment`` as a trader reads it: exchange-local time with its zone, and UTC beside it where
    the zone is not UTC: "2021-07-06 10:15 EDT (14:15 UTC)"."""
    utc = ensure_utc(moment)
    if zone in ("UTC", "Etc/UTC"):
        return f"{utc:%Y-%m-%d %H:%M} UTC"
    local = utc.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({utc:%H:%M} UTC)"


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


def _library_session(calendar: str, day: date) -> Session | None:
    cal = get_calendar(calendar)
    label = _label(day)
    if not cal.is_session(label):
        return None
    open_, close = cal.session_open_close(label)
    brk_start, brk_end = cal.session_break_start_end(label) if cal.session_has_break(label) else (None, None)
    return Session(day, _utc(open_), _utc(close), _utc(brk_start), _utc(brk_end))  # type: ignore[arg-type]


def _beyond(calendar: str, day: date) -> bool:
    return calendar != "24/7" and day > library_last_session(calendar)


@cache
def _hours(calendar: str) -> tuple[time, time, time | None, time | None]:
    """Exchange-local open, close and break of the library's last session: the hours assumed after it."""
    cal = get_calendar(calendar)
    last = library_last_session(calendar)
    known = _library_session(calendar, last)
    assert known is not None

    def local(moment: datetime | None) -> time | None:
        return None if moment is None else moment.astimezone(cal.tz).time()

    return local(known.open), local(known.close), local(known.break_start), local(known.break_end)  # type: ignore[return-value]


@lru_cache(maxsize=4096)
def _session_cached(calendar: str, day: date) -> Session | None:
    registered = _REGISTERED.get(calendar)
    if registered and day <= max(registered):
        trades = day in registered
    else:
        trades = day.weekday() < 5
        _ASSUMED.setdefault(calendar, set()).add(day)
    if not trades:
        return None
    tz = get_calendar(calendar).tz
    open_, close, brk_start, brk_end = _hours(calendar)

    def at(moment: time | None) -> datetime | None:
        return None if moment is None else datetime.combine(day, moment, tz).astimezone(UTC)

    return Session(day, at(open_), at(close), at(brk_start), at(brk_end))  # type: ignore[arg-type]


def session(calendar: str, day: date) -> Session | None:
    """The session on ``day`` or None when the market does not trade that day."""
    if _beyond(calendar, day):
        return _session_cached(calendar, day)
    return _library_session(calendar, day)


def _next_day_with_session(calendar: str, day: date, step: int) -> date:
    for _ in range(370):  # holidays never last a year
        day += timedelta(days=step)
        if session(calendar, day) is not None:
            return day
    raise ValueError(f"no {calendar} session within a year of {day.isoformat()}")


def sessions_between(calendar: str, start: date, end: date) -> list[Session]:
    cal = get_calendar(calendar)
    last = library_last_session(calendar) if calendar != "24/7" else end
    found: list[Session] = []
    if start <= last:
        labels = cal.sessions_in_range(_label(start), _label(min(end, last)))
        found = [s for s in (session(calendar, label.date()) for label in labels) if s is not None]
    day = max(start, last + timedelta(days=1))
    while day <= end:
        if (extra := session(calendar, day)) is not None:
            found.append(extra)
        day += timedelta(days=1)
    return found


@cache
def _library_close(calendar: str) -> datetime:
    last = _library_session(calendar, library_last_session(calendar))
    assert last is not None
    return last.close


def _always_open_minutes() -> tuple[datetime, datetime]:
    """[first trading minute, one minute after the last) of exchange-calendars' 24/7 calendar,
    computed once (kept in ``_ALWAYS_OPEN_MINUTES``)."""
    global _ALWAYS_OPEN_MINUTES
    if _ALWAYS_OPEN_MINUTES is None:
        cal = get_calendar("24/7")
        _ALWAYS_OPEN_MINUTES = cal.first_minute.to_pydatetime(), cal.last_minute.to_pydatetime() + timedelta(minutes=1)
    return _ALWAYS_OPEN_MINUTES


_ALWAYS_OPEN_MINUTES: tuple[datetime, datetime] | None = None


def trading_day(calendar: str, moment: datetime) -> date:
    """The session a moment belongs to: the current one while open, else the next one."""
    if calendar == "24/7" and moment.tzinfo is UTC:
        # The paper broker asks at every fill and cost estimate, with UTC moments (what ensure_utc
        # returns them as): the UTC day, without the conversion and the cache call below.
        bounds = _ALWAYS_OPEN_MINUTES or _always_open_minutes()
        if bounds[0] <= moment < bounds[1]:
            return moment.date()
    moment = ensure_utc(moment)
    if calendar == "24/7":
        # Its sessions are the UTC days, every minute trading: the library's answer, without a
        # pandas lookup per fill (out of its range the library raises as before).
        first, after_last = _always_open_minutes()
        if first <= moment < after_last:
            return moment.date()
    cal = get_calendar(calendar)
    if calendar == "24/7" or moment < _library_close(calendar):
        ts = pd.Timestamp(moment).floor("min")
        return cal.minute_to_session(ts, direction="next").date()
    day = pd.Timestamp(moment).tz_convert(cal.tz).date()
    current = session(calendar, day)
    if current is not None and moment < current.close:
        return day
    return _next_day_with_session(calendar, day, 1)


def previous_session(calendar: str, day: date) -> Session | None:
    if _beyond(calendar, day):
        return session(calendar, _next_day_with_session(calendar, day, -1))
    cal = get_calendar(calendar)
    label = cal.date_to_session(_label(day), direction="next")
    prev = cal.previous_session(label)
    return session(calendar, prev.date())


def is_open(calendar: str, moment: datetime) -> bool:
    moment = ensure_utc(moment)
    if calendar != "24/7" and moment >= _library_close(calendar):
        current = session(calendar, pd.Timestamp(moment).tz_convert(get_calendar(calendar).tz).date())
        return current is not None and current.is_open_at(moment)
    cal = get_calendar(calendar)
    return bool(cal.is_trading_minute(pd.Timestamp(moment)))


def session_on_or_after(calendar: str, day: date) -> date:
    """``day`` when it has a session, else the first day after it that has one."""
    return day if session(calendar, day) is not None else _next_day_with_session(calendar, day, 1)


def next_session_day(calendar: str, day: date) -> date:
    if calendar != "24/7" and day >= library_last_session(calendar):
        return _next_day_with_session(calendar, day, 1)
    cal = get_calendar(calendar)
    label = cal.date_to_session(_label(day), direction="next")
    return cal.next_session(label).date()


def schedule(calendar: str, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Sessions of exchange-local ``days`` (naive midnight labels, as exchange-calendars indexes
    its schedule) with columns open, close, break_start, break_end (UTC; NaT when no session):
    the library's schedule, extended past its last session as ``session`` does."""
    cal = get_calendar(calendar)
    frame = cal.schedule.reindex(days)
    if calendar == "24/7":
        return frame
    last = library_last_session(calendar)
    for label in days[days > pd.Timestamp(last)].unique():
        extra = session(calendar, label.date())
        if extra is not None:
            row = [extra.open, extra.close, extra.break_start, extra.break_end]
            frame.loc[label, ["open", "close", "break_start", "break_end"]] = [
                pd.NaT if v is None else pd.Timestamp(v) for v in row
            ]
    return frame


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
