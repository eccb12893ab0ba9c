"""SandboxBroker: entry orders to the exchange's test environment, exits with the PaperBroker.

With keys and TRADEOPS_CCXT_SANDBOX=true, an entry (an order without ``parent``: MARKET or LIMIT) is
sent to the exchange's sandbox with a client order id derived from ours in the exchange's format,
and mirrored in the local PaperBroker. The bracket's exits (STOP and LIMIT children) stay in the
PaperBroker, which matches them on the exchange's bars against the mirrored entry: positions, fills
and P&L in tradeops are the paper ledger's; the sandbox account holds the real test orders.

Sending is idempotent: before sending, and again after a 429 or a timeout on ``create_order`` (the
order may have reached the exchange although the answer did not reach us), the order is looked up
by its client order id; ``create_order`` itself is never retried blindly (its guard makes one
attempt). No order ever leaves for a live account: the broker refuses to exist, or to send, unless
the ccxt exchange is in sandbox mode.
"""

from __future__ import annotations

import hashlib
import logging
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import ccxt

from venues.errors import VenueError, VenueUnavailable
from venues.models import Account, Fill, Order, OrderRequest, OrderStatus, OrderType, Position
from venues.paper import PaperBroker

if TYPE_CHECKING:
    from venues.adapters.ccxt.venue import CcxtVenue

log = logging.getLogger(__name__)

_OKX_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_BINANCE_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def exchange_client_id(exchange: str, client_order_id: str) -> str:
    """Our client order id in the exchange's allowed format, the same every time: as is when it
    fits, else shortened with a hash of the whole id (so two ids never collapse into one).
    OKX: alphanumeric, at most 32; Binance: ``[.A-Z:/a-z0-9_-]{1,36}``; others: alphanumeric <= 32."""
    digest = hashlib.sha256(client_order_id.encode()).hexdigest()
    if exchange.startswith("binance"):
        if _BINANCE_ID.match(client_order_id):
            return client_order_id
        cleaned = re.sub(r"[^.A-Z:/a-z0-9_-]", "", client_order_id)[:26]
        return f"{cleaned}-{digest[:9]}" if cleaned else digest[:36]
    if _OKX_ID.match(client_order_id):
        return client_order_id
    cleaned = re.sub(r"[^A-Za-z0-9]", "", client_order_id)[:22]
    return f"{cleaned}{digest[: 32 - len(cleaned)]}"


class SandboxBroker:
    """The Broker of a ccxt venue with keys: see the module docstring. ``paper`` keeps the ledger."""

    def __init__(self, venue: CcxtVenue, paper: PaperBroker) -> None:
        self._require_sandbox(venue)
        self.venue = venue
        self.paper = paper
        self.sent: dict[str, dict[str, Any]] = {}  # our client order id -> the exchange's order

    @staticmethod
    def _require_sandbox(venue: CcxtVenue) -> None:
        if not venue.config.sandbox or not getattr(venue.exchange, "isSandboxModeEnabled", False):
            raise VenueError(
                f"{venue.name}: orders to the exchange need its sandbox (TRADEOPS_CCXT_SANDBOX=true); "
                "tradeops never sends an order to a live account"
            )

    # --- the exchange side ---

    async def _lookup(self, symbol: str, client_id: str) -> dict[str, Any] | None:
        exchange = self.venue.exchange
        try:
            return await self.venue.guard.call(
                "fetch_order",
                lambda: exchange.fetch_order(None, symbol, {"clientOrderId": client_id}),
            )
        except VenueError as exc:
            if isinstance(exc.__cause__, ccxt.OrderNotFound):
                return None
            raise

    async def _send(self, request: OrderRequest) -> dict[str, Any]:
        """The exchange's order for ``request``: found by client order id, or created once."""
        self._require_sandbox(self.venue)
        instrument = await self.venue.instrument(request.symbol)
        client_id = exchange_client_id(self.venue.name, request.client_order_id)
        found = await self._lookup(request.symbol, client_id)
        if found is not None:
            return found
        market = self.venue.exchange.market(request.symbol)
        contract = Decimal(str(market.get("contractSize") or 1)) if instrument.perpetual else Decimal(1)
        amount = float(request.qty / contract)
        kind = "limit" if request.type is OrderType.LIMIT else "market"
        price = float(request.limit_price) if request.limit_price is not None else None
        params = {"clientOrderId": client_id}
        exchange = self.venue.exchange
        try:
            return await self.venue.order_guard.call(
                "create_order",
                lambda: exchange.create_order(request.symbol, kind, request.side.value, amount, price, params),
            )
        except VenueUnavailable:
            # A 429 or a timeout: the order may be there. Look before sending again (the look-up
            # itself is retried with backoff and Retry-After by the guard).
            found = await self._lookup(request.symbol, client_id)
            if found is not None:
                log.info("%s: order %s was placed although its answer was lost", self.venue.name, client_id)
                return found
            return await self.venue.order_guard.call(
                "create_order",
                lambda: exchange.create_order(request.symbol, kind, request.side.value, amount, price, params),
            )

    async def exchange_balance(self) -> str:
        """The sandbox account's free balance of the settlement currencies, for `tradeops doctor`."""
        self._require_sandbox(self.venue)
        balance = await self.venue.guard.call("fetch_balance", lambda: self.venue.exchange.fetch_balance())
        free = balance.get("free") or {}
        shown = ", ".join(f"{ccy} {free[ccy]:g}" for ccy in ("USDT", "USDC", "BTC") if free.get(ccy) is not None)
        return f"free {shown}" if shown else "answered (no USDT, USDC or BTC balance)"

    # --- the Broker protocol ---

    async def place(self, request: OrderRequest) -> Order:
        """An entry goes to the sandbox first (a rejection there is the answer), then is mirrored in
        the paper ledger; an exit goes to the paper ledger only. Idempotent by client order id."""
        if request.parent is not None or request.type is OrderType.STOP:
            return await self.paper.place(request)
        existing = await self.paper.order(request.client_order_id)
        if existing is None:  # a rejection by the exchange (OrderRejected) is the answer: nothing is mirrored
            self.sent[request.client_order_id] = await self._send(request)
        order = await self.paper.place(request)
        sent = self.sent.get(request.client_order_id)
        if sent is None:
            return order
        if order.status is OrderStatus.REJECTED:
            # The ledger refused what the exchange took (paper cash, the venue's rules at our prices):
            # take it back from the sandbox where it still rests, and say what became of it.
            outcome = await self._withdraw(request.symbol, sent)
            return order.model_copy(update={"reason": f"{order.reason}; sandbox order {sent.get('id')} {outcome}"})
        if order.status is OrderStatus.PENDING and not order.reason:
            note = f"sandbox order {sent.get('id')} on {self.venue.name} ({sent.get('status') or 'sent'})"
            order = order.model_copy(update={"reason": note})
        return order

    async def _withdraw(self, symbol: str, sent: dict[str, Any]) -> str:
        if sent.get("status") not in (None, "open"):
            return f"was already {sent.get('status')} there"
        exchange = self.venue.exchange
        try:
            await self.venue.guard.call("cancel_order", lambda: exchange.cancel_order(sent["id"], symbol))
        except VenueError as exc:
            log.warning("%s: sandbox order %s not cancelled: %s", self.venue.name, sent.get("id"), exc)
            return f"could not be cancelled there: {exc}"
        return "was cancelled there"

    async def cancel(self, client_order_id: str) -> Order:
        order = await self.paper.order(client_order_id)
        if order is not None and order.parent is None and order.status.is_open:
            client_id = exchange_client_id(self.venue.name, client_order_id)
            found = await self._lookup(order.symbol, client_id)
            if found is not None and found.get("status") == "open":
                exchange = self.venue.exchange
                await self.venue.guard.call(
                    "cancel_order",
                    lambda: exchange.cancel_order(found["id"], order.symbol, {"clientOrderId": client_id}),
                )
        return await self.paper.cancel(client_order_id)

    async def amend(
        self,
        client_order_id: str,
        *,
        stop_price: Decimal | None = None,
        trail: Decimal | None = None,
        limit_price: Decimal | None = None,
    ) -> Order:
        return await self.paper.amend(client_order_id, stop_price=stop_price, trail=trail, limit_price=limit_price)

    async def process(self) -> list[Fill]:
        return await self.paper.process()

    async def orders(self, status: OrderStatus | None = None) -> list[Order]:
        return await self.paper.orders(status)

    async def order(self, client_order_id: str) -> Order | None:
        return await self.paper.order(client_order_id)

    async def fills(self, client_order_id: str | None = None) -> list[Fill]:
        return await self.paper.fills(client_order_id)

    async def positions(self, *, include_closed: bool = False) -> list[Position]:
        return await self.paper.positions(include_closed=include_closed)

    async def account(self, currency: str | None = None) -> Account:
        return await self.paper.account(currency)
