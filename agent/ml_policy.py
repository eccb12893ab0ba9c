"""``MLPolicy``: a trained model (tools/ml.py) decides, through the same graph and risk gate as the
other policies.

For the symbol asked about it reads the venue's last ``lookback_bars`` (3,000) final bars of the decision's
timeframe, builds the model's features on them (tools/features.py: the same code the model was
trained with) and scores the last bar: the calibrated probability that a long entered at the next
open reaches TP1 before its stop with a net profit after costs. At or above the model's threshold
it proposes a BUY on the plan the labels were made with (stop ``stop_atr`` ATRs below the last
close, TP1 at ``tp1_r`` R, further targets at +1 R and +2 R, the labels' time stop), with the
probability as its confidence and the model id, the probability and the three features that moved
the score most as its reasons. Below the threshold it holds, saying the probability.

Shorts: a model trained with its short side (``TrainedModel.short``, on the mirrored labels) also
scores a sell-to-open where the instrument may be sold short on this account (``Instrument.
short_refusal()`` is None: the same test the risk gate applies). At or above the threshold it
proposes a SHORT on the mirrored plan (stop ``stop_atr`` ATRs above, TP1 ``tp1_r`` R below, further
targets below); when both sides clear it, the more probable side wins (a tie: the long). Where
shorts are not allowed the short side is not scored, and the hold says why. The scan walks only the
screen's candidates (long setups, ``tools.screen``), so a scheduled SHORT comes where the screen saw
a long setup and the short model disagrees; an on-demand decision (``/signal``) walks any symbol.

It abstains, with the reason, when the model cannot be loaded (none promoted, a file missing or
corrupt: tools.model_registry's message), when the model was trained on another timeframe, or when
the bars are too few for the base features.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from decimal import Decimal

import pandas as pd

from agent.deps import AgentDeps
from agent.policies import DecisionInput
from tools.features import BASE_FEATURES, build_features
from tools.ml import TrainedModel
from tools.models import Action, Signal
from venues.costs import round_to_tick

# Training computes features over the whole history; TA-Lib's EMAs and RSI depend on where the
# bars start, so a short window would score other features than the model learnt. 3,000 hourly bars
# keep the daily EMA50 slope within about 0.06 ATR of the full-history value (1,500: 0.8 ATR).
ML_LOOKBACK_BARS = 3000
EXTRA_TARGETS_R = (1.0, 2.0)  # TP2 and TP3 beyond TP1, in R, as the rule policy spaces them


class MLPolicy:
    name = "ml"

    def __init__(
        self, load_model: Callable[[], TrainedModel], deps: AgentDeps, *, lookback_bars: int = ML_LOOKBACK_BARS
    ) -> None:
        self._load_model = load_model
        self._model: TrainedModel | None = None
        self.deps = deps
        self.lookback_bars = lookback_bars

    def _signal(self, facts: DecisionInput, action: Action, *why: str, **fields: object) -> Signal:
        return Signal(
            action=action,
            symbol=facts.symbol,
            timeframe=facts.timeframe,
            reasons=tuple(why),
            policy=self.name,
            **fields,
        )

    def model(self) -> TrainedModel:
        """The model, loaded on first use and kept; a failed load is tried again next time."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def reload(self) -> None:
        """Load the model again at the next decision (another one was promoted)."""
        self._model = None

    async def decide(self, facts: DecisionInput) -> Signal:
        if facts.position_qty != 0:
            return self._signal(
                facts, Action.HOLD, f"already holding {facts.position_qty} {facts.symbol}; the plan manages it"
            )
        try:
            model = await asyncio.to_thread(self.model)
        except Exception as exc:  # any load failure: the registry's message says which file and why
            return self._signal(facts, Action.ABSTAIN, f"ML model unavailable: {exc}")
        trained_on = str(model.card.get("timeframe", ""))
        if trained_on != facts.timeframe:
            return self._signal(
                facts,
                Action.ABSTAIN,
                f"model {model.id} was trained on {trained_on} bars; this decision is on {facts.timeframe}",
            )
        venue = self.deps.venue(facts.venue)
        instrument = await venue.instrument(facts.symbol)
        bars = await venue.bars(facts.symbol, facts.timeframe, limit=self.lookback_bars)
        refusal = instrument.short_refusal() if model.short is not None else None
        short = model.short if refusal is None else None
        scored = await asyncio.to_thread(score_sides, model, short, bars, facts.timeframe, instrument.calendar)
        if isinstance(scored, str):
            return self._signal(facts, Action.ABSTAIN, scored)
        threshold = float(model.card["threshold"])
        said = [f"model {model.id}: P(TP1 before the stop, net of costs) = {scored['long'][0]:.2f} long"]
        if "short" in scored:
            said.append(f"{scored['short'][0]:.2f} short")
        elif refusal is not None:
            said.append(f"short side not scored ({refusal})")
        best = max(scored, key=lambda side: (scored[side][0], side == "long"))
        probability, atr, contributions = scored[best]
        if probability < threshold:
            return self._signal(facts, Action.HOLD, f"{', '.join(said)}; below the threshold {threshold:.2f}")
        labels = model.card.get("labels", {})
        stop_atr, tp1_r = float(labels.get("stop_atr", 2.0)), float(labels.get("tp1_r", 1.5))
        horizon = int(labels.get("horizon_bars", 48))
        long = best == "long"
        sign = Decimal(1) if long else Decimal(-1)
        tick = facts.tick_size
        entry = round_to_tick(Decimal(repr(facts.last_price)), tick)
        stop = round_to_tick(entry - sign * Decimal(repr(stop_atr * atr)), tick, up=not long)
        where = "below" if long else "above"
        if not (0 < stop < entry if long else stop > entry):
            return self._signal(facts, Action.HOLD, f"{', '.join(said)}; but no valid stop {where} {entry}")
        risk = abs(entry - stop)
        targets = tuple(
            round_to_tick(entry + sign * risk * Decimal(repr(r)), tick, up=long)
            for r in (tp1_r, *(tp1_r + extra for extra in EXTRA_TARGETS_R))
        )
        if not long and not targets[-1] > 0:
            return self._signal(facts, Action.HOLD, f"{', '.join(said)}; but the short's targets fall below zero")
        top = ", ".join(f"{name} {value:+.2f}" for name, value in contributions)
        return self._signal(
            facts,
            Action.BUY if long else Action.SHORT,
            f"{', '.join(said)}; the {best} side is at or above the threshold {threshold:.2f}",
            f"top feature contributions to the {best} score (log-odds): {top}",
            f"stop {stop_atr:g}x ATR(14) {atr:.4g} {where} the entry; TP1 at {tp1_r:g}R",
            entry=entry,
            stop=stop,
            take_profits=targets,
            horizon_bars=horizon,
            confidence=round(probability, 2),
        )


Score = tuple[float, float, list[tuple[str, float]]]  # probability, ATR(14), top contributions


def score_sides(
    model: TrainedModel, short: TrainedModel | None, bars: pd.DataFrame, timeframe: str, calendar: str
) -> dict[str, Score] | str:
    """The last bar of ``bars`` scored by ``model`` (key "long") and, when given, by the short
    side's model ("short"), on one build of the features; or why there is no score."""
    higher = sorted({name.rsplit("_", 1)[1] for name in model.features if name.startswith("htf_")})
    features = build_features(bars, timeframe, higher=higher, calendar=calendar)
    if features.empty or features[list(BASE_FEATURES)].iloc[-1].isna().any():
        return f"too little history: {len(bars)} {timeframe} bars do not warm up the model's features"
    last = features.iloc[[-1]]
    atr = float(last["atr_pct"].iloc[0] * bars["close"].iloc[-1])
    out: dict[str, Score] = {}
    for side, scorer in (("long", model), ("short", short)):
        if scorer is None:
            continue
        probability = float(scorer.predict_proba(last)[0])
        if not math.isfinite(probability) or not atr > 0:
            return f"no score: probability {probability}, ATR {atr}"
        out[side] = probability, atr, scorer.top_contributions(last)
    return out
