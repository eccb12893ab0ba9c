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
    margin_rate: Decimal  # share of the contract value held as margin, longs and shorts alike (the exchange's)
    fees: CnFutureFees
    price_limit_pct: Decimal


# Every figure below with its source (looked up 2026-11-30 with the pages' text in hand):
# - Contract size and tick (checked, unchanged):
#   copper 5 t/lot, 10 CNY/t: SHFE copper contract specifications,
#   https://www.shfe.com.cn/eng/Market/Futures/Metal/cu_f/ContractText ("Amended as per SQBF [2023] No. 2");
#   gold 1000 g/lot, 0.02 CNY/g: Gold Futures Rules of the SHFE, arts. 3 and 5,
#   https://tsite.shfe.com.cn/eng/services/rules/shfe/911404888.html (updated 2024-10-22);
#   silver 15 kg/lot, 1 CNY/kg: Silver Futures Rules of the SHFE, arts. 3 and 5,
#   https://tsite.shfe.com.cn/eng/services/rules/shfe/911404889.html (updated 2024-10-22).
# - Trading fee per side (checked, unchanged): CU 0.05 per mille of the value (0.005%), AU 10 CNY a
#   lot, AG 0.05 per mille: "SHFE Fees and Charges" (SHFE English site, Data / Business Data / Fees,
#   "Updated December 31, 2021"), read from the copy at https://592365.xyz/eng/reports/businessdata/fees
#   (the page on shfe.com.cn itself was not found). SHFE adds that special rules (by circular and
#   settlement parameters, e.g. for closing a position opened the same day) may apply: not modelled.
# - Margin (general positions, the exchange's own; a broker adds its share on top, not modelled) and
#   daily price limit: set by the exchange by notice, so they change. The figures are those of SHFE's
#   notice effective from the settlement of 2026-01-22 (gold AU2606-AU2702, silver AG2605-AG2701;
#   the nearer contracts got 1-2 points more), as reported on 2026-01-21 by
#   https://www.investor.com.tw/onlineNews/NewsContent.asp?articleNo=14202601210048 and in a futures
#   broker's notice, https://edu.cdfco.com.cn/gongsigonggao/3133.html. Later moves were reported but
#   not checked against a second source (margin / limit: copper 11% / 9% from 2026-01-28,
#   http://fund.caiding5.cn/shichang/20935.html; gold 19% / 17% and silver 22% / 20% from 2026-02-09,
#   reposts of a Jin10 flash only). No source was found for the figures in force today: check SHFE's
#   settlement parameters before relying on one. The standard contracts' floors: minimum margin 5%
#   (copper, SHFE page above), 4% (gold: https://qianshan.com.cn/data/product/7; silver:
#   https://www.citicsf.com/en/content/614226.html, 2017), price limit 3% of the last settlement price.
#   Before: 10% / 7% copper, 10% / 7% gold, 12% / 8% silver, marked as assumptions, without a source.
FUTURES: dict[str, FutureSpec] = {
    "cu": FutureSpec(
        "cu",
        "沪铜主连 (SHFE copper, main contract)",
        Decimal(5),
        "t",
        Decimal(10),
        Decimal("0.10"),
        CnFutureFees(rate=Decimal("0.00005"), basis="SHFE copper: 0.005% of the value per side"),
        Decimal("0.08"),
    ),
    "au": FutureSpec(
        "au",
        "沪金主连 (SHFE gold, main contract)",
        Decimal(1000),
        "g",
        Decimal("0.02"),
        Decimal("0.17"),
        CnFutureFees(per_lot=Decimal(10), basis="SHFE gold: 10 CNY per lot per side"),
        Decimal("0.15"),
    ),
    "ag": FutureSpec(
        "ag",
        "沪银主连 (SHFE silver, main contract)",
        Decimal(15),
        "kg",
        Decimal(1),
        Decimal("0.17"),
        CnFutureFees(rate=Decimal("0.00005"), basis="SHFE silver: 0.005% of the value per side"),
        Decimal("0.15"),
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
