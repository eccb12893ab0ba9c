"""US equity options: OCC symbols, option-chain quotes, and the protocol of a venue that serves
chains. Pure and venue-agnostic (the domain uses it; adapters implement ``OptionsData``).

An OCC symbol (OSI) is the root (1-6 characters), the expiry as YYMMDD, C or P, and the strike in
thousandths of a dollar on 8 digits: ``SPY251121P00550000`` = SPY put, 2025-11-21, strike 550.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from venues.errors import VenueError
from venues.models import OrderStatus

_OCC = re.compile(r"^([A-Z][A-Z0-9.]{0,5})(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")
MAX_STRIKE = Decimal("99999.999")
CONTRACT_MULTIPLIER = 100  # shares per standard US equity option contract


class OptionRight(StrEnum):
    CALL = "call"
    PUT = "put"


class OccSymbolError(VenueError, ValueError):
    def __init__(self, text: str, problem: str) -> None:
        super().__init__(
            f"{text[:40]!r} is not an OCC option symbol ({problem}); expected ROOT + YYMMDD + C|P + strike x 1000 "
            "on 8 digits, e.g. SPY251121P00550000 (SPY put, 2025-11-21, strike 550)"
        )


@dataclass(frozen=True, slots=True, order=True)
class OccSymbol:
    underlying: str
    expiry: date
    right: OptionRight
    strike: Decimal

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z][A-Z0-9.]{0,5}", self.underlying):
            raise OccSymbolError(self.underlying, "the root must be 1-6 capital letters, digits or dots")
        if not 2000 <= self.expiry.year <= 2099:
            raise OccSymbolError(str(self.expiry), "the expiry year must be 2000-2099")
        if not (0 < self.strike <= MAX_STRIKE) or self.strike != self.strike.quantize(Decimal("0.001")):
            raise OccSymbolError(str(self.strike), "the strike must be above 0, at most 99999.999, in steps of 0.001")

    @classmethod
    def parse(cls, text: str) -> OccSymbol:
        """``SPY251121P00550000`` -> OccSymbol("SPY", 2025-11-21, PUT, 550); OccSymbolError if not one."""
        found = _OCC.match(text.strip().upper()) if isinstance(text, str) else None
        if found is None:
            raise OccSymbolError(str(text), "it does not have that shape")
        root, yy, mm, dd, right, strike = found.groups()
        try:
            expiry = date(2000 + int(yy), int(mm), int(dd))
        except ValueError:
            raise OccSymbolError(text, f"20{yy}-{mm}-{dd} is not a date") from None
        return cls(root, expiry, OptionRight.CALL if right == "C" else OptionRight.PUT, Decimal(int(strike)) / 1000)

    def format(self) -> str:
        thousandths = int(self.strike * 1000)
        return f"{self.underlying}{self.expiry:%y%m%d}{'C' if self.right is OptionRight.CALL else 'P'}{thousandths:08d}"

    def __str__(self) -> str:
        return self.format()

    def describe(self) -> str:
        """``SPY 2025-11-21 550 put``."""
        return f"{self.underlying} {self.expiry.isoformat()} {self.strike.normalize():f} {self.right.value}"


@dataclass(frozen=True, slots=True)
class OptionLeg:
    """One leg of a multi-leg option order: ``ratio`` contracts of ``contract`` per unit of the
    order's quantity, bought or sold (``buy``)."""

    contract: OccSymbol
    buy: bool
    ratio: int = 1


def is_occ_symbol(text: str) -> bool:
    return bool(_OCC.match(text.strip().upper()))


class OptionQuote(BaseModel):
    """One contract of a chain: quote, last trade, implied volatility and Greeks (None when the
    venue has none, e.g. no trade yet)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    underlying: str
    expiry: date
    right: OptionRight
    strike: Decimal
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    implied_volatility: float | None = None
    delta: float | None = None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None
    rho: float | None = None


@runtime_checkable
class OptionsData(Protocol):
    """A venue that serves option chains."""

    name: str

    async def option_chain(
        self,
        underlying: str,
        *,
        expiry: date | None = None,
        right: OptionRight | None = None,
        strike_min: Decimal | None = None,
        strike_max: Decimal | None = None,
    ) -> list[OptionQuote]:
        """The chain of ``underlying``, sorted by expiry, strike, right; filtered as asked."""
        ...


class LegsOrder(BaseModel):
    """A multi-leg option order as the venue holds it: one order, one net price per unit (a debit
    > 0, a credit < 0), ``qty`` units of the legs' ratios; ``legs`` read "buy 1 SPY210730C00437000"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_order_id: str
    venue: str
    underlying: str
    legs: tuple[str, ...]
    qty: int
    limit_price: Decimal | None = None  # None: a market order
    status: OrderStatus
    filled_avg_price: Decimal | None = None  # the net price per unit it filled at
    created_at: datetime
    filled_at: datetime | None = None
    reason: str = ""


@runtime_checkable
class OptionOrders(Protocol):
    """A broker that takes multi-leg option orders (a vertical spread is one order of two legs),
    placed once per client order id like any order."""

    async def place_legs(
        self, client_order_id: str, legs: list[OptionLeg], quantity: int, limit_price: Decimal | None = None
    ) -> dict[str, Any]: ...

    async def legs_order(self, client_order_id: str) -> LegsOrder | None:
        """The multi-leg order with this client order id, as the venue has it now, or None."""
        ...

    async def legs_orders(self) -> list[LegsOrder]:
        """Every multi-leg order of the account, newest first."""
        ...
