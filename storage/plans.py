"""Trade plans (how each executed signal's position is managed) and equity snapshots."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from operator import itemgetter

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.db import insert_rows, transaction
from storage.tables import EquitySnapshot, TradePlan


class PlanStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # (venue, currency) -> ts -> (cash, equity) while a backtest holds its snapshots back.
        self._held: dict[tuple[str, str], dict[datetime, tuple[Decimal, Decimal]]] | None = None

    def hold_equity(self) -> None:
        """Keep equity snapshots in memory until :meth:`flush_equity` (a backtest: one write for
        the run instead of one per fire); :meth:`equity_history` flushes first."""
        if self._held is None:
            self._held = {}

    def flush_equity(self) -> None:
        """Write the held snapshots in one transaction and stop holding them back."""
        held, self._held = self._held, None
        if held:
            rows = [
                {"venue": v, "currency": c, "cash": cash, "equity": equity, "ts": at}
                for (v, c), points in held.items()
                for at, (cash, equity) in points.items()
            ]
            with transaction(self.engine) as session:
                insert_rows(session, EquitySnapshot, rows)

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
        if self._held is not None:
            self._held.setdefault((venue, currency), {}).setdefault(at, (cash, equity))  # the first of a moment stays
            return
        try:
            with transaction(self.engine) as session:
                session.add(EquitySnapshot(venue=venue, currency=currency, cash=cash, equity=equity, ts=at))
        except IntegrityError:
            pass  # this moment is already recorded (a re-run tick)

    def snapshot_equity_many(self, venue: str, currency: str, points: list[tuple[datetime, Decimal, Decimal]]) -> None:
        """Many (at, cash, equity) snapshots in one transaction: a backtest's equity at the fires it
        passed over. All or nothing; a moment already recorded raises IntegrityError (kept as it
        was while snapshots are held back)."""
        if self._held is not None:
            held = self._held.setdefault((venue, currency), {})
            fresh = {at: (cash, equity) for at, cash, equity in points}
            if not held.keys().isdisjoint(fresh):
                fresh = {at: point for at, point in fresh.items() if at not in held}  # the first of a moment stays
            held.update(fresh)
            return
        if not points:
            return
        with transaction(self.engine) as session:
            # One executemany, not an ORM object per row.
            insert_rows(
                session,
                EquitySnapshot,
                [
                    {"venue": venue, "currency": currency, "cash": cash, "equity": equity, "ts": at}
                    for at, cash, equity in points
                ],
            )

    def equity_curve(self, venue: str, currency: str, *, stored: bool = True) -> list[tuple[datetime, Decimal]]:
        """(ts, equity) of ``venue``'s ``currency`` snapshots in time order, held ones included:
        the plain rows a backtest's metrics need, without an ORM object per point. ``stored=False``:
        the held ones only, the database not read (a backtest's, created for the run, holds none)."""
        if not stored:
            return sorted(self._held_points(venue, currency), key=itemgetter(0))
        query = (
            select(col(EquitySnapshot.ts), col(EquitySnapshot.equity))
            .where(EquitySnapshot.venue == venue, EquitySnapshot.currency == currency)
            .order_by(col(EquitySnapshot.ts), col(EquitySnapshot.id))
        )
        with Session(self.engine) as session:
            rows = [(ts, equity) for ts, equity in session.exec(query).all()]
        if not self._held:
            return rows
        return sorted(rows + self._held_points(venue, currency), key=itemgetter(0))  # a stored point first on a tie

    def _held_points(self, venue: str, currency: str) -> list[tuple[datetime, Decimal]]:
        points = (self._held or {}).get((venue, currency), {})
        return [(at, equity) for at, (_, equity) in points.items()]

    def equity_history(self, venue: str | None = None) -> list[EquitySnapshot]:
        if self._held is not None:
            self.flush_equity()
            self.hold_equity()
        query = select(EquitySnapshot)
        if venue is not None:
            query = query.where(EquitySnapshot.venue == venue)
        with Session(self.engine) as session:
            return list(session.exec(query.order_by(col(EquitySnapshot.ts), col(EquitySnapshot.id))).all())
