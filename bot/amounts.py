"""Amounts as JSON strings: money at its currency's cents, prices at the instrument's tick.

Decimal arithmetic keeps every digit (an average cost of 7 fills is 5.193297922077922077922077922);
a reader of ``--json`` wants what a statement shows.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

CENTS = Decimal("0.01")
# A price with no known tick: 8 decimals is a satoshi, finer than any venue here quotes.
UNKNOWN_TICK = Decimal("0.00000001")


def money_json(value: Decimal) -> str:
    """Money to 2 decimals, banker's rounding: Decimal("-2205.969999999999999999999997") -> "-2205.97"."""
    return str(value.quantize(CENTS, rounding=ROUND_HALF_EVEN))


def price_json(value: Decimal, tick: Decimal | None = None) -> str:
    """A price at the instrument's tick when it is known and below 1 (0.01 -> "34540.76"), else at
    8 decimals with trailing zeros left off ("5.19329792")."""
    if tick is not None and 0 < tick < 1:
        return str(value.quantize(tick, rounding=ROUND_HALF_EVEN))
    if tick is not None and tick >= 1:
        return str(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    text = str(value.quantize(UNKNOWN_TICK, rounding=ROUND_HALF_EVEN))
    return text.rstrip("0").rstrip(".") if "." in text else text
