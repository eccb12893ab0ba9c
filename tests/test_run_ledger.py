"""The backtest's in-memory paper ledger (storage.paper_ledger.RunPaperLedger) against the SQL one:
the paper broker's single-process rules give the same answers on it, and its flush writes the rows
the SQL ledger reads back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine

import tests.test_paper_broker as broker_suite
from storage.paper_ledger import RunPaperLedger, SqlPaperLedger
from venues.models import Order, OrderRequest, Side

# Every test of the paper broker's suite that runs in one process on one ledger, not reading the
# database's rows behind the ledger's back (those hold for the SQL ledger only, or for the run
# ledger after its flush, tested below).
_READS_ROWS = {
    "test_a_share_buys_are_in_lots_of_100",
    "test_round_trip_on_the_replay_venue",
    "test_same_client_order_id_places_one_order",
    "test_same_client_order_id_with_other_parameters_is_an_error",
}
_RULES = [
    name
    for name in dir(broker_suite)
    if name.startswith("test_")
    and name not in _READS_ROWS
    and not any(word in name for word in ("process", "restart", "concurrent", "written", "deposit", "writes"))
]
for _name in _RULES:
    globals()[f"{_name}_on_the_run_ledger"] = getattr(broker_suite, _name)


@pytest.fixture(autouse=True)
def run_ledger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(broker_suite, "SqlPaperLedger", RunPaperLedger)
    yield


async def test_the_flush_writes_what_the_sql_ledger_reads_back(engine: Engine) -> None:
    ledger = RunPaperLedger(engine)
    rig = broker_suite.make_rig(engine, "2021-07-05T00:30", ledger=ledger)
    btc = broker_suite.BTC
    await rig.broker.place(broker_suite.buy("in", "0.5", symbol=btc))
    await rig.broker.place(broker_suite.buy("never", "0.5", symbol=btc, limit="30000.00"))
    rig.at("2021-07-05T02:00")
    await rig.broker.place(broker_suite.sell("out", "0.2", symbol=btc))
    rig.at("2021-07-05T03:00")
    venue = rig.broker.venue
    assert len(await rig.broker.fills()) == len(ledger.fills(venue)) == 2
    assert SqlPaperLedger(engine).orders(venue) == []  # nothing written before the flush
    ledger.flush()
    sql = SqlPaperLedger(engine)
    assert sql.orders(venue) == ledger.orders(venue)
    assert sql.orders(venue, broker_suite.OrderStatus.PENDING) == ledger.orders(venue, broker_suite.OrderStatus.PENDING)
    assert sql.fills(venue) == ledger.fills(venue)
    assert sql.positions(venue) == ledger.positions(venue)
    assert sql.cash(venue, "USDT") == ledger.cash(venue, "USDT") < broker_suite.D(100_000)
    assert (
        sql.bought_on(venue, btc, "2021-07-05") == ledger.bought_on(venue, btc, "2021-07-05") == broker_suite.D("0.5")
    )
    with pytest.raises(RuntimeError, match="already written"):
        ledger.flush()


def test_running_totals_answer_as_the_sql_ledger_does(engine: Engine) -> None:
    # The run ledger keeps deposits, carry times, purchases per day and bracket children as it
    # records them (not by scanning every entry at every fire); after the flush the SQL ledger,
    # which queries the rows, must give the same answers.
    ledger = RunPaperLedger(engine)
    venue, cash, eth, btc = "paper-test", "USDT", "ETH/USDT", broker_suite.BTC
    start = broker_suite.utc("2021-07-05T00:00")
    ledger.fund(venue, cash, broker_suite.D(1000), start)
    ledger.fund(venue, cash, broker_suite.D(5), start)  # the initial deposit happens once
    charges = [(eth, 16), (btc, 8), (eth, 8), (eth, 16), (btc, 24)]
    charged = [
        ledger.charge_carry(venue, symbol, cash, broker_suite.D("0.25"), kind="funding", at=start + timedelta(hours=h))
        for symbol, h in charges
    ]
    assert charged == [True, True, True, False, True]  # the same mark twice is charged once
    entry = Order.from_request(broker_suite.buy("in", "0.5", symbol=btc), venue, at=start)
    ledger.add_order(entry)
    for cid, parent in (("stop", "in"), ("other", None), ("target", "in")):
        request = OrderRequest(
            client_order_id=cid, symbol=btc, side=Side.SELL, qty=broker_suite.D("0.5"), parent=parent
        )
        ledger.add_order(Order.from_request(request, venue, at=start + timedelta(minutes=1)))
    assert [o.client_order_id for o in ledger.children("in")] == ["stop", "target"]
    ledger.flush()
    sql = SqlPaperLedger(engine)
    assert sql.deposited(venue, cash) == ledger.deposited(venue, cash) == broker_suite.D(1000)
    assert sql.cash(venue, cash) == ledger.cash(venue, cash) == broker_suite.D(999)
    for symbol, last in ((eth, 16), (btc, 24)):
        assert (
            sql.last_carry(venue, symbol, cash)
            == ledger.last_carry(venue, symbol, cash)
            == start + timedelta(hours=last)
        )
    assert sql.last_carry(venue, "SOL/USDT", cash) is ledger.last_carry(venue, "SOL/USDT", cash) is None
    assert sql.children("in") == ledger.children("in")
    assert sql.children("other") == ledger.children("other") == []
