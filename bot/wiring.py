"""Opening the configured database (migrated unless told otherwise); bot/services.py builds the rest."""

from __future__ import annotations

from sqlalchemy import Engine

from bot.logs import register_secret
from bot.settings import Settings
from storage.db import make_engine
from storage.migrate import upgrade


def open_database(settings: Settings, *, migrate: bool = True) -> Engine:
    """The engine for the configured database, migrated to the latest schema unless told not to."""
    url = settings.resolved_database_url
    if settings.database_url is not None:
        from sqlalchemy.engine import make_url

        register_secret(make_url(url).password)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    return engine
