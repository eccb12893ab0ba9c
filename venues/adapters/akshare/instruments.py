"""Symbols and instruments of the akshare venue: A-shares and ETFs on Shanghai, Shenzhen and
Beijing (``600519.SH``, ``000001.SZ``, ``510300.SH``), and SHFE main-contract futures (``cu0``).

Eastmoney names a security by ``secid`` = ``<market>.<code>`` (market 1 = Shanghai, 0 = Shenzhen and
Beijing); Sina names a main contract in capitals (``CU0``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from venues.models import AssetClass, CnEquityFees, CnFutureFees, Instrument, ShortTerms

VENUE = "akshare"
CALENDAR = "XSHG"
EQUITY_TIMEFRAME = "5m"  # the finest Eastmoney kline (1m comes from another endpoint, 5 days deep)
FUTURE_TIMEFRAME = "1m"

_EQUITY = re.compile(r"^(\d{6})\.(SH|SZ|BJ)$", re.IGNORECASE)
_MARKET_OF = {"SH": 1, "SZ": 0, "BJ": 0}


class SymbolFormatError(ValueError):
    pass


def parse_equity(symbol: str) -> tuple[str, str]:
    """("600519", "SH") from "600519.SH"; SymbolFormatError when it is not code.SH|SZ|BJ."""
    match = _EQUITY.match(symbol.strip())
    if match is None:
        raise SymbolFormatError(
            f"{symbol!r} is not an A-share symbol: write the six-digit code and the exchange, "
            "e.g. 600519.SH, 000001.SZ, 430047.BJ"
        )
    return match.group(1), match.group(2).upper()


def secid(symbol: str) -> str:
    """Eastmoney's id of an A-share symbol: "1.600519" for 600519.SH."""
    code, exchange = parse_equity(symbol)
    return f"{_MARKET_OF[exchange]}.{code}"


def equity_symbol(code: str, market: int) -> str:
    """Our symbol from Eastmoney's code and market number (f12, f13 of its listings)."""
    if market == 1:
        return f"{code}.SH"
    if code.startswith(("4", "8", "92")):
        return f"{code}.BJ"
    return f"{code}.SZ"


def is_etf(code: str) -> bool:
    return code.startswith(("51", "56", "58", "15"))


def price_limit(code: str, exchange: str, name: str) -> Decimal:
    """The daily band around the previous close: 20% on ChiNext (300, 301) and STAR (688, 689),
    30% on Beijing, 5% for a main-board name under risk warning (ST, *ST), else 10%."""
    if exchange == "BJ":
        return Decimal("0.30")
    if code.startswith(("300", "301", "688", "689")):
        return Decimal("0.20")
    if "ST" in name.upper():
        return Decimal("0.05")
    return Decimal("0.10")


# Exchange-traded funds pay neither stamp duty nor the transfer fee; ETF prices tick by 0.001.
ETF_FEES = CnEquityFees(stamp_duty_applies=False, transfer_fee_applies=False)


def equity_instrument(symbol: str, name: str) -> Instrument:
    code, exchange = parse_equity(symbol)
    etf = is_etf(code)
    return Instrument(
        venue=VENUE,
        symbol=f"{code}.{exchange}",
        name=name,
        asset_class=AssetClass.CN_EQUITY,
        currency="CNY",
        lot_size=Decimal(100),
        qty_step=Decimal(1),
        min_qty=Decimal(100),  # a buy is at least one lot; an odd remainder is sold whole
        tick_size=Decimal("0.001") if etf else Decimal("0.01"),
        fees=ETF_FEES if etf else CnEquityFees(),
        calendar=CALENDAR,
        timeframe=EQUITY_TIMEFRAME,
        settlement_days=1,
        price_limit_pct=Decimal("0.10") if etf else price_limit(code, exchange, name),
    )


@dataclass(frozen=True, slots=True)
class FutureSpec:
    product: str
    name: str
    multiplier: Decimal  # units of the underlying per lot (the price is per unit)
    unit: str
    tick: Decimal  # CNY per unit
    margin_rate: Decimal  # share of the contract value held as margin, longs and shorts alike
    fees: CnFutureFees
    price_limit_pct: Decimal


# SHFE contract specifications (shfe.com.cn, 标准合约: copper 5 t/lot, tick 10 CNY/t; gold 1000 g/lot,
# tick 0.02 CNY/g; silver 15 kg/lot, tick 1 CNY/kg) and its published trading fees (交易手续费:
# copper 0.005% of the value, gold 10 CNY per lot, silver 0.005% of the value, each side). The
# margin rates are assumptions (SHFE's minimum plus a broker's usual add-on); the exchange changes
# its margins and price limits by notice, so check them before relying on a figure.
FUTURES: dict[str, FutureSpec] = {
    "cu": FutureSpec(
        "cu",
        "沪铜主连 (SHFE copper, main contract)",
        Decimal(5),
        "t",
        Decimal(10),
        Decimal("0.10"),
        CnFutureFees(rate=Decimal("0.00005"), basis="SHFE copper: 0.005% of the value per side"),
        Decimal("0.07"),
    ),
    "au": FutureSpec(
        "au",
        "沪金主连 (SHFE gold, main contract)",
        Decimal(1000),
        "g",
        Decimal("0.02"),
        Decimal("0.10"),
        CnFutureFees(per_lot=Decimal(10), basis="SHFE gold: 10 CNY per lot per side"),
        Decimal("0.07"),
    ),
    "ag": FutureSpec(
        "ag",
        "沪银主连 (SHFE silver, main contract)",
        Decimal(15),
        "kg",
        Decimal(1),
        Decimal("0.12"),
        CnFutureFees(rate=Decimal("0.00005"), basis="SHFE silver: 0.005% of the value per side"),
        Decimal("0.08"),
    ),
}

_FUTURE = re.compile(r"^([a-z]+)0$", re.IGNORECASE)


def future_spec(symbol: str) -> FutureSpec:
    match = _FUTURE.match(symbol.strip())
    spec = FUTURES.get(match.group(1).lower()) if match else None
    if spec is None:
        raise SymbolFormatError(
            f"{symbol!r} is not a served SHFE main contract; served: {', '.join(p + '0' for p in FUTURES)}"
        )
    return spec


def sina_symbol(symbol: str) -> str:
    """Sina's name of a main contract: "CU0" for cu0."""
    return f"{future_spec(symbol).product.upper()}0"


def future_instrument(symbol: str) -> Instrument:
    spec = future_spec(symbol)
    return Instrument(
        venue=VENUE,
        symbol=f"{spec.product}0",
        name=spec.name,
        asset_class=AssetClass.CN_FUTURE,
        currency="CNY",
        lot_size=Decimal(1),
        qty_step=Decimal(1),
        tick_size=spec.tick,
        fees=spec.fees,
        calendar=CALENDAR,
        timeframe=FUTURE_TIMEFRAME,
        settlement_days=0,
        price_limit_pct=spec.price_limit_pct,
        multiplier=spec.multiplier,
        margin_rate=spec.margin_rate,
        short=ShortTerms(
            initial_margin=spec.margin_rate,
            basis=f"a futures short holds the same {spec.margin_rate:.0%} margin as a long",
        ),
    )
