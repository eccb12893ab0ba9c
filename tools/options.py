"""Vertical option spreads: their legs, max loss, max gain and breakeven, and the card lines that
show them. Pure functions; money in USD, prices per share, 100 shares a contract.

A vertical spread buys one option and sells another of the same underlying, expiry and right at a
different strike. ``net`` is the price per share paid for the pair (a debit, > 0) or received (a
credit, < 0). Per contract, with width = the distance between the strikes:

- debit spread (bull call, bear put): max loss = net x 100, max gain = (width - net) x 100;
- credit spread (bear call, bull put): max gain = credit x 100, max loss = (width - credit) x 100;
- breakeven at expiry: a call spread's lower strike + |net|; a put spread's higher strike - |net|.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from venues.options import CONTRACT_MULTIPLIER, OccSymbol, OptionLeg, OptionRight

CENT = Decimal("0.01")
LEG_FILLS_PER_CONTRACT = 4  # a spread's two legs opened, then closed


class SpreadError(ValueError):
    """Legs and price that do not make a vertical spread; the message says what would."""


@dataclass(frozen=True, slots=True)
class VerticalSpread:
    long_leg: OccSymbol  # bought
    short_leg: OccSymbol  # sold
    contracts: int
    net: Decimal  # per share: > 0 paid (debit), < 0 received (credit)

    def __post_init__(self) -> None:
        a, b = self.long_leg, self.short_leg
        if (a.underlying, a.expiry, a.right) != (b.underlying, b.expiry, b.right):
            raise SpreadError(
                f"a vertical spread's legs share underlying, expiry and right; got {a.describe()} and {b.describe()}"
            )
        if a.strike == b.strike:
            raise SpreadError(f"a vertical spread's legs have different strikes; both are {a.strike.normalize():f}")
        if self.contracts < 1:
            raise SpreadError(f"contracts must be 1 or more, got {self.contracts}")
        if self.net == 0:
            raise SpreadError("the net price must be a debit (> 0) or a credit (< 0), not 0")
        debit_shape = a.strike < b.strike if a.right is OptionRight.CALL else a.strike > b.strike
        if debit_shape != self.is_debit:
            kind = "bought" if debit_shape else "sold"
            raise SpreadError(
                f"this {a.right.value} spread buys the {'lower' if a.strike < b.strike else 'higher'} strike, so it "
                f"is {kind} for a {'debit' if debit_shape else 'credit'}: net must be "
                f"{'> 0' if debit_shape else '< 0'}, got {self.net}"
            )
        if abs(self.net) >= self.width:
            raise SpreadError(
                f"a net {'debit' if self.is_debit else 'credit'} of {abs(self.net)} is not below the strike width "
                f"{self.width.normalize():f}: the spread could not gain"
            )

    @property
    def is_debit(self) -> bool:
        return self.net > 0

    @property
    def width(self) -> Decimal:
        return abs(self.long_leg.strike - self.short_leg.strike)

    @property
    def shares(self) -> int:
        return self.contracts * CONTRACT_MULTIPLIER

    @property
    def max_loss(self) -> Decimal:
        per_share = self.net if self.is_debit else self.width + self.net
        return (per_share * self.shares).quantize(CENT)

    @property
    def max_gain(self) -> Decimal:
        per_share = self.width - self.net if self.is_debit else -self.net
        return (per_share * self.shares).quantize(CENT)

    @property
    def breakeven(self) -> Decimal:
        strikes = (self.long_leg.strike, self.short_leg.strike)
        if self.long_leg.right is OptionRight.CALL:
            return min(strikes) + abs(self.net)
        return max(strikes) - abs(self.net)

    @property
    def name(self) -> str:
        right = self.long_leg.right
        bullish = (right is OptionRight.CALL) == self.is_debit
        return f"{'bull' if bullish else 'bear'} {right.value} spread"


def spread_card_lines(spread: VerticalSpread) -> list[str]:
    """The card's lines for a vertical spread: what it is, each leg, the net price, and its max
    loss, max gain and breakeven at expiry."""
    leg = spread.long_leg
    contracts = f"{spread.contracts} contract{'s' if spread.contracts != 1 else ''}"
    kind = "debit" if spread.is_debit else "credit"
    total = (abs(spread.net) * spread.shares).quantize(CENT)
    return [
        f"{spread.name} {leg.underlying} {leg.expiry.isoformat()}, {contracts}",
        f"  buy  {spread.long_leg}  ({spread.long_leg.strike.normalize():f} {leg.right.value})",
        f"  sell {spread.short_leg}  ({spread.short_leg.strike.normalize():f} {leg.right.value})",
        f"  net {kind} {abs(spread.net):.2f} a share = {total:,.2f} USD",
        f"  max loss {spread.max_loss:,.2f} USD, max gain {spread.max_gain:,.2f} USD, breakeven {spread.breakeven:.2f}",
    ]


class SpreadPlan(BaseModel):
    """A sized debit spread as it travels through the graph (state, card, record)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # "bull call spread" / "bear put spread"
    underlying: str
    expiry: date
    long_leg: str  # OCC symbol, bought to open
    short_leg: str  # OCC symbol, sold to open
    long_bid: Decimal
    long_ask: Decimal
    short_bid: Decimal
    short_ask: Decimal
    long_delta: float | None = None
    net_debit: Decimal  # per share
    contracts: int
    fee_per_contract: Decimal
    close_by: date  # the last session before expiry: the spread is closed then at the latest
    stop: Decimal  # the underlying's level that closes the spread at a loss
    target: Decimal  # TP1 on the underlying: closes it at a profit
    chosen_by: str = "code"  # "code" (at the money, short at TP1), or the policy that named the legs

    @property
    def bullish(self) -> bool:
        return OccSymbol.parse(self.long_leg).right is OptionRight.CALL

    @property
    def vertical(self) -> VerticalSpread:
        return VerticalSpread(
            OccSymbol.parse(self.long_leg), OccSymbol.parse(self.short_leg), max(self.contracts, 1), self.net_debit
        )

    @property
    def premium(self) -> Decimal:
        """What opening it pays, USD (net debit x 100 x contracts)."""
        return (self.net_debit * CONTRACT_MULTIPLIER * self.contracts).quantize(CENT)

    @property
    def fees_round_trip(self) -> Decimal:
        return (self.fee_per_contract * LEG_FILLS_PER_CONTRACT * self.contracts).quantize(CENT)

    @property
    def max_loss(self) -> Decimal:
        """The most it can lose, fees included: the premium and the round trip's fees."""
        return self.premium + self.fees_round_trip

    @property
    def max_gain(self) -> Decimal:
        """The most it can make at expiry (the underlying beyond the short strike), after fees."""
        width = abs(OccSymbol.parse(self.long_leg).strike - OccSymbol.parse(self.short_leg).strike)
        return ((width - self.net_debit) * CONTRACT_MULTIPLIER * self.contracts).quantize(CENT) - self.fees_round_trip

    @property
    def breakeven(self) -> Decimal:
        return self.vertical.breakeven

    def legs(self, *, closing: bool = False) -> list[OptionLeg]:
        """The order's legs: opening buys the long leg and sells the short one; closing reverses."""
        return [
            OptionLeg(OccSymbol.parse(self.long_leg), buy=not closing),
            OptionLeg(OccSymbol.parse(self.short_leg), buy=closing),
        ]

    def exit_line(self) -> str:
        beyond, short_of = ("at or below", "at or above") if self.bullish else ("at or above", "at or below")
        return (
            f"exit: one closing order for both legs when {self.underlying} trades {beyond} the stop "
            f"{self.stop.normalize():f} or {short_of} TP1 {self.target.normalize():f}, else on "
            f"{self.close_by.isoformat()} (the last session before expiry)"
        )

    def card_lines(self) -> list[str]:
        """The card's lines: tools.options' spread lines (with this plan's contracts), the legs in
        words, fees, and the exit."""
        lines = spread_card_lines(self.vertical) if self.contracts > 0 else []
        words = [
            f"  = buy {OccSymbol.parse(self.long_leg).describe()}, sell {OccSymbol.parse(self.short_leg).describe()}"
        ]
        quotes = (
            f"  quotes: long bid/ask {self.long_bid:.2f}/{self.long_ask:.2f}, "
            f"short bid/ask {self.short_bid:.2f}/{self.short_ask:.2f}"
            f"{f', long delta {self.long_delta:.2f}' if self.long_delta is not None else ''}"
            f"{f'; legs named by {self.chosen_by}' if self.chosen_by != 'code' else ''}"
        )
        fees = (
            f"  with fees {self.fees_round_trip:,.2f} USD (round trip): max loss {self.max_loss:,.2f} USD, "
            f"max gain {self.max_gain:,.2f} USD; expiry {self.expiry.isoformat()}"
        )
        return [*lines[:3], *words, *lines[3:], quotes, fees, self.exit_line()]
