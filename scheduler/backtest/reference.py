"""The reference policy ``sma_cross``: long when the fast SMA crosses above the slow one, flat when
it crosses back below; all-in; market orders that fill at the next bar's open. It exists to check
the backtester against a peer engine (backtesting.py), so it keeps that engine's rules exactly:
``crossover(a, b)`` is ``a[-2] < b[-2] and a[-1] > b[-1]`` on the bars closed so far.

It runs on the same clock, trigger, venue bars (cut at now), paper broker (fills at the next open,
slippage, fees, lots and minimums, the ledger) and equity snapshots as every backtest, but not
through the screen, the graph and the risk gate: those were built for trades with a stop and targets
(a position cap of 10-35% of equity, a minimum reward/risk, a bracket on every entry), and an all-in
crossover with no stop would have to be distorted to pass them, or distort them to let it pass.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

import numpy as np
import pandas as pd

from scheduler.driver import ScanJob, ScanTick
from scheduler.scan import Scanner, scan_interval
from scheduler.triggers import trigger_for
from storage.watchlists import WatchlistSpec
from tools.indicators import compute
from venues.base import bar_arrays
from venues.clock import epoch_us, from_epoch_us
from venues.models import Account, Fill, OrderRequest, OrderStatus, OrderType, Side

from .metrics import TradeRecord

SMA_CROSS = "sma_cross"
BPS = Decimal(10_000)


class ReferenceParamError(ValueError):
    """Parameters sma_cross cannot run with; the message says which are valid."""


@dataclass(frozen=True)
class SmaCross:
    """``fast`` < ``slow`` bars; ``size``: the share of cash an entry spends at the last close (room
    left for the next open's gap and the fee, so the order is not refused for cash at its fill);
    ``qty``: a fixed quantity per entry instead (the same trades with and without costs)."""

    fast: int = 10
    slow: int = 30
    size: float = 0.99
    qty: float | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, float]) -> SmaCross:
        unknown = sorted(set(params) - {"fast", "slow", "size", "qty"})
        if unknown:
            raise ReferenceParamError(f"sma_cross has no parameter {', '.join(unknown)}; valid: fast, slow, size, qty")
        fast, slow = params.get("fast", 10), params.get("slow", 30)
        size = float(params.get("size", 0.99))
        if fast != int(fast) or slow != int(slow) or not 2 <= fast < slow:
            raise ReferenceParamError(f"sma_cross needs whole numbers 2 <= fast < slow, got fast={fast} slow={slow}")
        if not 0 < size <= 1:
            raise ReferenceParamError(f"sma_cross size is a share of cash in (0, 1], got {size}")
        qty = params.get("qty")
        if qty is not None and qty <= 0:
            raise ReferenceParamError(f"sma_cross qty is a quantity above zero, got {qty}")
        return cls(int(fast), int(slow), size, qty)

    def signals(self, bars: pd.DataFrame) -> np.ndarray:
        """Per bar of ``bars``: 1 (BUY) where the fast SMA crosses above the slow one at that
        bar's close, -1 (SELL) on the reverse, else 0. Causal: a bar's signal depends only on it
        and the bars before it (rolling sums run forward), so computing it once over a window
        gives each bar what computing it on the bars closed by then would."""
        frame = compute(bars, [f"sma:{self.fast}", f"sma:{self.slow}"])
        fast = frame[f"SMA_{self.fast}"].to_numpy(dtype="float64")
        slow = frame[f"SMA_{self.slow}"].to_numpy(dtype="float64")
        out = np.zeros(len(bars), dtype=np.int8)
        # A comparison with NaN (before the slow SMA has its bars) is False: no signal, as before.
        out[1:][(fast[:-1] < slow[:-1]) & (fast[1:] > slow[1:])] = 1
        out[1:][(slow[:-1] < fast[:-1]) & (slow[1:] > fast[1:])] = -1
        return out

    def decide(self, bars: pd.DataFrame) -> Side | None:
        """BUY on a fast-over-slow cross at the last bar's close, SELL on the reverse, else None.
        ``bars``: the venue's bars closed so far."""
        if len(bars) < 2:
            return None
        return _SIDE.get(int(self.signals(bars)[-1]))


_SIDE = {1: Side.BUY, -1: Side.SELL}


@dataclass(frozen=True)
class SignalTable:
    """One symbol's sma_cross signals over the window, computed once: bar open and close times
    (microseconds since the epoch) and the signal at each bar's close."""

    open_us: np.ndarray
    signal: np.ndarray
    candidate_close_us: list[int]  # close times of the bars with a signal (a list: one bisect per stop)
    candidate_closes: list[datetime]

    @classmethod
    def of(cls, policy: SmaCross, bars: pd.DataFrame) -> SignalTable:
        signal = policy.signals(bars)
        open_us = pd.DatetimeIndex(bars.index).as_unit("us").asi8
        candidate_close_us = pd.DatetimeIndex(bars["close_time"]).as_unit("us").asi8[signal != 0].tolist()
        return cls(open_us, signal, candidate_close_us, [from_epoch_us(c) for c in candidate_close_us])

    def at(self, bar_open: datetime) -> Side | None:
        """The signal of the bar that opened at ``bar_open`` (a bar the clock has reached)."""
        return self.at_us(epoch_us(bar_open))

    def at_us(self, open_us: int) -> Side | None:
        """:meth:`at` for a bar open in microseconds since the epoch."""
        i = int(self.open_us.searchsorted(open_us))
        if i == len(self.open_us) or self.open_us[i] != open_us:
            return None
        return _SIDE.get(int(self.signal[i]))

    def next_candidate(self, after: datetime) -> datetime | None:
        """The close of the first bar with a signal that closes after ``after``; None if none."""
        i = bisect_right(self.candidate_close_us, epoch_us(after))
        return self.candidate_closes[i] if i < len(self.candidate_closes) else None


@dataclass
class ReferenceRun:
    """State of one sma_cross backtest: the last bar acted on per symbol (a fire in a data gap sees
    no new bar and must not act twice on the old one) and the refusals."""

    policy: SmaCross
    currency: str
    skipped: list[dict[str, str]] = field(default_factory=list)
    last_bar: dict[str, int] = field(default_factory=dict)
    """Per symbol, the open of the last bar acted on, in microseconds since the epoch."""
    orders: int = 0
    tables: dict[str, SignalTable] = field(default_factory=dict)
    """Per symbol, the signals computed once over the window (see scheduler.backtest.events);
    a symbol without one is decided on the bars the venue serves at each fire."""
    snapshots: bool = True
    """Whether the job writes each fire's equity point; False when an event horizon values every
    fire's point, the fires it stops at and those it passes over alike."""
    tick_at: datetime | None = None
    tick_account: Account | None = None
    """The account the tick of the fire at ``tick_at`` read: after its fills, before its orders."""
    account_current: bool = False
    """Whether ``tick_account`` still holds the account's cash and positions after the fire's
    orders (none of them filled on placement)."""

    def next_candidate(self, after: datetime) -> datetime | None:
        """The first close of a candidate bar after ``after`` over all symbols; None if none."""
        if len(self.tables) == 1:
            return next(iter(self.tables.values())).next_candidate(after)
        found = [c for t in self.tables.values() if (c := t.next_candidate(after)) is not None]
        return min(found, default=None)


def reference_job(scanner: Scanner, watchlist: WatchlistSpec, calendar: str, run: ReferenceRun) -> ScanJob:
    """The scan job of an sma_cross backtest: the usual tick (fills, equity), then the crossover on
    each symbol's bars closed so far, and a market order for what it says."""
    deps = scanner.deps
    venue = deps.venue(watchlist.venue)
    broker = venue.broker_required()
    policy = run.policy
    slippage = deps.config.slippage_bps

    async def job(tick: ScanTick) -> None:
        # The tick of the live path minus what has nothing to do here (approvals, trade plans):
        # fills up to now, then the equity point of the backtest's currency.
        await broker.process()
        account = await broker.account(run.currency)
        if run.snapshots:
            deps.plans.snapshot_equity(
                watchlist.venue, run.currency, cash=account.cash, equity=account.equity, at=tick.fire_time
            )
        run.tick_at, run.tick_account, run.account_current = tick.fire_time, account, True
        for symbol in watchlist.symbols:
            table = run.tables.get(symbol)
            last = await bar_arrays(venue, symbol, watchlist.timeframe, limit=1)
            if not len(last) or run.last_bar.get(symbol) == (bar_open := int(last.open_us[-1])):
                continue
            run.last_bar[symbol] = bar_open
            if table:
                side = table.at_us(bar_open)
            else:
                side = policy.decide(await venue.bars(symbol, watchlist.timeframe, limit=policy.slow + 1))
            if side is None:
                continue
            held = next((p.qty for p in account.positions if p.symbol == symbol), Decimal(0))
            if side is Side.BUY and held == 0:
                instrument = await venue.instrument(symbol)
                cash = account.cash
                price = Decimal(str(float(last.close[-1]))) * (1 + slippage / BPS)
                share = Decimal(str(policy.size)) / len(watchlist.symbols)
                amount = cash * share / price if policy.qty is None else Decimal(str(policy.qty))
                qty = (amount / instrument.qty_step).to_integral_value(ROUND_FLOOR) * instrument.qty_step
                lot = instrument.lot_size
                qty = (qty / lot).to_integral_value(ROUND_FLOOR) * lot
            elif side is Side.SELL and held > 0:
                qty = held
            else:
                continue
            if qty <= 0:
                reason = "less than one lot fits the cash"
                run.skipped.append(
                    {"time": tick.bar_close.isoformat(), "symbol": symbol, "status": "skipped", "reason": reason}
                )
                continue
            run.orders += 1
            order = await broker.place(
                OrderRequest(
                    client_order_id=f"sma-cross-{run.orders}",
                    symbol=symbol,
                    side=side,
                    qty=qty,
                    type=OrderType.MARKET,
                )
            )
            if order.status is OrderStatus.FILLED:  # at a quote, on placement
                run.account_current = False
            if order.status is OrderStatus.REJECTED:
                run.skipped.append(
                    {"time": tick.bar_close.isoformat(), "symbol": symbol, "status": "rejected", "reason": order.reason}
                )

    trigger = trigger_for(calendar, scan_interval(watchlist, calendar))
    return ScanJob(id=watchlist.name, trigger=trigger, func=job)


def reference_trades(fills: list[Fill], last_close: Mapping[str, Decimal]) -> tuple[TradeRecord, ...]:
    """Round trips from the broker's fills, per symbol in time order: a buy opens, the next sell
    closes (sma_cross never adds to or trims a position). One still open is marked to
    ``last_close``."""
    trades: list[TradeRecord] = []
    opened: dict[str, Fill] = {}
    for fill in sorted(fills, key=lambda f: (f.ts, f.client_order_id)):
        entry = opened.pop(fill.symbol, None)
        if fill.side is Side.BUY:
            opened[fill.symbol] = fill
            continue
        if entry is None:
            continue
        trades.append(_trade(entry, fill.ts, fill.price, entry.fee + fill.fee, "sma cross down"))
    for symbol, entry in opened.items():
        trades.append(_trade(entry, None, last_close.get(symbol, entry.price), entry.fee, "open at the end"))
    return tuple(sorted(trades, key=lambda t: t.entry_time))


def _trade(entry: Fill, exit_time: datetime | None, exit_price: Decimal, fees: Decimal, reason: str) -> TradeRecord:
    pnl = (exit_price - entry.price) * entry.qty - fees
    return TradeRecord(
        signal_id=entry.client_order_id,
        symbol=entry.symbol,
        side="long",
        entry_time=entry.ts,
        entry_price=float(entry.price),
        qty=float(entry.qty),
        exit_time=exit_time,
        exit_price=float(exit_price) if exit_time is not None else None,
        pnl=float(pnl),
        fees=float(fees),
        r=None,
        reason=reason,
        tp1_hit=None,  # the reference policy sets no targets
    )
