"""A backtest's database: thrown away without a write of its ledger or equity curve, or kept in a
new file with --keep-db (ledger, fills, equity curve, signals, plans) for `tradeops sql`."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

import bot.backtest as backtest_module
from bot.backtest import backtest, walk_forward_backtest
from bot.cli import app
from bot.settings import load_settings
from scheduler.backtest.engine import BacktestError, BacktestResult, BacktestSpec
from scheduler.scan import Scanner
from tests.test_backtest import SPEC

# Five days of BTC/USD hours with $100 (tests/test_backtest.py's): a fast crossover trades several times in them.
RULES = SPEC
SMA = BacktestSpec(**{**SPEC.__dict__, "policy": "sma_cross", "params": {"fast": 3, "slow": 8}})
TABLES = ("equity_snapshots", "orders", "fills", "cash_ledger", "positions", "signals", "trade_plans")
CLI_ARGS = [
    "backtest", "--venue", "replay-crypto", "--symbols", "BTC/USD", "--timeframe", "1h",
    "--from", "2021-07-01", "--to", "2021-07-05", "--policy", "sma_cross", "--param", "fast=3", "--param", "slow=8",
    "--capital", "100",
]  # fmt: skip


def rows_per_table(connection: Any) -> dict[str, int]:
    return {t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


@pytest.fixture
def run_database_rows(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, int]]:
    """The row count of each ledger table in each run's own database, read as the run ends (before
    the database is thrown away)."""
    seen: list[dict[str, int]] = []
    real = backtest_module.run_backtest

    async def counting(scanner: Scanner, *args: Any, **kwargs: Any) -> BacktestResult:
        result = await real(scanner, *args, **kwargs)
        with scanner.deps.plans.engine.connect() as connection:
            seen.append(rows_per_table(connection))
        return result

    monkeypatch.setattr(backtest_module, "run_backtest", counting)
    return seen


def comparable(result: BacktestResult) -> dict[str, Any]:
    doc = result.to_json()
    doc.pop("elapsed_seconds", None)
    return doc


def stored_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def test_a_run_writes_neither_its_ledger_nor_its_equity_curve_unless_kept(
    tmp_path: Path, run_database_rows: list[dict[str, int]]
) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    thrown = asyncio.run(backtest(settings, SMA))
    assert len(thrown.trades) >= 2 and len(thrown.equity) > 100
    assert run_database_rows[0] == dict.fromkeys(TABLES, 0)

    kept_path = tmp_path / "run.db"
    kept = asyncio.run(backtest(settings, SMA, keep_db=kept_path))
    assert comparable(kept) == comparable(thrown)  # keeping changes nothing in the result
    assert run_database_rows[1]["equity_snapshots"] >= len(kept.equity)
    assert run_database_rows[1]["fills"] == len(kept.trades) + sum(1 for t in kept.trades if t.exit_time)
    # One self-contained file: the WAL folded in, nothing beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run.db"]

    connection = sqlite3.connect(f"file:{kept_path}?mode=ro", uri=True)
    try:
        equity = connection.execute(
            "SELECT ts, equity FROM equity_snapshots WHERE venue = ? AND currency = ? ORDER BY ts",
            ("replay-crypto", kept.currency),
        ).fetchall()
        fills = connection.execute("SELECT ts, side, price, qty FROM fills ORDER BY id").fetchall()
    finally:
        connection.close()
    assert [(stored_time(ts), float(Decimal(str(value)))) for ts, value in equity] == [
        (p.ts, p.equity) for p in kept.equity
    ]
    buys, sells = [f for f in fills if f[1] == "buy"], [f for f in fills if f[1] == "sell"]
    assert [(stored_time(ts), float(Decimal(str(price)))) for ts, _, price, _ in buys] == [
        (t.entry_time, t.entry_price) for t in kept.trades
    ]
    assert [(stored_time(ts), float(Decimal(str(price)))) for ts, _, price, _ in sells] == [
        (t.exit_time, t.exit_price) for t in kept.trades if t.exit_time
    ]


def test_a_kept_rule_policy_run_holds_its_signals_and_plans(
    tmp_path: Path, run_database_rows: list[dict[str, int]]
) -> None:
    kept_path = tmp_path / "rules.db"
    result = asyncio.run(backtest(load_settings(data_dir=tmp_path / "data"), RULES, keep_db=kept_path))
    assert result.trades
    connection = sqlite3.connect(f"file:{kept_path}?mode=ro", uri=True)
    try:
        signals = dict(connection.execute("SELECT status, count(*) FROM signals GROUP BY status").fetchall())
        plans = connection.execute("SELECT signal_id FROM trade_plans").fetchall()
        equity = connection.execute("SELECT count(*) FROM equity_snapshots WHERE currency = 'USD'").fetchone()[0]
    finally:
        connection.close()
    assert signals == result.signals
    assert {t.signal_id for t in result.trades} <= {row[0] for row in plans}
    assert equity == len(result.equity) and run_database_rows[0]["fills"] == len(result.trades) * 2


def test_walk_forward_keeps_one_file_per_fold(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    spec = BacktestSpec(**{**SMA.__dict__, "end": datetime(2021, 7, 5, tzinfo=UTC)})
    doc = asyncio.run(walk_forward_backtest(settings, spec, 2, keep_db=tmp_path / "wf.db"))
    assert sorted(p.name for p in tmp_path.glob("wf*")) == ["wf.fold0.db", "wf.fold1.db"]
    for fold in doc["walk_forward"]["folds"]:
        path = tmp_path / f"wf.fold{fold['index']}.db"
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            first, last = connection.execute("SELECT min(ts), max(ts) FROM equity_snapshots").fetchone()
        finally:
            connection.close()
        test_start, test_end = (datetime.fromisoformat(t) for t in fold["test"])
        assert test_start <= stored_time(first) and stored_time(last) <= test_end


def test_a_path_that_cannot_be_kept_is_refused_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_run(*_args: object, **_kwargs: object) -> BacktestResult:
        raise AssertionError("the run started")

    monkeypatch.setattr(backtest_module, "run_backtest", no_run)
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path / "data"))
    existing = tmp_path / "old.db"
    existing.write_bytes(b"precious")
    cases = [
        (existing, "already exists"),
        (tmp_path / "missing" / "run.db", "does not exist"),
    ]
    for path, message in cases:
        result = CliRunner().invoke(app, [*CLI_ARGS, "--keep-db", str(path)])
        assert result.exit_code == 2, result.output
        assert f"--keep-db {path}" in result.output and message in result.output
    assert existing.read_bytes() == b"precious"
    # Walk-forward: a fold's file that exists stops the run before the first fold.
    (tmp_path / "wf.fold1.db").write_bytes(b"")
    result = CliRunner().invoke(app, [*CLI_ARGS, "--walk-forward", "2", "--keep-db", str(tmp_path / "wf.db")])
    assert result.exit_code == 2 and "wf.fold1.db already exists" in result.output, result.output
    assert not (tmp_path / "wf.fold0.db").exists()
    with pytest.raises(BacktestError, match="does not exist"):
        asyncio.run(backtest(load_settings(data_dir=tmp_path / "data"), SMA, keep_db=tmp_path / "no" / "x.db"))


def test_tradeops_sql_reads_a_kept_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept_path = tmp_path / "run.db"
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, [*CLI_ARGS, "--json", "--keep-db", str(kept_path)])
    assert result.exit_code == 0, result.output
    assert f"database kept: {kept_path}" in result.output
    monkeypatch.setenv("TRADEOPS_DATABASE_URL", f"sqlite:///{kept_path}")
    select = "SELECT side, count(*) AS n FROM fills GROUP BY side ORDER BY side"
    query = CliRunner().invoke(app, ["sql", "--csv", select])
    assert query.exit_code == 0, query.output
    lines = query.output.strip().splitlines()
    assert lines[0] == "side,n" and lines[1].startswith("buy,") and lines[2].startswith("sell,"), lines
