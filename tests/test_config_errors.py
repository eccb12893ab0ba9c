"""Every kind of configuration, file system and database fault is one line on stderr naming the
setting or path and what would be valid, with a non-zero exit status: never a traceback, never a
silent new database (issue 11)."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app

TRADEOPS = str(Path(sys.executable).parent / "tradeops")
REFUSING_URL = "postgresql://tradeops@127.0.0.1:1/tradeops"  # port 1: nothing listens, refused at once


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "OPENAI_", "APCA_"))}
    return env | extra


def cli(
    args: list[str], env: dict[str, str], cwd: Path, *, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRADEOPS, *args], capture_output=True, text=True, env=env, cwd=cwd, user=user, timeout=120)


def assert_one_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def migrated_database(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    result = CliRunner().invoke(app, ["db", "upgrade", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    return data_dir / "tradeops.db"


def truncated(data_dir: Path) -> Path:
    """A real database cut to its first page: the header is valid, the tables' pages are gone."""
    path = migrated_database(data_dir)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")  # everything in the main file, no WAL beside it
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as handle:
        handle.truncate(page_size)
    return path


# (id, prepare(tmp_path) -> extra env, what the line must name, the exit status)
Prepare = Callable[[Path], dict[str, str]]


def _file_as_data_dir(tmp: Path) -> dict[str, str]:
    (tmp / "afile").write_text("not a directory")
    return {"TRADEOPS_DATA_DIR": str(tmp / "afile")}


def _zero_bytes(tmp: Path) -> dict[str, str]:
    (tmp / "data").mkdir()
    (tmp / "data" / "tradeops.db").touch()
    return {"TRADEOPS_DATA_DIR": str(tmp / "data")}


def _corrupt(tmp: Path) -> dict[str, str]:
    (tmp / "data").mkdir()
    (tmp / "data" / "tradeops.db").write_bytes(b"this is not a SQLite file" * 400)
    return {"TRADEOPS_DATA_DIR": str(tmp / "data")}


def _truncated(tmp: Path) -> dict[str, str]:
    truncated(tmp / "data")
    return {"TRADEOPS_DATA_DIR": str(tmp / "data")}


CASES: list[tuple[str, Prepare, list[str], int]] = [
    (
        "database-refuses",
        lambda t: {"TRADEOPS_DATABASE_URL": REFUSING_URL},
        ["127.0.0.1:1", "TRADEOPS_DATABASE_URL"],
        3,
    ),
    ("data-dir-is-a-file", _file_as_data_dir, ["afile", "is a file, not a directory", "TRADEOPS_DATA_DIR"], 2),
    ("data-dir-parent-missing", lambda t: {"TRADEOPS_DATA_DIR": str(t / "no" / "such" / "data")}, ["parent"], 2),
    ("zero-byte-database", _zero_bytes, ["tradeops.db", "empty (0 bytes)"], 2),
    ("corrupt-database", _corrupt, ["tradeops.db", "damaged", "backup"], 3),
    ("truncated-database", _truncated, ["tradeops.db", "damaged", "backup"], 3),
    ("llm-prices-not-json", lambda t: {"TRADEOPS_LLM_PRICES": "not json"}, ["TRADEOPS_LLM_PRICES", "JSON"], 2),
    ("cash-1e400", lambda t: {"TRADEOPS_PAPER_CASH_USDT": "1e400"}, ["TRADEOPS_PAPER_CASH_USDT", "1000000000000"], 2),
]
COMMANDS = [["chat", "-c", "/signals all"], ["db", "upgrade"], ["db", "status"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
@pytest.mark.parametrize(("prepare", "needles", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_configuration_is_one_line_and_a_non_zero_exit(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: list[str],
    prepare: Prepare,
    needles: list[str],
    status: int,
) -> None:
    for name, value in ({"TRADEOPS_DATA_DIR": str(tmp_path / "data")} | prepare(tmp_path)).items():
        monkeypatch.setenv(name, value)
    databases = sorted(tmp_path.rglob("tradeops.db"))
    result = CliRunner().invoke(app, command)
    assert result.exit_code == status, result.output
    assert_one_line(result.stderr, *needles)
    assert sorted(tmp_path.rglob("tradeops.db")) == databases  # no new database anywhere


@pytest.mark.parametrize(
    ("variables", "needles"),
    [
        ({"TRADEOPS_POLICY": "llm"}, ["TRADEOPS_POLICY=llm", "TRADEOPS_LLM_MODEL"]),
        ({"TRADEOPS_DATABASE_URL": REFUSING_URL}, ["127.0.0.1:1", "TRADEOPS_DATABASE_URL"]),
        ({"TRADEOPS_LLM_PRICES": "not json"}, ["TRADEOPS_LLM_PRICES"]),
    ],
    ids=["policy-llm-without-endpoint", "database-refuses", "llm-prices-not-json"],
)
def test_the_installed_command_prints_one_line(tmp_path: Path, variables: dict[str, str], needles: list[str]) -> None:
    """The real process: no traceback from Python itself on the way out."""
    env = clean_env(TRADEOPS_DATA_DIR=str(tmp_path / "data"), **variables)
    result = cli(["chat", "-c", "/signals all"], env, tmp_path)
    assert result.returncode in (2, 3), result.stderr
    assert_one_line(result.stderr, *needles)


def read_only(path: Path, command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``path`` read-only for it: by its permission bits for a normal user; for root,
    whom permission bits do not bind, on a read-only bind mount in a private mount namespace."""
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            return cli(command, env, cwd)
        finally:
            path.chmod(0o755 if path.is_dir() else 0o644)
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: cannot make a path read-only")
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(path), "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("running as root where read-only bind mounts are not allowed")
    argv = ["unshare", "-m", "sh", "-c", script, "sh", str(path), TRADEOPS, *command]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_a_read_only_data_dir_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = clean_env(TRADEOPS_DATA_DIR=str(data))
    for command in (["chat", "-c", "/signals all"], ["db", "upgrade"]):
        result = read_only(data, command, env, tmp_path)
        assert result.returncode == 2, result.stderr
        assert_one_line(result.stderr, str(data), "not writable", "TRADEOPS_DATA_DIR")
    assert list(data.iterdir()) == []


def test_a_read_only_database_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    database = migrated_database(data)
    env = clean_env(TRADEOPS_DATA_DIR=str(data))
    result = read_only(database, ["chat", "-c", "/signals all"], env, tmp_path)
    assert result.returncode == 3, result.stderr
    assert_one_line(result.stderr, str(database), "cannot write")


def test_an_unresolvable_database_host_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_such_host(*_args: object, **_kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)  # psycopg resolves hosts in Python
    monkeypatch.setenv("TRADEOPS_DATABASE_URL", "postgresql://tradeops@db.example.invalid:5432/tradeops")
    for command in (["chat", "-c", "/positions"], ["db", "status"], ["db", "upgrade"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 3, result.output
        assert_one_line(result.stderr, "db.example.invalid", "TRADEOPS_DATABASE_URL")


def test_a_full_disk_in_sqlite_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SQLite's own SQLITE_FULL, reached through a page limit on the real file."""
    import storage.db

    pragmas = storage.db._sqlite_pragmas

    def tiny(dbapi_connection: Any, record: Any) -> None:
        pragmas(dbapi_connection, record)
        dbapi_connection.execute("PRAGMA max_page_count=3")

    monkeypatch.setattr(storage.db, "_sqlite_pragmas", tiny)
    result = CliRunner().invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1, result.output
    assert_one_line(result.stderr, "tradeops.db", "full", "TRADEOPS_DATA_DIR")


def test_a_full_disk_for_a_file_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bot.services

    def no_space(settings: Any) -> Path:
        path = settings.data_dir / "charts"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(bot.services, "_charts_dir", no_space)
    result = CliRunner().invoke(app, ["chat", "-c", "/positions", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1, result.output
    assert_one_line(result.stderr, str(tmp_path / "data" / "charts"), "No space left on device")


def test_data_dir_option_on_every_command_that_touches_data(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--data-dir", str(data)]).exit_code == 0
    assert (data / "tradeops.db").stat().st_size > 0
    assert "up to date" in runner.invoke(app, ["db", "status", "--data-dir", str(data)]).output
    result = runner.invoke(app, ["sql", "select count(*) as n from orders", "--json", "--data-dir", str(data)])
    assert result.exit_code == 0 and '"n": 0' in result.output
    doctor = runner.invoke(app, ["doctor", "--data-dir", str(data)])
    assert f"[ok  ] data dir: {data}" in doctor.output
    assert not (tmp_path / "data").exists()  # TRADEOPS_DATA_DIR (the hermetic default) was never used


def test_a_new_data_dir_inside_an_existing_one_is_created(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["chat", "-c", "/positions", "--data-dir", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "tradeops.db").stat().st_size > 0
