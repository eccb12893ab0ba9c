"""The position manager follows a bracket on the real recorded bars: it opens the plan when the
entry fills, tells each exit fill once with its price and how it happened, moves the stop to
break-even and makes it trail after TP1, tells an A-share stop held over by T+1, sells what is left
at the time stop, and closes the plan when nothing is left. Times are UTC."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from scheduler.manage import PositionEvent, PositionManager
from storage.paper_ledger import SqlPaperLedger
from storage.plans import PlanStore
from storage.signals import SignalStore
from storage.tables import SignalRow, TradePlan
from tests.test_fills import CASH, utc
from tools.exits import bracket
from venues.clock import SimulatedClock
from venues.models import OrderRequest, OrderStatus, Side
from venues.paper import PaperBroker, PaperBrokerConfig
from venues.replay import ReplayVenue

D = Decimal


@dataclass
class Book:
    manager: PositionManager
    venue: ReplayVenue
    clock: SimulatedClock
    plans: PlanStore

    async def at(self, moment: str) -> list[str]:
        self.clock.advance_to(utc(moment))
        events: list[PositionEvent] = await self.manager.tick(self.venue.name)
        return [f"{e.kind}: {e.text}" for e in events]

    def plan(self, signal_id: str) -> TradePlan:
        plan = self.plans.get(signal_id)
        assert plan is not None
        return plan


async def open_book(
    engine: Engine,
    market: str,
    start: str,
    *,
    signal_id: str,
    symbol: str,
    qty: str,
    stop: str,
    targets: list[str],
    weights: list[str],
    timeframe: str,
    card: dict[str, Any] | None = None,
) -> Book:
    """An approved entry with its bracket and plan, as the graph's execute step leaves them."""
    clock = SimulatedClock(utc(start))
    venue = ReplayVenue(market, clock)
    venue.broker = PaperBroker(venue.name, venue, clock, SqlPaperLedger(engine), PaperBrokerConfig(starting_cash=CASH))
    signals, plans = SignalStore(engine), PlanStore(engine)
    now = clock.now()
    signals.create(
        SignalRow(
            id=signal_id,
            venue=venue.name,
            symbol=symbol,
            side="buy",
            status="executed",
            card=card or {},
            created_at=now,
            updated_at=now,
        )
    )
    instrument = await venue.instrument(symbol)
    await venue.place_order(OrderRequest(client_order_id=signal_id, symbol=symbol, side=Side.BUY, qty=D(qty)))
    children = bracket(
        signal_id,
        instrument,
        entry_side=Side.BUY,
        qty=D(qty),
        stop=D(stop),
        take_profits=tuple(D(t) for t in targets),
        exit_weights=tuple(D(w) for w in weights),
    )
    for child in children:
        await venue.place_order(child)
    plans.create(
        TradePlan(
            signal_id=signal_id,
            venue=venue.name,
            symbol=symbol,
            timeframe=timeframe,
            status="entry_pending",
            qty_entry=D(qty),
            qty_open=D(qty),
            stop=D(stop),
            take_profits=targets,
            exit_weights=weights,
            exit_orders=[c.client_order_id for c in children],
            updated_at=now,
        )
    )
    manager = PositionManager({venue.name: venue}, plans, signals, clock)
    return Book(manager, venue, clock, plans)


async def eth_book(engine: Engine, signal_id: str, card: dict[str, Any] | None = None) -> Book:
    """1 ETH/USDT bought at the 2021-07-06 06:00 open, stop 2200, one target 2600 (neither reached
    that day)."""
    return await open_book(
        engine,
        "crypto",
        "2021-07-06T06:00:05",
        signal_id=signal_id,
        symbol="ETH/USDT",
        qty="1",
        stop="2200",
        targets=["2600"],
        weights=["1"],
        timeframe="1h",
        card=card,
    )


async def test_tp1_then_break_even_stop_then_closed_each_told_once(engine: Engine) -> None:
    # SPY bought at the 13:43 open (428.41 + 5 bps = 428.63); TP1 428.45 for 3 of 10 is reached in
    # that minute (high 428.47); the stop then moves to break-even 428.63 and trails by the initial
    # risk 1.63; the price falls back and the stop sells the other 7 at 428.63 less slippage.
    book = await open_book(
        engine,
        "us",
        "2021-07-08T13:43:05",
        signal_id="spy1",
        symbol="SPY",
        qty="10",
        stop="427.00",
        targets=["428.45", "440.00"],
        weights=["0.3", "0.7"],
        timeframe="15m",
    )
    assert await book.at("2021-07-08T13:44:00") == [
        "opened: bought 10 SPY at 428.63 (2021-07-08T13:43:00+00:00)",
        # The entry filled above TP1 (slippage on a tight plan): the tranche loses its fees and the gap.
        "exit: TP1: sold 3 SPY at 428.45; realized -0.54 USD net of fees",
        "exit: TP1 filled: stop moved to break-even 428.63, trailing by 1.63",
    ]
    plan = book.plan("spy1")
    assert (plan.status, plan.qty_open, plan.targets_hit, plan.trailing_stop) == ("open", D(7), 1, D("428.63"))
    events = await book.at("2021-07-08T14:30:00")
    assert events[0].startswith("exit: trailing stop: sold 7 SPY at "), events
    assert events[-1].startswith("closed: ")
    plan = book.plan("spy1")
    assert (plan.status, plan.qty_open) == ("closed", D(0))
    assert await book.at("2021-07-08T15:00:00") == []  # nothing is told twice
    target2 = await book.venue.broker_required().order("spy1-tp2")
    assert target2 is not None and target2.status is OrderStatus.CANCELLED


async def test_an_a_share_stop_held_by_t1_is_told_then_sold_at_the_next_open(engine: Engine) -> None:
    book = await open_book(
        engine,
        "cn",
        "2021-07-07T07:00:05",
        signal_id="pa1",
        symbol="601318.SH",
        qty="100",
        stop="61.00",
        targets=["66.00"],
        weights=["1"],
        timeframe="1d",
    )
    assert await book.at("2021-07-08T07:00:05") == [
        "opened: bought 100 601318.SH at 62.41 (2021-07-08T01:30:00+00:00)",
        "hold: stop 61.00 crossed on the buy day 2021-07-08 (T+1: cannot sell today): sells at the next session's open",
    ]
    assert await book.at("2021-07-09T07:00:05") == [
        "exit: stop: sold 100 601318.SH at 60.44 (stop 61.00 triggered earlier: filled at the open 60.48); "
        "realized -213.28 CNY net of fees",
        "closed: 601318.SH flat; the trade realized -213.28 CNY net of fees",
    ]
    # The line's figure is the ledger's: (60.44 - 62.41) x 100 less both sides' commission, 2021's
    # 0.1% stamp duty on the sale and the transfer fees.
    (closed,) = await book.venue.broker_required().positions(include_closed=True)
    assert closed.realized_pnl.quantize(D("0.01")) == D("-213.28")


async def test_the_time_stop_sells_what_is_left_at_the_next_open(engine: Engine) -> None:
    # ETH/USDT bought at the 2021-07-06 06:00 open with a 2-bar (2 h) time stop; neither the stop nor
    # the target is reached by 08:00, so the rest is sold at the next open after the time is up.
    book = await eth_book(engine, "eth1", card={"horizon_bars": 2})
    assert await book.at("2021-07-06T07:00:05") == ["opened: bought 1 ETH/USDT at 2320.07 (2021-07-06T06:00:00+00:00)"]
    assert book.plan("eth1").time_stop_at == utc("2021-07-06T08:00:00")
    assert await book.at("2021-07-06T08:00:05") == [
        "exit: time stop at 2021-07-06T08:00:00+00:00: selling 1 ETH/USDT at the next open"
    ]
    events = await book.at("2021-07-06T09:00:05")
    # The 08:00 open 2336.18 less 5 bps is 2335.01.
    assert events == [
        "exit: time stop: sold 1 ETH/USDT at 2335.01 (filled at the open 2336.18); realized +10.28 USDT net of fees",
        "closed: ETH/USDT flat; the trade realized +10.28 USDT net of fees",
    ]


async def test_a_position_closed_by_another_order_closes_the_plan_and_cancels_its_exits(engine: Engine) -> None:
    book = await eth_book(engine, "eth2")
    await book.at("2021-07-06T07:00:05")  # the entry filled at the 06:00 open
    sell = OrderRequest(client_order_id="by-hand", symbol="ETH/USDT", side=Side.SELL, qty=D(1))
    await book.venue.place_order(sell)
    assert await book.at("2021-07-06T08:00:05") == [
        "closed: the position was closed by another order; the plan's exits were cancelled"
    ]
    broker = book.venue.broker_required()
    for coid in ("eth2-sl", "eth2-tp1"):
        order = await broker.order(coid)
        assert order is not None and order.status is OrderStatus.CANCELLED
    assert book.plan("eth2").status == "closed"
