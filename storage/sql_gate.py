"""The gate of `tradeops sql`: one plain read-only query, checked by a real SQL parser (sqlglot)
before anything reaches a database.

Accepted: exactly one SELECT (with WITH, UNION/INTERSECT/EXCEPT, subqueries). Refused: every other
statement (ATTACH, VACUUM INTO, PRAGMA, COPY, SET, DML, DDL), a data-modifying WITH, SELECT ... INTO,
row locks (FOR UPDATE/SHARE), and any call of a function on the deny list below: those that read or
write the server's files, run programs, reach other servers, run SQL given as a string (which the
parser cannot see into), change settings or take locks. Function calls are matched on the parser's
function nodes (any schema, any case, quoted or not), never on substrings of the text.

What PostgreSQL receives is the parser's own rendering of the one statement it checked, with
comments left out, so no difference between sqlglot's reading of the text and the server's can
smuggle a second statement or a hidden call past the gate (a read-only transaction does not stop
COPY TO PROGRAM or pg_read_file: the gate is what does). SQLite receives the text as written (its
column names are the text of each expression), because the second line there is SQLite's own: an
authorizer that allows reading and the functions not denied here, nothing else (storage/db.py),
on a ``mode=ro`` connection whose driver runs one statement at a time.
"""

from __future__ import annotations

import logging
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

# sqlglot warns on the root logger's stderr when it falls back to an opaque Command (VACUUM INTO ...),
# which the gate refuses anyway: the refusal is the one line the user sees.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

Dialect = Literal["postgres", "sqlite", "duckdb"]

# Exact names (lower case), every dialect: server files, programs, large objects, other servers,
# SQL in a string, settings, locks, sequences, server administration, SQLite extensions.
DENIED_FUNCTIONS = frozenset(
    {
        # PostgreSQL: server files and directories
        "pg_read_file", "pg_read_binary_file", "pg_stat_file", "pg_ls_dir", "pg_ls_logdir", "pg_ls_waldir",
        "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_ls_logicalsnapdir", "pg_ls_logicalmapdir",
        "pg_ls_replslotdir", "pg_ls_summariesdir", "pg_current_logfile",
        # adminpack
        "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync", "pg_logdir_ls",
        # large objects: lo_import / lo_export read and write server files
        "lo_import", "lo_export", "lo_create", "lo_creat", "lo_unlink", "lo_open", "lo_close", "lo_put",
        "lo_get", "lo_from_bytea", "lo_truncate", "lo_truncate64", "lo_lseek", "lo_lseek64", "lo_tell",
        "lo_tell64", "lowrite", "loread",
        # other servers
        "dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_send_query", "dblink_open",
        "dblink_fetch", "dblink_get_result", "postgres_fdw_disconnect", "postgres_fdw_disconnect_all",
        # SQL given as a string: the gate cannot see what it runs
        "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
        "cursor_to_xmlschema", "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema",
        "schema_to_xml", "schema_to_xmlschema", "schema_to_xml_and_xmlschema", "database_to_xml",
        "database_to_xmlschema", "database_to_xml_and_xmlschema",
        # settings, sessions, server administration
        "set_config", "pg_reload_conf", "pg_rotate_logfile", "pg_terminate_backend", "pg_cancel_backend",
        "pg_promote", "pg_switch_wal", "pg_create_restore_point", "pg_backup_start", "pg_backup_stop",
        "pg_start_backup", "pg_stop_backup", "pg_log_backend_memory_contexts", "pg_import_system_collations",
        "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_drop_replication_slot",
        "pg_copy_physical_replication_slot", "pg_copy_logical_replication_slot", "pg_replication_slot_advance",
        "pg_logical_emit_message", "pg_logical_slot_get_changes", "pg_logical_slot_peek_changes",
        "pg_notify", "pg_sleep", "pg_sleep_for", "pg_sleep_until",
        # sequences (writes)
        "nextval", "setval",
        # SQLite: extensions and the shell's file functions
        "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",
    }
)  # fmt: skip
# Whole families, matched on the start of a function node's name.
DENIED_PREFIXES = ("pg_read_", "pg_ls_", "pg_file_", "lo_", "dblink", "pg_advisory", "pg_try_advisory")

# Statements a query may not hold anywhere (a data-modifying WITH is one of these inside a SELECT).
_WRITES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Copy,
    exp.Pragma,
    exp.Set,
)
ALLOWED = "one read-only SELECT (also WITH ... SELECT, UNION), e.g. select * from orders"


class QueryRefused(ValueError):
    """The query is not one plain read-only SELECT; the message says what it is and what is valid."""


def function_name(node: exp.Func) -> str:
    """The called name in lower case, as the user wrote it (``pg_catalog.pg_read_file`` -> pg_read_file)."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def denied_function(name: str) -> bool:
    """On the deny list, or spelled with escapes (PostgreSQL's U&"pg\\005fread_file" is pg_read_file)."""
    return name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES) or "\\" in name


def _statement_kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper() or "command"
    return node.key.upper()


def read_only_statement(query: str, dialect: Dialect) -> str:
    """The one read-only SELECT in ``query``, rendered by the parser in ``dialect`` (comments left
    out). Raises QueryRefused naming what the query is instead."""
    text = query.strip()
    if not text.rstrip(";").strip():
        raise QueryRefused(f"empty query: give {ALLOWED}")
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QueryRefused(f"the query does not parse ({first[:200]}); give {ALLOWED}") from None
    if len(statements) != 1:
        raise QueryRefused(f"refused: one statement at a time, the query holds {len(statements)}; give {ALLOWED}")
    statement = statements[0]
    if not isinstance(statement, exp.Select | exp.SetOperation):
        kind = _statement_kind(statement)
        raise QueryRefused(f"refused: {kind} is not a read-only query; `tradeops sql` runs {ALLOWED}")
    for node in statement.walk():
        if isinstance(node, _WRITES):
            raise QueryRefused(f"refused: the query holds a {_statement_kind(node)} statement; only {ALLOWED}")
        if isinstance(node, exp.Select) and node.args.get("into") is not None:
            raise QueryRefused(f"refused: SELECT ... INTO creates a table; only {ALLOWED}")
        if isinstance(node, exp.Lock):
            raise QueryRefused(f"refused: FOR UPDATE/SHARE takes row locks; only {ALLOWED}")
        if isinstance(node, exp.Func) and denied_function(function_name(node)):
            raise QueryRefused(
                f"refused: {function_name(node)}() reads or writes server files, runs programs or changes "
                "server state, which `tradeops sql` never allows"
            )
    return statement.sql(dialect=dialect, normalize_functions=False, comments=False)
