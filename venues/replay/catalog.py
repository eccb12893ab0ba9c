"""What the replay venues serve: three markets, each a venue over real recorded bars shipped in
``venues/replay/data`` (see PROVENANCE.md there for sources, licences and caveats)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from venues.models import (
    ASSUMED_FUNDING,
    PERPETUAL_SHORT,
    US_MARGIN_SHORT,
    AssetClass,
    CnEquityFees,
    CryptoFees,
    FundingTerms,
    Instrument,
    ShortTerms,
    UsEquityFees,
)

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True, slots=True)
class ReplaySeries:
    instrument: Instrument
    file: str  # file name inside the data directory; its timeframe is instrument.timeframe


@dataclass(frozen=True, slots=True)
class ReplayMarket:
    key: str  # what ReplayVenue(market=...) takes: "crypto", "cn", "us"
    venue: str  # the venue name: "replay-crypto", ...
    calendar: str  # exchange-calendars name
    series: tuple[ReplaySeries, ...]

    @property
    def symbols(self) -> list[str]:
        return [s.instrument.symbol for s in self.series]


def _crypto() -> ReplayMarket:
    venue, calendar = "replay-crypto", "24/7"

    def pair(
        symbol: str,
        name: str,
        currency: str,
        fees: CryptoFees,
        min_notional: int,
        file: str,
        short: ShortTerms | None = None,
        funding: FundingTerms | None = None,
    ) -> ReplaySeries:
        return ReplaySeries(
            Instrument(
                venue=venue,
                symbol=symbol,
                name=name,
                asset_class=AssetClass.CRYPTO,
                currency=currency,
                lot_size=Decimal("0.0001"),
                qty_step=Decimal("0.0001"),
                tick_size=Decimal("0.01"),
                min_notional=Decimal(min_notional),
                fees=fees,
                calendar=calendar,
                timeframe="1h",
                perpetual=funding is not None,
                funding=funding,
                short=short,
            ),
            file,
        )

    return ReplayMarket(
        key="crypto",
        venue=venue,
        calendar=calendar,
        series=(
            # Alpaca crypto's tier-1 (lowest volume) fees.
            pair(
                "BTC/USD",
                "Bitcoin / US dollar (Alpaca)",
                "USD",
                CryptoFees(maker_bps=Decimal(15), taker_bps=Decimal(25)),
                10,
                "BTC-USD_1h_2021_alpaca.csv",
            ),
            # The bars are the USDT-M perpetual's, the only ETH series covering all of 2021 (see
            # PROVENANCE.md), so it trades as that perpetual: it may be sold short, and either side
            # settles funding at an assumed rate (no funding history is shipped). The fees stay
            # Binance's spot 0.10% (above the perpetual's), the cautious side.
            pair(
                "ETH/USDT",
                "Ether / Tether perpetual (Binance USDT-M)",
                "USDT",
                CryptoFees(maker_bps=Decimal(10), taker_bps=Decimal(10)),
                5,
                "ETH-USDT_1h_2021_binance-perp.csv",
                short=PERPETUAL_SHORT,
                funding=ASSUMED_FUNDING,
            ),
        ),
    )


def _cn() -> ReplayMarket:
    venue, calendar = "replay-cn", "XSHG"

    def stock(symbol: str, name: str, timeframe: str, file: str, tick: str, fees: CnEquityFees) -> ReplaySeries:
        return ReplaySeries(
            Instrument(
                venue=venue,
                symbol=symbol,
                name=name,
                asset_class=AssetClass.CN_EQUITY,
                currency="CNY",
                lot_size=Decimal(100),
                qty_step=Decimal(1),
                min_qty=Decimal(100),  # a buy is at least one lot; an odd remainder is sold whole
                tick_size=Decimal(tick),
                fees=fees,
                calendar=calendar,
                timeframe=timeframe,
                settlement_days=1,
                price_limit_pct=Decimal("0.10"),
            ),
            file,
        )

    # Exchange-traded funds pay neither stamp duty nor the transfer fee.
    etf_fees = CnEquityFees(stamp_duty_applies=False, transfer_fee_applies=False)
    return ReplayMarket(
        key="cn",
        venue=venue,
        calendar=calendar,
        series=(
            stock("510300.SH", "沪深300ETF", "5m", "510300.SH_5m_2021-04-22_2022-01-18_tdx.csv", "0.001", etf_fees),
            stock("600519.SH", "贵州茅台", "1d", "600519.SH_1d_2019-2021_baostock.csv", "0.01", CnEquityFees()),
            stock("601318.SH", "中国平安", "1d", "601318.SH_1d_2019-2021_baostock.csv", "0.01", CnEquityFees()),
            stock("000001.SZ", "平安银行", "1d", "000001.SZ_1d_2019-2021_baostock.csv", "0.01", CnEquityFees()),
        ),
    )


def _us() -> ReplayMarket:
    venue, calendar = "replay-us", "XNYS"

    def stock(symbol: str, name: str, timeframe: str, file: str) -> ReplaySeries:
        return ReplaySeries(
            Instrument(
                venue=venue,
                symbol=symbol,
                name=name,
                asset_class=AssetClass.US_EQUITY,
                currency="USD",
                lot_size=Decimal(1),
                qty_step=Decimal(1),
                tick_size=Decimal("0.01"),
                fees=UsEquityFees(),
                calendar=calendar,
                timeframe=timeframe,
                # The paper account is a margin account: large caps are easy to borrow.
                short=US_MARGIN_SHORT,
            ),
            file,
        )

    return ReplayMarket(
        key="us",
        venue=venue,
        calendar=calendar,
        series=(
            # Prices are split-adjusted for the 2022 20:1 split: about 1/20 of what traded in 2021.
            stock("AMZN", "Amazon.com (split-adjusted)", "1h", "AMZN_1h_2021_alpaca.csv"),
            stock("SPY", "SPDR S&P 500 ETF", "1m", "SPY_1m_2021-07-01_2021-08-13_lumibot.csv"),
        ),
    )


MARKETS: dict[str, ReplayMarket] = {m.key: m for m in (_crypto(), _cn(), _us())}


def find_market(market: str) -> ReplayMarket:
    """A market by key ("cn") or by venue name ("replay-cn")."""
    key = market.strip().lower() if isinstance(market, str) else market
    for m in MARKETS.values():
        if key in (m.key, m.venue):
            return m
    valid = ", ".join(f"{m.key} ({m.venue})" for m in MARKETS.values())
    raise ValueError(f"unknown replay market {market!r}; valid markets: {valid}")
