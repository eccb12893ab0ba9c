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
from sqlmodel import Session, col, select

from storage.paper_ledger import SqlPaperLedger
from storage.tables import CashEntry
from tests.support import FrameMarket, bars_frame, replay_instrument
from tools.exits import after_first_target, bracket
from venues.clock import SimulatedClock
from venues.models import FundingTerms, Instrument, Order, OrderRequest, OrderStatus, OrderType, Side
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
        side: Side = Side.BUY,
    ) -> list[Order]:
        instrument = await self.broker._market.instrument(symbol)
        entry = await self.broker.place(
            OrderRequest(
                client_order_id=entry_id,
                symbol=symbol,
                side=side,
                qty=D(qty),
                collar_low=D(collar[0]) if collar else None,
                collar_high=D(collar[1]) if collar else None,
            )
        )
        children = bracket(
            entry_id,
            instrument,
            entry_side=side,
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


async def test_an_hourly_bar_straddling_the_open_counts_for_a_resting_stop(engine: Engine) -> None:
    # AMZN bought at the 2021-07-07 15:00 open (185.03 + 5 bps = 185.13), stop 183.25. Its hourly bar
    # of 13:00-14:00 UTC on 07-08 holds New York's 13:30 open and opened at 181.73, through the stop:
    # the stop fills there (181.73 less 5 bps = 181.63), not an hour later at the 14:00 open.
    desk = replay_desk(engine, "us", "2021-07-07T15:00:05")
    await desk.entry_with_bracket("am1", "AMZN", "10", stop="183.25", targets=["195.00"], weights=["1"])
    desk.at("2021-07-08T15:00:00")
    entry, stop = await desk.order("am1"), await desk.order("am1-sl")
    assert entry.avg_fill_price == D("185.13")
    assert (stop.avg_fill_price, stop.filled_at) == (D("181.63"), utc("2021-07-08T13:00:00"))
    assert stop.reason == "gapped through the stop 183.25: filled at the open 181.73"


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


def frame_desk(
    engine: Engine,
    rows: Sequence[tuple[int, float, float, float, float]],
    *,
    instrument: Instrument = BTC,
    slippage_bps: Decimal = Decimal(0),
) -> Desk:
    """(hour on 2021-06-01, open, high, low, close) of hourly bars of ``instrument`` (BTC/USD); the
    clock at 01:00:05, so the 00:00 bar is the decision's and an entry fills at the 01:00 open."""
    clock = SimulatedClock(utc("2021-06-01T01:00:05"))
    frame = bars_frame([(f"2021-06-01T{h:02d}:00:00+00:00", o, hi, lo, c, 10.0) for h, o, hi, lo, c in rows], "1h")
    market = FrameMarket("paper", clock, [instrument], {instrument.symbol: frame})
    cfg = PaperBrokerConfig(starting_cash=CASH, slippage_bps=slippage_bps)
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


# --- shorts: a perpetual sold short, its bracket buying back (stop above, targets below) ---------

ETH_PERP = replay_instrument("ETH/USDT")  # Binance USDT-M perpetual: may be sold short; fees 10/10 bps


async def test_a_short_fills_at_the_next_open_less_slippage_and_its_bracket_buys_back(engine: Engine) -> None:
    desk = frame_desk(
        engine,
        [(0, 2000, 2005, 1995, 2000), (1, 2000, 2010, 1940, 1950), (2, 1950, 2070, 1945, 2065)],
        instrument=ETH_PERP,
        slippage_bps=D(5),
    )
    placed = await desk.entry_with_bracket(
        "s1", "ETH/USDT", "1", stop="2060", targets=["1950", "1900"], weights=["0.3", "0.7"], side=Side.SELL
    )
    assert [(o.side, o.type, o.stop_price or o.limit_price) for o in placed[1:]] == [
        (Side.BUY, OrderType.STOP, D(2060)),
        (Side.BUY, OrderType.LIMIT, D(1950)),
        (Side.BUY, OrderType.LIMIT, D(1900)),
    ]
    desk.at("2021-06-01T02:00:00")
    entry = await desk.order("s1")
    # Sold at the 01:00 open 2000 less 5 bps: 1999.00; the fee 10 bps (1.999) leaves 1997.001 a unit.
    assert (entry.status, entry.avg_fill_price, entry.filled_at) == (
        OrderStatus.FILLED,
        D("1999.00"),
        utc("2021-06-01T01:00:00"),
    )
    tp1 = await desk.order("s1-tp1")  # a buy limit below: the 01:00 low 1940 reaches 1950
    assert (tp1.status, tp1.filled_qty, tp1.avg_fill_price) == (OrderStatus.FILLED, D("0.3"), D(1950))
    (short,) = await desk.broker.positions()
    assert (short.qty, short.avg_cost) == (D("-0.7"), D("1997.001"))
    # TP1 realised (1997.001 - 1950) x 0.3 - 0.585 fee: a profit on a fall.
    assert short.realized_pnl == D("13.5153")
    account = await desk.broker.account("USDT")
    assert account.positions_value == D("-0.7") * D(1950)
    assert account.reserved_cash == D("0.7") * D(1950) * 2  # its value plus 100% initial margin
    desk.at("2021-06-01T03:00:00")
    stop = await desk.order("s1-sl")
    # A buy stop above: the 02:00 high 2070 reaches 2060; filled at 2060 plus 5 bps (2061.03).
    assert (stop.status, stop.filled_qty, stop.avg_fill_price) == (OrderStatus.FILLED, D("0.7"), D("2061.03"))
    assert stop.reason == "stop 2060.00 hit (high 2070.0)"
    assert (await desk.order("s1-tp2")).status is OrderStatus.CANCELLED
    (closed,) = await desk.broker.positions(include_closed=True)
    # (1997.001 - 2061.03) x 0.7 - 1.442721 = -46.263021 on the stop, after +13.5153 at TP1.
    assert (closed.qty, closed.realized_pnl) == (0, D("-32.747721"))
    assert (await desk.broker.account("USDT")).cash == CASH["USDT"] + closed.realized_pnl


async def test_a_short_stop_the_open_gaps_up_through_fills_at_the_open(engine: Engine) -> None:
    desk = frame_desk(
        engine,
        [(0, 2000, 2005, 1995, 2000), (1, 2000, 2010, 1990, 2005), (2, 2080, 2090, 2070, 2085)],
        instrument=ETH_PERP,
        slippage_bps=D(5),
    )
    await desk.entry_with_bracket("s2", "ETH/USDT", "1", stop="2060", targets=["1900"], weights=["1"], side=Side.SELL)
    desk.at("2021-06-01T03:00:00")
    stop = await desk.order("s2-sl")
    # The 02:00 bar opened at 2080, above the stop: bought back at that open plus 5 bps (2081.04).
    assert (stop.status, stop.avg_fill_price) == (OrderStatus.FILLED, D("2081.04"))
    assert stop.reason == "gapped through the stop 2060.00: filled at the open 2080.0"
    (closed,) = await desk.broker.positions(include_closed=True)
    assert closed.realized_pnl < 0


async def test_a_short_target_fills_at_its_price_and_the_trailing_stop_follows_the_lows(engine: Engine) -> None:
    desk = frame_desk(
        engine,
        [(0, 2000, 2005, 1995, 2000), (1, 2000, 2001, 1900, 1920), (2, 1920, 1925, 1850, 1860)],
        instrument=ETH_PERP,
    )
    await desk.entry_with_bracket(
        "s3", "ETH/USDT", "1", stop="2100", targets=["1950", "1500"], weights=["0.5", "0.5"], side=Side.SELL
    )
    desk.at("2021-06-01T02:00:00")
    assert (await desk.order("s3-tp1")).avg_fill_price == D(1950)
    level, trail = after_first_target(
        entry_price=D(2000), initial_stop=D(2100), current_stop=D(2100), long=False, tick=ETH_PERP.tick_size
    )
    assert (level, trail) == (D(2000), D(100))  # break-even, trailing by the initial risk
    await desk.broker.amend("s3-sl", stop_price=level, trail=trail)
    desk.at("2021-06-01T03:00:00")
    # The 02:00 low 1850 pulls the stop down to 1950 (low + 100); it never moves back up.
    assert (await desk.order("s3-sl")).stop_price == D(1950)


@pytest.mark.parametrize(
    ("market", "symbol", "start", "qty", "reason"),
    [
        ("crypto", "BTC/USD", "2021-07-05T01:00:05", "0.1", "BTC/USD cannot be sold short: spot crypto"),
        ("cn", "600519.SH", "2021-07-05T02:00:00", "100", "600519.SH cannot be sold short: A-shares"),
        ("cn", "510300.SH", "2021-07-05T02:00:00", "100", "510300.SH cannot be sold short: A-shares and A-share ETFs"),
    ],
)
async def test_the_broker_refuses_a_short_where_the_market_has_none(
    engine: Engine, market: str, symbol: str, start: str, qty: str, reason: str
) -> None:
    desk = replay_desk(engine, market, start)
    order = await desk.broker.place(OrderRequest(client_order_id="x", symbol=symbol, side=Side.SELL, qty=D(qty)))
    assert order.status is OrderStatus.REJECTED
    assert reason in order.reason


async def test_a_us_equity_is_sold_short_on_the_margin_account(engine: Engine) -> None:
    desk = replay_desk(engine, "us", "2021-07-08T13:43:05")
    await desk.broker.place(OrderRequest(client_order_id="s", symbol="SPY", side=Side.SELL, qty=D(10)))
    desk.at("2021-07-08T13:45:00")
    # The 13:43 open 428.41 less 5 bps is 428.1958, rounded down (against the seller) to 428.19.
    assert (await desk.order("s")).avg_fill_price == D("428.19")
    (short,) = await desk.broker.positions()
    assert (short.qty, short.avg_cost) == (D(-10), D("428.19"))  # zero commission, no fee on this sale
    account = await desk.broker.account("USD")
    assert account.cash == CASH["USD"] + D("4281.90")
    assert account.equity == account.cash + account.positions_value
    assert account.positions_value < 0


async def test_a_short_needs_its_margin_and_a_buy_covers_it_without_turning_long(engine: Engine) -> None:
    desk = replay_desk(engine, "crypto", "2021-07-05T01:00:05")
    # ETH near 2,300: 60 short is worth about 138,000 USDT, more margin (100%) than the 100,000 held.
    big = await desk.broker.place(OrderRequest(client_order_id="big", symbol="ETH/USDT", side=Side.SELL, qty=D(60)))
    assert big.status is OrderStatus.REJECTED
    assert big.reason.startswith("insufficient margin: selling 60 ETH/USDT short needs about ")
    await desk.broker.place(OrderRequest(client_order_id="s", symbol="ETH/USDT", side=Side.SELL, qty=D(1)))
    desk.at("2021-07-05T03:00:00")
    (short,) = await desk.broker.positions()
    assert short.qty == D(-1)
    flip = await desk.broker.place(OrderRequest(client_order_id="f", symbol="ETH/USDT", side=Side.BUY, qty=D(2)))
    assert flip.status is OrderStatus.REJECTED
    assert flip.reason == "buying 2 ETH/USDT would turn the short of 1 into a long: cover 1 first"
    cover = await desk.broker.place(OrderRequest(client_order_id="c", symbol="ETH/USDT", side=Side.BUY, qty=D(1)))
    assert cover.status is OrderStatus.PENDING
    desk.at("2021-07-05T04:00:00")
    (closed,) = await desk.broker.positions(include_closed=True)
    entry, exit_ = await desk.order("s"), await desk.order("c")
    assert exit_.avg_fill_price is not None and entry.avg_fill_price is not None
    # Realised: (sale price net of its fee - cover price) x 1 - the cover's fee.
    assert closed.qty == 0
    assert closed.realized_pnl == (entry.avg_fill_price - entry.fees) - exit_.avg_fill_price - exit_.fees


async def test_a_bracket_exit_never_opens_a_position_once_its_entry_was_closed_elsewhere(engine: Engine) -> None:
    # On the ETH perpetual a plain sell could open a short; a bracket's stop must not: it only closes
    # what its entry bought, and here a manual sell closed that first (the bracket reserves nothing).
    desk = frame_desk(
        engine,
        [(0, 100, 101, 99.5, 100.5), (1, 100.5, 101, 100, 100.5), (2, 100.5, 100.6, 90, 91)],
        instrument=replay_instrument("ETH/USDT"),
    )
    await desk.entry_with_bracket("e1", "ETH/USDT", "1", stop="95", targets=["120"], weights=["1"])
    desk.at("2021-06-01T02:00:05")
    await desk.broker.place(OrderRequest(client_order_id="manual", symbol="ETH/USDT", side=Side.SELL, qty=D(1)))
    desk.at("2021-06-01T03:00:00")
    assert (await desk.order("manual")).status is OrderStatus.FILLED
    stop = await desk.order("e1-sl")
    assert stop.status is OrderStatus.REJECTED
    assert stop.reason == "exit of 1 ETH/USDT has nothing to close: the position is 0"
    assert await desk.broker.positions() == []  # flat: no short was opened by the stop


async def test_a_short_on_the_perpetual_receives_a_positive_funding_at_each_8_hour_mark_once(engine: Engine) -> None:
    # Short 1 ETH at the 01:00 open (2000) and hold it to 17:00: at the assumed +0.01% per 8 h longs
    # pay shorts, so the 08:00 and 16:00 marks each credit 0.01% of the short's value at the last
    # close before the mark (2000): 0.2 USDT each, to cash and to the position's P&L.
    rows = [(h, 2000, 2001, 1999, 2000) for h in range(18)]
    desk = frame_desk(engine, rows, instrument=ETH_PERP)
    await desk.broker.place(OrderRequest(client_order_id="sh", symbol="ETH/USDT", side=Side.SELL, qty=D(1)))
    desk.at("2021-06-01T07:59:00")
    cash_before = (await desk.broker.account("USDT")).cash
    desk.at("2021-06-01T17:00:00")
    account = await desk.broker.account("USDT")
    assert account.cash - cash_before == D("0.4")
    (short,) = await desk.broker.positions()
    entry = await desk.order("sh")
    assert short.realized_pnl == D("0.4") and entry.fees > 0  # the carry is P&L; fees stay the fill's
    twin = PaperBroker("paper", desk.broker._market, desk.clock, SqlPaperLedger(engine), desk.broker.config)
    await twin.process()  # another process looking at the same moment charges nothing again
    assert (await twin.account("USDT")).cash == account.cash


# Hourly ETH perpetual bars on 2021-06-01 closing 2000 + 10 x hour: the 08:00 mark is charged on the
# 07:00 bar's close (2070), the 16:00 mark on the 15:00 bar's (2150).
RISING = [
    (h, 2000 + 10 * (h - 1) if h else 2000, 2000 + 10 * h + 1, 2000 + 10 * (h - 1) - 1, 2000 + 10 * h)
    for h in range(18)
]


def perpetual(rate_8h: str) -> Instrument:
    return ETH_PERP.model_copy(update={"funding": FundingTerms(rate_8h=D(rate_8h), basis=f"test {rate_8h}")})


def funding_entries(engine: Engine) -> list[tuple[datetime, Decimal]]:
    with Session(engine) as session:
        rows = session.exec(select(CashEntry).where(CashEntry.kind == "funding").order_by(col(CashEntry.id))).all()
        return [(utc(row.ts.replace(tzinfo=None).isoformat()), row.amount) for row in rows]


@pytest.mark.parametrize(
    ("side", "rate", "paid"),
    [
        # 2 ETH x 2070 x 0.03% = 1.242 at 08:00, 2 x 2150 x 0.03% = 1.29 at 16:00: 2.532 in all
        (Side.BUY, "0.0003", D("2.532")),  # a positive rate: longs pay
        (Side.BUY, "-0.0003", D("-2.532")),  # a negative one: longs receive
        (Side.SELL, "0.0003", D("-2.532")),  # the mirror: a short receives a positive rate
        (Side.SELL, "-0.0003", D("2.532")),  # and pays a negative one
    ],
)
async def test_funding_is_settled_by_both_sides_with_the_sign_of_the_rate(
    engine: Engine, side: Side, rate: str, paid: Decimal
) -> None:
    desk = frame_desk(engine, RISING, instrument=perpetual(rate))
    await desk.broker.place(OrderRequest(client_order_id="p", symbol="ETH/USDT", side=side, qty=D(2)))
    desk.at("2021-06-01T07:59:00")
    cash_before = (await desk.broker.account("USDT")).cash
    desk.at("2021-06-01T17:00:00")
    account = await desk.broker.account("USDT")
    assert cash_before - account.cash == paid
    (position,) = await desk.broker.positions()
    assert position.qty == (D(2) if side is Side.BUY else D(-2))
    assert position.realized_pnl == -paid  # a charge and a credit both show in the position's P&L
    sign = 1 if paid > 0 else -1
    assert funding_entries(engine) == [
        (utc("2021-06-01T08:00:00"), -sign * D("1.242")),
        (utc("2021-06-01T16:00:00"), -sign * D("1.29")),
    ]


async def test_a_position_opened_after_a_funding_mark_pays_nothing_for_it(engine: Engine) -> None:
    desk = frame_desk(engine, RISING, instrument=perpetual("0.0003"))
    desk.at("2021-06-01T08:00:05")  # the 08:00 mark has passed: the long fills at the 08:00 open
    await desk.broker.place(OrderRequest(client_order_id="late", symbol="ETH/USDT", side=Side.BUY, qty=D(2)))
    desk.at("2021-06-01T17:00:00")
    await desk.broker.process()
    assert (await desk.order("late")).filled_at == utc("2021-06-01T08:00:00")
    # Only 16:00: 2 x 2150 x 0.03%
    assert funding_entries(engine) == [(utc("2021-06-01T16:00:00"), -D("1.29"))]


async def test_a_zero_funding_rate_charges_nothing(engine: Engine) -> None:
    desk = frame_desk(engine, RISING, instrument=perpetual("0"))
    await desk.broker.place(OrderRequest(client_order_id="z", symbol="ETH/USDT", side=Side.BUY, qty=D(2)))
    desk.at("2021-06-01T17:00:00")
    await desk.broker.process()
    assert funding_entries(engine) == []
