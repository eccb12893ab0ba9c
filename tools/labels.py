"""Triple-barrier labels: did a long (or a short) entered after bar t reach TP1 before its stop, with
a net profit?

The barriers are the rule policy's trade plan (``agent.policies.RulePolicy``; a test keeps the
defaults equal), placed from the decision bar t's close ``c`` and its ATR(14) ``a``:

- lower (stop): ``c - stop_atr * a`` (2 ATRs);
- upper (TP1): ``c + tp1_r * (c - stop)`` (1.5 R = 3 ATRs);
- vertical (time stop): ``horizon_bars`` bars after the fill (48).

The rule policy moves its stop up to just under a recent swing low when that is tighter (never
closer than 1 ATR); the labels keep the plain 2-ATR stop, which is also what ``agent.ml_policy``
places, so a label is the outcome of the very trade the ML policy proposes.

Fills follow the house convention (DESIGN.md, "How orders fill"): the entry fills at the open of bar
t+1, and from there on bars t+1 .. t+horizon are walked. A bar whose low reaches the stop stops the
trade out, at the stop or at the bar's open when it gaps through; a bar whose high reaches TP1 takes
profit at TP1 (at the open when a later bar gaps above it). **A bar that touches both counts as the
stop** (the order of the touches inside a bar is unknown: the cautious reading). Neither within the
horizon: the trade is closed at the last bar's close.

The label is 1 only when TP1 comes first **and** ``TP1 exit - entry fill`` beats the round-trip
costs (``RoundTripCosts``: the venue's fees at the fill date plus slippage on both legs, priced as
the paper broker fills); every other outcome is 0. A bar with fewer than ``horizon_bars`` bars after
it, or without an ATR yet, has no label (NaN): its outcome is not known.

``side="short"`` mirrors every barrier (a sell-to-open at the next open, the stop 2 ATRs above the
decision close, TP1 3 ATRs below it): the same walk on the negated prices, so a bar whose high
reaches the stop stops the short out (at the open when it gaps above), one whose low reaches TP1
takes profit (at the open when it gaps below), a bar touching both is the stop, and the net is
``entry - exit - costs``. The costs are the same fees and slippage with the legs in the other order
(sell first); the carry is counted on neither side (a long perpetual's funding, about 0.06% over 48
hourly bars at the assumed +0.01% per 8 h; a short stock's borrow, 0.3% a year).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from tools.sizing import buy_increment, round_down
from venues.costs import round_trip_cost
from venues.models import Instrument

__all__ = ["SIDES", "BarrierPlan", "RoundTripCosts", "triple_barrier"]

OUTCOMES = ("tp1", "stop", "time")
SIDES = ("long", "short")


@dataclass(frozen=True, slots=True)
class BarrierPlan:
    """Barriers in ATR multiples, as the rule policy plans a trade (stop 2 ATR, TP1 1.5 R, 48 bars)."""

    stop_atr: float = 2.0
    tp1_r: float = 1.5
    horizon_bars: int = 48

    def __post_init__(self) -> None:
        if not (self.stop_atr > 0 and self.tp1_r > 0):
            raise ValueError(f"stop_atr and tp1_r must be above 0, got {self.stop_atr} and {self.tp1_r}")
        if self.horizon_bars < 1:
            raise ValueError(f"horizon_bars must be 1 or more, got {self.horizon_bars}")

    @property
    def tp1_atr(self) -> float:
        """TP1's distance from the decision close, in ATRs."""
        return self.stop_atr * self.tp1_r


@dataclass(frozen=True, slots=True)
class RoundTripCosts:
    """What a buy at ``entry`` and a sell at ``exit`` cost per unit of the instrument, for a position
    worth about ``notional`` (quote currency; it matters where a minimum commission applies) at the
    fee rates of the entry's date, with ``slippage_bps`` against the trader on both legs
    (``venues.costs.round_trip_cost``)."""

    instrument: Instrument
    slippage_bps: Decimal = Decimal(5)
    notional: Decimal = Decimal(10_000)

    def per_unit(self, entry: float, exit_: float, on: date) -> float:
        """Cost in quote currency per unit of price movement's unit (per share, per coin)."""
        units = self.instrument.multiplier
        entry_d = Decimal(repr(entry))
        qty = max(
            buy_increment(self.instrument),
            round_down(self.notional / (entry_d * units), buy_increment(self.instrument)),
        )
        cost = round_trip_cost(self.instrument, qty, entry_d, Decimal(repr(exit_)), self.slippage_bps, on=on)
        return float(cost / (qty * units))


def triple_barrier(
    bars: pd.DataFrame,
    atr: pd.Series,
    plan: BarrierPlan = BarrierPlan(),
    costs: RoundTripCosts | None = None,
    *,
    side: str = "long",
) -> pd.DataFrame:
    """One row per bar of ``bars`` (same index), columns:

    ``label`` (1.0 / 0.0 / NaN), ``outcome`` ("tp1", "stop", "time", or "" unlabelled),
    ``exit_offset`` (bars from t to the exit bar, 1..horizon; 0 unlabelled), ``entry`` (open of
    t+1), ``stop``, ``tp1``, ``exit_price``, ``net_return`` (the side's exit - entry - costs, over
    the entry: a short earns entry - exit).

    ``bars`` has ``open, high, low, close`` ascending; ``atr`` the ATR at each bar (same index).
    ``costs`` None means no fees and no slippage. ValueError for a ``side`` not in ``SIDES``."""
    if side not in SIDES:
        raise ValueError(f"side {side!r} is not one of: {', '.join(SIDES)}")
    n, horizon = len(bars), plan.horizon_bars
    # A short is a long on the negated prices: its high is the negated low, and so on.
    sign = 1.0 if side == "long" else -1.0
    open_ = sign * bars["open"].to_numpy(dtype="float64")
    high = sign * bars["high" if side == "long" else "low"].to_numpy(dtype="float64")
    low = sign * bars["low" if side == "long" else "high"].to_numpy(dtype="float64")
    close = sign * bars["close"].to_numpy(dtype="float64")
    atr_v = atr.reindex(bars.index).to_numpy(dtype="float64")
    stop = close - plan.stop_atr * atr_v
    tp1 = close + plan.tp1_r * (close - stop)
    out = pd.DataFrame(
        {
            "label": np.nan,
            "outcome": "",
            "exit_offset": 0,
            "entry": np.nan,
            "stop": sign * stop,
            "tp1": sign * tp1,
            "exit_price": np.nan,
            "net_return": np.nan,
        },
        index=bars.index,
    )
    m = n - horizon  # bars t = 0 .. m-1 have a full horizon after them
    if m <= 0:
        return out
    lows = sliding_window_view(low[1:], horizon)[:m]  # row t: bars t+1 .. t+horizon
    highs = sliding_window_view(high[1:], horizon)[:m]
    opens = sliding_window_view(open_[1:], horizon)[:m]
    s, tp = stop[:m, None], tp1[:m, None]
    stop_hit = lows <= s
    tp_hit = highs >= tp
    never = horizon  # index past the window: not touched
    first_stop = np.where(stop_hit.any(axis=1), stop_hit.argmax(axis=1), never)
    first_tp = np.where(tp_hit.any(axis=1), tp_hit.argmax(axis=1), never)
    rows = np.arange(m)
    stopped = (first_stop <= first_tp) & (first_stop < never)  # a tie is the stop: cautious
    took_profit = ~stopped & (first_tp < never)
    entry = open_[1 : m + 1]
    exit_price = close[horizon : m + horizon].copy()  # time stop: the last bar's close
    offset = np.full(m, horizon)
    j = np.minimum(first_stop, never - 1)
    exit_price = np.where(stopped, np.minimum(stop[:m], opens[rows, j]), exit_price)
    offset = np.where(stopped, first_stop + 1, offset)
    j = np.minimum(first_tp, never - 1)
    # At the fill bar (j == 0) its open is the entry itself: the target rests from there, at TP1.
    tp_exit = np.where(j == 0, tp1[:m], np.maximum(tp1[:m], opens[rows, j]))
    exit_price = np.where(took_profit, tp_exit, exit_price)
    offset = np.where(took_profit, first_tp + 1, offset)
    valid = np.isfinite(atr_v[:m]) & (atr_v[:m] > 0) & np.isfinite(entry)
    cost = np.zeros(m)
    if costs is not None:
        days = pd.DatetimeIndex(bars.index[1 : m + 1]).date
        for i in np.flatnonzero(valid):
            # The fees of the real prices: a short's entry is the sell, so the legs swap.
            buy, sell = (entry[i], exit_price[i]) if side == "long" else (-exit_price[i], -entry[i])
            cost[i] = costs.per_unit(float(buy), float(sell), days[i])
    net = exit_price - entry - cost
    label = np.where(took_profit & (net > 0), 1.0, 0.0)
    outcome = np.where(stopped, "stop", np.where(took_profit, "tp1", "time"))
    idx = np.flatnonzero(valid)
    out.iloc[idx, out.columns.get_loc("label")] = label[idx]
    out.iloc[idx, out.columns.get_loc("outcome")] = outcome[idx]
    out.iloc[idx, out.columns.get_loc("exit_offset")] = offset[idx]
    out.iloc[idx, out.columns.get_loc("entry")] = sign * entry[idx]
    out.iloc[idx, out.columns.get_loc("exit_price")] = sign * exit_price[idx]
    out.iloc[idx, out.columns.get_loc("net_return")] = net[idx] / np.abs(entry[idx])
    return out
