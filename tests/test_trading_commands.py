"""The commands a trader expects, on the paper broker with real fills over the shipped 2021 replay
data under a simulated clock: /close (all or part of a position, through the plan's bracket, A-share
T+1 refused), /cancel, /plan (stop and targets moved on the live exit orders), /trades (round trips
with P&L net of fees and R), /orders and /signals paged, /risk with today's figures, and /users from
the console. Each bad input is refused with what was wrong and nothing written."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.core import Caller, CommandCore
from bot.services import Services
from storage.users import Role
from tests.support import restored_logging
from tests.test_core import TRADER, VIEWER, eth_signal, refused_without_writes
from venues.clock import SimulatedClock
from venues.errors import VenueError
from venues.models import OrderRequest, OrderStatus, OrderType, Side

pytestmark = pytest.mark.usefixtures("hermetic")


FILLED_AT = datetime(2021, 7, 6, 8, 0, 5, tzinfo=UTC)  # the ETH entry has filled; the bracket rests
NEXT_BAR = datetime(2021, 7, 6, 9, 0, 5, tzinfo=UTC)  # a market order placed at FILLED_AT has filled
CRYPTO = "replay-crypto"


async def filled_eth(core: CommandCore, services: Services, clock: SimulatedClock) -> str:
    """An approved ETH/USDT buy whose entry has filled, with its stop and three targets resting."""
    signal_id = await eth_signal(core)
    assert (await core.handle(TRADER, f"/approve {signal_id}")).ok
    clock.advance_to(FILLED_AT)
    await services.scanner.tick([CRYPTO])
    plan = services.plans.get(signal_id)
    assert plan is not None and plan.status == "open"
    return signal_id


async def order(services: Services, client_order_id: str, venue: str = CRYPTO):  # type: ignore[no-untyped-def]
    found = await services.venues[venue].broker_required().order(client_order_id)
    assert found is not None, client_order_id
    return found


async def held(services: Services, symbol: str, venue: str = CRYPTO) -> Decimal:
    positions = await services.venues[venue].broker_required().positions()
    return next((p.qty for p in positions if p.symbol == symbol), Decimal(0))


# --- /close ---


async def test_close_all_sells_at_the_next_open_and_the_plan_says_who_closed_it(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    signal_id = await filled_eth(core, services, clock)
    qty = await held(services, "ETH/USDT")
    reply = await core.handle(TRADER, "/close ETH/USDT")
    assert reply.ok, reply.text
    exit_id = f"{signal_id}-mc1"
    assert reply.text.startswith(f"order placed: sell {qty} ETH/USDT at market (order {exit_id}); fills at the next")
    assert reply.data["orders"] == [{"id": exit_id, "status": "pending", "qty": str(qty)}]
    assert ("telegram:1002", "close", exit_id) in [(a.actor, a.action, a.target) for a in services.signals.audit_log()]

    clock.advance_to(NEXT_BAR)
    events = await services.scanner.tick([CRYPTO])
    assert await held(services, "ETH/USDT") == 0
    sold = await order(services, exit_id)
    assert sold.status is OrderStatus.FILLED and sold.filled_qty == qty and sold.parent == signal_id
    # The bracket had nothing left to sell: cancelled with the reason.
    for suffix in ("sl", "tp1", "tp2", "tp3"):
        child = await order(services, f"{signal_id}-{suffix}")
        assert child.status is OrderStatus.CANCELLED and "nothing left to close" in child.reason
    plan = services.plans.get(signal_id)
    assert plan is not None and plan.status == "closed"
    assert plan.close_reason.startswith("manual close by telegram:1002: filled at the open")
    del events

    orders = await core.handle(VIEWER, "/orders")
    reasons = {o["id"]: o["reason"] for o in orders.data["orders"]}
    assert reasons[exit_id].startswith("manual close by telegram:1002: filled at the open")
    assert reasons[signal_id].startswith("entry: filled at the open")
    assert reasons[f"{signal_id}-sl"] == "stop: nothing left to close: the position is closed"

    # The round trip, figured by hand from the two orders: P&L net of both fees, R against the
    # risk taken at entry (entry fill to the card's stop).
    entry = await order(services, signal_id)
    assert entry.avg_fill_price is not None and sold.avg_fill_price is not None
    pnl = (sold.avg_fill_price - entry.avg_fill_price) * qty - entry.fees - sold.fees
    row = services.signals.get(signal_id)
    assert row is not None and row.stop is not None
    r = (pnl / ((entry.avg_fill_price - row.stop) * qty)).quantize(Decimal("0.01"))
    trades = await core.handle(VIEWER, "/trades")
    assert trades.ok, trades.text
    [trade] = trades.data["trades"]
    assert trade == {
        "signal_id": signal_id,
        "venue": CRYPTO,
        "symbol": "ETH/USDT",
        "side": "long",
        "qty": str(qty),
        "entry_price": str(entry.avg_fill_price),
        "exit_price": str(sold.avg_fill_price),
        "pnl": str(pnl.quantize(Decimal("0.01"))),  # money in JSON: to the cent
        "currency": "USDT",
        "r": str(r),
        "exit_reason": "manual",
    }
    assert f"{pnl:,.2f} USDT" in trades.text and f"{r:+}R" in trades.text and "manual" in trades.text
    assert "07-06 08:00" in trades.text  # the entry's fill time (UTC)

    again = await refused_without_writes(services, core, TRADER, "/close ETH/USDT")
    assert again.text == "no open position in ETH/USDT on replay-crypto; open positions there: none"


async def test_close_part_shrinks_the_bracket_to_what_is_left(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    signal_id = await filled_eth(core, services, clock)
    qty = await held(services, "ETH/USDT")
    reply = await core.handle(TRADER, "/close eth/usdt 0.5")
    assert reply.ok, reply.text
    pending = await refused_without_writes(services, core, TRADER, "/close ETH/USDT 1")
    assert f"a manual close of 0.5 ETH/USDT is already pending ({signal_id}-mc1)" in pending.text
    clock.advance_to(NEXT_BAR)
    await services.scanner.tick([CRYPTO])
    assert await held(services, "ETH/USDT") == qty - Decimal("0.5")
    stop = await order(services, f"{signal_id}-sl")
    assert stop.status is OrderStatus.PENDING and stop.qty == qty - Decimal("0.5")
    plan = services.plans.get(signal_id)
    assert plan is not None and plan.status == "open" and plan.qty_open == qty - Decimal("0.5")
    assert (await core.handle(VIEWER, "/trades")).text == "no closed trades yet"  # still open
    # Realized today: the half sold, net of its fee and its share of the entry's fee.
    sold, entry = await order(services, f"{signal_id}-mc1"), await order(services, signal_id)
    assert sold.avg_fill_price is not None and entry.avg_fill_price is not None
    realized = (
        (sold.avg_fill_price - entry.avg_fill_price) * Decimal("0.5")
        - sold.fees
        - entry.fees * Decimal("0.5") / entry.filled_qty
    )
    risk = await core.handle(VIEWER, "/risk")
    assert f"{realized:,.2f} USDT" in risk.text, risk.text
    # The second close is numbered on: the first one's id is kept.
    assert (await core.handle(TRADER, "/close ETH/USDT all")).data["orders"][0]["id"] == f"{signal_id}-mc2"


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        ("/close", "usage: /close SYMBOL [QTY|all]"),
        ("/close ETH/USDT 1 2", "usage: /close SYMBOL [QTY|all]"),
        ("/close ETH/USDT 0", "QTY must be above 0"),
        ("/close ETH/USDT -1", "QTY '-1' is not a quantity"),
        ("/close ETH/USDT 1e3", "QTY '1e3' is not a quantity"),
        ("/close ETH/USDT NaN", "QTY 'NaN' is not a quantity"),
        ("/close ETH/USDT \uff15", "has characters outside ASCII"),  # a full-width 5
        ("/close ETH/USDT 1000", "QTY 1000 is more than the 8.6204 ETH/USDT held; /close ETH/USDT all sells it all"),
        ("/close ETH/USDT 0.00001", "QTY 0.00001 is not a multiple of ETH/USDT's step 0.0001"),
        ("/close BTC/USD", "no open position in BTC/USD on replay-crypto; open positions there: ETH/USDT 8.6204"),
        ("/close DOGE/USDT", "DOGE/USDT"),
        ("/close ETH;DROP", "is not a symbol"),
    ],
)
async def test_close_bad_input_is_refused_without_writes(
    services: Services, core: CommandCore, clock: SimulatedClock, message: str, answer: str
) -> None:
    await filled_eth(core, services, clock)
    reply = await refused_without_writes(services, core, TRADER, message)
    assert answer in reply.text, reply.text


async def test_a_viewer_cannot_close_cancel_or_move_a_plan(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    signal_id = await filled_eth(core, services, clock)
    for message in ("/close ETH/USDT", f"/cancel {signal_id}-tp1", f"/plan {signal_id} stop=2300"):
        reply = await refused_without_writes(services, core, VIEWER, message)
        assert reply.text.endswith("needs the trader role; you are a viewer.")


async def test_close_refuses_a_shares_bought_today_then_sells_them_the_next_session(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    broker = services.venues["replay-cn"].broker_required()
    # 14:00 in Shanghai: a market buy of the CSI 300 ETF fills at the open of the running 5-minute bar.
    await broker.place(OrderRequest(client_order_id="cnbuy1", symbol="510300.SH", side=Side.BUY, qty=Decimal(200)))
    clock.advance_to(datetime(2021, 7, 6, 6, 10, tzinfo=UTC))
    assert (await order(services, "cnbuy1", "replay-cn")).status is OrderStatus.FILLED
    reply = await refused_without_writes(services, core, TRADER, "/close 510300.SH")
    assert reply.text == (
        "refused: 200 510300.SH bought today (2021-07-06) cannot be sold before the next session (A-share T+1); "
        "sellable now: 0"
    )
    odd = await refused_without_writes(services, core, TRADER, "/close 510300.SH 50")
    assert "sold in lots of 100 unless the whole 200 is sold" in odd.text
    clock.advance_to(datetime(2021, 7, 7, 2, 0, tzinfo=UTC))  # 10:00 the next trading day
    reply = await core.handle(TRADER, "/close 510300.SH 100")
    assert reply.ok, reply.text
    [placed] = reply.data["orders"]
    assert placed["id"].startswith("close-")  # no plan holds this position: an order of its own
    clock.advance_to(datetime(2021, 7, 7, 2, 10, tzinfo=UTC))
    assert await held(services, "510300.SH", "replay-cn") == 100
    orders = await core.handle(VIEWER, "/orders")
    reasons = {o["id"]: o["reason"] for o in orders.data["orders"]}
    assert reasons[placed["id"]].startswith("manual close by telegram:1002: filled at the open")
    assert "CNY" in orders.text  # fees in the instrument's currency


# --- /cancel ---


async def test_cancel_an_entry_takes_its_exits_and_plan_along(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    assert (await core.handle(TRADER, f"/approve {signal_id}")).ok
    reply = await core.handle(TRADER, f"/cancel {signal_id.upper()}")
    assert reply.ok, reply.text
    exits = [f"{signal_id}-{s}" for s in ("sl", "tp1", "tp2", "tp3")]
    assert reply.text.splitlines()[0] == f"order {signal_id} cancelled (buy 8.6204 ETH/USDT)"
    assert sorted(reply.data["cancelled"]) == sorted([signal_id, *exits])
    for coid in [signal_id, *exits]:
        assert (await order(services, coid)).status is OrderStatus.CANCELLED
    plan = services.plans.get(signal_id)
    assert plan is not None and plan.status == "cancelled" and plan.close_reason == "entry cancelled by telegram:1002"
    orders = await core.handle(VIEWER, "/orders")
    reasons = {o["id"]: o["reason"] for o in orders.data["orders"]}
    assert reasons[signal_id] == "entry, cancelled by telegram:1002"
    assert reasons[f"{signal_id}-tp1"] == "TP1, cancelled by telegram:1002"
    again = await refused_without_writes(services, core, TRADER, f"/cancel {signal_id}")
    assert again.text.startswith(f"order {signal_id} is already cancelled")
    assert again.text.endswith("only pending orders can be cancelled")


async def test_cancel_the_stop_warns_and_a_filled_order_is_refused(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    signal_id = await filled_eth(core, services, clock)
    filled = await refused_without_writes(services, core, TRADER, f"/cancel {signal_id}")
    entry = await order(services, signal_id)
    assert filled.text == (
        f"order {signal_id} is already filled at {entry.avg_fill_price}; only pending orders can be cancelled"
    )
    reply = await core.handle(TRADER, f"/cancel {signal_id}-sl")
    assert reply.ok and reply.text.endswith("warning: the position in ETH/USDT has no stop now"), reply.text
    assert (await order(services, f"{signal_id}-tp1")).status is OrderStatus.PENDING  # the rest stays


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        ("/cancel", "usage: /cancel ID"),
        ("/cancel a b", "usage: /cancel ID"),
        ("/cancel nosuchorder", "no order nosuchorder. Pending: "),
        ("/cancel x'OR'1'='1", "is not an order id (1-64 letters, digits and _ . : -)"),
        ("/cancel " + "a" * 65, "is not an order id"),
        ("/cancel abc\u212a", "is not an order id"),  # the Kelvin sign: never folded into a k
    ],
)
async def test_cancel_bad_input_is_refused_without_writes(
    services: Services, core: CommandCore, clock: SimulatedClock, message: str, answer: str
) -> None:
    await filled_eth(core, services, clock)
    reply = await refused_without_writes(services, core, TRADER, message)
    assert answer in reply.text, reply.text


# --- /plan ---


async def test_plan_moves_the_stop_and_a_target_on_the_live_orders(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    signal_id = await filled_eth(core, services, clock)
    # The last close is 2336.18: TP1 a tick above it fills on the next bar, at its new price.
    reply = await core.handle(TRADER, f"/plan {signal_id} stop=2300.00 TP1=2336.19")
    assert reply.ok, reply.text
    assert reply.text == (
        f"plan {signal_id} (ETH/USDT): stop 2245.37 -> 2300.00, TP1 2429.22 -> 2336.19; "
        "the live exit orders are amended (by telegram:1002)"
    )
    assert (await order(services, f"{signal_id}-sl")).stop_price == Decimal("2300.00")
    assert (await order(services, f"{signal_id}-tp1")).limit_price == Decimal("2336.19")
    plan = services.plans.get(signal_id)
    assert plan is not None and plan.stop == Decimal(2300) and plan.take_profits[0] == "2336.19"
    [entry] = [a for a in services.signals.audit_log() if a.action == "plan"]
    assert (entry.actor, entry.target) == ("telegram:1002", signal_id)
    assert entry.detail == {
        "stop": {"from": "2245.37", "to": "2300.00"},
        "tp1": {"from": "2429.22", "to": "2336.19"},
    }
    positions = await core.handle(VIEWER, "/positions")
    assert f"{signal_id}: stop 2300.00 TPs 2336.19/2502.76/2576.30 hit 0" in positions.text

    clock.advance_to(NEXT_BAR)
    await services.scanner.tick([CRYPTO])
    tp1 = await order(services, f"{signal_id}-tp1")
    assert tp1.status is OrderStatus.FILLED and tp1.avg_fill_price == Decimal("2336.19")
    # After TP1 the stop goes to break-even and trails by the risk taken at entry (the card's stop),
    # not by the distance to the stop /plan moved.
    stop = await order(services, f"{signal_id}-sl")
    entry_fill = (await order(services, signal_id)).avg_fill_price
    assert entry_fill is not None and stop.trail == entry_fill - Decimal("2245.37")
    moved = await refused_without_writes(services, core, TRADER, f"/plan {signal_id} tp1=2400")
    assert moved.text == f"tp1 of {signal_id} is filled: only a live exit can be moved"


@pytest.mark.parametrize(
    ("change", "answer"),
    [
        ("stop=2400", "stop=2400 refused: a long's stop must be below the last price 2336.18"),
        ("tp2=2300", "tp2=2300 refused: a long's target must be above the last price 2336.18"),
        ("tp2=2600", "refused: tp2 2600.00 would not be below tp3 2576.30; a long's levels go stop, TP1, TP2"),
        ("stop=2300.001", "stop 2300.001 is not on the tick 0.01: e.g. 2300.00 or 2300.01"),
        ("stop=-5", "stop '-5' is not a price"),
        ("stop=0", "stop '0' is not a price"),
        ("stop=inf", "stop 'inf' is not a price"),
        ("stop", "'stop' is not a change: use stop=P, tp1=P, tp2=P, tp3=P"),
        ("tp4=3000", "'tp4=3000' is not a change"),
        ("entry=2000", "'entry=2000' is not a change"),
        ("stop=2300 stop=2310", "stop is given twice"),
        ("stop=2300 tp1=2200", "tp1=2200 refused: a long's target must be above the last price"),  # nothing moves
    ],
)
async def test_plan_bad_levels_are_refused_and_nothing_changes(
    services: Services, core: CommandCore, clock: SimulatedClock, change: str, answer: str
) -> None:
    signal_id = await filled_eth(core, services, clock)
    reply = await refused_without_writes(services, core, TRADER, f"/plan {signal_id} {change}")
    assert answer in reply.text, reply.text
    assert (await order(services, f"{signal_id}-sl")).stop_price == Decimal("2245.37")


async def test_plan_of_a_pending_or_unknown_signal_is_refused(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    assert (await core.handle(TRADER, f"/approve {signal_id}")).ok
    reply = await refused_without_writes(services, core, TRADER, f"/plan {signal_id} stop=2300")
    assert reply.text == (
        f"plan {signal_id} cannot be changed: its entry has not filled yet (/cancel it to drop it). "
        "No position has an open plan."
    )
    for message, answer in [
        ("/plan abcd1234 stop=2300", "no plan for abcd1234"),
        (f"/plan {signal_id}", "usage: /plan ID stop=PRICE"),
        ("/plan ab\u212acd stop=1", "is not a signal id"),
    ]:
        assert answer in (await refused_without_writes(services, core, TRADER, message)).text


# --- listings ---


async def test_orders_pages_with_fees_in_their_currency_and_every_reason_filled(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    signal_id = await filled_eth(core, services, clock)
    first = await core.handle(VIEWER, "/orders 2")
    assert [o["id"] for o in first.data["orders"]] == [f"{signal_id}-tp3", f"{signal_id}-tp2"]
    assert first.text.endswith("rows 1-2 of 5; next page: /orders 2 2")
    last = await core.handle(VIEWER, "/orders 2 3")
    assert [o["id"] for o in last.data["orders"]] == [signal_id]
    assert last.text.endswith("rows 5-5 of 5")
    entry = await order(services, signal_id)
    assert f"{entry.fees:,.2f} USDT" in last.text and "0.00 USDT" in first.text
    every = await core.handle(VIEWER, "/orders")
    assert all(o["reason"] for o in every.data["orders"])
    assert [o["reason"] for o in every.data["orders"][:4]] == ["TP3", "TP2", "TP1", "stop"]
    past = await core.handle(VIEWER, "/orders 2 9")
    assert past.data["orders"] == [] and "page 9 is past the end: 5 rows, 2 a page" in past.text
    for message, answer in [
        ("/orders 0", "N '0' is not a whole number from 1 to 50; usage: /orders [N] [PAGE]"),
        ("/orders 51", "N '51' is not a whole number from 1 to 50"),
        ("/orders x", "N 'x' is not a whole number"),
        ("/orders 5 0", "PAGE '0' is not a whole number from 1 to 10000"),
        ("/orders 1 2 3", "usage: /orders [N] [PAGE]"),
        ("/trades -1", "N '-1' is not a whole number from 1 to 50; usage: /trades [N] [PAGE]"),
        ("/trades \u0661", "N '\u0661' is not a whole number"),  # an Arabic-Indic 1
    ]:
        assert answer in (await refused_without_writes(services, core, VIEWER, message)).text


async def test_signals_leave_out_holds_unless_asked_and_page(services: Services, core: CommandCore) -> None:
    hold = await core.handle(TRADER, "/signal BTC/USD")
    assert hold.data["status"] == "hold"
    signal_id = await eth_signal(core)
    every = await core.handle(VIEWER, "/signals all")
    assert [s["id"] for s in every.data["signals"]] == [signal_id] and every.data["total"] == 1
    holds = await core.handle(VIEWER, "/signals holds")
    assert [s["id"] for s in holds.data["signals"]] == [hold.data["signal_id"]]
    assert all(s["status"] == "hold" for s in holds.data["signals"])
    assert hold.data["signal_id"] not in (await core.handle(VIEWER, "/signals today")).text
    past = await core.handle(VIEWER, "/signals all 2")
    assert past.text == "no signals on page 2 (1 in all)"
    bad = await refused_without_writes(services, core, VIEWER, "/signals all x")
    assert "PAGE 'x' is not a whole number" in bad.text


async def test_signals_all_pages_twenty_at_a_time(services: Services, core: CommandCore) -> None:
    now = services.clock.now()
    from storage.tables import SignalRow

    for i in range(25):
        services.signals.create(
            SignalRow(
                id=f"page{i:04d}",
                venue=CRYPTO,
                symbol="BTC/USD",
                side="buy",
                status="rejected",
                created_at=now.replace(minute=i),
                updated_at=now,
            )
        )
    first = await core.handle(VIEWER, "/signals all")
    assert len(first.data["signals"]) == 20 and first.data["total"] == 25
    assert first.text.endswith("rows 1-20 of 25; next page: /signals all 2")
    second = await core.handle(VIEWER, "/signals all 2")
    assert [s["id"] for s in second.data["signals"]] == [f"page{i:04d}" for i in range(4, -1, -1)]


async def test_risk_shows_today_limits_left_and_cooldowns(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    signal_id = await eth_signal(core)
    assert (await core.handle(TRADER, f"/approve {signal_id}")).ok
    clock.advance_to(datetime(2021, 7, 6, 7, 0, 5, tzinfo=UTC))
    risk = await core.handle(VIEWER, "/risk")
    # The loss the gate counts: equity against the day's start (100,000), fees and the mark included.
    equity = (await services.venues[CRYPTO].broker_required().account("USDT")).equity
    loss = Decimal(100000) - equity
    assert loss > 0
    usdt = next(d for d in risk.data["today"] if d["venue"] == CRYPTO and d["currency"] == "USDT")
    assert usdt == {
        "venue": CRYPTO,
        "currency": "USDT",
        "realized_today": "0.00",
        "loss_today": str(loss.quantize(Decimal("0.01"))),
        "loss_limit": "2000.00",
        "trades_today": "1",
        "trades_left": "4",
    }
    assert "venue          day         realized today  loss today / limit" in risk.text
    assert f"replay-crypto  2021-07-06  0.00 USDT       {loss:,.2f} / 2,000.00 USDT  1/5     4     1/5" in risk.text
    # Medium profile: 120 minutes from the entry at 06:00:05.
    assert risk.data["cooldowns"] == ["ETH/USDT on replay-crypto until 2021-07-06 08:00 UTC"]
    assert risk.text.endswith("cooldowns: ETH/USDT on replay-crypto until 2021-07-06 08:00 UTC")
    clock.advance_to(datetime(2021, 7, 6, 8, 1, tzinfo=UTC))
    assert (await core.handle(VIEWER, "/risk")).text.endswith("cooldowns: none in force")


# --- /users from the console ---


def test_users_from_the_console_one_shot_grants_without_editing_the_database(tmp_path: Path) -> None:
    runner, data = CliRunner(), str(tmp_path / "d")
    with restored_logging():
        empty = runner.invoke(app, ["chat", "--data-dir", data, "-c", "/users"])
        assert empty.exit_code == 0 and "the local console is always admin" in empty.output
        added = runner.invoke(app, ["chat", "--data-dir", data, "-c", "/users add telegram:77 trader Tom"])
        assert added.exit_code == 0, added.output
        assert "telegram:77 added as trader (Tom)" in added.output
        promoted = runner.invoke(app, ["chat", "--data-dir", data, "-c", "/users role telegram:77 admin"])
        assert "telegram:77 is now an admin (was trader)" in promoted.output
        listed = runner.invoke(app, ["chat", "--data-dir", data, "-c", "/users list"])
        assert "telegram:77  admin" in listed.output
        refused = runner.invoke(app, ["chat", "--data-dir", data, "-c", "/users add 77 viewer"])
        assert refused.exit_code != 0 and "write telegram:ID or discord:ID (you are on the console)" in refused.output


# --- the brokers' amend ---


async def test_amend_moves_a_limit_and_refuses_prices_an_order_does_not_have(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    signal_id = await filled_eth(core, services, clock)
    broker = services.venues[CRYPTO].broker_required()
    moved = await broker.amend(f"{signal_id}-tp2", limit_price=Decimal("2510.00"))
    assert moved.type is OrderType.LIMIT and moved.limit_price == Decimal("2510.00")
    for coid, kwargs in [
        (f"{signal_id}-tp2", {"stop_price": Decimal(2000)}),
        (f"{signal_id}-sl", {"limit_price": Decimal(2000)}),
        (signal_id, {"limit_price": Decimal(2000)}),  # filled
    ]:
        with pytest.raises(VenueError, match="only a pending stop"):
            await broker.amend(coid, **kwargs)


def test_a_caller_is_the_same_type_from_the_core_and_its_groups() -> None:
    from bot import command_types

    assert Caller is command_types.Caller and Role.TRADER.allows(Role.VIEWER)


async def test_a_short_is_bought_back_and_its_plan_mirrors_a_long(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    """SPY sold short on the margin account with a bracket and a plan, as the graph leaves them."""
    from storage.tables import SignalRow, TradePlan
    from tools.exits import bracket

    clock.advance_to(datetime(2021, 7, 6, 14, 0, 5, tzinfo=UTC))  # 10:00 in New York
    venue = services.venues["replay-us"]
    broker = venue.broker_required()
    instrument = await venue.instrument("SPY")
    last = Decimal(repr(float((await venue.bars("SPY", "1m", limit=1))["close"].iloc[-1])))
    stop, targets = (last * Decimal("1.01")).quantize(Decimal("0.01")), (last - 2, last - 4)
    now = clock.now()
    services.signals.create(
        SignalRow(
            id="short001",
            venue="replay-us",
            symbol="SPY",
            side="sell",
            status="executed",
            stop=stop,
            created_at=now,
            updated_at=now,
        )
    )
    await broker.place(OrderRequest(client_order_id="short001", symbol="SPY", side=Side.SELL, qty=Decimal(10)))
    children = bracket(
        "short001",
        instrument,
        entry_side=Side.SELL,
        qty=Decimal(10),
        stop=stop,
        take_profits=targets,
        exit_weights=(Decimal("0.5"), Decimal("0.5")),
    )
    for child in children:
        await broker.place(child)
    services.plans.create(
        TradePlan(
            signal_id="short001",
            venue="replay-us",
            symbol="SPY",
            timeframe="1m",
            status="entry_pending",
            qty_entry=Decimal(10),
            qty_open=Decimal(10),
            stop=stop,
            take_profits=[str(t) for t in targets],
            exit_weights=["0.5", "0.5"],
            exit_orders=[c.client_order_id for c in children],
            updated_at=now,
        )
    )
    clock.advance_to(datetime(2021, 7, 6, 14, 2, 5, tzinfo=UTC))
    await services.scanner.tick(["replay-us"])
    assert await held(services, "SPY", "replay-us") == -10
    price = Decimal(repr(float((await venue.bars("SPY", "1m", limit=1))["close"].iloc[-1])))
    below = await refused_without_writes(services, core, TRADER, f"/plan short001 stop={price - 1:.2f}")
    assert f"a short's stop must be above the last price {price}" in below.text
    above = await refused_without_writes(services, core, TRADER, f"/plan short001 tp1={price + 1:.2f}")
    assert f"a short's target must be below the last price {price}" in above.text

    reply = await core.handle(TRADER, "/close SPY")
    assert reply.ok and reply.text.startswith("order placed: buy back 10 SPY at market (order short001-mc1)")
    clock.advance_to(datetime(2021, 7, 6, 14, 4, 5, tzinfo=UTC))
    await services.scanner.tick(["replay-us"])
    assert await held(services, "SPY", "replay-us") == 0
    entry, cover = await order(services, "short001", "replay-us"), await order(services, "short001-mc1", "replay-us")
    assert cover.side is Side.BUY and cover.status is OrderStatus.FILLED
    assert entry.avg_fill_price is not None and cover.avg_fill_price is not None
    pnl = (entry.avg_fill_price - cover.avg_fill_price) * 10 - entry.fees - cover.fees
    [trade] = (await core.handle(VIEWER, "/trades")).data["trades"]
    assert (trade["side"], trade["pnl"], trade["exit_reason"], trade["currency"]) == (
        "short",
        str(pnl),
        "manual",
        "USD",
    )


async def test_plan_puts_back_the_stop_when_a_target_cannot_be_amended(
    services: Services, core: CommandCore, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target that fills between the checks and its amendment: the stop already moved goes back."""
    signal_id = await filled_eth(core, services, clock)
    broker = services.venues[CRYPTO].broker_required()
    real_amend = broker.amend

    async def amend(client_order_id: str, **prices: Decimal | None) -> object:
        if client_order_id.endswith("-tp2"):
            raise VenueError(f"order {client_order_id} is a filled limit order")
        return await real_amend(client_order_id, **prices)

    monkeypatch.setattr(broker, "amend", amend)
    reply = await core.handle(TRADER, f"/plan {signal_id} stop=2300 tp2=2550")
    assert not reply.ok
    assert reply.text == f"/plan {signal_id}: order {signal_id}-tp2 is a filled limit order; nothing was changed"
    assert (await order(services, f"{signal_id}-sl")).stop_price == Decimal("2245.37")
    plan = services.plans.get(signal_id)
    assert plan is not None and plan.stop != Decimal(2300)
    assert not [a for a in services.signals.audit_log() if a.action == "plan"]


async def test_buying_back_a_short_without_a_plan_is_not_counted_as_an_entry(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    from agent.gather import risk_context

    clock.advance_to(datetime(2021, 7, 6, 14, 0, 5, tzinfo=UTC))  # 10:00 in New York
    broker = services.venues["replay-us"].broker_required()
    await broker.place(OrderRequest(client_order_id="bare-short", symbol="SPY", side=Side.SELL, qty=Decimal(5)))
    clock.advance_to(datetime(2021, 7, 6, 14, 2, 5, tzinfo=UTC))
    assert await held(services, "SPY", "replay-us") == -5
    reply = await core.handle(TRADER, "/close SPY")
    [placed] = reply.data["orders"]
    assert placed["id"].startswith("close-") and "buy back 5 SPY" in reply.text
    clock.advance_to(datetime(2021, 7, 6, 14, 4, 5, tzinfo=UTC))
    assert await held(services, "SPY", "replay-us") == 0
    context = await risk_context(services.deps, venue_name="replay-us", symbol="SPY", timeframe="1m")
    assert context.trades_today == 0 and context.last_trade_at is None
    us = next(d for d in (await core.handle(VIEWER, "/risk")).data["today"] if d["venue"] == "replay-us")
    assert us["trades_today"] == "0"
