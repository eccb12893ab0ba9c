"""Reading the facts of one decision: market data, indicators, account, today's own trades and the
risk budget left. Pure reads (besides remembering the day's starting equity), so the gather node
can run again at any time."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import numpy as np
import pandas as pd

from agent.deps import AgentDeps
from agent.policies import DecisionInput
from storage.signals import KILL_SWITCH_KEY
from tools.exits import is_standalone_close
from tools.indicators import compute
from tools.models import Candidate
from tools.risk import RiskContext
from tools.spreads import SPREAD_CLOSE_SUFFIX
from venues import calendars
from venues.base import Venue
from venues.errors import VenueError
from venues.models import ZERO, Instrument, OrderStatus, Side
from venues.options import OccSymbol, OptionOrders, is_occ_symbol

BASE_SPECS = ("rsi:14", "ema:20", "ema:50", "macd:12,26,9", "atr:14", "bbands:20,2", "adx:14")
RECENT_BARS = 20
CORRELATION_BARS = 100


def venue_rules(instrument: Instrument) -> tuple[str, ...]:
    rules = []
    if instrument.lot_size > instrument.qty_step:
        rules.append(f"buys in lots of {instrument.lot_size}")
    if instrument.settlement_days:
        rules.append("T+1: shares bought today cannot be sold before the next session")
    if instrument.price_limit_pct is not None:
        rules.append(f"daily price limit +/-{instrument.price_limit_pct:.0%} around the previous close")
    if instrument.min_notional > 0:
        rules.append(f"minimum order value {instrument.min_notional} {instrument.currency}")
    if instrument.min_qty > max(instrument.qty_step, instrument.lot_size):
        rules.append(f"minimum order quantity {instrument.min_qty}")
    if instrument.funding is not None:
        rules.append(
            f"perpetual funding {instrument.funding.rate_8h * 100:+.4f}% per 8 h of the position's value "
            f"(positive: longs pay shorts; negative: shorts pay longs); {instrument.funding.basis}"
        )
    refusal = instrument.short_refusal()
    if refusal is not None or instrument.short is None:
        rules.append(f"no SHORT: {refusal}")
    else:
        terms = instrument.short
        rules.append(
            f"SHORT (sell-to-open) allowed: stop above the entry, targets below; initial margin "
            f"{terms.initial_margin:.0%} of the value; {terms.basis}"
        )
    return tuple(rules)


async def decision_input(
    deps: AgentDeps,
    *,
    signal_id: str,
    venue_name: str,
    symbol: str,
    timeframe: str,
    candidate: Candidate | None,
    notes: tuple[str, ...] = (),
) -> DecisionInput:
    venue = deps.venue(venue_name)
    instrument = await venue.instrument(symbol)
    now = deps.clock.now()
    bars = await venue.bars(symbol, timeframe, limit=deps.config.lookback_bars)
    facts_notes: list[str] = list(notes)
    indicators: dict[str, float] = dict(candidate.indicators) if candidate else {}
    if not bars.empty:
        latest = compute(bars, BASE_SPECS).iloc[-1]
        for column, value in latest.items():
            indicators.setdefault(f"{column}_{timeframe}", float(value))
    else:
        facts_notes.append(f"no {timeframe} bars for {symbol} yet")
    indicators = {k: v for k, v in indicators.items() if np.isfinite(v)}
    recent = bars.iloc[-RECENT_BARS:]
    position_qty, avg_cost, sellable = await _position(venue, instrument, now)
    account = await venue.broker_required().account(instrument.currency)
    trades_today, _ = await _todays_entries(venue, instrument, symbol, now)
    risk = deps.config.risk_for(venue_name)
    return DecisionInput(
        signal_id=signal_id,
        venue=venue_name,
        symbol=symbol,
        timeframe=timeframe,
        now=now,
        currency=instrument.currency,
        last_price=float(bars["close"].iloc[-1]) if not bars.empty else 0.0,
        tick_size=instrument.tick_size,
        candidate=candidate,
        indicators=indicators,
        bars=len(bars),
        recent_closes=tuple(float(x) for x in recent["close"]),
        swing_low=float(recent["low"].min()) if not recent.empty else None,
        position_qty=position_qty,
        position_avg_cost=avg_cost,
        sellable_qty=sellable,
        equity=account.equity,
        cash=account.available_cash,
        trades_today=trades_today,
        trades_left_today=max(risk.max_trades_per_day - trades_today, 0),
        venue_rules=venue_rules(instrument),
        notes=tuple(facts_notes),
    )


async def risk_context(deps: AgentDeps, *, venue_name: str, symbol: str, timeframe: str) -> RiskContext:
    venue = deps.venue(venue_name)
    instrument = await venue.instrument(symbol)
    now = deps.clock.now()
    broker = venue.broker_required()
    account = await broker.account(instrument.currency)
    day = calendars.trading_day(instrument.calendar, now)
    start = deps.signals.set_value_if_absent(
        f"day_start_equity:{venue_name}:{instrument.currency}:{day.isoformat()}",
        {"equity": str(account.equity)},
        at=now,
    )
    trades_today, last_trade_at = await _todays_entries(venue, instrument, symbol, now)
    position_qty, _, sellable = await _position(venue, instrument, now)
    # Shorts count like longs; an option spread's legs count once, as their underlying.
    held = list(dict.fromkeys(_held_as(p.symbol) for p in await broker.positions() if p.qty != 0))
    kill = deps.signals.get_value(KILL_SWITCH_KEY) or {}
    return RiskContext(
        now=now,
        equity=account.equity,
        day_start_equity=Decimal(start["equity"]),
        trades_today=trades_today,
        last_trade_at=last_trade_at,
        open_symbols=tuple(held),
        held_qty=position_qty,
        sellable_qty=sellable,
        killed=bool(kill.get("paused")),
        kill_reason=str(kill.get("reason", "")),
        correlations=await _correlations(venue, symbol, [s for s in held if s != symbol], timeframe),
    )


def _held_as(symbol: str) -> str:
    return OccSymbol.parse(symbol).underlying if is_occ_symbol(symbol) else symbol


async def _position(venue: Venue, instrument: Instrument, now: datetime) -> tuple[Decimal, Decimal, Decimal]:
    """(quantity held, negative for a short; its avg_cost; what of a long may be sold now)."""
    broker = venue.broker_required()
    position = next((p for p in await broker.positions() if p.symbol == instrument.symbol), None)
    if position is None or position.qty == 0:
        return ZERO, ZERO, ZERO
    if position.qty < 0:
        return position.qty, position.avg_cost, ZERO  # a short: nothing to sell
    sellable = position.qty
    if instrument.settlement_days:
        today = calendars.trading_day(instrument.calendar, now).isoformat()
        bought = sum(
            (
                f.qty
                for f in await broker.fills()
                if f.symbol == instrument.symbol and f.side is Side.BUY and f.trade_day == today
            ),
            ZERO,
        )
        sellable = max(position.qty - bought, ZERO)
    return position.qty, position.avg_cost, sellable


async def _todays_entries(
    venue: Venue, instrument: Instrument, symbol: str, now: datetime
) -> tuple[int, datetime | None]:
    """Entries (buys, and shorts: sells with a bracket, that were not refused; never a bracket's
    exits) today on this venue, and the last one in ``symbol`` at any time: the feedback loop that
    keeps the policy from repeating itself."""
    today = calendars.trading_day(instrument.calendar, now)
    count = 0
    last: datetime | None = None
    orders = await venue.broker_required().orders()
    with_bracket = {o.parent for o in orders if o.parent is not None}
    for order in orders:
        entry = order.parent is None and (order.side is Side.BUY or order.client_order_id in with_bracket)
        entry = entry and not is_standalone_close(order)  # a /close buying back a short opens nothing
        if not entry or order.status is OrderStatus.REJECTED:
            continue
        if calendars.trading_day(instrument.calendar, order.created_at) == today:
            count += 1
        if order.symbol == symbol and (last is None or order.created_at > last):
            last = order.created_at
    broker = venue.broker_required()
    if isinstance(broker, OptionOrders):  # an option spread's opening order is an entry in its underlying
        for spread in await broker.legs_orders():
            if spread.client_order_id.endswith(SPREAD_CLOSE_SUFFIX) or spread.status is OrderStatus.REJECTED:
                continue
            if calendars.trading_day(instrument.calendar, spread.created_at) == today:
                count += 1
            if spread.underlying == symbol and (last is None or spread.created_at > last):
                last = spread.created_at
    return count, last


async def _correlations(venue: Venue, symbol: str, held: list[str], timeframe: str) -> dict[str, float]:
    if not held:
        return {}
    base = await venue.bars(symbol, timeframe, limit=CORRELATION_BARS + 1)
    out: dict[str, float] = {}
    for other in held:
        try:
            bars = await venue.bars(other, timeframe, limit=CORRELATION_BARS + 1)
        except VenueError:  # a held symbol without this timeframe is simply not compared
            continue
        joined = pd.concat([base["close"], bars["close"]], axis=1, join="inner").pct_change().dropna()
        if len(joined) >= 20:
            value = float(joined.iloc[:, 0].corr(joined.iloc[:, 1]))
            if np.isfinite(value):
                out[other] = round(value, 4)
    return out
