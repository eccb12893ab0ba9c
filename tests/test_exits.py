"""Managed exits on small hand-written bar frames: the stop, the partial take-profits, break-even
and the trailing stop, the time stop, T+1 and never acting on the same bar twice.

The usual plan: 10 AMZN bought at 100, stop 95 (initial risk 5), targets 105 / 110 / 115 with the
30/40/30 plan -> tranches 3 / 4 / 3."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from tests.support import bars_frame, replay_instrument
from tools.exits import ExitAction, PlanState, manage
from tools.sizing import DEFAULT_EXIT_WEIGHTS

D = Decimal

AMZN = replay_instrument("AMZN")
MOUTAI = replay_instrument("600519.SH", timeframe="1h")


def plan(**changes: Any) -> PlanState:
    base = PlanState(
        qty_entry=D(10),
        qty_open=D(10),
        entry_price=D(100),
        stop=D(95),
        take_profits=(D(105), D(110), D(115)),
        exit_weights=DEFAULT_EXIT_WEIGHTS,
    )
    return replace(base, **changes)


def hourly(*rows: tuple[int, float, float]) -> pd.DataFrame:
    """(hour on 2021-06-01 UTC, high, low); open and close do not matter to the exits."""
    return bars_frame([(f"2021-06-01T{h:02d}:00+00:00", low, high, low, high, 1000.0) for h, high, low in rows], "1h")


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2021, 6, 1, hour, minute, tzinfo=UTC)


LATER = at(23)


def test_stop_sells_everything() -> None:
    bars = hourly((14, 103, 96), (15, 101, 94.5))  # the first bar stays above 95, the second reaches it
    state, actions = manage(plan(), bars, AMZN, now=LATER)
    assert actions == [ExitAction(D(10), "stop 95 hit (low 94.5)", at(16))]
    assert (state.qty_open, state.targets_hit, state.checked_until) == (0, 0, at(16))


def test_stop_wins_over_a_target_touched_on_the_same_bar() -> None:
    # Inside one bar the path is unknown; assuming the stop came first is the conservative reading.
    state, actions = manage(plan(), hourly((14, 106, 94)), AMZN, now=LATER)
    assert actions == [ExitAction(D(10), "stop 95 hit (low 94.0)", at(15))]
    assert (state.qty_open, state.targets_hit) == (0, 0)


def test_tp1_sells_its_tranche_and_moves_the_stop_to_break_even() -> None:
    state, actions = manage(plan(), hourly((14, 105, 99)), AMZN, now=LATER)
    assert actions == [ExitAction(D(3), "TP1 105 reached (high 105.0)", at(15))]
    assert (state.qty_open, state.targets_hit) == (7, 1)
    # the highest high 105 less the initial risk 5 is the entry: break-even
    assert state.active_stop == D(100)
    # and a return to the entry closes the rest there
    state, actions = manage(state, hourly((14, 105, 99), (15, 104, 100)), AMZN, now=LATER)
    assert actions == [ExitAction(D(7), "trailing stop 100 hit (low 100.0)", at(16))]
    assert state.qty_open == 0


def test_trailing_stop_follows_the_highest_high_by_the_initial_risk_and_never_goes_down() -> None:
    bars = hourly(
        (14, 105, 99),  # TP1: 3 sold, stop to 100
        (15, 108, 104),  # highest 108 -> stop 103
        (16, 106, 103.5),  # lower high: the stop stays at 103 (103.5 > 103, no exit)
        (17, 109, 104),  # highest 109 -> stop 104
        (18, 107, 104),  # low reaches 104: the remaining 7 go
    )
    states = []
    state = plan()
    for end in range(1, 6):  # one bar at a time, as the scheduler sees them
        state, _ = manage(state, bars.iloc[:end], AMZN, now=LATER)
        states.append((state.active_stop, state.highest))
    assert states[:4] == [(D(100), D(105)), (D(103), D(108)), (D(103), D(108)), (D(104), D(109))]
    assert state.qty_open == 0
    # the same walk in one call gives the same exits
    _, actions = manage(plan(), bars, AMZN, now=LATER)
    assert actions == [
        ExitAction(D(3), "TP1 105 reached (high 105.0)", at(15)),
        ExitAction(D(7), "trailing stop 104.0 hit (low 104.0)", at(19)),
    ]


def test_tp2_and_tp3_sell_their_tranches_and_the_remainder() -> None:
    bars = hourly((14, 105.5, 101), (15, 110, 104), (16, 116, 108))
    state, actions = manage(plan(), bars, AMZN, now=LATER)
    assert actions == [
        ExitAction(D(3), "TP1 105 reached (high 105.5)", at(15)),
        ExitAction(D(4), "TP2 110 reached (high 110.0)", at(16)),
        ExitAction(D(3), "TP3 115 reached (high 116.0)", at(17)),
    ]
    assert (state.qty_open, state.targets_hit) == (0, 3)


def test_one_bar_through_every_target_sells_all_three_tranches() -> None:
    state, actions = manage(plan(), hourly((14, 120, 99)), AMZN, now=LATER)
    assert [(a.qty, a.reason) for a in actions] == [
        (D(3), "TP1 105 reached (high 120.0)"),
        (D(4), "TP2 110 reached (high 120.0)"),
        (D(3), "TP3 115 reached (high 120.0)"),
    ]
    assert state.qty_open == 0


def test_tp3_sells_whatever_is_left_after_earlier_partial_exits() -> None:
    # 11 shares: tranches 3 / 4 / 4, the rounding remainder goes to the last target
    state, actions = manage(plan(qty_entry=D(11), qty_open=D(11)), hourly((14, 120, 99)), AMZN, now=LATER)
    assert [a.qty for a in actions] == [D(3), D(4), D(4)]
    assert state.qty_open == 0
    # More left than the last tranche (an earlier exit was refused and is open again): TP3 takes it all.
    state, actions = manage(plan(targets_hit=2, qty_open=D(6)), hourly((14, 115, 99)), AMZN, now=LATER)
    assert actions == [ExitAction(D(6), "TP3 115 reached (high 115.0)", at(15))]
    assert state.qty_open == 0


def test_time_stop_sells_what_is_left_once_due() -> None:
    due = at(17)
    quiet = hourly((14, 103, 97), (15, 104, 98))
    state, actions = manage(plan(time_stop_at=due), quiet, AMZN, now=at(16, 30))
    assert (actions, state.qty_open) == ([], 10)  # not due yet
    state, actions = manage(state, quiet, AMZN, now=due)
    assert actions == [ExitAction(D(10), "time stop at 2021-06-01T17:00:00+00:00", due)]
    assert state.qty_open == 0


def test_time_stop_after_tp1_sells_only_the_rest() -> None:
    state, actions = manage(plan(time_stop_at=at(16)), hourly((14, 106, 99)), AMZN, now=at(16))
    assert [(a.qty, a.reason.split()[0]) for a in actions] == [(D(3), "TP1"), (D(7), "time")]
    assert state.qty_open == 0


def test_t_plus_1_bars_before_sellable_from_are_skipped() -> None:
    # 1000 600519.SH bought on 2021-06-01; the session closes at 07:00 UTC (15:00 Shanghai), so
    # exits act only on bars of the next session. Tranches 300 / 400 / 300.
    a_plan = plan(
        qty_entry=D(1000),
        qty_open=D(1000),
        entry_price=D(1800),
        stop=D(1750),
        take_profits=(D(1850), D(1900), D(1950)),
        time_stop_at=at(5),
    )
    sellable_from = at(7)
    same_day = bars_frame(
        [
            ("2021-06-01T05:00+00:00", 1800, 1860, 1740, 1745, 1000),  # TP1 and the stop: both ignored
            ("2021-06-01T06:00+00:00", 1745, 1750, 1700, 1710, 1000),  # closes 07:00: still the entry day
        ],
        "1h",
    )
    state, actions = manage(a_plan, same_day, MOUTAI, now=at(7), sellable_from=sellable_from)
    # nothing sold, not even by the time stop that is already due, but the bars count as seen
    assert (actions, state.qty_open, state.targets_hit) == ([], 1000, 0)
    assert state.checked_until == at(7)
    next_day = bars_frame(
        [
            ("2021-06-01T05:00+00:00", 1800, 1860, 1740, 1745, 1000),  # already seen
            ("2021-06-02T01:30+00:00", 1712, 1720, 1690, 1700, 1000),
        ],
        "1h",
    )
    state, actions = manage(
        state, next_day, MOUTAI, now=datetime(2021, 6, 2, 2, 30, tzinfo=UTC), sellable_from=sellable_from
    )
    assert [(a.qty, a.reason) for a in actions] == [(D(1000), "stop 1750 hit (low 1690.0)")]


def test_one_lot_a_share_exits_whole_at_the_last_target() -> None:
    # 100 shares: 30 and 40 are less than a lot, so TP1 and TP2 sell nothing; TP1 still moves the
    # stop to break-even (1850 - 50 = 1800) and TP3 sells the lot.
    one_lot = plan(
        qty_entry=D(100),
        qty_open=D(100),
        entry_price=D(1800),
        stop=D(1750),
        take_profits=(D(1850), D(1900), D(1950)),
    )
    bars = bars_frame(
        [
            ("2021-06-02T01:30+00:00", 1800, 1850, 1790, 1840, 1000),
            ("2021-06-02T02:30+00:00", 1840, 1900, 1855, 1890, 1000),
            ("2021-06-02T05:00+00:00", 1890, 1960, 1880, 1950, 1000),
        ],
        "1h",
    )
    state, actions = manage(one_lot, bars.iloc[:1], MOUTAI, now=LATER)
    assert (actions, state.qty_open, state.targets_hit, state.active_stop) == ([], 100, 1, D(1800))
    state, actions = manage(state, bars, MOUTAI, now=LATER)
    assert [(a.qty, a.reason) for a in actions] == [(D(100), "TP3 1950 reached (high 1960.0)")]
    assert (state.qty_open, state.targets_hit) == (0, 3)


def test_the_same_bar_is_never_acted_on_twice() -> None:
    bars = hourly((14, 105, 99))
    first, actions = manage(plan(), bars, AMZN, now=LATER)
    assert [a.qty for a in actions] == [D(3)]
    assert first.checked_until == at(15)
    again, actions = manage(first, bars, AMZN, now=LATER)
    assert (actions, again) == ([], first)
    # a new bar is looked at, and only it: the TP1 bar is not sold a second time
    more = hourly((14, 105, 99), (15, 110, 104))
    after, actions = manage(again, more, AMZN, now=LATER)
    assert actions == [ExitAction(D(4), "TP2 110 reached (high 110.0)", at(16))]
    assert (after.qty_open, after.checked_until) == (3, at(16))


def test_a_closed_plan_stops_reading_bars() -> None:
    # Once everything is sold the walk ends: later bars are left for nobody and not marked as seen.
    state, actions = manage(plan(), hourly((14, 101, 94), (15, 120, 90)), AMZN, now=LATER)
    assert [a.qty for a in actions] == [D(10)]
    assert state.checked_until == at(15)
