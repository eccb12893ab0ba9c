"""A-share trading days beyond exchange-calendars' horizon (its XSHG ends on 2026-12-31 in the
installed release): taken from akshare's trade calendar, stored in the database, and registered
with venues.calendars at start; without them every weekday is assumed to be a session, and the
chat and `tradeops doctor` say so."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Protocol, runtime_checkable

from sqlalchemy import Engine

from storage.trading_days import TradingDayStore
from venues import calendars
from venues.errors import VenueError

log = logging.getLogger(__name__)

CALENDAR = "XSHG"
# Ask the venue for its trade calendar once the library's horizon is this close, and again when
# what is stored is this old (the exchange publishes next year's holidays in December).
REFRESH_BEFORE = timedelta(days=60)
REFRESH_EVERY = timedelta(days=7)


@runtime_checkable
class TradeCalendarSource(Protocol):
    name: str

    async def trade_days(self) -> list[date]: ...


def assumption_warning(calendar: str = CALENDAR) -> str:
    last = calendars.library_last_session(calendar)
    return (
        f"{calendar} trading days after {last.isoformat()} are not known (exchange-calendars ends there and no "
        "trade calendar is stored): every weekday is taken as a session, so a holiday would be traded on; "
        "set TRADEOPS_AKSHARE=true to load akshare's trade calendar, or update exchange-calendars"
    )


def register_stored(engine: Engine, calendar: str = CALENDAR) -> int:
    """Register the stored trading days; how many lie beyond the library's horizon."""
    store = TradingDayStore(engine)
    stored = store.days(calendar)
    if not stored:
        return 0
    found = store.source(calendar)
    return calendars.register_sessions(calendar, stored, source=found[0] if found else "stored")


async def load_trading_days(
    engine: Engine, venues: Mapping[str, object], now: datetime, calendar: str = CALENDAR, *, fresh: bool = False
) -> str:
    """Register the stored trading days and, when the horizon is near and a venue publishes a
    trade calendar, fetch it first (stored for the next start). Returns one line saying where the
    sessions after the horizon come from; a failed fetch is logged, never raised. ``fresh``: the
    database was just created and stores none (a backtest's): it is not read unless a fetch
    stored some."""
    store = TradingDayStore(engine)
    last = calendars.library_last_session(calendar)
    stored = None if fresh else await asyncio.to_thread(store.source, calendar)
    fetched = False
    sources = [v for v in venues.values() if isinstance(v, TradeCalendarSource)]
    due = now.date() + REFRESH_BEFORE >= last and (stored is None or now - stored[1] >= REFRESH_EVERY)
    if due and sources:
        venue = sources[0]
        try:
            days = await venue.trade_days()
        except VenueError as exc:
            log.warning("could not load %s trading days from %s: %s", calendar, venue.name, exc)
        else:
            source = f"{venue.name} trade calendar"
            await asyncio.to_thread(store.replace, calendar, days, source=source, at=now)
            fetched = True
    beyond = await asyncio.to_thread(register_stored, engine, calendar) if fetched or not fresh else 0
    until, source = calendars.known_until(calendar)
    if beyond:
        return f"{calendar}: sessions to {until.isoformat()} ({beyond} days past {last.isoformat()} from {source})"
    return f"{calendar}: sessions to {last.isoformat()} (exchange-calendars); weekdays assumed after it"
