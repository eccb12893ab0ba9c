"""Manages open positions on every tick. The exits themselves are resting orders at the broker
(the bracket placed with the entry: see tools.exits), so a stop fills at its level on the bar that
reaches it, not at a later tick; this manager only follows them: it opens a plan when its entry
fills, tells the chat about every exit fill (and an A-share stop held over by T+1), moves the stop
to break-even and makes it trail after TP1, sells what is left at the time stop, closes the plan
when nothing is left, and records the account's equity for /pnl."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from scheduler.spreads import follow_spread
from storage.plans import PlanStore
from storage.signals import ORDER_NOTE_PREFIX, SignalStore
from storage.tables import TradePlan
from tools.exits import after_first_target, exit_kind, stop_order_id, time_exit_order_id
from tools.spreads import is_spread_plan
from venues import calendars
from venues.base import Broker, Venue
from venues.clock import Clock
from venues.errors import VenueError
from venues.models import ZERO, Instrument, Order, OrderRequest, OrderStatus, OrderType, Side
from venues.timeframes import parse_timeframe

log = logging.getLogger("tradeops.manage")


@dataclass(frozen=True)
class PositionEvent:
    venue: str
    symbol: str
    signal_id: str
    kind: str  # opened | exit | hold | closed | cancelled
    text: str


class PositionManager:
    def __init__(self, venues: dict[str, Venue], plans: PlanStore, signals: SignalStore, clock: Clock) -> None:
        self.venues = venues
        self.plans = plans
        self.signals = signals
        self.clock = clock

    async def tick(self, venue_name: str) -> list[PositionEvent]:
        venue = self.venues[venue_name]
        broker = venue.broker_required()
        await broker.process()  # fill what the clock has reached first
        events: list[PositionEvent] = []
        for plan in self.plans.active(venue_name):
            if is_spread_plan(plan):  # an option spread: watched on its underlying (scheduler.spreads)
                found = await follow_spread(venue, plan, self.plans, self.signals, self.clock)
                events.extend(PositionEvent(plan.venue, plan.symbol, plan.signal_id, k, t) for k, t in found)
                continue
            instrument = await venue.instrument(plan.symbol)
            entry = await broker.order(plan.signal_id)
            if entry is None:
                continue
            if plan.status == "entry_pending":
                events.extend(await self._activate(instrument, plan, entry))
                if plan.status != "open":
                    continue
            events.extend(await self._follow(broker, instrument, plan, entry))
        await self._snapshot(venue_name, venue)
        return events

    async def _activate(self, instrument: Instrument, plan: TradePlan, entry: Order) -> list[PositionEvent]:
        if entry.status is OrderStatus.PENDING:
            return []
        now = self.clock.now()
        if entry.status is not OrderStatus.FILLED:
            plan.status = "cancelled"
            plan.close_reason = f"entry {entry.status.value}: {entry.reason}"[:200]
            plan.closed_at = now
            plan.updated_at = now
            self.plans.save(plan)
            return [PositionEvent(plan.venue, plan.symbol, plan.signal_id, "cancelled", plan.close_reason)]
        filled_at = entry.filled_at or now
        signal = self.signals.get(plan.signal_id)
        horizon = int((signal.card or {}).get("horizon_bars", 0)) if signal else 0
        plan.status = "open"
        plan.qty_entry = entry.filled_qty
        plan.qty_open = entry.filled_qty
        plan.entry_price = entry.avg_fill_price
        plan.opened_at = filled_at
        plan.checked_until = filled_at
        if horizon:
            # Counted in bars of market time: 48 hourly bars of an exchange are a week, not two days.
            duration = parse_timeframe(plan.timeframe).delta * horizon
            plan.time_stop_at = calendars.add_trading_time(instrument.calendar, filled_at, duration)
        plan.updated_at = now
        self.plans.save(plan)
        verb = "bought" if entry.side is Side.BUY else "sold short"
        text = f"{verb} {entry.filled_qty} {plan.symbol} at {entry.avg_fill_price} ({filled_at.isoformat()})"
        return [PositionEvent(plan.venue, plan.symbol, plan.signal_id, "opened", text)]

    async def _follow(
        self, broker: Broker, instrument: Instrument, plan: TradePlan, entry: Order
    ) -> list[PositionEvent]:
        now = self.clock.now()
        exits = [o for o in [await broker.order(coid) for coid in plan.exit_orders] if o is not None]
        events = self._announce(plan, exits, instrument, entry)
        sold = sum((o.filled_qty for o in exits if o.status is OrderStatus.FILLED), ZERO)
        plan.qty_open = max(plan.qty_entry - sold, ZERO)
        targets = [o for o in exits if o.type is OrderType.LIMIT]
        plan.targets_hit = sum(1 for o in targets if o.status is OrderStatus.FILLED)
        stop = next((o for o in exits if o.client_order_id == stop_order_id(plan.signal_id)), None)
        if plan.qty_open <= 0:
            filled = [o for o in exits if o.status is OrderStatus.FILLED]
            last = max(filled, key=lambda o: (o.filled_at or o.updated_at, o.client_order_id), default=None)
            plan.status = "closed"
            plan.closed_at = now
            plan.close_reason = (self._reason(plan, last) if last else "closed")[:200]
            plan.updated_at = now
            self.plans.save(plan)
            total = sum((_tranche_pnl(instrument, entry, o) for o in filled), ZERO)
            # The exit itself was told with its price and reason: the closing line sums the trade up.
            text = f"{plan.symbol} flat; the trade realized {_signed(total)} {instrument.currency} net of fees"
            return [*events, PositionEvent(plan.venue, plan.symbol, plan.signal_id, "closed", text)]
        held = next((p.qty for p in await broker.positions() if p.symbol == plan.symbol), ZERO)
        if held <= 0 if entry.side is Side.BUY else held >= 0:
            return [*events, *await self._closed_elsewhere(broker, plan, exits, now)]
        if stop is not None and stop.status.is_open:
            if plan.targets_hit > 0 and stop.trail is None and plan.entry_price is not None:
                # The trail is the risk taken at entry: the card's stop, not one /plan moved since
                # (a stop moved to break-even would make it zero).
                signal = self.signals.get(plan.signal_id)
                level, trail = after_first_target(
                    entry_price=plan.entry_price,
                    initial_stop=signal.stop if signal is not None and signal.stop is not None else plan.stop,
                    current_stop=stop.stop_price or plan.stop,
                    long=entry.side is Side.BUY,
                    tick=instrument.tick_size,
                )
                try:
                    stop = await broker.amend(stop.client_order_id, stop_price=level, trail=trail)
                    text = f"TP1 filled: stop moved to break-even {level}, trailing by {trail}"
                    events.append(PositionEvent(plan.venue, plan.symbol, plan.signal_id, "exit", text))
                except VenueError as exc:  # filled or cancelled meanwhile: the next tick sees it
                    log.info("stop of %s not amended: %s", plan.signal_id, exc)
            plan.trailing_stop = stop.stop_price if stop.trail is not None else None
        time_up = plan.time_stop_at is not None and now >= plan.time_stop_at
        time_exit = time_exit_order_id(plan.signal_id)
        if time_up and time_exit not in plan.exit_orders:
            # A market exit under the same entry: it fills at the next open and clips the rest.
            order = await broker.place(
                OrderRequest(
                    client_order_id=time_exit,
                    symbol=plan.symbol,
                    side=Side.SELL if entry.side is Side.BUY else Side.BUY,
                    qty=plan.qty_open,
                    type=OrderType.MARKET,
                    parent=plan.signal_id,
                    signal_id=plan.signal_id,
                )
            )
            plan.exit_orders = [*plan.exit_orders, time_exit]
            assert plan.time_stop_at is not None
            verb = "selling" if entry.side is Side.BUY else "buying back"
            text = (
                f"time stop at {plan.time_stop_at.isoformat()}: {verb} {plan.qty_open} {plan.symbol} at the next open"
            )
            if order.status is OrderStatus.REJECTED:
                text = f"time stop exit of {plan.qty_open} {plan.symbol} refused: {order.reason}"
            events.append(PositionEvent(plan.venue, plan.symbol, plan.signal_id, "exit", text))
        plan.checked_until = now
        plan.updated_at = now
        self.plans.save(plan)
        return events

    async def _closed_elsewhere(
        self, broker: Broker, plan: TradePlan, exits: list[Order], now: datetime
    ) -> list[PositionEvent]:
        """The position is gone although the plan's exits have not sold it all (a manual or policy
        sell closed it): its remaining exits are cancelled and the plan closed, with that reason."""
        for order in exits:
            if order.status.is_open:
                with contextlib.suppress(VenueError):  # filled or cancelled meanwhile
                    await broker.cancel(order.client_order_id)
        plan.status = "closed"
        plan.closed_at = now
        plan.close_reason = "the position was closed by another order; the plan's exits were cancelled"
        plan.updated_at = now
        self.plans.save(plan)
        return [PositionEvent(plan.venue, plan.symbol, plan.signal_id, "closed", plan.close_reason)]

    def _announce(
        self, plan: TradePlan, exits: list[Order], instrument: Instrument, entry: Order
    ) -> list[PositionEvent]:
        """Each exit fill once (what closed it, the fill price and the tranche's realized P&L, each
        said once), and a stop held over by T+1 once, in the order they happened."""
        events: list[PositionEvent] = []
        told = set(plan.announced)
        for order in sorted(exits, key=lambda o: (o.filled_at or o.updated_at, o.client_order_id)):
            if order.status is OrderStatus.FILLED and order.client_order_id not in told:
                verb = "bought back" if order.side is Side.BUY else "sold"
                label, how = self._exit_label(plan, order)
                pnl = _tranche_pnl(instrument, entry, order)
                text = (
                    f"{label}: {verb} {order.filled_qty} {plan.symbol} at {order.avg_fill_price}"
                    + (f" ({how})" if how else "")
                    + f"; realized {_signed(pnl)} {instrument.currency} net of fees"
                )
                events.append(PositionEvent(plan.venue, plan.symbol, plan.signal_id, "exit", text))
                told.add(order.client_order_id)
            held = f"{order.client_order_id}@held"
            if order.status.is_open and order.triggered_at is not None and held not in told:
                events.append(PositionEvent(plan.venue, plan.symbol, plan.signal_id, "hold", order.reason))
                told.add(held)
        plan.announced = sorted(told)
        return events

    def _exit_label(self, plan: TradePlan, order: Order) -> tuple[str, str]:
        """(what closed a tranche, how it filled). A target's fill is its limit or better, so its
        line needs no "how": the price is said once, in the line itself."""
        kind = exit_kind(plan.signal_id, order)
        if kind == "manual":
            note = str((self.signals.get_value(ORDER_NOTE_PREFIX + order.client_order_id) or {}).get("note", ""))
            return note or "manual close", order.reason
        if kind == "time":
            return "time stop", order.reason
        if kind.startswith("TP"):
            return kind, ""
        return kind, order.reason

    def _reason(self, plan: TradePlan, order: Order) -> str:
        note = ""
        if exit_kind(plan.signal_id, order) == "manual":
            note = str((self.signals.get_value(ORDER_NOTE_PREFIX + order.client_order_id) or {}).get("note", ""))
        return _exit_reason(plan, order, note)

    async def _snapshot(self, venue_name: str, venue: Venue) -> None:
        broker = venue.broker_required()
        currencies = sorted({i.currency for i in await venue.instruments()})
        now = self.clock.now()
        for currency in currencies:
            account = await broker.account(currency)
            if account.unfunded:  # a currency the paper account was never given: nothing to chart
                continue
            self.plans.snapshot_equity(venue_name, currency, cash=account.cash, equity=account.equity, at=now)


def _tranche_pnl(instrument: Instrument, entry: Order, order: Order) -> Decimal:
    """Realized P&L of one exit fill, in the instrument's currency, net of its fee and of its share
    of the entry's fee: (exit - entry) x qty x multiplier for a long, the mirror for a short."""
    if order.avg_fill_price is None or entry.avg_fill_price is None or not entry.filled_qty:
        return ZERO
    move = order.avg_fill_price - entry.avg_fill_price
    if entry.side is Side.SELL:
        move = -move
    entry_fee = entry.fees * order.filled_qty / entry.filled_qty
    return move * order.filled_qty * instrument.multiplier - order.fees - entry_fee


def _signed(value: Decimal) -> str:
    return f"{value:+,.2f}"


def _exit_reason(plan: TradePlan, order: Order, note: str = "") -> str:
    """What closed a tranche, in the trader's words: the broker's account of the fill, named (a
    manual close by whoever sent /close: its order note)."""
    if exit_kind(plan.signal_id, order) == "manual":
        return f"{note or 'manual close'}: {order.reason}" if order.reason else note or "manual close"
    if order.client_order_id == time_exit_order_id(plan.signal_id):
        return f"time stop: {order.reason}"
    if order.type is OrderType.LIMIT:
        number = order.client_order_id.rsplit("-tp", 1)[-1]
        return f"TP{number}: {order.reason}"
    return order.reason or "filled"
