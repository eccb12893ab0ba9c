"""The daily drift check of the promoted model (tools/drift.py's PSI and KS): its features and
calibrated probability on the latest ``TRADEOPS_DRIFT_BARS`` bars of each symbol it was trained on,
read from the venue that lists the symbol (the clock's now: point in time), against the training
window stored in its card. ``tradeops run`` runs it once a day at ``TRADEOPS_DRIFT_TIME`` and tells
the chats (a notice) when a threshold is exceeded. With TRADEOPS_DRIFT_RETRAIN=on a drift
notice is followed by a retrain (bot/retrain.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pandas as pd

from agent.ml_policy import ML_LOOKBACK_BARS
from bot.ml import registry
from bot.services import Services
from tools.drift import DriftReport, DriftThresholds, drift_report
from tools.features import build_features
from tools.ml import TrainedModel
from tools.model_registry import RegistryError
from venues.errors import VenueError

log = logging.getLogger(__name__)

DRIFT_KEY = "drift:last"  # {"day": local date of the last check, "at", "drifted": [names]}


class DriftCheckError(Exception):
    """No check possible: the message says why (no promoted model, no reference, no bars)."""


@dataclass(frozen=True)
class SymbolDrift:
    venue: str
    symbol: str
    report: DriftReport


def live_features(model: TrainedModel, bars: pd.DataFrame, timeframe: str, calendar: str) -> pd.DataFrame:
    """The model's features on ``bars`` (rows with any NaN feature dropped)."""
    higher = sorted({name.rsplit("_", 1)[1] for name in model.features if name.startswith("htf_")})
    features = build_features(bars, timeframe, higher=higher, calendar=calendar)
    return features[model.features].dropna()


async def drift_check(services: Services) -> list[SymbolDrift]:
    """One report per symbol of the promoted model; DriftCheckError when none can be made."""
    settings = services.settings
    try:
        model = await asyncio.to_thread(registry(settings).load, None)
    except RegistryError as exc:
        raise DriftCheckError(str(exc)) from None
    stored = model.card.get("drift_reference")
    if not isinstance(stored, dict):
        raise DriftCheckError(f"model {model.id} has no training-window reference (trained before drift checks)")
    timeframe = str(model.card.get("timeframe", ""))
    thresholds = DriftThresholds(psi=settings.drift_psi, ks_p=settings.drift_ks_p)
    reports: list[SymbolDrift] = []
    for symbol in model.card.get("symbols", []):
        found = None
        for name, venue in services.venues.items():
            if symbol in {i.symbol for i in await venue.instruments()}:
                found = name, venue
                break
        if found is None:
            log.info("drift check: no configured venue lists %s", symbol)
            continue
        name, venue = found
        try:
            instrument = await venue.instrument(symbol)
            bars = await venue.bars(symbol, timeframe, limit=ML_LOOKBACK_BARS)
        except VenueError as exc:  # one venue down: the other symbols are still checked
            log.warning("drift check: no %s bars of %s from %s: %s", timeframe, symbol, name, exc)
            continue
        features = await asyncio.to_thread(live_features, model, bars, timeframe, instrument.calendar)
        window = features.iloc[-settings.drift_bars :]
        if window.empty:
            log.info("drift check: too few %s bars of %s for the model's features", timeframe, symbol)
            continue
        probability = await asyncio.to_thread(model.predict_proba, window)
        report = drift_report(
            model.id, stored, {c: window[c].to_numpy(dtype="float64") for c in window.columns}, probability, thresholds
        )
        reports.append(SymbolDrift(name, symbol, report))
    if not reports:
        raise DriftCheckError(f"model {model.id}: no configured venue has bars of {', '.join(model.card['symbols'])}")
    return reports


def drift_notice(reports: list[SymbolDrift]) -> str | None:
    """The chat's notice naming the drifted features per symbol; None when nothing drifted."""
    lines = [f"{r.venue} {r.symbol}: {r.report.text()}" for r in reports if r.report.drifted]
    return "\n".join(lines) if lines else None


async def daily_drift(services: Services) -> str | None:
    """Run the check at most once per local day (a restart does not repeat it): the notice to
    push, or None (already checked today, nothing drifted, or no check possible: logged)."""
    now = services.clock.now()
    day = now.astimezone(services.settings.zone).date().isoformat()
    if (services.signals.get_value(DRIFT_KEY) or {}).get("day") == day:
        return None
    try:
        reports = await drift_check(services)
    except DriftCheckError as exc:
        log.info("drift check skipped: %s", exc)
        drifted: list[str] = []
        notice = None
    else:
        drifted = sorted({row.name for r in reports for row in r.report.drifted})
        notice = drift_notice(reports)
    services.signals.set_value(DRIFT_KEY, {"day": day, "at": now.isoformat(), "drifted": drifted}, at=now)
    return notice
