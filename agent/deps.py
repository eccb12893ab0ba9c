"""What the graph's nodes need, handed in by the application (bot/wiring.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from agent.policies import Policy
from storage.plans import PlanStore
from storage.signals import SignalStore
from tools.risk import RiskProfile, profile
from tools.sizing import DEFAULT_EXIT_WEIGHTS
from tools.spreads import SpreadRules
from venues.base import Venue
from venues.clock import Clock
from venues.errors import VenueError

if TYPE_CHECKING:
    from tools.ml import TrainedModel  # LightGBM, XGBoost, scipy: loaded when a model is, not at start


@dataclass(frozen=True)
class AutoApprove:
    """Who answers when no human does: nobody (``none``), always yes (``all``), or yes for signals
    at or above a confidence and at or below a share of equity (``rule``)."""

    mode: Literal["none", "all", "rule"] = "none"
    min_confidence: float = 0.8
    max_position_pct: Decimal = Decimal("0.05")

    def approves(self, confidence: float, notional: Decimal, equity: Decimal) -> bool:
        if self.mode == "all":
            return True
        if self.mode == "rule":
            return confidence >= self.min_confidence and equity > 0 and notional <= equity * self.max_position_pct
        return False


@dataclass(frozen=True)
class AgentConfig:
    risk_profile: str = "medium"
    profiles_by_venue: Mapping[str, str] = field(default_factory=dict)
    slippage_bps: Decimal = Decimal(5)
    max_drift_bps: Decimal = Decimal(50)  # execution aborts when the price moved this far from the entry
    approval_timeout: timedelta = timedelta(minutes=15)  # of open-market time; then the signal expires
    exit_weights: tuple[Decimal, ...] = DEFAULT_EXIT_WEIGHTS
    lookback_bars: int = 250
    auto_approve: AutoApprove = AutoApprove()
    # TRADEOPS_OPTIONS=spreads: a BUY or SHORT on an optionable US stock becomes a debit spread.
    options: SpreadRules | None = None

    def risk_for(self, venue: str) -> RiskProfile:
        return profile(self.profiles_by_venue.get(venue, self.risk_profile))


@dataclass
class AgentDeps:
    venues: Mapping[str, Venue]
    clock: Clock
    signals: SignalStore
    plans: PlanStore
    policy: Policy
    config: AgentConfig = field(default_factory=AgentConfig)
    # The promoted ML model for the model_score tool (None: no such tool); raises, saying why, when
    # none is promoted or its files are missing or corrupt.
    load_model: Callable[[], TrainedModel] | None = None
    _venue_locks: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)

    def venue_lock(self, name: str) -> asyncio.Lock:
        """Serialises the last risk check and the order of one venue within this process."""
        return self._venue_locks.setdefault(name, asyncio.Lock())

    def venue(self, name: str) -> Venue:
        try:
            return self.venues[name]
        except KeyError:
            raise VenueError(f"unknown venue {name!r}; configured: {', '.join(sorted(self.venues))}") from None
