"""Triple-barrier labels on hand-made bars whose answers are worked out by hand."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from agent.policies import HORIZON_BARS, RulePolicy
from tools.labels import BarrierPlan, RoundTripCosts, triple_barrier
from venues.replay.catalog import MARKETS

# ATR 1 everywhere: from a decision close of 100 the stop is 98 (2 ATR) and TP1 103 (1.5 R).
PLAN = BarrierPlan(stop_atr=2.0, tp1_r=1.5, horizon_bars=3)
FLAT = (100.0, 100.5, 99.5, 100.0)  # a bar touching neither barrier of a 100 decision


def frame(*rows: tuple[float, float, float, float]) -> tuple[pd.DataFrame, pd.Series]:
    index = pd.date_range("2021-03-01", periods=len(rows), freq="1h", tz="UTC", name="ts")
    bars = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index).assign(volume=1.0)
    return bars, pd.Series(1.0, index=index)


def first(bars: pd.DataFrame, atr: pd.Series, costs: RoundTripCosts | None = None) -> pd.Series:
    return triple_barrier(bars, atr, PLAN, costs).iloc[0]


def test_defaults_are_the_rule_policys_trade_plan() -> None:
    rules = RulePolicy()
    plan = BarrierPlan()
    assert (plan.stop_atr, plan.tp1_r, plan.horizon_bars) == (rules.atr_stop, rules.targets_r[0], HORIZON_BARS)
    assert plan.tp1_atr == 3.0


def test_tp1_first_is_up() -> None:
    bars, atr = frame(FLAT, (100.0, 101.0, 99.5, 100.5), (100.5, 103.5, 100.0, 103.2), FLAT, FLAT)
    row = first(bars, atr)
    assert (row.outcome, row.label, row.exit_offset, row.exit_price, row.entry) == ("tp1", 1.0, 2, 103.0, 100.0)
    assert row.stop == 98.0 and row.tp1 == 103.0
    assert row.net_return == pytest.approx(0.03)


def test_stop_first_is_down_and_a_gap_fills_at_the_open() -> None:
    bars, atr = frame(FLAT, (100.0, 100.5, 97.9, 98.5), FLAT, FLAT)
    row = first(bars, atr)
    assert (row.outcome, row.label, row.exit_offset, row.exit_price) == ("stop", 0.0, 1, 98.0)
    gap, atr = frame(FLAT, FLAT, (96.0, 97.0, 95.0, 96.5), (96.5, 104.0, 96.0, 103.5))
    row = first(gap, atr)
    assert (row.outcome, row.exit_offset, row.exit_price) == ("stop", 2, 96.0)
    assert row.net_return == pytest.approx(-0.04)


def test_a_bar_touching_both_barriers_counts_as_the_stop() -> None:
    bars, atr = frame(FLAT, (100.0, 104.0, 97.0, 101.0), FLAT, FLAT)
    row = first(bars, atr)
    assert (row.outcome, row.label, row.exit_price) == ("stop", 0.0, 98.0)


def test_timeout_closes_at_the_last_bars_close_and_is_not_up() -> None:
    bars, atr = frame(FLAT, FLAT, FLAT, (100.0, 102.9, 98.1, 102.5), FLAT)
    row = first(bars, atr)
    assert (row.outcome, row.label, row.exit_offset, row.exit_price) == ("time", 0.0, 3, 102.5)


def test_a_gap_above_tp1_after_the_fill_bar_fills_at_the_open() -> None:
    bars, atr = frame(FLAT, FLAT, (104.0, 105.0, 103.5, 104.5), FLAT)
    row = first(bars, atr)
    assert (row.outcome, row.exit_offset, row.exit_price) == ("tp1", 2, 104.0)


def test_costs_flip_a_marginal_win() -> None:
    # The entry fills at 102.9 (the open of t+1), TP1 at 103: 0.1 gross, about 0.0967% of the entry.
    bars, atr = frame(FLAT, (102.9, 103.1, 102.5, 103.0), FLAT, FLAT)
    assert first(bars, atr).label == 1.0
    eth = MARKETS["crypto"].series[1].instrument  # Binance's 10 bps taker on each leg
    costs = RoundTripCosts(eth, slippage_bps=Decimal(0), notional=Decimal(10_000))
    row = first(bars, atr, costs)
    assert (row.outcome, row.label) == ("tp1", 0.0)
    # 10 bps each way on ~103 is about 0.206 per unit, which turns 0.1 into about -0.106.
    assert row.net_return == pytest.approx((0.1 - 0.1029 - 0.103) / 102.9, rel=1e-3)
    # A wide win stays up after the same costs.
    wide, atr = frame(FLAT, (100.0, 103.5, 99.5, 103.0), FLAT, FLAT)
    assert first(wide, atr, costs).label == 1.0


def test_bars_without_a_full_horizon_or_an_atr_have_no_label() -> None:
    bars, atr = frame(FLAT, FLAT, FLAT, FLAT, FLAT, FLAT)
    atr.iloc[1] = np.nan
    out = triple_barrier(bars, atr, PLAN)
    assert out["label"].isna().tolist() == [False, True, False, True, True, True]
    assert out["outcome"].tolist() == ["time", "", "time", "", "", ""]
    assert triple_barrier(bars.iloc[:3], atr.iloc[:3], PLAN)["label"].isna().all()


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="stop_atr and tp1_r"):
        BarrierPlan(stop_atr=0)
    with pytest.raises(ValueError, match="horizon_bars"):
        BarrierPlan(horizon_bars=0)


# --- the short side: every barrier mirrored (stop 102 above, TP1 97 below a 100 decision close) ---


def short(bars: pd.DataFrame, atr: pd.Series, costs: RoundTripCosts | None = None) -> pd.Series:
    return triple_barrier(bars, atr, PLAN, costs, side="short").iloc[0]


def test_a_short_reaching_tp1_below_first_is_up() -> None:
    bars, atr = frame(FLAT, (100.0, 100.5, 99.0, 99.5), (99.5, 100.0, 96.5, 96.8), FLAT, FLAT)
    row = short(bars, atr)
    assert (row.outcome, row.label, row.exit_offset, row.exit_price, row.entry) == ("tp1", 1.0, 2, 97.0, 100.0)
    assert row.stop == 102.0 and row.tp1 == 97.0
    assert row.net_return == pytest.approx(0.03)  # (100 - 97) / 100: a short earns the fall
    assert first(bars, atr).label == 0.0  # the same path is no long win


def test_a_short_stops_above_and_gaps_fill_at_the_open() -> None:
    bars, atr = frame(FLAT, (100.0, 102.1, 99.5, 101.5), FLAT, FLAT)
    row = short(bars, atr)
    assert (row.outcome, row.label, row.exit_offset, row.exit_price) == ("stop", 0.0, 1, 102.0)
    gap, atr = frame(FLAT, FLAT, (104.0, 105.0, 103.0, 104.5), FLAT)
    row = short(gap, atr)
    assert (row.outcome, row.exit_offset, row.exit_price) == ("stop", 2, 104.0)
    assert row.net_return == pytest.approx(-0.04)
    below, atr = frame(FLAT, FLAT, (96.0, 96.5, 95.0, 95.5), FLAT)
    assert (short(below, atr).outcome, short(below, atr).exit_price) == ("tp1", 96.0)  # a gap below: better
    both, atr = frame(FLAT, (100.0, 104.0, 96.0, 100.0), FLAT, FLAT)
    assert (short(both, atr).outcome, short(both, atr).label) == ("stop", 0.0)  # touching both: the stop


def test_costs_flip_a_marginal_short_win() -> None:
    # Sold at 97.1 (the open of t+1), bought back at TP1 97: 0.1 gross, less than 10 bps a leg.
    bars, atr = frame(FLAT, (97.1, 97.3, 96.9, 97.0), FLAT, FLAT)
    assert short(bars, atr).label == 1.0
    eth = MARKETS["crypto"].series[1].instrument
    costs = RoundTripCosts(eth, slippage_bps=Decimal(0), notional=Decimal(10_000))
    row = short(bars, atr, costs)
    assert (row.outcome, row.label) == ("tp1", 0.0)
    assert row.net_return == pytest.approx((0.1 - 0.0971 - 0.097) / 97.1, rel=1e-3)
    with pytest.raises(ValueError, match="side 'both' is not one of: long, short"):
        triple_barrier(bars, atr, PLAN, side="both")
