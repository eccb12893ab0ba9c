"""Managed exits of an open position: stop loss, partial take-profits, trailing stop, time stop.

Evaluated on final bars only, in time order:
- the stop (or the trailing stop, once active) is hit when a bar's low reaches it: everything left
  is sold. When one bar touches both the stop and a target, the stop is assumed first (the
  conservative reading of a bar whose path inside is unknown);
- TP1, TP2, TP3 each sell their tranche of the entry quantity (30/40/30 by default, lot-rounded;
  the last target takes whatever is left) when a bar's high reaches them;
- after TP1 the stop moves to break-even and then trails the highest high by the initial risk
  (entry - stop), never moving down;
- at the time stop, whatever is left is sold.
Exits become market orders, which the broker fills at the next bar's open. Bars that close before
``sellable_from`` (A-shares: the next session after the entry, T+1) are skipped for exits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import pandas as pd

from tools.sizing import exit_tranches
from venues.models import ZERO, Instrument


@dataclass(frozen=True)
class PlanState:
    qty_entry: Decimal
    qty_open: Decimal
    entry_price: Decimal
    stop: Decimal
    take_profits: tuple[Decimal, ...]
    exit_weights: tuple[Decimal, ...]
    targets_hit: int = 0
    trailing_stop: Decimal | None = None
    highest: Decimal | None = None
    time_stop_at: datetime | None = None
    checked_until: datetime | None = None

    @property
    def active_stop(self) -> Decimal:
        return max(self.stop, self.trailing_stop) if self.trailing_stop is not None else self.stop

    @property
    def trail_distance(self) -> Decimal:
        return self.entry_price - self.stop


@dataclass(frozen=True)
class ExitAction:
    qty: Decimal
    reason: str
    at: datetime  # close time of the bar that triggered it


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def manage(
    plan: PlanState,
    bars: pd.DataFrame,
    instrument: Instrument,
    *,
    now: datetime,
    sellable_from: datetime | None = None,
) -> tuple[PlanState, list[ExitAction]]:
    """Walk the bars that closed after ``plan.checked_until``; return the new state and the exits."""
    actions: list[ExitAction] = []
    tranches = exit_tranches(instrument, plan.qty_entry, plan.exit_weights)
    if plan.checked_until is not None:
        bars = bars[bars["close_time"] > plan.checked_until]
    for high_f, low_f, close_time in zip(bars["high"], bars["low"], bars["close_time"], strict=True):
        if plan.qty_open <= 0:
            break
        closed_at = close_time.to_pydatetime()
        plan = replace(plan, checked_until=closed_at)
        if sellable_from is not None and closed_at <= sellable_from:
            continue
        high, low = _dec(high_f), _dec(low_f)
        stop = plan.active_stop
        if low <= stop:
            kind = "trailing stop" if plan.trailing_stop is not None and plan.trailing_stop >= plan.stop else "stop"
            actions.append(ExitAction(plan.qty_open, f"{kind} {stop} hit (low {low})", closed_at))
            plan = replace(plan, qty_open=ZERO)
            break
        while plan.targets_hit < len(plan.take_profits) and high >= plan.take_profits[plan.targets_hit]:
            index = plan.targets_hit
            last = index == len(plan.take_profits) - 1
            qty = plan.qty_open if last else min(tranches[index], plan.qty_open)
            if qty > 0:
                target = plan.take_profits[index]
                actions.append(ExitAction(qty, f"TP{index + 1} {target} reached (high {high})", closed_at))
            plan = replace(
                plan,
                qty_open=plan.qty_open - qty,
                targets_hit=index + 1,
                trailing_stop=max(plan.trailing_stop or plan.entry_price, plan.entry_price),
            )
        if plan.targets_hit > 0:
            highest = max(plan.highest or high, high)
            trail = max(plan.trailing_stop or plan.entry_price, highest - plan.trail_distance)
            plan = replace(plan, highest=highest, trailing_stop=trail)
    time_up = plan.time_stop_at is not None and now >= plan.time_stop_at
    if plan.qty_open > 0 and time_up and (sellable_from is None or now > sellable_from):
        assert plan.time_stop_at is not None
        actions.append(ExitAction(plan.qty_open, f"time stop at {plan.time_stop_at.isoformat()}", now))
        plan = replace(plan, qty_open=ZERO)
    return plan, actions
