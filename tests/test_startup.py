"""One-shot commands load only what they use: `tradeops chat -c /help` answers from the command
table without the database, the graph, pandas, matplotlib or the LLM SDK; `/positions` opens the
application without the agent graph. Each check runs in a fresh interpreter and reads sys.modules,
so an import moved back to module level fails here (speed itself: benchmarks/startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.command_table import COMMAND_TABLE, WITHOUT_AGENT, answer_before_running, needs_agent
from bot.console import CONSOLE_USER, answer_without_services, run_command, run_command_status
from bot.core import CommandCore
from bot.services import open_services, seed_watchlists
from bot.settings import load_settings
from storage.roles import Role
from venues.clock import SimulatedClock

pytestmark = pytest.mark.usefixtures("hermetic")

ROOT = Path(__file__).resolve().parent.parent
SIGNAL_AT = datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC)  # the crypto scan proposes an ETH/USDT buy here
HEAVY = ["matplotlib", "mplfinance", "langgraph", "langchain_core", "openai", "pandas", "sqlalchemy", "alembic"]
HEAVY += ["scipy", "sklearn", "lightgbm", "xgboost", "optuna"]  # the ML stack: only when a model is trained or loaded


def _run_cli(args: list[str], data_dir: Path) -> tuple[int, str, list[str]]:
    """(exit code, stdout, the HEAVY libraries loaded) of `tradeops ARGS` in a fresh interpreter."""
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from bot.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "print(json.dumps([result.exit_code, result.stdout, loaded]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_") and k != "OPENAI_API_KEY"}
    env["TRADEOPS_DATA_DIR"] = str(data_dir)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    exit_code, stdout, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    return exit_code, stdout, loaded


def test_importing_the_cli_and_console_loads_nothing_heavy() -> None:
    code = (
        "import sys, json\nimport bot.cli, bot.console, bot.command_table, bot.settings\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_chat_help_answers_without_the_database_or_heavy_libraries(tmp_path: Path) -> None:
    exit_code, stdout, loaded = _run_cli(["chat", "-c", "/help"], tmp_path / "data")
    assert exit_code == 0, stdout
    assert stdout.startswith("tradeops commands (you are admin):\n/help\n  this list\n")
    assert all(spec.usage in stdout for spec in COMMAND_TABLE)
    assert loaded == []
    assert not (tmp_path / "data" / "tradeops.db").exists()


def test_chat_unknown_command_is_refused_without_heavy_libraries(tmp_path: Path) -> None:
    exit_code, stdout, loaded = _run_cli(["chat", "--json", "-c", "/sell BTC"], tmp_path / "data")
    reply = json.loads(stdout)
    assert exit_code == 1
    assert reply["ok"] is False and reply["text"].startswith("Unknown command /sell.\ntradeops commands")
    assert loaded == []


def test_chat_positions_opens_the_application_without_the_graph_llm_or_charts(tmp_path: Path) -> None:
    exit_code, stdout, loaded = _run_cli(["chat", "-c", "/positions"], tmp_path / "data")
    assert (exit_code, stdout) == (0, "no open positions\n")
    assert "langgraph" not in loaded and "openai" not in loaded and "matplotlib" not in loaded, loaded
    assert not {"scipy", "sklearn", "lightgbm", "xgboost"} & set(loaded), loaded
    assert (tmp_path / "data" / "tradeops.db").exists()


@pytest.mark.parametrize(
    "text",
    ["/help", "/HELP", "/help@tradeops_bot", "/help me", "/nosuch 1", "hello", "", "/" + "x" * 1200, "/ѕcan"],
)
async def test_the_answer_without_services_is_the_answer_with_them(tmp_path: Path, text: str) -> None:
    settings = load_settings(data_dir=tmp_path)
    async with open_services(settings, clock=SimulatedClock(datetime(2021, 7, 6, tzinfo=UTC))) as services:
        for as_json in (False, True):
            assert answer_without_services(text, as_json=as_json) == await run_command_status(
                services, text, as_json=as_json
            )


def test_only_commands_the_table_decides_are_answered_early() -> None:
    assert CONSOLE_USER.role is Role.ADMIN
    for spec in COMMAND_TABLE:
        early = answer_before_running(Role.ADMIN, spec.usage.split()[0])
        assert (early is not None) == (spec.name == "help"), spec.name
    assert answer_before_running(Role.VIEWER, "/pause") is not None  # refused by role, before running
    assert needs_agent("/scan") and needs_agent("/approve ab12") and needs_agent("/signals")
    assert not needs_agent("/positions") and not needs_agent("/orders 5")


async def test_commands_without_agent_run_on_services_opened_without_the_graph(tmp_path: Path) -> None:
    """Every command listed in WITHOUT_AGENT runs on services opened with agent=False; touching
    the runner or the scanner there would raise RuntimeError out of handle()."""
    settings = load_settings(data_dir=tmp_path)
    clock = SimulatedClock(datetime(2021, 7, 6, 14, tzinfo=UTC))
    async with open_services(settings, clock=clock, agent=False) as services:
        assert services.agent is None
        with pytest.raises(RuntimeError, match="without the agent graph"):
            _ = services.runner
        for name in sorted(WITHOUT_AGENT):
            out, _ok = await run_command(services, f"/{name}")
            assert out, name


async def test_without_agent_a_walk_left_unfinished_is_still_recovered(tmp_path: Path) -> None:
    """A decision recorded before a stop is finished by the next process, even one opened for a
    read-only command: the graph is built then, as before."""
    settings = load_settings(data_dir=tmp_path)
    clock = SimulatedClock(SIGNAL_AT)
    async with open_services(settings, clock=clock) as before:
        seed_watchlists(before)
        reply = await CommandCore(before).handle(CONSOLE_USER, "/scan crypto")
        (signal_id,) = [c["signal_id"] for c in reply.data["cards"] if c["symbol"] == "ETH/USDT"]
        # The process stops right after the approval row is written, before the resume.
        before.signals.decide(signal_id, "approved", actor="console:0", at=clock.now())
    async with open_services(settings, clock=clock, agent=False) as after:
        assert after.agent is not None
        row = after.signals.get(signal_id)
        assert row is not None and row.status == "executed"
    async with open_services(settings, clock=clock, agent=False) as later:
        assert later.agent is None  # nothing left to recover: no graph
