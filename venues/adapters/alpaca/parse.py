"""Alpaca's JSON (alpaca-py in raw-data mode) into the domain's models. Pure functions.

Shapes (Alpaca's v2 APIs):
- asset: ``{"symbol", "name", "class": "us_equity", "status", "tradable", "shortable",
  "easy_to_borrow", "fractionable", "price_increment"?...}``
- bar: ``{"t": ISO open time, "o", "h", "l", "c", "v", "n", "vw"}``; a 1Day bar is stamped at
  midnight New York and is the session's bar, final at the session close.
- snapshot: ``{"latestTrade": {"t", "p"}, "latestQuote": {"bp", "ap"}, "minuteBar", "dailyBar",
  "prevDailyBar"}`` (any may be null).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from venues.calendars import previous_session, session, sessions_between
from venues.errors import UnknownTimeframeError
from venues.models import US_MARGIN_SHORT, AssetClass, Instrument, Quote, UsEquityFees
from venues.options import CONTRACT_MULTIPLIER, OccSymbol, OptionQuote
from venues.timeframes import BAR_COLUMNS, Timeframe, empty_bars

CALENDAR = "XNYS"
# Alpaca's bar timeframes for ours (alpaca-py's TimeFrame renders the same strings).
TIMEFRAMES: dict[str, str] = {
    "1m": "1Min",
    "5m": "5Min",
    "15m": "15Min",
    "30m": "30Min",
    "1h": "1Hour",
    "4h": "4Hour",
    "1d": "1Day",
    "1w": "1Week",
}
# Fractional shares trade in steps of 1e-9 share, from a notional of 1 USD (Alpaca's rules).
FRACTIONAL_STEP = Decimal("0.000000001")
FRACTIONAL_MIN_NOTIONAL = Decimal(1)
PENNY = Decimal("0.01")


def alpaca_timeframe(tf: Timeframe) -> str:
    try:
        return TIMEFRAMES[tf.name]
    except KeyError:
        raise UnknownTimeframeError(tf.name, TIMEFRAMES) from None


def instrument_from_asset(asset: Mapping[str, Any], venue: str) -> Instrument:
    """A tradable us_equity asset as an Instrument: fractionable -> a 1e-9 step with a 1 USD
    minimum notional, else whole shares (at least one); shortable and easy to borrow -> the margin
    account's short terms; zero commission, with the SEC and FINRA TAF fees Alpaca passes on to sells."""
    fractionable = bool(asset.get("fractionable"))
    increment = asset.get("price_increment")
    tick = Decimal(str(increment)) if increment else PENNY
    shortable, easy = bool(asset.get("shortable")), bool(asset.get("easy_to_borrow"))
    reason = ""
    if not shortable:
        reason = "Alpaca does not allow shorting it"
    elif not easy:
        reason = "it is hard to borrow at Alpaca (only easy-to-borrow stocks are shorted here)"
    return Instrument(
        venue=venue,
        symbol=str(asset["symbol"]),
        name=str(asset.get("name") or ""),
        asset_class=AssetClass.US_EQUITY,
        currency="USD",
        lot_size=Decimal(1) if not fractionable else FRACTIONAL_STEP,
        qty_step=FRACTIONAL_STEP if fractionable else Decimal(1),
        tick_size=tick,
        min_notional=FRACTIONAL_MIN_NOTIONAL if fractionable else Decimal(0),
        min_qty=Decimal(0) if fractionable else Decimal(1),  # a whole share where fractions are not traded
        fees=UsEquityFees(regulatory_fees=True),
        calendar=CALENDAR,
        timeframe="1m",
        short=US_MARGIN_SHORT if shortable and easy else None,
        no_short_reason=reason,
    )


def option_instrument(occ: OccSymbol, venue: str) -> Instrument:
    """A US equity option contract (whole contracts, price ticks of 0.01, no commission at Alpaca;
    never sold short here: a short option is a spread's leg, not a standalone order)."""
    return Instrument(
        venue=venue,
        symbol=occ.format(),
        name=occ.describe(),
        asset_class=AssetClass.US_OPTION,
        currency="USD",
        tick_size=PENNY,
        fees=UsEquityFees(regulatory_fees=True),
        calendar=CALENDAR,
        timeframe="1m",
        multiplier=Decimal(CONTRACT_MULTIPLIER),  # prices are per share, positions in contracts
        no_short_reason="options are sold only as the short leg of a spread",
    )


def is_tradable_equity(asset: Mapping[str, Any]) -> bool:
    return asset.get("class") == "us_equity" and bool(asset.get("tradable")) and asset.get("status") == "active"


def _close_times(opens: pd.DatetimeIndex, tf: Timeframe) -> pd.DatetimeIndex:
    """When each bar is final: open + length intraday; the session close for a 1Day bar (stamped at
    midnight New York); the last session close of the week for a 1Week bar."""
    if tf.name not in ("1d", "1w"):
        return opens + tf.delta
    closes: list[pd.Timestamp] = []
    for ts in opens:
        day = ts.tz_convert("America/New_York").date()
        if tf.name == "1d":
            found = session(CALENDAR, day)
            closes.append(pd.Timestamp(found.close) if found else ts + tf.delta)
        else:
            week = sessions_between(CALENDAR, day, day + timedelta(days=6))
            closes.append(pd.Timestamp(week[-1].close) if week else ts + tf.delta)
    return pd.DatetimeIndex(closes).tz_convert("UTC")


def window_start(tf: Timeframe, end: datetime, bars: int) -> datetime:
    """Where a multi-symbol bars request should start so that ``[start, end]`` holds at least
    ``bars`` bars of ``tf`` (the one forming at ``end`` included) for a stock that traded through
    every XNYS regular session: midnight New York of the session one before the earliest needed
    (a margin for Alpaca's bar alignment). Extended hours only add bars; a stock that skipped
    sessions gets fewer, which the caller checks."""
    end = pd.Timestamp(end).tz_convert("UTC").to_pydatetime()
    local_end = pd.Timestamp(end).tz_convert("America/New_York")
    if tf.name == "1w":  # one bar a week, stamped at the week's first session
        first = (local_end - pd.Timedelta(weeks=bars + 1)).normalize()
        return first.tz_convert("UTC").to_pydatetime()
    count = 0
    until = local_end.date()
    earliest = until
    while count < bars:
        chunk = sessions_between(CALENDAR, until - timedelta(days=60), until)
        if not chunk:  # before the calendar's first session: nothing older to count
            break
        for found in reversed(chunk):
            if found.open > end:
                continue
            earliest = found.day
            count += 1 if tf.name == "1d" else _intraday_bars(found.open, min(found.close, end), tf)
            if count >= bars:
                break
        until = chunk[0].day - timedelta(days=1)
    margin = previous_session(CALENDAR, earliest)
    day = margin.day if margin is not None else earliest
    return pd.Timestamp(day, tz="America/New_York").tz_convert("UTC").to_pydatetime()


def _intraday_bars(open_: datetime, close: datetime, tf: Timeframe) -> int:
    """Bars of ``tf`` (aligned on the epoch) with some of ``[open_, close)`` in them."""
    if close <= open_:
        return 0
    first = pd.Timestamp(open_).floor(tf.delta)
    return -(-(pd.Timestamp(close) - first) // tf.delta)


def bars_frame(rows: Sequence[Mapping[str, Any]], tf: Timeframe) -> pd.DataFrame:
    """Alpaca bars (any order, duplicates allowed) -> a bar frame (venues.timeframes layout),
    ascending by open time, the last copy of a duplicated bar kept."""
    if not rows:
        return empty_bars()
    index = pd.DatetimeIndex([pd.Timestamp(r["t"]) for r in rows], name="ts").tz_convert("UTC").as_unit("us")
    frame = pd.DataFrame(
        {
            "open": [float(r["o"]) for r in rows],
            "high": [float(r["h"]) for r in rows],
            "low": [float(r["l"]) for r in rows],
            "close": [float(r["c"]) for r in rows],
            "volume": [float(r["v"]) for r in rows],
        },
        index=index,
    )
    frame["close_time"] = _close_times(index, tf).as_unit("us")
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame[BAR_COLUMNS]


def quote_from_snapshot(symbol: str, snap: Mapping[str, Any] | None) -> Quote | None:
    """The latest trade as ``last`` (else the minute bar's close), the quote's bid/ask, the
    session's volume and the change against the previous session's close; None with no price."""
    if not snap:
        return None
    trade = snap.get("latestTrade") or {}
    quote = snap.get("latestQuote") or {}
    minute = snap.get("minuteBar") or {}
    daily = snap.get("dailyBar") or {}
    prev = snap.get("prevDailyBar") or {}
    if trade.get("p") is not None:
        last, ts = float(trade["p"]), trade["t"]
    elif minute.get("c") is not None:
        last, ts = float(minute["c"]), minute["t"]
    else:
        return None
    prev_close = prev.get("c")
    bid, ask = quote.get("bp"), quote.get("ap")
    return Quote(
        symbol=symbol,
        ts=pd.Timestamp(ts).tz_convert("UTC").floor("us").to_pydatetime(),
        last=last,
        bid=float(bid) if bid else None,
        ask=float(ask) if ask else None,
        volume=float(daily["v"]) if daily.get("v") is not None else None,
        change_pct=(last / float(prev_close) - 1.0) * 100.0 if prev_close else None,
    )


def page_token_position(token: str) -> tuple[str, datetime] | None:
    """(symbol, time of the last item served) from a market-data page token, when it is Alpaca's
    readable form ``base64("SYMBOL|D|2022-02-02T05:00:00.000000000Z")``; None for other forms
    (Alpaca also issues opaque ones, e.g. for descending pages)."""
    try:
        text = base64.b64decode(token, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = text.split("|")
    if len(parts) != 3 or not parts[0]:
        return None
    try:
        moment = pd.Timestamp(parts[2])
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return parts[0], moment.tz_convert("UTC").to_pydatetime()


def make_page_token(symbol: str, moment: datetime) -> str:
    """The inverse of page_token_position (for fakes of the API)."""
    stamp = pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
    return base64.b64encode(f"{symbol}|D|{stamp}".encode("ascii")).decode("ascii")


def iso(moment: datetime | date) -> str:
    if isinstance(moment, datetime):
        return pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat()


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def option_quote(symbol: str, snap: Mapping[str, Any] | None) -> OptionQuote:
    """An option snapshot of Alpaca's chain (``latestQuote``, ``latestTrade``,
    ``impliedVolatility``, ``greeks``) as an OptionQuote; the contract terms come from the OCC
    symbol (OccSymbolError if it is not one)."""
    occ = OccSymbol.parse(symbol)
    snap = snap or {}
    quote = snap.get("latestQuote") or {}
    trade = snap.get("latestTrade") or {}
    greeks = snap.get("greeks") or {}
    return OptionQuote(
        symbol=occ.format(),
        underlying=occ.underlying,
        expiry=occ.expiry,
        right=occ.right,
        strike=occ.strike,
        bid=_number(quote.get("bp")) or None,
        ask=_number(quote.get("ap")) or None,
        last=_number(trade.get("p")),
        implied_volatility=_number(snap.get("impliedVolatility")),
        delta=_number(greeks.get("delta")),
        gamma=_number(greeks.get("gamma")),
        theta=_number(greeks.get("theta")),
        vega=_number(greeks.get("vega")),
        rho=_number(greeks.get("rho")),
    )
