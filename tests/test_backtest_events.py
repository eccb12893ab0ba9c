"""The backtest's clock jumps from event to event (scheduler.backtest.events): the same result as
stopping at every fire, and no peek past a jump's target."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

import scheduler.backtest.engine as engine_module
import venues.replay.venue as replay_venue
from bot.backtest import backtest
from bot.settings import load_settings
from scheduler.backtest.engine import BacktestResult, BacktestSpec
from scheduler.backtest.events import EventHorizon, fire_epochs
from scheduler.triggers import FireGrid
from tests.support import replay_instrument
from venues.adapters.akshare.instruments import future_instrument
from venues.clock import SimulatedClock, epoch_us
from venues.models import Account, Position
from venues.paper import position_value
from venues.recorded import BarSeries
from venues.replay.loader import load_bar_file
from venues.timeframes import parse_timeframe

MONTH = BacktestSpec(
    venue="replay-crypto",
    symbols=("BTC/USD",),
    timeframe="1h",
    start=datetime(2021, 1, 1, tzinfo=UTC),
    end=datetime(2021, 2, 1, tzinfo=UTC),
    policy="sma_cross",
    params={"fast": 10, "slow": 30},
    capital=Decimal(1_000_000),
    profile="medium",
)
RULES = BacktestSpec(
    venue="replay-crypto",
    symbols=("BTC/USD",),
    timeframe="1h",
    start=datetime(2021, 7, 1, tzinfo=UTC),
    end=datetime(2021, 7, 6, tzinfo=UTC),
    policy="rules",
    capital=Decimal(100),
    profile="medium",
)
HOURS_IN_JANUARY = 31 * 24


def run(tmp: Path, spec: BacktestSpec) -> BacktestResult:
    return asyncio.run(backtest(load_settings(data_dir=tmp), spec))


def doc(result: BacktestResult) -> dict[str, Any]:
    return result.to_json()


@pytest.fixture(scope="module")
def jumping(tmp_path_factory: pytest.TempPathFactory) -> BacktestResult:
    return run(tmp_path_factory.mktemp("jumping"), MONTH)


def test_jumping_gives_what_stopping_at_every_fire_gives(
    jumping: BacktestResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop_at_every_fire(monkeypatch)
    stepping = run(tmp_path, MONTH)
    assert stepping.fires == HOURS_IN_JANUARY
    assert jumping.fires < HOURS_IN_JANUARY / 4  # candidate bars and fills only
    assert len(jumping.trades) > 5 and jumping.metrics["costs_paid"] > 0
    assert len(jumping.equity) == len(stepping.equity) == HOURS_IN_JANUARY + 1  # a point per fire, and the end
    assert doc(jumping) == doc(stepping)


def stop_at_every_fire(monkeypatch: pytest.MonkeyPatch) -> None:
    async def every_fire(self: EventHorizon, until: datetime) -> datetime:
        return self.clock.now()  # an event at every fire: nothing is passed over

    monkeypatch.setattr(EventHorizon, "next_event", every_fire)


@pytest.mark.parametrize(
    "spec",
    [
        # NYSE sessions, 15-minute scans over minute bars (the equity marks are the minutes' closes)
        BacktestSpec(
            **{**MONTH.__dict__, "venue": "replay-us", "symbols": ("SPY",), "timeframe": "15m",
               "start": datetime(2021, 7, 1, tzinfo=UTC), "end": datetime(2021, 8, 13, tzinfo=UTC),
               "params": {"fast": 5, "slow": 20}}
        ),
        # Shanghai sessions, daily bars, lots of 100
        BacktestSpec(
            **{**MONTH.__dict__, "venue": "replay-cn", "symbols": ("600519.SH",), "timeframe": "1d",
               "end": datetime(2022, 1, 1, tzinfo=UTC), "params": {"fast": 5, "slow": 20}}
        ),
    ],
    ids=["spy-15m", "moutai-1d"],
)  # fmt: skip
def test_jumping_on_exchange_calendars_gives_what_stopping_gives(
    spec: BacktestSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jumped = run(tmp_path / "jumped", spec)
    stop_at_every_fire(monkeypatch)
    stepped = run(tmp_path / "stepped", spec)
    assert len(jumped.trades) >= 4 and jumped.fires < stepped.fires / 4
    assert doc(jumped) == doc(stepped)


def test_a_poisoned_bar_after_a_jump_target_changes_nothing_before_it(
    jumping: BacktestResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jump targets come from signals computed once over the window; poisoning every bar from
    a target on (prices tripled) must leave every trade and equity point up to it as they were."""
    target = jumping.trades[3].entry_time  # the close of a candidate bar: a fire reached by a jump

    def poisoned(path: str, stamp: tuple[int, int], timeframe: str, calendar: str) -> BarSeries:
        native = load_bar_file(path, timeframe=timeframe, calendar=calendar)
        late = native.index >= pd.Timestamp(target)
        prices = ["open", "high", "low", "close"]
        native.loc[late, prices] = native.loc[late, prices] * 3
        return BarSeries.build(native, parse_timeframe(timeframe), calendar)

    monkeypatch.setattr(replay_venue, "_load_series", poisoned)
    poison = run(tmp_path, MONTH)
    assert [p for p in poison.equity if p.ts <= target] == [p for p in jumping.equity if p.ts <= target]
    before = [t for t in jumping.trades if t.exit_time is not None and t.exit_time < target]
    assert len(before) == 3
    assert [t for t in poison.trades if t.exit_time is not None and t.exit_time < target] == before
    assert poison.equity[-1] != jumping.equity[-1]  # the poison reached the run after the target


def test_an_entry_filled_after_a_gap_in_the_bars_gives_what_stopping_gives(
    jumping: BacktestResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock passes over the fire where a pending market entry fills; when the bars right after
    its signal are missing, it fills later, and the fires before that fill must still show the
    account without it (as stopping at each of them would)."""
    gaps = [(t.entry_time, t.entry_time + pd.Timedelta(hours=3)) for t in jumping.trades[1:8:2]]

    def gapped(path: str, stamp: tuple[int, int], timeframe: str, calendar: str) -> BarSeries:
        native = load_bar_file(path, timeframe=timeframe, calendar=calendar)
        for first, last in gaps:
            native = native[(native.index < pd.Timestamp(first)) | (native.index >= pd.Timestamp(last))]
        return BarSeries.build(native, parse_timeframe(timeframe), calendar)

    monkeypatch.setattr(replay_venue, "_load_series", gapped)
    jumped = run(tmp_path / "jumped", MONTH)
    entries = {t.entry_time for t in jumped.trades}
    # Entries filled at the first bar after their gap (the gaps move some crossovers elsewhere).
    assert sum(last in entries for _, last in gaps) >= 2
    assert jumped.fires < HOURS_IN_JANUARY / 4
    stop_at_every_fire(monkeypatch)
    assert doc(jumped) == doc(run(tmp_path / "stepped", MONTH))


def test_the_rule_policy_on_the_run_ledger_gives_what_the_database_ledger_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_memory = run(tmp_path / "memory", RULES)

    async def no_run_ledger(*_args: object) -> None:
        return None

    monkeypatch.setattr(engine_module, "use_run_ledger", no_run_ledger)
    on_database = run(tmp_path / "database", RULES)
    assert in_memory.trades and in_memory.metrics["tp1_hit_rate"] is not None
    assert doc(in_memory) == doc(on_database)


def test_passed_over_equity_values_positions_as_the_paper_account_does() -> None:
    """Each passed-over fire's equity in floats is the paper account's (venues.paper.position_value):
    a spot long at its value, a margined future at its unrealised P&L x multiplier, a fire with no
    price yet at the entry cost."""
    fires = [datetime(2021, 7, 5, h, tzinfo=UTC) for h in (1, 2, 3)]
    instruments = {"BTC/USD": replay_instrument("BTC/USD"), "cu0": future_instrument("cu0")}
    marks = {"BTC/USD": [float("nan"), 34_000.5, 35_123.25], "cu0": [70_100.0, 69_950.0, 70_400.0]}
    venue = SimpleNamespace(
        instrument_of=instruments.__getitem__,
        last_prices_us=lambda symbol, moments: np.array(marks[symbol][: len(moments)]),
    )
    positions = (
        Position(venue="v", symbol="BTC/USD", qty=Decimal("0.125"), avg_cost=Decimal("33000.10")),
        Position(venue="v", symbol="cu0", qty=Decimal(-2), avg_cost=Decimal(70_000)),
    )
    cash = Decimal("12345.67")
    account = Account(
        venue="v", currency="USD", cash=cash, reserved_cash=Decimal(0), positions_value=Decimal(0),
        equity=cash, positions=positions,
    )  # fmt: skip

    async def account_now(_currency: str) -> Account:
        return account

    horizon = EventHorizon(
        clock=SimulatedClock(fires[-1]), venue=venue, broker=SimpleNamespace(account=account_now),  # type: ignore[arg-type]
        plans=None, venue_name="v", currency="USD", next_candidate=lambda _at: None,  # type: ignore[arg-type]
    )  # fmt: skip
    asyncio.run(horizon.stopped())
    horizon.hold(fires)
    asyncio.run(horizon.stopped())
    points = horizon.equity(with_cash=True)
    assert points.times_us.tolist() == [epoch_us(f) for f in fires] and points.cash == [cash] * len(fires)
    assert horizon.equity().cash == []  # noted once: equity() hands the points over
    for i, value in enumerate(points.values):
        expected = cash
        for position in positions:
            mark = marks[position.symbol][i]
            price = position.avg_cost if mark != mark else Decimal(repr(mark))
            expected += position_value(position, instruments[position.symbol], price)
        assert value == pytest.approx(float(expected), rel=1e-12)
    assert points.values[0] == pytest.approx(12345.67 + 0.125 * 33000.10 - 2 * (70_100 - 70_000) * 5)


def test_fire_epochs_of_grids_and_lists_are_the_fires_in_microseconds() -> None:
    # Grids (made by the driver when it passes over candle closes), one-fire stops and an uneven
    # list (several jobs' fires merged), one after the other: the same times as the datetimes.
    hour = timedelta(hours=1)
    t0 = datetime(2021, 7, 5, 0, 0, 5, tzinfo=UTC)
    parts = [
        FireGrid(t0, hour, 3),
        [t0 + 3 * hour],
        FireGrid(t0 + 4 * hour, hour, 0),
        [t0 + 4 * hour, t0 + timedelta(hours=4, minutes=10), t0 + timedelta(hours=7, microseconds=3)],
        FireGrid(t0 + 8 * hour, timedelta(minutes=15), 5)[1:4],
    ]
    expected = [epoch_us(fire) for fires in parts for fire in fires]
    assert fire_epochs(parts).tolist() == expected
    assert len(expected) == 3 + 1 + 0 + 3 + 3 and fire_epochs([]).tolist() == []
