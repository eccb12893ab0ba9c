"""How option positions and multi-leg orders appear in /positions and /orders: a contract is
marked at its quote's mid (not at stock bars, which Alpaca has none of for it), and a spread's
order is one row that names its legs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from venues.base import Venue
from venues.options import OccSymbol, OptionOrders, OptionsData, is_occ_symbol


async def mark_price(venue: Venue, symbol: str, timeframe: str) -> Decimal | None:
    """The last price of a position's symbol: its quote's last price (the last bar's close without
    one), or for an option contract the mid of its quote (its last trade without one); None when
    there is neither."""
    if is_occ_symbol(symbol) and isinstance(venue, OptionsData):
        occ = OccSymbol.parse(symbol)
        chain = await venue.option_chain(
            occ.underlying, expiry=occ.expiry, right=occ.right, strike_min=occ.strike, strike_max=occ.strike
        )
        quote = next((q for q in chain if q.symbol == symbol), None)
        if quote is None:
            return None
        if quote.bid and quote.ask:
            return (Decimal(repr(quote.bid)) + Decimal(repr(quote.ask))) / 2
        return Decimal(repr(quote.last)) if quote.last else None
    # The quote the paper broker marks the account with (/pnl's equity), so /positions agrees with it.
    last = (await venue.snapshot([symbol])).get(symbol)
    if last is not None and last.last:
        return Decimal(repr(float(last.last)))
    bars = await venue.bars(symbol, timeframe, limit=1)
    return Decimal(repr(float(bars["close"].iloc[-1]))) if not bars.empty else None


def plan_symbol(symbol: str) -> str:
    """The symbol a position's trade plan is kept under: an option leg's underlying, else itself."""
    return OccSymbol.parse(symbol).underlying if is_occ_symbol(symbol) else symbol


def describe_position(symbol: str) -> str:
    """``SPY210730C00437000`` -> ``SPY210730C00437000 (SPY 2021-07-30 437 call)``; others as they are."""
    return f"{symbol} ({OccSymbol.parse(symbol).describe()})" if is_occ_symbol(symbol) else symbol


async def spread_order_rows(
    venues: dict[str, Venue], stamp: Callable[[datetime], str]
) -> list[tuple[datetime, str, tuple[Any, ...], dict[str, Any]]]:
    """Each multi-leg order as (created, id, /orders row, data): symbol = the underlying, side =
    the legs, type = mleg limit NET or mleg market."""
    out = []
    for venue in venues.values():
        broker = venue.broker_required()
        if not isinstance(broker, OptionOrders):
            continue
        for o in await broker.legs_orders():
            kind = f"mleg limit {o.limit_price:.2f}" if o.limit_price is not None else "mleg market"
            row = (
                o.client_order_id,
                o.venue,
                o.underlying,
                " / ".join(o.legs),
                o.qty,
                kind,
                o.status.value,
                f"{o.filled_avg_price:.2f}" if o.filled_avg_price is not None else None,
                None,
                stamp(o.created_at),
                o.reason[:60],
            )
            data: dict[str, Any] = {"id": o.client_order_id, "status": o.status.value, "type": "mleg", "parent": None}
            data["legs"] = list(o.legs)
            out.append((o.created_at, o.client_order_id, row, data))
    return out
