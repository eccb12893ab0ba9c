"""Backtest metrics as pure functions of an equity curve and a trade list (floats: analytics, not
accounting; the ledger's Decimals are converted once, here at the edge).

Conventions (the tests pin each on hand-made series):

- Returns are fractions: 0.25 is +25%.
- Drawdowns are fractions at or below zero: -0.2 is 20% below the running peak.
- Sharpe and Sortino use the returns of the equity curve resampled to one point per day (the last
  equity of each UTC day) and are annualised with ``sqrt(periods_per_year)``: 365 for a 24/7 market,
  the exchange's sessions in a year for XNYS / XSHG (:func:`periods_per_year`). No risk-free rate.
- A metric that has no value (no trades, no losing trade, a flat curve) is None, never NaN or inf,
  so the JSON stays valid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple, overload

import numpy as np

from venues import calendars
from venues.clock import epoch_us, from_epoch_us

CRYPTO_CALENDAR = "24/7"


class EquityPoint(NamedTuple):
    """One point of an equity curve. A named tuple, not a frozen dataclass: a run builds one per
    candle close (8,762 for a year of hours) after its loop, and they cost half as much."""

    ts: datetime  # aware UTC
    equity: float


class EquityCurve(Sequence[EquityPoint]):
    """An equity curve as two columns: ``times_us`` (int64, microseconds since the epoch, UTC) and
    ``values`` (float64, account currency), in time order. A sequence of :class:`EquityPoint`
    whose points are made once, when first read: the metrics work on the columns, and a run's
    thousands of points are read only by a report or ``--json``."""

    __slots__ = ("_points", "times_us", "values")

    def __init__(self, times_us: np.ndarray, values: np.ndarray) -> None:
        if len(times_us) != len(values):
            raise ValueError(f"an equity curve needs a value per time: {len(times_us)} times, {len(values)} values")
        self.times_us = np.asarray(times_us, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64)
        self._points: tuple[EquityPoint, ...] | None = None

    @classmethod
    def of(cls, points: Sequence[EquityPoint]) -> EquityCurve:
        """The curve of ``points`` (itself when it is one already)."""
        if isinstance(points, EquityCurve):
            return points
        return cls(
            np.fromiter((epoch_us(p.ts) for p in points), dtype=np.int64, count=len(points)),
            np.fromiter((p.equity for p in points), dtype=np.float64, count=len(points)),
        )

    def points(self) -> tuple[EquityPoint, ...]:
        if self._points is None:
            times = map(from_epoch_us, self.times_us.tolist())
            self._points = tuple(map(EquityPoint, times, self.values.tolist()))
        return self._points

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> EquityPoint: ...

    @overload
    def __getitem__(self, index: slice) -> EquityCurve: ...

    def __getitem__(self, index: int | slice) -> EquityPoint | EquityCurve:
        if isinstance(index, slice):
            return EquityCurve(self.times_us[index], self.values[index])
        return EquityPoint(from_epoch_us(int(self.times_us[index])), float(self.values[index]))

    def __iter__(self) -> Iterator[EquityPoint]:
        return iter(self.points())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EquityCurve):
            return bool(np.array_equal(self.times_us, other.times_us) and np.array_equal(self.values, other.values))
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return tuple(self.points()) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EquityCurve({len(self)} points)"


@dataclass(frozen=True)
class TradeRecord:
    """One round trip: an entry and everything that closed it. ``exit_time`` None: still open at the
    end (``pnl`` then marks the rest to the last close). ``r`` is P&L over the initial risk
    (|entry - stop| x qty); None when the trade had no stop (the reference policy)."""

    signal_id: str
    symbol: str
    side: str  # "long" | "short"
    entry_time: datetime
    entry_price: float
    qty: float
    exit_time: datetime | None
    exit_price: float | None  # quantity-weighted over the exit fills
    pnl: float  # after fees, in the account currency
    fees: float
    r: float | None
    reason: str
    tp1_hit: bool | None  # None: the trade had no target (sma_cross), so no TP1 to hit


def periods_per_year(calendar: str, year: int) -> int:
    """Trading days in ``year`` on ``calendar``: 365 for "24/7", else the exchange's sessions
    (XNYS 2021: 252)."""
    if calendar == CRYPTO_CALENDAR:
        return 365
    return len(calendars.sessions_between(calendar, date(year, 1, 1), date(year, 12, 31)))


def total_return(curve: Sequence[EquityPoint]) -> float | None:
    """End equity over start equity minus one; None for fewer than one point or a zero start."""
    if not curve or curve[0].equity <= 0:
        return None
    return curve[-1].equity / curve[0].equity - 1.0


def cagr(curve: Sequence[EquityPoint]) -> float | None:
    """Compound annual growth over the curve's span in years of 365.25 days; None for a span under
    one day or a non-positive end (growth cannot compound through zero)."""
    ret = total_return(curve)
    if ret is None or len(curve) < 2:
        return None
    years = (curve[-1].ts - curve[0].ts).total_seconds() / (365.25 * 86400)
    if years < 1 / 365.25 or ret <= -1.0:
        return None
    return float((1.0 + ret) ** (1.0 / years) - 1.0)


_DAY_US = 86_400_000_000


def daily_returns(curve: Sequence[EquityPoint]) -> list[float]:
    """Simple returns between the last equity of consecutive UTC days that have a point."""
    columns = EquityCurve.of(curve)
    if not len(columns):
        return []
    days = columns.times_us // _DAY_US
    order = np.argsort(days, kind="stable")  # within a day, the points keep their order: the last is last
    ordered = days[order]
    last = order[np.append(ordered[1:] != ordered[:-1], True)]
    values = columns.values[last]
    before, after = values[:-1], values[1:]
    keep = before > 0
    return (after[keep] / before[keep] - 1.0).tolist()


def sharpe(returns: Sequence[float], periods: int) -> float | None:
    """mean / sample standard deviation x sqrt(periods); None under two returns or no variation."""
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    if variance <= 0:
        return None
    return mean / math.sqrt(variance) * math.sqrt(periods)


def sortino(returns: Sequence[float], periods: int) -> float | None:
    """mean / downside deviation x sqrt(periods), the downside deviation being
    sqrt(mean(min(r, 0)^2)) over all returns; None under two returns or with no losing period."""
    if len(returns) < 2:
        return None
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    if downside <= 0:
        return None
    return (sum(returns) / len(returns)) / downside * math.sqrt(periods)


def _drawdowns(values: np.ndarray) -> np.ndarray:
    peak = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, values / peak - 1.0, 0.0)


def drawdown_series(curve: Sequence[EquityPoint]) -> list[float]:
    """Each point's equity over the running peak, minus one (0 at a new high)."""
    values = EquityCurve.of(curve).values
    return _drawdowns(values).tolist() if len(values) else []


def max_drawdown(curve: Sequence[EquityPoint]) -> float:
    """The deepest drawdown, a fraction <= 0 (0 for a curve that never falls)."""
    values = EquityCurve.of(curve).values
    return float(_drawdowns(values).min()) if len(values) else 0.0


def max_drawdown_duration(curve: Sequence[EquityPoint]) -> timedelta:
    """The longest time spent below a previous peak: from the peak to the point that first gets
    back to it, or to the curve's end when it never does."""
    columns = EquityCurve.of(curve)
    values, times = columns.values, columns.times_us
    if not len(values):
        return timedelta(0)
    # The points at (or back at) the running peak; the time under water is between two of them
    # that are not neighbours, and from the last one to the end when the curve ends below it.
    at_peak = np.flatnonzero(values >= np.maximum.accumulate(values))
    longest = 0
    if len(at_peak) > 1:
        gaps = np.diff(at_peak) > 1
        if gaps.any():
            longest = int((times[at_peak[1:][gaps]] - times[at_peak[:-1][gaps]]).max())
    if len(at_peak) and at_peak[-1] != len(values) - 1:
        longest = max(longest, int(times[-1] - times[at_peak[-1]]))
    return timedelta(microseconds=longest)


def closed(trades: Sequence[TradeRecord]) -> list[TradeRecord]:
    return [t for t in trades if t.exit_time is not None]


def win_rate(trades: Sequence[TradeRecord]) -> float | None:
    """Share of closed trades with a P&L above zero; None without closed trades."""
    done = closed(trades)
    return sum(1 for t in done if t.pnl > 0) / len(done) if done else None


def tp1_hit_rate(trades: Sequence[TradeRecord]) -> float | None:
    """Share of closed trades with targets whose first target filled; None when no closed trade
    had a target (sma_cross sets none: a 0% would read as a policy that always missed)."""
    done = [t for t in closed(trades) if t.tp1_hit is not None]
    return sum(1 for t in done if t.tp1_hit) / len(done) if done else None


def average_r(trades: Sequence[TradeRecord]) -> float | None:
    """Mean R over closed trades that had a stop; None when none had."""
    rs = [t.r for t in closed(trades) if t.r is not None]
    return sum(rs) / len(rs) if rs else None


def profit_factor(trades: Sequence[TradeRecord]) -> float | None:
    """Gross profit over gross loss of closed trades; None without a losing trade."""
    done = closed(trades)
    loss = -sum(t.pnl for t in done if t.pnl < 0)
    if loss <= 0:
        return None
    return sum(t.pnl for t in done if t.pnl > 0) / loss


def exposure(trades: Sequence[TradeRecord], start: datetime, end: datetime) -> float:
    """Share of [start, end] during which at least one position was open (overlaps counted once;
    a trade still open counts until ``end``)."""
    span = (end - start).total_seconds()
    if span <= 0:
        return 0.0
    intervals = sorted(
        (max(t.entry_time, start), min(t.exit_time or end, end)) for t in trades if (t.exit_time or end) > start
    )
    covered = 0.0
    current_start: datetime | None = None
    current_end: datetime | None = None
    for lo, hi in intervals:
        if hi <= lo:
            continue
        if current_end is None or lo > current_end:
            if current_start is not None and current_end is not None:
                covered += (current_end - current_start).total_seconds()
            current_start, current_end = lo, hi
        else:
            current_end = max(current_end, hi)
    if current_start is not None and current_end is not None:
        covered += (current_end - current_start).total_seconds()
    return covered / span


def summary(
    curve: Sequence[EquityPoint],
    trades: Sequence[TradeRecord],
    *,
    periods: int,
    start: datetime,
    end: datetime,
    costs_paid: float,
) -> dict[str, float | int | None]:
    """Every metric under its snake_case JSON key; durations in days (float)."""
    curve = EquityCurve.of(curve)  # the columns, once
    returns = daily_returns(curve)
    return {
        "start_equity": float(curve.values[0]) if len(curve) else None,
        "end_equity": float(curve.values[-1]) if len(curve) else None,
        "total_return": total_return(curve),
        "cagr": cagr(curve),
        "sharpe": sharpe(returns, periods),
        "sortino": sortino(returns, periods),
        "max_drawdown": max_drawdown(curve),
        "max_drawdown_days": max_drawdown_duration(curve).total_seconds() / 86400,
        "trades": len(trades),
        "closed_trades": len(closed(trades)),
        "win_rate": win_rate(trades),
        "tp1_hit_rate": tp1_hit_rate(trades),
        "average_r": average_r(trades),
        "profit_factor": profit_factor(trades),
        "exposure": exposure(trades, start, end),
        "costs_paid": costs_paid,
        "periods_per_year": periods,
    }
