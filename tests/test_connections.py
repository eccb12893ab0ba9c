"""What a one-shot command asks of the database server (issue 7): a few connections at most, and a
server that cannot be reached or has none left to give is one clear message, never a traceback."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from typer.testing import CliRunner, Result

from bot.cli import DATABASE_UNAVAILABLE, app
from storage.db import make_engine, normalize_url
from storage.signals import CLOCK_KEY, SignalStore
from tests.conftest import POSTGRES_URL
from tests.support import restored_logging
from tests.test_graph import ETH_SETUP

# The most connections one one-shot ``scan crypto`` may hold at once: its pool (one, plus one
# overflow), the LangGraph checkpointer's, and two lock connections (symbol, thread) per walk, with
# the watchlist's two symbols walked side by side. Measured alone: 4 (the walks rarely overlap).
ONE_SHOT_PEAK = 7


def _tradeops(tmp_path: Path, database_url: str, *args: str) -> Result:
    env = {"TRADEOPS_DATA_DIR": str(tmp_path / "data"), "TRADEOPS_DATABASE_URL": database_url}
    with restored_logging():
        return CliRunner().invoke(app, list(args), env=env)


def test_an_unreachable_database_is_one_clear_message(tmp_path: Path) -> None:
    result = _tradeops(tmp_path, "postgresql://trader:s3cret@127.0.0.1:1/tradeops", "chat", "-c", "/signals")
    assert result.exit_code == DATABASE_UNAVAILABLE, result.output
    assert result.stderr.startswith(
        "error: cannot connect to the database postgresql://trader:***@127.0.0.1:1/tradeops"
    )
    assert "Connection refused" in result.stderr and "TRADEOPS_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.output and "s3cret" not in result.output


@pytest.fixture
def limited_role() -> Iterator[tuple[str, str]]:
    """A PostgreSQL role with its own schema and no connection limit yet: (role, schema)."""
    if not POSTGRES_URL:
        pytest.skip("TRADEOPS_TEST_POSTGRES_URL is not set")
    role = f"oneshot_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        connection.exec_driver_sql(f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"')
    try:
        yield role, role
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{role}" CASCADE')
            connection.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()


def _set_limit(role: str, limit: int) -> None:
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'ALTER ROLE "{role}" CONNECTION LIMIT {limit}')
    admin.dispose()


def _role_url(role: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(normalize_url(POSTGRES_URL)).set(username=role, password=None)
    base = url.render_as_string(hide_password=False)
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}options={quote(f'-csearch_path={schema}')}"


@pytest.mark.postgres
def test_one_shot_commands_fit_in_a_few_connections_and_running_out_is_a_message(
    tmp_path: Path, limited_role: tuple[str, str]
) -> None:
    role, schema = limited_role
    url = _role_url(role, schema)
    # The server enforces the role's limit on every new connection: a command that succeeds under
    # it never held more at once.
    _set_limit(role, ONE_SHOT_PEAK)
    assert _tradeops(tmp_path, url, "db", "upgrade").exit_code == 0
    # The moment of the shipped data at which ETH/USDT proposes a BUY (tests/test_graph.py).
    engine = make_engine(url)
    SignalStore(engine).set_value(CLOCK_KEY, {"mode": "simulated", "now": ETH_SETUP.isoformat()}, at=ETH_SETUP)
    engine.dispose()
    scan = _tradeops(tmp_path, url, "scan", "crypto", "--json")
    assert scan.exit_code == 0, scan.output
    pending = _tradeops(tmp_path, url, "chat", "-c", "/signals pending", "--json")
    assert pending.exit_code == 0, pending.output
    signal_id = json.loads(pending.stdout)["data"]["signals"][0]["id"]
    approve = _tradeops(tmp_path, url, "chat", "-c", f"/approve {signal_id}")
    assert approve.exit_code == 0 and "placed; fills at the next bar's open" in approve.stdout, approve.output

    _set_limit(role, 1)  # the engine's first connection fits; the checkpointer's does not
    refused = _tradeops(tmp_path, url, "chat", "-c", "/signals all")
    assert refused.exit_code == DATABASE_UNAVAILABLE, refused.output
    assert f"error: the database postgresql+psycopg://{role}@" in refused.stderr
    assert "too many connections for role" in refused.stderr and "PgBouncer" in refused.stderr
    assert "Traceback" not in refused.output
