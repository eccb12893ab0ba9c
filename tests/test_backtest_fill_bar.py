"""The first bar after a fill: a bracket's stop and take-profit count only prices after the entry's fill.

DESIGN.md, "How orders fill": a decision made on the close of bar t fills at the open of bar t+1;
stops and targets rest from the moment the entry fills, and only prices after the fill count.
venues/paper.py applies it by starting each bracket exit at its entry's fill time: a market entry
fills at a bar's open, the first price of that bar, so the whole of that bar (its high and low) is
after the fill and counts, on the fill bar itself; nothing of an earlier bar does, not the decision
bar and not the part of a bar that traded before a late order could fill (it then fills at the next
bar's open). Hand-made hourly bars, no slippage, so each price is the level itself.

Every case puts the decision bar's (or the skipped bar's) high above the target and its low below
the stop: an exit that counted a price from before the fill would fire there.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine

from tests.test_fills import BTC, ETH_PERP, Desk, frame_desk, utc
from venues.models import OrderStatus, Side

D = Decimal
ENTRY, STOP_LONG, TARGET_LONG = 100.0, "90", "110"
STOP_SHORT, TARGET_SHORT = "110", "90"
# Hour 0: the decision bar, reaching past both levels of either side (112 and 88).
DECISION = (0, 100.0, 112.0, 88.0, 100.0)
QUIET = (100.0, 105.0, 95.0, 101.0)  # a bar inside both levels


async def bracketed(desk: Desk, side: Side) -> None:
    symbol = "BTC/USD" if side is Side.BUY else "ETH/USDT"
    stop, target = (STOP_LONG, TARGET_LONG) if side is Side.BUY else (STOP_SHORT, TARGET_SHORT)
    await desk.entry_with_bracket("e", symbol, "1", stop=stop, targets=[target], weights=["1"], side=side)


def desk_for(engine: Engine, side: Side, *rows: tuple[int, float, float, float, float]) -> Desk:
    return frame_desk(engine, [DECISION, *rows], instrument=BTC if side is Side.BUY else ETH_PERP)


# (side, the fill bar's high and low, the exit it must fill there, at what price)
FILL_BAR_CASES = [
    pytest.param(Side.BUY, 101.0, 89.0, "e-sl", D(STOP_LONG), id="long-stop"),
    pytest.param(Side.BUY, 111.0, 99.0, "e-tp1", D(TARGET_LONG), id="long-take-profit"),
    pytest.param(Side.SELL, 111.0, 99.0, "e-sl", D(STOP_SHORT), id="short-stop"),
    pytest.param(Side.SELL, 101.0, 89.0, "e-tp1", D(TARGET_SHORT), id="short-take-profit"),
]


@pytest.mark.parametrize(("side", "high", "low", "exit_id", "price"), FILL_BAR_CASES)
async def test_the_fill_bar_counts_from_its_open_the_fill(
    engine: Engine, side: Side, high: float, low: float, exit_id: str, price: Decimal
) -> None:
    """Filled at the 01:00 open: that bar's high and low came after the fill, so an exit they reach
    fills in that bar, at its level."""
    desk = desk_for(engine, side, (1, ENTRY, high, low, 100.0), (2, *QUIET))
    await bracketed(desk, side)
    desk.at("2021-06-01T03:00:00")
    entry = await desk.order("e")
    assert (entry.status, entry.avg_fill_price, entry.filled_at) == (
        OrderStatus.FILLED,
        D(ENTRY),
        utc("2021-06-01T01:00:00"),
    )
    hit = await desk.order(exit_id)
    assert (hit.status, hit.avg_fill_price, hit.filled_at) == (OrderStatus.FILLED, price, utc("2021-06-01T01:00:00"))
    other = await desk.order("e-tp1" if exit_id == "e-sl" else "e-sl")
    assert other.status is OrderStatus.CANCELLED  # nothing left to protect
    assert await desk.broker.positions() == []


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL], ids=["long", "short"])
async def test_the_decision_bar_never_counts(engine: Engine, side: Side) -> None:
    """The 00:00 bar reached past the stop and the target before the entry existed: the exits wait
    on quiet bars after the fill, the position stays open."""
    desk = desk_for(engine, side, (1, *QUIET), (2, *QUIET))
    await bracketed(desk, side)
    desk.at("2021-06-01T03:00:00")
    assert (await desk.order("e")).filled_at == utc("2021-06-01T01:00:00")
    for exit_id in ("e-sl", "e-tp1"):
        assert (await desk.order(exit_id)).status is OrderStatus.PENDING
    (position,) = await desk.broker.positions()
    assert position.qty == (D(1) if side is Side.BUY else D(-1))


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL], ids=["long", "short"])
async def test_a_bar_that_began_before_a_late_order_never_counts(engine: Engine, side: Side) -> None:
    """An order placed 20 minutes into the 01:00 bar cannot fill at its open (those prices are gone)
    and fills at the 02:00 open; the 01:00 bar's range, beyond both levels, is before the fill."""
    desk = desk_for(engine, side, (1, 100.0, 112.0, 88.0, 100.0), (2, *QUIET), (3, *QUIET))
    desk.at("2021-06-01T01:20:05")
    await bracketed(desk, side)
    desk.at("2021-06-01T04:00:00")
    entry = await desk.order("e")
    assert (entry.status, entry.avg_fill_price, entry.filled_at) == (
        OrderStatus.FILLED,
        D(QUIET[0]),
        utc("2021-06-01T02:00:00"),
    )
    for exit_id in ("e-sl", "e-tp1"):
        assert (await desk.order(exit_id)).status is OrderStatus.PENDING


@pytest.mark.parametrize(("side", "high", "low", "exit_id", "price"), FILL_BAR_CASES)
async def test_an_exit_on_the_bar_after_the_fill_bar(
    engine: Engine, side: Side, high: float, low: float, exit_id: str, price: Decimal
) -> None:
    """The same levels reached one bar later fill there, not earlier: the exit's fill time is the
    bar that reached it."""
    desk = desk_for(engine, side, (1, *QUIET), (2, 100.0, high, low, 100.0))
    await bracketed(desk, side)
    desk.at("2021-06-01T02:00:00")
    assert (await desk.order(exit_id)).status is OrderStatus.PENDING  # the fill bar was quiet
    desk.at("2021-06-01T03:00:00")
    hit = await desk.order(exit_id)
    assert (hit.status, hit.avg_fill_price, hit.filled_at) == (OrderStatus.FILLED, price, utc("2021-06-01T02:00:00"))
