"""The deterministic screen: a universe of symbols in, a few ranked long candidates out.

The screen never calls a policy. Its cost grows with the shortlist, not with the universe:

1. **one batched** ``MarketData.snapshot`` call for the whole universe;
2. a prefilter and rank **on the quotes alone**: symbols with no quote yet (no final bar) and,
   when ``min_change_pct`` is set, symbols whose change since the previous session close is below
   it are dropped; the rest are ranked by that change, strongest first (ties by symbol; a quote
   without a change ranks last), and the first ``shortlist`` are kept. Quotes only rank: every
   rule below reads bars cut at ``now`` (a live quote may carry a tick time a hair after ``now``);
3. **bars only for the shortlist**: the base timeframe first, and the confirm timeframes only for
   the symbols that pass the base trend rule, each timeframe as one batch
   (``venues.base.bars_many``): a venue with multi-symbol bars (Alpaca) serves a batch with one
   paged request series, any other is asked symbol by symbol, ``concurrency`` at a time. So a
   screen makes at most ``1 + len(confirm)`` batches (one more per distinct coarser native
   timeframe), i.e. at most ``shortlist * (1 + len(confirm))`` ``bars`` calls, whatever the size
   of the universe.

Bars per timeframe
    Each timeframe (base and each confirm one) is fetched from the venue with its own ``lookback``
    bars, rather than deriving the higher timeframes from one long base window with
    ``tools.indicators.compute_mtf``. Warming EMA50/MACD/ADX on a 1d confirmation from 15m bars
    would need ``lookback`` days of 15m bars (19,200 bars for 200 days of crypto, dozens of paged
    requests on a live exchange) for every shortlisted symbol on every scan; four requests of
    ``lookback`` bars give every timeframe the same warm-up for a fraction of the cost. The
    venue's higher bars are the right ones: the replay venue resamples with the instrument's
    exchange calendar (a 1d bar is the trading session, final at the session close), and live
    venues serve their exchange's own candles. Causality: ``bars`` returns final bars only, and
    the screen also asks for bars opening at or before ``now`` and drops any bar closing after
    ``now``, so nothing unfinished at ``now`` is used even if the venue's clock runs ahead of it.
    Only the latest values are used, so no cross-timeframe alignment is needed.

Where data allows
    A symbol whose finest bars are coarser than the base timeframe (an A-share with daily bars
    only, under a 15m screen) is screened on its own timeframe and confirmed on the configured
    confirm timeframes coarser than that; if none is, on the next coarser standard timeframe
    (1d -> 1w). Its reasons say so. A confirm timeframe with fewer than ``MIN_CONFIRM_BARS`` final
    bars (or one the venue cannot serve) is dropped with a note and earns no points; the base
    timeframe needs ``MIN_BASE_BARS`` bars or the symbol is skipped.

Rules (long only; base = the base timeframe, C = each confirm timeframe, in ascending order)

=============================  =================================================  ===========
rule                           condition                                          weight
=============================  =================================================  ===========
trend (required)               close > EMA20 > EMA50 on base                      0.20
momentum                       50 <= RSI(14) <= 70 on base: up, not overbought    0.15
MACD                           MACD(12,26,9) histogram > 0 on base                0.10
MACD rising                    histogram above its previous bar's value           0.05
trend strength                 ADX(14) > 20 and +DI > -DI on base                 0.15
not overextended               close - EMA20 <= 1.5 x ATR(14) on base             0.10
confirmation (first required)  on each C: close > EMA20 and RSI(14) > 50          0.25 shared
=============================  =================================================  ===========

The confirmation weight is shared equally by the confirm timeframes in effect for the symbol; one
that meets only one of its two conditions earns half its share, a dropped one nothing (no data is
no evidence). The first confirm timeframe that has enough bars must meet both conditions. The
score is the sum of the weights earned, in [0, 1], rounded to 4 places. A symbol failing a
required rule is skipped with that rule's numbers; the others are ranked by score (ties by
symbol), those with ``score >= min_score`` are candidates, and the first ``top_n`` of them are
returned. Every shortlisted symbol's outcome is explained in words with the numbers, and every
symbol of the universe is either a candidate or in ``skipped`` with a reason.

Unknown symbols
    An unknown symbol is a mistake in the watchlist, not a market condition: the venue's
    ``UnknownSymbolError`` (which lists the valid symbols) propagates out of ``screen``. The replay
    venue raises it from ``snapshot``, i.e. before any bars are fetched. A live venue instead leaves
    a symbol it does not list out of its batched snapshot, so one bad symbol cannot fail the batch:
    such a symbol is skipped with the venue's ``UnknownSymbolError`` message and the others are
    screened. Other ``VenueError`` s of a symbol's bars (a timeframe the venue cannot serve, the
    venue not answering) are per symbol, reported by the batch rather than raised: on the base
    timeframe the symbol lands in ``skipped`` with the message, on a confirm timeframe that check
    is dropped; one failing symbol never stops the screen of the others.
    A symbol the snapshot has no quote for is skipped too, with the venue's reason when the venue
    keeps one (a ``quote_problems`` mapping: a live venue whose exchange stopped quoting it).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.indicators import compute
from tools.models import Candidate
from venues.base import MarketData, bars_many
from venues.clock import ensure_utc
from venues.errors import UnknownSymbolError, VenueError
from venues.models import Instrument, Quote
from venues.timeframes import TIMEFRAMES, Timeframe, empty_bars, parse_timeframe

__all__ = [
    "BASE_SPECS",
    "CONFIRM_SPECS",
    "MIN_BASE_BARS",
    "MIN_CONFIRM_BARS",
    "WEIGHTS",
    "ScreenConfig",
    "ScreenResult",
    "screen",
]

BASE_SPECS = ("ema:20", "ema:50", "rsi:14", "macd:12,26,9", "adx:14", "atr:14")
CONFIRM_SPECS = ("ema:20", "rsi:14")
# EMA50 has its first value on bar 50 and MACD's histogram on bar 34 (35 to see it rise); ten
# more bars let them settle a little. More is better: ``lookback`` (default 200) is what is asked.
MIN_BASE_BARS = 60
# EMA20 has its first value on bar 20, RSI(14) on bar 15; ten more bars of settling.
MIN_CONFIRM_BARS = 30

WEIGHTS: dict[str, float] = {
    "trend": 0.20,
    "rsi": 0.15,
    "macd": 0.10,
    "macd_rising": 0.05,
    "adx": 0.15,
    "extension": 0.10,
    "confirm": 0.25,
}
RSI_LOW, RSI_HIGH = 50.0, 70.0
ADX_MIN = 20.0
MAX_EXTENSION_ATR = 1.5


class ScreenConfig(BaseModel):
    """What the screen looks at. Timeframes are names from ``venues.timeframes.TIMEFRAMES``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeframe: str = "15m"  # the base timeframe
    confirm: tuple[str, ...] = ("1h", "4h", "1d")  # higher timeframes, stored ascending
    lookback: int = Field(default=200, le=10_000)  # bars fetched per timeframe
    shortlist: int = Field(default=50, ge=1)  # symbols that get bars
    top_n: int = Field(default=5, ge=1)  # candidates returned at most
    min_score: float = Field(default=0.6, ge=0, le=1)
    min_change_pct: float | None = Field(default=None, allow_inf_nan=False)  # prefilter; None = off
    concurrency: int = Field(default=8, ge=1)  # shortlisted symbols fetched at once

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        return parse_timeframe(value).name

    @field_validator("confirm", mode="before")
    @classmethod
    def _confirm(cls, value: object) -> object:
        if isinstance(value, str):  # "1h" would otherwise become ("1", "h")
            return (value,)
        return value

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, value: int) -> int:
        if value < MIN_BASE_BARS:
            raise ValueError(
                f"lookback {value} is too short: the rules need at least {MIN_BASE_BARS} bars "
                "(EMA50 plus MACD/ADX warm-up); 200 is the default"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ScreenConfig:
        base = parse_timeframe(self.timeframe)
        if not self.confirm:
            raise ValueError("confirm needs at least one timeframe coarser than the base timeframe")
        parsed = [parse_timeframe(tf) for tf in self.confirm]
        names = [tf.name for tf in parsed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"confirm timeframes must be distinct; repeated: {', '.join(duplicates)}")
        finer = [tf.name for tf in parsed if tf.delta <= base.delta]
        if finer:
            raise ValueError(
                f"confirm timeframes must be coarser than the base timeframe {base.name}; "
                f"not coarser: {', '.join(finer)}"
            )
        if self.top_n > self.shortlist:
            raise ValueError(f"top_n {self.top_n} is larger than shortlist {self.shortlist}")
        ordered = tuple(tf.name for tf in sorted(parsed, key=lambda tf: tf.delta))
        object.__setattr__(self, "confirm", ordered)  # frozen model: normalise once, here
        return self

    @property
    def base_tf(self) -> Timeframe:
        return parse_timeframe(self.timeframe)

    @property
    def confirm_tfs(self) -> tuple[Timeframe, ...]:
        return tuple(parse_timeframe(tf) for tf in self.confirm)


class ScreenResult(BaseModel):
    """``candidates`` ranked best first; every other symbol of the universe is in ``skipped``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    universe: int  # distinct symbols asked for
    shortlisted: tuple[str, ...]  # in prefilter rank order: these, and only these, got bars
    candidates: tuple[Candidate, ...]
    skipped: dict[str, str]  # symbol -> why it is not a candidate, in universe order


# --- one symbol ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Skip:
    reason: str


@dataclass(frozen=True, slots=True)
class _Scored:
    symbol: str
    score: float
    candidate: Candidate
    missed: tuple[str, ...]  # scored rules not met, for the skip reason below min_score


@dataclass(frozen=True, slots=True)
class _Fmt:
    decimals: int

    def price(self, value: float) -> str:
        return f"{value:.{self.decimals}f}"

    @staticmethod
    def small(value: float) -> str:  # MACD histogram, ATR: price units, often below the tick's precision
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _decimals(tick: Decimal) -> int:
    exponent = tick.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 2


def _next_coarser(tf: Timeframe) -> Timeframe | None:
    coarser = [t for t in TIMEFRAMES.values() if t.delta > tf.delta]
    return min(coarser, key=lambda t: t.delta) if coarser else None


def _iso(moment: pd.Timestamp | datetime) -> str:
    return pd.Timestamp(moment).strftime("%Y-%m-%dT%H:%MZ")


async def _fetch_many(
    market: MarketData, symbols: list[str], tf: Timeframe, config: ScreenConfig, now: pd.Timestamp
) -> dict[str, pd.DataFrame | VenueError]:
    """The last ``lookback`` final bars of ``tf`` at ``now`` of each symbol in one batch request
    (venues.base.bars_many), or the VenueError of the symbol; an UnknownSymbolError propagates."""
    # Bars opening at or before now; at most the last of them (still forming at now) closes after
    # now, when the venue's clock runs ahead of the screen's now. One bar more than the lookback
    # keeps the window, hence the indicator values, the same in both cases.
    batch = await bars_many(
        market, symbols, tf.name, end=now.to_pydatetime(), limit=config.lookback + 1, concurrency=config.concurrency
    )
    out: dict[str, pd.DataFrame | VenueError] = {}
    for symbol in symbols:
        error = batch.errors.get(symbol)
        if isinstance(error, UnknownSymbolError):
            raise error
        if error is not None:
            out[symbol] = error
            continue
        frame = batch.bars.get(symbol)
        if frame is None:
            frame = empty_bars()
        if len(frame) and frame["close_time"].iloc[-1] > now:
            frame = frame[frame["close_time"] <= now]
        out[symbol] = frame.iloc[-config.lookback :]
    return out


async def _fetch_groups(
    market: MarketData, wanted: Mapping[str, Sequence[Timeframe]], config: ScreenConfig, now: pd.Timestamp
) -> dict[tuple[str, str], pd.DataFrame | VenueError]:
    """Bars of every (symbol, timeframe) in ``wanted`` (symbol -> timeframes), one batch request per
    timeframe, the timeframes at once; by (symbol, timeframe name)."""
    by_tf: dict[Timeframe, list[str]] = {}
    for symbol, tfs in wanted.items():
        for tf in tfs:
            by_tf.setdefault(tf, []).append(symbol)
    tasks = [asyncio.ensure_future(_fetch_many(market, group, tf, config, now)) for tf, group in by_tf.items()]
    try:
        answers = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # an UnknownSymbolError (or a cancelled scan) stops the others too
            task.cancel()
        raise
    return {
        (symbol, tf.name): frame for tf, answer in zip(by_tf, answers, strict=True) for symbol, frame in answer.items()
    }


def _latest(values: pd.DataFrame, tf: Timeframe) -> dict[str, float]:
    row = values.to_numpy()[-1]
    return {f"{col}_{tf.name}": float(v) for col, v in zip(values.columns, row, strict=True) if not math.isnan(v)}


@dataclass(frozen=True, slots=True)
class _Confirm:
    tf: Timeframe
    close: float
    ema: float
    rsi: float

    @property
    def above(self) -> bool:
        return self.close > self.ema

    @property
    def strong(self) -> bool:
        return self.rsi > RSI_LOW

    def describe(self, fmt: _Fmt) -> str:
        where = "above" if self.above else "at or below"
        rsi = f"RSI(14) {self.rsi:.1f} {'>' if self.strong else '<='} 50"
        met = self.above + self.strong
        verdict = ("not confirmed", "partly confirmed", "confirmed")[met]
        return f"{self.tf.name}: close {fmt.price(self.close)} {where} EMA20 {fmt.price(self.ema)}, {rsi}: {verdict}"


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one shortlisted symbol is screened on: its base and confirm timeframes."""

    instrument: Instrument
    base: Timeframe
    confirms: tuple[Timeframe, ...]
    reasons: tuple[str, ...]  # a note when the symbol's own bars are coarser than the base timeframe

    @property
    def fmt(self) -> _Fmt:
        return _Fmt(_decimals(self.instrument.tick_size))


def _plan(instrument: Instrument, config: ScreenConfig) -> _Plan | _Skip:
    symbol = instrument.symbol
    native = parse_timeframe(instrument.timeframe)
    base = config.base_tf
    reasons: list[str] = []
    confirms = list(config.confirm_tfs)
    if native.delta > base.delta:
        confirms = [tf for tf in confirms if tf.delta > native.delta]
        note = ""
        if not confirms:
            nxt = _next_coarser(native)
            confirms = [nxt] if nxt is not None else []
            note = f" (no configured confirm timeframe is coarser than {native.name})"
        if not confirms:
            return _Skip(f"only {native.name} bars and no coarser timeframe to confirm on")
        base = native
        reasons.append(
            f"{symbol}: only {native.name} bars, base timeframe {config.timeframe} is finer; screened on "
            f"{native.name}, confirmed on {', '.join(tf.name for tf in confirms)}{note}"
        )
    return _Plan(instrument, base, tuple(confirms), tuple(reasons))


@dataclass(frozen=True, slots=True)
class _Based:
    """A symbol that passed the base trend rule, with what its base timeframe scored."""

    plan: _Plan
    bars: pd.DataFrame
    values: pd.DataFrame
    close: float
    score: float
    reasons: tuple[str, ...]
    missed: tuple[str, ...]


def _rate_base(plan: _Plan, bars: pd.DataFrame | VenueError, now: pd.Timestamp) -> _Based | _Skip:
    base, fmt = plan.base, plan.fmt
    if isinstance(bars, VenueError):
        return _Skip(f"no {base.name} bars: {bars}")
    if len(bars) < MIN_BASE_BARS:
        return _Skip(f"not enough history: {len(bars)} {base.name} bars at {_iso(now)}, need {MIN_BASE_BARS}")
    reasons = list(plan.reasons)
    values = compute(bars, BASE_SPECS)
    latest = values.to_numpy()[-1]
    v = dict(zip(values.columns, latest, strict=True))
    hist_prev = float(values["MACDh_12_26_9"].to_numpy()[-2])
    close = float(bars["close"].to_numpy()[-1])
    ema20, ema50, rsi = float(v["EMA_20"]), float(v["EMA_50"]), float(v["RSI_14"])
    hist, adx, dmp, dmn, atr = (float(v[k]) for k in ("MACDh_12_26_9", "ADX_14", "DMP_14", "DMN_14", "ATRr_14"))
    needed = (close, ema20, ema50, rsi, hist, hist_prev, adx, dmp, dmn, atr)
    if any(math.isnan(x) for x in needed):
        return _Skip(f"indicators not yet defined on {base.name} after {len(bars)} bars")
    tf = base.name

    # Required: the base trend.
    if not close > ema20 > ema50:
        if close <= ema20:
            why = f"close {fmt.price(close)} at or below EMA20 {fmt.price(ema20)}"
        else:
            why = f"EMA20 {fmt.price(ema20)} at or below EMA50 {fmt.price(ema50)}"
        return _Skip(f"trend rule failed on {tf}: {why} (needs close > EMA20 > EMA50)")
    score = WEIGHTS["trend"]
    missed: list[str] = []
    reasons.append(f"{tf} uptrend: close {fmt.price(close)} > EMA20 {fmt.price(ema20)} > EMA50 {fmt.price(ema50)}")

    if RSI_LOW <= rsi <= RSI_HIGH:
        score += WEIGHTS["rsi"]
        reasons.append(f"RSI(14) {rsi:.1f} on {tf}, in the 50-70 band")
    else:
        state = "overbought (above 70)" if rsi > RSI_HIGH else "below 50, momentum not up"
        reasons.append(f"RSI(14) {rsi:.1f} on {tf}: {state}, no points")
        missed.append(f"RSI(14) {rsi:.1f} outside 50-70")

    if hist > 0:
        score += WEIGHTS["macd"]
        if hist > hist_prev:
            score += WEIGHTS["macd_rising"]
            reasons.append(f"MACD histogram {fmt.small(hist)} > 0 and rising from {fmt.small(hist_prev)} on {tf}")
        else:
            reasons.append(f"MACD histogram {fmt.small(hist)} > 0 but not rising (was {fmt.small(hist_prev)}) on {tf}")
            missed.append("MACD histogram not rising")
    else:
        reasons.append(f"MACD histogram {fmt.small(hist)} <= 0 on {tf}: no points")
        missed.append(f"MACD histogram {fmt.small(hist)} <= 0")

    if adx > ADX_MIN and dmp > dmn:
        score += WEIGHTS["adx"]
        reasons.append(f"ADX(14) {adx:.1f}: trending, +DI {dmp:.1f} > -DI {dmn:.1f}")
    else:
        why = f"ADX(14) {adx:.1f} <= 20, no clear trend" if adx <= ADX_MIN else f"+DI {dmp:.1f} <= -DI {dmn:.1f}"
        reasons.append(f"{why} on {tf}: no points")
        missed.append(why)

    stretch = (close - ema20) / atr if atr > 0 else math.inf
    if stretch <= MAX_EXTENSION_ATR:
        score += WEIGHTS["extension"]
        reasons.append(
            f"not overextended: close {stretch:.2f} ATR above EMA20 (ATR(14) {fmt.small(atr)}), within 1.5 ATR"
        )
    else:
        reasons.append(f"overextended: close {stretch:.2f} ATR above EMA20 (ATR(14) {fmt.small(atr)}): no points")
        missed.append(f"close {stretch:.2f} ATR above EMA20")

    return _Based(plan, bars, values, close, score, tuple(reasons), tuple(missed))


def _rate_confirms(venue: str, based: _Based, frames: Sequence[pd.DataFrame | VenueError]) -> _Skip | _Scored:
    """Add the confirm timeframes' points (``frames`` in the order of ``based.plan.confirms``)."""
    plan, values, fmt = based.plan, based.values, based.plan.fmt
    symbol, tf, confirms = plan.instrument.symbol, plan.base.name, plan.confirms
    score, reasons, missed = based.score, list(based.reasons), list(based.missed)
    indicators = _latest(values, plan.base)
    share = WEIGHTS["confirm"] / len(confirms)
    checked: list[_Confirm] = []
    notes: list[str] = []
    for ctf, frame in zip(confirms, frames, strict=True):
        if isinstance(frame, VenueError):
            notes.append(f"{ctf.name} confirmation dropped: {frame}")
            continue
        if len(frame) < MIN_CONFIRM_BARS:
            notes.append(f"{ctf.name} confirmation dropped: {len(frame)} bars, need {MIN_CONFIRM_BARS}")
            continue
        cvalues = compute(frame, CONFIRM_SPECS)
        crow = cvalues.to_numpy()[-1]
        c = _Confirm(ctf, float(frame["close"].to_numpy()[-1]), float(crow[0]), float(crow[1]))
        if math.isnan(c.ema) or math.isnan(c.rsi):
            notes.append(f"{ctf.name} confirmation dropped: indicators not yet defined")
            continue
        checked.append(c)
        indicators.update(_latest(cvalues, ctf))
    if not checked:
        return _Skip("no confirmation possible: " + "; ".join(notes))
    first = checked[0]
    if not (first.above and first.strong):
        return _Skip(f"first confirmation failed: {first.describe(fmt)}")
    for c in checked:
        score += share * ((c.above + c.strong) / 2)
        reasons.append(c.describe(fmt))
        if not (c.above and c.strong):
            missed.append(f"{c.tf.name} not fully confirmed")
    reasons.extend(notes)
    missed.extend(f"{n.split(' ', 1)[0]} confirmation dropped" for n in notes)

    score = round(min(1.0, max(0.0, score)), 4)
    candidate = Candidate(
        venue=venue,
        symbol=symbol,
        timeframe=tf,
        bar_close=pd.Timestamp(based.bars["close_time"].iloc[-1]).to_pydatetime(),
        last_price=based.close,
        score=score,
        reasons=tuple(reasons),
        indicators=indicators,
    )
    return _Scored(symbol, score, candidate, tuple(missed))


# --- the universe ----------------------------------------------------------------------------


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _change(quote: Quote) -> str:
    return "no change (no previous close)" if quote.change_pct is None else f"change {quote.change_pct:+.2f}%"


def _prefilter(
    universe: list[str],
    quotes: dict[str, Quote],
    config: ScreenConfig,
    now: datetime,
    skipped: dict[str, str],
    problems: Mapping[str, str],
) -> list[str]:
    eligible: list[tuple[float, str]] = []
    floor = config.min_change_pct
    for symbol in universe:
        quote = quotes.get(symbol)
        if quote is None:
            skipped[symbol] = f"no quote at {_iso(now)}: {problems.get(symbol, 'no final bar yet')}"
        elif floor is not None and (quote.change_pct is None or quote.change_pct < floor):
            skipped[symbol] = f"{_change(quote)} below min_change_pct {floor:+.2f}%"
        else:
            change = quote.change_pct
            eligible.append((-change if change is not None else math.inf, symbol))
    eligible.sort()
    shortlisted = [symbol for _, symbol in eligible[: config.shortlist]]
    for rank, (_, symbol) in enumerate(eligible[config.shortlist :], start=config.shortlist + 1):
        skipped[symbol] = (
            f"not shortlisted: {_change(quotes[symbol])} ranks {_ordinal(rank)} of {len(eligible)} "
            f"(shortlist {config.shortlist})"
        )
    return shortlisted


async def _listed(
    market: MarketData, universe: list[str], quotes: dict[str, Quote], skipped: dict[str, str]
) -> list[str]:
    """The universe less the symbols the venue does not list, each skipped with the venue's error. A
    live venue leaves an unknown symbol out of its batched snapshot (so it cannot fail the others);
    when a quote is missing, the venue's (cached) instrument list says whether the symbol exists."""
    unquoted = [symbol for symbol in universe if symbol not in quotes]
    if not unquoted:
        return universe
    known = {instrument.symbol for instrument in await market.instruments()}
    for symbol in unquoted:
        if symbol not in known:
            skipped[symbol] = str(UnknownSymbolError(symbol, market.name, known))
    return [symbol for symbol in universe if symbol not in skipped]


async def _screen_shortlist(
    market: MarketData, shortlisted: list[str], config: ScreenConfig, now: pd.Timestamp
) -> dict[str, _Skip | _Scored]:
    """Each shortlisted symbol's outcome, in shortlist order: the base timeframe's bars of all of
    them in one batch, then each confirm timeframe's bars of those that passed the base trend rule
    in one batch per timeframe."""
    gate = asyncio.Semaphore(config.concurrency)

    async def instrument(symbol: str) -> Instrument:
        async with gate:
            return await market.instrument(symbol)

    instruments = await asyncio.gather(*(instrument(s) for s in shortlisted))
    plans = {s: _plan(i, config) for s, i in zip(shortlisted, instruments, strict=True)}
    outcomes: dict[str, _Skip | _Scored | _Based] = {s: p for s, p in plans.items() if isinstance(p, _Skip)}
    planned = {s: p for s, p in plans.items() if isinstance(p, _Plan)}
    base_bars = await _fetch_groups(market, {s: (p.base,) for s, p in planned.items()}, config, now)
    for symbol, plan in planned.items():
        outcomes[symbol] = _rate_base(plan, base_bars[(symbol, plan.base.name)], now)
    # Confirmations, fetched only for the symbols whose base trend holds.
    based = {s: o for s, o in outcomes.items() if isinstance(o, _Based)}
    confirm_bars = await _fetch_groups(market, {s: b.plan.confirms for s, b in based.items()}, config, now)
    for symbol, b in based.items():
        outcomes[symbol] = _rate_confirms(market.name, b, [confirm_bars[(symbol, ctf.name)] for ctf in b.plan.confirms])
    done: dict[str, _Skip | _Scored] = {}
    for symbol in shortlisted:
        outcome = outcomes[symbol]
        assert not isinstance(outcome, _Based)
        done[symbol] = outcome
    return done


async def screen(market: MarketData, symbols: Sequence[str], config: ScreenConfig, *, now: datetime) -> ScreenResult:
    """Screen ``symbols`` on ``market`` at ``now`` (aware); see the module docstring for the rules."""
    now = ensure_utc(now)
    now_ts = pd.Timestamp(now)
    universe = list(dict.fromkeys(symbols))
    if not universe:
        return ScreenResult(universe=0, shortlisted=(), candidates=(), skipped={})
    quotes = await market.snapshot(universe)
    # A live venue may say why it had no quote for a symbol (delisted, halted): that is the reason shown.
    problems = getattr(market, "quote_problems", None)
    skipped: dict[str, str] = {}
    listed = await _listed(market, universe, quotes, skipped)
    shortlisted = _prefilter(listed, quotes, config, now, skipped, problems if isinstance(problems, Mapping) else {})

    outcomes = await _screen_shortlist(market, shortlisted, config, now_ts)
    scored: list[_Scored] = []
    for symbol, outcome in outcomes.items():
        if isinstance(outcome, _Skip):
            skipped[symbol] = outcome.reason
        else:
            scored.append(outcome)

    scored.sort(key=lambda s: (-s.score, s.symbol))
    passing = [s for s in scored if s.score >= config.min_score]
    for s in scored:
        if s.score < config.min_score:
            skipped[s.symbol] = (
                f"score {s.score:.2f} below min_score {config.min_score:.2f}; missed: {'; '.join(s.missed)}"
            )
    for rank, s in enumerate(passing[config.top_n :], start=config.top_n + 1):
        skipped[s.symbol] = f"score {s.score:.2f} ranks {_ordinal(rank)}, beyond top_n {config.top_n}"
    chosen = tuple(s.candidate for s in passing[: config.top_n])
    return ScreenResult(
        universe=len(universe),
        shortlisted=tuple(shortlisted),
        candidates=chosen,
        skipped={symbol: skipped[symbol] for symbol in universe if symbol in skipped},
    )
