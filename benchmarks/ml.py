"""How good is the ML model, honestly: walk-forward out of sample on every shipped series (and every
series of the bars lake when ``--data-dir`` has one), next to the rule policy on the same folds.

For each series (the scan timeframe of benchmarks/strategy.py: 1h crypto and AMZN, 15m for the
5-minute ETF and the SPY minutes, 1d A-shares) the test span is cut into ``--folds`` (3) windows on
the scan grid (``scheduler.backtest.walkforward.fold_windows``, no purge or embargo between them).
For each window a model is trained on **every bar before it** only (``tradeops train``'s code: its
labels need 48 bars after a bar, so the last 48 training bars carry none and nothing of the window
leaks in), with both sides (long and short) and a small config: LightGBM, 60 trees, 3 inner folds
for the calibration, threshold 0.55. Then the window is backtested twice from the starting capital
with the medium risk profile and all costs (fees, stamp duty, slippage, funding): once with the
ML policy on that model (``tradeops backtest --policy ml --model ID``) and once with the rule
policy. Nothing is tuned on a test window.

Printed per series and pooled:
- model bars: the test window's labelled bars whose calibrated probability is at or above the
  threshold (long and short sides counted together), their precision (the share whose label is
  up: TP1 before the stop, net of costs) and the long up rate (what buying every bar would hit);
- for each policy, the backtested trades, their TP1 hit rate, profit factor and Sharpe (chained
  over the folds, as ``tradeops backtest --walk-forward`` does).
The ML policy decides only on the screen's candidates (long setups), like every policy in a scan,
so its trades are far fewer than its model bars; the medium profile's minimum confidence of 0.60
also blocks its BUYs and SHORTs at 0.55-0.60 (the ML line says how many it proposed).

Small config so that it runs in a few minutes on the 2-core machine: test spans of three weeks
(2021-07-23 -> 2021-08-13, the end of the SPY minutes) for the intraday series and a year (2021)
for the daily A-shares; each backtest's throwaway database in /dev/shm where there is one. So few
trades are a small sample: the verdict on the seeds' target needs ``MIN_TRADES`` closed ML trades
before it says reached or not.
Run from the repo root: ``.venv/bin/python benchmarks/ml.py [--folds 3] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where "venues" would be
# benchmarks/venues.py: drop it and put the repo root first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.strategy import CAPITAL, DEFAULT_CAPITAL, TIMEFRAME, num, pct, records, rules_spec  # noqa: E402
from benchmarks.strategy import series as shipped_series  # noqa: E402
from bot.backtest import backtest, venue_calendar  # noqa: E402
from bot.ml import LABEL_NOTIONAL, TrainError, load_series, train_model  # noqa: E402
from bot.settings import Settings, load_settings  # noqa: E402
from bot.venues import build_venues  # noqa: E402
from scheduler.backtest import metrics  # noqa: E402
from scheduler.backtest.engine import BacktestResult  # noqa: E402
from scheduler.backtest.metrics import TradeRecord  # noqa: E402
from scheduler.backtest.walkforward import FoldWindow, fold_windows, walk_forward_json  # noqa: E402
from storage.db import make_engine  # noqa: E402
from tools.labels import BarrierPlan, RoundTripCosts  # noqa: E402
from tools.ml import SymbolData, TrainConfig, TrainedModel, make_dataset  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402
from venues.lake import LAKE_VENUE  # noqa: E402

INTRADAY_TEST = (datetime(2021, 7, 23, tzinfo=UTC), datetime(2021, 8, 13, tzinfo=UTC))
DAILY_TEST = (datetime(2021, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC))
HISTORY_FROM = datetime(2019, 1, 1, tzinfo=UTC)  # before every shipped series: all the history there is
CONFIG = TrainConfig(model="lgbm", folds=3, n_estimators=60, sides=("long", "short"))
PROFILE = "medium"  # benchmarks.strategy.rules_spec's
SHM = Path("/dev/shm")
TARGET_TP1 = 0.55
MIN_TRADES = 30  # closed trades below which a hit rate says nothing either way


@dataclass
class SeriesRun:
    label: str
    tested: str
    capital: Decimal
    docs: dict[str, dict[str, Any]]  # policy -> walk-forward document
    model_bars: int = 0
    model_hits: int = 0
    labelled: int = 0
    long_up: int = 0
    proposals: int = 0  # BUYs and SHORTs the ML policy proposed in the backtests
    unconfident: int = 0  # of which the risk gate blocked for confidence below the profile's minimum
    notes: list[str] = dataclasses.field(default_factory=list)


def label_stats(model: TrainedModel, data: SymbolData, window: FoldWindow) -> tuple[int, int, int, int]:
    """(bars at or above the threshold on either side, of which labelled up, labelled bars, long
    labels up) over the window's bars (by open time)."""
    index = data.features.index
    rows = (index >= window.test_start) & (index < window.test_end)
    features = data.features[rows]
    threshold = float(model.card["threshold"])
    chosen = hits = 0
    for scorer, labels in ((model, data.labels), (model.short, data.short_labels)):
        if scorer is None or labels is None or features.empty:
            continue
        label = labels["label"].to_numpy()[rows]
        known = ~np.isnan(label)
        signal = (scorer.predict_proba(features) >= threshold) & known
        chosen += int(signal.sum())
        hits += int(label[signal].sum())
    long_label = data.labels["label"].to_numpy()[rows]
    known = ~np.isnan(long_label)
    return chosen, hits, int(known.sum()), int(long_label[known].sum())


def ml_proposals(result: BacktestResult) -> int:
    """Entries the ML policy proposed: every signal that was neither a hold nor an abstention."""
    return sum(n for status, n in result.signals.items() if status not in ("hold", "abstained"))


async def run_series(
    settings: Settings, venue: str, symbol: str, timeframe: str, currency: str, folds: int
) -> SeriesRun:
    daily = timeframe == "1d"
    start, end = DAILY_TEST if daily else INTRADAY_TEST
    capital = CAPITAL.get(currency, DEFAULT_CAPITAL)
    spec = rules_spec(venue, symbol, timeframe, (start, end), capital)
    calendar = venue_calendar(settings, spec)
    windows = fold_windows(spec, calendar, folds, purge=0, embargo=0)
    (whole,) = load_series(settings, venue, [symbol], timeframe, HISTORY_FROM, end)
    costs = RoundTripCosts(whole.instrument, settings.paper_slippage_bps, LABEL_NOTIONAL)
    data = make_dataset(
        symbol, whole.bars, timeframe, plan=BarrierPlan(), costs=costs, calendar=whole.calendar, sides=CONFIG.sides
    )
    run = SeriesRun(f"{symbol} {timeframe}", f"{windows[0].test_start:%Y-%m-%d} -> {end:%Y-%m-%d}", capital, docs={})
    results: dict[str, list[BacktestResult]] = {"ml": [], "rules": []}
    tested: dict[str, list[FoldWindow]] = {"ml": [], "rules": list(windows)}
    for window in windows:
        fold_spec = dataclasses.replace(spec, start=window.test_start, end=window.test_end)
        results["rules"].append(await backtest(settings, fold_spec))
        try:
            (history,) = load_series(settings, venue, [symbol], timeframe, HISTORY_FROM, window.test_start)
            model, _ = train_model(
                settings,
                [history],
                timeframe,
                CONFIG,
                clock=SimulatedClock(window.test_start),
                window=(HISTORY_FROM, window.test_start),
            )
        except TrainError as exc:
            run.notes.append(f"fold {window.fold.index}: no model ({exc}); the ML policy sits it out")
            continue
        chosen, hits, labelled, up = label_stats(model, data, window)
        run.model_bars += chosen
        run.model_hits += hits
        run.labelled += labelled
        run.long_up += up
        ml_settings = settings.model_copy(update={"ml_model": model.id})
        result = await backtest(ml_settings, dataclasses.replace(fold_spec, policy="ml"))
        run.proposals += ml_proposals(result)
        run.unconfident += sum(1 for item in result.skipped if item["reason"].startswith("confidence "))
        results["ml"].append(result)
        tested["ml"].append(window)
    for policy, done in results.items():
        run.docs[policy] = walk_forward_json(
            dataclasses.replace(spec, policy=policy), tested[policy], done, purge=0, embargo=0, calendar=calendar
        )
    return run


async def lake_series(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(venue, symbol, timeframe, currency) of every series of the bars lake, if there is one."""
    engine = make_engine("sqlite://")
    try:
        replay = settings.model_copy(update={"market_data": "replay"})
        venues = build_venues(replay, SimulatedClock(HISTORY_FROM), engine, with_lake=True)
    finally:
        engine.dispose()
    lake = venues.get(LAKE_VENUE)
    if lake is None:
        return []
    return [(LAKE_VENUE, i.symbol, TIMEFRAME.get(i.symbol, i.timeframe), i.currency) for i in await lake.instruments()]


HEADER = (
    "| series | tested (out of sample) | model bars >= 0.55 | precision | long up rate "
    "| ML trades | ML TP1 hit | ML PF | ML Sharpe | rules trades | rules TP1 hit | rules PF | rules Sharpe |"
)


def row(
    label: str, tested: str, bars: int, hits: int, labelled: int, up: int, ml: dict[str, Any], rules: dict[str, Any]
) -> str:
    precision = hits / bars if bars else None
    up_rate = up / labelled if labelled else None
    return (
        f"| {label} | {tested} | {bars} | {pct(precision)} | {pct(up_rate)} "
        f"| {ml['trades']} | {pct(ml['tp1_hit_rate'])} | {num(ml['profit_factor'])} | {num(ml['sharpe'])} "
        f"| {rules['trades']} | {pct(rules['tp1_hit_rate'])} | {num(rules['profit_factor'])} | {num(rules['sharpe'])} |"
    )


def pooled(trades: list[TradeRecord], sharpes: list[float]) -> dict[str, Any]:
    return {
        "trades": len(trades),
        "tp1_hit_rate": metrics.tp1_hit_rate(trades),
        "profit_factor": metrics.profit_factor(trades),
        "sharpe": sum(sharpes) / len(sharpes) if sharpes else None,
    }


async def main(folds: int, data_dir: Path | None, only: list[str]) -> None:
    started = time.perf_counter()
    runs: list[SeriesRun] = []
    with tempfile.TemporaryDirectory(prefix="tradeops-ml-bench-") as tmp:
        settings = load_settings(data_dir=Path(tmp))
        todo = [(v, s, tf, c) for v, s, tf, c in shipped_series()]
        if data_dir is not None and (data_dir / "lake").is_dir():
            (Path(tmp) / "lake").symlink_to((data_dir / "lake").resolve())  # models stay in the temp dir
            todo += await lake_series(settings)
        for venue, symbol, timeframe, currency in todo:
            if only and symbol not in only:
                continue
            t0 = time.perf_counter()
            run = await run_series(settings, venue, symbol, timeframe, currency, folds)
            runs.append(run)
            ml = run.docs["ml"]["metrics"]
            print(
                f"  {run.label}: model bars {run.model_bars}, ML proposed {run.proposals} ({run.unconfident} blocked "
                f"for confidence under the {PROFILE} profile's minimum) and traded {ml['trades']}, "
                f"rules traded {run.docs['rules']['metrics']['trades']} ({time.perf_counter() - t0:.0f} s)"
                + "".join(f"\n    {note}" for note in run.notes),
                flush=True,
            )

    print()
    print(
        f"ML policy (lgbm, {CONFIG.n_estimators} trees, long and short sides, threshold {CONFIG.threshold}, a model "
        f"per fold trained on every bar before it) vs the rule policy; {folds} folds; {PROFILE} profile; all costs"
    )
    print(HEADER)
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    trades: dict[str, list[TradeRecord]] = {"ml": [], "rules": []}
    sharpes: dict[str, list[float]] = {"ml": [], "rules": []}
    for run in runs:
        print(
            row(
                run.label,
                run.tested,
                run.model_bars,
                run.model_hits,
                run.labelled,
                run.long_up,
                run.docs["ml"]["metrics"],
                run.docs["rules"]["metrics"],
            )
        )
        for policy in trades:
            trades[policy] += records(run.docs[policy], run.capital)
            if run.docs[policy]["metrics"]["sharpe"] is not None:
                sharpes[policy].append(run.docs[policy]["metrics"]["sharpe"])
    bars = sum(r.model_bars for r in runs)
    hits = sum(r.model_hits for r in runs)
    print(
        row(
            "**total**",
            "pooled; Sharpe: mean of series",
            bars,
            hits,
            sum(r.labelled for r in runs),
            sum(r.long_up for r in runs),
            pooled(trades["ml"], sharpes["ml"]),
            pooled(trades["rules"], sharpes["rules"]),
        )
    )
    print()
    hit = metrics.tp1_hit_rate(trades["ml"])
    closed = len([t for t in metrics.closed(trades["ml"]) if t.tp1_hit is not None])
    precision = hits / bars if bars else None
    if closed < MIN_TRADES:
        verdict = f"NOT shown: {closed} closed ML trades, too few to tell ({MIN_TRADES} needed)"
    else:
        verdict = "reached" if hit is not None and hit >= TARGET_TP1 else "NOT reached"
    print(
        f"seeds' target, TP1 hit rate >= {TARGET_TP1:.0%} out of sample after costs: {verdict}. ML trades' TP1 hit "
        f"rate {pct(hit)} of {closed} closed; the model's bars at the threshold: precision {pct(precision)} of {bars}"
    )
    print(f"run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None, help="a data dir whose bars lake is benchmarked too")
    parser.add_argument("--symbol", action="append", default=[], help="only this series (repeatable)")
    args = parser.parse_args()
    if SHM.is_dir():
        # Each backtest's throwaway SQLite database in memory: on this machine's disk its commits
        # took half of the run (fsync), which measures the disk, not the policies.
        tempfile.tempdir = str(SHM)
    asyncio.run(main(args.folds, args.data_dir, args.symbol))
