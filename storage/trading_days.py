"""Trading days of exchange calendars as a venue publishes them (akshare's trade calendar for
XSHG), stored so that sessions beyond exchange-calendars' horizon are known offline and after a
restart."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import Engine
from sqlmodel import Session, select

from storage.db import transaction
from storage.tables import TradingDay


class TradingDayStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _rows(self, calendar: str) -> list[TradingDay]:
        with Session(self._engine) as session:
            query = select(TradingDay).where(TradingDay.calendar == calendar)
            return sorted(session.exec(query).all(), key=lambda row: row.day)

    def days(self, calendar: str) -> list[date]:
        return [row.day for row in self._rows(calendar)]

    def source(self, calendar: str) -> tuple[str, datetime] | None:
        """(where the stored days came from, when they were fetched), or None when none are stored."""
        rows = self._rows(calendar)
        if not rows:
            return None
        return rows[-1].source, max(row.fetched_at for row in rows)

    def replace(self, calendar: str, days: Iterable[date], *, source: str, at: datetime) -> int:
        """Store ``days`` as the calendar's trading days (from ``source``), replacing what was stored."""
        rows = [TradingDay(calendar=calendar, day=d, source=source, fetched_at=at) for d in sorted(set(days))]
        with transaction(self._engine) as session:
            for old in session.exec(select(TradingDay).where(TradingDay.calendar == calendar)).all():
                session.delete(old)
            session.flush()
            session.add_all(rows)
        return len(rows)
