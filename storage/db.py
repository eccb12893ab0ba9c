"""Engine and sessions. SQLite (WAL, busy timeout, foreign keys) by default; PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, Table, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000
# PostgreSQL connections an engine may hold: (pool_size, max_overflow). A long-running process
# (the bot, the demo) keeps a pool; a one-shot command (``tradeops chat -c``, ``scan``, ``sql``)
# needs one connection at a time, and fifty of them started at once must not exhaust the server.
# A command also opens one connection for the LangGraph checkpointer and one per lock it holds
# (storage.locks), so its peak is pool + 1 + locks held at once (at most two).
SERVICE_POOL = (5, 10)
ONE_SHOT_POOL = (1, 1)
TOO_MANY_CONNECTIONS = "53300"  # PostgreSQL SQLSTATE too_many_connections (server or role limit)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


VALID_URLS = "sqlite:///path/to/file.db or postgresql://user@host:5432/dbname"


class DatabaseUrlError(ValueError):
    """TRADEOPS_DATABASE_URL is not a URL of a database tradeops supports; the message says what is."""


def normalize_url(url: str) -> str:
    """Accept the URLs people paste: postgres:// and postgresql:// become the psycopg 3 driver.
    Raises DatabaseUrlError for text that is not a database URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUrlError(f"TRADEOPS_DATABASE_URL {url[:60]!r} is not a database URL: use {VALID_URLS}") from None
    if parsed.drivername in {"postgres", "postgresql"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def check_database_url(url: str) -> str:
    """``url`` normalised (:func:`normalize_url`); DatabaseUrlError unless it is SQLite or PostgreSQL."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseUrlError(
            f"unsupported database URL {redact_url(url)!r} (TRADEOPS_DATABASE_URL): use {VALID_URLS}"
        )
    return url


def redact_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The stdlib driver starts transactions lazily; run PRAGMAs outside any transaction.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, *, pool: tuple[int, int] = SERVICE_POOL) -> Engine:
    """An engine for ``url``; ``pool`` is PostgreSQL's (pool_size, max_overflow): ``ONE_SHOT_POOL``
    for a command that runs once and exits. Raises DatabaseUrlError for a URL of another database."""
    url = check_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            # An in-memory database lives as long as its one connection: share it across sessions.
            **({"poolclass": StaticPool} if not database or database == ":memory:" else {}),
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        pool_size, max_overflow = pool
        return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow)
    raise DatabaseUrlError(f"unsupported database URL {redact_url(url)!r} (TRADEOPS_DATABASE_URL): use {VALID_URLS}")


def connection_problem(exc: BaseException, url: str) -> str | None:
    """What to tell a person when ``exc`` (anywhere in its cause chain) means the database could not
    be reached or refused a new connection; None for any other error. The text says what happened
    and what to do, with the password left out of the URL."""
    from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError

    found: BaseException | None = exc
    while found is not None:
        if isinstance(found, SQLAlchemyOperationalError) and isinstance(found.orig, BaseException):
            found = found.orig
            continue
        if type(found).__module__.startswith("psycopg") and type(found).__name__ == "OperationalError":
            break
        found = found.__cause__ or found.__context__
    if found is None:
        return None
    lines = [line.strip() for line in str(found).splitlines() if line.strip()]
    detail = " ".join(lines).rstrip(".") if lines else type(found).__name__
    where = redact_url(url)
    if getattr(found, "sqlstate", None) == TOO_MANY_CONNECTIONS or "too many" in detail.lower():
        return (
            f"the database {where} refused a new connection: {detail}. Too many connections are open "
            "(other tradeops commands or clients). Wait for some to finish and try again, or raise "
            "the server's max_connections (or the role's CONNECTION LIMIT), or put a pooler such as "
            "PgBouncer in front of it."
        )
    return (
        f"cannot connect to the database {where}: {detail}. Is the server running and reachable, "
        "and is TRADEOPS_DATABASE_URL right?"
    )


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed as a whole or rolled back as a whole, never half-written."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def insert_rows(session: Session, model: type[SQLModel], rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (column name -> value) into ``model``'s table in one executemany through
    SQLAlchemy Core: each value is still bound by its column's type (Money, UTCDateTime), without
    the ORM bulk path's work per row (a backtest writes thousands of equity points at once)."""
    if rows:
        table: Table = model.__table__  # type: ignore[attr-defined]
        session.connection().execute(table.insert(), list(rows))


def _sqlite_read_only_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def make_read_only_engine(url: str) -> Engine:
    """An engine that cannot write: SQLite opened with ``mode=ro`` (an existing file only, never
    created; ``immutable`` when no process has it open, so not even -wal and -shm files are made)
    and ``query_only``, with ``read_only_query``'s authorizer refusing ATTACH; PostgreSQL with a one-connection
    pool whose every transaction is made READ ONLY by ``read_only_query``. Raises
    DatabaseMissingError when the SQLite file does not exist, ValueError for another database."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:":
            raise ValueError("a read-only query needs a database file, not an in-memory database")
        path = Path(database).resolve()
        if not path.is_file():
            raise DatabaseMissingError(path)
        # The stdlib driver takes a file: URI when the SQLAlchemy URL says uri=true. A WAL database
        # opened read-only still creates its -wal and -shm files; without a -wal file no process has
        # it open and all of it is in the main file, so it is read as immutable and nothing is made.
        immutable = "" if Path(f"{path}-wal").exists() else "&immutable=1"
        ro_url = f"sqlite:///file:{quote(str(path))}?mode=ro{immutable}&uri=true"
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(ro_url, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_read_only_pragmas)
        return engine
    return make_engine(url, pool=ONE_SHOT_POOL)


class DatabaseMissingError(FileNotFoundError):
    """The SQLite file a read-only command needs does not exist (it is never created by reading)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no database at {path}: `tradeops db upgrade` (or any other command) creates it")
        self.path = path


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    """SQLite's own check of every step of a statement: reading and the allowed functions, nothing
    else (no ATTACH, which VACUUM INTO also needs, no PRAGMA, no transaction control, no writes)."""
    import sqlite3

    from storage.sql_gate import denied_function

    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and not denied_function((arg2 or "").lower()):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def read_only_query(engine: Engine, query: str, *, limit: int | None = 100) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one SELECT, passed by the parser gate (storage/sql_gate.py), read-only in the database
    itself (PostgreSQL: a READ ONLY transaction; SQLite: ``query_only`` and an authorizer that allows
    reading only), then roll back. Returns the column names and at most ``limit`` rows (None: all).
    Raises QueryRefused (a ValueError) before anything is sent when the query is not one plain
    read-only SELECT, ValueError when the database refuses it."""
    from sqlalchemy.exc import DBAPIError

    from storage.sql_gate import Dialect, read_only_statement

    dialect: Dialect = "sqlite" if engine.dialect.name == "sqlite" else "postgres"
    rendered = read_only_statement(query, dialect)
    # psycopg formats the statement with the (empty) parameters SQLAlchemy passes: a literal % (LIKE
    # 'ab%', 100 % 7) must reach it doubled.
    statement = query.strip().rstrip(";").strip() if dialect == "sqlite" else rendered.replace("%", "%%")
    with engine.connect() as connection:
        raw: Any = connection.connection.driver_connection
        if dialect == "sqlite":
            connection.exec_driver_sql("PRAGMA query_only = ON")
            raw.set_authorizer(_sqlite_authorizer)
        else:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        try:
            result = connection.exec_driver_sql(statement)
            if not result.returns_rows:
                raise ValueError("the statement returned no rows; only read-only queries are allowed")
            columns = list(result.keys())
            fetched = result.fetchall() if limit is None else result.fetchmany(limit)
            rows = [tuple(row) for row in fetched]
        except DBAPIError as exc:
            detail = " ".join(str(exc.orig).split())
            raise ValueError(f"the database refused the query: {detail}") from None
        finally:
            if dialect == "sqlite":
                raw.set_authorizer(None)
            connection.rollback()
            if dialect == "sqlite":  # a writable engine's pooled connection is handed back as it was
                connection.exec_driver_sql("PRAGMA query_only = OFF")
    return columns, rows
