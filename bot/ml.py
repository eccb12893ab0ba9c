"""What `tradeops train` and `tradeops models` do beyond parsing options: reading the recorded bars
of a replay venue or the lake, training (tools.ml), storing the model (tools.model_registry) in the
data dir, and rendering model cards as text."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from bot.settings import Settings
from bot.venues import build_venues
from storage.db import make_engine
from tools.labels import BarrierPlan, RoundTripCosts
from tools.ml import SymbolData, TrainConfig, TrainedModel, make_dataset, train
from tools.model_registry import ModelRegistry
from tools.search import SearchConfig
from venues.clock import Clock, SimulatedClock
from venues.lake import LAKE_VENUE
from venues.models import Instrument
from venues.recorded import RecordedBarsVenue
from venues.replay.catalog import MARKETS
from venues.timeframes import parse_timeframe

REPLAY = "replay"  # any replay market: each symbol from the market that lists it
LABEL_NOTIONAL = Decimal(10_000)  # position size the labels' costs assume (minimum commissions)
ROOT = Path(__file__).resolve().parent.parent


class TrainError(Exception):
    """Bad input for training: the message says what is wrong and what is valid (exit status 2)."""


@dataclass(frozen=True)
class TrainSeries:
    symbol: str
    venue: str
    instrument: Instrument
    calendar: str
    bars: pd.DataFrame


def registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.models_dir)


def code_version() -> str:
    """``git describe --always --dirty`` of the checkout when there is one, else the package version."""
    if (ROOT / ".git").exists():
        try:
            done = subprocess.run(
                ["git", "describe", "--always", "--dirty", "--tags"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            return f"git {done.stdout.strip()}"
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return f"tradeops {version('tradeops')}"
    except PackageNotFoundError:
        return "unknown"


def _venues(settings: Settings, venue: str, start: datetime, engine: Engine) -> dict[str, Any]:
    replay_settings = settings.model_copy(update={"market_data": "replay"})
    return build_venues(replay_settings, SimulatedClock(start), engine, with_lake=venue == LAKE_VENUE)


def _recorded(venues: dict[str, Any], venue: str, symbol: str) -> RecordedBarsVenue:
    names = [n for n, v in venues.items() if isinstance(v, RecordedBarsVenue)]
    if venue == REPLAY:
        for market in MARKETS.values():
            if symbol in market.symbols:
                return venues[market.venue]
        listed = ", ".join(s for m in MARKETS.values() for s in m.symbols)
        raise TrainError(f"no replay market lists {symbol!r}; replay symbols: {listed}")
    found = venues.get(venue)
    if not isinstance(found, RecordedBarsVenue):
        lake_note = "" if LAKE_VENUE in venues else " (lake: none yet, fill it with tradeops backfill)"
        raise TrainError(
            f"--venue {venue!r}: training reads recorded bars; valid: {REPLAY}, {', '.join(names)}{lake_note}. "
            "For a live venue, backfill it into the lake first (tradeops backfill) and train with --venue lake"
        )
    return found


def load_series(
    settings: Settings, venue: str, symbols: Sequence[str], timeframe: str, start: datetime, end: datetime
) -> list[TrainSeries]:
    """Final bars of each symbol in ``[start, end)`` on ``timeframe`` (resampled up from the
    venue's native bars when coarser); TrainError for an unknown venue, symbol or timeframe, a
    timeframe finer than the venue's bars, or an empty window."""
    from venues.errors import UnknownSymbolError, UnknownTimeframeError

    if not symbols:
        raise TrainError("--symbols is empty; give one or more, comma-separated, e.g. --symbols BTC/USD")
    if start >= end:
        raise TrainError(f"--from {start:%Y-%m-%d} is not before --to {end:%Y-%m-%d}")
    try:
        tf = parse_timeframe(timeframe)
    except UnknownTimeframeError as exc:
        raise TrainError(str(exc)) from None
    engine = make_engine("sqlite://")
    try:
        venues = _venues(settings, venue, start, engine)
        out = []
        for symbol in symbols:
            source = _recorded(venues, venue, symbol)
            try:
                series = source.series(symbol)
                instrument = source.instrument_of(symbol)
            except UnknownSymbolError as exc:
                raise TrainError(str(exc)) from None
            if tf.delta < series.timeframe.delta:
                raise TrainError(
                    f"{symbol} has {series.timeframe.name} bars on {source.name}; --timeframe must be "
                    f"{series.timeframe.name} or coarser, got {tf.name}"
                )
            bars = series.frame(tf).bars
            window = bars[(bars.index >= start) & (bars["close_time"] <= end)]
            if window.empty:
                raise TrainError(
                    f"{symbol} has no {tf.name} bars between {start:%Y-%m-%d} and {end:%Y-%m-%d}; its bars "
                    f"run {bars.index[0]:%Y-%m-%d} -> {bars.index[-1]:%Y-%m-%d}"
                )
            out.append(TrainSeries(symbol, source.name, instrument, series.calendar, window))
        return out
    finally:
        engine.dispose()


def model_id(
    kind: str,
    timeframe: str,
    created: datetime,
    series: Sequence[TrainSeries],
    datasets: Sequence[SymbolData],
    config: TrainConfig,
) -> str:
    """``<kind>-<timeframe>-<yyyymmdd-hhmmss>-<6 hex of venues, data and params>``: sortable."""
    digest = hashlib.sha256()
    for s in series:
        digest.update(f"{s.venue}:{s.symbol}".encode())
    for data in datasets:
        digest.update(str(data.manifest.get("sha256")).encode())
    digest.update(json.dumps(config.__dict__, sort_keys=True, default=str).encode())
    return f"{kind}-{timeframe}-{created:%Y%m%d-%H%M%S}-{digest.hexdigest()[:6]}".lower()


def train_model(
    settings: Settings,
    series: Sequence[TrainSeries],
    timeframe: str,
    config: TrainConfig,
    *,
    clock: Clock,
    window: tuple[datetime, datetime],
    on_progress: Any = None,
    search: SearchConfig | None = None,
    annotate: Callable[[TrainedModel], None] | None = None,
) -> tuple[TrainedModel, Path]:
    """Features, labels (costs at the venue's fees and the paper broker's slippage), the optional
    parameter search (tools/search.py), walk-forward validation, the final model, and its
    directory in the data dir's model registry. ``annotate`` may add to the card before it is
    stored (the retrain's comparison)."""
    plan = BarrierPlan()
    datasets = [
        make_dataset(
            s.symbol,
            s.bars,
            timeframe,
            plan=plan,
            costs=RoundTripCosts(s.instrument, settings.paper_slippage_bps, LABEL_NOTIONAL),
            calendar=s.calendar,
            sides=config.sides,
        )
        for s in series
    ]
    summary = None
    if search is not None:
        from tools.search import search as run_search

        try:
            config, summary = run_search(datasets, config, plan, search, on_progress=on_progress)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
    created = clock.now()
    reg = registry(settings)
    base_id = model_id(config.model, timeframe, created, series, datasets, config)
    unique_id, n = base_id, 1
    while unique_id in reg.ids():  # the same data and parameters trained twice within a second
        n += 1
        unique_id = f"{base_id}-{n}"
    card = {
        "id": unique_id,
        "created_at": created.isoformat(),
        "code_version": code_version(),
        "venue": sorted({s.venue for s in series}),
        "symbols": [s.symbol for s in series],
        "timeframe": timeframe,
        "window": {"from": window[0].isoformat(), "to": window[1].isoformat()},
        "costs": {
            "slippage_bps": str(settings.paper_slippage_bps),
            "label_notional": str(LABEL_NOTIONAL),
            "fees": "each venue's fee schedule at the entry's date (venues.costs.round_trip_cost)",
        },
    }
    if summary is not None:
        card["search"] = summary
    try:
        model = train(datasets, config, plan, card=card, on_progress=on_progress)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    if annotate is not None:
        annotate(model)
    return model, reg.save(model)


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _n(value: Any) -> str:
    return "n/a" if value is None else str(value)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def card_text(card: dict[str, Any], *, promoted: bool = False) -> str:
    """A model card for a terminal: what it was trained on, each fold, the pooled out-of-sample
    figures and the reliability table (the short side's too), the search and the retrain."""
    sides = card.get("sides", ["long"])
    lines = [
        f"model {card['id']}{' (promoted)' if promoted else ''}: {card.get('kind')} on "
        f"{', '.join(card.get('symbols', []))} {card.get('timeframe')} ({', '.join(card.get('venue', []))}), "
        f"sides {' and '.join(sides)}, threshold {card.get('threshold')}, code {card.get('code_version')}, "
        f"created {card.get('created_at')}",
    ]
    for s in card.get("series", []):
        short = f", short up {_pct(s['short_up_rate'])}" if "short_up_rate" in s else ""
        lines.append(
            f"  data {s['symbol']}: {s['bars']} bars {s['first']} -> {s['last']}, {s['labelled']} labelled, "
            f"up {_pct(s['up_rate'])}{short}"
        )
    search = card.get("search")
    if search:
        best = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in search["best_params"].items()
        )
        lines.append(
            f"  search: {search['trials_done']} trials (at most {search['max_trials']} and "
            f"{search['timeout_seconds']:g} s; stopped by {search['stopped_by']}), seed {search['seed']}, "
            f"best inner log loss {_f(search['best_value'])}: {best}"
        )
    lines += _validation_lines(card.get("validation", {}), "long" if "short" in card else "")
    if "short" in card:
        lines += _validation_lines(card["short"].get("validation", {}), "short")
    retrain = card.get("retrain")
    if retrain:
        lines.append(f"  retrain: {retrain['verdict']}")
    return "\n".join(lines)


def _validation_lines(validation: dict[str, Any], side: str) -> list[str]:
    lines = []
    if side:
        lines.append(f"  {side} side:")
    lines.append(
        f"  walk-forward: {validation.get('folds')} folds, purge {validation.get('purge_bars')} bars, "
        f"embargo {validation.get('embargo_bars')} bars; calibrated figures use earlier folds only"
    )
    for fold in validation.get("fold_metrics", []):
        lines.append(
            f"  fold {fold['index']}: {fold['test_rows']} test bars, up {_pct(fold['up_rate'])}, "
            f"AUC {_f(fold['auc'])}, log loss {_f(fold['log_loss_raw'])} raw / {_f(fold['log_loss'])} calibrated, "
            f"signals {_n(fold['signals'])}, "
            f"TP1 precision {_pct(fold['tp1_precision'])}, ECE {_f(fold['ece'])}"
        )
    oos = validation.get("out_of_sample")
    if oos:
        lines.append(
            f"  out of sample (folds {oos['folds']}): AUC {_f(oos['auc'])}, log loss {_f(oos['log_loss'])}, "
            f"signals {oos['signals']} of {oos['test_rows']}, TP1 precision {_pct(oos['tp1_precision'])} "
            f"(up rate {_pct(oos['up_rate'])}), ECE {_f(oos['ece'])}"
        )
    table = [r for r in validation.get("reliability", []) if r["count"]]
    if table:
        lines.append("  reliability (predicted -> observed, bars):")
        lines += [
            f"    {r['bin']}: {_pct(r['mean_predicted'])} -> {_pct(r['observed_up_rate'])} ({r['count']})"
            for r in table
        ]
    return lines


def list_text(reg: ModelRegistry) -> str:
    entries = reg.entries()
    if not entries:
        return f"no models in {reg.root}; train one with tradeops train"
    promoted = reg.promoted()
    lines = []
    for entry in entries:
        mark = "*" if entry.id == promoted else " "
        if entry.card is None:
            lines.append(f"{mark} {entry.id}  unreadable: {entry.problem}")
            continue
        oos = entry.card.get("validation", {}).get("out_of_sample", {})
        lines.append(
            f"{mark} {entry.id}  {','.join(entry.card.get('symbols', []))} {entry.card.get('timeframe')}  "
            f"AUC {_f(oos.get('auc'))}  TP1 precision {_pct(oos.get('tp1_precision'))} "
            f"({oos.get('signals')} signals)  ECE {_f(oos.get('ece'))}"
        )
    lines.append("* promoted" if promoted else "none promoted: tradeops models promote ID")
    return "\n".join(lines)
