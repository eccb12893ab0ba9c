"""An optional Optuna search of the boosters' parameters, before ``tools.ml.train``, that never sees a
test fold.

Which rows
    Only the first walk-forward fold's training window of each series (every bar before the first
    test window, less the purge): no test window of the validation (whose figures the card reports)
    is ever scored or fitted on by the search. That window is cut again, by the same splitter,
    into ``inner_folds`` inner walk-forward folds (purge and embargo of the label horizon, the first
    30% of it training only); a trial fits on each inner training window and predicts its inner
    test window.

What is minimised
    The log loss of the raw (uncalibrated) probabilities, pooled over every inner test row of every
    series. Calibration is left out: isotonic regression is monotone, and the search should pick
    the trees that rank and scale best before it.

What is tuned (``SEARCH_SPACE``): the learning rate (0.01-0.2, log scale), the leaves per tree
(4-63, LightGBM only), the depth (2-8), the minimum rows per leaf (10-200, log scale; XGBoost's
minimum child weight is a tenth of it) and the share of features per tree (0.5-1.0). The number of
trees, the seed and the rest stay as configured.

Bounds: at most ``trials`` trials and about ``timeout_seconds`` of wall time (Optuna stops starting
trials after it; a trial under way finishes). Seeded: Optuna's TPE sampler takes the training
seed, so with the same data, seed and number of trials the search tries the same parameters and
finds the same best (a test checks it). ``optuna`` is imported only when a search runs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tools.labels import BarrierPlan
from tools.ml import (
    SymbolData,
    TrainConfig,
    boosters_proba,
    fit_boosters,
    labelled_rows,
    purge_embargo,
    walk_forward_splits,
)
from tools.splits import walk_forward

__all__ = ["SEARCH_SPACE", "SearchConfig", "search"]

SEARCH_SPACE = {
    "learning_rate": "0.01-0.2, log",
    "num_leaves": "4-63 (lgbm, ensemble)",
    "max_depth": "2-8",
    "min_child_samples": "10-200, log",
    "colsample": "0.5-1.0",
}
INNER_MIN_TRAIN_SHARE = 0.3


@dataclass(frozen=True)
class SearchConfig:
    """At most ``trials`` trials and about ``timeout_seconds`` seconds, on ``inner_folds`` folds."""

    trials: int
    timeout_seconds: float = 600.0
    inner_folds: int = 3

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"--search must be 1 trial or more, got {self.trials}")
        if not self.timeout_seconds > 0:
            raise ValueError(f"--search-timeout must be above 0 seconds, got {self.timeout_seconds}")
        if self.inner_folds < 2:
            raise ValueError(f"the search needs 2 inner folds or more, got {self.inner_folds}")


def _suggest(trial: Any, config: TrainConfig) -> dict[str, Any]:
    params = {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
        "colsample": trial.suggest_float("colsample", 0.5, 1.0),
    }
    if config.model in ("lgbm", "ensemble"):
        params["num_leaves"] = trial.suggest_int("num_leaves", 4, 63)
    return params


def search(
    datasets: Sequence[SymbolData],
    config: TrainConfig,
    plan: BarrierPlan,
    bounds: SearchConfig,
    *,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> tuple[TrainConfig, dict[str, Any]]:
    """The config with the best parameters found, and the study's summary for the model card
    (``search``: bounds, seed, objective, inner windows, trials done and why it stopped, the best
    parameters and value, every trial). ValueError when the first training window is too short
    for the inner folds."""
    import optuna
    from sklearn.metrics import log_loss

    purge, embargo = purge_embargo(config, plan)
    outer = walk_forward_splits(datasets, config, plan)
    inner: dict[str, Any] = {}
    windows: dict[str, list[str]] = {}
    for d in datasets:
        end = outer[d.symbol][0].train_end
        try:
            inner[d.symbol] = walk_forward(
                end, bounds.inner_folds, purge=purge, embargo=embargo, min_train=int(end * INNER_MIN_TRAIN_SHARE)
            )
        except ValueError as exc:
            raise ValueError(f"--search: {d.symbol}'s first training window is too short: {exc}") from None
        windows[d.symbol] = [d.features.index[0].isoformat(), d.features.index[end - 1].isoformat()]

    folds: list[tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]] = []
    for k in range(bounds.inner_folds):
        parts = [
            (labelled_rows(d, f.train_start, f.train_end), labelled_rows(d, f.test_start, f.test_end))
            for d in datasets
            for f in (inner[d.symbol][k],)
        ]
        x = pd.concat([p[0][0] for p in parts])
        y = np.concatenate([p[0][1] for p in parts])
        vx = pd.concat([p[1][0] for p in parts])
        vy = np.concatenate([p[1][1] for p in parts])
        if len(np.unique(y)) < 2 or not len(vy):
            raise ValueError(f"--search: inner fold {k} has a single class or no test rows; widen --from/--to")
        folds.append((x, y, vx, vy))

    def objective(trial: Any) -> float:
        candidate = dataclasses.replace(config, **_suggest(trial, config))
        raws, labels = [], []
        for x, y, vx, vy in folds:
            raws.append(boosters_proba(fit_boosters(candidate.model, x, y, candidate), vx))
            labels.append(vy)
        return float(log_loss(np.concatenate(labels), np.clip(np.concatenate(raws), 1e-6, 1 - 1e-6), labels=[0, 1]))

    def progress(study: Any, trial: Any) -> None:
        if on_progress is not None:
            on_progress(len(study.trials), bounds.trials, f"search trial {len(study.trials)}/{bounds.trials}")

    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    study.optimize(objective, n_trials=bounds.trials, timeout=bounds.timeout_seconds, callbacks=[progress])
    done = [t for t in study.trials if t.value is not None]
    best = study.best_trial
    summary = {
        "method": f"optuna {optuna.__version__} TPE sampler",
        "seed": config.seed,
        "max_trials": bounds.trials,
        "timeout_seconds": bounds.timeout_seconds,
        "trials_done": len(done),
        "stopped_by": "trials" if len(study.trials) >= bounds.trials else "timeout",
        "objective": f"log loss of the raw probability over the test rows of {bounds.inner_folds} inner "
        "walk-forward folds inside each series' first training window (no test fold of the validation)",
        "inner_windows": windows,
        "space": SEARCH_SPACE,
        "best_params": dict(best.params),
        "best_value": float(best.value) if best.value is not None else None,
        "trials": [{"number": t.number, "params": dict(t.params), "value": t.value} for t in done],
    }
    return dataclasses.replace(config, **best.params), summary
