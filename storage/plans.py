"""Trade plans (how each executed signal's position is managed) and equity snapshots."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.db import transaction
from storage.tables import EquitySnapshot, TradePlan


class PlanStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, plan: TradePlan) -> TradePlan:
        """Insert once per signal: the execute node may run again after a crash or a race."""
        try:
            with transaction(self.engine) as session:
                session.add(plan)
        except IntegrityError:
            existing = self.get(plan.signal_id)
            if existing is None:
                raise
            return existing
        return plan

    def get(self, signal_id: str) -> TradePlan | None:
        with Session(self.engine) as session:
            return session.exec(select(TradePlan).where(TradePlan.signal_id == signal_id)).first()

    def active(self, venue: str | None = None) -> list[TradePlan]:
        query = select(TradePlan).where(col(TradePlan.status).in_(["entry_pending", "open"]))
        if venue is not None:
            query = query.where(TradePlan.venue == venue)
        with Session(self.engine) as session:
            return list(session.exec(query.order_by(col(TradePlan.id))).all())

    def all(self, *, limit: int = 100) -> list[TradePlan]:
        with Session(self.engine) as session:
            return list(session.exec(select(TradePlan).order_by(col(TradePlan.id).desc()).limit(limit)).all())

    def save(self, plan: TradePlan) -> None:
        with transaction(self.engine) as session:
            session.merge(plan)

    def snapshot_equity(self, venue: str, currency: str, *, cash: Decimal, equity: Decimal, at: datetime) -> None:
        try:
            with transaction(self.engine) as session:
                session.add(EquitySnapshot(venue=venue, currency=currency, cash=cash, equity=equity, ts=at))
        except IntegrityError:
            pass  # this moment is already recorded (a re-run tick)

    def snapshot_equity_many(self, venue: str, currency: str, points: list[tuple[datetime, Decimal, Decimal]]) -> None:
        """Many (at, cash, equity) snapshots in one transaction: a backtest's equity at the fires it
        passed over. All or nothing; a moment already recorded raises IntegrityError."""
        if not points:
            return
        with transaction(self.engine) as session:
            # One executemany, not an ORM object per row.
            session.execute(
                insert(EquitySnapshot),
                [
                    {"venue": venue, "currency": currency, "cash": cash, "equity": equity, "ts": at}
                    for at, cash, equity in points
                ],
            )

    def equity_history(self, venue: str | None = None) -> list[EquitySnapshot]:
        query = select(EquitySnapshot)
        if venue is not None:
            query = query.where(EquitySnapshot.venue == venue)
        with Session(self.engine) as session:
            return list(session.exec(query.order_by(col(EquitySnapshot.ts), col(EquitySnapshot.id))).all())
