"""Shared fixtures. Databases are real: SQLite always, PostgreSQL too when
TRADEOPS_TEST_POSTGRES_URL is set (each test gets its own schema, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine

from storage.db import make_engine, normalize_url, sqlite_url
from storage.migrate import upgrade

POSTGRES_URL = os.environ.get("TRADEOPS_TEST_POSTGRES_URL", "")

DB_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not POSTGRES_URL, reason="TRADEOPS_TEST_POSTGRES_URL is not set"),
        ],
    ),
]


def _postgres_schema_url(schema: str) -> str:
    base = normalize_url(POSTGRES_URL)
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL (not migrated). Parametrise with ``DB_BACKENDS``."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield sqlite_url(tmp_path / "tradeops.db")
        return
    with postgres_schema() as url:
        yield url


@contextmanager
def postgres_schema(prefix: str = "t_") -> Iterator[str]:
    """The URL of a new, empty schema on TRADEOPS_TEST_POSTGRES_URL's server, dropped afterwards."""
    schema = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database engine."""
    eng = make_engine(db_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a database runs on each backend."""
    if "db_url" in metafunc.fixturenames and not any(
        "db_url" in getattr(m, "args", [""])[0] for m in metafunc.definition.iter_markers("parametrize")
    ):
        metafunc.parametrize("db_url", DB_BACKENDS, indirect=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Skips summarised in one line per reason (``-r`` without ``s`` lists none of them one by one)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{count} skipped: {reason}")
