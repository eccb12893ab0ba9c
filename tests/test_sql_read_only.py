"""`tradeops sql` is read-only in every way, on SQLite and on PostgreSQL: a parser gate refuses
everything but one plain SELECT before it is sent, and the database itself refuses writes behind
it (issue 11). Each attack asserts the refusal and that nothing was created and no program ran."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from bot.cli import app
from storage.db import make_read_only_engine, read_only_query
from storage.sql_gate import QueryRefused, read_only_statement
from tests.conftest import DB_BACKENDS

POSTGRES_ONLY = [p for p in DB_BACKENDS if p.id == "postgres"]


@pytest.fixture
def marker() -> Iterator[Path]:
    """A path in /tmp that the database server's OS user could create (it cannot reach tmp_path)."""
    path = Path("/tmp") / f"tradeops-attack-{uuid.uuid4().hex}"
    yield path
    path.unlink(missing_ok=True)


def run_sql(monkeypatch: pytest.MonkeyPatch, db_url: str, tmp_path: Path, query: str) -> tuple[int, str]:
    monkeypatch.setenv("TRADEOPS_DATABASE_URL", db_url)
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["sql", query, "--json"])
    return result.exit_code, result.output


def files(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if not p.name.endswith(("-wal", "-shm"))}


# {marker}: a path in /tmp; {tmp}: the test's directory (beside the SQLite file)
ATTACKS = [
    ("attach", "ATTACH DATABASE '{tmp}/attached.db' AS x", "ATTACH|does not parse"),  # no ATTACH in PostgreSQL
    ("vacuum-into", "VACUUM INTO '{tmp}/copy.db'", "VACUUM"),
    ("pragma-write", "PRAGMA query_only = OFF", "PRAGMA"),
    ("pragma-journal", "PRAGMA journal_mode = DELETE", "PRAGMA"),
    ("two-statements", "select 1; drop table orders", "one statement at a time"),
    ("delete", "delete from orders", "DELETE"),
    ("create", "create table t (x int)", "CREATE"),
    ("copy-to-program", "COPY (SELECT 1) TO PROGRAM 'touch {marker}'", "COPY"),
    ("copy-to-file", "COPY orders TO '{marker}'", "COPY"),
    ("pg-read-file", "select pg_read_file('/etc/hostname')", "pg_read_file()"),
    ("pg-read-file-qualified", "select pg_catalog.pg_read_file('/etc/hostname')", "pg_read_file()"),
    ("pg-read-file-quoted", "select \"pg_read_file\"('/etc/hostname')", "pg_read_file()"),
    ("pg-read-file-upper", "SELECT PG_READ_FILE('/etc/hostname')", "pg_read_file()"),
    ("pg-read-file-nested", "select n from (select pg_read_file('/etc/hostname') as n) s", "pg_read_file()"),
    ("pg-read-binary-file", "select pg_read_binary_file('/etc/hostname')", "pg_read_binary_file()"),
    ("pg-ls-dir", "select * from pg_ls_dir('.')", "pg_ls_dir()"),
    ("lo-import", "select lo_import('/etc/hostname')", "lo_import()"),
    ("lo-export", "select lo_export(1, '{marker}')", "lo_export()"),
    ("dblink", "select * from dblink('dbname=postgres', 'copy (select 1) to program ''true''') as t(x int)", "dblink"),
    ("query-to-xml", "select query_to_xml('select pg_read_file(''/etc/hostname'')', true, true, '')", "query_to_xml()"),
    ("set-config", "select set_config('transaction_read_only', 'off', true)", "set_config()"),
    ("advisory-lock", "select pg_advisory_lock(1)", "pg_advisory_lock()"),
    ("writing-with", "with d as (delete from orders returning id) select * from d", "DELETE"),
    ("select-into", "select * into stolen from orders", "INTO"),
    ("for-update", "select * from orders for update", "FOR UPDATE"),
    ("set-read-write", "set transaction read write", "SET"),
    ("load-extension", "select load_extension('/tmp/evil')", "load_extension()"),
    # PostgreSQL reads U&"pg\005fread_file" as pg_read_file: a function name with an escape is refused.
    ("unicode-escaped-name", "select U&\"pg\\005fread_file\"('/etc/hostname')", "refused"),
    ("comment-hides-nothing", "select 1 /* /* */ ; copy (select 1) to program 'touch {marker}' */", ""),
]


@pytest.mark.parametrize(("query", "says"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_an_attack_is_refused_and_leaves_no_trace(
    engine: Engine,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    marker: Path,
    query: str,
    says: str,
) -> None:
    before = files(tmp_path)
    status, output = run_sql(monkeypatch, db_url, tmp_path, query.format(tmp=tmp_path, marker=marker))
    if says:
        assert status == 2, output
        assert any(part in output for part in says.split("|")) and "Traceback" not in output, output
    else:  # a harmless query around a comment: it may run, but nothing inside the comment does
        assert status in (0, 2), output
    assert not marker.exists(), "the database server ran a program or wrote a file"
    assert files(tmp_path) == before
    with engine.connect() as connection:  # nothing changed in the database either
        assert connection.execute(text("select count(*) from orders")).scalar() == 0


def test_plain_selects_run_with_their_own_column_names(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for query, expected in [
        ("select count(*) as n from orders", '"n": 0'),
        ("with a as (select 1 as x) select x from a union all select 2", '"x": 2'),
        ("select status, count(*) as n from signals group by status order by 1", "[]"),
        ("select 1 as one;", '"one": 1'),
        ("select 100 % 7 as r, 'ab' like 'a%' as m", '"r": 2'),  # a literal % on PostgreSQL too
    ]:
        status, output = run_sql(monkeypatch, db_url, tmp_path, query)
        assert status == 0, output
        assert expected in output, (query, output)


def test_sqlite_itself_refuses_what_a_parser_miss_would_let_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line: with the gate switched off, SQLite's authorizer on the read-only connection
    still refuses ATTACH and VACUUM INTO (which a ``mode=ro`` connection alone allows) and writes."""
    import storage.sql_gate

    status, output = run_sql(monkeypatch, f"sqlite:///{tmp_path / 'tradeops.db'}", tmp_path, "select 1")
    assert status == 2 and "no database at" in output  # reading never creates the database
    assert not (tmp_path / "tradeops.db").exists()
    assert CliRunner().invoke(app, ["db", "upgrade"]).exit_code == 0
    monkeypatch.setattr(storage.sql_gate, "read_only_statement", lambda query, dialect: query)
    read_only = make_read_only_engine(f"sqlite:///{tmp_path / 'tradeops.db'}")
    try:
        for attack in (
            f"ATTACH DATABASE '{tmp_path}/attached.db' AS x",
            f"VACUUM INTO '{tmp_path}/copy.db'",
            "PRAGMA query_only = OFF",
            "delete from orders",
            "select load_extension('/tmp/evil')",
        ):
            with pytest.raises(ValueError, match="the database refused the query"):
                read_only_query(read_only, attack)
    finally:
        read_only.dispose()
    assert not (tmp_path / "attached.db").exists() and not (tmp_path / "copy.db").exists()


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
def test_postgres_read_only_transaction_refuses_what_a_parser_miss_would_let_through(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.sql_gate

    monkeypatch.setattr(storage.sql_gate, "read_only_statement", lambda query, dialect: query)
    with pytest.raises(ValueError, match="read-only transaction"):
        read_only_query(engine, "with d as (delete from orders returning id) select * from d")


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
def test_the_copy_attack_is_real_without_the_gate(engine: Engine, marker: Path) -> None:
    """The control for the marker assertions above: on this server (a superuser URL), the same
    COPY sent without the gate does run a program, even in a read-only transaction."""
    with engine.connect() as connection:
        is_superuser = connection.exec_driver_sql("select rolsuper from pg_roles where rolname = current_user")
        if not is_superuser.scalar():
            pytest.skip("the test database URL is not a superuser: COPY TO PROGRAM cannot run at all")
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        connection.exec_driver_sql(f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'")
        connection.rollback()
    if engine.url.host not in ("127.0.0.1", "localhost", "::1", None):
        pytest.skip("the test database runs on another machine: its /tmp is not this one")
    assert marker.exists()


def test_the_gate_renders_what_it_checked() -> None:
    assert read_only_statement("select 1 /* ; drop table orders */", "postgres") == "SELECT 1"
    with pytest.raises(QueryRefused, match="empty query"):
        read_only_statement(" ; ", "sqlite")
    with pytest.raises(QueryRefused, match="does not parse"):
        read_only_statement("selec 1", "postgres")
