"""A backtest is the live path on a simulated clock with automatic approval.

The caller (bot/backtest.py) wires the very objects `tradeops run` uses (venues with their paper
brokers, the graph with its policy and risk gate, the scanner, the position manager) on a fresh
database, a :class:`~venues.clock.SimulatedClock` standing at the window's start and an approval
mode of ``all``. :func:`run_backtest` then drives one watchlist's scan job with the
:class:`~scheduler.driver.FastForwardDriver` over the window: each fire fills orders, manages exits
and snapshots equity (the tick), then screens and walks only the candidates through the graph.
Every read of bars goes through the venue, which serves nothing that closes after the clock's now.

The result is built from what the run stored: trades from the trade plans and the paper ledger's
fills, the equity curve from the equity snapshots of each tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from scheduler.backtest import metrics
from scheduler.backtest.events import EquityColumns, EventHorizon, bars_ahead
from scheduler.backtest.metrics import EquityCurve, EquityPoint, TradeRecord
from scheduler.backtest.reference import (
    SMA_CROSS,
    ReferenceParamError,
    ReferenceRun,
    SignalTable,
    SmaCross,
    reference_job,
    reference_trades,
)
from scheduler.driver import FastForwardDriver, ScanTick
from scheduler.jobs import watchlist_jobs
from scheduler.manage import PositionEvent
from scheduler.scan import Scanner, ScanReport
from storage.paper_ledger import RunPaperLedger
from storage.plans import PlanStore
from storage.signals import SignalStatus
from storage.watchlists import WatchlistSpec
from tools.exits import target_order_id
from venues.base import Venue
from venues.clock import SimulatedClock, ensure_utc, epoch_us, from_epoch_us, window_text
from venues.models import Fill, Side
from venues.paper import PaperBroker
from venues.recorded import RecordedBarsVenue
from venues.timeframes import TIMEFRAMES, Timeframe, parse_timeframe

BACKTEST_WATCHLIST = "backtest"
Progress = Callable[[float], None]
"""Called after each fire with the share of the window done, 0..1."""


class BacktestError(Exception):
    """Bad input for a backtest; the message says what is wrong and what is valid."""


@dataclass(frozen=True)
class BacktestSpec:
    """What to test: ``symbols`` of ``venue`` on ``timeframe`` bars over [start, end) UTC, with
    ``capital`` of the symbols' one currency. ``policy`` and ``params`` are recorded as given (the
    caller has put that policy on the graph); ``costs`` False means no fee and no slippage."""

    venue: str
    symbols: tuple[str, ...]
    timeframe: str
    start: datetime
    end: datetime
    policy: str
    capital: Decimal
    profile: str
    costs: bool = True
    params: Mapping[str, float] = field(default_factory=dict)
    model: str | None = None  # the ML policy's model id (recorded; None for the other policies)

    def params_json(self) -> dict[str, Any]:
        return {
            **({"model": self.model} if self.model else {}),
            "venue": self.venue,
            "symbols": list(self.symbols),
            "timeframe": self.timeframe,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "policy": self.policy,
            "policy_params": dict(self.params),
            "capital": str(self.capital),
            "profile": self.profile,
            "costs": self.costs,
        }


@dataclass(frozen=True, repr=False)
class BacktestResult:
    spec: BacktestSpec
    currency: str
    calendar: str
    metrics: dict[str, float | int | None]
    trades: tuple[TradeRecord, ...]
    equity: Sequence[EquityPoint]  # an EquityCurve from a run: its points are made when read
    skipped: tuple[dict[str, str], ...]  # signals the risk gate or execution stopped, with the reason
    signals: dict[str, int]  # signal count by final status
    data_range: dict[str, dict[str, str | int]]  # per symbol: first/last bar in the window, bar count
    elapsed_seconds: float = 0.0
    # An LLM backtest: its calls (sent, cached, cache misses, tokens, cost) and the training cut-off
    # check (agent/llm/cutoff.py), set by the caller; None for the other policies.
    llm: dict[str, Any] | None = None
    possible_leak: bool = False
    possible_leak_reason: str = ""
    fires: int = 0  # fires the clock stopped at; the others were passed over (nothing could happen)

    def __repr__(self) -> str:
        # Short: asyncio.run formats the finished task, result included, when it restores the
        # SIGINT handler; the generated repr of a year of equity points took longer than the run.
        return (
            f"BacktestResult({self.spec.policy} on {self.spec.venue} {','.join(self.spec.symbols)} "
            f"{self.spec.timeframe}, {len(self.trades)} trades, {len(self.equity)} equity points, {self.fires} fires)"
        )

    def to_json(self) -> dict[str, Any]:
        """The `--json` document: ``params``, ``possible_leak`` (and its reason, or null),
        ``metrics``, ``llm`` (an LLM backtest's calls, or null), ``trades``, ``skipped``, ``signals``,
        ``data_range`` and ``equity`` ([ISO time, equity] pairs). Times are ISO-8601 UTC."""
        return {
            "params": {**self.spec.params_json(), "currency": self.currency, "calendar": self.calendar},
            "possible_leak": self.possible_leak,
            "possible_leak_reason": self.possible_leak_reason or None,
            "metrics": self.metrics,
            "llm": self.llm,
            "trades": [trade_json(t) for t in self.trades],
            "skipped": list(self.skipped),
            "signals": self.signals,
            "data_range": self.data_range,
            "equity": [[p.ts.isoformat(), p.equity] for p in self.equity],
        }


def trade_json(trade: TradeRecord) -> dict[str, Any]:
    return {
        "signal_id": trade.signal_id,
        "symbol": trade.symbol,
        "side": trade.side,
        "entry_time": trade.entry_time.isoformat(),
        "entry_price": trade.entry_price,
        "qty": trade.qty,
        "exit_time": trade.exit_time.isoformat() if trade.exit_time else None,
        "exit_price": trade.exit_price,
        "pnl": trade.pnl,
        "fees": trade.fees,
        "r": trade.r,
        "reason": trade.reason,
        "tp1_hit": trade.tp1_hit,
    }


MAX_SCAN_EVERY = pd.Timedelta(days=1)
"""The coarsest timeframe a scan fires on (the candle and session triggers fire at most daily)."""
SCAN_TIMEFRAMES = tuple(name for name, tf in TIMEFRAMES.items() if tf.delta <= MAX_SCAN_EVERY)


def scan_timeframe(name: str) -> Timeframe:
    """The timeframe ``name`` of a backtest's scans; UnknownTimeframeError for an unknown one,
    BacktestError for one coarser than a day (scans fire at most daily), each naming the valid."""
    timeframe = parse_timeframe(name)
    if timeframe.name not in SCAN_TIMEFRAMES:
        usable = ", ".join(SCAN_TIMEFRAMES)
        raise BacktestError(f"--timeframe {name}: scans run at most once a day; use one of {usable}")
    return timeframe


async def check_spec(venue: Venue, spec: BacktestSpec) -> str:
    """Validate the symbols, timeframe and window against the venue; return the one currency."""
    timeframe = scan_timeframe(spec.timeframe)
    if not spec.symbols:
        raise BacktestError("--symbols is empty: name at least one symbol, e.g. --symbols BTC/USD")
    if ensure_utc(spec.end) <= ensure_utc(spec.start):
        start_text, end_text = window_text(spec.start, spec.end)
        raise BacktestError(f"--to {end_text} must be after --from {start_text}")
    if spec.capital <= 0:
        raise BacktestError(f"--capital must be above zero, got {spec.capital}")
    currencies = {s: (await venue.instrument(s)).currency for s in spec.symbols}
    served = getattr(venue, "timeframes", None)  # a recorded venue knows what each symbol has
    if served is not None:
        for symbol in spec.symbols:
            if timeframe.name not in (names := served(symbol)):
                usable = [name for name in names if name in SCAN_TIMEFRAMES]
                raise BacktestError(
                    f"--timeframe {spec.timeframe}: {symbol} on {spec.venue} has no bars that fine; "
                    f"use one of {', '.join(usable)}"
                )
    # Recorded venues (replay, lake) know their range: a window outside it would run, trade nothing
    # and print zeros as if the policy had found nothing.
    available_range = getattr(venue, "available_range", None)
    if available_range is not None:
        for symbol in spec.symbols:
            first, last = available_range(symbol)
            if ensure_utc(spec.start) >= last or ensure_utc(spec.end) <= first:
                raise BacktestError(
                    f"{symbol} on {spec.venue} has bars from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC, "
                    f"none in the window {spec.start:%Y-%m-%d %H:%M} -> {spec.end:%Y-%m-%d %H:%M} UTC: "
                    "choose --from/--to inside it"
                )
    if len(set(currencies.values())) > 1:
        listed = ", ".join(f"{s} ({c})" for s, c in currencies.items())
        raise BacktestError(f"a backtest trades in one currency; these symbols do not: {listed}")
    return next(iter(currencies.values()))


async def run_backtest(
    scanner: Scanner,
    spec: BacktestSpec,
    *,
    calendar: str,
    on_progress: Progress | None = None,
    persist: bool = False,
    fresh_database: bool = False,
) -> BacktestResult:
    """Run ``spec`` through ``scanner`` (whose graph auto-approves) on its simulated clock, which
    must stand at ``spec.start``; ``calendar`` is the venue's ("24/7", "XNYS", "XSHG"). The paper
    ledger and the equity curve stay in memory for the run; ``persist`` writes them to the
    scanner's database at the end (`tradeops backtest --keep-db`), which is otherwise left without
    them: a run's database is thrown away, and writing them took longer than the run's fires.
    ``fresh_database``: that database was created for this run (bot.backtest) and holds no paper
    state or equity point: the broker goes on the run ledger, and the curve is taken from the held
    points, without reading it."""
    started = time.perf_counter()
    deps = scanner.deps
    clock = deps.clock
    if not isinstance(clock, SimulatedClock):
        raise BacktestError("a backtest runs on a simulated clock")
    start, end = ensure_utc(spec.start), ensure_utc(spec.end)
    if clock.now() != start:
        raise BacktestError(f"the clock stands at {clock.now().isoformat()}, not at the start {start.isoformat()}")
    venue = deps.venue(spec.venue)
    currency = await check_spec(venue, spec)
    ledger = await use_run_ledger(scanner, spec, fresh_database)
    deps.plans.hold_equity()  # the equity curve in memory: written once at the end, if at all
    watchlist = WatchlistSpec(
        name=BACKTEST_WATCHLIST, venue=spec.venue, symbols=spec.symbols, timeframe=spec.timeframe, profile=spec.profile
    )
    skipped: list[dict[str, str]] = []

    async def on_scan(_w: WatchlistSpec, tick: ScanTick, _e: list[PositionEvent], report: ScanReport) -> None:
        for walk in report.walks:
            if walk.created and walk.status in (SignalStatus.BLOCKED.value, SignalStatus.ABORTED.value):
                card = walk.card or {}
                failed = [c["detail"] for c in card.get("risk", []) if not c.get("passed", True)]
                skipped.append(
                    {
                        "time": tick.bar_close.isoformat(),
                        "symbol": str(card.get("symbol", "")),
                        "status": walk.status,
                        "reason": "; ".join(failed) or walk.reason,
                    }
                )

    reference: ReferenceRun | None = None
    if spec.policy == SMA_CROSS:
        try:
            reference = ReferenceRun(SmaCross.from_params(spec.params), currency)
        except ReferenceParamError as exc:
            raise BacktestError(str(exc)) from None
        jobs = [reference_job(scanner, watchlist, calendar, reference)]
    else:
        jobs = watchlist_jobs(scanner, [watchlist], lambda _name: calendar, on_scan, trigger="backtest")
    driver = FastForwardDriver(clock, jobs)
    horizon = event_horizon(scanner, spec, reference, currency)
    span = (end - start).total_seconds()
    while (upcoming := driver.next_fire()) is not None and upcoming[1] < end:
        record = await driver.step()
        if record is not None and record.error is not None:
            raise BacktestError(f"the scan at {record.fire_time.isoformat()} failed: {record.error}")
        if horizon is not None:
            if reference is not None and record is not None and reference.tick_at == record.fire_time:
                tick, current = reference.tick_account, reference.account_current
                await horizon.stopped(record.fire_time, tick, tick_current=current)
            else:
                await horizon.stopped()
            if (upcoming := driver.next_fire()) is not None:
                target = min(await horizon.next_event(end), end)
                if target > upcoming[1]:
                    horizon.hold(driver.skip_before(target))
        if on_progress is not None:
            on_progress(min((clock.now() - start).total_seconds() / span, 1.0))
    clock.advance_to(max(clock.now(), end))
    if reference is None:
        await scanner.tick([spec.venue])  # fills and exits up to the end, and the last equity point
    else:
        await reference_tick(venue, deps.plans, spec.venue, currency, clock.now())
    valued = EquityColumns.empty()  # the points the horizon valued (sma_cross), else none
    if horizon is not None:
        await horizon.stopped()  # the fires passed over before the end
        valued = horizon.equity(with_cash=persist)
        if persist:
            times = map(from_epoch_us, valued.times_us.tolist())
            points = list(zip(times, valued.cash, map(Decimal, map(repr, valued.values.tolist())), strict=True))
            deps.plans.snapshot_equity_many(spec.venue, currency, points)
    if persist and ledger is not None:
        ledger.flush()
    if on_progress is not None:
        on_progress(1.0)

    if reference is not None:
        skipped.extend(reference.skipped)
        closes = {s: await last_price(venue, s) for s in spec.symbols}
        last_close = {s: c for s, c in closes.items() if c is not None}
        trades = reference_trades(await venue.broker_required().fills(), last_close)
    else:
        trades = await collect_trades(scanner, spec, currency)
    stored = deps.plans.equity_curve(spec.venue, currency, stored=not fresh_database)
    if persist:  # the horizon's points are in the store too
        valued = EquityColumns.empty()
    equity = merge_curve(valued.times_us, valued.values, stored)
    times_us, start_us, end_us = equity.times_us, epoch_us(start), epoch_us(end)
    if len(times_us) and (times_us[0] < start_us or times_us[-1] > end_us):
        inside = (times_us >= start_us) & (times_us <= end_us)
        equity = EquityCurve(times_us[inside], equity.values[inside])
    if persist:
        deps.plans.flush_equity()
    fills = await venue.broker_required().fills()
    costs = float(sum((f.fee for f in fills), Decimal(0)))
    periods = metrics.periods_per_year(calendar, start.year)
    summary = metrics.summary(equity, trades, periods=periods, start=start, end=end, costs_paid=costs)
    statuses = deps.signals.counts() if reference is None else {}  # sma_cross makes no signals
    return BacktestResult(
        spec=spec,
        currency=currency,
        calendar=calendar,
        metrics=summary,
        trades=trades,
        equity=equity,
        skipped=tuple(skipped),
        signals=dict(sorted(statuses.items())),
        data_range=await data_range(venue, spec),
        elapsed_seconds=round(time.perf_counter() - started, 3),
        fires=len(driver.records),
    )


def merge_curve(times_us: np.ndarray, values: np.ndarray, points: list[tuple[datetime, Decimal]]) -> EquityCurve:
    """The equity curve of ``times_us``/``values`` (in time order) and the store's ``points``, in
    time order (a stored point after a valued one at the same time): usually the store holds only
    the run's last point, after all the others."""
    if not points:
        return EquityCurve(times_us, values)
    stored_us = np.fromiter((epoch_us(ts) for ts, _ in points), dtype=np.int64, count=len(points))
    stored_values = np.fromiter((float(v) for _, v in points), dtype=np.float64, count=len(points))
    merged_us, merged = np.concatenate([times_us, stored_us]), np.concatenate([values, stored_values])
    if len(times_us) and not stored_us[0] > times_us[-1]:
        order = np.argsort(merged_us, kind="stable")
        merged_us, merged = merged_us[order], merged[order]
    return EquityCurve(merged_us, merged)


async def reference_tick(venue: Venue, plans: PlanStore, venue_name: str, currency: str, at: datetime) -> None:
    """The last tick of an sma_cross run, as its scan job ticks: the broker's fills up to ``at``,
    then the equity point of the run's currency. The live tick's approval expiries and trade plans
    are left out: the reference policy makes neither, and their queries (the first of the run's
    database) cost milliseconds."""
    broker = venue.broker_required()
    await broker.process()
    account = await broker.account(currency)
    plans.snapshot_equity(venue_name, currency, cash=account.cash, equity=account.equity, at=at)


async def use_run_ledger(scanner: Scanner, spec: BacktestSpec, fresh_database: bool = False) -> RunPaperLedger | None:
    """Put the backtest venue's paper broker on an in-memory ledger for the run (written to the
    database at the end when the run persists): the broker reads its orders, positions and cash at
    every fire, and the run's fresh database has no other reader meanwhile. None when the broker
    is not a paper one or already holds state (not read on a ``fresh_database``: its queries, the
    first of a new database, took milliseconds)."""
    broker = scanner.deps.venue(spec.venue).broker_required()
    if not isinstance(broker, PaperBroker):
        return None
    if not fresh_database and (await broker.orders() or await broker.fills()):
        return None
    ledger = RunPaperLedger(scanner.deps.plans.engine)
    broker.use_ledger(ledger)
    return ledger


def event_horizon(
    scanner: Scanner, spec: BacktestSpec, reference: ReferenceRun | None, currency: str
) -> EventHorizon | None:
    """The event horizon of a run whose candidate bars are known ahead (sma_cross on recorded
    bars: its signals computed once over the window); None for a run that fires at every bar
    (the rule and LLM policies screen at each fire)."""
    deps = scanner.deps
    venue = deps.venue(spec.venue)
    broker = venue.broker_required()
    if reference is None or not isinstance(venue, RecordedBarsVenue) or not isinstance(broker, PaperBroker):
        return None
    for symbol in spec.symbols:
        bars = bars_ahead(venue, symbol, spec.timeframe, spec.end)
        reference.tables[symbol] = SignalTable.of(reference.policy, bars)
    reference.snapshots = False  # the horizon values every fire's equity point
    return EventHorizon(
        clock=deps.clock,
        venue=venue,
        broker=broker,
        plans=deps.plans,
        venue_name=spec.venue,
        currency=currency,
        next_candidate=reference.next_candidate,
    )


async def data_range(venue: Venue, spec: BacktestSpec) -> dict[str, dict[str, str | int]]:
    """Per symbol, the first and last bar (open times) the window holds and how many; read after
    the run, when the clock stands at the end."""
    out: dict[str, dict[str, str | int]] = {}
    for symbol in spec.symbols:
        bars = await venue.bars(symbol, spec.timeframe, start=spec.start, end=spec.end)
        bars = bars[bars.index < spec.end]
        if bars.empty:
            out[symbol] = {"bars": 0, "first": "", "last": ""}
        else:
            out[symbol] = {"bars": len(bars), "first": bars.index[0].isoformat(), "last": bars.index[-1].isoformat()}
    return out


async def last_price(venue: Venue, symbol: str) -> Decimal | None:
    """The last close the clock has reached, on the symbol's finest bars; None before any."""
    last = await venue.bars(symbol, (await venue.instrument(symbol)).timeframe, limit=1)
    return None if last.empty else Decimal(str(float(last["close"].iloc[-1])))


async def collect_trades(scanner: Scanner, spec: BacktestSpec, currency: str) -> tuple[TradeRecord, ...]:
    """One :class:`TradeRecord` per plan whose entry filled, from the ledger's fills: the entry's fill
    and the fills of its exits (stop, targets, time exit). A plan still open at the end is marked to
    the last close. ``tp1_hit`` is whether the price reached TP1 while the position was open
    (:func:`first_target_reached`), whatever orders the plan's exits were split into."""
    deps = scanner.deps
    venue = deps.venue(spec.venue)
    broker = venue.broker_required()
    bars_of: dict[str, pd.DataFrame] = {}  # per symbol, its finest bars from the start: read once
    by_order: dict[str, list[Fill]] = {}
    for fill in await broker.fills():
        by_order.setdefault(fill.client_order_id, []).append(fill)
    plans = [p for p in deps.plans.all(limit=1_000_000) if p.venue == spec.venue]
    trades: list[TradeRecord] = []
    for plan in sorted(plans, key=lambda p: (p.opened_at or p.updated_at, p.signal_id)):
        entries = by_order.get(plan.signal_id, [])
        if not entries:
            continue
        entry_qty = sum((f.qty for f in entries), Decimal(0))
        entry_value = sum((f.qty * f.price for f in entries), Decimal(0))
        entry_price = entry_value / entry_qty
        long = entries[0].side is Side.BUY
        exits = sorted((f for coid in plan.exit_orders for f in by_order.get(coid, [])), key=lambda f: f.ts)
        exit_qty = sum((f.qty for f in exits), Decimal(0))
        exit_value = sum((f.qty * f.price for f in exits), Decimal(0))
        fees = sum((f.fee for f in [*entries, *exits]), Decimal(0))
        left = entry_qty - exit_qty
        marked = Decimal(0)
        if left > 0:
            marked = left * (await last_price(venue, plan.symbol) or entry_price)
        sign = Decimal(1) if long else Decimal(-1)
        pnl = sign * (exit_value + marked - entry_value) - fees
        risk = abs(entry_price - plan.stop) * entry_qty
        done = left <= 0
        tp1_hit: bool | None = None
        if plan.take_profits:
            if plan.symbol not in bars_of:
                timeframe = (await venue.instrument(plan.symbol)).timeframe
                bars_of[plan.symbol] = await venue.bars(plan.symbol, timeframe, start=spec.start)
            exited = exits[-1].ts if done and exits else None
            targets = {target_order_id(plan.signal_id, n) for n in range(1, len(plan.take_profits) + 1)}
            tp1_hit = first_target_reached(
                bars_of[plan.symbol],
                Decimal(plan.take_profits[0]),
                long=long,
                entered=entries[0].ts,
                exited=exited,
                exit_at_target=any(f.client_order_id in targets for f in exits if f.ts == exited),
            )
        trades.append(
            TradeRecord(
                signal_id=plan.signal_id,
                symbol=plan.symbol,
                side="long" if long else "short",
                entry_time=entries[0].ts,
                entry_price=float(entry_price),
                qty=float(entry_qty),
                exit_time=exits[-1].ts if done and exits else None,
                exit_price=float(exit_value / exit_qty) if exit_qty > 0 else None,
                pnl=float(pnl),
                fees=float(fees),
                r=float(pnl / risk) if risk > 0 else None,
                reason=(plan.close_reason or "closed") if done else "open at the end",
                tp1_hit=tp1_hit,
            )
        )
    return tuple(trades)


def first_target_reached(
    bars: pd.DataFrame,
    tp1: Decimal,
    *,
    long: bool,
    entered: datetime,
    exited: datetime | None,
    exit_at_target: bool,
) -> bool:
    """Whether the price reached ``tp1`` (a high at or above it for a long, a low at or below it for
    a short) while the position was open, on ``bars`` (the symbol's finest bars, indexed by open
    time, read after the run). Fills are at bar opens, so the bars counted run from the entry fill's
    bar (``entered``) through the bar before the final exit's (``exited``; None: still open at the
    end, through the last bar). The exit's own bar counts only when a target filled there
    (``exit_at_target``): a bar where the stop filled may also have crossed TP1, but which came
    first inside the bar is unknown, so it counts as not reached (conservative).

    This is the price reaching TP1, not a TP1 order filling: with small capital the exit plan's
    tranches merge (weights such as 0/0/1) and no order may rest at TP1 at all."""
    index = bars.index
    first = int(index.searchsorted(pd.Timestamp(entered), side="left"))
    if exited is None:
        last = len(bars)
    else:
        last = int(index.searchsorted(pd.Timestamp(exited), side="right" if exit_at_target else "left"))
    if last <= first:
        return False
    level = float(tp1)
    if long:
        return bool((bars["high"].to_numpy()[first:last] >= level).any())
    return bool((bars["low"].to_numpy()[first:last] <= level).any())
