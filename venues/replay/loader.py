"""Load an OHLCV CSV file into the bar-frame layout of venues.timeframes, checking every row.

Two file shapes are accepted (extra columns are ignored):

- intraday: ``timestamp,open,high,low,close,volume``; ``timestamp`` is the bar open time, ISO-8601
  (``...Z``, an offset, or naive = UTC); the bar is final at ``open + timeframe``;
- daily: ``date,open,high,low,close,volume``; ``date`` is the exchange-local trading day; the bar
  opens at that session's open and is final at that session's close, both from the market calendar.

Every problem is a DataFileError naming the file and the 1-based line number in the file (the
header is line 1), so a user can open the file at that line. The checks are vectorised: the file's
earliest bad line is found with array operations, never a Python loop over rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from venues.calendars import get_calendar
from venues.errors import DataFileError
from venues.timeframes import OHLCV, Timeframe, empty_bars, parse_timeframe

PRICES = ["open", "high", "low", "close"]
_MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})
_HEADER_LINES = 1  # data row i (0-based) is on line i + 2
_UNIT = "us"  # the resolution of venues.timeframes.empty_bars


@dataclass(frozen=True, slots=True)
class _Problem:
    mask: np.ndarray  # True on the bad rows
    describe: Callable[[int], str]  # row index -> message


def _line(row: int) -> int:
    return row + _HEADER_LINES + 1


def _expected_header() -> str:
    cols = ",".join(OHLCV)
    return f"timestamp,{cols} (intraday, ISO-8601 UTC bar open times) or date,{cols} (daily, exchange-local dates)"


def _read(path: Path) -> pd.DataFrame:
    name = str(path)
    try:
        # Everything as text, no NA guessing: the checks below tell "missing" from "unparsable",
        # and blank lines are kept as rows so that row numbers map to line numbers exactly.
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=False)
    except FileNotFoundError:
        raise DataFileError(name, None, "file not found") from None
    except pd.errors.EmptyDataError:
        raise DataFileError(name, 1, f"the file is empty; expected the header {_expected_header()}") from None
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        row = int(match.group(1)) if match else None
        detail = str(exc).strip().removeprefix("Error tokenizing data. C error: ")
        raise DataFileError(name, row, f"not a well-formed CSV row: {detail}") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(name, None, f"not UTF-8 text ({exc.reason})") from None


def _raise_first(path: Path, problems: list[_Problem]) -> None:
    """Raise for the earliest bad line over all checks (ties: the check listed first)."""
    best: tuple[int, int] | None = None  # (row, problem index)
    for i, problem in enumerate(problems):
        if problem.mask.any():
            row = int(np.argmax(problem.mask))
            if best is None or row < best[0]:
                best = (row, i)
    if best is not None:
        row, i = best
        raise DataFileError(str(path), _line(row), problems[i].describe(row))


def _text(raw: pd.Series) -> np.ndarray:
    return raw.fillna("").astype(str).str.strip().to_numpy(dtype=object)


def _column(raw: pd.DataFrame, col: str) -> tuple[np.ndarray, list[_Problem]]:
    text = _text(raw[col])
    num = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce").to_numpy(dtype="float64")
    nan = np.isnan(num)
    missing = nan & np.isin(np.char.lower(text.astype(str)), list(_MISSING))
    return num, [
        _Problem(missing, lambda r: f"missing value (NaN) in column {col!r}"),
        _Problem(nan & ~missing, lambda r: f"cannot parse {text[r]!r} as a number in column {col!r}"),
        _Problem(np.isinf(num), lambda r: f"non-finite number {text[r]!r} in column {col!r}"),
    ]


def _numbers(raw: pd.DataFrame) -> tuple[dict[str, np.ndarray], list[_Problem]]:
    values: dict[str, np.ndarray] = {}
    problems: list[_Problem] = []
    for col in OHLCV:
        values[col], found = _column(raw, col)
        problems += found
    return values, problems


def _positive(v: dict[str, np.ndarray], col: str) -> _Problem:
    return _Problem(v[col] <= 0, lambda r: f"{col} must be a positive price, got {float(v[col][r])!r}")


def _range_problems(v: dict[str, np.ndarray]) -> list[_Problem]:
    body_high = np.maximum(v["open"], v["close"])
    body_low = np.minimum(v["open"], v["close"])
    return [
        *(_positive(v, col) for col in PRICES),
        _Problem(v["volume"] < 0, lambda r: f"volume must not be negative, got {float(v['volume'][r])!r}"),
        _Problem(
            v["high"] < body_high,
            lambda r: f"high {float(v['high'][r])!r} is below max(open, close) = {float(body_high[r])!r}",
        ),
        _Problem(
            v["low"] > body_low,
            lambda r: f"low {float(v['low'][r])!r} is above min(open, close) = {float(body_low[r])!r}",
        ),
    ]


def _order_problems(stamps: np.ndarray, text: np.ndarray, what: str) -> list[_Problem]:
    """Rows must be strictly ascending; ``stamps`` is int64 with NaT as its minimum value."""
    valid = stamps != np.iinfo(np.int64).min
    prev_ok = np.concatenate([[False], valid[:-1] & valid[1:]])
    prev = np.concatenate([stamps[:1], stamps[:-1]])
    return [
        _Problem(
            prev_ok & (stamps == prev),
            lambda r: f"duplicate {what} {text[r]!r} (same as line {_line(r - 1)})",
        ),
        _Problem(
            prev_ok & (stamps < prev),
            lambda r: (
                f"{what} {text[r]!r} is earlier than {text[r - 1]!r} on line {_line(r - 1)}; "
                "rows must be sorted ascending"
            ),
        ),
    ]


def _frame(index: pd.DatetimeIndex, close_time: pd.DatetimeIndex, values: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = pd.DataFrame({c: values[c] for c in OHLCV}, index=index.as_unit(_UNIT).rename("ts"))
    frame["close_time"] = close_time.as_unit(_UNIT)
    return frame


def _blank(raw: pd.DataFrame) -> _Problem:
    empty = np.logical_and.reduce([_text(raw[c]) == "" for c in raw.columns])
    return _Problem(np.asarray(empty, dtype=bool), lambda r: "blank line")


def _intraday(path: Path, raw: pd.DataFrame, tf: Timeframe) -> pd.DataFrame:
    text = _text(raw["timestamp"])
    stamps = pd.DatetimeIndex(pd.to_datetime(pd.Series(text), format="ISO8601", utc=True, errors="coerce"))
    as_int = stamps.as_unit(_UNIT).asi8
    values, problems = _numbers(raw)
    problems[:0] = [
        _blank(raw),
        _Problem(
            np.asarray(stamps.isna()),
            lambda r: f"cannot parse timestamp {text[r]!r}; expected ISO-8601 such as 2021-01-01T06:00:00Z",
        ),
    ]
    problems += _range_problems(values)
    problems += _order_problems(as_int, text, "timestamp")
    # A bar opening before the previous one is final means the timeframe given does not match the
    # file, and bars would overlap in time.
    step = np.diff(as_int, prepend=as_int[:1])
    tf_us = int(tf.delta / pd.Timedelta(1, _UNIT))
    overlap = (step > 0) & (step < tf_us) & np.concatenate([[False], ~stamps.isna()[1:] & ~stamps.isna()[:-1]])
    problems.append(
        _Problem(
            overlap,
            lambda r: (
                f"bar at {text[r]!r} opens {pd.Timedelta(int(step[r]), _UNIT)} after the previous one, "
                f"less than the timeframe {tf.name}: is the timeframe right?"
            ),
        )
    )
    _raise_first(path, problems)
    return _frame(stamps, stamps + tf.delta, values)


def _daily(path: Path, raw: pd.DataFrame, calendar: str) -> pd.DataFrame:
    text = _text(raw["date"])
    days = pd.DatetimeIndex(pd.to_datetime(pd.Series(text), format="%Y-%m-%d", errors="coerce"))
    schedule = get_calendar(calendar).schedule
    where = schedule.index.get_indexer(days)
    first, last = schedule.index[0].date(), schedule.index[-1].date()
    values, problems = _numbers(raw)
    problems[:0] = [
        _blank(raw),
        _Problem(
            np.asarray(days.isna()),
            lambda r: f"cannot parse date {text[r]!r}; expected YYYY-MM-DD (the exchange-local trading day)",
        ),
        _Problem(
            (where < 0) & ~np.asarray(days.isna()),
            lambda r: f"{text[r]} is not a trading session of the {calendar} calendar (which covers {first} to {last})",
        ),
    ]
    problems += _range_problems(values)
    problems += _order_problems(days.as_unit(_UNIT).asi8, text, "date")
    _raise_first(path, problems)
    sessions = schedule.iloc[where]
    return _frame(pd.DatetimeIndex(sessions["open"]), pd.DatetimeIndex(sessions["close"]), values)


def load_bar_file(path: str | Path, *, timeframe: str | Timeframe, calendar: str) -> pd.DataFrame:
    """Read and check one CSV file of bars; returns the venues.timeframes bar-frame layout.

    ``timeframe`` is the file's bar length. ``calendar`` (an exchange-calendars name such as XSHG)
    places daily bars at their session's open and close; intraday files do not need it.
    Raises DataFileError naming the file and line of the first problem.
    """
    path = Path(path)
    tf = parse_timeframe(timeframe)
    raw = _read(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    time_cols = [c for c in ("timestamp", "date") if c in raw.columns]
    missing = [c for c in OHLCV if c not in raw.columns]
    if len(time_cols) != 1 or missing:
        if len(time_cols) == 2:
            problem = "both a timestamp and a date column"
        else:
            wanted = ([] if time_cols else ["timestamp (or date)"]) + missing
            problem = f"missing column(s) {', '.join(wanted)}"
        header = ",".join(raw.columns)
        raise DataFileError(str(path), 1, f"header {header!r} has {problem}; expected {_expected_header()}")
    if time_cols[0] == "date" and tf.name != "1d":
        raise DataFileError(str(path), 1, f"a date column means daily bars, but the file was given timeframe {tf.name}")
    if raw.empty:
        return empty_bars()
    if time_cols[0] == "date":
        return _daily(path, raw, calendar)
    return _intraday(path, raw, tf)
