"""TP1 hit: the price reached the first take-profit level while the position was open, read from
the bars after the run (scheduler.backtest.engine.collect_trades), not whether an order at TP1
filled. With small capital the 30/40/30 exit plan merges its tranches (weights 0/0/1): no order
rests at TP1, yet the price may cross it.

Hand-made hourly BTC/USD bars from 2021-06-01 00:00 UTC; the entry fills at the 01:00 open at 100,
stop 90, targets 110/120/130 for a long (90/80/70 for a short, stop 110)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from scheduler.backtest.engine import BacktestSpec, collect_trades
from storage.tables import TradePlan
from tests.support import FrameMarket, bars_frame, replay_instrument
from venues.clock import SimulatedClock
from venues.models import Fill, Liquidity, Side

D = Decimal
T0 = datetime(2021, 6, 1, tzinfo=UTC)
QUIET = (100.0, 105.0, 95.0, 101.0)  # inside every level of either side
BTC = replay_instrument("BTC/USD")


def hour(n: int) -> datetime:
    return T0 + timedelta(hours=n)


def fill(coid: str, at: int, side: Side, price: str) -> Fill:
    return Fill(
        client_order_id=coid,
        venue="replay-crypto",
        symbol="BTC/USD",
        side=side,
        qty=D(1),
        price=D(price),
        fee=D(0),
        liquidity=Liquidity.TAKER,
        ts=hour(at),
        trade_day=hour(at).date().isoformat(),
    )


class Venue:
    def __init__(self, market: FrameMarket, fills: list[Fill]) -> None:
        self.market, self._fills = market, fills
        self.bars, self.instrument = market.bars, market.instrument

    def broker_required(self) -> Venue:
        return self

    async def fills(self) -> list[Fill]:
        return self._fills


async def tp1_hit(
    rows: list[tuple[float, float, float, float]],
    exits: list[tuple[str, int, str]],
    *,
    long: bool = True,
    weights: tuple[str, ...] = ("0.3", "0.4", "0.3"),
    targets_hit: int = 0,
) -> bool | None:
    """The trade's ``tp1_hit`` for bars ``rows`` (hour 0 on) and exit fills (suffix, hour, price)."""
    frame = bars_frame([(hour(i).isoformat(), *row, 1.0) for i, row in enumerate(rows)], "1h")
    clock = SimulatedClock(hour(len(rows)))
    entry, exit_side = (Side.BUY, Side.SELL) if long else (Side.SELL, Side.BUY)
    fills = [fill("e", 1, entry, "100"), *(fill(f"e-{s}", at, exit_side, p) for s, at, p in exits)]
    targets = ["110", "120", "130"] if long else ["90", "80", "70"]
    plan = TradePlan(
        signal_id="e",
        venue="replay-crypto",
        symbol="BTC/USD",
        timeframe="1h",
        status="closed" if exits else "open",
        qty_entry=D(1),
        qty_open=D(0) if exits else D(1),
        stop=D(90) if long else D(110),
        take_profits=targets,
        exit_weights=list(weights),
        targets_hit=targets_hit,
        exit_orders=["e-sl", *(f"e-tp{n}" for n, w in enumerate(weights, 1) if D(w) > 0), "e-ts"],
        opened_at=hour(1),
        updated_at=hour(len(rows)),
    )
    venue = Venue(FrameMarket("replay-crypto", clock, [BTC], {"BTC/USD": frame}), fills)
    plans = SimpleNamespace(all=lambda limit: [plan])
    scanner: Any = SimpleNamespace(deps=SimpleNamespace(venue=lambda _name: venue, plans=plans))
    spec = BacktestSpec("replay-crypto", ("BTC/USD",), "1h", T0, hour(len(rows)), "rules", D(100), "medium")
    (trade,) = await collect_trades(scanner, spec, "USD")
    assert (trade.exit_time is None) == (not exits)  # the exits were read: closed at the last one
    return trade.tp1_hit


async def test_crossed_tp1_then_the_time_stop_counts_as_hit() -> None:
    # Merged tranches (0/0/1, what --capital 100 makes of 30/40/30): no order at TP1, no target
    # filled (targets_hit 0), the time stop closed it; the 02:00 high of 112 reached TP1.
    rows = [QUIET, QUIET, (101.0, 112.0, 99.0, 104.0), QUIET, QUIET]
    assert await tp1_hit(rows, [("ts", 4, "100")], weights=("0", "0", "1")) is True


async def test_never_reaching_tp1_is_not_a_hit() -> None:
    rows = [QUIET, QUIET, (101.0, 109.99, 99.0, 104.0), QUIET, QUIET]
    assert await tp1_hit(rows, [("ts", 4, "100")]) is False


async def test_merged_tranches_exit_at_tp3_reached_tp1_on_the_way() -> None:
    # The plan's one target order is at TP3; it filled at 03:00, and the 02:00 high crossed TP1.
    rows = [QUIET, QUIET, (101.0, 115.0, 99.0, 104.0), (104.0, 131.0, 103.0, 128.0), QUIET]
    assert await tp1_hit(rows, [("tp3", 3, "130")], weights=("0", "0", "1"), targets_hit=1) is True


async def test_a_target_exit_bar_counts() -> None:
    rows = [QUIET, QUIET, (101.0, 121.0, 99.0, 118.0), QUIET]
    assert await tp1_hit(rows, [("tp2", 2, "120")], weights=("0", "1", "0"), targets_hit=1) is True


async def test_tp1_and_the_stop_in_the_exit_bar_count_as_not_reached() -> None:
    # Which came first inside the 02:00 bar is unknown: conservative, not reached.
    rows = [QUIET, QUIET, (101.0, 111.0, 89.0, 95.0), QUIET]
    assert await tp1_hit(rows, [("sl", 2, "90")]) is False


async def test_prices_before_the_entry_or_after_the_exit_do_not_count() -> None:
    # 00:00 (the decision bar) and 04:00 (after the time exit at the 03:00 open) both cross TP1.
    high = (101.0, 115.0, 99.0, 104.0)
    rows = [high, QUIET, QUIET, high, high]
    assert await tp1_hit(rows, [("ts", 3, "100")]) is False


async def test_open_at_the_end_counts_through_the_last_bar() -> None:
    rows = [QUIET, QUIET, QUIET, (101.0, 110.0, 99.0, 104.0)]
    assert await tp1_hit(rows, []) is True


@pytest.mark.parametrize(("low", "hit"), [(90.0, True), (90.01, False)])
async def test_a_short_reaches_tp1_below(low: float, hit: bool) -> None:
    rows = [QUIET, QUIET, (99.0, 101.0, low, 95.0), QUIET]
    assert await tp1_hit(rows, [("ts", 3, "100")], long=False) is hit
