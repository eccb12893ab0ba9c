"""Alembic migrations run from code: `tradeops db upgrade`, and automatically at start.

Alembic is imported only when a migration has to run: every command opens the database, and a
schema that is already current is told by one query (:func:`ensure_latest`)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def latest_on_disk() -> str:
    """The newest migration's revision, from the file names (``0008_chat_notify.py`` -> "0008"):
    each migration's revision is its file's number (a test holds alembic's head to it)."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def ensure_latest(engine: Engine) -> None:
    """Migrate ``engine``'s database unless it already stands at the newest revision: one query,
    no alembic import, on the path every command takes."""
    if "alembic_version" in inspect(engine).get_table_names():
        with engine.connect() as connection:
            versions = {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}
        if versions == {latest_on_disk()}:
            return
    upgrade(engine)


def create_migrated_sqlite(path: Path) -> None:
    """A new SQLite database file at ``path`` at the newest schema, as :func:`ensure_latest` would
    leave a fresh one: a copy of an empty database migrated once per process. A backtest (and each
    walk-forward fold) runs on a database of its own, and running every migration costs more than
    a short backtest. FileExistsError when ``path`` exists."""
    with path.open("xb") as file:
        file.write(_migrated_empty_sqlite())


@functools.cache
def _migrated_empty_sqlite() -> bytes:
    from storage.db import make_engine, sqlite_url

    with tempfile.TemporaryDirectory(prefix="tradeops-schema-") as tmp:
        path = Path(tmp) / "empty.db"
        engine = make_engine(sqlite_url(path))
        try:
            upgrade(engine)
            with engine.connect() as connection:  # everything into the main file: a WAL is not copied
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()
        return path.read_bytes()


def alembic_config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; returns the revision the database is at afterwards."""
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
