"""Walk-forward backtests: the window cut into K folds on the scan grid (the fire times of the
watchlist's trigger, i.e. the bars where a decision can happen), each fold's test window run as
its own backtest from the starting capital, and the out-of-sample total chained from them.

The split itself is :func:`tools.splits.walk_forward` (purge and embargo in bars of that grid)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler.backtest import metrics
from scheduler.backtest.engine import BacktestError, BacktestResult, BacktestSpec, scan_timeframe, trade_json
from scheduler.backtest.metrics import EquityPoint
from scheduler.scan import scan_interval
from scheduler.triggers import fire_times, trigger_for
from storage.watchlists import WatchlistSpec
from tools.splits import Fold, walk_forward


@dataclass(frozen=True)
class FoldWindow:
    """A fold with its bar indices turned into times: train [train_start, train_end), test
    [test_start, test_end)."""

    fold: Fold
    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime


def scan_grid(spec: BacktestSpec, calendar: str) -> list[datetime]:
    """The fire times of the backtest's scan job in [start, end): one per bar where it decides.
    BacktestError for a timeframe scans cannot fire on (:func:`scan_timeframe`)."""
    scan_timeframe(spec.timeframe)
    watchlist = WatchlistSpec(name="grid", venue=spec.venue, symbols=spec.symbols or ("x",), timeframe=spec.timeframe)
    trigger = trigger_for(calendar, scan_interval(watchlist, calendar))
    return [t for t in fire_times(trigger, spec.start, spec.end) if t < spec.end]


def fold_windows(spec: BacktestSpec, calendar: str, k: int, *, purge: int, embargo: int) -> list[FoldWindow]:
    """K fold windows over the scan grid; BacktestError when the window is too short for them."""
    grid = scan_grid(spec, calendar)
    needed = purge + embargo * max(k - 1, 0) + k  # one test bar a fold, after the purge, between the embargoes
    if k >= 1 and purge >= 0 and embargo >= 0 and len(grid) < needed:
        # Said in the command's terms: the splitter's own message names min_train, no option here.
        raise BacktestError(
            f"--walk-forward {k}: the window has {len(grid)} scan bars (the times the scan decides at), "
            f"too few for {k} folds with --purge-bars {purge} and --embargo-bars {embargo}: each fold "
            f"needs at least one test bar, so at least {needed} scan bars; use fewer folds or a longer window"
        )
    try:
        folds = walk_forward(len(grid), k, purge=purge, embargo=embargo)
    except ValueError as exc:
        raise BacktestError(f"--walk-forward {k}: {exc} (the window has {len(grid)} scan bars)") from None

    def at(index: int) -> datetime:
        return grid[index] if index < len(grid) else spec.end

    return [FoldWindow(f, at(f.train_start), at(f.train_end), at(f.test_start), at(f.test_end)) for f in folds]


def chained_curve(results: Sequence[BacktestResult]) -> list[EquityPoint]:
    """The folds' equity curves end to end, each rescaled to start where the previous one ended, so
    the curve is what the starting capital would have become over all test windows."""
    if not results or not results[0].equity:
        return []
    capital = results[0].equity[0].equity
    level = capital
    out: list[EquityPoint] = []
    for result in results:
        if not result.equity or result.equity[0].equity <= 0:
            continue
        first = result.equity[0].equity
        out.extend(EquityPoint(p.ts, level * p.equity / first) for p in result.equity)
        level = out[-1].equity
    return out


def walk_forward_json(
    spec: BacktestSpec,
    windows: Sequence[FoldWindow],
    results: Sequence[BacktestResult],
    *,
    purge: int,
    embargo: int,
    calendar: str,
) -> dict[str, Any]:
    """The `--json` document of a walk-forward run: ``params``, ``walk_forward`` (each fold's
    windows and metrics), ``metrics`` (the out-of-sample total over the chained curve and every
    fold's trades) and ``trades``."""
    trades = [t for r in results for t in r.trades]
    curve = chained_curve(results)
    periods = metrics.periods_per_year(calendar, spec.start.year)
    tested_start = windows[0].test_start if windows else spec.start
    total = metrics.summary(
        curve,
        trades,
        periods=periods,
        start=tested_start,
        end=spec.end,
        costs_paid=sum(float(r.metrics["costs_paid"] or 0) for r in results),
    )
    folds = [
        {
            "index": w.fold.index,
            "train": [w.train_start.isoformat(), w.train_end.isoformat()],
            "test": [w.test_start.isoformat(), w.test_end.isoformat()],
            "test_bars": w.fold.test_bars,
            "metrics": r.metrics,
        }
        for w, r in zip(windows, results, strict=True)
    ]
    currency = results[0].currency if results else ""
    return {
        "params": {**spec.params_json(), "currency": currency, "calendar": calendar},
        "walk_forward": {"k": len(windows), "purge_bars": purge, "embargo_bars": embargo, "folds": folds},
        "metrics": total,
        "trades": [trade_json(t) for t in trades],
    }
