"""Each backtest metric on hand-made series whose answers are worked out by hand in the comments."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.backtest import metrics
from scheduler.backtest.metrics import EquityPoint, TradeRecord

DAY0 = datetime(2021, 1, 1, tzinfo=UTC)


def curve(*values: float, step: timedelta = timedelta(days=1)) -> list[EquityPoint]:
    return [EquityPoint(DAY0 + step * i, v) for i, v in enumerate(values)]


def trade(
    pnl: float, *, entry_day: float = 0, exit_day: float | None = 1, r: float | None = None, tp1: bool | None = False
):
    return TradeRecord(
        signal_id=f"t{pnl}{entry_day}",
        symbol="BTC/USD",
        side="long",
        entry_time=DAY0 + timedelta(days=entry_day),
        entry_price=100.0,
        qty=1.0,
        exit_time=None if exit_day is None else DAY0 + timedelta(days=exit_day),
        exit_price=None if exit_day is None else 100.0 + pnl,
        pnl=pnl,
        fees=0.0,
        r=r,
        reason="x",
        tp1_hit=tp1,
    )


def test_total_return_and_drawdown_of_a_known_curve() -> None:
    # 100 -> 110 -> 99 -> 121: +21%; the dip to 99 is 10% under the 110 peak, recovered on day 3.
    points = curve(100, 110, 99, 121)
    assert metrics.total_return(points) == pytest.approx(0.21)
    assert metrics.drawdown_series(points) == pytest.approx([0, 0, -0.1, 0])
    assert metrics.max_drawdown(points) == pytest.approx(-0.1)
    assert metrics.max_drawdown_duration(points) == timedelta(days=2)  # peak day 1, back on day 3


def test_drawdown_never_recovered_lasts_to_the_end() -> None:
    # Peak 120 on day 1, then 90 and 100 on day 4: still under water, 3 days long; depth -25%.
    points = curve(100, 120, 90, 95, 100)
    assert metrics.max_drawdown(points) == pytest.approx(-0.25)
    assert metrics.max_drawdown_duration(points) == timedelta(days=3)


def test_a_rising_curve_has_no_drawdown() -> None:
    points = curve(1, 2, 3)
    assert metrics.max_drawdown(points) == 0
    assert metrics.max_drawdown_duration(points) == timedelta(0)


def test_cagr_over_two_years() -> None:
    # +21% over exactly two years of 365.25 days is +10% a year.
    points = [EquityPoint(DAY0, 100.0), EquityPoint(DAY0 + timedelta(days=730.5), 121.0)]
    assert metrics.cagr(points) == pytest.approx(0.10)
    assert metrics.cagr(points[:1]) is None


def test_daily_returns_use_the_last_point_of_each_day() -> None:
    # Hourly points: day 1 ends at 110 whatever happened before, day 2 at 99.
    hourly = [
        EquityPoint(DAY0 + timedelta(hours=h), v)
        for h, v in [(0, 100), (23, 100), (24, 150), (47, 110), (48, 105), (70, 99)]
    ]
    assert metrics.daily_returns(hourly) == pytest.approx([0.1, -0.1])


def test_sharpe_and_sortino_of_known_returns() -> None:
    # returns 1%, -1%, 2%, 0%: mean 0.5%, sample sd sqrt(0.0005/3) = 1.29099%, so the daily Sharpe is
    # 0.387298 and x sqrt(252) = 6.14817. Downside deviation sqrt(0.01^2 / 4) = 0.5%: Sortino
    # 0.005 / 0.005 x sqrt(252) = 15.87451.
    returns = [0.01, -0.01, 0.02, 0.0]
    assert metrics.sharpe(returns, 252) == pytest.approx(6.14817, rel=1e-5)
    assert metrics.sortino(returns, 252) == pytest.approx(15.87451, rel=1e-5)
    # The 24/7 calendar annualises with 365 days: x sqrt(365/252).
    assert metrics.sharpe(returns, 365) == pytest.approx(6.14817 * math.sqrt(365 / 252), rel=1e-5)


def test_sharpe_and_sortino_undefined_cases_are_none() -> None:
    assert metrics.sharpe([0.01], 365) is None
    assert metrics.sharpe([0.01, 0.01, 0.01], 365) is None  # no variation
    assert metrics.sortino([0.01, 0.02], 365) is None  # no losing day


def test_periods_per_year_follow_the_market_calendar() -> None:
    assert metrics.periods_per_year("24/7", 2021) == 365
    assert metrics.periods_per_year("XNYS", 2021) == 252
    assert metrics.periods_per_year("XSHG", 2021) == 243


def test_trade_statistics() -> None:
    # Closed: +10 (R 1, TP1), -5 (R -0.5), +20 (R 2, TP1), -5 (R -0.5); one still open (+100, ignored).
    trades = [
        trade(10, r=1.0, tp1=True),
        trade(-5, r=-0.5),
        trade(20, r=2.0, tp1=True),
        trade(-5, r=-0.5),
        trade(100, exit_day=None, r=10.0, tp1=True),
    ]
    assert metrics.win_rate(trades) == pytest.approx(0.5)
    assert metrics.tp1_hit_rate(trades) == pytest.approx(0.5)
    assert metrics.average_r(trades) == pytest.approx(0.5)  # (1 - 0.5 + 2 - 0.5) / 4
    assert metrics.profit_factor(trades) == pytest.approx(3.0)  # 30 / 10
    assert metrics.profit_factor([trade(5)]) is None  # no loss: no ratio
    # Trades without targets (sma_cross) have no TP1 to hit: no rate, not 0%.
    assert metrics.tp1_hit_rate([trade(5, tp1=None), trade(-5, tp1=None)]) is None
    assert metrics.tp1_hit_rate([trade(5, tp1=None), trade(-5, tp1=True)]) == pytest.approx(1.0)
    assert metrics.win_rate([]) is None and metrics.average_r([trade(1)]) is None


def test_exposure_counts_overlaps_once_and_open_trades_to_the_end() -> None:
    # Window 10 days; trades on [0, 2] and [1, 3] overlap (3 days), [5, 6] (1 day), one open from day 8
    # (2 days to the end): 6 of 10 days.
    trades = [
        trade(1, entry_day=0, exit_day=2),
        trade(1, entry_day=1, exit_day=3),
        trade(1, entry_day=5, exit_day=6),
        trade(1, entry_day=8, exit_day=None),
    ]
    assert metrics.exposure(trades, DAY0, DAY0 + timedelta(days=10)) == pytest.approx(0.6)
    assert metrics.exposure([], DAY0, DAY0 + timedelta(days=10)) == 0


def test_summary_keys_are_snake_case_and_json_safe() -> None:
    points = curve(100, 110, 99, 121)
    out = metrics.summary(points, [trade(5)], periods=365, start=DAY0, end=DAY0 + timedelta(days=3), costs_paid=1.5)
    for key in ("total_return", "sharpe", "max_drawdown", "win_rate", "tp1_hit_rate", "profit_factor", "trades"):
        assert key in out
    assert out["trades"] == 1 and out["costs_paid"] == 1.5
    assert all(v is None or math.isfinite(v) for v in out.values())


def _looped(points: list[EquityPoint]) -> tuple[list[float], list[float], timedelta]:
    """Daily returns, drawdowns and the longest drawdown as the plain loops over the points
    compute them, for the vectorised metrics to be checked against."""
    last_of_day: dict[object, float] = {}
    for point in points:
        last_of_day[point.ts.date()] = point.equity
    days = [last_of_day[d] for d in sorted(last_of_day)]
    returns = [b / a - 1.0 for a, b in itertools.pairwise(days) if a > 0]
    peak, drawdowns = -math.inf, []
    for point in points:
        peak = max(peak, point.equity)
        drawdowns.append(point.equity / peak - 1.0 if peak > 0 else 0.0)
    longest, peak_value, peak_ts, under = timedelta(0), -math.inf, None, False
    for point in points:
        if point.equity >= peak_value:
            if under and peak_ts is not None:
                longest = max(longest, point.ts - peak_ts)
            peak_value, peak_ts, under = point.equity, point.ts, False
        else:
            under = True
    if under and peak_ts is not None:
        longest = max(longest, points[-1].ts - peak_ts)
    return returns, drawdowns, longest


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_curve_metrics_equal_the_plain_loops_exactly(seed: int) -> None:
    # Random walks with flat stretches, ties at the peak, zero and negative equity, uneven steps
    # and several points a day: the columns give the loops' floats bit for bit.
    rng = random.Random(seed)
    points, ts, value = [], DAY0, 100.0
    for _ in range(rng.randint(1, 400)):
        ts += timedelta(minutes=rng.choice([1, 15, 60, 60 * 7, 60 * 30]))
        value = rng.choice([value, value, value * (1 + rng.uniform(-0.05, 0.05)), round(value), 0.0, -3.0, 100.0])
        points.append(EquityPoint(ts, value))
    returns, drawdowns, longest = _looped(points)
    assert metrics.daily_returns(points) == returns
    assert metrics.drawdown_series(points) == drawdowns
    assert metrics.max_drawdown(points) == min(drawdowns)
    assert metrics.max_drawdown_duration(points) == longest
    columns = metrics.EquityCurve.of(points)
    assert metrics.daily_returns(columns) == returns and list(columns) == points and columns == points
    assert columns[3:7] == points[3:7] and columns[-1] == points[-1]
