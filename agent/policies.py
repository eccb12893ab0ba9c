"""Policies turn the gathered facts about one symbol into a ``Signal``. They never size, cost or
place anything: tools do that, and the risk gate judges the result.

``RulePolicy`` is deterministic and the default when no LLM is configured. For a long setup the
screen found (or the same rules checked on demand), it proposes a BUY at the last price with the
stop two ATRs below (or just under the recent swing low, whichever is closer, but never closer
than one ATR), and targets at 1.5R, 2.5R and 3.5R (2.5R on average with the 30/40/30 exits,
which leaves about 2R after costs on liquid markets). Confidence grows with the screen's score. It holds
when the symbol is already held, when the setup is missing, or when the data is too thin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from agent.llm.types import CallRecord
from tools.models import Action, Candidate, Signal
from venues.costs import round_to_tick

HORIZON_BARS = 48  # time stop: a setup that has not worked in 48 bars is closed


class DecisionInput(BaseModel):
    """Everything a policy may look at, gathered by code; JSON-serialisable for traces and prompts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    signal_id: str
    venue: str
    symbol: str
    timeframe: str
    now: datetime
    currency: str
    last_price: float
    tick_size: Decimal
    candidate: Candidate | None = None
    indicators: dict[str, float] = Field(default_factory=dict)  # latest values, suffixed with timeframe
    bars: int = 0  # how many bars of the timeframe were gathered
    recent_closes: tuple[float, ...] = ()  # oldest first
    swing_low: float | None = None  # lowest low of the recent bars
    position_qty: Decimal = Decimal(0)  # negative: a short
    position_avg_cost: Decimal = Decimal(0)
    sellable_qty: Decimal = Decimal(0)
    equity: Decimal = Decimal(0)
    cash: Decimal = Decimal(0)
    trades_today: int = 0
    trades_left_today: int = 0
    venue_rules: tuple[str, ...] = ()  # e.g. "T+1: shares bought today cannot be sold today"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyOutcome:
    """A decision with what it cost: the LLM calls behind it (for the trace) and any notice the
    chat must see (e.g. the day's token budget ran out)."""

    signal: Signal
    calls: tuple[CallRecord, ...] = ()
    notices: tuple[str, ...] = ()


class Policy(Protocol):
    name: str

    async def decide(self, facts: DecisionInput) -> Signal | PolicyOutcome: ...


class RulePolicy:
    name = "rules"

    def __init__(self, *, atr_stop: float = 2.0, targets_r: tuple[float, ...] = (1.5, 2.5, 3.5)) -> None:
        self.atr_stop = atr_stop
        self.targets_r = targets_r

    async def decide(self, facts: DecisionInput) -> Signal:
        def hold(*why: str) -> Signal:
            return Signal(
                action=Action.HOLD,
                symbol=facts.symbol,
                timeframe=facts.timeframe,
                reasons=tuple(why),
                policy=self.name,
            )

        if facts.position_qty != 0:
            held = f"{facts.position_qty}" if facts.position_qty > 0 else f"a short of {-facts.position_qty}"
            return hold(f"already holding {held} {facts.symbol}; the open position is managed by its plan")
        candidate = facts.candidate
        if candidate is None or candidate.direction != "long":
            return hold("no long setup on the screen's rules", *facts.notes)
        atr = facts.indicators.get(f"ATRr_14_{facts.timeframe}")
        if atr is None or not atr > 0:
            return hold(f"no ATR(14) on {facts.timeframe}: too little history to place a stop")
        tick = facts.tick_size
        entry = round_to_tick(Decimal(repr(facts.last_price)), tick)
        stop_by_atr = Decimal(repr(facts.last_price - self.atr_stop * atr))
        stop = stop_by_atr
        note = f"stop {self.atr_stop:g}x ATR(14) {atr:.4g} below the entry"
        if facts.swing_low is not None:
            under_swing = Decimal(repr(facts.swing_low)) - tick
            # The swing low is the natural invalidation; use it when it is tighter, not tighter than 1 ATR.
            if stop_by_atr < under_swing <= entry - Decimal(repr(atr)):
                stop = under_swing
                note = f"stop one tick under the recent swing low {facts.swing_low:.4g}"
        stop = round_to_tick(stop, tick, up=False)
        if not 0 < stop < entry:
            return hold(f"no valid stop below the entry {entry} (ATR {atr:.4g})")
        risk = entry - stop
        targets = tuple(round_to_tick(entry + risk * Decimal(repr(r)), tick, up=True) for r in self.targets_r)
        confidence = round(min(0.95, 0.45 + 0.5 * candidate.score), 2)
        reasons = (*candidate.reasons, note, "targets at " + ", ".join(f"{r:g}R" for r in self.targets_r))
        return Signal(
            action=Action.BUY,
            symbol=facts.symbol,
            entry=entry,
            stop=stop,
            take_profits=targets,
            horizon_bars=HORIZON_BARS,
            timeframe=facts.timeframe,
            confidence=confidence,
            reasons=reasons,
            policy=self.name,
        )
