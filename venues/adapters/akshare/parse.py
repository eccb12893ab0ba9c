"""The venue's answers as bar frames (venues/timeframes.py layout) and quotes.

Times: Eastmoney and Sina stamp an intraday bar with its END, exchange-local (Asia/Shanghai): the
5-minute bar "2024-05-28 09:35" is 09:30-09:35. A daily row is the trading day; its bar opens at
the session open (09:30 for A-shares, 09:00 for SHFE's day session) and is final at 15:00. A SHFE
trading day begins the evening before with the night session (21:00): the daily bar holds it, and
minute bars of the night session are served as the venue gives them.

Volumes: Eastmoney counts A-share volume in lots of 100 shares (手); it is converted to shares.
Futures volume is in contracts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from venues.timeframes import BAR_COLUMNS, OHLCV, empty_bars

SHANGHAI = ZoneInfo("Asia/Shanghai")
EQUITY_OPEN = time(9, 30)
FUTURES_DAY_OPEN = time(9, 0)
CLOSE = time(15, 0)
SHARES_PER_LOT = 100


class ParseError(ValueError):
    pass


def local(moment: datetime) -> datetime:
    return moment.astimezone(SHANGHAI)


def local_date_param(moment: datetime) -> str:
    """An exchange-local date as Eastmoney's beg/end take it: YYYYMMDD."""
    return local(moment).strftime("%Y%m%d")


def _frame(opens: list[datetime], closes: list[datetime], values: list[list[float]]) -> pd.DataFrame:
    if not opens:
        return empty_bars()
    frame = pd.DataFrame(values, columns=OHLCV, dtype="float64")
    frame.index = pd.DatetimeIndex(opens).tz_convert("UTC").as_unit("us").rename("ts")
    frame["close_time"] = pd.DatetimeIndex(closes).tz_convert("UTC").as_unit("us")
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame[BAR_COLUMNS]


def _at(day: str, at: time) -> datetime:
    return datetime.combine(date.fromisoformat(day[:10]), at, SHANGHAI)


def _stamp(text: str) -> datetime:
    text = text.strip()
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, fmt).replace(tzinfo=SHANGHAI)


def eastmoney_klines(rows: Sequence[str], bar: timedelta | None, *, what: str) -> pd.DataFrame:
    """Eastmoney kline rows "time,open,close,high,low,volume(lots),amount,..." -> bars; ``bar``
    None for daily rows, else the intraday bar length."""
    opens: list[datetime] = []
    closes: list[datetime] = []
    values: list[list[float]] = []
    for number, row in enumerate(rows, start=1):
        parts = row.split(",")
        try:
            open_, close, high, low, volume = (float(p) for p in parts[1:6])
            if bar is None:
                start, end = _at(parts[0], EQUITY_OPEN), _at(parts[0], CLOSE)
            else:
                end = _stamp(parts[0])
                start = end - bar
        except (ValueError, IndexError) as exc:
            raise ParseError(f"{what}: row {number} is not time,open,close,high,low,volume,...: {row[:80]!r}") from exc
        opens.append(start)
        closes.append(end)
        values.append([open_, high, low, close, volume * SHARES_PER_LOT])
    return _frame(opens, closes, values)


def sina_bars(rows: Sequence[Sequence[Any]], bar: timedelta | None, *, what: str) -> pd.DataFrame:
    """Sina futures rows [time, open, high, low, close, volume, ...] -> bars; ``bar`` None for
    daily rows (the trading day), else the intraday bar length."""
    opens: list[datetime] = []
    closes: list[datetime] = []
    values: list[list[float]] = []
    for number, row in enumerate(rows, start=1):
        try:
            open_, high, low, close, volume = (float(v) for v in row[1:6])
            if bar is None:
                start, end = _at(str(row[0]), FUTURES_DAY_OPEN), _at(str(row[0]), CLOSE)
            else:
                end = _stamp(str(row[0]))
                start = end - bar
        except (ValueError, IndexError, TypeError) as exc:
            raise ParseError(f"{what}: row {number} is not time,open,high,low,close,volume,...: {row!r}") from exc
        opens.append(start)
        closes.append(end)
        values.append([open_, high, low, close, volume])
    return _frame(opens, closes, values)


def number(value: Any) -> float | None:
    """A numeric field of an Eastmoney row; "-" (no trade: suspended, not yet opened) is None."""
    if value is None or value == "-" or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
