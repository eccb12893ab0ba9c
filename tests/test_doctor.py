"""`tradeops doctor` creates nothing, finds damaged database pages, fails an LLM policy without an
endpoint, and warns before a market calendar runs out (issue 11)."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.doctor import calendars_check
from bot.settings import load_settings


def tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def test_doctor_creates_nothing_and_reports_a_missing_database(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = tmp_path / "new"
    result = runner.invoke(app, ["doctor", "--data-dir", str(missing)])
    assert f"[ok  ] data dir: {missing} does not exist yet" in result.output, result.output
    assert f"[warn] database: no database at {missing / 'tradeops.db'} yet" in result.output
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    runner.invoke(app, ["doctor", "--data-dir", str(empty)])
    assert list(empty.iterdir()) == []


def test_doctor_leaves_an_existing_data_dir_unchanged(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    assert runner.invoke(app, ["db", "upgrade", "--data-dir", str(data)]).exit_code == 0
    before = tree(data)
    result = runner.invoke(app, ["doctor", "--data-dir", str(data)])
    assert "[ok  ] database" in result.output and "quick_check ok" in result.output, result.output
    assert tree(data) == before


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        ("file", "is a file, not a directory"),
        ("no-parent", "its parent"),
    ],
)
def test_doctor_fails_a_data_dir_that_cannot_work(tmp_path: Path, setup: str, says: str) -> None:
    if setup == "file":
        data = tmp_path / "afile"
        data.write_text("x")
    else:
        data = tmp_path / "no" / "such"
    result = CliRunner().invoke(app, ["doctor", "--data-dir", str(data)])
    assert result.exit_code == 1
    assert "[FAIL] data dir:" in result.output and says in result.output
    assert "Traceback" not in result.output


def test_doctor_finds_damaged_pages(tmp_path: Path) -> None:
    """A database whose header and schema are fine but one table's pages are overwritten: it opens
    and answers, and only PRAGMA quick_check sees the damage."""
    runner = CliRunner()
    data = tmp_path / "data"
    assert runner.invoke(app, ["db", "upgrade", "--data-dir", str(data)]).exit_code == 0
    database = data / "tradeops.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("CREATE TABLE filler (x TEXT)")
        connection.executemany("INSERT INTO filler VALUES (?)", [(f"row {i} " * 20,) for i in range(500)])
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    pages = database.stat().st_size // page_size
    with open(database, "r+b") as handle:  # scribble over a leaf page of the filler table, the last written
        handle.seek((pages - 2) * page_size)
        handle.write(b"\xff" * page_size)
    healthy = runner.invoke(app, ["db", "status", "--data-dir", str(data)])
    assert healthy.exit_code == 0, healthy.output  # the damage is invisible to an ordinary read
    result = runner.invoke(app, ["doctor", "--data-dir", str(data)])
    assert result.exit_code == 1
    assert f"[FAIL] database: {database} is damaged: PRAGMA quick_check found" in result.output, result.output


def test_doctor_fails_policy_llm_without_an_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOPS_POLICY", "llm")
    for name in ("TRADEOPS_LLM_MODEL", "TRADEOPS_LLM_API_KEY", "OPENAI_API_KEY", "TRADEOPS_LLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["doctor", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "[FAIL] LLM: TRADEOPS_POLICY=llm but no LLM endpoint is configured" in result.output


def test_calendar_warning_within_60_days_and_failure_after_the_end(tmp_path: Path) -> None:
    """exchange-calendars' XSHG (Shanghai) sessions end on 2026-12-31 in the locked version."""
    settings = load_settings(data_dir=tmp_path / "data")
    far = calendars_check(settings, date(2026, 6, 1))
    assert far.ok and not far.warning and "XSHG until 2026-12-31" in far.detail
    near = calendars_check(settings, date(2026, 11, 15))
    assert near.ok and near.warning
    assert "XSHG sessions end on 2026-12-31, 46 days from now" in near.detail
    past = calendars_check(settings, date(2027, 1, 4))
    assert not past.ok and "XSHG sessions ended on 2026-12-31" in past.detail
    assert not (tmp_path / "data").exists()
