"""Read-only SQL over the bars lake with DuckDB.

One view, ``bars``: ``venue, symbol, timeframe`` (VARCHAR), ``ts`` (bar open time, TIMESTAMP WITH
TIME ZONE, shown in UTC) and ``open, high, low, close, volume`` (DOUBLE), over every part the
manifests list (an orphan part of a killed backfill is never seen).

Read-only twice over: the statement must be exactly one SELECT (DuckDB's own parser says what
it is), and the connection is an in-memory database with file-system access switched off except
for reading the listed part files, extension installs and loads off, and the configuration
locked, so even a statement that slipped through could neither write a file, attach a database
nor install anything. The sqlglot gate of `tradeops sql` (storage/sql_gate.py) is not stacked on
top: DuckDB's own parser is the authority on DuckDB's syntax (DESCRIBE, SUMMARIZE, FROM-first
queries), and this connection has no server files, programs or other databases to reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from storage.lake import BarsLake

VIEW_COLUMNS = ["venue", "symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"]
_EMPTY_VIEW = (
    "SELECT NULL::VARCHAR AS venue, NULL::VARCHAR AS symbol, NULL::VARCHAR AS timeframe, "
    "NULL::TIMESTAMPTZ AS ts, NULL::DOUBLE AS open, NULL::DOUBLE AS high, NULL::DOUBLE AS low, "
    "NULL::DOUBLE AS close, NULL::DOUBLE AS volume WHERE false"
)


class LakeQueryError(ValueError):
    """The query was refused or failed; the message says why and what is allowed."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    types: list[str]  # DuckDB type names, e.g. TIMESTAMP WITH TIME ZONE
    rows: list[tuple[Any, ...]]
    truncated: bool  # more rows than ``limit`` were available


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def open_lake_connection(lake: BarsLake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the ``bars`` view, locked down as the module says."""
    files = [str(p.resolve()) for p in lake.part_files()]
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        if files:
            listed = ", ".join(_sql_string(f) for f in files)
            columns = ", ".join(VIEW_COLUMNS)
            con.execute(f"CREATE VIEW bars AS SELECT {columns} FROM read_parquet([{listed}])")
        else:
            con.execute(f"CREATE VIEW bars AS {_EMPTY_VIEW}")
        if files:
            con.execute(f"SET allowed_paths = [{listed}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """The one SELECT in ``query``, or LakeQueryError naming what it is instead."""
    text = query.strip().rstrip(";").strip()
    if not text:
        raise LakeQueryError('empty query: give one SELECT, e.g. "select symbol, count(*) from bars group by 1"')
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise LakeQueryError(f"the query does not parse: {exc}") from None
    if len(statements) != 1:
        raise LakeQueryError(f"one statement at a time: the query holds {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise LakeQueryError(
            f"refused: the lake is read-only; this is a statement of type {kind.name}, and only a SELECT "
            "(also WITH ... SELECT, DESCRIBE, SUMMARIZE) is allowed"
        )
    return text


def query_lake(lake: BarsLake, query: str, *, limit: int | None = None) -> QueryResult:
    """Run one SELECT over the lake's ``bars`` view; at most ``limit`` rows (None: all)."""
    if limit is not None and limit < 0:
        raise LakeQueryError(f"limit must be zero or more, got {limit}")
    con = open_lake_connection(lake)
    try:
        text = check_read_only(con, query)
        try:
            result = con.execute(text)
            columns = [d[0] for d in result.description or []]
            types = [str(d[1]) for d in result.description or []]
            rows = result.fetchall() if limit is None else result.fetchmany(limit + 1)
        except duckdb.Error as exc:
            raise LakeQueryError(f"DuckDB refused the query: {exc}") from None
    finally:
        con.close()
    truncated = limit is not None and len(rows) > limit
    return QueryResult(columns, types, rows[:limit] if truncated else rows, truncated)
