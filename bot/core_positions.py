"""The command core's trading desk: /close, /cancel, /trades and /plan, and the figures /orders and
/risk share with them (closed round trips, realized P&L per exit, what each order is for).

A mixin of ``CommandCore`` (bot/core.py): methods return a ``Reply`` or raise ``UserError``; they
act through the venue's broker (the paper broker, or a venue's paper API) and the stored trade
plans, exactly as the graph and the position manager do, and write each change to the audit log.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from bot.amounts import money_json, price_json
from bot.command_table import CLOSE_USAGE, PLAN_USAGE, TRADES_USAGE
from bot.command_types import Caller, Page, Reply, UserError, fold
from bot.render import table
from storage.tables import TradePlan
from tools.exits import (
    exit_kind,
    is_standalone_close,
    manual_exit_order_id,
    standalone_close_order_id,
    stop_order_id,
    target_order_id,
)
from tools.risk import RiskProfile
from venues import calendars
from venues.base import Broker, Venue
from venues.errors import VenueError
from venues.models import ZERO, Instrument, Order, OrderRequest, OrderStatus, OrderType, Side

if TYPE_CHECKING:
    from typing import Any

    from bot.services import Services

ORDER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # what a client order id may be (venues.models)
QTY = re.compile(r"^[0-9]{1,18}(\.[0-9]{1,18})?$")
PRICE = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,12})?$")


@dataclass(frozen=True)
class RoundTrip:
    """A closed position of one plan: entry and (average) exit, quantity, P&L net of every fee,
    and R = P&L / the risk taken at entry (entry to the card's stop, on the quantity closed)."""

    signal_id: str
    venue: str
    symbol: str
    side: str  # long | short
    entry_at: datetime
    entry_price: Decimal
    exit_at: datetime
    exit_price: Decimal
    qty: Decimal
    pnl: Decimal
    currency: str
    r_multiple: Decimal | None
    exit_reason: str  # the exits in the order they filled: "TP1+trailing stop", "manual"


def exit_pnl(entry: Order, exit: Order, multiplier: Decimal) -> Decimal:
    """Realized P&L of one filled exit against its filled entry, net of the exit's fee and the
    entry's fee pro rata to the quantity closed."""
    assert entry.avg_fill_price is not None and exit.avg_fill_price is not None
    sign = 1 if entry.side is Side.BUY else -1
    gross = sign * (exit.avg_fill_price - entry.avg_fill_price) * exit.filled_qty * multiplier
    entry_fee = entry.fees * exit.filled_qty / entry.filled_qty if entry.filled_qty else ZERO
    return gross - exit.fees - entry_fee


def round_trip(
    plan: TradePlan, entry: Order | None, exits: list[Order], instrument: Instrument, initial_stop: Decimal | None
) -> RoundTrip | None:
    filled = sorted(
        (o for o in exits if o.status is OrderStatus.FILLED and o.filled_qty > 0 and o.avg_fill_price is not None),
        key=lambda o: (o.filled_at or o.updated_at, o.client_order_id),
    )
    if entry is None or entry.avg_fill_price is None or entry.filled_at is None or not filled:
        return None
    qty = sum((o.filled_qty for o in filled), ZERO)
    value = sum((o.filled_qty * (o.avg_fill_price or ZERO) for o in filled), ZERO)
    pnl = sum((exit_pnl(entry, o, instrument.multiplier) for o in filled), ZERO)
    risk = abs(entry.avg_fill_price - initial_stop) * qty * instrument.multiplier if initial_stop else ZERO
    kinds = list(dict.fromkeys(exit_kind(plan.signal_id, o) for o in filled))
    if qty < entry.filled_qty:
        kinds.append("closed elsewhere")
    tick = instrument.tick_size
    return RoundTrip(
        signal_id=plan.signal_id,
        venue=plan.venue,
        symbol=plan.symbol,
        side="long" if entry.side is Side.BUY else "short",
        entry_at=entry.filled_at,
        entry_price=entry.avg_fill_price,
        exit_at=filled[-1].filled_at or filled[-1].updated_at,
        exit_price=(value / qty).quantize(tick) if tick < 1 else value / qty,
        qty=qty,
        pnl=pnl,
        currency=instrument.currency,
        r_multiple=(pnl / risk).quantize(Decimal("0.01")) if risk > 0 else None,
        exit_reason="+".join(kinds),
    )


def order_reason(order: Order, note: str = "") -> str:
    """An order's reason column: what it is for (entry, stop, TP1, time stop, or the manual close
    with who sent it), who cancelled it, then the broker's account (how it filled, why it was
    refused, what it waits for)."""
    kind = "entry" if order.parent is None else exit_kind(order.parent, order)
    purpose = {"time": "time stop", "manual": "manual close"}.get(kind, kind)
    broker = order.reason
    if note.startswith("manual close"):
        purpose = note
    elif note:
        purpose = f"{purpose}, {note}"
        if note.startswith("cancelled by") and broker == "cancelled by request":
            broker = ""
    return f"{purpose}: {broker}" if broker else purpose


def _exit_id(signal_id: str, key: str) -> str:
    """The client order id of a plan's exit named as /plan names it: stop, tp1, tp2..."""
    return stop_order_id(signal_id) if key == "stop" else target_order_id(signal_id, int(key[2:]))


def on_tick(price: Decimal, tick: Decimal) -> str:
    """A price as the venue quotes it (2300.00, not 2300: stored decimals lose trailing zeros)."""
    return str(price.quantize(tick) if tick < 1 else price)


def parse_qty(word: str, what: str) -> Decimal:
    if not word.isascii() or not QTY.match(word):
        raise UserError(f"{what} {word[:24]!r} is not a quantity: a positive number like 100 or 0.05, or all")
    return Decimal(word)


def parse_price(word: str, what: str, tick: Decimal) -> Decimal:
    if not word.isascii() or not PRICE.match(word) or Decimal(word) <= 0:
        raise UserError(f"{what} {word[:24]!r} is not a price: a positive number like 2300 or 12.35")
    price = Decimal(word)
    if price % tick:
        below = (price // tick) * tick
        raise UserError(f"{what} {word} is not on the tick {tick}: e.g. {below} or {below + tick}")
    return price


class TradingCommands:
    """/close, /cancel, /trades and /plan (see the module's docstring)."""

    s: Services

    if TYPE_CHECKING:

        async def _resolve(self, word: str, *, prefer: str | None = None) -> tuple[str, str]: ...
        @staticmethod
        def _symbol_word(word: str) -> str: ...
        def _audit(self, caller: Caller, action: str, target: str, detail: dict[str, Any] | None = None) -> None: ...
        def _market_closed(self, venue: str) -> tuple[str, ...]: ...
        def stamp(self, moment: datetime) -> str: ...
        @property
        def zone_label(self) -> str: ...

    # --- /close ---

    async def _close(self, caller: Caller, args: list[str]) -> Reply:
        if not 1 <= len(args) <= 2:
            raise UserError(f"usage: {CLOSE_USAGE}")
        venue_name, symbol = await self._resolve(self._symbol_word(args[0]))
        venue = self.s.venues[venue_name]
        broker = venue.broker_required()
        instrument = await venue.instrument(symbol)
        positions = await broker.positions()
        position = next((p for p in positions if p.symbol == symbol and p.qty != 0), None)
        if position is None:
            held = ", ".join(f"{p.symbol} {p.qty}" for p in positions) or "none"
            raise UserError(f"no open position in {symbol} on {venue_name}; open positions there: {held}")
        long = position.qty > 0
        held_qty = abs(position.qty)
        orders = await broker.orders()
        notes = self.s.signals.order_notes()
        closing = [
            o
            for o in orders
            if o.status.is_open and o.symbol == symbol and notes.get(o.client_order_id, "").startswith("manual close")
        ]
        closing_qty = sum((o.qty for o in closing), ZERO)
        if closing_qty:
            ids = ", ".join(o.client_order_id for o in closing)
            raise UserError(
                f"a manual close of {closing_qty} {symbol} is already pending ({ids}): it fills at the next "
                "price; /cancel ID first to change it"
            )
        word = fold(args[1]) if len(args) == 2 else "all"
        qty = held_qty if word == "all" else parse_qty(args[1], "QTY")
        self._check_close_qty(instrument, qty, held_qty)
        if long and instrument.settlement_days:
            today = calendars.trading_day(instrument.calendar, self.s.clock.now())
            fills = await broker.fills()
            bought = sum(
                (
                    f.qty
                    for f in fills
                    if f.symbol == symbol and f.side is Side.BUY and f.trade_day == today.isoformat()
                ),
                ZERO,
            )
            sellable = max(held_qty - bought, ZERO)
            if qty > sellable:
                raise UserError(
                    f"refused: {bought} {symbol} bought today ({today.isoformat()}) cannot be sold before the next "
                    f"session (A-share T+1); sellable now: {sellable}"
                )
        placed = await self._place_closes(caller, venue, broker, instrument, orders, qty, long)
        lines = [self._close_line(o, instrument) for o in placed]
        if any(o.status.is_open for o in placed):
            lines.extend(f"note: {n}" for n in self._market_closed(venue_name))
        return Reply(
            "\n".join(lines),
            ok=all(o.status is not OrderStatus.REJECTED for o in placed),
            data={"orders": [{"id": o.client_order_id, "status": o.status.value, "qty": str(o.qty)} for o in placed]},
        )

    @staticmethod
    def _check_close_qty(instrument: Instrument, qty: Decimal, held: Decimal) -> None:
        symbol = instrument.symbol
        if qty <= 0:
            raise UserError(f"QTY must be above 0; {held} {symbol} is held")
        if qty > held:
            raise UserError(f"QTY {qty} is more than the {held} {symbol} held; /close {symbol} all sells it all")
        if qty % instrument.qty_step:
            raise UserError(f"QTY {qty} is not a multiple of {symbol}'s step {instrument.qty_step}")
        # Exchanges take odd lots (A-shares: under 100) only when the whole holding goes.
        if qty != held and instrument.lot_size > 1 and qty % instrument.lot_size:
            raise UserError(
                f"QTY {qty}: {symbol} is sold in lots of {instrument.lot_size} unless the whole {held} is sold"
            )

    async def _place_closes(
        self,
        caller: Caller,
        venue: Venue,
        broker: Broker,
        instrument: Instrument,
        orders: list[Order],
        qty: Decimal,
        long: bool,
    ) -> list[Order]:
        """Market exits of ``qty``: under each open plan of the symbol, oldest first (so the plan's
        bracket is clipped when it fills: the stop and targets shrink, or are cancelled when nothing
        is left), and for anything held beyond the plans one order of its own."""
        side = Side.SELL if long else Side.BUY
        by_id = {o.client_order_id: o for o in orders}
        left, placed = qty, []
        now = self.s.clock.now()
        note = f"manual close by {caller.actor}"
        for plan in self.s.plans.active(venue.name):
            entry = by_id.get(plan.signal_id)
            if left <= 0 or plan.symbol != instrument.symbol or entry is None or entry.status is not OrderStatus.FILLED:
                continue
            if (entry.side is Side.BUY) is not long:
                continue
            children = [o for o in orders if o.parent == plan.signal_id]
            sold = sum((o.filled_qty for o in children if o.status is OrderStatus.FILLED), ZERO)
            take = min(left, entry.filled_qty - sold)
            if take <= 0:
                continue
            number = 1 + sum(1 for o in children if exit_kind(plan.signal_id, o) == "manual")
            coid = manual_exit_order_id(plan.signal_id, number)
            self.s.signals.set_order_note(coid, note, at=now)
            order = await broker.place(
                OrderRequest(
                    client_order_id=coid,
                    symbol=instrument.symbol,
                    side=side,
                    qty=take,
                    parent=plan.signal_id,
                    signal_id=plan.signal_id,
                )
            )
            plan.exit_orders = [*plan.exit_orders, coid]
            plan.updated_at = now
            self.s.plans.save(plan)
            placed.append(order)
            left -= take
        if left > 0:
            coid = standalone_close_order_id(secrets.token_hex(6))
            self.s.signals.set_order_note(coid, note, at=now)
            placed.append(
                await broker.place(OrderRequest(client_order_id=coid, symbol=instrument.symbol, side=side, qty=left))
            )
        for order in placed:
            self._audit(caller, "close", order.client_order_id, {"symbol": instrument.symbol, "qty": str(order.qty)})
        return [await broker.order(o.client_order_id) or o for o in placed]

    @staticmethod
    def _close_line(order: Order, instrument: Instrument) -> str:
        """One line per exit order: filled (quote mode), refused with the broker's reason, or placed
        (the paper broker's default fills a market order at the next bar's open)."""
        verb = "sell" if order.side is Side.SELL else "buy back"
        what = f"{verb} {order.qty} {instrument.symbol} at market (order {order.client_order_id})"
        if order.status is OrderStatus.FILLED:
            done = "sold" if order.side is Side.SELL else "bought back"
            price = order.avg_fill_price
            return f"{done} {order.filled_qty} {instrument.symbol} at {price} (order {order.client_order_id})"
        if order.status is OrderStatus.REJECTED:
            return f"refused: {what}: {order.reason}"
        tail = "; its bracket's stop and targets shrink to what is left when it fills" if order.parent else ""
        return f"order placed: {what}; fills at the next bar's open{tail}"

    # --- /cancel ---

    async def _cancel(self, caller: Caller, args: list[str]) -> Reply:
        if len(args) != 1:
            raise UserError(f"usage: /cancel ID (an order's id from /orders). {await self._pending_orders()}")
        word = args[0]
        if not word.isascii() or not ORDER_ID.match(word):
            raise UserError(
                f"{word[:40]!r} is not an order id (1-64 letters, digits and _ . : -). {await self._pending_orders()}"
            )
        found = await self._find_order(word) or await self._find_order(word.lower())
        if found is None:
            raise UserError(f"no order {word}. {await self._pending_orders()}")
        broker, order = found
        if not order.status.is_open:
            when = f" at {order.avg_fill_price}" if order.status is OrderStatus.FILLED else ""
            why = f" ({order.reason})" if order.reason and order.status is not OrderStatus.FILLED else ""
            raise UserError(
                f"order {order.client_order_id} is already {order.status.value}{when}{why}; "
                "only pending orders can be cancelled"
            )
        cancelled = [await broker.cancel(order.client_order_id)]
        now = self.s.clock.now()
        lines = [f"order {order.client_order_id} cancelled ({order.side.value} {order.qty} {order.symbol})"]
        if order.parent is None:
            # An entry takes its bracket with it, and its plan ends here rather than at the next tick.
            for child in await broker.orders(OrderStatus.PENDING):
                if child.parent == order.client_order_id:
                    try:
                        cancelled.append(await broker.cancel(child.client_order_id))
                    except VenueError:
                        continue  # filled or cancelled meanwhile
            plan = self.s.plans.get(order.client_order_id)
            if plan is not None and plan.status == "entry_pending":
                plan.status, plan.closed_at, plan.updated_at = "cancelled", now, now
                plan.close_reason = f"entry cancelled by {caller.actor}"
                self.s.plans.save(plan)
            if len(cancelled) > 1:
                lines.append("its exits cancelled too: " + ", ".join(o.client_order_id for o in cancelled[1:]))
        elif order.client_order_id == stop_order_id(order.parent):
            lines.append(f"warning: the position in {order.symbol} has no stop now")
        for each in cancelled:
            self.s.signals.set_order_note(each.client_order_id, f"cancelled by {caller.actor}", at=now)
        self._audit(caller, "cancel", order.client_order_id, {"also": [o.client_order_id for o in cancelled[1:]]})
        return Reply("\n".join(lines), data={"cancelled": [o.client_order_id for o in cancelled]})

    async def _find_order(self, client_order_id: str) -> tuple[Broker, Order] | None:
        for venue in self.s.venues.values():
            broker = venue.broker_required()
            order = await broker.order(client_order_id)
            if order is not None:
                return broker, order
        return None

    async def _pending_orders(self) -> str:
        pending = [
            o.client_order_id
            for v in self.s.venues.values()
            for o in await v.broker_required().orders(OrderStatus.PENDING)
        ]
        if not pending:
            return "No order is pending."
        more = f" and {len(pending) - 12} more" if len(pending) > 12 else ""
        return f"Pending: {', '.join(pending[:12])}{more}."

    # --- /trades ---

    async def _trades(self, caller: Caller, args: list[str]) -> Reply:
        page = Page.parse(args, TRADES_USAGE)
        trips = await self.round_trips()
        if not trips:
            return Reply("no closed trades yet", data={"trades": []})
        shown = page.of(trips)
        rows = [
            (
                t.symbol,
                t.side,
                self.stamp(t.entry_at),
                t.entry_price,
                self.stamp(t.exit_at),
                t.exit_price,
                t.qty,
                f"{t.pnl:,.2f} {t.currency}",
                f"{t.r_multiple:+}R" if t.r_multiple is not None else "-",
                t.exit_reason,
            )
            for t in shown
        ]
        headers = ["symbol", "side", f"entry at {self.zone_label}", "entry", "exit at", "exit", "qty", "P&L net", "R"]
        headers.append("exit")
        text = table(headers, rows)
        footer = page.footer(len(trips), "/trades")
        data = [
            {
                "signal_id": t.signal_id,
                "venue": t.venue,
                "symbol": t.symbol,
                "side": t.side,
                "qty": str(t.qty),
                "entry_price": price_json(t.entry_price),
                "exit_price": price_json(t.exit_price),
                "pnl": money_json(t.pnl),
                "currency": t.currency,
                "r": str(t.r_multiple) if t.r_multiple is not None else None,
                "exit_reason": t.exit_reason,
            }
            for t in shown
        ]
        return Reply(text + (f"\n{footer}" if footer else ""), data={"trades": data, "total": len(trips)})

    async def round_trips(self) -> list[RoundTrip]:
        """Every closed plan's round trip, the latest exit first (times UTC)."""
        trips: list[RoundTrip] = []
        closed = [p for p in self.s.plans.all(limit=1_000_000) if p.status == "closed"]
        for name in sorted({p.venue for p in closed}):
            venue = self.s.venues.get(name)
            if venue is None:
                continue  # a venue no longer configured
            orders = await venue.broker_required().orders()
            by_id = {o.client_order_id: o for o in orders}
            for plan in (p for p in closed if p.venue == name):
                signal = self.s.signals.get(plan.signal_id)
                stop = signal.stop if signal is not None and signal.stop is not None else plan.stop
                exits = [o for o in orders if o.parent == plan.signal_id]
                trip = round_trip(plan, by_id.get(plan.signal_id), exits, await venue.instrument(plan.symbol), stop)
                if trip is not None:
                    trips.append(trip)
        return sorted(trips, key=lambda t: (t.exit_at, t.signal_id), reverse=True)

    async def realized_on(self, venue: Venue, orders: list[Order], trade_day: str) -> dict[str, Decimal]:
        """Realized P&L (net of fees) per currency of the exits of ``venue`` filled on ``trade_day``."""
        by_id = {o.client_order_id: o for o in orders}
        totals: dict[str, Decimal] = {}
        for fill in await venue.broker_required().fills():
            exit = by_id.get(fill.client_order_id)
            entry = by_id.get(exit.parent) if exit is not None and exit.parent else None
            if fill.trade_day != trade_day or exit is None or entry is None or entry.avg_fill_price is None:
                continue
            instrument = await venue.instrument(exit.symbol)
            totals[instrument.currency] = totals.get(instrument.currency, ZERO) + exit_pnl(
                entry, exit, instrument.multiplier
            )
        return totals

    # --- /risk: today's figures ---

    async def risk_today(self, profile: RiskProfile) -> tuple[list[tuple[str, ...]], list[str], list[dict[str, str]]]:
        """Per venue and currency: today's realized P&L, the loss the gate counts today (equity
        against the day's start, as tools.risk does) against the daily limit, entries used and
        left; and the symbols whose cooldown (since their last entry) runs now."""
        rows: list[tuple[str, ...]] = []
        cooldowns: list[str] = []
        data: list[dict[str, str]] = []
        now = self.s.clock.now()
        for name, venue in self.s.venues.items():
            instruments = await venue.instruments()
            calendar = instruments[0].calendar if instruments else "24/7"
            today = calendars.trading_day(calendar, now)
            broker = venue.broker_required()
            orders = await broker.orders()
            with_bracket = {o.parent for o in orders if o.parent is not None}
            entries = [
                o
                for o in orders
                if o.parent is None
                and (o.side is Side.BUY or o.client_order_id in with_bracket)
                and o.status is not OrderStatus.REJECTED
                and not is_standalone_close(o)
            ]
            used = sum(1 for o in entries if calendars.trading_day(calendar, o.created_at) == today)
            held = len(await broker.positions())
            realized = await self.realized_on(venue, orders, today.isoformat())
            for currency in sorted({i.currency for i in instruments}) or [""]:
                account = await broker.account(currency)
                key = f"day_start_equity:{name}:{currency}:{today.isoformat()}"
                start = Decimal(str((self.s.signals.get_value(key) or {}).get("equity", account.equity)))
                loss = max(start - account.equity, ZERO)
                limit = start * profile.daily_loss_limit_pct
                data.append(
                    {
                        "venue": name,
                        "currency": currency,
                        "realized_today": money_json(realized.get(currency, ZERO)),
                        "loss_today": money_json(loss),
                        "loss_limit": money_json(limit),
                        "trades_today": str(used),
                        "trades_left": str(max(profile.max_trades_per_day - used, 0)),
                    }
                )
                rows.append(
                    (
                        name,
                        today.isoformat(),
                        f"{realized.get(currency, ZERO):,.2f} {currency}",
                        f"{loss:,.2f} / {limit:,.2f} {currency}",
                        f"{used}/{profile.max_trades_per_day}",
                        str(max(profile.max_trades_per_day - used, 0)),
                        f"{held}/{profile.max_concurrent_positions}",
                    )
                )
            last: dict[str, datetime] = {}
            for o in entries:
                last[o.symbol] = max(last.get(o.symbol, o.created_at), o.created_at)
            for symbol, at in sorted(last.items()):
                until = at + profile.cooldown
                if until > now:
                    cooldowns.append(f"{symbol} on {name} until {until.strftime('%Y-%m-%d %H:%M')} UTC")
        return rows, cooldowns, data

    # --- /plan ---

    async def _plan(self, caller: Caller, args: list[str]) -> Reply:
        if len(args) < 2:
            raise UserError(f"usage: {PLAN_USAGE}. {self._open_plans()}")
        plan = self._open_plan(args[0])
        signal_id = plan.signal_id
        venue = self.s.venues[plan.venue]
        broker = venue.broker_required()
        instrument = await venue.instrument(plan.symbol)
        tick = instrument.tick_size
        entry = await broker.order(signal_id)
        if entry is None:
            raise UserError(f"plan {signal_id}: its entry order is not at {plan.venue}; nothing to amend")
        long = entry.side is Side.BUY
        changes = self._plan_changes(args[1:], len(plan.take_profits), tick)
        bars = await venue.bars(plan.symbol, instrument.timeframe, limit=1)
        if bars.empty:
            raise UserError(f"no price for {plan.symbol} yet: nothing to check the levels against")
        last = Decimal(repr(float(bars["close"].iloc[-1])))
        orders: dict[str, Order] = {}
        for key, price in changes.items():
            order = await broker.order(_exit_id(signal_id, key))
            if order is None or not order.status.is_open:
                state = order.status.value if order is not None else "not placed"
                raise UserError(f"{key} of {signal_id} is {state}: only a live exit can be moved")
            orders[key] = order
            # A long's stop under the price and its targets over it; a short's the mirror.
            under = (key == "stop") is long
            if price >= last if under else price <= last:
                what = "stop" if key == "stop" else "target"
                raise UserError(
                    f"{key}={price} refused: a {'long' if long else 'short'}'s {what} must be "
                    f"{'below' if under else 'above'} the last price {last}"
                )
        await self._check_order_of_levels(broker, signal_id, long, changes, len(plan.take_profits), tick)
        before = {key: self._level(order) for key, order in orders.items()}
        await self._amend_all(broker, signal_id, changes, before)
        take_profits = list(plan.take_profits)
        for key, price in changes.items():
            if key != "stop":
                take_profits[int(key[2:]) - 1] = format(price, "f")
        moved_stop = changes.get("stop")
        self.s.plans.set_levels(
            signal_id,
            stop=moved_stop or plan.stop,
            take_profits=take_profits,
            trailing_stop=moved_stop
            if moved_stop is not None and plan.trailing_stop is not None
            else plan.trailing_stop,
            at=self.s.clock.now(),
        )
        moved = {k: {"from": on_tick(before[k], tick), "to": on_tick(v, tick)} for k, v in changes.items()}
        self._audit(caller, "plan", signal_id, moved)
        said = ", ".join(f"{k if k == 'stop' else k.upper()} {m['from']} -> {m['to']}" for k, m in moved.items())
        return Reply(
            f"plan {signal_id} ({plan.symbol}): {said}; the live exit orders are amended (by {caller.actor})",
            data={"signal_id": signal_id, "changes": moved},
        )

    def _open_plan(self, word: str) -> TradePlan:
        signal_id = word.lower() if word.isascii() else ""  # validated before folding: see fold()
        if not re.fullmatch(r"[a-z0-9]{4,40}", signal_id):
            raise UserError(f"{word[:40]!r} is not a signal id (4-40 letters and digits). {self._open_plans()}")
        plan = self.s.plans.get(signal_id)
        if plan is None:
            raise UserError(f"no plan for {signal_id}. {self._open_plans()}")
        if plan.status != "open":
            why = {"entry_pending": "its entry has not filled yet (/cancel it to drop it)"}.get(
                plan.status, f"it is {plan.status}" + (f" ({plan.close_reason})" if plan.close_reason else "")
            )
            raise UserError(f"plan {signal_id} cannot be changed: {why}. {self._open_plans()}")
        return plan

    @staticmethod
    def _plan_changes(words: list[str], targets: int, tick: Decimal) -> dict[str, Decimal]:
        """``stop=P tp1=P ...`` as {key: price}: known keys only, each once, prices on the tick."""
        valid = ["stop", *(f"tp{n}" for n in range(1, targets + 1))]
        changes: dict[str, Decimal] = {}
        for word in words:
            key, sep, value = fold(word).partition("=")
            if not sep or key not in valid:
                raise UserError(f"{word[:32]!r} is not a change: use {'=P, '.join(valid)}=P; usage: {PLAN_USAGE}")
            if key in changes:
                raise UserError(f"{key} is given twice")
            changes[key] = parse_price(value, key, tick)
        return changes

    @staticmethod
    async def _amend_all(
        broker: Broker, signal_id: str, changes: dict[str, Decimal], before: dict[str, Decimal]
    ) -> None:
        """Amend each exit; when one fails (filled meanwhile), put back those already moved, so a
        refusal changes nothing."""

        async def amend(key: str, price: Decimal) -> None:
            if key == "stop":
                await broker.amend(_exit_id(signal_id, key), stop_price=price)
            else:
                await broker.amend(_exit_id(signal_id, key), limit_price=price)

        done: list[str] = []
        try:
            for key, price in changes.items():
                await amend(key, price)
                done.append(key)
        except VenueError as exc:
            for key in done:
                with contextlib.suppress(VenueError):
                    await amend(key, before[key])
            raise UserError(f"/plan {signal_id}: {exc}; nothing was changed") from None

    async def _check_order_of_levels(
        self, broker: Broker, signal_id: str, long: bool, changes: dict[str, Decimal], targets: int, tick: Decimal
    ) -> None:
        """After the change the live levels still ladder: a long's stop under TP1 under TP2 ...
        (a short's the mirror), so no target is passed over by a later one."""
        levels: list[tuple[str, Decimal]] = []
        for key in ["stop", *(f"tp{n}" for n in range(1, targets + 1))]:
            order = await broker.order(_exit_id(signal_id, key))
            if order is not None and order.status.is_open:
                levels.append((key, changes.get(key, self._level(order))))
        for (low_key, low), (high_key, high) in itertools.pairwise(levels):
            if (low >= high) if long else (low <= high):
                side = "below" if long else "above"
                raise UserError(
                    f"refused: {low_key} {on_tick(low, tick)} would not be {side} {high_key} {on_tick(high, tick)}; a "
                    f"{'long' if long else 'short'}'s levels go stop, TP1, TP2 ... in that order"
                )

    @staticmethod
    def _level(order: Order) -> Decimal:
        level = order.stop_price if order.type is OrderType.STOP else order.limit_price
        assert level is not None
        return level

    def _open_plans(self) -> str:
        plans = [p for p in self.s.plans.active() if p.status == "open"]
        if not plans:
            return "No position has an open plan."
        return "Open plans: " + ", ".join(f"{p.signal_id} ({p.symbol})" for p in plans[:12]) + "."

    # --- /orders: what each order is for ---

    def order_reasons(self, orders: list[Order]) -> list[str]:
        notes = self.s.signals.order_notes()
        return [order_reason(o, notes.get(o.client_order_id, "")) for o in orders]
