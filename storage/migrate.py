"""Alembic migrations run from code: `tradeops db upgrade`, and automatically at start.

Alembic is imported only when a migration has to run: every command opens the database, and a
schema that is already current is told by one query (:func:`ensure_latest`)."""

from __future__ import annotations

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
