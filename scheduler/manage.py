"""Manages open positions on every tick: activates a plan when its entry fills, applies the exit
rules of tools.exits to the bars that closed since the last tick, places the exit orders, closes
the plan when everything is sold, and records the account's equity for /pnl."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from storage.plans import PlanStore
from storage.signals import SignalStore
from storage.tables import TradePlan
from tools.exits import PlanState, manage
from venues import calendars
from venues.base import Venue
from venues.clock import Clock
from venues.models import ZERO, Instrument, OrderRequest, OrderStatus, OrderType, Side
from venues.timeframes import parse_timeframe

log = logging.getLogger("tradeops.manage")


@dataclass(frozen=True)
class PositionEvent:
    venue: str
    symbol: str
    signal_id: str
    kind: str  # opened | exit | closed | cancelled
    text: str


def _decimals(values: list[str]) -> tuple[Decimal, ...]:
    return tuple(Decimal(v) for v in values)


class PositionManager:
    def __init__(self, venues: dict[str, Venue], plans: PlanStore, signals: SignalStore, clock: Clock) -> None:
        self.venues = venues
        self.plans = plans
        self.signals = signals
        self.clock = clock

    async def tick(self, venue_name: str) -> list[PositionEvent]:
        venue = self.venues[venue_name]
        await venue.broker_required().process()  # fill what the clock has reached first
        events: list[PositionEvent] = []
        for plan in self.plans.active(venue_name):
            instrument = await venue.instrument(plan.symbol)
            if plan.status == "entry_pending":
                events.extend(await self._activate(venue, plan))
                if plan.status != "open":
                    continue
            events.extend(await self._manage(venue, instrument, plan))
        await self._snapshot(venue_name, venue)
        return events

    async def _activate(self, venue: Venue, plan: TradePlan) -> list[PositionEvent]:
        order = await venue.broker_required().order(plan.signal_id)
        if order is None or order.status is OrderStatus.PENDING:
            return []
        now = self.clock.now()
        if order.status is not OrderStatus.FILLED:
            plan.status = "cancelled"
            plan.close_reason = f"entry {order.status.value}: {order.reason}"[:200]
            plan.closed_at = now
            plan.updated_at = now
            self.plans.save(plan)
            return [PositionEvent(plan.venue, plan.symbol, plan.signal_id, "cancelled", plan.close_reason)]
        fills = await venue.broker_required().fills(plan.signal_id)
        filled_at = fills[0].ts if fills else now
        signal = self.signals.get(plan.signal_id)
        horizon = int((signal.card or {}).get("horizon_bars", 0)) if signal else 0
        plan.status = "open"
        plan.qty_entry = order.filled_qty
        plan.qty_open = order.filled_qty
        plan.entry_price = order.avg_fill_price
        plan.opened_at = filled_at
        # The fill happened at this bar's open: the bar's own range already counts for the exits.
        plan.checked_until = filled_at
        if horizon:
            # Counted in bars of market time: 48 hourly bars of an exchange are a week, not two days.
            instrument = await venue.instrument(plan.symbol)
            duration = parse_timeframe(plan.timeframe).delta * horizon
            plan.time_stop_at = calendars.add_trading_time(instrument.calendar, filled_at, duration)
        plan.updated_at = now
        self.plans.save(plan)
        text = f"bought {order.filled_qty} {plan.symbol} at {order.avg_fill_price}"
        return [PositionEvent(plan.venue, plan.symbol, plan.signal_id, "opened", text)]

    async def _manage(self, venue: Venue, instrument: Instrument, plan: TradePlan) -> list[PositionEvent]:
        broker = venue.broker_required()
        now = self.clock.now()
        exits = [await broker.order(coid) for coid in plan.exit_orders]
        # What is still open follows from the orders themselves, so a refused exit is simply retried.
        live = (OrderStatus.FILLED, OrderStatus.PENDING)
        committed = sum((o.qty for o in exits if o is not None and o.status in live), ZERO)
        events: list[PositionEvent] = []
        open_qty = plan.qty_entry - committed
        if open_qty <= 0:
            if all(o is not None and o.status is OrderStatus.FILLED for o in exits):
                plan.status = "closed"
                plan.qty_open = ZERO
                plan.closed_at = now
                plan.updated_at = now
                self.plans.save(plan)
                why = plan.close_reason or "closed"
                events.append(PositionEvent(plan.venue, plan.symbol, plan.signal_id, "closed", why))
            return events
        assert plan.entry_price is not None and plan.checked_until is not None
        state = PlanState(
            qty_entry=plan.qty_entry,
            qty_open=open_qty,
            entry_price=plan.entry_price,
            stop=plan.stop,
            take_profits=_decimals(plan.take_profits),
            exit_weights=_decimals(plan.exit_weights),
            targets_hit=plan.targets_hit,
            trailing_stop=plan.trailing_stop,
            highest=plan.highest,
            time_stop_at=plan.time_stop_at,
            checked_until=plan.checked_until,
        )
        since = plan.checked_until - parse_timeframe(plan.timeframe).delta
        bars = await venue.bars(plan.symbol, plan.timeframe, start=since)
        state, actions = manage(state, bars, instrument, now=now, sellable_from=self._sellable_from(instrument, plan))
        plan.targets_hit = state.targets_hit
        plan.trailing_stop = state.trailing_stop
        plan.highest = state.highest
        plan.checked_until = state.checked_until
        if actions:
            qty = sum((a.qty for a in actions), ZERO)
            reason = "; ".join(a.reason for a in actions)
            coid = f"{plan.signal_id}-x{len(plan.exit_orders) + 1}"
            order = await broker.place(
                OrderRequest(client_order_id=coid, symbol=plan.symbol, side=Side.SELL, qty=qty, type=OrderType.MARKET)
            )
            plan.exit_orders = [*plan.exit_orders, coid]
            if order.status is OrderStatus.REJECTED:
                log.warning("exit for %s refused: %s", plan.symbol, order.reason)
                text = f"exit of {qty} {plan.symbol} refused: {order.reason}"
            else:
                plan.close_reason = reason[:200]
                text = f"selling {qty} {plan.symbol}: {reason}"
            events.append(PositionEvent(plan.venue, plan.symbol, plan.signal_id, "exit", text))
        plan.qty_open = state.qty_open
        plan.updated_at = now
        self.plans.save(plan)
        return events

    def _sellable_from(self, instrument: Instrument, plan: TradePlan) -> datetime | None:
        """T+1: exits can act only on bars of the sessions after the entry's."""
        if not instrument.settlement_days or plan.opened_at is None:
            return None
        session = calendars.session(instrument.calendar, calendars.trading_day(instrument.calendar, plan.opened_at))
        return session.close if session else None

    async def _snapshot(self, venue_name: str, venue: Venue) -> None:
        broker = venue.broker_required()
        currencies = sorted({i.currency for i in await venue.instruments()})
        now = self.clock.now()
        for currency in currencies:
            account = await broker.account(currency)
            self.plans.snapshot_equity(venue_name, currency, cash=account.cash, equity=account.equity, at=now)
