"""Trading costs per market: the broker's commission from the instrument's fee schedule plus the
regulatory charges at the rates in force on the trade date (``venues.fee_rates``). Used by the paper
broker to charge fills and by the tools to estimate the net profit of a proposal before it is made.

Every fee computation takes the trade date ``on`` (the exchange-local day of the fill, or of the
expected fill for an estimate). Only ``fees`` still accepts no date, for callers not yet given one
(the paper broker): it then charges the latest rates in the table, which is what a fill today pays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from venues.fee_rates import RateName, rate
from venues.models import CnEquityFees, CnFutureFees, CryptoFees, Instrument, Liquidity, Side, UsEquityFees

ZERO = Decimal(0)
CENT = Decimal("0.01")
CRYPTO_FEE_QUANTUM = Decimal("0.00000001")
BPS = Decimal(10_000)
_WHOLE = Decimal(1)  # quantize to whole ticks


@dataclass(frozen=True, slots=True)
class FeeBreakdown:
    commission: Decimal = Decimal(0)
    stamp_duty: Decimal = Decimal(0)
    transfer_fee: Decimal = Decimal(0)
    regulatory_fee: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.commission + self.stamp_duty + self.transfer_fee + self.regulatory_fee


def _cents(amount: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    return amount.quantize(CENT, rounding=rounding)


def fee_breakdown(
    instrument: Instrument,
    side: Side,
    qty: Decimal,
    price: Decimal,
    liquidity: Liquidity = Liquidity.TAKER,
    *,
    on: date,
) -> FeeBreakdown:
    """Fees of one fill of ``qty`` at ``price`` on trade date ``on``, in the instrument's currency,
    each part rounded as it is charged (cents for equities, 1e-8 for crypto).

    Raises ``ValueError`` when the table has no regulatory rate that far back, and ``TypeError`` for a
    fee schedule without a cost model."""
    return FeeBreakdown(*_fee_parts(instrument, side, qty, price, liquidity, on))


def _fee_parts(
    instrument: Instrument, side: Side, qty: Decimal, price: Decimal, liquidity: Liquidity, on: date
) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """:func:`fee_breakdown`'s commission, stamp duty, transfer fee and regulatory fee."""
    notional = qty * price * instrument.multiplier
    schedule = instrument.fees
    if isinstance(schedule, CnEquityFees):
        # Brokers charge at least the minimum commission per order; the stamp duty is on sells only.
        commission = max(_cents(notional * schedule.commission_rate), schedule.min_commission)
        stamp = ZERO
        if side is Side.SELL and schedule.stamp_duty_applies:
            stamp = _cents(notional * rate(RateName.CN_STAMP_DUTY, on))
        transfer = _cents(notional * rate(RateName.CN_TRANSFER_FEE, on)) if schedule.transfer_fee_applies else ZERO
        return commission, stamp, transfer, ZERO
    if isinstance(schedule, CryptoFees):
        bps = schedule.maker_bps if liquidity is Liquidity.MAKER else schedule.taker_bps
        return (notional * bps / BPS).quantize(CRYPTO_FEE_QUANTUM, rounding=ROUND_HALF_UP), ZERO, ZERO, ZERO
    if isinstance(schedule, UsEquityFees):
        commission = _cents(qty * schedule.commission_per_share)
        regulatory = ZERO
        if schedule.regulatory_fees and side is Side.SELL:
            # Both the SEC fee and the FINRA TAF are rounded up to the next cent.
            sec = _cents(notional * rate(RateName.US_SEC_FEE, on), ROUND_CEILING)
            taf_cap = rate(RateName.US_TAF_MAX, on)
            taf = min(_cents(qty * rate(RateName.US_TAF_PER_SHARE, on), ROUND_CEILING), taf_cap)
            regulatory = sec + taf
        return commission, ZERO, ZERO, regulatory
    if isinstance(schedule, CnFutureFees):
        return _cents(qty * schedule.per_lot + notional * schedule.rate), ZERO, ZERO, ZERO
    raise TypeError(f"no cost model for fee schedule {type(schedule).__name__}")


def fees(
    instrument: Instrument,
    side: Side,
    qty: Decimal,
    price: Decimal,
    liquidity: Liquidity = Liquidity.TAKER,
    *,
    on: date,
) -> Decimal:
    """Total of ``fee_breakdown`` on the exchange-local trade date ``on`` (the fill's, or for an
    estimate the expected fill's)."""
    # Summed as FeeBreakdown.total sums them, without making the breakdown (the paper broker
    # charges every fill and estimates every buy).
    commission, stamp_duty, transfer_fee, regulatory_fee = _fee_parts(instrument, side, qty, price, liquidity, on)
    return commission + stamp_duty + transfer_fee + regulatory_fee


def slipped_price(instrument: Instrument, side: Side, price: Decimal, slippage_bps: Decimal) -> Decimal:
    """Price moved against the trader by ``slippage_bps``, rounded to the tick against the trader too."""
    factor = slippage_bps / BPS
    raw = price * (1 + factor) if side is Side.BUY else price * (1 - factor)
    return round_to_tick(raw, instrument.tick_size, up=side is Side.BUY)


def round_to_tick(price: Decimal, tick: Decimal, *, up: bool | None = None) -> Decimal:
    """Nearest tick, or the tick above (``up=True``) / below (``up=False``)."""
    if tick <= 0:
        return price
    rounding = ROUND_HALF_UP if up is None else (ROUND_CEILING if up else ROUND_FLOOR)
    return (price / tick).quantize(_WHOLE, rounding=rounding) * tick


def round_trip_cost(
    instrument: Instrument,
    qty: Decimal,
    entry: Decimal,
    exit_: Decimal,
    slippage_bps: Decimal = Decimal(0),
    *,
    on: date,
) -> Decimal:
    """Fees of a buy at ``entry`` and a sell at ``exit_`` plus slippage on both legs, in the quote
    currency: what a trade must earn before it earns anything. The legs are priced as the paper
    broker fills them (slipped and rounded to the tick against the trader), so on a cheap stock
    a few bps of slippage cost a whole tick here too. Both legs pay the rates of trade date ``on``."""
    buy_price = slipped_price(instrument, Side.BUY, entry, slippage_bps)
    sell_price = slipped_price(instrument, Side.SELL, exit_, slippage_bps)
    slippage = (qty * (buy_price - entry) + qty * (exit_ - sell_price)) * instrument.multiplier
    buy_fee = fees(instrument, Side.BUY, qty, buy_price, on=on)
    return buy_fee + fees(instrument, Side.SELL, qty, sell_price, on=on) + slippage
