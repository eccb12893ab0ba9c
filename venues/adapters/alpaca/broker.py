"""AlpacaBroker: the Broker protocol on Alpaca's paper trading API.

Which part goes where:

- **Entries** (orders without a parent: market, limit, stop) go to Alpaca's paper account with
  ``client_order_id`` = the domain's id (the signal id). Alpaca fills them; the account, positions
  and fills are Alpaca's.
- **Exits** (bracket children: the stop and the targets of a plan, one-cancels-other by quantity,
  moved to break-even and trailed by the position manager) stay here, stored in the paper ledger
  and watched on Alpaca's own final 1m bars after the entry's fill. Alpaca's native bracket has one
  stop and one target, and Alpaca refuses resting sells that add up to more than the position, so
  the domain's 30/40/30 plan cannot rest there. When a bar reaches an exit's level, a market sell
  for what is still held goes to Alpaca under the exit's client order id, and the exit takes
  Alpaca's fill.

Placing is idempotent by client order id: every attempt (the first, and each retry after a 429, a
5xx or a timeout) first asks Alpaca for the order by that id and sends it only when Alpaca has none.
An order whose POST reached Alpaca but whose answer was lost is therefore found, not placed twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OptionLegRequest,
    StopOrderRequest,
)

from venues.adapters.alpaca.client import AlpacaApi, AlpacaApiError
from venues.base import MarketData
from venues.calendars import trading_day
from venues.clock import Clock
from venues.errors import OrderRejected, VenueError
from venues.models import (
    ZERO,
    Account,
    Fill,
    Liquidity,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from venues.options import LegsOrder, OccSymbol, OptionLeg
from venues.paper import PaperLedger, amended_order

_PENDING = {
    "new",
    "accepted",
    "pending_new",
    "accepted_for_bidding",
    "partially_filled",
    "held",
    "calculated",
    "pending_cancel",
    "pending_replace",
    "pending_review",
    "done_for_day",
    "stopped",
    "replaced",
}
_STATUS = {"filled": OrderStatus.FILLED, "canceled": OrderStatus.CANCELLED, "expired": OrderStatus.CANCELLED}
_TYPES = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stop": OrderType.STOP, "trailing_stop": OrderType.STOP}
SENT = "sent to alpaca as a market order"


def order_status(alpaca_status: str) -> OrderStatus:
    """Alpaca's order status -> ours: working states are PENDING, filled FILLED, canceled and
    expired CANCELLED, rejected and suspended REJECTED."""
    if alpaca_status in _PENDING:
        return OrderStatus.PENDING
    return _STATUS.get(alpaca_status, OrderStatus.REJECTED)


def _decimal(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def _time(value: Any) -> datetime | None:
    return None if not value else pd.Timestamp(value).tz_convert("UTC").floor("us").to_pydatetime()


def order_from_alpaca(raw: dict[str, Any], venue: str, known: Order | None = None) -> Order:
    """An Alpaca order (raw JSON) as the domain's Order; ``known`` (ours, as placed) keeps what
    Alpaca does not carry (the parent, the collar, the signal id)."""
    status = order_status(str(raw.get("status", "")))
    created = _time(raw.get("created_at")) or _time(raw.get("submitted_at"))
    assert created is not None, "an Alpaca order always has created_at"
    reason = "" if status is not OrderStatus.REJECTED else f"alpaca {raw.get('status')}"
    if status is OrderStatus.CANCELLED:
        reason = f"alpaca {raw.get('status')}"
    base: dict[str, Any] = {
        "client_order_id": str(raw["client_order_id"]),
        "venue": venue,
        "symbol": str(raw["symbol"]),
        "side": Side(str(raw["side"])),
        "type": _TYPES.get(str(raw.get("type") or raw.get("order_type")), OrderType.MARKET),
        "qty": _decimal(raw.get("qty")) or ZERO,
        "limit_price": _decimal(raw.get("limit_price")),
        "stop_price": _decimal(raw.get("stop_price")),
        "status": status,
        "reason": reason,
        "created_at": created,
        "updated_at": _time(raw.get("updated_at")) or created,
        "filled_qty": _decimal(raw.get("filled_qty")) or ZERO,
        "avg_fill_price": _decimal(raw.get("filled_avg_price")),
        "filled_at": _time(raw.get("filled_at")),
    }
    if known is not None:
        base.update(
            parent=known.parent,
            collar_low=known.collar_low,
            collar_high=known.collar_high,
            signal_id=known.signal_id,
            trail=known.trail,
            qty=known.qty,
            type=known.type,
            limit_price=known.limit_price,
            stop_price=known.stop_price,
        )
        if known.parent is not None and status is OrderStatus.PENDING:
            base["reason"] = SENT
    return Order(**base)


def legs_order_from_alpaca(raw: dict[str, Any], venue: str) -> LegsOrder | None:
    """An Alpaca ``mleg`` order (raw JSON) as a LegsOrder; None for any other order class."""
    if str(raw.get("order_class") or "") != "mleg" or not raw.get("legs"):
        return None
    legs = [dict(leg) for leg in raw["legs"]]
    symbols = [str(leg["symbol"]) for leg in legs]
    status = order_status(str(raw.get("status", "")))
    created = _time(raw.get("created_at")) or _time(raw.get("submitted_at"))
    assert created is not None, "an Alpaca order always has created_at"
    reason = f"alpaca {raw.get('status')}" if status in (OrderStatus.CANCELLED, OrderStatus.REJECTED) else ""
    return LegsOrder(
        client_order_id=str(raw["client_order_id"]),
        venue=venue,
        underlying=OccSymbol.parse(symbols[0]).underlying,
        legs=tuple(
            f"{leg.get('side')} {Decimal(str(leg.get('ratio_qty') or 1)).normalize():f} {symbol}"
            for leg, symbol in zip(legs, symbols, strict=True)
        ),
        qty=int(Decimal(str(raw.get("qty") or 0))),
        limit_price=_decimal(raw.get("limit_price")),
        status=status,
        filled_avg_price=_decimal(raw.get("filled_avg_price")),
        created_at=created,
        filled_at=_time(raw.get("filled_at")),
        reason=reason,
    )


def fill_of(order: Order) -> Fill | None:
    if order.status is not OrderStatus.FILLED or order.avg_fill_price is None or order.filled_at is None:
        return None
    return Fill(
        client_order_id=order.client_order_id,
        venue=order.venue,
        symbol=order.symbol,
        side=order.side,
        qty=order.filled_qty,
        price=order.avg_fill_price,
        fee=order.fees,
        liquidity=Liquidity.MAKER if order.type is OrderType.LIMIT else Liquidity.TAKER,
        ts=order.filled_at,
        trade_day=trading_day("XNYS", order.filled_at).isoformat(),
    )


class AlpacaBroker:
    """Orders on Alpaca's paper account (see the module docstring for what rests where).
    ``market`` serves the 1m bars exits are watched on; ``ledger`` stores our orders."""

    def __init__(self, venue: str, api: AlpacaApi, market: MarketData, clock: Clock, ledger: PaperLedger) -> None:
        self.venue = venue
        self.api = api
        self._market = market
        self._clock = clock
        self._ledger = ledger
        self._lock = asyncio.Lock()

    # --- Alpaca calls ---

    def _lookup_sync(self, client_order_id: str) -> dict[str, Any] | None:
        try:
            found: Any = self.api.trading.get_order_by_client_id(client_order_id)
        except APIError as exc:
            if exc.status_code == 404:
                return None
            raise
        return dict(found)

    async def _lookup(self, client_order_id: str) -> dict[str, Any] | None:
        return await self.api.call(f"order {client_order_id}", lambda: self._lookup_sync(client_order_id))

    async def _submit(self, request: OrderRequest, qty: Decimal, kind: OrderType) -> dict[str, Any]:
        common: dict[str, Any] = {
            "symbol": request.symbol,
            "qty": float(qty),
            "side": OrderSide(request.side.value),
            "time_in_force": TimeInForce.DAY,  # fractional quantities take day orders only
            "client_order_id": request.client_order_id,
        }
        alpaca: MarketOrderRequest | LimitOrderRequest | StopOrderRequest
        if kind is OrderType.LIMIT:
            alpaca = LimitOrderRequest(limit_price=float(request.limit_price or 0), **common)
        elif kind is OrderType.STOP:
            alpaca = StopOrderRequest(stop_price=float(request.stop_price or 0), **common)
        else:
            alpaca = MarketOrderRequest(**common)

        def send() -> dict[str, Any]:
            found = self._lookup_sync(request.client_order_id)  # a retry finds what an earlier try placed
            if found is not None:
                return found
            return dict(self.api.trading.submit_order(alpaca))

        try:
            return await self.api.call(f"order {request.client_order_id}", send)
        except AlpacaApiError as exc:
            raise OrderRejected(f"alpaca refused {request.side.value} {qty} {request.symbol}: {exc.detail}") from exc

    # --- Broker ---

    async def place(self, request: OrderRequest) -> Order:
        """An entry goes to Alpaca; an exit (with a parent) rests here until a bar reaches it."""
        async with self._lock:
            existing = self._ledger.order(request.client_order_id)
            if existing is not None:
                if existing.venue == self.venue and existing.same_request(request):
                    return existing
                raise VenueError(
                    f"client order id {request.client_order_id!r} is already used by another order "
                    f"({existing.side.value} {existing.qty} {existing.symbol} on {existing.venue}); use a new id"
                )
            await self._market.instrument(request.symbol)  # UnknownSymbolError before anything is sent
            now = self._clock.now()
            mine = Order.from_request(request, self.venue, at=now)
            if request.parent is not None:
                if self._ledger.order(request.parent) is None:
                    raise VenueError(f"exit {request.client_order_id}: no entry {request.parent!r} on {self.venue}")
                stored, _ = self._ledger.add_order(mine)
                return stored
            raw = await self._submit(request, request.qty, request.type)
            placed = order_from_alpaca(raw, self.venue, mine)
            stored, _ = self._ledger.add_order(placed)
            return stored

    async def cancel(self, client_order_id: str) -> Order:
        async with self._lock:
            await self._process()
            order = self._ledger.order(client_order_id)
            if order is None or order.venue != self.venue:
                raise VenueError(f"no order with client order id {client_order_id!r} on {self.venue}")
            if not order.status.is_open:
                raise VenueError(
                    f"order {client_order_id} is already {order.status.value}; only pending orders can be cancelled"
                )
            if order.parent is None or order.reason == SENT:
                raw = await self._lookup(client_order_id)
                if raw is not None:
                    await self.api.call(
                        f"cancel {client_order_id}", lambda: self.api.trading.cancel_order_by_id(str(raw["id"]))
                    )
            cancelled = order.model_copy(
                update={
                    "status": OrderStatus.CANCELLED,
                    "reason": "cancelled by request",
                    "updated_at": self._clock.now(),
                }
            )
            self._ledger.update_order(cancelled)
            return cancelled

    async def amend(
        self,
        client_order_id: str,
        *,
        stop_price: Decimal | None = None,
        trail: Decimal | None = None,
        limit_price: Decimal | None = None,
    ) -> Order:
        async with self._lock:
            order = self._ledger.order(client_order_id)
            if order is None or order.venue != self.venue:
                raise VenueError(f"no order with client order id {client_order_id!r} on {self.venue}")
            if order.parent is None:
                raise VenueError(f"order {client_order_id} is an entry; only a pending exit can be amended")
            if order.reason == SENT:
                raise VenueError(f"exit {client_order_id} was already sent to Alpaca; it can no longer be amended")
            amended = amended_order(
                order, stop_price=stop_price, trail=trail, limit_price=limit_price, at=self._clock.now()
            )
            self._ledger.update_order(amended)
            return amended

    async def process(self) -> list[Fill]:
        """Bring entries and sent exits up to Alpaca's state, and send the exits a bar reached."""
        async with self._lock:
            return await self._process()

    async def _process(self) -> list[Fill]:
        fills: list[Fill] = []
        pending = self._ledger.orders(self.venue, OrderStatus.PENDING)
        for order in pending:
            if order.parent is None or order.reason == SENT:
                fill = await self._refresh(order)
                if fill is not None:
                    fills.append(fill)
        for order in self._ledger.orders(self.venue, OrderStatus.PENDING):
            if order.parent is not None and order.reason != SENT:
                await self._watch(order)
        return fills

    async def _refresh(self, order: Order) -> Fill | None:
        raw = await self._lookup(order.client_order_id)
        if raw is None:
            return None
        now_known = order_from_alpaca(raw, self.venue, order)
        if now_known.status is OrderStatus.PENDING:
            return None
        self._ledger.update_order(now_known)
        if now_known.status is OrderStatus.FILLED and now_known.parent is not None:
            self._close_siblings(now_known)
        return fill_of(now_known)

    def _held_for(self, exit_order: Order) -> Decimal:
        parent = self._ledger.order(exit_order.parent or "")
        if parent is None or parent.status is not OrderStatus.FILLED:
            return ZERO
        sold = sum((c.filled_qty for c in self._ledger.children(parent.client_order_id)), ZERO)
        return parent.filled_qty - sold

    def _close_siblings(self, filled: Order) -> None:
        if self._held_for(filled) > 0:
            return
        for sibling in self._ledger.children(filled.parent or ""):
            if sibling.status.is_open and sibling.reason != SENT:
                self._ledger.update_order(
                    sibling.model_copy(
                        update={
                            "status": OrderStatus.CANCELLED,
                            "reason": f"position closed by {filled.client_order_id}",
                            "updated_at": self._clock.now(),
                        }
                    )
                )

    async def _watch(self, exit_order: Order) -> None:
        parent = self._ledger.order(exit_order.parent or "")
        if parent is None or parent.status is not OrderStatus.FILLED or parent.filled_at is None:
            if parent is not None and parent.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
                self._ledger.update_order(
                    exit_order.model_copy(
                        update={"status": OrderStatus.CANCELLED, "reason": f"entry {parent.status.value}"}
                    )
                )
            return
        held = self._held_for(exit_order)
        if held <= 0:
            return
        since = max(parent.filled_at, exit_order.checked_until or parent.filled_at)
        bars = await self._market.bars(exit_order.symbol, "1m", start=since)
        bars = bars[bars.index >= pd.Timestamp(since)]
        if bars.empty:
            return
        reached, stop = _reached(exit_order, bars)
        update: dict[str, object] = {"checked_until": bars["close_time"].iloc[-1].to_pydatetime()}
        if stop is not None:
            update["stop_price"] = stop
        watched = exit_order.model_copy(update=update)
        if not reached:
            self._ledger.update_pending([watched])
            return
        qty = min(exit_order.qty, held)
        request = OrderRequest(
            client_order_id=exit_order.client_order_id, symbol=exit_order.symbol, side=exit_order.side, qty=qty
        )
        await self._submit(request, qty, OrderType.MARKET)
        self._ledger.update_order(watched.model_copy(update={"reason": SENT, "updated_at": self._clock.now()}))

    async def orders(self, status: OrderStatus | None = None) -> list[Order]:
        await self.process()
        return self._ledger.orders(self.venue, status)

    async def order(self, client_order_id: str) -> Order | None:
        await self.process()
        found = self._ledger.order(client_order_id)
        return found if found is not None and found.venue == self.venue else None

    async def fills(self, client_order_id: str | None = None) -> list[Fill]:
        await self.process()
        orders = self._ledger.orders(self.venue, OrderStatus.FILLED)
        return [f for o in orders if (f := fill_of(o)) is not None and client_order_id in (None, o.client_order_id)]

    async def positions(self, *, include_closed: bool = False) -> list[Position]:
        """Alpaca's open positions (closed ones are not kept by Alpaca: ``include_closed`` adds none)."""
        raw: Any = await self.api.call("positions", self.api.trading.get_all_positions)
        out = []
        for row in raw:
            qty = Decimal(str(row["qty"])) * (-1 if row.get("side") == "short" else 1)
            out.append(
                Position(
                    venue=self.venue,
                    symbol=str(row["symbol"]),
                    qty=qty,
                    avg_cost=Decimal(str(row["avg_entry_price"])),
                    updated_at=self._clock.now(),
                )
            )
        return out

    async def account(self, currency: str | None = None) -> Account:
        """Alpaca's figures: equity; ``cash`` is what the account can spend on a buy without
        margin (Alpaca's non-marginable buying power: a margin account's cash can be negative
        while it holds stock); nothing is reserved on top, Alpaca deducts open orders itself."""
        if currency not in (None, "USD"):
            raise VenueError(f"the alpaca paper account is in USD, not {currency}")
        raw: Any = await self.api.call("the account", self.api.trading.get_account)
        positions = tuple(await self.positions())
        equity = Decimal(str(raw["equity"]))
        spendable = Decimal(str(raw.get("non_marginable_buying_power") or raw["cash"]))
        long_value = Decimal(str(raw.get("long_market_value") or 0))
        short_value = Decimal(str(raw.get("short_market_value") or 0))
        return Account(
            venue=self.venue,
            currency=str(raw.get("currency") or "USD"),
            cash=spendable,
            reserved_cash=ZERO,
            positions_value=long_value + short_value,
            equity=equity,
            positions=positions,
        )

    async def place_legs(
        self, client_order_id: str, legs: list[OptionLeg], quantity: int, limit_price: Decimal | None = None
    ) -> dict[str, Any]:
        """A multi-leg option order (Alpaca's ``mleg`` class, 2-4 legs, e.g. a vertical spread):
        ``quantity`` units of the legs' ratios, at ``limit_price`` per unit (the net debit, > 0,
        or the net credit, < 0), or at market. Placed once per client order id, like ``place``.
        Returns Alpaca's order (raw): a spread is one order at Alpaca and no single symbol here."""
        if not 2 <= len(legs) <= 4:
            raise OrderRejected(f"a multi-leg order has 2 to 4 legs, got {len(legs)}")
        if quantity < 1:
            raise OrderRejected(f"a multi-leg order's quantity is 1 or more contracts, got {quantity}")
        for leg in legs:
            await self._market.instrument(leg.contract.format())  # the underlying must be listed
        common: dict[str, Any] = {
            "qty": quantity,
            "time_in_force": TimeInForce.DAY,
            "client_order_id": client_order_id,
            "order_class": OrderClass.MLEG,
            "legs": [
                OptionLegRequest(
                    symbol=leg.contract.format(),
                    ratio_qty=leg.ratio,
                    side=OrderSide.BUY if leg.buy else OrderSide.SELL,
                )
                for leg in legs
            ],
        }
        request = (
            LimitOrderRequest(limit_price=float(limit_price), **common)
            if limit_price is not None
            else MarketOrderRequest(**common)
        )
        what = " / ".join(f"{'buy' if leg.buy else 'sell'} {leg.ratio} {leg.contract}" for leg in legs)

        def send() -> dict[str, Any]:
            found = self._lookup_sync(client_order_id)
            if found is not None:
                return found
            return dict(self.api.trading.submit_order(request))

        try:
            return await self.api.call(f"order {client_order_id}", send)
        except AlpacaApiError as exc:
            raise OrderRejected(f"alpaca refused the {quantity} x ({what}) order: {exc.detail}") from exc

    async def legs_order(self, client_order_id: str) -> LegsOrder | None:
        """The multi-leg order with this client order id at Alpaca now (None: none, or not mleg)."""
        raw = await self._lookup(client_order_id)
        return legs_order_from_alpaca(raw, self.venue) if raw is not None else None

    async def legs_orders(self) -> list[LegsOrder]:
        found = [legs_order_from_alpaca(raw, self.venue) for raw in await self.orders_at_alpaca()]
        orders = [o for o in found if o is not None]
        return sorted(orders, key=lambda o: (o.created_at, o.client_order_id), reverse=True)

    async def orders_at_alpaca(self) -> list[dict[str, Any]]:
        """Every order Alpaca holds for the account (raw), for doctor and tests."""
        query = GetOrdersRequest(status=QueryOrderStatus.ALL)
        raw: Any = await self.api.call("orders", lambda: self.api.trading.get_orders(query))
        return list(raw)


def _reached(order: Order, bars: pd.DataFrame) -> tuple[bool, Decimal | None]:
    """Whether a bar reached the exit's level (a sell stop: low <= stop, trailing from the highest
    high; a sell target: high >= limit; mirrored for buys), and the stop as it trailed."""
    stop = order.stop_price
    best: float | None = None
    sell = order.side is Side.SELL
    for high, low in zip(bars["high"].to_numpy(), bars["low"].to_numpy(), strict=True):
        if order.type is OrderType.STOP and stop is not None:
            if sell and float(low) <= float(stop):
                return True, stop
            if not sell and float(high) >= float(stop):
                return True, stop
            if order.trail is not None:  # the stop follows the best price since the fill, never back
                if sell:
                    best = float(high) if best is None else max(best, float(high))
                    stop = max(stop, Decimal(str(best)) - order.trail)
                else:
                    best = float(low) if best is None else min(best, float(low))
                    stop = min(stop, Decimal(str(best)) + order.trail)
        elif order.type is OrderType.LIMIT and order.limit_price is not None:
            if sell and float(high) >= float(order.limit_price):
                return True, stop
            if not sell and float(low) <= float(order.limit_price):
                return True, stop
        elif order.type is OrderType.MARKET:
            return True, stop
    return False, stop
