"""Settings come from TRADEOPS_* variables and .env; every one is documented in .env.example;
`tradeops --help` imports nothing heavy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import Settings, load_settings
from storage.migrate import head_revision

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["akshare", "ccxt", "alpaca", "openai", "discord", "pandas", "sqlalchemy", "langgraph", "telegram", "talib"]


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from bot.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_every_setting_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#?\s*(TRADEOPS_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    fields = {f"TRADEOPS_{name.upper()}" for name in Settings.model_fields}
    assert fields <= documented, f"undocumented: {sorted(fields - documented)}"
    assert documented - fields <= {"TRADEOPS_TEST_POSTGRES_URL"}, (
        f"stale: {sorted(documented - fields - {'TRADEOPS_TEST_POSTGRES_URL'})}"
    )


def test_defaults_put_sqlite_in_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.data_dir == Path("./var")
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'var' / 'tradeops.db'}"


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("TRADEOPS_PAPER_SLIPPAGE_BPS=7\nTRADEOPS_LOG_LEVEL=debug\n")
    monkeypatch.setenv("TRADEOPS_DATABASE_URL", "postgresql://u:pw@h/db")
    settings = load_settings()
    assert settings.paper_slippage_bps == Decimal(7)
    assert settings.log_level == "DEBUG"
    assert settings.resolved_database_url == "postgresql://u:pw@h/db"
    assert "pw" not in repr(settings)  # the URL is a secret: never printed


def test_bad_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADEOPS_PAPER_FILL_AT", "tomorrow")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "TRADEOPS_PAPER_FILL_AT: " in result.output and "next_open" in result.output


def test_db_upgrade_status_sql_and_doctor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"is at revision {head_revision()}" in result.output
    assert "up to date" in runner.invoke(app, ["db", "status"]).output
    result = runner.invoke(app, ["sql", "select count(*) as n from orders"])
    assert result.exit_code == 0 and "1 row(s)" in result.output
    refused = runner.invoke(app, ["sql", "delete from orders"])
    assert refused.exit_code == 2 and "refused" in refused.output
    assert runner.invoke(app, ["sql", "select 1; drop table orders"]).exit_code == 2
    doctor = runner.invoke(app, ["doctor"])
    assert doctor.exit_code == 0, doctor.output
    assert "[ok  ] database" in doctor.output
    assert "[ok  ] bars lake: empty" in doctor.output


def test_env_example_copied_to_env_loads_as_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's first step (`cp .env.example .env`) must not break any command."""
    from bot.settings import Settings

    for name in list(os.environ):
        if name.startswith(("TRADEOPS_", "APCA_", "OPENAI_")):
            monkeypatch.delenv(name)
    example = Path(__file__).resolve().parent.parent / ".env.example"
    loaded = Settings(_env_file=example)  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert loaded.discord_guild_id is None and loaded.transport_tokens == {}

    def unset_as_none(value: object) -> object:  # `NAME=` reads as "", which the code treats as unset
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        return None if text == "" else value

    as_loaded = {k: unset_as_none(v) for k, v in loaded.model_dump().items()}
    assert as_loaded == {k: unset_as_none(v) for k, v in defaults.model_dump().items()}


def test_a_bad_setting_is_named_by_its_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    env |= {"TRADEOPS_TELEGRAM_WEBHOOK_PORT": "99999", "TRADEOPS_DISCORD_GUILD_ID": "abc"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tradeops"), "doctor"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "TRADEOPS_TELEGRAM_WEBHOOK_PORT: Input should be less than or equal to 65535" in result.stderr
    assert "TRADEOPS_DISCORD_GUILD_ID: " in result.stderr and "discord_guild_id" not in result.stderr
