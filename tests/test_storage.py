"""Storage: migrations create every table on each backend; money and time survive a round trip
exactly; a failing unit of work leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect
from sqlmodel import Session, select

from storage.db import DatabaseUrlError, make_engine, normalize_url, redact_url, transaction
from storage.migrate import current_revision, ensure_latest, head_revision, latest_on_disk, upgrade
from storage.tables import AuditEntry, CashEntry, OrderRow

T0 = datetime(2021, 7, 5, 1, 30, tzinfo=UTC)

EXPECTED_TABLES = {
    "users",
    "watchlists",
    "signals",
    "signal_status_history",
    "approvals",
    "orders",
    "fills",
    "positions",
    "cash_ledger",
    "decision_traces",
    "scan_runs",
    "audit_log",
    "kv",
    "trade_plans",
    "equity_snapshots",
    "llm_cache",
    "chat_subscriptions",
    "card_messages",
    "chat_notify",
}


def test_migrations_create_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert tables >= EXPECTED_TABLES
    assert current_revision(engine) == head_revision()


def test_migrations_match_the_models(engine: Engine) -> None:
    """A model changed without a migration would drift silently: autogenerate must find nothing."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    import storage.tables  # noqa: F401

    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    assert upgrade(engine) == head_revision()


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path}/x.db")
    with eng.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_money_round_trips_exactly(engine: Engine) -> None:
    amounts = [Decimal("0.1"), Decimal("1234567.89012345"), Decimal("-5.00"), Decimal("100"), Decimal("1E-8")]
    with transaction(engine) as session:
        for i, amount in enumerate(amounts):
            session.add(
                CashEntry(venue="v", currency="CNY", amount=amount, balance_after=amount, kind="x", ref=str(i), ts=T0)
            )
    with Session(engine) as session:
        stored = [row.amount for row in session.exec(select(CashEntry).order_by(CashEntry.ref)).all()]
    assert stored == amounts
    assert all(isinstance(a, Decimal) for a in stored)


def test_times_come_back_aware_utc(engine: Engine) -> None:
    shanghai = timezone(timedelta(hours=8))
    with transaction(engine) as session:
        session.add(AuditEntry(actor="console:0", action="test", ts=datetime(2021, 7, 5, 9, 30, tzinfo=shanghai)))
    with Session(engine) as session:
        row = session.exec(select(AuditEntry)).one()
    assert row.ts == T0
    assert row.ts.tzinfo is not None and row.ts.utcoffset() == timedelta(0)


def test_naive_times_are_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), transaction(engine) as session:
        session.add(AuditEntry(actor="a", action="b", ts=datetime(2021, 1, 1)))
        session.flush()


def test_a_failing_unit_of_work_writes_nothing(engine: Engine) -> None:
    def order(coid: str) -> OrderRow:
        return OrderRow(
            client_order_id=coid,
            venue="v",
            symbol="S",
            side="buy",
            type="market",
            qty=Decimal(1),
            status="pending",
            created_at=T0,
            updated_at=T0,
        )

    with pytest.raises(RuntimeError), transaction(engine) as session:
        session.add(order("a"))
        session.add(CashEntry(venue="v", currency="USD", amount=Decimal(1), balance_after=Decimal(1), kind="x", ts=T0))
        session.flush()
        raise RuntimeError("boom after the first writes")
    with Session(engine) as session:
        assert session.exec(select(OrderRow)).all() == []
        assert session.exec(select(CashEntry)).all() == []


def test_urls_are_normalised_and_redacted() -> None:
    assert normalize_url("postgres://u:secret@h:5432/db").startswith("postgresql+psycopg://u:secret@h")
    assert "secret" not in redact_url("postgresql://u:secret@h/db")
    with pytest.raises(DatabaseUrlError, match="unsupported database URL"):
        make_engine("mysql://u:p@h/db")


def test_an_llm_policy_name_with_a_long_model_id_fits(engine: Engine) -> None:
    from storage.tables import DecisionTrace, SignalRow

    name = "llm:meta-llama/Llama-3.1-8B-Instruct"  # 36 characters: too long for the first schema
    with transaction(engine) as session:
        session.add(
            SignalRow(
                id="s1", venue="v", symbol="S", side="hold", status="hold", policy=name, created_at=T0, updated_at=T0
            )
        )
        session.add(DecisionTrace(signal_id="s1", node="decide", policy=name, created_at=T0))
    with Session(engine) as session:
        assert session.exec(select(DecisionTrace.policy)).one() == name


def test_signal_listing_pages_without_holds_and_order_notes(engine: Engine) -> None:
    """What /signals pages through (HOLD rows left out unless asked) and the notes /orders shows
    (who closed or cancelled an order); a key with LIKE wildcards is not a pattern."""
    from storage.signals import SignalStatus, SignalStore
    from storage.tables import SignalRow

    store = SignalStore(engine)
    at = datetime(2024, 1, 2, tzinfo=UTC)
    for i, status in enumerate(["hold", "pending", "hold", "rejected", "executed"]):
        row = SignalRow(
            id=f"sig{i}",
            venue="v",
            symbol="X",
            side="buy",
            status=status,
            created_at=at + timedelta(minutes=i),
            updated_at=at,
        )
        store.create(row)
    without = (SignalStatus.HOLD,)
    assert store.count(without=without) == 3 and store.count(status=SignalStatus.HOLD) == 2
    assert [r.id for r in store.recent(without=without, limit=2)] == ["sig4", "sig3"]
    assert [r.id for r in store.recent(without=without, limit=2, offset=2)] == ["sig1"]
    assert store.count(since=at + timedelta(minutes=3)) == 2
    store.set_order_note("abc-mc1", "manual close by telegram:1", at=at)
    store.set_order_note("a%c", "cancelled by discord:2", at=at)
    store.set_value("order_notes_other", {"note": "not a note"}, at=at)
    assert store.order_notes() == {"abc-mc1": "manual close by telegram:1", "a%c": "cancelled by discord:2"}


def test_a_stale_copy_of_a_plan_keeps_the_exits_and_levels_the_chat_added(engine: Engine) -> None:
    """A tick holds a plan while /close appends an exit and /plan moves the stop: the tick's save
    keeps both, and writes what the tick itself changed."""
    from storage.plans import PlanStore
    from storage.signals import SignalStore
    from storage.tables import SignalRow, TradePlan

    at = datetime(2024, 1, 2, tzinfo=UTC)
    SignalStore(engine).create(
        SignalRow(id="p1", venue="v", symbol="X", side="buy", status="executed", created_at=at, updated_at=at)
    )
    plans = PlanStore(engine)
    plans.create(
        TradePlan(
            signal_id="p1",
            venue="v",
            symbol="X",
            timeframe="1h",
            status="open",
            qty_entry=Decimal(10),
            qty_open=Decimal(10),
            stop=Decimal(90),
            take_profits=["110", "120"],
            exit_orders=["p1-sl", "p1-tp1"],
            updated_at=at,
        )
    )
    stale = plans.get("p1")
    assert stale is not None
    fresh = plans.get("p1")
    assert fresh is not None
    fresh.exit_orders = [*fresh.exit_orders, "p1-mc1"]
    plans.save(fresh)
    plans.set_levels("p1", stop=Decimal(95), take_profits=["112", "120"], trailing_stop=None, at=at)
    stale.qty_open = Decimal(4)
    stale.exit_orders = [*stale.exit_orders, "p1-ts"]
    plans.save(stale)
    stored = plans.get("p1")
    assert stored is not None
    assert stored.exit_orders == ["p1-sl", "p1-tp1", "p1-mc1", "p1-ts"]
    assert (stored.stop, stored.take_profits, stored.qty_open) == (Decimal(95), ["112", "120"], Decimal(4))


def test_the_newest_migration_file_is_alembics_head() -> None:
    assert latest_on_disk() == head_revision() == "0009"


def test_a_current_schema_is_told_by_one_query_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    ensure_latest(engine)  # a new database: migrated
    assert current_revision(engine) == head_revision()
    engine.dispose()
    code = (
        "import sys; from storage.db import make_engine; from storage.migrate import ensure_latest; "
        f"ensure_latest(make_engine({url!r})); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd())
    assert out.stdout.strip() == "False", out.stderr
