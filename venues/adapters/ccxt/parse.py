"""ccxt's unified structures (markets, tickers, OHLCV rows, funding rates) as domain models."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from venues.models import ASSUMED_FUNDING, PERPETUAL_SHORT, AssetClass, CryptoFees, FundingTerms, Instrument, Quote
from venues.timeframes import BAR_COLUMNS, OHLCV, Timeframe, empty_bars

# ccxt's precision modes (ccxt.base.decimal_to_precision): what market['precision'] numbers mean.
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        result = Decimal(str(value))
    except ArithmeticError:
        return None
    return result if result.is_finite() else None


def step(value: Any, precision_mode: int) -> Decimal | None:
    """A precision entry as a step: itself in TICK_SIZE mode, 10**-n for n decimal places; None for
    significant digits (no fixed step) or when absent."""
    number = _dec(value)
    if number is None or number <= 0:
        return None
    if precision_mode == TICK_SIZE:
        return number.normalize()
    if precision_mode == DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(number))
    return None


def _bps(rate: Decimal) -> Decimal:
    """A fee rate (0.001) in basis points (10), written without an exponent."""
    value = (rate * 10_000).normalize()
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value  # type: ignore[operator]


def is_usdt_perpetual(market: dict[str, Any]) -> bool:
    return bool(market.get("swap")) and bool(market.get("linear")) and market.get("settle") == "USDT"


def wanted(market: dict[str, Any], types: Sequence[str]) -> bool:
    """Whether a ccxt market becomes an instrument: active spot, or an active USDT-margined linear
    perpetual, of the configured types."""
    if market.get("active") is False:
        return False
    if market.get("spot") and "spot" in types:
        return True
    return "swap" in types and is_usdt_perpetual(market)


def funding_terms(rate: dict[str, Any] | None, exchange: str) -> FundingTerms:
    """FundingTerms of a USDT perpetual from ccxt's funding-rate structure: the current rate,
    signed as published (positive: longs pay shorts), scaled to 8 hours (some contracts settle
    every 4 h or 1 h); the assumed default when none was read."""
    value = _dec((rate or {}).get("fundingRate"))
    if value is None:
        return ASSUMED_FUNDING
    interval = str((rate or {}).get("interval") or "8h")
    hours = Decimal(interval[:-1]) if interval.endswith("h") and interval[:-1].isdigit() else Decimal(8)
    per_8h = value * Decimal(8) / hours
    stamp = (rate or {}).get("timestamp") or (rate or {}).get("fundingTimestamp")
    when = f" at {datetime.fromtimestamp(stamp / 1000, UTC):%Y-%m-%d %H:%M} UTC" if stamp else ""
    payer = "longs pay shorts" if value > 0 else "shorts pay longs" if value < 0 else "nobody pays"
    return FundingTerms(
        rate_8h=per_8h,
        basis=f"{exchange} current funding {value * 100:+.4f}% per {interval}{when}: {payer}",
    )


def instrument(venue: str, market: dict[str, Any], precision_mode: int, funding: FundingTerms | None) -> Instrument:
    """The Instrument of a ccxt market. Quantities are in base units: a swap quoted in contracts of
    ``contractSize`` base units has its amount step and minimum amount (``min_qty``) multiplied by
    it."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    perpetual = is_usdt_perpetual(market)
    contract = _dec(market.get("contractSize")) if perpetual else None
    unit = contract if contract is not None and contract > 0 else Decimal(1)
    amount_step = step(precision.get("amount"), precision_mode)
    min_amount = _dec((limits.get("amount") or {}).get("min"))
    qty_step = ((amount_step or min_amount or Decimal("0.00000001")) * unit).normalize()
    tick = step(precision.get("price"), precision_mode) or Decimal("0.00000001")
    min_cost = _dec((limits.get("cost") or {}).get("min")) or Decimal(0)
    maker, taker = _dec(market.get("maker")), _dec(market.get("taker"))
    fees = CryptoFees(
        maker_bps=_bps(maker) if maker is not None else CryptoFees().maker_bps,
        taker_bps=_bps(taker) if taker is not None else CryptoFees().taker_bps,
    )
    quote_ccy = str(market.get("quote") or "")
    kind = "USDT-margined perpetual" if perpetual else "spot"
    return Instrument(
        venue=venue,
        symbol=str(market["symbol"]),
        asset_class=AssetClass.CRYPTO,
        currency=str(market.get("settle") or quote_ccy) if perpetual else quote_ccy,
        lot_size=qty_step,
        qty_step=qty_step,
        tick_size=tick,
        min_notional=min_cost,
        min_qty=((min_amount or Decimal(0)) * unit).normalize(),
        fees=fees,
        calendar="24/7",
        timeframe="1m",
        name=f"{market.get('base')}/{quote_ccy} {kind}",
        perpetual=perpetual,
        funding=(funding or ASSUMED_FUNDING) if perpetual else None,
        short=PERPETUAL_SHORT if perpetual else None,
        no_short_reason="" if perpetual else "spot crypto is never sold short here (only perpetuals are)",
    )


def quote(symbol: str, ticker: dict[str, Any], now: datetime) -> Quote | None:
    """A Quote from a ccxt ticker; None when it has no last price."""
    last = ticker.get("last")
    if last is None:
        last = ticker.get("close")
    if last is None:
        return None
    stamp = ticker.get("timestamp")
    # Never after our clock: an exchange clock a little ahead must not date a quote in our future.
    ts = min(datetime.fromtimestamp(stamp / 1000, UTC), now) if stamp else now
    change = ticker.get("percentage")
    return Quote(
        symbol=symbol,
        ts=ts,
        last=float(last),
        bid=None if ticker.get("bid") is None else float(ticker["bid"]),
        ask=None if ticker.get("ask") is None else float(ticker["ask"]),
        volume=None if ticker.get("baseVolume") is None else float(ticker["baseVolume"]),
        change_pct=None if change is None else float(change),
    )


def bars_frame(rows: Sequence[Sequence[Any]], tf: Timeframe) -> pd.DataFrame:
    """ccxt OHLCV rows ``[ms, open, high, low, close, volume]`` (any order, duplicates allowed) as a
    bar frame sorted by open time; a missing volume is 0."""
    if not rows:
        return empty_bars()
    frame = pd.DataFrame([list(r[:6]) for r in rows], columns=["ms", *OHLCV])
    frame = frame.drop_duplicates("ms", keep="last").sort_values("ms")
    index = pd.DatetimeIndex(pd.to_datetime(frame["ms"].to_numpy(dtype="int64"), unit="ms", utc=True), name="ts")
    out = pd.DataFrame(
        {c: frame[c].fillna(0.0 if c == "volume" else float("nan")).to_numpy(dtype="float64") for c in OHLCV},
        index=index.as_unit("us"),
    )
    out["close_time"] = out.index + tf.delta
    return out[BAR_COLUMNS]
