"""PaperBroker futures rules on an SHFE main contract (copper: 5 t a lot, tick 10 CNY/t, 0.005% of
the value in fees a side, 10% margin): contracts are margined, values and P&L scale by the
multiplier, longs and shorts alike, no T+1. Figures worked out by hand in the comments.

Times are UTC; XSHG's morning session is 01:30-03:30. 2021-07-05 is a Monday."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from storage.paper_ledger import SqlPaperLedger
from storage.tables import CashEntry
from tests.support import FrameMarket, bars_frame
from venues.adapters.akshare.instruments import future_instrument
from venues.clock import SimulatedClock
from venues.models import OrderRequest, OrderStatus, Side
from venues.paper import PaperBroker, PaperBrokerConfig

D = Decimal
CU = future_instrument("cu0")
START = D(1_000_000)
# One-minute bars of copper, CNY per tonne: (open time, open, high, low, close, volume).
BARS = bars_frame(
    [
        ("2021-07-02T06:59Z", 69990, 70000, 69980, 70000, 10),  # Friday's last
        ("2021-07-05T01:30Z", 70000, 70010, 69990, 70000, 10),
        ("2021-07-05T01:31Z", 70100, 70110, 70090, 70100, 10),
        ("2021-07-05T01:32Z", 70200, 70210, 70190, 70200, 10),
        ("2021-07-05T01:33Z", 70150, 70160, 70090, 70100, 10),
        ("2021-07-05T01:34Z", 70050, 70060, 70040, 70050, 10),
        ("2021-07-05T01:35Z", 70050, 70060, 70040, 70050, 10),
    ],
    "1m",
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(utc("2021-07-05T01:29:30"))


@pytest.fixture
def broker(engine: Engine, clock: SimulatedClock) -> Iterator[PaperBroker]:
    market = FrameMarket("akshare", clock, [CU], {"cu0": BARS})
    config = PaperBrokerConfig(starting_cash={"CNY": START}, slippage_bps=D(0), order_latency=timedelta(0))
    yield PaperBroker("akshare", market, clock, SqlPaperLedger(engine), config)


def order(cid: str, side: Side, qty: int = 1) -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol="cu0", side=side, qty=D(qty))


async def at(broker: PaperBroker, clock: SimulatedClock, moment: str) -> None:
    clock.advance_to(utc(moment))
    await broker.process()


async def test_a_copper_long_moving_100_a_tonne_makes_500(
    broker: PaperBroker, clock: SimulatedClock, engine: Engine
) -> None:
    placed = await broker.place(order("cu-long", Side.BUY))
    assert placed.status is OrderStatus.PENDING, placed.reason
    await at(broker, clock, "2021-07-05T01:31:00")
    (fill,) = await broker.fills("cu-long")
    # Filled at the 01:30 open, 70,000: 350,000 CNY of copper, 0.005% of it in fees = 17.50.
    assert (fill.price, fill.fee) == (D(70000), D("17.50"))
    account = await broker.account("CNY")
    # Only the fee left the cash; the margin, 10% of 350,000, is held; nothing gained yet.
    assert account.cash == START - D("17.50")
    assert account.reserved_cash == D(35000)
    assert account.equity == START - D("17.50")
    # One bar on, the price is 70,100: 100 CNY a tonne x 5 t = 500 CNY of unrealised profit.
    await at(broker, clock, "2021-07-05T01:32:00")
    account = await broker.account("CNY")
    assert account.positions_value == D(500)
    assert account.equity == START - D("17.50") + D(500)
    assert account.reserved_cash == D("35050")  # 70,100 x 5 x 10%
    # No T+1 on futures: sold the same session, at the 01:32 open of 70,200.
    await broker.place(order("cu-close", Side.SELL))
    await at(broker, clock, "2021-07-05T01:33:00")
    (close,) = await broker.fills("cu-close")
    assert (close.price, close.fee) == (D(70200), D("17.55"))  # 351,000 x 0.005% = 17.55
    (position,) = await broker.positions(include_closed=True)
    assert position.qty == 0
    # 200 a tonne x 5 t = 1,000, less both fees.
    assert position.realized_pnl == D(1000) - D("17.50") - D("17.55")
    account = await broker.account("CNY")
    assert account.cash == START + D(1000) - D("17.50") - D("17.55")
    assert account.reserved_cash == 0
    with Session(engine) as session:
        kinds = [(e.kind, e.amount) for e in session.exec(select(CashEntry).order_by(CashEntry.id)).all()]
    assert kinds[1:] == [("fee", D("-17.50")), ("sell", D(1000)), ("fee", D("-17.55"))]


async def test_a_copper_short_is_margined_and_covered_at_a_profit(broker: PaperBroker, clock: SimulatedClock) -> None:
    await at(broker, clock, "2021-07-05T01:32:30")
    placed = await broker.place(order("cu-short", Side.SELL))
    assert placed.status is OrderStatus.PENDING, placed.reason
    await at(broker, clock, "2021-07-05T01:34:00")
    (fill,) = await broker.fills("cu-short")
    assert (fill.price, fill.fee) == (D(70150), D("17.54"))  # 350,750 x 0.005% = 17.5375
    account = await broker.account("CNY")
    # Sold at 70,150, the 01:33 bar closed at 70,100: 50 a tonne x 5 t = 250 of unrealised profit.
    assert account.positions_value == D(250)
    assert account.reserved_cash == D(35050)  # 70,100 x 5 x 10%
    assert account.cash == START - D("17.54")
    await broker.place(order("cu-cover", Side.BUY))
    await at(broker, clock, "2021-07-05T01:35:00")
    (cover,) = await broker.fills("cu-cover")
    assert (cover.price, cover.fee) == (D(70050), D("17.51"))  # 350,250 x 0.005% = 17.5125
    (position,) = await broker.positions(include_closed=True)
    assert position.qty == 0 and position.realized_pnl == D(500) - D("17.54") - D("17.51")
    assert (await broker.account("CNY")).cash == START + D(500) - D("17.54") - D("17.51")


async def test_a_position_beyond_the_margin_is_refused(broker: PaperBroker) -> None:
    # 100 lots hold 100 x 70,000 x 5 x 10% = 3,500,000 CNY of margin (and 1,750 of fees): more than
    # the 1,000,000 held.
    refused = await broker.place(order("cu-big", Side.BUY, 100))
    assert refused.status is OrderStatus.REJECTED
    assert refused.reason.startswith("insufficient cash: buying 100 cu0 needs about 3501750.00 CNY"), refused.reason
    short = await broker.place(order("cu-big-short", Side.SELL, 100))
    assert short.status is OrderStatus.REJECTED
    assert short.reason.startswith("insufficient margin: selling 100 cu0 short needs about 3501750.00 CNY"), (
        short.reason
    )


def test_sizing_counts_the_contract_multiplier() -> None:
    from tools.models import Action, Signal
    from tools.sizing import propose, risk_based_qty

    signal = Signal(
        action=Action.BUY,
        symbol="cu0",
        entry=D(70000),
        stop=D(69500),
        take_profits=(D(71000),),
        confidence=0.8,
    )
    # Risk 1% of 2,000,000 = 20,000 over 500 CNY/t x 5 t = 2,500 a lot: 8 lots by risk; but one lot
    # is 350,000 CNY of copper and 20% of equity is 400,000: one lot, capped by value.
    qty, notes = risk_based_qty(
        signal,
        CU,
        equity=D(2_000_000),
        available_cash=D(2_000_000),
        risk_per_trade_pct=D("0.01"),
        max_position_pct=D("0.20"),
        slippage_bps=D(0),
    )
    assert qty == 1 and notes == ["size capped at 20% of equity"]
    proposal = propose(signal, CU, qty, slippage_bps=D(0), on=datetime(2021, 7, 5).date())
    assert proposal.notional == D(350_000)
    # At the stop: 500 x 5 = 2,500 lost, plus 17.50 in and 17.375 -> 17.38 out.
    assert proposal.loss_at_stop == D("2534.88")
    # At the target: 1,000 x 5 = 5,000 gained, less 17.50 in and 17.75 out.
    assert proposal.expected_net_profit == D("4964.75")
