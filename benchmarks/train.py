"""Training time and honest fold metrics of the ML signal model (tools/ml.py).

For each 1h series with a year of bars shipped in venues/replay (BTC/USD and ETH/USDT 2021, about
8,700 bars each) and each model kind (lgbm, xgb, ensemble), with the defaults of ``tradeops train``
(4 walk-forward folds, purge and embargo = the 48-bar label horizon, 200 trees, one thread, costs at
the venue's fees and 5 bps slippage): the seconds to build features and labels, the seconds to
train (every fold plus the final model, wall and CPU), and the pooled out-of-sample figures of folds
1-3 (calibrated on earlier folds only): AUC, log loss, ECE, signals at the 0.55 threshold and their
TP1 precision, beside the share of bars labelled up (what buying every bar would hit).

Target: one symbol/timeframe over a year of 1h bars trains in under 60 s on the shared 2-core
machine. Run from the repo root: ``.venv/bin/python benchmarks/train.py`` (``--model lgbm`` for one kind).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where "venues" would be
# benchmarks/venues.py: drop it and put the repo root first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from tools.labels import BarrierPlan, RoundTripCosts  # noqa: E402
from tools.ml import MODEL_KINDS, TrainConfig, make_dataset, train  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402
from venues.replay.venue import ReplayVenue  # noqa: E402

SERIES = ("BTC/USD", "ETH/USDT")
TARGET_SECONDS = 60.0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODEL_KINDS, action="append")
    kinds = parser.parse_args().model or list(MODEL_KINDS)
    venue = ReplayVenue("crypto", SimulatedClock(datetime(2021, 1, 1, tzinfo=UTC)))
    plan = BarrierPlan()
    print(
        "| series | model | bars | features+labels s | train s (wall) | train s (CPU) | AUC | log loss | ECE "
        "| signals | TP1 precision | up rate |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    slowest = 0.0
    for symbol in SERIES:
        series = venue.series(symbol)
        bars = series.frame(series.timeframe).bars
        started = time.perf_counter()
        costs = RoundTripCosts(venue.instrument_of(symbol), Decimal(5))
        data = make_dataset(symbol, bars, "1h", plan=plan, costs=costs, calendar=series.calendar)
        prepare = time.perf_counter() - started
        for kind in kinds:
            wall, cpu = time.perf_counter(), time.process_time()
            model = train([data], TrainConfig(model=kind), plan, card={"id": "benchmark"})
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            slowest = max(slowest, prepare + wall)
            oos = model.card["validation"]["out_of_sample"]
            print(
                f"| {symbol} 1h 2021 | {kind} | {len(bars)} | {prepare:.1f} | {wall:.1f} | {cpu:.1f} | "
                f"{_num(oos['auc'])} | {_num(oos['log_loss'])} | {_num(oos['ece'])} | {oos['signals']} of "
                f"{oos['test_rows']} | {_pct(oos['tp1_precision'])} | {_pct(oos['up_rate'])} |"
            )
    verdict = "met" if slowest < TARGET_SECONDS else "NOT met"
    print(f"\nslowest features+labels+training: {slowest:.1f} s (target < {TARGET_SECONDS:.0f} s: {verdict})")


if __name__ == "__main__":
    main()
