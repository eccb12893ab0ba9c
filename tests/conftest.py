"""Shared fixtures. Databases are real: SQLite always, PostgreSQL too when
TRADEOPS_TEST_POSTGRES_URL is set (each test gets its own schema, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from sqlalchemy import Engine

from storage.db import make_engine, normalize_url, sqlite_url
from storage.migrate import upgrade
from tests.support import CALLERS, SIGNAL_AT, STEERING, restored_logging
from venues.clock import SimulatedClock

if TYPE_CHECKING:
    from bot.core import CommandCore
    from bot.services import Services

POSTGRES_URL = os.environ.get("TRADEOPS_TEST_POSTGRES_URL", "")
# The Redis tests (scheduler leader, Celery executor): .ci/run finds or starts one here.
REDIS_URL = os.environ.get("TRADEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_answers(url: str = REDIS_URL) -> bool:
    """Whether a Redis server answers a PING at ``url`` within two seconds."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture
def redis_url() -> str:
    """The test Redis's URL; the test skips, saying why, when no server answers there."""
    if not redis_answers():
        pytest.skip(f"no Redis server answers at {REDIS_URL}")
    return REDIS_URL


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


@pytest.fixture
def hermetic(tmp_path: Path) -> Iterator[None]:
    """No TRADEOPS_*, OPENAI_* or APCA_* variable of this machine, and no ./.env (the test runs in its
    tmp_path), steers the settings a test loads; the root logger's handlers (the CLI replaces them)
    are put back afterwards. TRADEOPS_TEST_POSTGRES_URL stays: it picks the tests' own database.
    Use it with ``pytestmark = pytest.mark.usefixtures("hermetic")``."""
    with restored_logging(), pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(STEERING) and name != "TRADEOPS_TEST_POSTGRES_URL":
                patch.delenv(name)
        patch.chdir(tmp_path)
        yield


@pytest.fixture
def clock() -> SimulatedClock:
    """The command core's tests' moment, SIGNAL_AT (a module that needs another defines its own)."""
    return SimulatedClock(SIGNAL_AT)


@pytest.fixture
async def bare_services(hermetic: None, tmp_path: Path, clock: SimulatedClock) -> AsyncIterator[Services]:
    """The application on a fresh data dir (tmp_path/data, SQLite) at ``clock``, hermetic, with the
    default watchlists and no users (a test grants the ones it needs)."""
    from bot.services import open_services, seed_watchlists
    from bot.settings import load_settings

    async with open_services(load_settings(data_dir=tmp_path / "data"), clock=clock) as opened:
        seed_watchlists(opened)
        yield opened


@pytest.fixture
def services(bare_services: Services, clock: SimulatedClock) -> Services:
    """:func:`bare_services` with CALLERS granted their roles."""
    for role, caller in CALLERS.items():
        bare_services.users.grant(caller.platform, caller.user_id, role, at=clock.now(), display_name=caller.name)
    return bare_services


@pytest.fixture
def discord_globals() -> Iterator[None]:
    """discord.py's API and gateway URLs put back after the test (a transport's start sets them
    process-wide)."""
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@pytest.fixture
def core(services: Services) -> CommandCore:
    """The command core over ``services``."""
    from bot.core import CommandCore

    return CommandCore(services)


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


@pytest.fixture
def shared_database(tmp_path: Path) -> Iterator[str]:
    """A database URL other processes (and several runs) can open: a PostgreSQL schema of this
    test's own when TRADEOPS_TEST_POSTGRES_URL is set, else a SQLite file."""
    if not POSTGRES_URL:
        yield sqlite_url(tmp_path / "shared.db")
        return
    with postgres_schema() as url:
        yield url
