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
from decimal import Decimal

from venues.options import CONTRACT_MULTIPLIER, OccSymbol, OptionRight

CENT = Decimal("0.01")


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
