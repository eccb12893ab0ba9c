"""Retraining when the daily drift check flags drift (``TRADEOPS_DRIFT_RETRAIN=on``).

What is trained
    The promoted model's card says it all: the same venue (``replay`` when it drew on several
    replay markets), symbols, timeframe, model kind, sides and parameters (``params``, which hold
    the searched ones when it was searched: the search is not run again), over a window of the same
    length as the card's ``window``, ending at the clock's now. Training reads recorded bars, as
    ``tradeops train`` does (a live venue's through the lake). It runs in a worker thread: the
    event loop keeps serving the chats and scans. The new model is always stored (a candidate).

When it is promoted (``RULE``)
    Both models are scored on the same rows: the newest walk-forward fold's test rows of the new
    model's window, where the new model's probabilities are out of sample (that fold's model never
    saw them; its calibration curve was fitted on the earlier folds only). The promoted model
    scores the same rows with its own calibrated probability. The new model is promoted only if its
    log loss there is lower, averaged over the sides both models have (long, and short when
    trained); a tie keeps the promoted one. Those rows may fall inside the promoted model's own
    training window (it was trained recently): then it is scored in sample, which favours it, and
    the card says so (``current_in_sample``). The card of the new model keeps the comparison
    (``retrain``), and TP1 precision at the threshold of both is recorded beside it.

A failure (no bars, too little data, a model that cannot load) is a notice for the chats and a
warning in the log, never a crash of the run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from bot.drift import DRIFT_KEY, daily_drift
from bot.ml import REPLAY, load_series, registry, train_model
from bot.services import Services
from bot.settings import Settings
from tools.ml import LatestFold, TrainConfig, TrainedModel
from venues.clock import Clock

log = logging.getLogger(__name__)

RULE = (
    "promoted only if its calibrated log loss on the newest walk-forward fold's out-of-sample rows (its own "
    "window's last test fold) is lower than the promoted model's on the same rows, averaged over the sides "
    "both have; a tie keeps the promoted model"
)


class RetrainError(Exception):
    """No retrain possible: the message says why."""


@dataclass(frozen=True)
class RetrainOutcome:
    candidate: str
    current: str
    promoted: bool
    rows: int
    candidate_log_loss: float
    current_log_loss: float
    text: str


def retrain_source(card: dict[str, Any]) -> tuple[str, list[str], str, float]:
    """(venue, symbols, timeframe, window length in seconds) of a model card; RetrainError when
    the card lacks one."""
    venues = [str(v) for v in card.get("venue", [])]
    symbols = [str(s) for s in card.get("symbols", [])]
    timeframe = str(card.get("timeframe", ""))
    window = card.get("window") or {}
    if not venues or not symbols or not timeframe or "from" not in window or "to" not in window:
        raise RetrainError(f"model {card.get('id')}'s card lacks its venue, symbols, timeframe or window")
    if len(venues) == 1:
        venue = venues[0]
    elif all(v.startswith("replay-") for v in venues):
        venue = REPLAY
    else:
        raise RetrainError(f"model {card['id']} was trained on several venues ({', '.join(venues)})")
    length = (datetime.fromisoformat(window["to"]) - datetime.fromisoformat(window["from"])).total_seconds()
    return venue, symbols, timeframe, length


def _log_loss(labels: np.ndarray, probability: np.ndarray) -> float:
    from sklearn.metrics import log_loss

    return float(log_loss(labels, np.clip(probability, 1e-6, 1 - 1e-6), labels=[0, 1]))


def _precision(labels: np.ndarray, probability: np.ndarray, threshold: float) -> float | None:
    chosen = probability >= threshold
    return float(labels[chosen].mean()) if chosen.any() else None


def compare(candidate: TrainedModel, current: TrainedModel) -> dict[str, Any]:
    """The ``retrain`` block of the candidate's card (see RULE), without the verdict's words."""
    folds: dict[str, tuple[LatestFold, TrainedModel]] = {}
    if candidate.latest_fold is not None:
        folds["long"] = candidate.latest_fold, current
    if candidate.short is not None and candidate.short.latest_fold is not None and current.short is not None:
        folds["short"] = candidate.short.latest_fold, current.short
    if not folds:
        raise RetrainError(f"model {candidate.id} has no newest-fold predictions to compare")
    sides: dict[str, Any] = {}
    for side, (fold, scorer) in folds.items():
        theirs = scorer.predict_proba(fold.features)
        sides[side] = {
            "rows": len(fold.labels),
            "windows": fold.windows,
            "candidate_log_loss": _log_loss(fold.labels, fold.calibrated),
            "current_log_loss": _log_loss(fold.labels, theirs),
            "candidate_tp1_precision": _precision(fold.labels, fold.calibrated, float(candidate.card["threshold"])),
            "current_tp1_precision": _precision(fold.labels, theirs, float(current.card["threshold"])),
        }
    mine = float(np.mean([s["candidate_log_loss"] for s in sides.values()]))
    theirs_mean = float(np.mean([s["current_log_loss"] for s in sides.values()]))
    first_row = min(w[0] for s in sides.values() for w in s["windows"].values())
    trained_to = (current.card.get("window") or {}).get("to")
    overlap = bool(trained_to) and datetime.fromisoformat(str(trained_to)) > datetime.fromisoformat(first_row)
    return {
        "compared_with": current.id,
        "rule": RULE,
        "sides": sides,
        "candidate_log_loss": mine,
        "current_log_loss": theirs_mean,
        "current_in_sample": overlap,
        "promoted": mine < theirs_mean,
    }


def retrain(settings: Settings, clock: Clock, drifted: list[str]) -> RetrainOutcome:
    """Train a new model like the promoted one over the latest window, store it, and promote it
    when it beats the promoted one (RULE). Blocking: run it in a thread. RetrainError, bot.ml's
    TrainError or the registry's RegistryError when it cannot."""
    reg = registry(settings)
    current = reg.load(None)
    venue, symbols, timeframe, length = retrain_source(current.card)
    end = clock.now()
    start = datetime.fromtimestamp(end.timestamp() - length, tz=end.tzinfo)
    config = TrainConfig.from_card(current.card.get("params") or {})
    series = load_series(settings, venue, symbols, timeframe, start, end)
    verdict: dict[str, Any] = {}

    def judge(candidate: TrainedModel) -> None:
        verdict.update(compare(candidate, current), trigger="drift", drifted=drifted)
        side_note = " (long and short averaged)" if len(verdict["sides"]) > 1 else ""
        rows = max(s["rows"] for s in verdict["sides"].values())  # each side scores the same bars
        figures = (
            f"log loss {verdict['candidate_log_loss']:.4f} vs {verdict['current_log_loss']:.4f}{side_note} "
            f"on the newest fold's {rows} out-of-sample bars"
        )
        if verdict["promoted"]:
            words = f"new model {candidate.id} beats {current.id}: {figures}; promoted"
        else:
            words = f"new model {candidate.id} does not beat {current.id}: {figures}; kept as a candidate"
        if verdict["current_in_sample"]:
            words += f" ({current.id} was trained on some of those bars)"
        verdict["verdict"] = words
        candidate.card["retrain"] = verdict

    model, _ = train_model(settings, series, timeframe, config, clock=clock, window=(start, end), annotate=judge)
    if verdict["promoted"]:
        reg.promote(model.id)
    return RetrainOutcome(
        model.id,
        current.id,
        bool(verdict["promoted"]),
        sum(s["rows"] for s in verdict["sides"].values()),
        verdict["candidate_log_loss"],
        verdict["current_log_loss"],
        f"retrained after drift: {verdict['verdict']}",
    )


async def retrain_on_drift(services: Services, drifted: list[str]) -> str:
    """The retrain off the event loop; the chat's notice: what was trained and promoted or kept,
    with both log losses, or why it failed (never raised)."""
    try:
        outcome = await asyncio.to_thread(retrain, services.settings, services.clock, drifted)
    except Exception as exc:  # any failure is a notice, never the end of the run
        log.warning("retrain after drift failed: %s", exc)
        return f"retrain after drift failed: {exc}"
    log.info("%s", outcome.text)
    if outcome.promoted and not services.settings.ml_model:
        reload = getattr(services.deps.policy, "reload", None)
        if callable(reload):  # the ML policy follows the promoted model
            reload()
    return outcome.text


async def drift_notices(services: Services) -> list[str]:
    """The daily drift check (bot/drift.py) and, when it flagged drift and
    ``TRADEOPS_DRIFT_RETRAIN`` is on, the retrain: the notices for the chats, in order."""
    notice = await daily_drift(services)
    if notice is None:
        return []
    if not services.settings.drift_retrain:
        return [notice]
    drifted = list((services.signals.get_value(DRIFT_KEY) or {}).get("drifted", []))
    return [notice, await retrain_on_drift(services, drifted)]
