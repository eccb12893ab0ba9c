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

It abstains, with the reason, when the model cannot be loaded (none promoted, a file missing or
corrupt: tools.model_registry's message), when the model was trained on another timeframe, or when
the bars are too few for the base features. Long only: the labels are a long's outcome.
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
        scored = await asyncio.to_thread(score_last_bar, model, bars, facts.timeframe, instrument.calendar)
        if isinstance(scored, str):
            return self._signal(facts, Action.ABSTAIN, scored)
        probability, atr, contributions = scored
        threshold = float(model.card["threshold"])
        said = f"model {model.id}: P(TP1 before the stop, net of costs) = {probability:.2f}"
        if probability < threshold:
            return self._signal(facts, Action.HOLD, f"{said}, below the threshold {threshold:.2f}")
        labels = model.card.get("labels", {})
        stop_atr, tp1_r = float(labels.get("stop_atr", 2.0)), float(labels.get("tp1_r", 1.5))
        horizon = int(labels.get("horizon_bars", 48))
        tick = facts.tick_size
        entry = round_to_tick(Decimal(repr(facts.last_price)), tick)
        stop = round_to_tick(Decimal(repr(facts.last_price - stop_atr * atr)), tick, up=False)
        if not 0 < stop < entry:
            return self._signal(facts, Action.HOLD, f"{said}, but no valid stop below {entry} (ATR {atr:.4g})")
        risk = entry - stop
        targets = tuple(
            round_to_tick(entry + risk * Decimal(repr(r)), tick, up=True)
            for r in (tp1_r, *(tp1_r + extra for extra in EXTRA_TARGETS_R))
        )
        top = ", ".join(f"{name} {value:+.2f}" for name, value in contributions)
        return self._signal(
            facts,
            Action.BUY,
            f"{said}, at or above the threshold {threshold:.2f}",
            f"top feature contributions (log-odds): {top}",
            f"stop {stop_atr:g}x ATR(14) {atr:.4g} below the entry; TP1 at {tp1_r:g}R",
            entry=entry,
            stop=stop,
            take_profits=targets,
            horizon_bars=horizon,
            confidence=round(probability, 2),
        )


def score_last_bar(
    model: TrainedModel, bars: pd.DataFrame, timeframe: str, calendar: str
) -> tuple[float, float, list[tuple[str, float]]] | str:
    """(calibrated probability, ATR(14) of the last bar, top 3 feature contributions in log-odds)
    of the last bar of ``bars``, or why there is no score."""
    higher = sorted({name.rsplit("_", 1)[1] for name in model.features if name.startswith("htf_")})
    features = build_features(bars, timeframe, higher=higher, calendar=calendar)
    if features.empty or features[list(BASE_FEATURES)].iloc[-1].isna().any():
        return f"too little history: {len(bars)} {timeframe} bars do not warm up the model's features"
    last = features.iloc[[-1]]
    probability = float(model.predict_proba(last)[0])
    atr = float(last["atr_pct"].iloc[0] * bars["close"].iloc[-1])
    if not math.isfinite(probability) or not atr > 0:
        return f"no score: probability {probability}, ATR {atr}"
    return probability, atr, model.top_contributions(last)
