"""Trade plans (how each executed signal's position is managed) and equity snapshots."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine
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
        """Store a plan as its holder changed it. Two things the chat changes while a tick may hold
        an older copy are kept as stored: exit orders are only ever appended (a /close adds one),
        so the stored ones stay and new ones are added; the levels (stop, take-profits) change
        only through ``set_levels``."""
        with transaction(self.engine) as session:
            stored = session.get(TradePlan, plan.id, with_for_update=True) if plan.id is not None else None
            if stored is not None:
                plan.exit_orders = [*stored.exit_orders, *(c for c in plan.exit_orders if c not in stored.exit_orders)]
                plan.stop, plan.take_profits = stored.stop, list(stored.take_profits)
            session.merge(plan)

    def set_levels(
        self,
        signal_id: str,
        *,
        stop: Decimal,
        take_profits: list[str],
        trailing_stop: Decimal | None,
        at: datetime,
    ) -> None:
        """Move a plan's stop and targets (/plan), in one transaction."""
        with transaction(self.engine) as session:
            plan = session.exec(select(TradePlan).where(TradePlan.signal_id == signal_id).with_for_update()).one()
            plan.stop, plan.take_profits, plan.trailing_stop, plan.updated_at = stop, take_profits, trailing_stop, at
            session.add(plan)

    def snapshot_equity(self, venue: str, currency: str, *, cash: Decimal, equity: Decimal, at: datetime) -> None:
        try:
            with transaction(self.engine) as session:
                session.add(EquitySnapshot(venue=venue, currency=currency, cash=cash, equity=equity, ts=at))
        except IntegrityError:
            pass  # this moment is already recorded (a re-run tick)

    def equity_history(self, venue: str | None = None) -> list[EquitySnapshot]:
        query = select(EquitySnapshot)
        if venue is not None:
            query = query.where(EquitySnapshot.venue == venue)
        with Session(self.engine) as session:
            return list(session.exec(query.order_by(col(EquitySnapshot.ts), col(EquitySnapshot.id))).all())
