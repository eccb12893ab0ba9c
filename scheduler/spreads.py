"""Follows an open debit spread on every tick (its plan is stored by the graph's execute step): the
opening multi-leg order filled opens the plan; the underlying at or beyond the stop or TP1, or the
last session before expiry reached, sends one closing multi-leg order (client order id
``<signal id>-xs``, placed once); its fill closes the plan. Each step is told to the chat once: the
events come from state changes of the plan, which is saved after each."""

from __future__ import annotations

import logging
from decimal import Decimal

from storage.plans import PlanStore
from storage.signals import SignalStore
from storage.tables import TradePlan
from tools.options import SpreadPlan
from tools.spreads import spread_close_order_id
from venues.base import Venue
from venues.clock import Clock
from venues.errors import VenueError
from venues.models import OrderStatus
from venues.options import CONTRACT_MULTIPLIER, LegsOrder, OptionOrders

log = logging.getLogger("tradeops.manage")


def exit_reason(spread: SpreadPlan, last: Decimal, stop: Decimal, target: Decimal, past_close_by: bool) -> str | None:
    """Why the spread must be closed now, or None: the underlying's ``last`` price against the
    plan's stop and TP1 (bullish: the stop below, TP1 above; bearish: mirrored), or the last
    session before expiry."""
    if spread.bullish:
        if last <= stop:
            return f"{spread.underlying} {last} reached the stop {stop}"
        if last >= target:
            return f"{spread.underlying} {last} reached TP1 {target}"
    else:
        if last >= stop:
            return f"{spread.underlying} {last} reached the stop {stop}"
        if last <= target:
            return f"{spread.underlying} {last} reached TP1 {target}"
    if past_close_by:
        return f"the last session before expiry ({spread.close_by.isoformat()})"
    return None


async def follow_spread(
    venue: Venue, plan: TradePlan, plans: PlanStore, signals: SignalStore, clock: Clock
) -> list[tuple[str, str]]:
    """One tick of a spread's plan; returns the events (kind, text) for the chat."""
    broker = venue.broker_required()
    row = signals.get(plan.signal_id)
    if not isinstance(broker, OptionOrders) or row is None or not (row.card or {}).get("spread"):
        return []
    spread = SpreadPlan.model_validate(row.card["spread"])
    opening = await broker.legs_order(plan.signal_id)
    if opening is None:
        return []
    now = clock.now()
    events: list[tuple[str, str]] = []
    if plan.status == "entry_pending":
        if opening.status is OrderStatus.PENDING:
            return []
        if opening.status is not OrderStatus.FILLED:
            plan.status, plan.closed_at, plan.updated_at = "cancelled", now, now
            plan.close_reason = f"spread order {opening.status.value}: {opening.reason}"[:200]
            plans.save(plan)
            return [("cancelled", plan.close_reason)]
        plan.status = "open"
        plan.qty_entry = plan.qty_open = Decimal(opening.qty)
        plan.entry_price = opening.filled_avg_price
        plan.opened_at = plan.checked_until = opening.filled_at or now
        plan.updated_at = now
        plans.save(plan)
        debit = f"{opening.filled_avg_price:.2f}" if opening.filled_avg_price is not None else "?"
        events.append(("opened", f"bought {opening.qty} x {spread.name} {_what(opening)} at a net debit of {debit}"))
    close_id = spread_close_order_id(plan.signal_id)
    closing = await broker.legs_order(close_id)
    if closing is None:
        quote = (await venue.snapshot([spread.underlying])).get(spread.underlying)
        if quote is None:
            return events
        past = plan.time_stop_at is not None and now >= plan.time_stop_at
        target = Decimal(plan.take_profits[0]) if plan.take_profits else spread.target
        reason = exit_reason(spread, Decimal(repr(quote.last)), plan.stop, target, past)
        if reason is None:
            plan.checked_until = plan.updated_at = now
            plans.save(plan)
            return events
        try:
            await broker.place_legs(close_id, spread.legs(closing=True), int(plan.qty_open))
        except VenueError as exc:
            log.warning("closing spread %s refused: %s", plan.signal_id, exc)
            return [*events, ("exit", f"closing the {spread.name} on {reason} was refused: {exc}")]
        plan.close_reason = reason[:200]
        plan.updated_at = now
        plans.save(plan)
        return [*events, ("exit", f"closing the {spread.name} ({int(plan.qty_open)} contracts) at market: {reason}")]
    if closing.status is OrderStatus.FILLED and closing.filled_avg_price is not None:
        why = plan.close_reason
        credit = -closing.filled_avg_price  # a closing sell of a debit spread receives a credit
        paid = plan.entry_price if plan.entry_price is not None else spread.net_debit
        pnl = ((credit - paid) * CONTRACT_MULTIPLIER * closing.qty - spread.fees_round_trip).quantize(Decimal("0.01"))
        plan.status, plan.closed_at, plan.updated_at = "closed", now, now
        plan.qty_open = Decimal(0)
        plan.close_reason = f"{why}; closed at a net credit of {credit:.2f}, P&L {pnl:+.2f} USD after fees"[:200]
        plans.save(plan)
        text = f"{spread.name} {spread.underlying} x {closing.qty} closed at a net credit of {credit:.2f}"
        events.append(("closed", f"{text} (paid {paid:.2f}): P&L {pnl:+.2f} USD after fees; {why}"))
    elif closing.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED) and "by hand" not in plan.close_reason:
        plan.close_reason = f"{plan.close_reason}; the closing order was {closing.status.value}: close it by hand"[:200]
        plan.updated_at = now
        plans.save(plan)
        text = f"the {spread.name} {spread.underlying} closing order {close_id} was {closing.status.value}"
        events.append(("exit", f"{text} ({closing.reason}): close it by hand"))
    return events


def _what(order: LegsOrder) -> str:
    return "(" + " / ".join(order.legs) + ")"
