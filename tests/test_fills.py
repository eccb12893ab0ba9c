"""How paper orders fill, on the real recorded bars: the entry on the bar its decision was made for,
stops and targets as resting orders that fill at their level and only on prices after the entry's
fill, gaps, A-share T+1, the drift guard at the open, and a bracket whose fills clip each other.

Times are UTC. Slippage is 5 bps against the trader, rounded to the tick against the trader too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from storage.paper_ledger import SqlPaperLedger
from tests.support import FrameMarket, bars_frame, replay_instrument
from tools.exits import after_first_target, bracket
from venues.clock import SimulatedClock
from venues.models import Order, OrderRequest, OrderStatus, OrderType, Side
from venues.paper import PaperBroker, PaperBrokerConfig
from venues.replay import ReplayVenue

D = Decimal
CASH = {"CNY": D(1_000_000), "USD": D(100_000), "USDT": D(100_000)}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class Desk:
    broker: PaperBroker
    clock: SimulatedClock

    def at(self, moment: str) -> None:
        self.clock.advance_to(utc(moment))

    async def entry_with_bracket(
        self,
        entry_id: str,
        symbol: str,
        qty: str,
        *,
        stop: str,
        targets: Sequence[str] = (),
        weights: Sequence[str] = (),
        collar: tuple[str, str] | None = None,
    ) -> list[Order]:
        instrument = await self.broker._market.instrument(symbol)
        entry = await self.broker.place(
            OrderRequest(
                client_order_id=entry_id,
                symbol=symbol,
                side=Side.BUY,
                qty=D(qty),
                collar_low=D(collar[0]) if collar else None,
                collar_high=D(collar[1]) if collar else None,
            )
        )
        children = bracket(
            entry_id,
            instrument,
            entry_side=Side.BUY,
            qty=D(qty),
            stop=D(stop),
            take_profits=tuple(D(t) for t in targets),
            exit_weights=tuple(D(w) for w in weights),
        )
        return [entry, *[await self.broker.place(child) for child in children]]

    async def order(self, client_order_id: str) -> Order:
        order = await self.broker.order(client_order_id)
        assert order is not None
        return order


def replay_desk(engine: Engine, market: str, start: str) -> Desk:
    clock = SimulatedClock(utc(start))
    venue = ReplayVenue(market, clock)
    broker = PaperBroker(venue.name, venue, clock, SqlPaperLedger(engine), PaperBrokerConfig(starting_cash=CASH))
    return Desk(broker, clock)


# --- 2. the entry fills on the bar the decision was made for --------------------------------------


async def test_a_market_entry_fills_at_the_open_of_the_bar_that_began_when_its_decision_bar_closed(
    engine: Engine,
) -> None:
    # The 13:42 SPY minute closed at 13:43; the order went in 5 s later, into the 13:43 bar.
    desk = replay_desk(engine, "us", "2021-07-08T13:43:05")
    await desk.broker.place(OrderRequest(client_order_id="e1", symbol="SPY", side=Side.BUY, qty=D(10)))
    desk.at("2021-07-08T13:45:00")
    order = await desk.order("e1")
    # The 13:43 open 428.41 plus 5 bps is 428.624, rounded up to 428.63; not the 13:44 open.
    assert (order.status, order.avg_fill_price, order.filled_at) == (
        OrderStatus.FILLED,
        D("428.63"),
        utc("2021-07-08T13:43:00"),
    )


async def test_an_hourly_entry_placed_as_the_bar_opened_fills_at_that_open_and_a_later_one_at_the_next(
    engine: Engine,
) -> None:
    desk = replay_desk(engine, "us", "2021-07-08T15:00:05")
    await desk.broker.place(OrderRequest(client_order_id="now", symbol="AMZN", side=Side.BUY, qty=D(1)))
    desk.at("2021-07-08T15:15:05")  # a quarter into the bar: its prices since the open are unknown
    await desk.broker.place(OrderRequest(client_order_id="late", symbol="AMZN", side=Side.BUY, qty=D(1)))
    desk.at("2021-07-08T17:00:00")
    now, late = await desk.order("now"), await desk.order("late")
    assert now.filled_at == utc("2021-07-08T15:00:00")
    assert late.filled_at == utc("2021-07-08T16:00:00")


# --- 3. stops and targets fill at their level, and only on prices after the fill ------------------


async def test_tp1_counts_only_prices_after_the_entry_fill(engine: Engine) -> None:
    # The input: SPY bought at 13:43 with TP1 429.00. 429.55 traded at 13:34, before the
    # fill; from 13:43 to 13:45 the high was 428.47, so no exit. It is reached later, at 429.00.
    desk = replay_desk(engine, "us", "2021-07-08T13:43:05")
    await desk.entry_with_bracket("spy1", "SPY", "10", stop="427.00", targets=["429.00"], weights=["1"])
    desk.at("2021-07-08T13:45:00")
    assert (await desk.order("spy1")).status is OrderStatus.FILLED
    tp1 = await desk.order("spy1-tp1")
    assert tp1.status is OrderStatus.PENDING
    desk.at("2021-07-08T15:00:00")
    tp1 = await desk.order("spy1-tp1")
    assert tp1.status is OrderStatus.FILLED and tp1.avg_fill_price == D("429.00")
    assert tp1.filled_at is not None and tp1.filled_at > utc("2021-07-08T13:45:00")
    assert (await desk.order("spy1-sl")).status is OrderStatus.CANCELLED  # nothing left to protect


async def test_a_stop_fills_at_its_price_on_the_bar_that_reaches_it(engine: Engine) -> None:
    # Bought at the 13:43 open; that minute's low 428.155 crosses the stop 428.20: sold at the stop
    # less 5 bps (427.9859, rounded down to 427.98), in that minute, not at a later bar's open.
    desk = replay_desk(engine, "us", "2021-07-08T13:43:05")
    await desk.entry_with_bracket("spy2", "SPY", "10", stop="428.20", targets=["430.00"], weights=["1"])
    desk.at("2021-07-08T14:30:00")
    stop = await desk.order("spy2-sl")
    assert (stop.status, stop.avg_fill_price, stop.filled_at) == (
        OrderStatus.FILLED,
        D("427.98"),
        utc("2021-07-08T13:43:00"),
    )
    assert stop.reason == "stop 428.20 hit (low 428.155)"
    (position,) = await desk.broker.positions(include_closed=True)
    assert position.qty == 0
    # The loss is what the card's "loss at stop" counts: the entry and the stop, both slipped.
    assert position.realized_pnl == (D("427.98") - D("428.63")) * 10


async def test_a_stop_the_open_gaps_through_fills_at_the_open(engine: Engine) -> None:
    # 601318.SH bought at the 2021-07-07 open; stop 60.50. 07-08's low was 60.52 (no touch); 07-09
    # opened at 60.48, through the stop: sold at that open less 5 bps = 60.44, not at 60.50.
    desk = replay_desk(engine, "cn", "2021-07-06T07:00:05")
    await desk.entry_with_bracket("pa1", "601318.SH", "100", stop="60.50", targets=["66.00"], weights=["1"])
    desk.at("2021-07-09T07:00:00")
    entry, stop = await desk.order("pa1"), await desk.order("pa1-sl")
    assert entry.filled_at == utc("2021-07-07T01:30:00") and entry.avg_fill_price == D("62.73")
    assert (stop.avg_fill_price, stop.filled_at) == (D("60.44"), utc("2021-07-09T01:30:00"))
    assert stop.reason == "gapped through the stop 60.50: filled at the open 60.48"


async def test_an_a_share_stop_crossed_on_the_buy_day_sells_at_the_next_open_and_says_so(engine: Engine) -> None:
    # Bought at the 2021-07-08 open (62.37 + 5 bps = 62.41); that day's low 60.52 crosses the stop 61.00,
    # but T+1 forbids selling shares bought today: the stop sells at the 07-09 open 60.48 (60.44).
    desk = replay_desk(engine, "cn", "2021-07-07T07:00:05")
    await desk.entry_with_bracket("pa2", "601318.SH", "100", stop="61.00", targets=["66.00"], weights=["1"])
    desk.at("2021-07-08T07:00:00")
    held = await desk.order("pa2-sl")
    assert held.status is OrderStatus.PENDING and held.triggered_at == utc("2021-07-08T01:30:00")
    assert held.reason == (
        "stop 61.00 crossed on the buy day 2021-07-08 (T+1: cannot sell today): sells at the next session's open"
    )
    desk.at("2021-07-09T07:00:00")
    sold = await desk.order("pa2-sl")
    assert (sold.status, sold.avg_fill_price, sold.filled_at) == (
        OrderStatus.FILLED,
        D("60.44"),
        utc("2021-07-09T01:30:00"),
    )
    assert sold.reason == "stop 61.00 triggered earlier: filled at the open 60.48"


# --- 5. the broker charges the costs in force on the fill's date ---------------------------------


async def test_the_broker_charges_the_2021_stamp_duty_and_transfer_fee_on_a_2021_fill(engine: Engine) -> None:
    # The input: buy 100 601318.SH on 2021-07-07, sell on 2021-07-08 at 62.37 (6,237.00 CNY):
    # commission 5.00 (minimum) + stamp duty 6.24 (0.1% then) + transfer fee 0.12 (0.002% then).
    clock = SimulatedClock(utc("2021-07-06T07:00:05"))
    venue = ReplayVenue("cn", clock)
    cfg = PaperBrokerConfig(starting_cash=CASH, slippage_bps=D(0))
    desk = Desk(PaperBroker(venue.name, venue, clock, SqlPaperLedger(engine), cfg), clock)
    await desk.broker.place(OrderRequest(client_order_id="b", symbol="601318.SH", side=Side.BUY, qty=D(100)))
    desk.at("2021-07-07T07:00:05")
    await desk.broker.place(OrderRequest(client_order_id="s", symbol="601318.SH", side=Side.SELL, qty=D(100)))
    desk.at("2021-07-08T07:00:00")
    (sell,) = await desk.broker.fills("s")
    assert (sell.trade_day, sell.price, sell.fee) == ("2021-07-08", D("62.37"), D("11.36"))
    (buy,) = await desk.broker.fills("b")
    assert (buy.trade_day, buy.fee) == ("2021-07-07", D("5.13"))  # 5.00 + transfer 0.13, no stamp duty


# --- 7. the market is closed: the entry fills at the open, and the drift guard applies there -------


async def test_an_entry_placed_while_closed_fills_at_the_open_only_inside_its_drift_collar(engine: Engine) -> None:
    desk = replay_desk(engine, "us", "2021-07-08T06:00:00")
    for coid, low, high in (("ok", "427.00", "430.00"), ("up", "422.88", "427.12"), ("down", "432.83", "437.17")):
        await desk.broker.place(
            OrderRequest(
                client_order_id=coid, symbol="SPY", side=Side.BUY, qty=D(1), collar_low=D(low), collar_high=D(high)
            )
        )
    desk.at("2021-07-08T13:35:00")
    ok, up, down = await desk.order("ok"), await desk.order("up"), await desk.order("down")
    # The 13:30 open 428.73 plus slippage is 428.95: inside 427-430; above the collar of an entry at
    # 425 (50 bps: 422.88-427.12), and below the collar of an entry at 435 (432.83-437.17): a long
    # filled 1.4% under its entry would start below a 1% stop.
    assert (ok.status, ok.avg_fill_price, ok.filled_at) == (OrderStatus.FILLED, D("428.95"), utc("2021-07-08T13:30:00"))
    assert up.status is OrderStatus.CANCELLED and down.status is OrderStatus.CANCELLED
    assert up.reason == (
        "drift guard: it would fill at 428.95 at the 2021-07-08T13:30:00+00:00 open, outside 422.88-427.12, "
        "the drift limit around the signal's entry"
    )


# --- the bracket on hand-written bars: clipping, stop first, trailing -----------------------------

BTC = replay_instrument("BTC/USD")


def frame_desk(engine: Engine, rows: Sequence[tuple[int, float, float, float, float]]) -> Desk:
    """(hour on 2021-06-01, open, high, low, close) of BTC/USD hourly bars; the clock at 01:00:05,
    so the 00:00 bar is the decision's and an entry fills at the 01:00 open."""
    clock = SimulatedClock(utc("2021-06-01T01:00:05"))
    frame = bars_frame([(f"2021-06-01T{h:02d}:00:00+00:00", o, hi, lo, c, 10.0) for h, o, hi, lo, c in rows], "1h")
    market = FrameMarket("paper", clock, [BTC], {"BTC/USD": frame})
    cfg = PaperBrokerConfig(starting_cash=CASH, slippage_bps=D(0))
    return Desk(PaperBroker("paper", market, clock, SqlPaperLedger(engine), cfg), clock)


async def test_a_target_fill_shrinks_the_stop_and_the_stop_cancels_the_rest(engine: Engine) -> None:
    desk = frame_desk(
        engine,
        [(0, 100, 101, 99.5, 100.5), (1, 100.5, 106, 100, 105.5), (2, 105.5, 105.6, 94, 95)],
    )
    await desk.entry_with_bracket(
        "b1", "BTC/USD", "1", stop="95", targets=["105", "110", "115"], weights=["0.3", "0.4", "0.3"]
    )
    desk.at("2021-06-01T02:00:00")
    assert (await desk.order("b1-tp1")).status is OrderStatus.FILLED
    assert (await desk.order("b1-sl")).qty == D("0.7")  # what is left of the entry
    desk.at("2021-06-01T03:00:00")
    stop = await desk.order("b1-sl")
    assert (stop.status, stop.filled_qty, stop.avg_fill_price) == (OrderStatus.FILLED, D("0.7"), D("95"))
    for target in ("b1-tp2", "b1-tp3"):
        assert (await desk.order(target)).status is OrderStatus.CANCELLED
    assert (await desk.broker.positions()) == []


async def test_a_bar_that_touches_the_stop_and_a_target_is_read_stop_first(engine: Engine) -> None:
    desk = frame_desk(engine, [(0, 100, 100.5, 99.5, 100), (1, 100, 106, 94, 100)])  # one bar touches both
    await desk.entry_with_bracket("b2", "BTC/USD", "1", stop="95", targets=["105"], weights=["1"])
    desk.at("2021-06-01T02:00:00")
    assert (await desk.order("b2-sl")).status is OrderStatus.FILLED
    assert (await desk.order("b2-tp1")).status is OrderStatus.CANCELLED


async def test_an_amended_stop_trails_the_highest_high_and_never_moves_back(engine: Engine) -> None:
    desk = frame_desk(
        engine,
        [(0, 100, 101, 99.5, 100.5), (1, 101, 108, 101, 107), (2, 107, 112, 106, 111), (3, 111, 111, 104, 105)],
    )
    await desk.entry_with_bracket("b3", "BTC/USD", "1", stop="95", targets=["150"], weights=["1"])
    level, trail = after_first_target(
        entry_price=D(100), initial_stop=D(95), current_stop=D(95), long=True, tick=BTC.tick_size
    )
    assert (level, trail) == (D(100), D(5))
    await desk.broker.amend("b3-sl", stop_price=level, trail=trail)
    desk.at("2021-06-01T03:00:00")
    # Highs 108 then 112: the stop rises to 103 then 107; the 03:00 bar (low 104) fills it at 107.
    assert (await desk.order("b3-sl")).stop_price == D(107)
    desk.at("2021-06-01T04:00:00")
    stop = await desk.order("b3-sl")
    assert (stop.status, stop.avg_fill_price) == (OrderStatus.FILLED, D(107))


async def test_a_bracket_child_is_refused_without_a_live_entry(engine: Engine) -> None:
    desk = frame_desk(engine, [(0, 100, 101, 99.5, 100.5)])
    orphan = OrderRequest(
        client_order_id="x-sl",
        symbol="BTC/USD",
        side=Side.SELL,
        qty=D(1),
        type=OrderType.STOP,
        stop_price=D(90),
        parent="x",
    )
    refused = await desk.broker.place(orphan)
    assert refused.status is OrderStatus.REJECTED
    assert refused.reason == "no entry order 'x' on paper to attach this exit to"


def test_order_requests_refuse_prices_that_do_not_fit_the_type() -> None:
    with pytest.raises(ValueError, match="a stop order needs a stop_price"):
        OrderRequest(client_order_id="a", symbol="X", side=Side.SELL, qty=D(1), type=OrderType.STOP)
    with pytest.raises(ValueError, match="only a market order takes a collar"):
        OrderRequest(
            client_order_id="a",
            symbol="X",
            side=Side.SELL,
            qty=D(1),
            type=OrderType.LIMIT,
            limit_price=D(1),
            collar_low=D(1),
        )
    with pytest.raises(ValueError, match="stop price must be greater than zero"):
        OrderRequest(client_order_id="a", symbol="X", side=Side.SELL, qty=D(1), type=OrderType.STOP, stop_price=D(0))
