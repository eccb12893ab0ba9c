"""Opening the configured database (migrated unless told otherwise); bot/services.py builds the rest."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bot.data_dir import check_data_dir, check_sqlite_file
from bot.logs import register_secret
from bot.settings import Settings
from storage.db import (
    ONE_SHOT_POOL,
    SERVICE_POOL,
    check_database_url,
    make_engine,
    make_read_only_engine,
    normalize_url,
)
from storage.migrate import ensure_latest


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().resolve()


def open_database(
    settings: Settings, *, migrate: bool = True, one_shot: bool = False, read_only: bool = False
) -> Engine:
    """The engine for the configured database, migrated to the latest schema unless told not to;
    ``one_shot`` (a command that runs once and exits) keeps at most two pooled connections.
    ``read_only``: creates nothing (no data dir, no file), never migrates, and the engine cannot
    write (storage.db.make_read_only_engine). Raises DataDirError (bot/data_dir.py) for a data dir
    or SQLite file that cannot be used, before anything is created."""
    url = settings.resolved_database_url
    if settings.database_url is not None:
        register_secret(make_url(check_database_url(url)).password)  # one line for a URL tradeops cannot use
    check_data_dir(settings.data_dir, create=not read_only)
    path = sqlite_file(url)
    if path is not None:
        check_sqlite_file(path, must_exist=read_only)
    if read_only:
        return make_read_only_engine(url)
    engine = make_engine(url, pool=ONE_SHOT_POOL if one_shot else SERVICE_POOL)
    if migrate:
        ensure_latest(engine)
    return engine
