"""PaperBroker: simulated execution for every venue without a paper API of its own.

How an order fills (documented for the user in the README):

- ``fill_at="next_open"`` (default, backtest-honest), on the venue's finest bars: a market order
  fills at the open of the first bar inside a trading session that opened at most
  ``order_latency`` before it was placed (a decision made on a bar's close fills at the open of the
  bar that began then, not one bar later), moved against the trader by ``slippage_bps`` and
  rounded to the tick against the trader; outside its collar it is cancelled instead. A limit
  order fills on the first bar after its placement that trades through its price: at the open if
  the open is already better (taker, with slippage, never past the limit), else at the limit
  (maker). A stop order fills at its stop on the bar that reaches it, or at the open when the bar
  gaps through it, with slippage either way. Fills are whole: no partial fills.
- Brackets: exits placed with an entry (``parent``) rest until it fills, then see every price from
  its fill on; orders of one symbol are matched bar by bar together, the stop before a target on a
  bar that touches both, and each exit fill clips its siblings to what is left. An exit never opens
  or flips a position. T+1 holds an A-share exit on the entry's day; a stop crossed then fills at
  the next session's open.
- ``fill_at="quote"`` (live paper trading): a market order fills at once at the latest price, plus
  slippage; an equity order placed outside its session waits for the session to open.
- Shorts: a sell beyond what is held opens (or adds to) a short when the instrument allows it
  (``Instrument.short``: crypto perpetuals, US equities on the margin account) and nothing long is
  held; otherwise it is refused with the reason. The proceeds less fees are credited to cash, the
  position's quantity goes negative and its ``avg_cost`` is the average sale price net of fees. While
  a short is open its current value x (1 + initial margin) of cash is reserved (so the margin comes
  from cash that is not its own proceeds); opening one needs that margin, value x initial margin, in
  available cash. A buy covers it (never beyond it into a long) and realises
  (avg_cost - price) x qty - fees. While a short is open its borrow fee (stocks, each day at 00:00
  UTC) is charged to cash and to its realized P&L.
- Funding (perpetuals, ``Instrument.funding``): at each 8-hour mark a position held across it, long
  or short, pays or receives value x rate (positive: longs pay shorts; negative: shorts pay longs),
  to cash and to its realized P&L; a credit is a negative charge.
- Futures (``Instrument.margin_rate`` set: SHFE main contracts): quantities are contracts; value,
  P&L and value-based fees are price x quantity x ``multiplier``. A position is margined, not
  paid for: opening or adding moves only the fee out of cash, closing moves the realised P&L
  (entry to exit x quantity x multiplier) and the fee; while open, value x ``margin_rate`` of cash
  is reserved at the last price and the unrealised P&L counts in equity. ``avg_cost`` is the
  average entry price (fees are paid as they fall). Longs and shorts alike, no T+1; a sell
  beyond a long (or a buy beyond a short) is refused, as for other instruments.
- A-shares: no fill outside the daily price-limit band around the previous close; a bar locked at
  the limit against the order (a buy at a locked limit-up) does not fill it. Equity orders are day
  orders: unfilled at the session close, they are cancelled with the reason. Crypto orders stay
  open until filled or cancelled.

Every check that can refuse an order runs at placement, and the money ones run again at the fill,
because the price may have gapped. A refused order is stored with status ``rejected`` and its
reason, so the same ``client_order_id`` sent again returns the same answer and places nothing.
State lives in a ``PaperLedger`` (the application passes the database-backed one from
``storage``), so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, DecimalTuple
from typing import NamedTuple, Protocol

from venues import calendars
from venues.base import MarketData, bar_arrays, last_trades
from venues.clock import Clock, epoch_us, from_epoch_us
from venues.costs import fees, round_to_tick, slipped_price
from venues.errors import VenueError
from venues.metrics import metrics
from venues.models import (
    ZERO,
    Account,
    AssetClass,
    Fill,
    Instrument,
    Liquidity,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    built,
    with_changes,
)
from venues.paper_config import FillAt, PaperBrokerConfig
from venues.timeframes import BarArrays, parse_timeframe

_ONE_MICROSECOND = timedelta(microseconds=1)
_FILL_ATTEMPTS = 5


class StaleOrderError(VenueError):
    """The order, or the position or cash it fills against, changed under us (another process
    filled or cancelled first)."""


class PaperLedger(Protocol):
    """Durable state of paper accounts. Each method is one transaction."""

    def order(self, client_order_id: str) -> Order | None: ...

    def add_order(self, order: Order) -> tuple[Order, bool]:
        """Store a new order; if the client order id exists, return the stored one and False."""
        ...

    def update_order(self, order: Order) -> None: ...

    def update_pending(self, orders: Sequence[Order]) -> None:
        """Store the matching state of orders that are still pending, in one transaction; one that
        another process has filled or cancelled meanwhile is left as that process stored it."""
        ...

    def orders(self, venue: str, status: OrderStatus | None = None) -> list[Order]: ...

    def fills(self, venue: str, client_order_id: str | None = None) -> list[Fill]: ...

    def position(self, venue: str, symbol: str) -> Position | None: ...

    def positions(self, venue: str) -> list[Position]: ...

    def cash(self, venue: str, currency: str) -> Decimal: ...

    def fund(self, venue: str, currency: str, amount: Decimal, ts: datetime) -> None:
        """The initial deposit, once: calling it again changes nothing."""
        ...

    def deposited(self, venue: str, currency: str) -> Decimal:
        """What the ledger records as deposited in ``currency`` (what P&L is measured from)."""
        ...

    def record_fill(
        self, order: Order, fill: Fill, position: Position, currency: str, *, trade_amount: Decimal | None = None
    ) -> None:
        """Order update, fill, position and cash entries, all or nothing. Raises StaleOrderError,
        writing nothing, when the order is no longer pending, when the stored position is not
        ``position`` before this fill, or when a buy would take the cash below zero: another
        process got there first. ``trade_amount``: the cash the trade moves besides its fee
        (a margined futures fill: zero to open, the realised P&L to close); None = the fill's
        value, paid on a buy and received on a sell."""
        ...

    def bought_on(self, venue: str, symbol: str, trade_day: str) -> Decimal: ...

    def children(self, parent: str) -> list[Order]:
        """The bracket children of the order with client order id ``parent``, oldest first."""
        ...

    def last_carry(self, venue: str, symbol: str, currency: str) -> datetime | None:
        """When the last funding or borrow charge of ``symbol``'s position was accrued, if ever."""
        ...

    def charge_carry(self, venue: str, symbol: str, currency: str, amount: Decimal, *, kind: str, at: datetime) -> bool:
        """Charge one funding or borrow accrual (``amount`` > 0 is paid, < 0 received) of the position at ``at``:
        a cash entry and the position's realized P&L, together. False, writing nothing, when that
        accrual is already recorded (another process charged it first)."""
        ...


class _BarView(NamedTuple):
    """One bar with Decimal prices, as matching reads it (a tuple: made for every bar matched)."""

    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    close_time: datetime


_new_tuple = tuple.__new__


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _digits(value: Decimal | None) -> DecimalTuple | None:
    return None if value is None else value.as_tuple()


def _no_price(symbol: str) -> Decimal | None:
    return None


def _next_mark(after: datetime, every: timedelta) -> datetime:
    """The first moment after ``after`` on the UTC grid of ``every`` (8 h: 00:00, 08:00, 16:00)."""
    steps = (after - _EPOCH) // every + 1
    return _EPOCH + steps * every


def _on_tick(price: Decimal | None, tick: Decimal) -> str:
    """A price as the venue quotes it: 428.20, not 428.2 (stored decimals lose trailing zeros)."""
    return "-" if price is None else str(price.quantize(tick) if tick < 1 else price)


class PaperBroker:
    def __init__(
        self,
        venue: str,
        market: MarketData,
        clock: Clock,
        ledger: PaperLedger,
        config: PaperBrokerConfig | None = None,
    ) -> None:
        self.venue = venue
        self._market = market
        self._clock = clock
        self._ledger = ledger
        self.config = config or PaperBrokerConfig()
        self._funded = False
        self._lock = asyncio.Lock()
        self._filled_entries: dict[str, Order] = {}  # a filled order never changes: read once
        self._processed_at: datetime | None = None
        # Per symbol, bars ending with the last final bar at one moment (a matching walk's, or the
        # last alone): the bars a moment shows are fixed (the premise of _processed_at), and
        # placement, matching and quote fills ask for the last one several times per moment.
        self._latest: dict[str, tuple[datetime, BarArrays]] = {}
        # The last account computed, with what it was computed from: (moment, currency, ledger
        # version, config). Only on a ledger that counts its changes (RunPaperLedger.version).
        self._account_key: tuple[datetime, str, int, PaperBrokerConfig] | None = None
        self._account_value: Account | None = None
        # The last prices read, with their moment and symbols: an account recomputed at the same
        # moment (after an order was placed) marks the same positions at the same prices.
        self._quotes: tuple[datetime, list[str], Mapping[str, Decimal]] | None = None
        # The last buy cost estimated: (moment, qty, limit, last price, slippage), instrument, cost.
        self._last_cost: tuple[tuple[object, ...], Instrument, Decimal] | None = None

    def use_ledger(self, ledger: PaperLedger) -> None:
        """Keep this broker's state in ``ledger`` from now on (a backtest's in-memory run ledger,
        installed before its first order: nothing is carried over from the previous one)."""
        self._ledger = ledger
        self._funded = False
        self._filled_entries.clear()
        self._processed_at = None
        self._latest.clear()
        self._account_key = self._account_value = None
        self._quotes = None
        self._last_cost = None

    # --- public API (the Broker protocol) ---
    # One lock per broker: matching awaits market data between reading an order and writing its
    # fill, so two coroutines of this process must not interleave there. Across processes the
    # ledger's row checks (and the unique client order id) keep it single.

    async def place(self, request: OrderRequest) -> Order:
        async with self._lock:
            return await self._place(request)

    async def cancel(self, client_order_id: str) -> Order:
        async with self._lock:
            order = self._ledger.order(client_order_id)
            if order is None or order.venue != self.venue:
                raise VenueError(f"no order with client order id {client_order_id!r} on {self.venue}")
            await self._process()
            order = self._ledger.order(client_order_id) or order
            if not order.status.is_open:
                raise VenueError(
                    f"order {client_order_id} is already {order.status.value}; only pending orders can be cancelled"
                )
            order = with_changes(
                order, {"status": OrderStatus.CANCELLED, "reason": "cancelled by request", "updated_at": self._now()}
            )
            self._ledger.update_order(order)
            return order

    async def amend(
        self,
        client_order_id: str,
        *,
        stop_price: Decimal | None = None,
        trail: Decimal | None = None,
        limit_price: Decimal | None = None,
    ) -> Order:
        """Move a resting stop (never past the market: a sell stop stays below the last price) and
        optionally make it trail, or move a resting limit (a take-profit). Raises VenueError for an
        unknown or closed order, or a price its type does not have."""
        async with self._lock:
            await self._process()
            order = self._ledger.order(client_order_id)
            if order is None or order.venue != self.venue:
                raise VenueError(f"no order with client order id {client_order_id!r} on {self.venue}")
            amended = amended_order(order, stop_price=stop_price, trail=trail, limit_price=limit_price, at=self._now())
            self._ledger.update_order(amended)
            return amended

    async def orders(self, status: OrderStatus | None = None) -> list[Order]:
        await self.process()
        return self._ledger.orders(self.venue, status)

    async def order(self, client_order_id: str) -> Order | None:
        await self.process()
        order = self._ledger.order(client_order_id)
        return order if order is not None and order.venue == self.venue else None

    async def fills(self, client_order_id: str | None = None) -> list[Fill]:
        await self.process()
        return self._ledger.fills(self.venue, client_order_id)

    async def positions(self, *, include_closed: bool = False) -> list[Position]:
        await self.process()
        return [p for p in self._ledger.positions(self.venue) if include_closed or p.qty != 0]

    async def account(self, currency: str | None = None) -> Account:
        async with self._lock:
            await self._process()
            return await self._account(currency or self._primary_currency())

    async def process(self) -> list[Fill]:
        """Fill or expire pending orders against the bars the clock has reached. Called by every
        read, and by the scheduler on each tick so stops and exits are current."""
        async with self._lock:
            return await self._process()

    # --- placement ---

    async def _place(self, request: OrderRequest) -> Order:
        existing = self._ledger.order(request.client_order_id)
        if existing is not None:
            self._same_or_conflict(existing, request)
            # Bring it up to the clock like every read does: a re-sent order that has filled since
            # must come back filled, not as the pending it was stored as.
            await self._process()
            return self._ledger.order(request.client_order_id) or existing
        instrument = await self._market.instrument(request.symbol)
        self._fund_once()
        await self._process()  # earlier orders fill first, so cash and positions are current
        now = self._clock.now()
        reason = await self._refusal(request, instrument, now)
        order = Order.from_request(
            request,
            self.venue,
            at=now,
            status=OrderStatus.REJECTED if reason else OrderStatus.PENDING,
            reason=reason or "",
            symbol=instrument.symbol,
        )
        stored, created = self._ledger.add_order(order)
        if not created:  # another process stored the same id between our read and our write
            return self._same_or_conflict(stored, request)
        metrics().observe_order(self.venue, stored.status.value)
        # A bracket exit of an entry still pending cannot fill yet: the entry's own matching
        # activates it, so no matching pass is spent on it here.
        entry = self._entry(stored.parent) if stored.parent is not None else None
        waits_for_entry = entry is not None and entry.status is OrderStatus.PENDING
        if stored.status is OrderStatus.PENDING and not waits_for_entry:
            symbol = instrument.symbol
            pending = []
            for o in self._ledger.orders(self.venue, OrderStatus.PENDING):
                if o.symbol == symbol:
                    pending.append(o)
            await self._match_symbols({symbol: pending})
        return self._ledger.order(stored.client_order_id) or stored

    async def _process(self) -> list[Fill]:
        # Fills depend only on the bars the clock has reached: at a moment already processed there
        # is nothing new (an order placed since is matched by its own placement).
        now = self._clock.now()
        if now == self._processed_at:
            return []
        by_symbol: dict[str, list[Order]] = {}
        for order in self._ledger.orders(self.venue, OrderStatus.PENDING):
            by_symbol.setdefault(order.symbol, []).append(order)
        new_fills = await self._match_symbols(by_symbol)
        await self._accrue_carry(now)
        self._processed_at = now
        return new_fills

    async def _accrue_carry(self, now: datetime) -> None:
        """What holding a position costs or earns, as it accrues: a perpetual's funding at each
        8-hour mark (00:00, 08:00, 16:00 UTC, as Binance and OKX settle it), paid by longs to
        shorts when the rate is positive and by shorts to longs when it is negative (a credit is a
        negative charge), and a short stock's borrow fee for each day at 00:00 UTC; on the
        position's value at the last close before that moment. The rates are the instrument's
        (``FundingTerms``, ``ShortTerms``: assumptions where no live rate is known)."""
        for position in self._ledger.positions(self.venue):
            if position.qty == 0 or position.opened_at is None:
                continue
            instrument = await self._market.instrument(position.symbol)
            funding = instrument.funding
            if funding is not None and funding.rate_8h != 0:
                # Signed: a long pays qty x price x rate, a short (negative qty) the opposite.
                await self._accrue(instrument, position, now, "funding", timedelta(hours=8), funding.rate_8h)
            terms = instrument.short
            if position.qty < 0 and terms is not None and terms.borrow_rate_year > 0:
                # Borrow is the short's alone; as a charge on a negative qty it is -rate.
                daily = -terms.borrow_rate_year / 365
                await self._accrue(instrument, position, now, "borrow", timedelta(days=1), daily)

    async def _accrue(
        self, instrument: Instrument, position: Position, now: datetime, kind: str, every: timedelta, rate: Decimal
    ) -> None:
        """Charge ``position.qty`` x the close before each mark x ``rate`` for every mark in
        (last charge or opening, now]; a negative amount is a credit."""
        assert position.opened_at is not None
        since = max(
            position.opened_at,
            self._ledger.last_carry(self.venue, position.symbol, instrument.currency) or position.opened_at,
        )
        mark = _next_mark(since, every)
        while mark <= now:
            # The last bar closed by the mark (its open is before it): the price the charge is on.
            bars = await self._bars(instrument, end=mark - _ONE_MICROSECOND, limit=1)
            if len(bars):
                value = position.qty * _dec(bars.close[-1]) * instrument.multiplier
                amount = (value * rate).quantize(Decimal("0.00000001"))
                if amount != 0:
                    self._ledger.charge_carry(
                        self.venue, position.symbol, instrument.currency, amount, kind=kind, at=mark
                    )
            mark += every

    def _now(self) -> datetime:
        return self._clock.now()

    async def _account(self, currency: str) -> Account:
        self._fund_once()
        # An account is the ledger's state at the moment's quotes: on a ledger that counts its
        # changes, one computed at this moment from the same state is still the answer (a fire
        # asks for it in its tick, again to check a buy, and once more for the fires it skips).
        version = getattr(self._ledger, "version", None)
        key = (self._clock.now(), currency, version, self.config) if isinstance(version, int) else None
        if key is not None and key == self._account_key and self._account_value is not None:
            return self._account_value
        account = await self._compute_account(currency)
        if key is not None:
            self._account_key, self._account_value = key, account
        return account

    async def _compute_account(self, currency: str) -> Account:
        # Loops, not comprehensions: each of those is a call of its own (on Python 3.11), and an
        # account is computed at every fire.
        cash = self._ledger.cash(self.venue, currency)
        pending = self._ledger.orders(self.venue, OrderStatus.PENDING)
        held_all: list[Position] = []
        for p in self._ledger.positions(self.venue):
            if p.qty != 0:
                held_all.append(p)
        buys: list[Order] = []
        short_entries: list[Order] = []
        if pending:
            long_held = {p.symbol for p in held_all if p.qty > 0}
            # A bracket's buy exits cover a short: what they pay is already reserved by the short itself.
            buys = [o for o in pending if o.side is Side.BUY and o.parent is None]
            short_entries = [
                o for o in pending if o.side is Side.SELL and o.parent is None and o.symbol not in long_held
            ]
            symbols = {o.symbol for o in (*buys, *short_entries)} | {p.symbol for p in held_all}
        else:
            symbols = set()
            for p in held_all:
                symbols.add(p.symbol)
        instruments: dict[str, Instrument] = {}
        mine: list[str] = []
        for symbol in symbols:
            instruments[symbol] = instrument = await self._market.instrument(symbol)
            if instrument.currency == currency:
                mine.append(symbol)
        mine.sort()
        # One batched price read for every symbol involved, not a bars call per position.
        last = (await self._last_trades(mine)).get if mine else _no_price

        reserved = ZERO
        for o in buys:
            if instruments[o.symbol].currency == currency:
                reserved = reserved + self._cost_at(o.qty, o.limit_price, instruments[o.symbol], last(o.symbol))
        held: list[Position] = []
        for p in held_all:
            if instruments[p.symbol].currency == currency:
                held.append(p)
        value = ZERO
        for p in held:
            instrument, mark = instruments[p.symbol], last(p.symbol) or p.avg_cost
            value += position_value(p, instrument, mark)
            if instrument.margin_rate is not None:  # margined: the margin held
                reserved += abs(p.qty) * mark * instrument.multiplier * instrument.margin_rate
                continue
            if p.qty < 0:
                reserved += -p.qty * mark * (1 + _initial_margin(instrument))
        for o in short_entries:
            instrument = instruments[o.symbol]
            if instrument.currency == currency and instrument.short is not None:
                price = o.limit_price or last(o.symbol) or ZERO
                reserved += o.qty * price * instrument.multiplier * instrument.short.initial_margin
        unfunded = ""
        if self.config.starting_cash.get(currency, ZERO) <= 0 and cash <= 0 and not held and reserved <= 0:
            hint = self.config.unfunded_hint.replace("{currency}", currency)
            unfunded = f"no paper cash in {currency} on {self.venue}" + (f": {hint}" if hint else "")
        deposited = self._ledger.deposited(self.venue, currency)
        return _account_of(self.venue, currency, cash, reserved, value, tuple(held), unfunded, deposited)

    async def _last_trades(self, symbols: list[str]) -> Mapping[str, Decimal]:
        """The last traded price of each symbol with a quote (``market.snapshot(symbols)``'s
        ``last``, as Decimal), read once per moment (the prices a moment shows are fixed, as its
        bars are)."""
        now = self._clock.now()
        known = self._quotes
        if known is not None and known[0] == now and known[1] == symbols:
            return known[2]
        prices: dict[str, Decimal] = {}
        for symbol, price in (await last_trades(self._market, symbols)).items():
            prices[symbol] = _dec(price)
        self._quotes = (now, symbols, prices)
        return prices

    # --- placement checks ---

    def _same_or_conflict(self, existing: Order, request: OrderRequest) -> Order:
        if existing.venue == self.venue and existing.same_request(request):
            return existing
        raise VenueError(
            f"client order id {request.client_order_id!r} is already used by another order "
            f"({existing.side.value} {existing.qty} {existing.symbol} on {existing.venue}); use a new id"
        )

    async def _refusal(self, request: OrderRequest, instrument: Instrument, now: datetime) -> str | None:
        qty = request.qty
        symbol = instrument.symbol
        if qty % instrument.qty_step != 0:
            return f"quantity {qty} of {symbol} is not a multiple of its step size {instrument.qty_step}"
        stop, collar_low, collar_high = request.stop_price, request.collar_low, request.collar_high
        if stop is not None or collar_low is not None or collar_high is not None:
            for name, price in (("stop", stop), ("collar", collar_low), ("collar", collar_high)):
                if price is not None and price % instrument.tick_size != 0:
                    return f"{name} price {price} of {symbol} is not a multiple of its tick size {instrument.tick_size}"
        if request.parent is not None:
            return self._child_refusal(request, instrument)
        position = self._ledger.position(self.venue, symbol)
        held = position.qty if position else ZERO
        if instrument.lot_size > instrument.qty_step and qty % instrument.lot_size != 0:
            if request.side is Side.BUY:
                lot = instrument.lot_size
                return f"{symbol} is bought in lots of {lot}: {qty} is not a multiple of {lot}"
            if qty != held:
                return (
                    f"{symbol} is sold in lots of {instrument.lot_size}, or an odd remainder all at once: "
                    f"{qty} is neither (you hold {held})"
                )
        # An A-share odd remainder is sold whole (the lot rule above); nothing else goes below the minimum.
        odd_remainder = instrument.lot_size > instrument.qty_step and request.side is Side.SELL and qty == held
        if qty < instrument.min_qty and not odd_remainder:
            return _below_min_qty(qty, instrument)
        if request.limit_price is not None:
            limit = request.limit_price
            if limit % instrument.tick_size != 0:
                return f"limit price {limit} of {symbol} is not a multiple of its tick size {instrument.tick_size}"
            band = await self._price_band(instrument, calendars.trading_day(instrument.calendar, now))
            if band and not (band[0] <= limit <= band[1]):
                return f"limit price {limit} is outside today's price-limit band {band[0]}-{band[1]} for {symbol}"
        reference = request.limit_price or await self._last_price(instrument)
        if reference is None:
            return f"no price for {symbol} yet at {now.isoformat()}: nothing has traded"
        notional = qty * reference * instrument.multiplier
        if notional < instrument.min_notional:
            return (
                f"order value {notional:.2f} {instrument.currency} is below the minimum of "
                f"{instrument.min_notional} {instrument.currency} for {symbol}"
            )
        if request.side is Side.SELL:
            refusal = await self._sell_refusal(instrument, qty, held, now)
            if refusal is None or held > 0:
                return refusal  # a long is reduced or closed, never flipped into a short
            why_not = await self._short_refusal(instrument, qty, reference)
            if why_not is None:
                return None
            return f"{refusal}; {why_not}" if instrument.short is None else why_not
        if held < 0:
            # A buy while short covers it; its cash is reserved by the short.
            if qty > -held:
                return f"buying {qty} {symbol} would turn the short of {-held} into a long: cover {-held} first"
            return None
        # Without a limit, the reference above is the last price the estimate is made at.
        need = self._cost_at(qty, request.limit_price, instrument, None if request.limit_price else reference)
        account = await self._account(instrument.currency)
        available = account.available_cash
        if need > available and account.unfunded:
            return f"{account.unfunded} (buying {qty} {symbol} needs about {need:.2f} {instrument.currency})"
        if need > available:
            return (
                f"insufficient cash: buying {qty} {symbol} needs about {need:.2f} {instrument.currency} "
                f"with costs, available {available:.2f} {instrument.currency}"
            )
        return None

    def _child_refusal(self, request: OrderRequest, instrument: Instrument) -> str | None:
        """A bracket child is judged against its entry: the position it will sell does not exist
        until the entry fills, and the child is clipped to it then."""
        parent = self._ledger.order(request.parent or "")
        if parent is None or parent.venue != self.venue:
            return f"no entry order {request.parent!r} on {self.venue} to attach this exit to"
        if parent.symbol != instrument.symbol or parent.side is request.side:
            verb = "sell" if parent.side is Side.BUY else "buy"
            return f"an exit of {parent.client_order_id} must {verb} {parent.symbol}"
        if parent.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
            return f"its entry {parent.client_order_id} is {parent.status.value}"
        if request.qty > parent.qty:
            return f"an exit of {request.qty} is more than its entry's {parent.qty} {parent.symbol}"
        if request.qty < instrument.min_qty:
            return _below_min_qty(request.qty, instrument)
        price = request.limit_price or request.stop_price
        if price is not None and request.qty * price < instrument.min_notional:
            return (
                f"order value {request.qty * price:.2f} {instrument.currency} at {price} is below the minimum of "
                f"{instrument.min_notional} {instrument.currency} for {instrument.symbol}"
            )
        return None

    async def _sell_refusal(self, instrument: Instrument, qty: Decimal, held: Decimal, now: datetime) -> str | None:
        symbol = instrument.symbol
        # A bracket's exits are contingent: they give way (clipped, or refused at the fill as having
        # nothing to close) to a sell that closes the position first, so they reserve nothing here.
        pending = ZERO
        for o in self._ledger.orders(self.venue, OrderStatus.PENDING):
            if o.symbol == symbol and o.side is Side.SELL and o.parent is None:
                pending = pending + o.qty
        locked = ZERO
        if instrument.settlement_days > 0:
            locked = self._ledger.bought_on(
                self.venue, symbol, calendars.trading_day(instrument.calendar, now).isoformat()
            )
        sellable = held - locked - pending
        if qty <= sellable:
            return None
        detail = f"you hold {held} {symbol}"
        if locked:
            detail += f", {locked} bought today cannot be sold before the next session (T+1)"
        if pending:
            detail += f", {pending} already in pending sell orders"
        return f"insufficient position: selling {qty} {symbol} but {detail}; sellable now: {max(sellable, ZERO)}"

    async def _short_refusal(self, instrument: Instrument, qty: Decimal, reference: Decimal) -> str | None:
        """Why a sell-to-open of ``qty`` at about ``reference`` is refused: the instrument cannot be
        sold short, or the available cash does not hold its margin (value x initial margin + fees)."""
        why = instrument.short_refusal()
        if why is not None or instrument.short is None:
            return why
        price = slipped_price(instrument, Side.SELL, reference, self.config.slippage_bps)
        day = calendars.trading_day(instrument.calendar, self._clock.now())
        need = qty * price * instrument.multiplier * instrument.short.initial_margin + fees(
            instrument, Side.SELL, qty, price, on=day
        )
        account = await self._account(instrument.currency)
        available = account.available_cash
        if need <= available:
            return None
        if account.unfunded:
            return f"{account.unfunded} (selling {qty} {instrument.symbol} short needs about {need:.2f})"
        return (
            f"insufficient margin: selling {qty} {instrument.symbol} short needs about {need:.2f} "
            f"{instrument.currency} ({instrument.short.initial_margin:.0%} of its value, with fees), "
            f"available {available:.2f} {instrument.currency}"
        )

    def _cost_at(self, qty: Decimal, limit: Decimal | None, instrument: Instrument, last: Decimal | None) -> Decimal:
        """What a buy will cost with fees: at its limit, or at the last price plus slippage."""
        # A buy's check and the account recomputed after its placement estimate the same order
        # at the same moment and price: the last estimate is kept.
        # Decimals are compared by their digits and exponent, not their value: 1.0 and 1 are equal
        # but give costs written differently.
        now = self._clock.now()
        key = (now, _digits(qty), _digits(limit), _digits(last), _digits(self.config.slippage_bps))
        known = self._last_cost
        if known is not None and known[1] is instrument and known[0] == key:
            return known[2]
        cost = self._estimate_cost(qty, limit, instrument, last, now)
        self._last_cost = (key, instrument, cost)
        return cost

    def _estimate_cost(
        self, qty: Decimal, limit: Decimal | None, instrument: Instrument, last: Decimal | None, now: datetime
    ) -> Decimal:
        price = limit or last or ZERO
        if limit is None:
            price = slipped_price(instrument, Side.BUY, price, self.config.slippage_bps)
        # Charged at the rates of the session the order would fill in.
        day = calendars.trading_day(instrument.calendar, now)
        # A margined contract holds its margin, not its value.
        share = instrument.margin_rate if instrument.margin_rate is not None else Decimal(1)
        return qty * price * instrument.multiplier * share + fees(instrument, Side.BUY, qty, price, on=day)

    # --- matching ---
    # Orders of one symbol are matched bar by bar, all of them on each bar before the next bar:
    # an entry that fills at a bar's open activates its bracket on that same bar, a stop and a
    # target touched by one bar resolve stop first (the path inside a bar is unknown, so the
    # conservative reading), and a fill clips the siblings of its bracket at once.

    def _entry(self, client_order_id: str) -> Order | None:
        """A bracket child's entry order, cached once filled (it cannot change after that)."""
        cached = self._filled_entries.get(client_order_id)
        if cached is not None:
            return cached
        order = self._ledger.order(client_order_id)
        if order is not None and order.status is OrderStatus.FILLED:
            self._filled_entries[client_order_id] = order
        return order

    async def _match_symbols(self, by_symbol: Mapping[str, list[Order]]) -> list[Fill]:
        """Match the pending orders of each symbol; the matching progress of all of them is stored
        in one transaction at the end."""
        fills: list[Fill] = []
        progress: list[Order] = []
        for symbol, orders in by_symbol.items():
            fills.extend(await self._match_symbol(await self._market.instrument(symbol), orders, progress))
        if progress:
            self._ledger.update_pending(progress)
        return fills

    async def _match_symbol(self, instrument: Instrument, orders: list[Order], progress: list[Order]) -> list[Fill]:
        fills: list[Fill] = []
        waiting: list[Order] = []
        for order in orders:
            if self._fills_at_quote(order) and order.parent is None:
                fill = await self._match_quote(order, instrument)
                if fill is not None:
                    fills.append(fill)
            else:
                waiting.append(order)
        if not waiting:
            return fills
        earliest: datetime | None = None  # the first bar open any may fill on, when all are entries
        for order in waiting:
            if order.parent is not None:
                earliest = None
                break
            eligible = self._eligible_from(order)
            if earliest is None or eligible < earliest:
                earliest = eligible
        if earliest is not None and not self._may_have_bar_from(instrument, earliest):
            # Entries only, and no bar they may fill on yet (a market order just placed at a
            # bar's close): no book to build, only day orders to expire.
            self._expire_entries(waiting, instrument)
            return fills
        book = _Book(self, instrument, waiting)
        start = book.earliest_start()
        # With entries only, the book's earliest start is ``earliest``, just found to have bars.
        if start is not None and (start == earliest or self._may_have_bar_from(instrument, start)):
            bars = await self._bars(instrument, start=start)
            if len(bars):  # they run to the last final bar: that one is known for this moment now
                self._latest[instrument.symbol] = (self._clock.now(), bars)
            for bar in self._bar_views(bars):
                fills.extend(await book.match_bar(bar))
                if book.done():
                    break
        progress.extend(book.progress())
        self._expire_entries(book.open_entries(), instrument)
        return fills

    def _expire_entries(self, entries: list[Order], instrument: Instrument) -> None:
        """Cancel the day orders among open ``entries`` whose last session has closed."""
        for order in entries:
            valid_through = self._valid_through(order, instrument)
            if valid_through is not None:
                self._expire_if_session_over(order, instrument.calendar, valid_through)

    async def _match_quote(self, order: Order, instrument: Instrument) -> Fill | None:
        valid_through = self._valid_through(order, instrument)
        now = self._clock.now()
        # An equity quote fill needs the market open on the order's day, like a bar fill: a
        # quote after the close is that session's last price, not one anyone can trade at.
        in_session = valid_through is None or (
            calendars.is_open(instrument.calendar, now)
            and calendars.trading_day(instrument.calendar, now) <= valid_through
        )
        bars = await self._latest_bar(instrument)
        if in_session and len(bars):
            close = _dec(bars.close[-1])
            quote = _BarView(now, close, close, close, close, now)
            fill = await self._try_fill(order, instrument, quote)
            if fill is not None:
                return fill
        if valid_through is not None:
            self._expire_if_session_over(order, instrument.calendar, valid_through)
        return None

    def _eligible_from(self, order: Order) -> datetime:
        """The first bar open an order may fill on. A market order reaching the broker within
        ``order_latency`` of a bar's open fills at that open: the decision was made on the close of
        the bar before, and its order went in as the new bar opened (one bar later would be a
        whole bar of drift the trader never saw). Resting orders see only bars opening after they
        were placed, since the prices inside the bar in progress are unknown."""
        start = order.created_at
        if order.type is OrderType.MARKET:
            start -= self.config.order_latency
        if order.checked_until is not None:
            start = max(start, order.checked_until)
        return start

    def _valid_through(self, order: Order, instrument: Instrument) -> date | None:
        """Last session an equity entry (a day order) may fill in; None for crypto (good till
        cancelled) and for bracket children, which rest until filled, clipped or cancelled.
        With daily bars only, an order placed during a session can first fill at the next open,
        so it lives through the next session: the usual signal-at-close, fill-at-open rule."""
        if instrument.asset_class is AssetClass.CRYPTO or order.parent is not None:
            return None
        day = calendars.trading_day(instrument.calendar, order.created_at)
        if not self._fills_at_quote(order) and parse_timeframe(instrument.timeframe).delta >= timedelta(days=1):
            session = calendars.session(instrument.calendar, day)
            if session is not None and order.created_at >= session.open:
                return calendars.next_session_day(instrument.calendar, day)
        return day

    def _fills_at_quote(self, order: Order) -> bool:
        return self.config.fill_at is FillAt.QUOTE and order.type is OrderType.MARKET

    def _expire_if_session_over(self, order: Order, calendar: str, day: date) -> None:
        session = calendars.session(calendar, day)
        now = self._clock.now()
        if session is None or now < session.close:
            return
        order = self._ledger.order(order.client_order_id) or order
        if not order.status.is_open:
            return
        why = order.reason or "no bar in the session traded at an acceptable price"
        expired = with_changes(
            order,
            {
                "status": OrderStatus.CANCELLED,
                "reason": f"day order expired unfilled at the {day.isoformat()} close: {why}",
                "updated_at": now,
            },
        )
        self._update_quietly(expired)
        self._close_children(expired)

    async def _bars(
        self,
        instrument: Instrument,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> BarArrays:
        """The instrument's finest final bars (``MarketData.bars``) as plain arrays: matching
        reads them at every fire, where a DataFrame costs more than the check itself."""
        symbol, timeframe = instrument.symbol, instrument.timeframe
        return await bar_arrays(self._market, symbol, timeframe, start=start, end=end, limit=limit)

    @staticmethod
    def _bar_views(bars: BarArrays) -> Iterator[_BarView]:
        """The bars one by one, in time order, with Decimal prices, each made when it is reached
        (matching usually stops at the first)."""
        open_us, close_us, opens, highs, lows, closes = (
            bars.open_us,
            bars.close_us,
            bars.open,
            bars.high,
            bars.low,
            bars.close,
        )
        # ``item``: the Python number itself, not a numpy scalar converted; the tuple made directly.
        for i in range(len(bars)):
            yield _new_tuple(
                _BarView,
                (
                    from_epoch_us(open_us.item(i)),
                    _dec(opens.item(i)),
                    _dec(highs.item(i)),
                    _dec(lows.item(i)),
                    _dec(closes.item(i)),
                    from_epoch_us(close_us.item(i)),
                ),
            )

    async def _try_fill(
        self,
        order: Order,
        instrument: Instrument,
        bar: _BarView,
        priced: tuple[Decimal | None, Liquidity, str] | None = None,
    ) -> Fill | None:
        """Fill ``order`` on ``bar`` if it trades there; ``priced``: its ``_execution_price`` on
        that bar when the caller has it already."""
        price, liquidity, how = priced or self._execution_price(order, instrument, bar)
        if price is None:
            return None
        band = None
        if instrument.price_limit_pct is not None:
            band = await self._price_band(instrument, calendars.trading_day(instrument.calendar, bar.ts))
        if band is not None:
            low, high = band
            locked_against = (order.side is Side.BUY and bar.low >= high) or (
                order.side is Side.SELL and bar.high <= low
            )
            if locked_against:
                self._note(order, f"locked at limit {'up' if order.side is Side.BUY else 'down'}")
                return None
            price = min(max(price, low), high)
        floor, ceiling = order.collar_low, order.collar_high
        if (floor is not None and price < floor) or (ceiling is not None and price > ceiling):
            self._cancel(
                order,
                f"drift guard: it would fill at {price} at the {bar.ts.isoformat()} open, outside "
                f"{_on_tick(floor, instrument.tick_size)}-{_on_tick(ceiling, instrument.tick_size)}, "
                "the drift limit around the signal's entry",
            )
            return None
        return self._fill(order, instrument, price, liquidity, bar.ts, how)

    def _execution_price(
        self, order: Order, instrument: Instrument, bar: _BarView
    ) -> tuple[Decimal | None, Liquidity, str]:
        """Price, liquidity and how it happened, for ``order`` on ``bar``; None when it does not fill.
        Market: the open plus slippage. Limit: the limit, or the open when it opened better. Stop:
        the stop plus slippage, or the open plus slippage when the bar gapped through it."""
        slip = self.config.slippage_bps
        buy = order.side is Side.BUY
        tick = instrument.tick_size
        if order.type is OrderType.MARKET or order.triggered_at is not None:
            how = f"filled at the open {bar.open}"
            if order.triggered_at is not None:
                how = f"stop {_on_tick(order.stop_price, tick)} triggered earlier: {how}"
            return slipped_price(instrument, order.side, bar.open, slip), Liquidity.TAKER, how
        if order.type is OrderType.STOP:
            stop = order.stop_price
            assert stop is not None  # OrderRequest guarantees it for stop orders
            if (bar.open >= stop) if buy else (bar.open <= stop):
                how = f"gapped through the stop {_on_tick(stop, tick)}: filled at the open {bar.open}"
                return slipped_price(instrument, order.side, bar.open, slip), Liquidity.TAKER, how
            if (bar.high >= stop) if buy else (bar.low <= stop):
                extreme = f"high {bar.high}" if buy else f"low {bar.low}"
                return (
                    slipped_price(instrument, order.side, stop, slip),
                    Liquidity.TAKER,
                    f"stop {_on_tick(stop, tick)} hit ({extreme})",
                )
            return None, Liquidity.TAKER, ""
        limit = order.limit_price
        assert limit is not None  # OrderRequest guarantees it for limit orders
        if buy:
            if bar.open <= limit:
                price = min(slipped_price(instrument, Side.BUY, bar.open, slip), limit)
                how = f"opened at {bar.open}, below the limit {_on_tick(limit, tick)}: filled at {price}"
                return price, Liquidity.TAKER, how
            return (
                (limit, Liquidity.MAKER, f"limit {_on_tick(limit, tick)} reached (low {bar.low})")
                if bar.low <= limit
                else (None, Liquidity.MAKER, "")
            )
        if bar.open >= limit:
            price = max(slipped_price(instrument, Side.SELL, bar.open, slip), limit)
            how = f"opened at {bar.open}, above the limit {_on_tick(limit, tick)}: filled at {price}"
            return price, Liquidity.TAKER, how
        return (
            (limit, Liquidity.MAKER, f"limit {_on_tick(limit, tick)} reached (high {bar.high})")
            if bar.high >= limit
            else (None, Liquidity.MAKER, "")
        )

    def _cancel(self, order: Order, reason: str) -> None:
        cancelled = with_changes(order, {"status": OrderStatus.CANCELLED, "reason": reason, "updated_at": self._now()})
        self._update_quietly(cancelled)
        self._close_children(cancelled)

    def _close_children(self, parent: Order) -> None:
        """An entry that ends unfilled takes its bracket with it."""
        for child in self._ledger.children(parent.client_order_id):
            if child.status.is_open:
                self._update_quietly(
                    with_changes(
                        child,
                        {
                            "status": OrderStatus.CANCELLED,
                            "reason": f"its entry {parent.client_order_id} is {parent.status.value}",
                            "updated_at": self._now(),
                        },
                    )
                )

    def clip_children(self, parent: Order) -> list[Order]:
        """Clip the open children of a filled entry to what is left of it: what the entry bought less
        what its children sold. A child with nothing left is cancelled (keeping the quantity it was
        for, so /orders still says what it was). Returns the children as stored."""
        children = self._ledger.children(parent.client_order_id)
        sold = sum((c.filled_qty for c in children if c.status is OrderStatus.FILLED), ZERO)
        left = max(parent.filled_qty - sold, ZERO)
        out = []
        for child in children:
            if child.status.is_open and child.qty > left:
                update: dict[str, object] = {"qty": left, "updated_at": self._now()}
                if left <= 0:
                    update = {
                        "status": OrderStatus.CANCELLED,
                        "reason": "nothing left to close: the position is closed",
                        "updated_at": self._now(),
                    }
                child = with_changes(child, update)
                self._update_quietly(child)
            out.append(child)
        return out

    def _note(self, order: Order, reason: str) -> None:
        if order.reason != reason:
            self._update_quietly(with_changes(order, {"reason": reason}))

    def _fill(
        self, order: Order, instrument: Instrument, price: Decimal, liquidity: Liquidity, ts: datetime, how: str = ""
    ) -> Fill | None:
        # The ledger refuses a fill priced from a position or balance that another process has
        # changed since we read it; then it is priced again from what is stored now.
        for _ in range(_FILL_ATTEMPTS):
            try:
                return self._fill_once(order, instrument, price, liquidity, ts, how)
            except StaleOrderError:
                current = self._ledger.order(order.client_order_id)
                if current is None or not current.status.is_open:
                    return None  # another process filled or cancelled it first
        raise StaleOrderError(
            f"order {order.client_order_id} not filled: its position changed under each of {_FILL_ATTEMPTS} attempts"
        )

    def _fill_once(
        self, order: Order, instrument: Instrument, price: Decimal, liquidity: Liquidity, ts: datetime, how: str
    ) -> Fill | None:
        now = self._clock.now()
        trade_day = calendars.trading_day(instrument.calendar, ts)
        fee = (
            fees(instrument, order.side, order.qty, price, liquidity, on=trade_day) if self.config.charge_fees else ZERO
        )
        position = self._ledger.position(self.venue, order.symbol) or Position(venue=self.venue, symbol=order.symbol)
        cash = self._ledger.cash(self.venue, instrument.currency)
        # A bracket child only ever closes what its entry opened: it never opens or flips a position
        # (the entry's position may have been closed by another order meanwhile).
        closable = position.qty if order.side is Side.SELL else -position.qty
        if order.parent is not None and order.qty > closable:
            return self._reject_at_fill(
                order, f"exit of {order.qty} {order.symbol} has nothing to close: the position is {position.qty}"
            )
        trade_amount: Decimal | None = None
        if instrument.margin_rate is not None:
            margined = self._fill_margined(order, instrument, position, price, fee, cash, ts, now)
            if margined is None:
                return None
            position, trade_amount = margined
        elif order.side is Side.BUY and position.qty < 0:
            covered = self._cover(order, instrument, position, price, fee, cash, now)
            if covered is None:
                return None
            position = covered
        elif order.side is Side.SELL and position.qty <= 0 and (position.qty < 0 or order.parent is None):
            shorted = self._sell_short(order, instrument, position, price, fee, cash, ts, now)
            if shorted is None:
                return None
            position = shorted
        elif order.side is Side.BUY:
            cost = order.qty * price + fee
            if cost > cash:
                return self._reject_at_fill(
                    order, f"insufficient cash at fill: {cost:.2f} {instrument.currency} needed, {cash:.2f} held"
                )
            new_qty = position.qty + order.qty
            position = with_changes(
                position,
                {
                    "qty": new_qty,
                    "avg_cost": (position.qty * position.avg_cost + cost) / new_qty,
                    "opened_at": position.opened_at if position.qty > 0 else ts,
                    "updated_at": now,
                },
            )
        else:
            if order.qty > position.qty:
                return self._reject_at_fill(order, f"insufficient position at fill: {position.qty} held")
            realized = (price - position.avg_cost) * order.qty - fee
            remaining = position.qty - order.qty
            position = with_changes(
                position,
                {
                    "qty": remaining,
                    "avg_cost": position.avg_cost if remaining else ZERO,
                    "realized_pnl": position.realized_pnl + realized,
                    "opened_at": position.opened_at if remaining else None,
                    "updated_at": now,
                },
            )
        fill = _fill_of(order, self.venue, price, fee, liquidity, ts, trade_day.isoformat())
        filled = with_changes(
            order,
            {
                "status": OrderStatus.FILLED,
                "filled_qty": order.qty,
                "avg_fill_price": price,
                "fees": fee,
                "reason": how,
                "updated_at": now,
                "filled_at": ts,
                "triggered_at": None,
            },
        )
        if trade_amount is None:
            self._ledger.record_fill(filled, fill, position, instrument.currency)
        else:
            self._ledger.record_fill(filled, fill, position, instrument.currency, trade_amount=trade_amount)
        metrics().observe_fill(self.venue, order.side.value)
        return fill

    def _fill_margined(
        self,
        order: Order,
        instrument: Instrument,
        position: Position,
        price: Decimal,
        fee: Decimal,
        cash: Decimal,
        ts: datetime,
        now: datetime,
    ) -> tuple[Position, Decimal] | None:
        """A futures fill: (the position after it, the cash it moves besides the fee), or None when
        refused. Opening or adding moves no cash but needs the margin (value x margin_rate) and
        the fee in cash; reducing realises (exit - entry) x qty x multiplier (the other way for a
        short). A fill never flips a position through zero."""
        assert instrument.margin_rate is not None
        sign = Decimal(1) if order.side is Side.BUY else Decimal(-1)
        if position.qty * sign >= 0:  # opening or adding, long (buy) or short (sell)
            if order.side is Side.SELL:
                why = instrument.short_refusal()
                if why is not None:
                    self._reject_at_fill(order, f"insufficient position at fill: {position.qty} held; {why}")
                    return None
            need = order.qty * price * instrument.multiplier * instrument.margin_rate + fee
            if need > cash:
                self._reject_at_fill(
                    order, f"insufficient margin at fill: {need:.2f} {instrument.currency} needed, {cash:.2f} held"
                )
                return None
            held = abs(position.qty)
            new_qty = position.qty + sign * order.qty
            return with_changes(
                position,
                {
                    "qty": new_qty,
                    "avg_cost": (held * position.avg_cost + order.qty * price) / (held + order.qty),
                    "realized_pnl": position.realized_pnl - fee,  # paid now: a round trip nets both fees
                    "opened_at": position.opened_at if held else ts,
                    "updated_at": now,
                },
            ), ZERO
        if order.qty > abs(position.qty):
            self._reject_at_fill(
                order, f"a {order.side.value} of {order.qty} would turn the position of {position.qty} around"
            )
            return None
        gross = (price - position.avg_cost) * order.qty * instrument.multiplier * (-sign)
        remaining = position.qty + sign * order.qty
        return with_changes(
            position,
            {
                "qty": remaining,
                "avg_cost": position.avg_cost if remaining else ZERO,
                "realized_pnl": position.realized_pnl + gross - fee,
                "opened_at": position.opened_at if remaining else None,
                "updated_at": now,
            },
        ), gross

    def _sell_short(
        self,
        order: Order,
        instrument: Instrument,
        position: Position,
        price: Decimal,
        fee: Decimal,
        cash: Decimal,
        ts: datetime,
        now: datetime,
    ) -> Position | None:
        """The position after selling ``order.qty`` short (opening or adding), or None when refused.
        Its avg_cost is the average sale price net of fees. The margin is checked again against
        the cash held (placement checked it against the available cash)."""
        why = instrument.short_refusal()
        if why is not None or instrument.short is None:
            self._reject_at_fill(order, f"insufficient position at fill: {position.qty} held; {why}")
            return None
        margin = order.qty * price * instrument.short.initial_margin + fee
        if margin > cash:
            self._reject_at_fill(
                order, f"insufficient margin at fill: {margin:.2f} {instrument.currency} needed, {cash:.2f} held"
            )
            return None
        new_qty = position.qty - order.qty
        proceeds = order.qty * price - fee
        return with_changes(
            position,
            {
                "qty": new_qty,
                "avg_cost": (-position.qty * position.avg_cost + proceeds) / -new_qty,
                "opened_at": position.opened_at if position.qty < 0 else ts,
                "updated_at": now,
            },
        )

    def _cover(
        self,
        order: Order,
        instrument: Instrument,
        position: Position,
        price: Decimal,
        fee: Decimal,
        cash: Decimal,
        now: datetime,
    ) -> Position | None:
        """The position after buying back ``order.qty`` of a short, or None when refused (a buy
        beyond the short, or more than the cash held)."""
        if order.qty > -position.qty:
            self._reject_at_fill(order, f"a buy of {order.qty} would turn the short of {-position.qty} into a long")
            return None
        cost = order.qty * price + fee
        if cost > cash:
            self._reject_at_fill(
                order, f"insufficient cash at fill: {cost:.2f} {instrument.currency} needed, {cash:.2f} held"
            )
            return None
        remaining = position.qty + order.qty
        return with_changes(
            position,
            {
                "qty": remaining,
                "avg_cost": position.avg_cost if remaining else ZERO,
                "realized_pnl": position.realized_pnl + (position.avg_cost - price) * order.qty - fee,
                "opened_at": position.opened_at if remaining else None,
                "updated_at": now,
            },
        )

    def _reject_at_fill(self, order: Order, reason: str) -> Fill | None:
        rejected = with_changes(order, {"status": OrderStatus.REJECTED, "reason": reason, "updated_at": self._now()})
        self._update_quietly(rejected)
        self._close_children(rejected)
        return None

    def _update_quietly(self, order: Order) -> None:
        """Internal status changes lose to whatever another process already decided."""
        with contextlib.suppress(StaleOrderError):
            self._ledger.update_order(order)

    # --- prices ---

    async def _last_price(self, instrument: Instrument) -> Decimal | None:
        bars = await self._latest_bar(instrument)
        return _dec(bars.close[-1]) if len(bars) else None

    async def _latest_bar(self, instrument: Instrument) -> BarArrays:
        """Final bars of the instrument at the clock's now whose last is the last final bar (none
        before the first), read from the market once per moment: only their last is meant."""
        now = self._clock.now()
        known = self._latest.get(instrument.symbol)
        if known is not None and known[0] == now:
            return known[1]
        bars = await self._bars(instrument, limit=1)
        self._latest[instrument.symbol] = (now, bars)
        return bars

    def _may_have_bar_from(self, instrument: Instrument, start: datetime) -> bool:
        """False when no final bar has opened at or after ``start`` yet, by the last final bar
        known for this moment (bars come in open-time order, so the last one tells): a market
        order placed at a bar's close waits for the next bar, and reading the bars since its start
        only to find none costs more than the rest of its placement. True when unsure."""
        known = self._latest.get(instrument.symbol)
        if known is None or known[0] != self._clock.now():
            return True
        last = known[1]
        return bool(len(last)) and int(last.open_us[-1]) >= epoch_us(start)

    async def _price_band(self, instrument: Instrument, day: date) -> tuple[Decimal, Decimal] | None:
        """The daily price-limit band of ``day`` around the previous session's last close."""
        if instrument.price_limit_pct is None:
            return None
        session = calendars.session(instrument.calendar, day)
        if session is None:
            return None
        before = await self._bars(instrument, end=session.open - _ONE_MICROSECOND, limit=1)
        if not len(before):
            return None  # no previous close known: the first day of the data has no band to check
        prev_close = _dec(before.close[-1])
        pct = instrument.price_limit_pct
        tick = instrument.tick_size
        return round_to_tick(prev_close * (1 - pct), tick), round_to_tick(prev_close * (1 + pct), tick)

    # --- accounts ---

    def _primary_currency(self) -> str:
        if not self.config.starting_cash:
            raise VenueError(f"paper venue {self.venue!r} has no starting cash configured")
        return next(iter(self.config.starting_cash))

    def _fund_once(self) -> None:
        if self._funded:
            return
        now = self._clock.now()
        for currency, amount in self.config.starting_cash.items():
            self._ledger.fund(self.venue, currency, amount, now)
        self._funded = True


_FILL_FIELDS = frozenset(Fill.model_fields)
_ACCOUNT_FIELDS = frozenset(Account.model_fields)


def _fill_of(
    order: Order, venue: str, price: Decimal, fee: Decimal, liquidity: Liquidity, ts: datetime, trade_day: str
) -> Fill:
    """``Fill(...)`` of ``order`` (a stored order: validated fields) at ``price`` with ``fee``, both
    Decimals the broker computed: built without validating again where nothing needs it."""
    if type(venue) is not str or type(price) is not Decimal or type(fee) is not Decimal:
        return Fill(
            client_order_id=order.client_order_id,
            venue=venue,
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            price=price,
            fee=fee,
            liquidity=liquidity,
            ts=ts,
            trade_day=trade_day,
        )
    fields = {
        "client_order_id": order.client_order_id,
        "venue": venue,
        "symbol": order.symbol,
        "side": order.side,
        "qty": order.qty,
        "price": price,
        "fee": fee,
        "liquidity": liquidity,
        "ts": ts,
        "trade_day": trade_day,
    }
    return built(Fill, fields, set(_FILL_FIELDS))


def _account_of(
    venue: str,
    currency: str,
    cash: Decimal,
    reserved: Decimal,
    value: Decimal,
    held: tuple[Position, ...],
    unfunded: str,
    deposited: Decimal | None,
) -> Account:
    """``Account(...)``, built without validating again when every part is already of its field's
    type (the ledger's cash and deposits are Decimals, its positions Positions): an account is
    computed at every fire."""
    equity = cash + value
    validated = (
        type(venue) is str
        and type(currency) is str
        and type(cash) is Decimal
        and type(reserved) is Decimal
        and type(value) is Decimal
        and (deposited is None or type(deposited) is Decimal)
    )
    for position in held:
        if type(position) is not Position:
            validated = False
    if validated:
        fields = {
            "venue": venue,
            "currency": currency,
            "cash": cash,
            "reserved_cash": reserved,
            "positions_value": value,
            "equity": equity,
            "positions": held,
            "unfunded": unfunded,
            "deposited": deposited,
        }
        return built(Account, fields, set(_ACCOUNT_FIELDS))
    return Account(
        venue=venue,
        currency=currency,
        cash=cash,
        reserved_cash=reserved,
        positions_value=value,
        equity=equity,
        positions=held,
        unfunded=unfunded,
        deposited=deposited,
    )


def _below_min_qty(qty: Decimal, instrument: Instrument) -> str:
    return (
        f"quantity {qty} of {instrument.symbol} is below its minimum order quantity of {instrument.min_qty} "
        f"(the venue refuses smaller orders)"
    )


def position_value(position: Position, instrument: Instrument, mark: Decimal) -> Decimal:
    """What ``position`` adds to equity at price ``mark``: its value (negative for a short), or
    for a margined future its unrealised P&L, entry to ``mark`` x qty x multiplier."""
    if instrument.margin_rate is not None:
        return position.qty * (mark - position.avg_cost) * instrument.multiplier
    return position.qty * mark


def amended_order(
    order: Order,
    *,
    stop_price: Decimal | None,
    trail: Decimal | None,
    limit_price: Decimal | None,
    at: datetime,
) -> Order:
    """``order`` with its resting price moved: a pending stop takes ``stop_price`` and ``trail``, a
    pending limit ``limit_price``; VenueError naming what may be amended otherwise."""
    stop_fields = stop_price is not None or trail is not None
    fits = (order.type is OrderType.STOP and limit_price is None) or (order.type is OrderType.LIMIT and not stop_fields)
    if not order.status.is_open or not fits or order.type is OrderType.MARKET:
        raise VenueError(
            f"order {order.client_order_id} is a {order.status.value} {order.type.value} order; only a pending "
            "stop (its stop price or trail) or a pending limit (its limit price) can be amended"
        )
    update: dict[str, object] = {"updated_at": at}
    for name, value in (("stop_price", stop_price), ("trail", trail), ("limit_price", limit_price)):
        if value is not None:
            if not value.is_finite() or value <= 0:
                raise VenueError(f"{name.replace('_', ' ')} must be a positive number, got {value}")
            update[name] = value
    return with_changes(order, update)


def _initial_margin(instrument: Instrument) -> Decimal:
    return instrument.short.initial_margin if instrument.short is not None else Decimal(1)


_CHILD_PRIORITY = {OrderType.MARKET: 0, OrderType.STOP: 1, OrderType.LIMIT: 2}


class _Book:
    """The pending orders of one symbol during one matching pass: when each may first fill, the
    session an A-share exit may not sell in (T+1), trailing stops, and the progress to store."""

    def __init__(self, broker: PaperBroker, instrument: Instrument, orders: list[Order]) -> None:
        self.broker = broker
        self.instrument = instrument
        self.calendar = instrument.calendar
        self.exchange_hours = instrument.asset_class is not AssetClass.CRYPTO
        self.orders: dict[str, Order] = {}
        for order in orders:
            self.orders[order.client_order_id] = order
        self.start: dict[str, datetime | None] = {}
        self.locked_day: dict[str, date] = {}  # T+1: the session of the entry's fill
        self.valid_through: dict[str, date | None] = {}
        self.changed: set[str] = set()
        for order in orders:
            if order.parent is None:
                self.start[order.client_order_id] = broker._eligible_from(order)
                self.valid_through[order.client_order_id] = broker._valid_through(order, instrument)
            elif order.parent in self.orders:
                self.start[order.client_order_id] = None  # waits for its entry, in this same pass
            else:
                parent = broker._entry(order.parent)
                if parent is None or parent.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
                    broker._update_quietly(
                        with_changes(
                            order,
                            {
                                "status": OrderStatus.CANCELLED,
                                "reason": f"its entry {order.parent} is {parent.status.value if parent else 'missing'}",
                                "updated_at": broker._now(),
                            },
                        )
                    )
                    del self.orders[order.client_order_id]
                elif parent.status is OrderStatus.FILLED:
                    self._activate(order, parent)
                else:
                    self.start[order.client_order_id] = None  # its entry is pending on another pass
        # Entries first, oldest first; then exits, a market before a stop before a target.
        self.sequence = (
            sorted(
                self.orders.values(),
                key=lambda o: (o.parent is not None, _CHILD_PRIORITY[o.type] if o.parent else 0, o.created_at),
            )
            if len(self.orders) > 1
            else list(self.orders.values())
        )

    def _activate(self, child: Order, parent: Order) -> None:
        """A child placed with its entry (a bracket) sees every price after the entry's fill; one
        placed later (a time-stop exit) only what trades after its own placement, like any order."""
        assert parent.filled_at is not None
        start = parent.filled_at
        if child.created_at - parent.created_at > self.broker.config.order_latency:
            start = max(start, self.broker._eligible_from(child))
        if child.checked_until is not None:
            start = max(start, child.checked_until)
        self.start[child.client_order_id] = start
        if self.instrument.settlement_days > 0 and child.side is not parent.side:
            self.locked_day[child.client_order_id] = calendars.trading_day(self.calendar, parent.filled_at)

    def earliest_start(self) -> datetime | None:
        earliest = None
        for start in self.start.values():
            if start is not None and (earliest is None or start < earliest):
                earliest = start
        return earliest

    def done(self) -> bool:
        return not any(o.status.is_open for o in self.orders.values())

    def open_entries(self) -> list[Order]:
        entries = []
        for order in self.orders.values():
            if order.parent is None and order.status.is_open:
                entries.append(order)
        return entries

    async def match_bar(self, bar: _BarView) -> list[Fill]:
        fills: list[Fill] = []
        opens_in_session = not self.exchange_hours or calendars.is_open(self.calendar, bar.ts)
        # An hourly bar that straddles the session's open (AMZN 13:00-14:00 UTC) holds its first
        # regular trades: a resting stop or limit sees its range (the data cannot split off the
        # pre-market part); an order filling at a bar's open needs that open inside the session.
        in_session = opens_in_session or calendars.is_open(self.calendar, bar.close_time - _ONE_MICROSECOND)
        day = calendars.trading_day(self.calendar, bar.ts) if self.exchange_hours else None
        for order in self.sequence:
            coid = order.client_order_id
            order = self.orders[coid]
            start = self.start.get(coid)
            if not order.status.is_open or start is None or bar.ts < start or not in_session:
                continue
            if not opens_in_session and (order.type is OrderType.MARKET or order.triggered_at is not None):
                continue
            valid_through = self.valid_through.get(coid)
            if valid_through is not None and day is not None and day > valid_through:
                continue
            if day is not None and self.locked_day.get(coid) == day:
                self._hold_for_t1(order, bar)
                continue
            fill = await self._fill(order, bar)
            if fill is None:
                self._trail(order, bar)
                continue
            fills.append(fill)
            if order.parent is None:
                self._activate_children(self.orders[coid])
            else:
                parent = self.broker._entry(order.parent)
                if parent is not None:
                    for child in self.broker.clip_children(parent):
                        seen = self.orders.get(child.client_order_id)
                        if seen is not None:
                            # Keep how far this pass matched it: a stop amended after this bar (to
                            # break-even after TP1) must not be judged on the bar again.
                            if child.status.is_open and seen.checked_until is not None:
                                child = with_changes(child, {"checked_until": seen.checked_until})
                                self.changed.add(child.client_order_id)
                            self.orders[child.client_order_id] = child
        return fills

    async def _fill(self, order: Order, bar: _BarView) -> Fill | None:
        coid = order.client_order_id
        priced = self.broker._execution_price(order, self.instrument, bar)
        if priced[0] is None:
            self._progress(order, bar)
            return None
        fill = await self.broker._try_fill(order, self.instrument, bar, priced)
        stored = self.broker._ledger.order(coid) or order
        self.orders[coid] = stored
        if fill is None and stored.status.is_open:
            self._progress(stored, bar)
        return fill

    def _progress(self, order: Order, bar: _BarView) -> None:
        self.orders[order.client_order_id] = with_changes(order, {"checked_until": bar.close_time})
        self.changed.add(order.client_order_id)

    def _activate_children(self, parent: Order) -> None:
        for child in self.orders.values():
            if child.parent == parent.client_order_id and child.status.is_open:
                self._activate(child, parent)

    def _hold_for_t1(self, order: Order, bar: _BarView) -> None:
        """T+1: an exit cannot sell in the session its entry bought in. A stop crossed then sells at
        the next session's first chance (its open), whatever the price does in between."""
        crossed = (
            order.type is OrderType.STOP
            and order.stop_price is not None
            and (bar.low <= order.stop_price if order.side is Side.SELL else bar.high >= order.stop_price)
        )
        update: dict[str, object] = {"checked_until": bar.close_time}
        if crossed and order.triggered_at is None:
            session = calendars.trading_day(self.calendar, bar.ts)
            stop = _on_tick(order.stop_price, self.instrument.tick_size)
            update.update(
                triggered_at=bar.ts,
                reason=f"stop {stop} crossed on the buy day {session.isoformat()} "
                "(T+1: cannot sell today): sells at the next session's open",
            )
        self.orders[order.client_order_id] = with_changes(order, update)
        self.changed.add(order.client_order_id)

    def _trail(self, order: Order, bar: _BarView) -> None:
        """A trailing stop follows the best price at its distance, never back; raised after the bar
        is judged against the old level (which came first inside the bar is unknown)."""
        if order.type is not OrderType.STOP or order.trail is None or order.stop_price is None:
            return
        order = self.orders[order.client_order_id]
        assert order.trail is not None and order.stop_price is not None
        tick = self.instrument.tick_size
        if order.side is Side.SELL:
            level = round_to_tick(bar.high - order.trail, tick, up=False)
            better = level > order.stop_price
        else:
            level = round_to_tick(bar.low + order.trail, tick, up=True)
            better = level < order.stop_price
        if better:
            self.orders[order.client_order_id] = with_changes(order, {"stop_price": level})
            self.changed.add(order.client_order_id)

    def progress(self) -> list[Order]:
        """The open orders whose matching state moved (how far they were matched, a trailing stop,
        a T+1 hold): stored so the next pass starts there instead of walking the same bars again."""
        if not self.changed:
            return []
        now = self.broker._now()
        changed = [self.orders[coid] for coid in sorted(self.changed)]
        return [with_changes(o, {"updated_at": now}) for o in changed if o.status.is_open]
