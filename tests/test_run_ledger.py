"""The backtest's in-memory paper ledger (storage.paper_ledger.RunPaperLedger) against the SQL one:
the paper broker's single-process rules give the same answers on it, and its flush writes the rows
the SQL ledger reads back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

import tests.test_paper_broker as broker_suite
from storage.paper_ledger import RunPaperLedger, SqlPaperLedger

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
