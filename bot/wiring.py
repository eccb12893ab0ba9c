"""Opening the configured database (migrated unless told otherwise); bot/services.py builds the rest."""

from __future__ import annotations

from sqlalchemy import Engine

from bot.logs import register_secret
from bot.settings import Settings
from storage.db import ONE_SHOT_POOL, SERVICE_POOL, make_engine
from storage.migrate import upgrade


def open_database(settings: Settings, *, migrate: bool = True, one_shot: bool = False) -> Engine:
    """The engine for the configured database, migrated to the latest schema unless told not to;
    ``one_shot`` (a command that runs once and exits) keeps at most two pooled connections."""
    url = settings.resolved_database_url
    if settings.database_url is not None:
        from sqlalchemy.engine import make_url

        register_secret(make_url(url).password)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url, pool=ONE_SHOT_POOL if one_shot else SERVICE_POOL)
    if migrate:
        upgrade(engine)
    return engine
