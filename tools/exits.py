"""Exits of a position as resting orders at the venue, placed with the entry (a bracket):

- one stop for the whole position: it fills at the stop price, or at the open when a bar gaps
  through it, with slippage;
- one take-profit limit per target with its tranche of the entry (TP1/TP2/TP3, 30/40/30 by default,
  lot-rounded; the last target takes the rest): each fills at its target, or better on a gap.

The children rest at the broker from the moment the entry fills and see only prices after that fill;
a fill clips its siblings to what is left (the stop shrinks as targets fill, and the targets are
cancelled when the stop sells everything). After TP1 the stop moves to break-even and then trails
the highest high by the initial risk (entry - stop): ``after_first_target`` gives that amendment.
Live venues get the same bracket as native bracket/OCO orders where they have them.
"""

from __future__ import annotations

from decimal import Decimal

from tools.sizing import exit_tranches
from venues.costs import round_to_tick
from venues.models import Instrument, Order, OrderRequest, OrderType, Side


def stop_order_id(entry_id: str) -> str:
    return f"{entry_id}-sl"


def target_order_id(entry_id: str, number: int) -> str:
    return f"{entry_id}-tp{number}"


def time_exit_order_id(entry_id: str) -> str:
    return f"{entry_id}-ts"


def manual_exit_order_id(entry_id: str, number: int) -> str:
    """The ``number``-th manual close (``/close``) of the position an entry opened."""
    return f"{entry_id}-mc{number}"


def standalone_close_order_id(token: str) -> str:
    """A manual close (``/close``) of a position no plan holds: an order of its own, no parent."""
    return f"close-{token}"


def is_standalone_close(order: Order) -> bool:
    return order.parent is None and order.client_order_id.startswith("close-")


def exit_kind(entry_id: str, order: Order) -> str:
    """What an exit of the entry ``entry_id`` is, in the trader's words: stop (trailing stop once it
    trails), TP1, TP2..., time (the time stop), manual (/close); "exit" for anything else."""
    suffix = order.client_order_id.removeprefix(f"{entry_id}-")
    if order.client_order_id == stop_order_id(entry_id):
        return "trailing stop" if order.trail is not None else "stop"
    if order.client_order_id == time_exit_order_id(entry_id):
        return "time"
    if suffix.startswith("tp") and suffix[2:].isdigit():
        return f"TP{suffix[2:]}"
    if suffix.startswith("mc") and suffix[2:].isdigit():
        return "manual"
    return "exit"


def bracket(
    entry_id: str,
    instrument: Instrument,
    *,
    entry_side: Side,
    qty: Decimal,
    stop: Decimal,
    take_profits: tuple[Decimal, ...],
    exit_weights: tuple[Decimal, ...],
) -> list[OrderRequest]:
    """The stop and the take-profit orders of an entry of ``qty``; prices on the tick grid, rounded
    away from the trader's favour for the stop (never a tighter stop than the card's) and for the
    targets (never a fill short of the card's target)."""
    exit_side = Side.SELL if entry_side is Side.BUY else Side.BUY
    long = entry_side is Side.BUY
    tick = instrument.tick_size
    orders = [
        OrderRequest(
            client_order_id=stop_order_id(entry_id),
            symbol=instrument.symbol,
            side=exit_side,
            qty=qty,
            type=OrderType.STOP,
            stop_price=round_to_tick(stop, tick, up=not long),
            parent=entry_id,
            signal_id=entry_id,
        )
    ]
    tranches = exit_tranches(instrument, qty, exit_weights) if take_profits else []
    for number, (tranche, target) in enumerate(zip(tranches, take_profits, strict=True), 1):
        if tranche <= 0:
            continue
        orders.append(
            OrderRequest(
                client_order_id=target_order_id(entry_id, number),
                symbol=instrument.symbol,
                side=exit_side,
                qty=tranche,
                type=OrderType.LIMIT,
                limit_price=round_to_tick(target, tick, up=long),
                parent=entry_id,
                signal_id=entry_id,
            )
        )
    return orders


def after_first_target(
    *, entry_price: Decimal, initial_stop: Decimal, current_stop: Decimal, long: bool, tick: Decimal
) -> tuple[Decimal, Decimal]:
    """The stop after TP1: at break-even (the entry's fill price) or better, trailing by the initial
    risk from then on. Returns (stop price, trail distance)."""
    trail = abs(entry_price - initial_stop)
    if long:
        return max(current_stop, round_to_tick(entry_price, tick, up=True)), trail
    return min(current_stop, round_to_tick(entry_price, tick, up=False)), trail
