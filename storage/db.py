"""Engine and sessions. SQLite (WAL, busy timeout, foreign keys) by default; PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def normalize_url(url: str) -> str:
    """Accept the URLs people paste: postgres:// and postgresql:// become the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


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


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
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
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise ValueError(
        f"unsupported database URL {redact_url(url)!r}: use sqlite:///path/to/file.db or "
        "postgresql://user@host:5432/dbname"
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


def read_only_query(engine: Engine, query: str, *, limit: int = 100) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement in a transaction the database itself makes read-only, then roll back.
    Returns the column names and at most ``limit`` rows."""
    statement = query.strip().rstrip(";").strip()
    if not statement:
        raise ValueError("empty query: give one SQL statement, e.g. select * from orders")
    if ";" in statement:
        raise ValueError("one statement at a time: the query contains ';'")
    from sqlalchemy.exc import DBAPIError

    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA query_only = ON")
        else:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        try:
            result = connection.exec_driver_sql(statement)
            if not result.returns_rows:
                raise ValueError("the statement returned no rows; only read-only queries are allowed")
            columns = list(result.keys())
            rows = [tuple(row) for row in result.fetchmany(limit)]
        except DBAPIError as exc:
            raise ValueError(f"the database refused the query: {exc.orig}") from None
        finally:
            connection.rollback()
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA query_only = OFF")
    return columns, rows
