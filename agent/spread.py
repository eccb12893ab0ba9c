"""The graph's option-spread steps (TRADEOPS_OPTIONS=spreads): choosing the debit spread that
expresses a BUY or a SHORT from the live chain (the ``spread`` node, a read before the approval),
and ordering it once approved (one multi-leg order, client order id = signal id) with its trade plan.
The sizing and the risk gate are the ``risk`` node's, through tools.spreads and tools.risk."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from agent.deps import AgentDeps
from storage.signals import SignalStatus
from storage.tables import TradePlan
from tools.models import Action, Signal
from tools.options import SpreadError, SpreadPlan
from tools.spreads import choose_legs, expiry_not_before, is_spread_plan, named_legs, spread_close_order_id
from venues import calendars
from venues.errors import VenueError
from venues.models import AssetClass, OrderStatus
from venues.options import LegsOrder, OccSymbol, OptionOrders, OptionRight, OptionsData
from venues.timeframes import parse_timeframe

log = logging.getLogger("tradeops.agent")

STRIKE_BAND = Decimal("0.15")  # strikes fetched: within 15% of the entry, beyond the stop and TP1


async def choose_spread(
    deps: AgentDeps, *, venue_name: str, symbol: str, timeframe: str, signal: Signal
) -> dict[str, Any]:
    """``{"plan": SpreadPlan (0 contracts: sized by the risk node)}``, ``{"refused": reason}``, or
    ``{}`` when the signal stays a stock trade (options off, not an entry, not an optionable US
    stock on a venue with option chains)."""
    rules = deps.config.options
    if rules is None or signal.action not in (Action.BUY, Action.SHORT):
        return {}
    venue = deps.venue(venue_name)
    if not isinstance(venue, OptionsData):
        return {}
    instrument = await venue.instrument(symbol)
    if instrument.asset_class is not AssetClass.US_EQUITY:
        return {}
    assert signal.entry is not None and signal.stop is not None and signal.take_profits
    bullish = signal.action is Action.BUY
    kind = "bull call spread" if bullish else "bear put spread"
    held = next((p for p in deps.plans.active(venue_name) if p.symbol == symbol and is_spread_plan(p)), None)
    if held is not None:  # as a stock held is: the open spread is managed by its plan, not added to
        return {"refused": f"no {kind} for {symbol}: the spread of signal {held.signal_id} is open; its plan closes it"}
    now = deps.clock.now()
    horizon = parse_timeframe(timeframe or signal.timeframe or "1d").delta * signal.horizon_bars
    horizon_end = calendars.add_trading_time(instrument.calendar, now, horizon) if horizon else now
    not_before = expiry_not_before(calendars.trading_day(instrument.calendar, horizon_end), rules)
    target = signal.take_profits[0]
    levels = (signal.entry, signal.stop, target)
    right = OptionRight.CALL if bullish else OptionRight.PUT
    try:
        if signal.option_legs:  # the policy named them: checked, never swapped for others
            named = named_legs(
                await venue.option_chain(symbol, expiry=OccSymbol.parse(signal.option_legs[0]).expiry, right=right),
                signal.option_legs,
                underlying=symbol,
                bullish=bullish,
                not_before=not_before,
                rules=rules,
            )
            chosen, chosen_by = named, signal.policy or "the policy"
        else:
            chain = await venue.option_chain(
                symbol,
                right=right,
                strike_min=(min(levels) * (1 - STRIKE_BAND)).quantize(Decimal(1)),
                strike_max=(max(levels) * (1 + STRIKE_BAND)).quantize(Decimal(1)),
            )
            chosen = choose_legs(
                chain,
                underlying=symbol,
                bullish=bullish,
                entry=signal.entry,
                target=target,
                not_before=not_before,
                rules=rules,
            )
            chosen_by = "code"
    except (SpreadError, VenueError) as exc:
        whose = f" with the legs {signal.policy or 'the policy'} named" if signal.option_legs else ""
        return {"refused": f"no {kind} for {symbol}{whose}: {exc}"}
    expiry = chosen.long.expiry
    before = calendars.previous_session(instrument.calendar, expiry)
    today = calendars.trading_day(instrument.calendar, now)
    if before is None or before.day <= today:
        return {"refused": f"no {kind} for {symbol}: the expiry {expiry.isoformat()} leaves no session to close it"}
    plan = SpreadPlan(
        name=kind,
        underlying=symbol,
        expiry=expiry,
        long_leg=chosen.long.symbol,
        short_leg=chosen.short.symbol,
        long_bid=Decimal(repr(chosen.long.bid)),
        long_ask=Decimal(repr(chosen.long.ask)),
        short_bid=Decimal(repr(chosen.short.bid)),
        short_ask=Decimal(repr(chosen.short.ask)),
        long_delta=chosen.long.delta,
        net_debit=chosen.net_debit,
        contracts=0,
        fee_per_contract=rules.fee_per_contract,
        close_by=before.day,
        stop=signal.stop,
        target=target,
        chosen_by=chosen_by,
    )
    return {"plan": plan.model_dump(mode="json")}


def option_orders(broker: object) -> OptionOrders | None:
    return broker if isinstance(broker, OptionOrders) else None


async def place_spread(
    deps: AgentDeps, *, signal_id: str, venue_name: str, plan: SpreadPlan, contracts: int
) -> LegsOrder:
    """The opening multi-leg order: a limit at the card's net debit (it fills there or better, or
    not at all: the drift guard of a spread), once per signal id (the broker looks the id up
    before each try, so a retried 429 does not send two). VenueError when it is refused."""
    broker = option_orders(deps.venue(venue_name).broker_required())
    if broker is None:
        raise VenueError(f"venue {venue_name!r} takes no multi-leg option orders")
    await broker.place_legs(signal_id, plan.legs(), contracts, limit_price=plan.net_debit)
    placed = await broker.legs_order(signal_id)
    if placed is None:
        raise VenueError(f"the spread order {signal_id} was sent but {venue_name} does not list it")
    return placed


async def placed_spread(deps: AgentDeps, *, signal_id: str, venue_name: str) -> LegsOrder | None:
    broker = option_orders(deps.venue(venue_name).broker_required())
    return await broker.legs_order(signal_id) if broker is not None else None


def store_spread_plan(
    deps: AgentDeps,
    *,
    signal_id: str,
    venue_name: str,
    timeframe: str,
    calendar: str,
    plan: SpreadPlan,
    order: LegsOrder,
) -> None:
    """The spread's trade plan, once per signal: watched on the underlying by the position
    manager (scheduler.spreads), closed at the stop, TP1, or on ``close_by``."""
    if order.status is OrderStatus.REJECTED:
        return
    session = calendars.session(calendar, plan.close_by)
    close_at: datetime | None = session.open if session is not None else None
    deps.plans.create(
        TradePlan(
            signal_id=signal_id,
            venue=venue_name,
            symbol=plan.underlying,
            timeframe=timeframe,
            status="entry_pending",
            qty_entry=Decimal(order.qty),
            qty_open=Decimal(order.qty),
            stop=plan.stop,
            take_profits=[format(plan.target, "f")],
            exit_weights=["1"],
            exit_orders=[spread_close_order_id(signal_id)],
            time_stop_at=close_at,
            updated_at=deps.clock.now(),
        )
    )


def spread_result(order: LegsOrder, plan: SpreadPlan) -> dict[str, Any]:
    placed = order.status is not OrderStatus.REJECTED
    return {
        "status": SignalStatus.EXECUTED.value if placed else SignalStatus.FAILED.value,
        "reason": f"spread order {order.client_order_id} {order.status.value}: {' / '.join(order.legs)} "
        f"x {order.qty} at {f'a net debit of {order.limit_price:.2f}' if order.limit_price else 'market'}"
        + (f" ({order.reason})" if order.reason else ""),
        "legs_order": order.model_dump(mode="json"),
        "spread": plan.model_dump(mode="json"),
    }
