"""PaperBroker over a real database: each fill rule, venue rule and money rule against numbers
worked out by hand (the arithmetic is in the comments), idempotency under concurrency and across
"processes", persistence across a restart, and bad input that must write nothing.

Times are UTC. XSHG trades 01:30-03:30 and 05:00-07:00 UTC; 2021-07-02 is a Friday, 07-05 a Monday.
The A-share series opens Monday after a Friday close of 2000.00, so Monday's price-limit band is
1800.00-2200.00 (2000 x 0.9 / x 1.1).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, func
from sqlmodel import Session, SQLModel, select

from storage.db import make_engine
from storage.paper_ledger import SqlPaperLedger
from storage.tables import CashEntry, FillRow, OrderRow
from tests.support import FrameMarket, bars_frame
from venues.adapters.alpaca.parse import instrument_from_asset
from venues.clock import SimulatedClock
from venues.errors import UnknownSymbolError, VenueError
from venues.models import (
    AssetClass,
    CnEquityFees,
    CryptoFees,
    Fill,
    Instrument,
    Liquidity,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from venues.paper import FillAt, PaperBroker, PaperBrokerConfig

D = Decimal
MOUTAI = "600519.SH"
CMB = "600036.SH"  # served the same bars as MOUTAI: a second symbol paid from the same cash
PINGAN = "601318.SH"  # served as daily bars only
BTC = "BTC/USDT"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cn_stock(symbol: str, timeframe: str) -> Instrument:
    return Instrument(
        venue="paper",
        symbol=symbol,
        asset_class=AssetClass.CN_EQUITY,
        currency="CNY",
        lot_size=D(100),
        qty_step=D(1),
        min_qty=D(100),
        tick_size=D("0.01"),
        fees=CnEquityFees(),
        calendar="XSHG",
        timeframe=timeframe,
        settlement_days=1,
        price_limit_pct=D("0.10"),
    )


INSTRUMENTS = [
    cn_stock(MOUTAI, "5m"),
    cn_stock(CMB, "5m"),
    cn_stock(PINGAN, "1d"),
    Instrument(
        venue="paper",
        symbol=BTC,
        asset_class=AssetClass.CRYPTO,
        currency="USDT",
        lot_size=D("0.0001"),  # crypto has no lots: buys step like every quantity
        qty_step=D("0.0001"),
        tick_size=D("0.01"),
        min_notional=D(10),
        fees=CryptoFees(maker_bps=D(8), taker_bps=D(10)),
        calendar="24/7",
        timeframe="1h",
    ),
]

Row = tuple[str, float, float, float, float, float]
FRIDAY_CLOSE: Row = ("2021-07-02T06:55Z", 2000, 2001, 1999, 2000, 100)
# Monday opens a little higher and drifts up; Tuesday higher again.
MOUTAI_BARS: list[Row] = [
    FRIDAY_CLOSE,
    ("2021-07-05T01:30Z", 2005, 2012, 2003, 2010, 100),
    ("2021-07-05T01:35Z", 2010, 2020, 2005, 2015, 100),
    ("2021-07-05T01:40Z", 2015, 2030, 2010, 2025, 100),
    ("2021-07-06T01:30Z", 2030, 2040, 2020, 2035, 100),
    ("2021-07-06T01:35Z", 2035, 2045, 2030, 2040, 100),
]
BTC_BARS: list[Row] = [
    ("2021-07-04T23:00Z", 34900, 35000, 34850, 35000, 10),
    ("2021-07-05T00:00Z", 35000, 35200, 34800, 35100, 10),
    ("2021-07-05T01:00Z", 35100, 35150, 34900, 35000, 10),
    ("2021-07-05T02:00Z", 35000, 35050, 34950, 35020, 10),
]


def xshg_daily_frame(rows: Sequence[Row]) -> pd.DataFrame:
    """Daily bars as the replay loader builds them: open at the 01:30 session open, final at the
    07:00 close (not 24 h later, which would hide a day's bar until the next open)."""
    frame = bars_frame(rows, "1d")
    frame["close_time"] = frame.index + pd.Timedelta(hours=5, minutes=30)
    return frame


PINGAN_BARS = xshg_daily_frame(
    [
        ("2021-07-02T01:30Z", 80, 81, 79, 80, 100),
        ("2021-07-05T01:30Z", 81, 82, 80, 81.5, 100),
        ("2021-07-06T01:30Z", 82, 83, 81, 82.5, 100),
    ]
)


class YieldingMarket(FrameMarket):
    """Gives the event loop away on every call, as a network venue would, so that concurrent
    coroutines really interleave between the broker's reads and writes."""

    async def instrument(self, symbol: str) -> Instrument:
        await asyncio.sleep(0)
        return await super().instrument(symbol)

    async def bars(self, symbol: str, timeframe: str, **kwargs: Any) -> pd.DataFrame:
        await asyncio.sleep(0)
        return await super().bars(symbol, timeframe, **kwargs)


class RecordingLedger(SqlPaperLedger):
    """Records whether each add_order created the row, to prove a race reached the database."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.created: list[bool] = []

    def add_order(self, order: Order) -> tuple[Order, bool]:
        stored, created = super().add_order(order)
        self.created.append(created)
        return stored, created


class GatedLedger(SqlPaperLedger):
    """Holds its first fill write until the other process's ledger reaches its own, so that both
    have priced their fills from the same stored state: the interleaving that two real processes
    produce now and then, made certain. ``reverse`` walks pending orders newest first, as a
    process that listed them in another order would."""

    def __init__(self, engine: Engine, gate: threading.Barrier, *, reverse: bool = False) -> None:
        super().__init__(engine)
        self._gate = gate
        self._reverse = reverse
        self._waited = False

    def orders(self, venue: str, status: OrderStatus | None = None) -> list[Order]:
        found = super().orders(venue, status)
        return found[::-1] if self._reverse else found

    def record_fill(
        self, order: Order, fill: Fill, position: Position, currency: str, *, trade_amount: Decimal | None = None
    ) -> None:
        if not self._waited:
            self._waited = True
            self._gate.wait()
        super().record_fill(order, fill, position, currency, trade_amount=trade_amount)


def process_in_two_threads(rig: Rig, db_url: str) -> list[list[Fill]]:
    """``process()`` in two threads, each a broker with its own engine, event loop and ledger."""
    gate = threading.Barrier(2, timeout=10)
    engines = [rig.engine, make_engine(db_url)]
    try:
        twins = [rig.twin(e, GatedLedger(e, gate, reverse=i == 1)) for i, e in enumerate(engines)]
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(asyncio.run, t.broker.process()) for t in twins]
            return [f.result() for f in futures]
    finally:
        engines[1].dispose()


@dataclass
class Rig:
    broker: PaperBroker
    clock: SimulatedClock
    ledger: SqlPaperLedger
    engine: Engine

    def at(self, moment: str) -> None:
        self.clock.advance_to(utc(moment))

    def twin(self, engine: Engine | None = None, ledger: SqlPaperLedger | None = None) -> Rig:
        """Another broker on the same venue and database: a second process, or a restart."""
        engine = engine or self.engine
        ledger = ledger or SqlPaperLedger(engine)
        broker = PaperBroker(self.broker.venue, self.broker._market, self.clock, ledger, self.broker.config)
        return Rig(broker, self.clock, ledger, engine)


def make_rig(
    engine: Engine,
    start: str,
    *,
    moutai: Sequence[Row] = MOUTAI_BARS,
    btc: Sequence[Row] = BTC_BARS,
    cash: Mapping[str, Decimal] | None = None,
    market_cls: type[FrameMarket] = FrameMarket,
    ledger: SqlPaperLedger | None = None,
    **config: Any,
) -> Rig:
    clock = SimulatedClock(utc(start))
    frames = {
        MOUTAI: bars_frame(moutai, "5m"),
        CMB: bars_frame(moutai, "5m"),
        PINGAN: PINGAN_BARS,
        BTC: bars_frame(btc, "1h"),
    }
    market = market_cls("paper", clock, INSTRUMENTS, frames)
    ledger = ledger or SqlPaperLedger(engine)
    cfg = PaperBrokerConfig(starting_cash=cash or {"CNY": D(1_000_000), "USDT": D(100_000)}, **config)
    return Rig(PaperBroker("paper", market, clock, ledger, cfg), clock, ledger, engine)


def buy(cid: str, qty: str | int = 100, symbol: str = MOUTAI, limit: str | None = None) -> OrderRequest:
    return _request(cid, Side.BUY, qty, symbol, limit)


def sell(cid: str, qty: str | int = 100, symbol: str = MOUTAI, limit: str | None = None) -> OrderRequest:
    return _request(cid, Side.SELL, qty, symbol, limit)


def _request(cid: str, side: Side, qty: str | int, symbol: str, limit: str | None) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        qty=D(qty),
        type=OrderType.LIMIT if limit else OrderType.MARKET,
        limit_price=D(limit) if limit else None,
    )


def rows(engine: Engine, table: type[SQLModel]) -> int:
    with Session(engine) as db:
        return db.exec(select(func.count()).select_from(table)).one()


async def the_fill(rig: Rig, cid: str) -> Fill:
    fills = await rig.broker.fills(cid)
    assert len(fills) == 1, fills
    return fills[0]


async def the_order(rig: Rig, cid: str) -> Order:
    (order,) = [o for o in await rig.broker.orders() if o.client_order_id == cid]
    return order


async def bought_monday(rig: Rig) -> None:
    """100 MOUTAI bought at Monday's 01:35 open: 2010 x 1.0005 = 2011.005 -> 2011.01; fees 54.30
    (commission 50.27525 -> 50.28, transfer 0.002% 4.02202 -> 4.02); cash 1000000 - 201101.00 - 54.30
    = 798844.70."""
    rig.at("2021-07-05T01:32")
    await rig.broker.place(buy("b1"))
    rig.at("2021-07-05T01:40")
    assert (await the_fill(rig, "b1")).price == D("2011.01")


# --- the fill model ---------------------------------------------------------------------------


async def test_market_order_fills_at_the_next_bar_open_plus_slippage(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")  # inside the 01:30 bar, which must not be used
    order = await rig.broker.place(buy("b1"))
    assert order.status is OrderStatus.PENDING

    # The 01:30 bar is final now but opened before the order; the 01:35 bar is not final yet.
    rig.at("2021-07-05T01:39:59")
    assert await rig.broker.fills() == []
    assert (await the_order(rig, "b1")).status is OrderStatus.PENDING

    rig.at("2021-07-05T01:40")
    fill = await the_fill(rig, "b1")
    # 2010 (01:35 open) x 1.0005 = 2011.005 -> up to the tick 2011.01
    # 100 x 2011.01 = 201101.00; commission 0.025% = 50.27525 -> 50.28; transfer 0.002% = 4.02; total 54.30
    assert (fill.price, fill.fee, fill.liquidity) == (D("2011.01"), D("54.30"), Liquidity.TAKER)
    assert fill.ts == utc("2021-07-05T01:35")
    assert fill.trade_day == "2021-07-05"
    order = await the_order(rig, "b1")
    assert (order.status, order.filled_qty, order.avg_fill_price, order.fees) == (
        OrderStatus.FILLED,
        D(100),
        D("2011.01"),
        D("54.30"),
    )


@pytest.mark.parametrize(
    ("slippage_bps", "price"),
    [
        (0, "2010.00"),  # the exact 01:35 open
        (5, "2011.01"),  # 2010 x 1.0005 = 2011.005 -> 2011.01
        (20, "2014.02"),  # 2010 x 1.002 = 2014.02, already on the tick
    ],
)
async def test_slippage_is_configurable(engine: Engine, slippage_bps: int, price: str) -> None:
    rig = make_rig(engine, "2021-07-05T01:32", slippage_bps=D(slippage_bps))
    await rig.broker.place(buy("b1"))
    rig.at("2021-07-05T01:40")
    assert (await the_fill(rig, "b1")).price == D(price)


async def test_market_sell_slips_down_to_the_tick(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    await bought_monday(rig)
    rig.at("2021-07-06T01:00")
    await rig.broker.place(sell("s1"))
    rig.at("2021-07-06T01:35")
    # 2030 (Tuesday 01:30 open) x 0.9995 = 2028.985 -> down to 2028.98, not 2028.99 as half-up rounding gives
    assert (await the_fill(rig, "s1")).price == D("2028.98")


async def test_fill_at_quote_fills_at_once_at_the_latest_close(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:42", fill_at=FillAt.QUOTE)
    order = await rig.broker.place(buy("b1"))
    # latest final bar: 01:35, close 2015; 2015 x 1.0005 = 2016.0075 -> 2016.01
    # 100 x 2016.01 = 201601.00; commission 50.40025 -> 50.40; transfer 4.03202 -> 4.03; total 54.43
    assert (order.status, order.avg_fill_price, order.fees) == (OrderStatus.FILLED, D("2016.01"), D("54.43"))
    fill = await the_fill(rig, "b1")
    assert fill.ts == utc("2021-07-05T01:42")


LOCKED_MONDAY: list[Row] = [
    FRIDAY_CLOSE,
    ("2021-07-05T01:30Z", 2200, 2200, 2200, 2200, 100),  # locked at limit-up 2200.00 all day
    ("2021-07-05T06:55Z", 2200, 2200, 2200, 2200, 100),
    ("2021-07-06T01:30Z", 2300, 2400, 2250, 2350, 100),  # Tuesday's band: 1980.00-2420.00
]


async def test_fill_at_quote_keeps_equity_day_orders_in_their_session(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:42", moutai=LOCKED_MONDAY, fill_at=FillAt.QUOTE)
    order = await rig.broker.place(buy("b1"))
    assert (order.status, order.reason) == (OrderStatus.PENDING, "locked at limit up")
    # after the close the last quote is still Monday's locked 2200: not a price to buy at
    rig.at("2021-07-05T07:00")
    order = await the_order(rig, "b1")
    assert (order.status, order.reason) == (
        OrderStatus.CANCELLED,
        "day order expired unfilled at the 2021-07-05 close: locked at limit up",
    )


async def test_fill_at_quote_after_the_close_waits_for_the_next_session(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T08:00", moutai=LOCKED_MONDAY, fill_at=FillAt.QUOTE)
    assert (await rig.broker.place(buy("b1"))).status is OrderStatus.PENDING
    rig.at("2021-07-06T01:29")
    assert await rig.broker.fills() == []
    rig.at("2021-07-06T01:36")
    fill = await the_fill(rig, "b1")
    # Tuesday's first close 2350 x 1.0005 = 2351.175 -> 2351.18
    assert (fill.price, fill.ts) == (D("2351.18"), utc("2021-07-06T01:36"))


# --- limit orders (crypto, where maker and taker fees differ) ----------------------------------


async def test_limit_buy_trading_through_fills_at_the_limit_as_maker(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T00:30", cash={"USDT": D(100_000)})
    await rig.broker.place(buy("l1", "0.5", BTC, limit="35000"))
    rig.at("2021-07-05T02:00")
    fill = await the_fill(rig, "l1")
    # 01:00 bar opens at 35100, above the limit, and trades down to 34900: filled at the limit 35000
    # 0.5 x 35000 = 17500; maker 8 bps = 14.00
    assert (fill.price, fill.fee, fill.liquidity) == (D(35000), D("14.00"), Liquidity.MAKER)
    # 100000 - 17500 - 14.00 = 82486.00
    assert (await rig.broker.account()).cash == D("82486.00")


async def test_limit_buy_with_the_open_below_the_limit_fills_at_the_open_as_taker(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T00:30", cash={"USDT": D(100_000)})
    await rig.broker.place(buy("l1", "0.5", BTC, limit="35200"))
    await rig.broker.place(buy("l2", "0.5", BTC, limit="35110"))
    rig.at("2021-07-05T02:00")
    fill = await the_fill(rig, "l1")
    # 01:00 open 35100 <= 35200: taker at 35100 x 1.0005 = 35117.55
    # 0.5 x 35117.55 = 17558.775; taker 10 bps = 17.558775
    assert (fill.price, fill.fee, fill.liquidity) == (D("35117.55"), D("17.558775"), Liquidity.TAKER)
    # the slipped open 35117.55 is above 35110: a limit order never pays more than its limit
    capped = await the_fill(rig, "l2")
    assert (capped.price, capped.liquidity) == (D(35110), Liquidity.TAKER)


async def test_limit_buy_never_reached_stays_pending(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T00:30", cash={"USDT": D(100_000)})
    await rig.broker.place(buy("l1", "0.5", BTC, limit="34000"))
    rig.at("2021-07-05T03:00")  # lows 34900 and 34950: never 34000
    assert await rig.broker.fills() == []
    assert (await the_order(rig, "l1")).status is OrderStatus.PENDING


async def test_a_moved_limit_is_stored_and_fills_at_the_new_price(engine: Engine) -> None:
    # /plan moves a target (a resting limit): the ledger must keep the new price (the run ledger
    # once dropped it, so a backtest's moved target filled at the old one).
    rig = make_rig(engine, "2021-07-05T00:30", cash={"USDT": D(100_000)})
    await rig.broker.place(buy("l1", "0.5", BTC, limit="34000"))
    moved = await rig.broker.amend("l1", limit_price=D("34950.00"))
    assert moved.limit_price == (await the_order(rig, "l1")).limit_price == D("34950.00")
    rig.at("2021-07-05T02:00")
    fill = await the_fill(rig, "l1")  # the 01:00 bar trades down to 34900: filled at the moved limit
    assert (fill.price, fill.liquidity) == (D("34950.00"), Liquidity.MAKER)


# --- A-share rules ----------------------------------------------------------------------------


async def test_a_share_buys_are_in_lots_of_100(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    order = await rig.broker.place(buy("b1", 150))
    assert order.status is OrderStatus.REJECTED
    assert order.reason == "600519.SH is bought in lots of 100: 150 is not a multiple of 100"
    # a refusal is stored: the same request again returns it and places nothing
    assert await rig.broker.place(buy("b1", 150)) == order
    assert rows(engine, OrderRow) == 1


async def test_a_share_odd_lot_sells_only_clear_the_whole_position(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    # 250 shares from Friday (a bonus issue leaves odd lots); the broker itself only buys round lots.
    friday = utc("2021-07-02T07:00")
    rig.ledger.fund("paper", "CNY", D(1_000_000), friday)
    seed = Order(
        client_order_id="bonus",
        venue="paper",
        symbol=MOUTAI,
        side=Side.BUY,
        type=OrderType.MARKET,
        qty=D(250),
        status=OrderStatus.PENDING,
        created_at=friday,
        updated_at=friday,
    )
    rig.ledger.add_order(seed)
    rig.ledger.record_fill(
        seed.model_copy(update={"status": OrderStatus.FILLED, "filled_qty": D(250), "avg_fill_price": D(2000)}),
        Fill(
            client_order_id="bonus",
            venue="paper",
            symbol=MOUTAI,
            side=Side.BUY,
            qty=D(250),
            price=D(2000),
            fee=D(0),
            liquidity=Liquidity.TAKER,
            ts=friday,
            trade_day="2021-07-02",
        ),
        Position(venue="paper", symbol=MOUTAI, qty=D(250), avg_cost=D(2000), opened_at=friday, updated_at=friday),
        "CNY",
    )

    odd = await rig.broker.place(sell("s1", 50))
    assert odd.status is OrderStatus.REJECTED
    assert odd.reason == (
        "600519.SH is sold in lots of 100, or an odd remainder all at once: 50 is neither (you hold 250)"
    )
    whole = await rig.broker.place(sell("s2", 250))
    assert whole.status is OrderStatus.PENDING
    rig.at("2021-07-05T01:40")
    # 2010 x 0.9995 = 2008.995 -> 2008.99
    assert (await the_fill(rig, "s2")).price == D("2008.99")
    assert await rig.broker.positions() == []


async def test_a_share_t_plus_1(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    await bought_monday(rig)

    same_day = await rig.broker.place(sell("s1"))
    assert same_day.status is OrderStatus.REJECTED
    assert same_day.reason == (
        "insufficient position: selling 100 600519.SH but you hold 100 600519.SH, 100 bought today "
        "cannot be sold before the next session (T+1); sellable now: 0"
    )

    rig.at("2021-07-06T01:00")  # before Tuesday's open: Tuesday's session
    next_day = await rig.broker.place(sell("s2"))
    assert next_day.status is OrderStatus.PENDING
    rig.at("2021-07-06T01:35")
    assert (await the_fill(rig, "s2")).trade_day == "2021-07-06"


async def test_a_bar_locked_at_limit_up_does_not_fill_a_buy(engine: Engine) -> None:
    bars: list[Row] = [
        FRIDAY_CLOSE,
        ("2021-07-05T01:30Z", 2100, 2200, 2100, 2200, 100),
        ("2021-07-05T01:35Z", 2200, 2200, 2200, 2200, 100),  # locked at limit-up 2200.00
        ("2021-07-05T01:40Z", 2190, 2200, 2185, 2195, 100),  # the lock opens
    ]
    rig = make_rig(engine, "2021-07-05T01:32", moutai=bars)
    await rig.broker.place(buy("b1"))
    rig.at("2021-07-05T01:40")
    assert await rig.broker.fills() == []
    order = await the_order(rig, "b1")
    assert (order.status, order.reason) == (OrderStatus.PENDING, "locked at limit up")

    rig.at("2021-07-05T01:45")
    # 2190 x 1.0005 = 2191.095 -> 2191.10
    assert (await the_fill(rig, "b1")).price == D("2191.10")


async def test_a_bar_opening_beyond_the_band_fills_at_the_band(engine: Engine) -> None:
    bars: list[Row] = [
        FRIDAY_CLOSE,
        ("2021-07-05T01:30Z", 2100, 2150, 2100, 2150, 100),
        ("2021-07-05T01:35Z", 2250, 2260, 2190, 2200, 100),  # opens above the 2200.00 limit-up
    ]
    rig = make_rig(engine, "2021-07-05T01:32", moutai=bars)
    await rig.broker.place(buy("b1"))
    rig.at("2021-07-05T01:40")
    # 2250 x 1.0005 = 2251.125 -> 2251.13, clamped to the band's top 2200.00
    assert (await the_fill(rig, "b1")).price == D("2200.00")


async def test_a_limit_price_outside_the_band_is_rejected(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    above = await rig.broker.place(buy("b1", limit="2200.01"))
    assert above.status is OrderStatus.REJECTED
    assert above.reason == "limit price 2200.01 is outside today's price-limit band 1800.00-2200.00 for 600519.SH"
    below = await rig.broker.place(buy("b2", limit="1799.99"))
    assert below.status is OrderStatus.REJECTED
    # the band's edges themselves are valid prices
    assert (await rig.broker.place(buy("b3", limit="2200.00"))).status is OrderStatus.PENDING
    assert (await rig.broker.place(buy("b4", limit="1800.00"))).status is OrderStatus.PENDING


async def test_a_limit_price_off_the_tick_is_rejected(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    order = await rig.broker.place(buy("b1", limit="2010.005"))
    assert order.status is OrderStatus.REJECTED
    assert order.reason == "limit price 2010.005 of 600519.SH is not a multiple of its tick size 0.01"


async def test_an_unfilled_equity_day_order_is_cancelled_at_the_close(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    await rig.broker.place(buy("b1", limit="1900.00"))  # Monday's lows are 2003 and up
    rig.at("2021-07-05T06:59")
    assert (await the_order(rig, "b1")).status is OrderStatus.PENDING
    rig.at("2021-07-05T07:00")
    order = await the_order(rig, "b1")
    assert order.status is OrderStatus.CANCELLED
    assert order.reason == (
        "day order expired unfilled at the 2021-07-05 close: no bar in the session traded at an acceptable price"
    )
    rig.at("2021-07-06T02:00")  # Tuesday trades through 1900 nowhere either, but it must not come back
    assert (await the_order(rig, "b1")).status is OrderStatus.CANCELLED
    assert (await rig.broker.account()).reserved_cash == 0


async def test_with_daily_bars_an_order_placed_in_the_session_fills_at_the_next_open(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T03:00")  # Monday, mid-morning; Monday's bar is not final
    await rig.broker.place(buy("b1", symbol=PINGAN))
    rig.at("2021-07-05T07:00")  # Monday's bar is final now, but it opened before the order
    assert (await the_order(rig, "b1")).status is OrderStatus.PENDING
    rig.at("2021-07-06T06:59")
    assert await rig.broker.fills() == []
    rig.at("2021-07-06T07:00")
    fill = await the_fill(rig, "b1")
    # Tuesday's open 82 x 1.0005 = 82.041 -> 82.05; 100 x 82.05 = 8205.00;
    # commission 2.05125 -> 2.05 -> minimum 5.00; transfer 0.1641 -> 0.16; total 5.16
    assert (fill.price, fill.fee, fill.ts) == (D("82.05"), D("5.16"), utc("2021-07-06T01:30"))


# --- crypto rules -----------------------------------------------------------------------------


async def test_crypto_min_notional(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T00:30", cash={"USDT": D(100_000)})
    order = await rig.broker.place(buy("c1", "0.0002", BTC))
    # 0.0002 x 35000 (last close) = 7.00 < 10
    assert order.status is OrderStatus.REJECTED
    assert order.reason == "order value 7.00 USDT is below the minimum of 10 USDT for BTC/USDT"


async def test_an_order_below_the_minimum_quantity_is_refused_entry_and_exit(engine: Engine) -> None:
    # A venue whose orders start at 0.001 BTC although quantities step by 0.0001 (ccxt's
    # limits.amount.min above its precision), with no minimum value to hide behind.
    btc = INSTRUMENTS[-1].model_copy(update={"min_qty": D("0.001"), "min_notional": D(0)})
    clock = SimulatedClock(utc("2021-07-05T00:30"))
    market = FrameMarket("paper", clock, [btc], {BTC: bars_frame(BTC_BARS, "1h")})
    config = PaperBrokerConfig(starting_cash={"USDT": D(100_000)})
    broker = PaperBroker("paper", market, clock, SqlPaperLedger(engine), config)
    small = await broker.place(buy("m1", "0.0005", BTC))
    assert small.status is OrderStatus.REJECTED
    assert small.reason == (
        "quantity 0.0005 of BTC/USDT is below its minimum order quantity of 0.001 (the venue refuses smaller orders)"
    )
    assert (await broker.place(buy("m2", "0.002", BTC))).status is OrderStatus.PENDING
    # A bracket exit is held to it too: a 0.0005 target of the 0.002 entry could never be sent.
    child = OrderRequest(
        client_order_id="m2-tp1", symbol=BTC, side=Side.SELL, qty=D("0.0005"), type=OrderType.LIMIT,
        limit_price=D(36000), parent="m2",
    )  # fmt: skip
    refused = await broker.place(child)
    assert refused.status is OrderStatus.REJECTED and "below its minimum order quantity of 0.001" in refused.reason


async def test_an_a_share_odd_remainder_under_one_lot_is_sold_whole(engine: Engine) -> None:
    # 60 shares left by a bonus issue: under the 100-share minimum, yet sold all at once (the lot rule).
    rig = make_rig(engine, "2021-07-05T01:32")
    friday = utc("2021-07-02T07:00")
    rig.ledger.fund("paper", "CNY", D(1_000_000), friday)
    seed = Order(
        client_order_id="bonus", venue="paper", symbol=MOUTAI, side=Side.BUY, type=OrderType.MARKET, qty=D(60),
        status=OrderStatus.PENDING, created_at=friday, updated_at=friday,
    )  # fmt: skip
    rig.ledger.add_order(seed)
    rig.ledger.record_fill(
        seed.model_copy(update={"status": OrderStatus.FILLED, "filled_qty": D(60), "avg_fill_price": D(2000)}),
        Fill(
            client_order_id="bonus",
            venue="paper",
            symbol=MOUTAI,
            side=Side.BUY,
            qty=D(60),
            price=D(2000),
            fee=D(0),
            liquidity=Liquidity.TAKER,
            ts=friday,
            trade_day="2021-07-02",
        ),
        Position(venue="paper", symbol=MOUTAI, qty=D(60), avg_cost=D(2000), opened_at=friday, updated_at=friday),
        "CNY",
    )
    assert (await rig.broker.place(sell("s1", 60))).status is OrderStatus.PENDING
    # A buy of under a lot stays refused, by the lot rule that says why.
    bought = await rig.broker.place(buy("b1", 60))
    assert bought.status is OrderStatus.REJECTED and "bought in lots of 100" in bought.reason


def test_alpaca_whole_share_stocks_have_a_minimum_of_one_share() -> None:
    asset = {"symbol": "BRK.A", "name": "Berkshire", "class": "us_equity", "fractionable": False}
    assert instrument_from_asset(asset, "alpaca").min_qty == D(1)
    assert instrument_from_asset(asset | {"fractionable": True}, "alpaca").min_qty == 0


async def test_crypto_step_size(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T00:30", cash={"USDT": D(100_000)})
    order = await rig.broker.place(buy("c1", "0.00015", BTC))
    assert order.status is OrderStatus.REJECTED
    assert order.reason == "quantity 0.00015 of BTC/USDT is not a multiple of its step size 0.0001"
    assert (await rig.broker.place(buy("c2", "0.0015", BTC))).status is OrderStatus.PENDING


async def test_crypto_orders_are_good_till_cancelled(engine: Engine) -> None:
    bars = [
        *BTC_BARS,
        ("2021-07-05T23:00Z", 35000, 35050, 34950, 35000, 10),
        ("2021-07-06T00:00Z", 35000, 35050, 34800, 34900, 10),
        ("2021-07-06T01:00Z", 34500, 34600, 33900, 34000, 10),
    ]
    rig = make_rig(engine, "2021-07-05T00:30", btc=bars, cash={"USDT": D(100_000)})
    await rig.broker.place(buy("c1", "0.5", BTC, limit="34000"))
    rig.at("2021-07-06T01:00")  # past UTC midnight, the 24/7 calendar's day boundary
    assert (await the_order(rig, "c1")).status is OrderStatus.PENDING
    rig.at("2021-07-06T02:00")
    fill = await the_fill(rig, "c1")
    # opens 34500 above the limit, trades down to 33900: maker at 34000; 0.5 x 34000 = 17000 x 8 bps = 13.60
    assert (fill.price, fill.fee, fill.liquidity) == (D(34000), D("13.60"), Liquidity.MAKER)


# --- money --------------------------------------------------------------------------------------


async def test_insufficient_cash_at_placement(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32", cash={"CNY": D(100_000)})
    order = await rig.broker.place(buy("b1"))
    # estimate at the last close 2000 x 1.0005 = 2001.00; 100 x 2001.00 = 200100.00;
    # commission 50.025 -> 50.03; transfer 4.002 -> 4.00; 200154.03
    assert order.status is OrderStatus.REJECTED
    assert order.reason == (
        "insufficient cash: buying 100 600519.SH needs about 200154.03 CNY with costs, available 100000.00 CNY"
    )


async def test_insufficient_cash_at_fill_after_a_gap_up(engine: Engine) -> None:
    bars: list[Row] = [
        FRIDAY_CLOSE,
        ("2021-07-05T01:30Z", 2005, 2012, 2003, 2010, 100),
        ("2021-07-05T01:35Z", 2020, 2025, 2015, 2020, 100),
    ]
    rig = make_rig(engine, "2021-07-05T01:32", moutai=bars, cash={"CNY": D(201_000)})
    # the estimate (200154.03, as above) fits in 201000
    assert (await rig.broker.place(buy("b1"))).status is OrderStatus.PENDING
    rig.at("2021-07-05T01:40")
    order = await the_order(rig, "b1")
    # 2020 x 1.0005 = 2021.01; 100 x 2021.01 = 202101.00; commission 50.52525 -> 50.53;
    # transfer 4.04202 -> 4.04; 202155.57 > 201000
    assert order.status is OrderStatus.REJECTED
    assert order.reason == "insufficient cash at fill: 202155.57 CNY needed, 201000.00 held"
    assert await rig.broker.fills() == []
    assert (await rig.broker.account()).cash == D(201_000)


async def test_selling_what_is_not_held_is_rejected(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    order = await rig.broker.place(sell("s1"))
    assert order.status is OrderStatus.REJECTED
    assert order.reason == (
        "insufficient position: selling 100 600519.SH but you hold 0 600519.SH; sellable now: 0; "
        "600519.SH cannot be sold short: A-shares and A-share ETFs are long-only on this account "
        "(no securities lending)"
    )


async def test_no_short_selling(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T00:30", cash={"USDT": D(100_000)})
    short = await rig.broker.place(sell("s0", "0.5", BTC))
    assert short.status is OrderStatus.REJECTED
    assert short.reason == (
        "insufficient position: selling 0.5 BTC/USDT but you hold 0 BTC/USDT; sellable now: 0; "
        "BTC/USDT cannot be sold short: spot crypto is never sold short here (only perpetuals are)"
    )

    await rig.broker.place(buy("b1", "0.5", BTC))
    rig.at("2021-07-05T02:00")
    assert len(await rig.broker.fills("b1")) == 1
    too_many = await rig.broker.place(sell("s1", "0.6", BTC))
    assert too_many.status is OrderStatus.REJECTED
    assert too_many.reason.endswith("you hold 0.5 BTC/USDT; sellable now: 0.5")
    # a pending sell holds its quantity: a second sell of the same coins is a short sale too
    assert (await rig.broker.place(sell("s2", "0.5", BTC))).status is OrderStatus.PENDING
    again = await rig.broker.place(sell("s3", "0.5", BTC))
    assert again.status is OrderStatus.REJECTED
    assert again.reason.endswith("0.5 already in pending sell orders; sellable now: 0.0")  # 0.5 - 0.5


async def test_pending_buys_reserve_cash(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32", cash={"CNY": D(300_000)})
    assert (await rig.broker.place(buy("b1"))).status is OrderStatus.PENDING
    account = await rig.broker.account()
    # the pending order's estimate: 200154.03 (as above); 300000 - 200154.03 = 99845.97
    assert (account.cash, account.reserved_cash, account.available_cash) == (
        D(300_000),
        D("200154.03"),
        D("99845.97"),
    )
    second = await rig.broker.place(buy("b2"))  # 200154.03 would fit in 300000 without the first order
    assert second.status is OrderStatus.REJECTED
    assert second.reason == (
        "insufficient cash: buying 100 600519.SH needs about 200154.03 CNY with costs, available 99845.97 CNY"
    )


async def test_avg_cost_includes_buy_fees(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    await bought_monday(rig)
    (position,) = await rig.broker.positions()
    # (201101.00 + 54.30) / 100 = 2011.553
    assert (position.qty, position.avg_cost, position.realized_pnl) == (D(100), D("2011.553"), D(0))
    assert (await rig.broker.account("CNY")).cash == D("798844.70")


async def test_realized_pnl_is_net_of_fees(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    await bought_monday(rig)
    rig.at("2021-07-06T01:00")
    await rig.broker.place(sell("s1"))
    rig.at("2021-07-06T01:35")
    fill = await the_fill(rig, "s1")
    # 2030 x 0.9995 = 2028.985 -> 2028.98; 100 x 2028.98 = 202898.00; commission 50.7245 -> 50.72;
    # stamp duty 0.1% = 202.898 -> 202.90; transfer 0.002% = 4.05796 -> 4.06; total 257.68
    assert (fill.price, fill.fee) == (D("2028.98"), D("257.68"))
    (position,) = [p for p in rig.ledger.positions("paper") if p.symbol == MOUTAI]
    # (2028.98 - 2011.553) x 100 - 257.68 = 1742.70 - 257.68 = 1485.02
    assert (position.qty, position.realized_pnl) == (D(0), D("1485.02"))
    account = await rig.broker.account("CNY")
    # 798844.70 + 202898.00 - 257.68 = 1001485.02: the cash gained is the realized PnL
    assert (account.cash, account.equity, account.positions) == (D("1001485.02"), D("1001485.02"), ())
    assert await rig.broker.positions() == []


async def test_equity_is_cash_plus_positions_at_the_last_close(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    await bought_monday(rig)
    account = await rig.broker.account("CNY")
    # last final bar 01:35, close 2015: 100 x 2015 = 201500; 798844.70 + 201500 = 1000344.70
    assert (account.cash, account.positions_value, account.equity) == (
        D("798844.70"),
        D(201500),
        D("1000344.70"),
    )
    rig.at("2021-07-05T01:45")
    # last final bar 01:40, close 2025: 100 x 2025 = 202500; 798844.70 + 202500 = 1001344.70
    assert (await rig.broker.account("CNY")).equity == D("1001344.70")


# --- idempotency --------------------------------------------------------------------------------


async def test_same_client_order_id_places_one_order(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    first = await rig.broker.place(buy("sig-1"))
    assert await rig.broker.place(buy("sig-1")) == first
    rig.at("2021-07-05T01:40")
    again = await rig.broker.place(buy("sig-1"))  # after the fill: the filled order, not a new one
    assert (again.status, again.avg_fill_price) == (OrderStatus.FILLED, D("2011.01"))
    assert (rows(engine, OrderRow), rows(engine, FillRow)) == (1, 1)
    assert (await rig.broker.account("CNY")).cash == D("798844.70")  # charged once


async def test_same_client_order_id_with_other_parameters_is_an_error(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    await rig.broker.place(buy("sig-1"))
    with pytest.raises(VenueError) as caught:
        await rig.broker.place(buy("sig-1", 200))
    assert str(caught.value) == (
        "client order id 'sig-1' is already used by another order (buy 100 600519.SH on paper); use a new id"
    )
    with pytest.raises(VenueError, match="already used by another order"):
        await rig.broker.place(buy("sig-1", limit="2010.00"))
    assert rows(engine, OrderRow) == 1


async def test_concurrent_places_with_one_id_make_one_order(engine: Engine) -> None:
    # fill at the quote so that placement itself fills: at most one fill is then really tested
    rig = make_rig(engine, "2021-07-05T01:42", fill_at=FillAt.QUOTE, market_cls=YieldingMarket)
    results = await asyncio.gather(*(rig.broker.place(buy("sig-1")) for _ in range(20)))
    assert {o.client_order_id for o in results} == {"sig-1"}
    assert {o.status for o in results} == {OrderStatus.FILLED}
    assert (rows(engine, OrderRow), rows(engine, FillRow)) == (1, 1)
    # 2015 x 1.0005 -> 2016.01; 201601.00 + 54.43 fees = 201655.43; 1000000 - 201655.43 = 798344.57
    assert (await rig.broker.account("CNY")).cash == D("798344.57")


async def test_two_processes_with_one_id_make_one_order_and_one_fill(engine: Engine, db_url: str) -> None:
    ledger = RecordingLedger(engine)
    rig = make_rig(engine, "2021-07-05T01:32", market_cls=YieldingMarket, ledger=ledger)
    other_engine = make_engine(db_url)  # a second process has its own connections
    try:
        other_ledger = RecordingLedger(other_engine)
        other = rig.twin(other_engine, other_ledger)
        a, b = await asyncio.gather(rig.broker.place(buy("sig-1")), other.broker.place(buy("sig-1")))
        assert a == b
        # both got as far as inserting; the database's unique id let one through
        assert sorted(ledger.created + other_ledger.created) == [False, True]
        assert rows(engine, OrderRow) == 1

        rig.at("2021-07-05T01:40")
        fills_a, fills_b = await asyncio.gather(rig.broker.process(), other.broker.process())
        assert len(fills_a) + len(fills_b) == 1
        assert rows(engine, FillRow) == 1
        assert (await other.broker.account("CNY")).cash == D("798844.70")  # charged once
    finally:
        other_engine.dispose()


async def test_two_processes_filling_one_order_fill_it_once(engine: Engine, db_url: str) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    await rig.broker.place(buy("sig-1"))
    rig.at("2021-07-05T01:40")
    fills = process_in_two_threads(rig, db_url)  # both price the fill before either writes it
    assert sorted(len(f) for f in fills) == [0, 1]
    assert rows(engine, FillRow) == 1
    assert (await rig.broker.account("CNY")).cash == D("798844.70")  # charged once
    (position,) = await rig.broker.positions()
    assert position.qty == D(100)


async def test_two_processes_filling_two_orders_on_one_position_lose_neither(engine: Engine, db_url: str) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    await rig.broker.place(buy("b1"))
    await rig.broker.place(buy("b2"))
    rig.at("2021-07-05T01:40")
    # one process fills b1 while the other fills b2, both from the empty position they read
    fills = process_in_two_threads(rig, db_url)
    assert sorted(f.client_order_id for f in fills[0] + fills[1]) == ["b1", "b2"]
    (position,) = await rig.broker.positions()
    # each 100 x 2011.01 + 54.30 = 201155.30: 200 shares at avg 2011.553, 1000000 - 402310.60 = 597689.40
    assert (position.qty, position.avg_cost) == (D(200), D("2011.553"))
    assert (await rig.broker.account("CNY")).cash == D("597689.40")


async def test_two_processes_cannot_spend_the_same_cash_twice(engine: Engine, db_url: str) -> None:
    bars: list[Row] = [
        FRIDAY_CLOSE,
        ("2021-07-05T01:30Z", 2005, 2012, 2003, 2010, 100),
        ("2021-07-05T01:35Z", 2050, 2060, 2045, 2055, 100),  # gaps up
    ]
    rig = make_rig(engine, "2021-07-05T01:32", moutai=bars, cash={"CNY": D(410_000)})
    # each estimated at 200154.03 (see above): 400308.06 fits in 410000
    assert (await rig.broker.place(buy("b1", symbol=MOUTAI))).status is OrderStatus.PENDING
    assert (await rig.broker.place(buy("b2", symbol=CMB))).status is OrderStatus.PENDING
    rig.at("2021-07-05T01:40")
    # each fills at 2050 x 1.0005 = 2051.025 -> 2051.03; 205103.00 + commission 51.27575 -> 51.28
    # + transfer 4.10206 -> 4.10 = 205158.38; both: 410316.76 > 410000, so only one can fill, though
    # both processes read 410000 before either paid
    fills = process_in_two_threads(rig, db_url)
    assert len(fills[0] + fills[1]) == 1
    orders = sorted(await rig.broker.orders(), key=lambda o: o.status)
    assert [o.status for o in orders] == [OrderStatus.FILLED, OrderStatus.REJECTED]
    # 410000 - 205158.38 = 204841.62
    assert orders[1].reason == "insufficient cash at fill: 205158.38 CNY needed, 204841.62 held"
    assert (await rig.broker.account("CNY")).cash == D("204841.62")


# --- persistence --------------------------------------------------------------------------------


async def test_a_restart_sees_the_same_state(engine: Engine, db_url: str) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    await bought_monday(rig)
    await rig.broker.place(buy("b2", limit="1900.00"))
    before = (
        await rig.broker.account("CNY"),
        await rig.broker.positions(),
        await rig.broker.orders(),
        await rig.broker.fills(),
    )

    fresh_engine = make_engine(db_url)
    try:
        restarted = rig.twin(fresh_engine)
        after = (
            await restarted.broker.account("CNY"),
            await restarted.broker.positions(),
            await restarted.broker.orders(),
            await restarted.broker.fills(),
        )
        assert after == before
        assert after[0].cash == D("798844.70")
        assert [o.status for o in after[2]] == [OrderStatus.FILLED, OrderStatus.PENDING]
    finally:
        fresh_engine.dispose()


async def test_the_initial_deposit_is_made_once(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    brokers = [rig, rig.twin(), rig.twin()]
    for each in brokers:
        assert (await each.broker.account("CNY")).cash == D(1_000_000)
    rig.at("2021-07-06T01:00")
    assert (await rig.twin().broker.account("USDT")).cash == D(100_000)
    with Session(engine) as db:
        deposits = db.exec(select(CashEntry).where(CashEntry.kind == "deposit")).all()
    assert sorted((d.currency, d.amount) for d in deposits) == [("CNY", D(1_000_000)), ("USDT", D(100_000))]


# --- bad input ----------------------------------------------------------------------------------


BAD_QUANTITIES: list[object] = [
    0,
    "0",
    -100,
    "-0.5",
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    float("nan"),
    float("inf"),
]


async def test_bad_quantities_are_refused_before_anything_is_written(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    for qty in BAD_QUANTITIES:  # one database for all: each case must leave it empty
        with pytest.raises(ValidationError, match="qty"):
            await rig.broker.place(OrderRequest(client_order_id="bad", symbol=MOUTAI, side=Side.BUY, qty=qty))
        assert rows(engine, OrderRow) == 0, qty


@pytest.mark.parametrize("price", ["0", "-1", "NaN", "Infinity"])
def test_bad_limit_prices_are_refused(price: str) -> None:
    with pytest.raises(ValidationError, match="limit_price"):
        OrderRequest(
            client_order_id="bad", symbol=MOUTAI, side=Side.BUY, qty=D(100), type=OrderType.LIMIT, limit_price=D(price)
        )


def test_a_limit_order_needs_a_price_and_a_market_order_takes_none() -> None:
    with pytest.raises(ValidationError, match="a limit order needs a limit_price"):
        OrderRequest(client_order_id="x", symbol=MOUTAI, side=Side.BUY, qty=D(100), type=OrderType.LIMIT)
    with pytest.raises(ValidationError, match="a market order takes no limit_price"):
        OrderRequest(client_order_id="x", symbol=MOUTAI, side=Side.BUY, qty=D(100), limit_price=D(2000))


async def test_unknown_symbol_lists_the_valid_ones_and_writes_nothing(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32")
    with pytest.raises(UnknownSymbolError) as caught:
        await rig.broker.place(buy("b1", symbol="600000.SH"))
    assert str(caught.value) == (
        "unknown symbol '600000.SH' on venue 'paper'; valid symbols: 600036.SH, 600519.SH, 601318.SH, BTC/USDT"
    )
    assert (rows(engine, OrderRow), rows(engine, CashEntry)) == (0, 0)


async def test_cancelling(engine: Engine) -> None:
    rig = make_rig(engine, "2021-07-05T01:32", cash={"CNY": D(500_000)})
    await rig.broker.place(buy("b1"))
    assert (await rig.broker.place(buy("b2", limit="2000.00"))).status is OrderStatus.PENDING
    cancelled = await rig.broker.cancel("b2")
    assert (cancelled.status, cancelled.reason) == (OrderStatus.CANCELLED, "cancelled by request")
    assert (await rig.broker.account()).reserved_cash == D("200154.03")  # only b1's now

    rig.at("2021-07-05T01:40")  # b1 fills
    with pytest.raises(VenueError) as caught:
        await rig.broker.cancel("b1")
    assert str(caught.value) == "order b1 is already filled; only pending orders can be cancelled"
    with pytest.raises(VenueError, match="already cancelled"):
        await rig.broker.cancel("b2")
    with pytest.raises(VenueError, match="no order with client order id 'nope' on paper"):
        await rig.broker.cancel("nope")
    assert [f.client_order_id for f in await rig.broker.fills()] == ["b1"]


# --- with the shipped data ----------------------------------------------------------------------


async def test_round_trip_on_the_replay_venue(engine: Engine) -> None:
    from venues.replay import ReplayVenue

    clock = SimulatedClock(utc("2021-07-05T03:00"))  # Monday in the session; daily bars only
    venue = ReplayVenue("cn", clock)
    broker = PaperBroker(
        venue.name, venue, clock, SqlPaperLedger(engine), PaperBrokerConfig(starting_cash={"CNY": D(1_000_000)})
    )
    venue.broker = broker
    await venue.place_order(buy("r1"))
    clock.advance_to(utc("2021-07-06T07:00"))
    (fill,) = await broker.fills("r1")
    # 2021-07-06 open 1995.0 x 1.0005 = 1995.9975 -> 1996.00; 100 x 1996.00 = 199600.00;
    # commission 49.90; transfer 3.992 -> 3.99; total 53.89
    assert (fill.price, fill.fee, fill.trade_day) == (D("1996.00"), D("53.89"), "2021-07-06")

    # after the close of the 6th an order is for the 7th's session, when the shares are sellable
    assert (await venue.place_order(sell("r3"))).status is OrderStatus.PENDING
    clock.advance_to(utc("2021-07-07T07:00"))
    (fill,) = await broker.fills("r3")
    # 2021-07-07 open 2010.0 x 0.9995 = 2008.995 -> 2008.99; 100 x 2008.99 = 200899.00;
    # commission 50.22475 -> 50.22; stamp 0.1% 200.899 -> 200.90; transfer 4.01798 -> 4.02; total 255.14
    assert (fill.price, fill.fee) == (D("2008.99"), D("255.14"))
    account = await broker.account()
    # avg cost (199600 + 53.89) / 100 = 1996.5389; (2008.99 - 1996.5389) x 100 - 255.14 = 1245.11 - 255.14 = 989.97
    # cash 1000000 - 199653.89 + 200899.00 - 255.14 = 1000989.97
    assert account.cash == D("1000989.97")
    (position,) = SqlPaperLedger(engine).positions(venue.name)
    assert position.realized_pnl == D("989.97")
