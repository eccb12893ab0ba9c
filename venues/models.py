"""Domain models shared by every venue. Money and quantities are Decimal; bar prices are floats
(analytics), converted to Decimal where they are accounted (fills, cash, positions)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from venues.clock import ensure_utc

ZERO = Decimal(0)

_Model = TypeVar("_Model", bound=BaseModel)
_new_instance = object.__new__
_set_slot = object.__setattr__


def with_changes(model: _Model, changes: Mapping[str, Any]) -> _Model:
    """``model.model_copy(update=changes)``: the same copy (nothing validated, the changed fields
    marked as set), built in one step instead of through ``copy.copy`` of each of its parts. The
    paper broker copies a frozen order or position several times per fill and per bar matched,
    where pydantic's generic copy costs more than the matching itself."""
    if model.__pydantic_private__ is not None or model.__pydantic_extra__ is not None:
        return model.model_copy(update=dict(changes))
    copied = _new_instance(type(model))
    fields = model.__dict__.copy()
    fields.update(changes)
    _set_slot(copied, "__dict__", fields)
    _set_slot(copied, "__pydantic_fields_set__", model.__pydantic_fields_set__.union(changes))
    _set_slot(copied, "__pydantic_extra__", None)
    _set_slot(copied, "__pydantic_private__", None)
    return copied


def built(cls: type[_Model], fields: dict[str, Any], fields_set: set[str]) -> _Model:
    """``cls(**passed)`` without validating again: the instance validation would make, for values
    that are already what validating them returns (taken from validated models, or made by the
    broker as exactly those types: a ``str``, a ``Decimal``, an enum member, an aware UTC
    ``datetime``). Not for anything that comes from outside the broker: validating is what makes
    that safe. The paper broker makes a fill, an order and an account per fill, where validating
    them costs more than filling.

    ``fields``: every field of ``cls`` (defaults included), in the order ``cls`` declares them, as
    validation fills ``__dict__`` (repr lists it in that order); ``fields_set``: the names that
    were passed (validation marks those as set, not the defaulted ones; a fresh set per
    instance, as validation makes). Only for models without private attributes or extra fields."""
    model = _new_instance(cls)
    _set_slot(model, "__dict__", fields)
    _set_slot(model, "__pydantic_fields_set__", fields_set)
    _set_slot(model, "__pydantic_extra__", None)
    _set_slot(model, "__pydantic_private__", None)
    return model


class AssetClass(StrEnum):
    CRYPTO = "crypto"
    CN_EQUITY = "cn_equity"
    CN_FUTURE = "cn_future"
    US_EQUITY = "us_equity"
    US_OPTION = "us_option"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"  # stop-market: triggers when a trade reaches stop_price, then fills like a market order


class OrderStatus(StrEnum):
    PENDING = "pending"  # accepted by the broker, waiting for a bar to fill on
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        return self is OrderStatus.PENDING


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- Cost schedules: one per market. They hold the broker's prices (commissions) and which
# regulatory charges apply; the regulatory rates themselves change over time and live in one dated
# table (venues/fee_rates.py), read at the fill's trade date by venues/costs.py. ---


class CnEquityFees(_Frozen):
    """China A-shares: the broker's commission (a common retail rate, 0.025% with a 5 CNY minimum per
    order) plus, from the dated table, stamp duty on sells and the transfer fee on both sides."""

    kind: Literal["cn_equity"] = "cn_equity"
    commission_rate: Decimal = Decimal("0.00025")  # share of the order's value
    min_commission: Decimal = Decimal("5")  # CNY per order
    stamp_duty_applies: bool = True  # exchange-traded funds pay no stamp duty
    transfer_fee_applies: bool = True  # nor the A-share transfer fee


class CryptoFees(_Frozen):
    """The exchange's maker/taker fees in basis points of the fill's value."""

    kind: Literal["crypto"] = "crypto"
    maker_bps: Decimal = Decimal("8")
    taker_bps: Decimal = Decimal("10")


class UsEquityFees(_Frozen):
    """US equities: the broker's commission per share (zero at the usual retail brokers) and, when
    ``regulatory_fees`` is on, the SEC Section 31 fee and the FINRA TAF on sells at the dated rates."""

    kind: Literal["us_equity"] = "us_equity"
    commission_per_share: Decimal = ZERO
    regulatory_fees: bool = False


class CnFutureFees(_Frozen):
    """China futures: the exchange's trading fee per side, per lot (``per_lot`` CNY) or as a share
    of the contract value (``rate``; value = lots x price x multiplier), as the exchange publishes
    it for the product; ``basis`` names the source."""

    kind: Literal["cn_future"] = "cn_future"
    per_lot: Decimal = ZERO
    rate: Decimal = ZERO
    basis: str = ""


FeeSchedule = Annotated[CnEquityFees | CryptoFees | UsEquityFees | CnFutureFees, Field(discriminator="kind")]


class ShortTerms(_Frozen):
    """How an instrument may be sold short (sell-to-open) on the paper account, and what borrowing
    it costs. Rates are shares of the short's value (0.003 = 0.3%). A perpetual's funding is not
    here: both sides settle it (``FundingTerms``).

    - ``initial_margin``: cash held beyond the short's own proceeds while it is open, as a share of
      its current value (Reg T: 0.5 for US equities on a margin account; 1.0 for an unleveraged
      perpetual). The paper broker reserves value x (1 + initial_margin) of cash for each short.
    - ``borrow_rate_year``: the stock-borrow fee per year of 365 days, paid by the short only.
    - ``basis``: where the terms come from (assumptions where no live rate is known).
    """

    initial_margin: Decimal = Decimal(1)
    borrow_rate_year: Decimal = ZERO
    basis: str = ""

    def borrow(self, value: Decimal, hours: Decimal) -> Decimal:
        """The borrow fee a short of ``value`` pays over ``hours`` (same currency)."""
        return value * self.borrow_rate_year * hours / (365 * 24)


class FundingTerms(_Frozen):
    """A perpetual's funding, settled between longs and shorts at each 8-hour mark (00:00, 08:00,
    16:00 UTC on Binance USDT-M and OKX SWAP): position value x ``rate_8h`` is paid by longs to
    shorts when the rate is positive, by shorts to longs when it is negative.

    - ``rate_8h``: the rate per 8 hours, signed as the exchange publishes it (0.0001 = +0.01%).
    - ``basis``: where it comes from (the exchange's current rate, or an assumption).
    """

    rate_8h: Decimal
    basis: str = ""

    def paid(self, long: bool, value: Decimal, hours: Decimal) -> Decimal:
        """What a long (``long``) or a short of ``value`` pays over ``hours``; negative = received."""
        paid_by_longs = value * self.rate_8h * hours / 8
        return paid_by_longs if long else -paid_by_longs


# Assumed terms where no live rate is read: Binance's USDT-M baseline funding (its interest
# component, +0.01% per 8 h: longs pay shorts), an unleveraged perpetual short, and an
# easy-to-borrow general-collateral rate for US large caps (0.30% a year).
ASSUMED_FUNDING = FundingTerms(
    rate_8h=Decimal("0.0001"),
    basis="assumed funding +0.01% per 8 h (Binance USDT-M baseline): longs pay shorts",
)
PERPETUAL_SHORT = ShortTerms(initial_margin=Decimal(1), basis="unleveraged perpetual short: 100% initial margin")
US_MARGIN_SHORT = ShortTerms(
    initial_margin=Decimal("0.5"),
    borrow_rate_year=Decimal("0.003"),
    basis="assumed easy-to-borrow fee 0.30% a year; Reg T initial margin 50%",
)


class Instrument(_Frozen):
    venue: str
    symbol: str
    asset_class: AssetClass
    currency: str
    lot_size: Decimal = Decimal(1)  # buys must be a multiple (A-shares: 100)
    qty_step: Decimal = Decimal(1)  # every quantity must be a multiple (crypto: the step size)
    tick_size: Decimal = Decimal("0.01")
    min_notional: Decimal = ZERO
    # The smallest quantity one order may have (ccxt's limits.amount.min; a whole share where
    # fractions are not traded; an A-share lot); 0 = none beyond ``qty_step``.
    min_qty: Decimal = ZERO
    fees: FeeSchedule
    calendar: str  # exchange-calendars name: XSHG, XNYS, 24/7
    timeframe: str  # the finest timeframe the venue serves for it
    settlement_days: int = 0  # 1 = T+1: shares bought today cannot be sold today
    price_limit_pct: Decimal | None = None  # daily band around the previous close (A-shares: 0.10)
    name: str = ""
    perpetual: bool = False  # a crypto perpetual swap (no expiry, funding), not spot
    funding: FundingTerms | None = None  # a perpetual's funding, paid or received by either side
    short: ShortTerms | None = None  # None: cannot be sold short on this account
    no_short_reason: str = ""  # why not, when ``short`` is None (a default by asset class otherwise)
    # Futures: units of the underlying per contract (SHFE copper: 5 t); value and P&L = qty x price
    # x multiplier. 1 for everything that is not a contract.
    multiplier: Decimal = Decimal(1)
    # Futures: margin held while a position is open, as a share of its value, longs and shorts
    # alike; None = the position is paid in full (cash instruments).
    margin_rate: Decimal | None = None

    @field_validator("multiplier")
    @classmethod
    def _multiplier(cls, value: Decimal) -> Decimal:
        return _positive_decimal(value, "multiplier")

    @field_validator("margin_rate")
    @classmethod
    def _margin_rate(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not (0 < value <= 1):
            raise ValueError(f"margin_rate must be above 0 and at most 1, got {value}")
        return value

    def short_refusal(self) -> str | None:
        """None when the instrument may be sold short (sell-to-open), else the reason in words."""
        if self.short is not None:
            return None
        why = self.no_short_reason or _NO_SHORT.get(self.asset_class, "the account does not lend it")
        return f"{self.symbol} cannot be sold short: {why}"


_NO_SHORT = {
    AssetClass.CRYPTO: "spot crypto is never sold short here (only perpetuals are)",
    AssetClass.CN_EQUITY: "A-shares and A-share ETFs are long-only on this account (no securities lending)",
    AssetClass.US_EQUITY: "not on the margin account's easy-to-borrow list",
}


class Bar(_Frozen):
    ts: datetime  # open time
    close_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class Quote(_Frozen):
    symbol: str
    ts: datetime
    last: float
    bid: float | None = None
    ask: float | None = None
    volume: float | None = None  # over the current session or the last 24 h, as the venue reports
    change_pct: float | None = None  # vs the previous session close


def _positive_decimal(value: Decimal, what: str) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite number, got {value}")
    if value <= 0:
        raise ValueError(f"{what} must be greater than zero, got {value}")
    return value


class OrderRequest(_Frozen):
    """An order as the domain asks for it.

    - ``limit_price``: LIMIT orders only; fills at the limit or better.
    - ``stop_price``: STOP orders only; a sell stop triggers when a trade is at or below it (a buy
      stop at or above), then fills at the stop price, or at the open when a bar gaps through it.
    - ``trail``: STOP orders only; the stop follows the best price since the order became active at
      this distance (a sell stop: highest high - trail), never moving back.
    - ``parent``: the client order id of the entry this exit belongs to (a bracket child). It rests
      inactive until the parent fills, then sees only prices after that fill, and its quantity is
      clipped to what the parent bought less what its siblings sold (one-cancels-other by quantity).
    - ``collar_low`` / ``collar_high``: MARKET orders only; the drift guard at the fill: an order
      that would fill outside this range (an open that gapped away from the signal's entry, either
      way) is cancelled with the reason instead of filled.
    """

    client_order_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    symbol: str = Field(min_length=1, max_length=32)
    side: Side
    qty: Decimal
    type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail: Decimal | None = None
    parent: str | None = Field(default=None, max_length=64)
    collar_low: Decimal | None = None
    collar_high: Decimal | None = None
    signal_id: str | None = None

    @field_validator("qty")
    @classmethod
    def _qty(cls, value: Decimal) -> Decimal:
        return _positive_decimal(value, "quantity")

    @field_validator("limit_price", "stop_price", "trail", "collar_low", "collar_high")
    @classmethod
    def _price(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        return None if value is None else _positive_decimal(value, str(info.field_name).replace("_", " "))

    @model_validator(mode="after")
    def _prices_fit_the_type(self) -> OrderRequest:
        if self.type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError("a limit order needs a limit_price")
        if self.type is not OrderType.LIMIT and self.limit_price is not None:
            raise ValueError(f"a {self.type.value} order takes no limit_price")
        if self.type is OrderType.STOP and self.stop_price is None:
            raise ValueError("a stop order needs a stop_price")
        if self.type is not OrderType.STOP and (self.stop_price is not None or self.trail is not None):
            raise ValueError(f"a {self.type.value} order takes no stop_price or trail")
        collar = (self.collar_low, self.collar_high)
        if self.type is not OrderType.MARKET and collar != (None, None):
            raise ValueError("only a market order takes a collar (a limit order's limit is its collar)")
        if None not in collar and collar[0] > collar[1]:  # type: ignore[operator]
            raise ValueError(f"collar_low {self.collar_low} is above collar_high {self.collar_high}")
        if self.parent is not None and self.parent == self.client_order_id:
            raise ValueError("an order cannot be its own parent")
        return self


class Order(BaseModel):
    # Frozen: a change is a copy (model_copy(update=...)), so a ledger may hand out what it stores.
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_order_id: str
    venue: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None  # the current stop: a trailing stop moves it
    trail: Decimal | None = None
    parent: str | None = None
    collar_low: Decimal | None = None
    collar_high: Decimal | None = None
    status: OrderStatus
    reason: str = ""  # why rejected or cancelled; how it filled; a note while pending
    created_at: datetime
    updated_at: datetime
    filled_qty: Decimal = ZERO
    avg_fill_price: Decimal | None = None
    fees: Decimal = ZERO
    signal_id: str | None = None
    filled_at: datetime | None = None  # market time of the fill (a bar's open, or the quote's time)
    checked_until: datetime | None = None  # bars opening before this were matched and did not fill it
    triggered_at: datetime | None = None  # a stop that triggered but could not fill yet (T+1)

    @field_validator("created_at", "updated_at", "filled_at", "checked_until", "triggered_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else ensure_utc(value)

    @classmethod
    def from_request(
        cls,
        request: OrderRequest,
        venue: str,
        *,
        at: datetime,
        status: OrderStatus = OrderStatus.PENDING,
        reason: str = "",
        symbol: str | None = None,
    ) -> Order:
        """The order a broker records for ``request`` at ``at`` (``symbol``: the venue's spelling)."""
        symbol = symbol or request.symbol
        if (
            type(request) is OrderRequest
            and type(at) is datetime
            and at.tzinfo is UTC
            and type(venue) is str
            and type(symbol) is str
            and type(status) is OrderStatus
            and type(reason) is str
            and cls is Order
        ):
            # All of it validated already (the request's fields are the order's, of the same types;
            # ``at`` is what ensure_utc makes of it): the same order, without validating it again.
            return built(
                Order,
                {
                    "client_order_id": request.client_order_id,
                    "venue": venue,
                    "symbol": symbol,
                    "side": request.side,
                    "type": request.type,
                    "qty": request.qty,
                    "limit_price": request.limit_price,
                    "stop_price": request.stop_price,
                    "trail": request.trail,
                    "parent": request.parent,
                    "collar_low": request.collar_low,
                    "collar_high": request.collar_high,
                    "status": status,
                    "reason": reason,
                    "created_at": at,
                    "updated_at": at,
                    "filled_qty": ZERO,
                    "avg_fill_price": None,
                    "fees": ZERO,
                    "signal_id": request.signal_id,
                    "filled_at": None,
                    "checked_until": None,
                    "triggered_at": None,
                },
                set(_FROM_REQUEST_FIELDS),
            )
        return cls(
            client_order_id=request.client_order_id,
            venue=venue,
            symbol=symbol,
            side=request.side,
            type=request.type,
            qty=request.qty,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
            trail=request.trail,
            parent=request.parent,
            collar_low=request.collar_low,
            collar_high=request.collar_high,
            status=status,
            reason=reason,
            created_at=at,
            updated_at=at,
            signal_id=request.signal_id,
        )

    def same_request(self, request: OrderRequest) -> bool:
        """Whether ``request`` asks for this order (the idempotent re-send of one client order id).
        The stop price is left out: a trailing stop moves it after placement; and a bracket child's
        limit too (/plan moves a target)."""
        return (
            self.symbol == request.symbol
            and self.side == request.side
            and self.type == request.type
            and (self.qty == request.qty or self.parent is not None)  # a bracket child is clipped
            and (self.limit_price == request.limit_price or self.parent is not None)
            and self.parent == request.parent
        )


# What Order.from_request passes, so what validation marks as set (the fill's fields are defaults).
_FROM_REQUEST_FIELDS = frozenset(
    (
        "client_order_id",
        "venue",
        "symbol",
        "side",
        "type",
        "qty",
        "limit_price",
        "stop_price",
        "trail",
        "parent",
        "collar_low",
        "collar_high",
        "status",
        "reason",
        "created_at",
        "updated_at",
        "signal_id",
    )
)


class Fill(_Frozen):
    client_order_id: str
    venue: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    liquidity: Liquidity
    ts: datetime
    trade_day: str  # exchange-local trading day, ISO date: what T+1 is counted in


class Position(BaseModel):
    # Frozen, as Order: a ledger may hand out what it stores.
    model_config = ConfigDict(extra="forbid", frozen=True)

    venue: str
    symbol: str
    qty: Decimal = ZERO  # negative: a short
    avg_cost: Decimal = ZERO  # per unit, fees included; a short's: its average sale price net of fees
    realized_pnl: Decimal = ZERO  # net of fees
    opened_at: datetime | None = None
    updated_at: datetime | None = None


class Account(_Frozen):
    venue: str
    currency: str
    cash: Decimal
    reserved_cash: Decimal  # held by open buy orders, and by shorts: value x (1 + initial margin)
    positions_value: Decimal
    equity: Decimal
    positions: tuple[Position, ...] = ()
    # Why nothing can be traded in this currency, when the account was never funded in it: no
    # starting cash is configured and it holds nothing (the message names the setting). "" = funded.
    unfunded: str = ""
    # What was deposited, from the ledger (P&L counts from it, not from today's settings); None
    # where the venue keeps the account (Alpaca's paper API).
    deposited: Decimal | None = None

    @property
    def available_cash(self) -> Decimal:
        return self.cash - self.reserved_cash
