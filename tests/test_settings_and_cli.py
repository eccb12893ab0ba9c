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
from bot.settings import Settings, load_settings, parse_cash_list
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


# --- the ccxt paper account's cash per currency ---


def test_ccxt_paper_cash_is_funded_per_currency_with_usdt_from_its_own_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADEOPS_PAPER_CASH_USDT", "25000")
    assert load_settings().ccxt_paper_cash == {"USDT": Decimal(25000)}  # unset: USDT only, as before
    monkeypatch.setenv("TRADEOPS_PAPER_CASH_CCXT", " usdc=5000 , BTC=0.5,EUR=1e3")
    settings = load_settings()
    assert settings.ccxt_paper_cash == {"USDT": Decimal(25000), "USDC": 5000, "BTC": Decimal("0.5"), "EUR": 1000}
    config = settings.ccxt_paper_config()
    assert list(config.starting_cash) == ["USDT", "USDC", "BTC", "EUR"]  # USDT stays the main currency
    assert "TRADEOPS_PAPER_CASH_CCXT" in config.unfunded_hint
    # Named in the list, USDT takes the list's amount; 0 leaves an account without it.
    monkeypatch.setenv("TRADEOPS_PAPER_CASH_CCXT", "USDT=0,USDC=100")
    assert load_settings().ccxt_paper_cash == {"USDT": 0, "USDC": 100}
    assert load_settings(ccxt_exchange="okx").starting_cash("okx", "USDC") == 100
    assert load_settings(ccxt_exchange="okx").starting_cash("replay-crypto", "USDC") == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("USDT", "'USDT' is not CURRENCY=AMOUNT"),
        ("USDT:100", "'USDT:100' is not CURRENCY=AMOUNT"),
        ("US$=100", "'US$=100' is not CURRENCY=AMOUNT"),
        ("=100", "'=100' is not CURRENCY=AMOUNT"),
        ("USDC=-5", "the amount of USDC must be a number from 0 to 1,000,000,000,000, got '-5'"),
        ("USDC=lots", "the amount of USDC must be a number from 0 to 1,000,000,000,000, got 'lots'"),
        ("USDC=nan", "got 'nan'"),
        ("USDC=1e13", "got '1e13'"),
        ("USDC=1,usdc=2", "names USDC twice"),
        (",".join(f"C{n:02d}=1" for n in range(21)), "names 21 currencies, at most 20"),
    ],
)
def test_a_bad_ccxt_paper_cash_is_one_line_naming_the_variable_and_the_form(value: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_cash_list(value)
    text = str(raised.value)
    assert text.startswith("TRADEOPS_PAPER_CASH_CCXT") and message in text and "\n" not in text
    assert "CURRENCY=AMOUNT" in text


def test_a_bad_ccxt_paper_cash_stops_the_cli_with_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADEOPS_PAPER_CASH_CCXT", "USDC 5000")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "TRADEOPS_PAPER_CASH_CCXT: TRADEOPS_PAPER_CASH_CCXT must be a comma-separated CURRENCY=AMOUNT list" in (
        result.output
    )
    monkeypatch.setenv("TRADEOPS_PAPER_CASH_CCXT", "")
    monkeypatch.setenv("TRADEOPS_PAPER_CASH_USDT", "1e15")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2 and "TRADEOPS_PAPER_CASH_USDT: " in result.output
