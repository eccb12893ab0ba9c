"""`tradeops demo`: the whole offline walk. Its summary is complete and adds up, the same inputs
give the same run, it never wipes a database it did not write, and `--approve none` leaves signals
that another process can decide, exactly once."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cli import app
from bot.console import CONSOLE_USER
from bot.core import CommandCore
from bot.demo import DemoError, run_demo, summary_text
from bot.services import open_services
from bot.settings import Settings, load_settings
from storage.db import make_engine
from storage.tables import OrderRow, SignalRow
from storage.users import Role
from tests.support import entry_orders, restored_logging
from venues.clock import SimulatedClock

TRADEOPS = Path(sys.executable).parent / "tradeops"
SUMMARY_KEYS = {
    "signals",
    "approved",
    "rejected",
    "expired",
    "blocked_by_risk",
    "orders",
    "fills",
    "open_positions",
    "realized_pnl",
    "equity_start",
    "equity_end",
    "per_venue",
    "charts",
    "database",
    "elapsed_seconds",
}
VENUES = {"replay-crypto", "replay-cn", "replay-us"}


@pytest.fixture(scope="module")
def hermetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No TRADEOPS_* variable or ./.env steers a demo here, and the CLI's logging setup (it
    replaces the root logger's handlers) is undone afterwards."""
    with restored_logging(), pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("TRADEOPS_")]:
            patch.delenv(name)
        cwd = tmp_path_factory.mktemp("cwd")
        patch.chdir(cwd)
        yield cwd


@pytest.fixture(autouse=True)
def _hermetic_each(hermetic: Path) -> None:
    """Every test runs inside the module's hermetic environment."""


@pytest.fixture(scope="module")
def full_run(hermetic: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    """The default demo (7 days, --approve ask) through the CLI, whose stdin is no terminal."""
    data_dir = tmp_path_factory.mktemp("full")
    result = CliRunner().invoke(app, ["demo", "--json", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr, data_dir


def settings_for(data_dir: Path) -> Settings:
    return load_settings(data_dir=data_dir)


def table_dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: 'left untouched' means this is unchanged."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: sorted(
                    (tuple(str(v) for v in row) for row in connection.execute(text(f'SELECT * FROM "{table}"'))),
                )
                for table in sorted(inspect(engine).get_table_names())
            }
    finally:
        engine.dispose()


def chat(data_dir: Path, command: str) -> subprocess.CompletedProcess[str]:
    """`tradeops chat -c` in a new process, as a user would run it after the demo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    return subprocess.run(
        [str(TRADEOPS), "chat", "--data-dir", str(data_dir), "-c", command],
        capture_output=True,
        text=True,
        env=env,
        cwd=data_dir,
        timeout=120,
        check=False,
    )


# --- the full default run ---


def test_ask_without_a_terminal_approves_everything_and_says_so(full_run: tuple[dict[str, Any], str, Path]) -> None:
    summary, stderr, _ = full_run
    assert "not on a terminal: approving every signal automatically" in stderr  # even with --json
    assert summary["approve_mode"] == "all"
    assert summary["approved"] > 0 and summary["pending"] == 0


def test_summary_has_every_key(full_run: tuple[dict[str, Any], str, Path]) -> None:
    summary, _, data_dir = full_run
    assert set(summary) >= SUMMARY_KEYS
    assert summary["days"] == 7
    assert summary["clock_start"] == "2021-07-06T00:00:00+00:00"
    assert summary["clock_end"] == "2021-07-13T00:00:00+00:00"
    assert summary["database"] == f"sqlite:///{(data_dir / 'tradeops.db').resolve()}"
    assert (data_dir / "tradeops.db").is_file()
    assert isinstance(summary["elapsed_seconds"], float | int) and summary["elapsed_seconds"] > 0
    told = summary_text(summary)  # what the command prints without --json
    assert f"signals {summary['signals']}: approved {summary['approved']}" in told
    assert f"database: {summary['database']}" in told
    assert f"charts: {len(summary['charts'])} in {summary['data_dir']}/charts" in told


def test_summary_adds_up(full_run: tuple[dict[str, Any], str, Path]) -> None:
    summary, _, _ = full_run
    decided = summary["approved"] + summary["rejected"] + summary["expired"]
    assert decided + summary["blocked_by_risk"] + summary["pending"] == summary["signals"]
    assert summary["executed"] + summary["aborted"] <= summary["approved"]
    assert 0 < summary["fills"] <= summary["orders"]
    assert summary["orders"] >= summary["executed"]  # each executed signal placed its entry; exits add more

    per_venue = summary["per_venue"]
    assert set(per_venue) == VENUES
    for key in ("signals", "orders", "fills"):
        assert sum(v[key] for v in per_venue.values()) == summary[key], key
    assert sum(v["open_positions"] for v in per_venue.values()) == len(summary["open_positions"])
    for venue, counts in per_venue.items():
        assert counts["fills"] <= counts["orders"], venue
        held = [p for p in summary["open_positions"] if p["venue"] == venue]
        assert len(held) == counts["open_positions"]
        assert all(Decimal(p["qty"]) > 0 for p in held)


def test_demo_covers_three_markets(full_run: tuple[dict[str, Any], str, Path]) -> None:
    summary, _, _ = full_run
    with_signals = {venue for venue, counts in summary["per_venue"].items() if counts["signals"] > 0}
    assert with_signals == VENUES
    assert sum(1 for counts in summary["per_venue"].values() if counts["fills"] > 0) >= 3


def test_equity_and_realized_pnl_agree(full_run: tuple[dict[str, Any], str, Path]) -> None:
    summary, _, _ = full_run
    start, end = summary["equity_start"], summary["equity_end"]
    assert set(start) == set(end) == {"replay-crypto:USD", "replay-crypto:USDT", "replay-cn:CNY", "replay-us:USD"}
    assert Decimal(start["replay-cn:CNY"]) == Decimal(1_000_000)
    assert all(Decimal(start[k]) == Decimal(100_000) for k in start if not k.endswith("CNY"))
    assert set(summary["realized_pnl"]) == {"CNY", "USD", "USDT"}
    # Where no venue trading in a currency still holds a position, the change in equity is exactly
    # what was realized (fees included): nothing is left unrealized to tell them apart.
    flat = [
        currency
        for currency in summary["realized_pnl"]
        if not any(
            key.endswith(f":{currency}") and summary["per_venue"][key.split(":")[0]]["open_positions"] for key in start
        )
    ]
    assert flat, "expected at least one currency with every position closed"
    for currency in flat:
        change = sum(Decimal(end[k]) - Decimal(start[k]) for k in start if k.endswith(f":{currency}"))
        assert abs(change - Decimal(summary["realized_pnl"][currency])) <= Decimal("0.02"), currency


def test_chart_files_exist(full_run: tuple[dict[str, Any], str, Path]) -> None:
    summary, _, data_dir = full_run
    charts = [Path(c) for c in summary["charts"]]
    assert charts and len(set(charts)) == len(charts)
    for chart in charts:
        assert chart.parent == (data_dir / "charts").resolve()
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart
    signal_charts = {c.name for c in charts if c.name.startswith("signal-")}
    assert len(signal_charts) == summary["approved"] + summary["rejected"] + summary["expired"] + summary["pending"]
    assert any(c.name.startswith("equity-") for c in charts)


async def test_ask_without_a_terminal_says_so_in_the_story(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a TTY
    lines: list[str] = []
    summary = await run_demo(settings_for(tmp_path / "data"), approve="ask", days=1, echo=lines.append)
    assert lines[0].startswith("not on a terminal: approving every signal automatically")
    assert summary["approve_mode"] == "all" and summary["pending"] == 0


# --- same inputs, same run ---


async def test_two_runs_in_the_same_data_dir_give_the_same_summary(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    first = await run_demo(settings, approve="all", days=3, echo=lambda _: None)
    second = await run_demo(settings, approve="all", days=3, echo=lambda _: None)
    assert first.pop("elapsed_seconds") >= 0 and second.pop("elapsed_seconds") >= 0
    assert first == second
    assert first["signals"] > 0 and first["fills"] > 0


async def test_a_rerun_lists_only_its_own_charts(tmp_path: Path) -> None:
    """The demo wipes its previous run's database; the charts that run drew are not this run's."""
    settings = settings_for(tmp_path / "data")
    longer = await run_demo(settings, approve="all", days=1, echo=lambda _: None)
    shorter = await run_demo(settings, approve="none", days=1, echo=lambda _: None)
    own = {Path(c).name for c in shorter["charts"] if Path(c).name.startswith("signal-")}
    assert len(own) == shorter["pending"] == shorter["signals"]
    assert len([c for c in longer["charts"] if "signal-" in c]) > len(own)
    # ... and are gone from the charts dir with the database they belonged to; a chart of yours stays.
    charts = settings.data_dir / "charts"
    assert {p.name for p in charts.glob("signal-*.png")} == own
    mine = charts / "chart-BTC-USD-1h.png"
    mine.write_bytes(b"x")
    await run_demo(settings, approve="none", days=1, echo=lambda _: None)
    assert mine.exists()


async def test_days_out_of_range_is_refused_before_anything_is_touched(tmp_path: Path) -> None:
    for days in (0, 61):
        with pytest.raises(DemoError, match="--days must be between 1 and 60"):
            await run_demo(settings_for(tmp_path / "data"), approve="all", days=days, echo=lambda _: None)
    assert not (tmp_path / "data").exists()


# --- never wipe what a demo did not write ---


async def _signal(services: Any) -> None:
    reply = await CommandCore(services).handle(CONSOLE_USER, "/signal ETH/USDT")
    assert reply.data["status"] == "pending", reply.text


async def _user(services: Any) -> None:
    services.users.grant("telegram", 77, Role.ADMIN, at=services.clock.now(), display_name="the owner")


async def _watchlist(services: Any) -> None:
    reply = await CommandCore(services).handle(CONSOLE_USER, "/watch add mine BTC/USD")
    assert reply.ok, reply.text


@pytest.mark.parametrize("make", [_signal, _user, _watchlist], ids=["signal", "user", "watchlist"])
async def test_a_database_with_other_data_is_refused_and_left_untouched(tmp_path: Path, make: Any) -> None:
    settings = settings_for(tmp_path / "data")
    async with open_services(settings, clock=SimulatedClock(datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC))) as services:
        await make(services)
    before = table_dump(settings.resolved_database_url)
    lines: list[str] = []
    with pytest.raises(DemoError) as refused:
        await run_demo(settings, approve="all", days=1, echo=lines.append)
    message = str(refused.value)
    assert "no demo wrote" in message and "--data-dir" in message
    assert str(settings.data_dir.resolve() / "tradeops.db") in message
    assert table_dump(settings.resolved_database_url) == before


def test_the_cli_reports_the_refusal(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    runner = CliRunner()
    assert runner.invoke(app, ["chat", "--data-dir", str(data_dir), "-c", "/signal ETH/USDT"]).exit_code == 0
    result = runner.invoke(app, ["demo", "--approve", "all", "--days", "1", "--data-dir", str(data_dir)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the database ") and "--data-dir" in result.stderr


# --- decide later, in another process ---


def test_approve_none_leaves_signals_for_chat_in_a_new_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(
        app, ["demo", "--approve", "none", "--days", "1", "--json", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["pending"] >= 1 and summary["approved"] == summary["orders"] == 0
    url = settings_for(data_dir).resolved_database_url

    engine = make_engine(url)
    with Session(engine) as session:
        pending = {s.id for s in session.exec(select(SignalRow).where(SignalRow.status == "pending")).all()}
    assert len(pending) == summary["pending"]

    listed = chat(data_dir, "/signals pending")
    assert listed.returncode == 0, listed.stderr
    ids = [line.split()[0] for line in listed.stdout.splitlines()[2:] if line and not line.startswith("[")]
    assert set(ids) == pending, listed.stdout
    signal_id = sorted(ids)[0]
    assert f"[approve: /approve {signal_id}]" in listed.stdout

    approved = chat(data_dir, f"/approve {signal_id}")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert approved.stdout.startswith(f"{signal_id} approved by console:0: order {signal_id} placed")
    try:
        assert len(entry_orders(engine, signal_id)) == 1
        again = chat(data_dir, f"/approve {signal_id}")
        assert again.returncode == 1
        assert again.stdout.startswith(f"already decided: {signal_id} approved by console:0")
        assert len(entry_orders(engine, signal_id)) == 1
        with Session(engine) as session:
            row = session.get(SignalRow, signal_id)
            assert row is not None and row.status == "executed"
        others = pending - {signal_id}

        # The README walk's end: the clock moves on, the approved entry fills and opens a position,
        # what nobody answered expires.
        more = CliRunner().invoke(
            app, ["demo", "--continue", "--approve", "none", "--days", "1", "--json", "--data-dir", str(data_dir)]
        )
        assert more.exit_code == 0, more.output
        summary = json.loads(more.stdout)
        assert summary["clock_end"] > "2021-07-07"
        (entry,) = entry_orders(engine, signal_id)
        assert entry.status == "filled" and entry.filled_at is not None
        with Session(engine) as session:
            rows = {s.id: s.status for s in session.exec(select(SignalRow)).all()}
        assert all(rows[other] == "expired" for other in others)
        assert summary["expired"] >= 1
        assert summary["fills"] >= 1
        trades = chat(data_dir, "/positions")
        assert trades.returncode == 0 and row.symbol in trades.stdout + "".join(
            str(p["symbol"]) for p in summary["open_positions"]
        )
    finally:
        engine.dispose()


def test_continue_without_a_demo_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--continue", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no demo to continue" in result.output and "run `tradeops demo` first" in result.output
    assert "approving every signal" not in result.output  # refused first, nothing promised before
    assert not (tmp_path / "none" / "tradeops.db").exists()


def test_demo_help_lists_the_choices_and_refuses_others(tmp_path: Path) -> None:
    shown = CliRunner().invoke(app, ["demo", "--help"], terminal_width=200)
    assert "ask|all|none" in shown.output and "rules|llm" in shown.output, shown.output
    for option in ("--approve", "--policy"):
        bad = CliRunner().invoke(app, ["demo", option, "maybe", "--data-dir", str(tmp_path / "d")])
        assert bad.exit_code == 2 and "'maybe' is not one of" in bad.output, bad.output
    assert not (tmp_path / "d").exists()


def test_every_demo_fill_is_where_the_rules_put_it(full_run: tuple[dict[str, Any], str, Path]) -> None:
    """The week's entries fill within the drift limit of their cards (before resting orders, a third
    of them filled more than 50 bps away), and every stop and target fill is at its level or at a
    gapped or T+1 open, after the entry's fill."""
    _, _, data_dir = full_run
    engine = make_engine(load_settings(data_dir=data_dir).resolved_database_url)
    try:
        with Session(engine) as session:
            orders = {o.client_order_id: o for o in session.exec(select(OrderRow)).all()}
            signals = {s.id: s for s in session.exec(select(SignalRow)).all()}
    finally:
        engine.dispose()
    entries = [o for o in orders.values() if o.parent is None and o.status == "filled"]
    assert len(entries) >= 8
    for entry in entries:
        card_entry = signals[entry.client_order_id].entry
        assert card_entry is not None and entry.avg_fill_price is not None
        assert abs(entry.avg_fill_price - card_entry) / card_entry <= Decimal("0.005"), entry.client_order_id
    exits = [o for o in orders.values() if o.parent is not None and o.status == "filled"]
    assert any(o.type == "stop" for o in exits) and any(o.type == "limit" for o in exits)
    for exit_ in exits:
        parent = orders[exit_.parent or ""]
        assert exit_.filled_at is not None and parent.filled_at is not None and exit_.filled_at >= parent.filled_at
        assert exit_.avg_fill_price is not None
        if exit_.type == "limit":  # at the target, or better on a gapped open
            assert exit_.limit_price is not None, exit_.client_order_id
            better = (
                exit_.avg_fill_price - exit_.limit_price
                if exit_.side == "sell"
                else exit_.limit_price - exit_.avg_fill_price
            )
            assert better >= 0, exit_.reason
        elif exit_.type == "stop":
            assert exit_.reason.startswith(("stop ", "gapped through the stop")), exit_.reason
            assert exit_.stop_price is not None, exit_.client_order_id
            worse = (
                exit_.stop_price - exit_.avg_fill_price
                if exit_.side == "sell"
                else exit_.avg_fill_price - exit_.stop_price
            )
            assert worse >= 0, exit_.reason  # slippage, or a gapped open
