"""Trading costs per market, from the instrument's fee schedule. Used by the paper broker to charge
fills and by the tools to estimate the net profit of a proposal before it is made."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from venues.models import CnEquityFees, CryptoFees, Instrument, Liquidity, Side, UsEquityFees

CENT = Decimal("0.01")
CRYPTO_FEE_QUANTUM = Decimal("0.00000001")
BPS = Decimal(10_000)


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
    instrument: Instrument, side: Side, qty: Decimal, price: Decimal, liquidity: Liquidity = Liquidity.TAKER
) -> FeeBreakdown:
    notional = qty * price
    schedule = instrument.fees
    if isinstance(schedule, CnEquityFees):
        # Brokers charge at least the minimum commission per order; the stamp duty is on sells only.
        commission = max(_cents(notional * schedule.commission_rate), schedule.min_commission)
        stamp = _cents(notional * schedule.stamp_duty_rate) if side is Side.SELL and schedule.stamp_duty_applies else 0
        return FeeBreakdown(
            commission=commission,
            stamp_duty=Decimal(stamp),
            transfer_fee=_cents(notional * schedule.transfer_fee_rate),
        )
    if isinstance(schedule, CryptoFees):
        bps = schedule.maker_bps if liquidity is Liquidity.MAKER else schedule.taker_bps
        return FeeBreakdown(commission=(notional * bps / BPS).quantize(CRYPTO_FEE_QUANTUM, rounding=ROUND_HALF_UP))
    if isinstance(schedule, UsEquityFees):
        commission = _cents(qty * schedule.commission_per_share)
        regulatory = Decimal(0)
        if schedule.regulatory_fees and side is Side.SELL:
            # Both the SEC fee and the FINRA TAF are rounded up to the next cent.
            sec = _cents(notional * schedule.sec_fee_rate, ROUND_CEILING)
            taf = min(_cents(qty * schedule.taf_per_share, ROUND_CEILING), schedule.taf_max)
            regulatory = sec + taf
        return FeeBreakdown(commission=commission, regulatory_fee=regulatory)
    raise TypeError(f"no cost model for fee schedule {type(schedule).__name__}")


def fees(
    instrument: Instrument, side: Side, qty: Decimal, price: Decimal, liquidity: Liquidity = Liquidity.TAKER
) -> Decimal:
    return fee_breakdown(instrument, side, qty, price, liquidity).total


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
    return (price / tick).quantize(Decimal(1), rounding=rounding) * tick


def round_trip_cost(
    instrument: Instrument, qty: Decimal, entry: Decimal, exit_: Decimal, slippage_bps: Decimal = Decimal(0)
) -> Decimal:
    """Fees of a buy at ``entry`` and a sell at ``exit_`` plus slippage on both legs, in the quote
    currency: what a trade must earn before it earns anything. The legs are priced as the paper
    broker fills them (slipped and rounded to the tick against the trader), so on a cheap stock
    a few bps of slippage cost a whole tick here too."""
    buy_price = slipped_price(instrument, Side.BUY, entry, slippage_bps)
    sell_price = slipped_price(instrument, Side.SELL, exit_, slippage_bps)
    slippage = qty * (buy_price - entry) + qty * (exit_ - sell_price)
    return fees(instrument, Side.BUY, qty, buy_price) + fees(instrument, Side.SELL, qty, sell_price) + slippage
