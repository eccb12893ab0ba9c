"""The records that travel along one signal's walk: screen candidate -> policy signal -> sized
proposal -> risk verdict. Policies produce only a ``Signal``; every number that involves money
(size, costs, expected profit, reward/risk) is computed by the tools from it."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.options import SpreadPlan
from venues.clock import ensure_utc
from venues.options import is_occ_symbol


class Action(StrEnum):
    """What a policy proposes. SELL only ever reduces or closes a long; opening a short is its own
    action, SHORT (sell-to-open), so a close can never turn into a short by accident and a short is
    judged as the entry it is (stop above, targets below, sized, costed, gated like a BUY)."""

    BUY = "BUY"  # open or add to a long position
    SELL = "SELL"  # reduce or close a long position
    SHORT = "SHORT"  # sell to open (or add to) a short: where the instrument may be sold short
    HOLD = "HOLD"  # the policy looked and wants nothing
    ABSTAIN = "ABSTAIN"  # the policy could not decide (e.g. the LLM failed); never an order

    @property
    def trades(self) -> bool:
        return self in (Action.BUY, Action.SELL, Action.SHORT)

    @property
    def opens(self) -> bool:
        """An entry with a stop and targets (a BUY or a SHORT), not a close."""
        return self in (Action.BUY, Action.SHORT)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Candidate(_Model):
    """A symbol the screen found worth a decision, with the reasons in words."""

    venue: str
    symbol: str
    timeframe: str
    bar_close: datetime  # close time of the latest base bar the screen saw
    last_price: float
    score: float = Field(ge=0, le=1)
    direction: Literal["long"] = "long"
    reasons: tuple[str, ...] = ()
    indicators: dict[str, float] = Field(default_factory=dict)  # latest values, e.g. RSI_14_15m

    @field_validator("bar_close")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return ensure_utc(value)


class Signal(_Model):
    """A policy's decision. Prices are the policy's; sizes and costs are not its business."""

    action: Action
    symbol: str
    entry: Decimal | None = None
    stop: Decimal | None = None
    take_profits: tuple[Decimal, ...] = ()
    horizon_bars: int = Field(default=0, ge=0)  # time stop, in bars of the signal timeframe; 0 = none
    timeframe: str = ""
    confidence: float = Field(default=0.0, ge=0, le=1)
    reasons: tuple[str, ...] = ()
    risk_notes: tuple[str, ...] = ()
    policy: str = ""
    # With option spreads on: the contracts the policy names, [bought, sold] OCC symbols; empty = the
    # code picks them (tools.spreads). Checked against the chain before the risk gate.
    option_legs: tuple[str, ...] = Field(default=(), max_length=2)

    @property
    def long(self) -> bool:
        """False for a SHORT: its stop is above the entry and its targets below."""
        return self.action is not Action.SHORT

    @model_validator(mode="after")
    def _prices_make_sense(self) -> Signal:
        if self.action.opens:
            name = self.action.value
            if self.entry is None or self.stop is None or not self.take_profits:
                raise ValueError(f"a {name} needs an entry, a stop and at least one take-profit")
            if not self.entry > 0:
                raise ValueError(f"entry must be positive, got {self.entry}")
            if self.long and not 0 < self.stop < self.entry:
                raise ValueError(f"a BUY's stop {self.stop} must be below its entry {self.entry} and above zero")
            if not self.long and not self.stop > self.entry:
                raise ValueError(f"a SHORT's stop {self.stop} must be above its entry {self.entry}")
            if len(self.take_profits) > 3:
                raise ValueError("at most three take-profits (TP1-TP3)")
            previous = self.entry
            for i, tp in enumerate(self.take_profits, 1):
                beyond = tp > previous if self.long else 0 < tp < previous
                if not beyond:
                    where = "above" if self.long else "above zero and below"
                    raise ValueError(f"TP{i} {tp} must be {where} {'the entry' if i == 1 else f'TP{i - 1}'} {previous}")
                previous = tp
        if self.option_legs and not self.action.opens:
            raise ValueError(f"option_legs belong to a BUY or a SHORT, not a {self.action.value}")
        bad = [leg for leg in self.option_legs if not is_occ_symbol(leg)]
        if bad:
            raise ValueError(f"option_legs must be OCC symbols like SPY251121C00550000, got {bad[0][:40]!r}")
        if self.action is Action.SELL and self.entry is not None and not self.entry > 0:
            raise ValueError(f"entry must be positive, got {self.entry}")
        return self


class Proposal(_Model):
    """A BUY, SHORT or SELL sized and costed by the tools, ready for the risk gate. Money is in
    the instrument's currency; for a SHORT the targets and stop mirror a BUY's (below, above)."""

    venue: str
    symbol: str
    currency: str
    signal: Signal
    qty: Decimal
    notional: Decimal
    fees_round_trip: Decimal  # fees + slippage of entering and exiting at the targets (+ carry_cost)
    loss_at_stop: Decimal  # what the position loses if the stop is hit, costs included
    expected_net_profit: Decimal  # at the take-profits with the partial-exit plan, after all costs
    reward_risk: float
    # The exit plan as it will run: the quantity each target sells (lot- and step-rounded, tranches
    # too small for the venue merged) and the same as shares of the entry, which the card shows and
    # the trade plan stores. ``planned_exit_weights`` is what was asked for (30/40/30) before that.
    exit_weights: tuple[Decimal, ...] = ()  # share of the position closed at TP1, TP2, TP3
    exit_qtys: tuple[Decimal, ...] = ()
    planned_exit_weights: tuple[Decimal, ...] = ()
    costs_on: date | None = None  # trade date whose fee rates the costs use (the expected fill day)
    # A short's funding (perpetuals) or borrow fee (equities) over the time stop, where known.
    carry_cost: Decimal = Decimal(0)
    avg_cost: Decimal | None = None  # a SELL's cost basis per unit (what its realised P&L is against)
    notes: tuple[str, ...] = ()
    # Set when the decision is expressed as a debit option spread (TRADEOPS_OPTIONS=spreads): then
    # qty counts contracts, notional is the premium and loss_at_stop the spread's max loss.
    spread: SpreadPlan | None = None


class RiskCheck(_Model):
    rule: str
    passed: bool
    detail: str


class RiskVerdict(_Model):
    decision: Literal["allow", "shrink", "block"]
    qty: Decimal  # what may be ordered (0 when blocked)
    checks: tuple[RiskCheck, ...] = ()

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]
