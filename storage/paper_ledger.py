"""The database-backed PaperLedger: the paper broker's orders, fills, positions and cash."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from storage.db import insert_rows, transaction
from storage.tables import CashEntry, FillRow, OrderRow, PositionRow
from venues.models import ZERO, Fill, Liquidity, Order, OrderStatus, OrderType, Position, Side, built, with_changes
from venues.paper import StaleOrderError

INITIAL_DEPOSIT_REF = "initial"
# Cash entries of a position's carry (paid: amount < 0, received: > 0), ref "<symbol>@<ISO time>".
CARRY_KINDS = ("funding", "borrow")


def _order_from_row(row: OrderRow) -> Order:
    return Order(
        client_order_id=row.client_order_id,
        venue=row.venue,
        symbol=row.symbol,
        side=Side(row.side),
        type=OrderType(row.type),
        qty=row.qty,
        limit_price=row.limit_price,
        stop_price=row.stop_price,
        trail=row.trail,
        parent=row.parent,
        collar_low=row.collar_low,
        collar_high=row.collar_high,
        status=OrderStatus(row.status),
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        filled_qty=row.filled_qty,
        avg_fill_price=row.avg_fill_price,
        fees=row.fees,
        signal_id=row.signal_id,
        filled_at=row.filled_at,
        checked_until=row.checked_until,
        triggered_at=row.triggered_at,
    )


def _copy_order_into(row: OrderRow, order: Order) -> None:
    """What may change on a stored order: its state, and the quantity, stop and limit of a resting
    order (a bracket child is clipped, a stop or a target moved); never what identifies the request."""
    row.status = order.status.value
    row.reason = order.reason[:500]
    row.qty = order.qty
    row.stop_price = order.stop_price
    row.limit_price = order.limit_price
    row.trail = order.trail
    row.filled_qty = order.filled_qty
    row.avg_fill_price = order.avg_fill_price
    row.fees = order.fees
    row.updated_at = order.updated_at
    row.filled_at = order.filled_at
    row.checked_until = order.checked_until
    row.triggered_at = order.triggered_at


def _fill_from_row(row: FillRow) -> Fill:
    return Fill(
        client_order_id=row.client_order_id,
        venue=row.venue,
        symbol=row.symbol,
        side=Side(row.side),
        qty=row.qty,
        price=row.price,
        fee=row.fee,
        liquidity=Liquidity(row.liquidity),
        ts=row.ts,
        trade_day=row.trade_day,
    )


def _position_from_row(row: PositionRow) -> Position:
    return Position(
        venue=row.venue,
        symbol=row.symbol,
        qty=row.qty,
        avg_cost=row.avg_cost,
        realized_pnl=row.realized_pnl,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
    )


class SqlPaperLedger:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def order(self, client_order_id: str) -> Order | None:
        with Session(self._engine) as session:
            row = session.exec(select(OrderRow).where(OrderRow.client_order_id == client_order_id)).first()
            return _order_from_row(row) if row else None

    def add_order(self, order: Order) -> tuple[Order, bool]:
        row = OrderRow(
            client_order_id=order.client_order_id,
            venue=order.venue,
            symbol=order.symbol,
            side=order.side.value,
            type=order.type.value,
            qty=order.qty,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            trail=order.trail,
            parent=order.parent,
            collar_low=order.collar_low,
            collar_high=order.collar_high,
            status=order.status.value,
            reason=order.reason[:500],
            filled_qty=order.filled_qty,
            avg_fill_price=order.avg_fill_price,
            fees=order.fees,
            signal_id=order.signal_id,
            created_at=order.created_at,
            updated_at=order.updated_at,
            filled_at=order.filled_at,
            checked_until=order.checked_until,
            triggered_at=order.triggered_at,
        )
        try:
            with transaction(self._engine) as session:
                session.add(row)
        except IntegrityError:
            # The unique client_order_id lost a race with another writer: theirs is the order.
            existing = self.order(order.client_order_id)
            if existing is None:
                raise
            return existing, False
        return order, True

    def update_order(self, order: Order) -> None:
        with transaction(self._engine) as session:
            self._begin_writing(session)
            row = self._order_row(session, order.client_order_id, for_update=True)
            if row.status != OrderStatus.PENDING.value and row.status != order.status.value:
                raise StaleOrderError(f"order {order.client_order_id} is already {row.status}")
            _copy_order_into(row, order)
            session.add(row)

    def update_pending(self, orders: Sequence[Order]) -> None:
        with transaction(self._engine) as session:
            self._begin_writing(session)
            for order in orders:
                row = self._order_row(session, order.client_order_id, for_update=True)
                if row.status == OrderStatus.PENDING.value:
                    _copy_order_into(row, order)
                    session.add(row)

    def orders(self, venue: str, status: OrderStatus | None = None) -> list[Order]:
        query = select(OrderRow).where(OrderRow.venue == venue)
        if status is not None:
            query = query.where(OrderRow.status == status.value)
        with Session(self._engine) as session:
            rows = session.exec(query.order_by(col(OrderRow.id))).all()
            return [_order_from_row(r) for r in rows]

    def children(self, parent: str) -> list[Order]:
        with Session(self._engine) as session:
            rows = session.exec(select(OrderRow).where(OrderRow.parent == parent).order_by(col(OrderRow.id))).all()
            return [_order_from_row(r) for r in rows]

    def fills(self, venue: str, client_order_id: str | None = None) -> list[Fill]:
        query = select(FillRow).where(FillRow.venue == venue)
        if client_order_id is not None:
            query = query.where(FillRow.client_order_id == client_order_id)
        with Session(self._engine) as session:
            return [_fill_from_row(r) for r in session.exec(query.order_by(col(FillRow.id))).all()]

    def position(self, venue: str, symbol: str) -> Position | None:
        with Session(self._engine) as session:
            row = self._position_row(session, venue, symbol)
            return _position_from_row(row) if row else None

    def positions(self, venue: str) -> list[Position]:
        with Session(self._engine) as session:
            rows = session.exec(select(PositionRow).where(PositionRow.venue == venue).order_by(col(PositionRow.symbol)))
            return [_position_from_row(r) for r in rows.all()]

    def cash(self, venue: str, currency: str) -> Decimal:
        with Session(self._engine) as session:
            return self._balance(session, venue, currency)

    def deposited(self, venue: str, currency: str) -> Decimal:
        query = select(col(CashEntry.amount)).where(
            CashEntry.venue == venue, CashEntry.currency == currency, CashEntry.kind == "deposit"
        )
        with Session(self._engine) as session:
            # Summed here, not by SQL: SQLite's SUM() of these would be a float.
            return sum(session.exec(query).all(), ZERO)

    def fund(self, venue: str, currency: str, amount: Decimal, ts: datetime) -> None:
        with transaction(self._engine) as session:
            self._lock_cash(session, venue, currency)
            if not self._entry_exists(session, venue, currency, "deposit", INITIAL_DEPOSIT_REF):
                balance = self._balance(session, venue, currency) + amount
                session.add(
                    CashEntry(
                        venue=venue,
                        currency=currency,
                        amount=amount,
                        balance_after=balance,
                        kind="deposit",
                        ref=INITIAL_DEPOSIT_REF,
                        ts=ts,
                    )
                )

    def record_fill(
        self, order: Order, fill: Fill, position: Position, currency: str, *, trade_amount: Decimal | None = None
    ) -> None:
        with transaction(self._engine) as session:
            self._lock_cash(session, fill.venue, currency)
            row = self._order_row(session, order.client_order_id, for_update=True)
            if row.status != OrderStatus.PENDING.value:
                # Another process filled or cancelled it first; writing again would double-count.
                raise StaleOrderError(f"order {order.client_order_id} is no longer pending ({row.status})")
            pos_row = self._position_row(session, position.venue, position.symbol)
            held = pos_row.qty if pos_row else ZERO
            held_before = position.qty - fill.qty if fill.side is Side.BUY else position.qty + fill.qty
            if held != held_before:
                # Another process filled on this position since the broker read it; writing the
                # position it computed would lose that fill.
                raise StaleOrderError(f"position in {position.symbol} changed to {held} while the fill was priced")
            _copy_order_into(row, order)
            session.add(row)
            session.add(
                FillRow(
                    client_order_id=fill.client_order_id,
                    venue=fill.venue,
                    symbol=fill.symbol,
                    side=fill.side.value,
                    qty=fill.qty,
                    price=fill.price,
                    fee=fill.fee,
                    liquidity=fill.liquidity.value,
                    trade_day=fill.trade_day,
                    ts=fill.ts,
                )
            )
            pos_row = pos_row or PositionRow(venue=position.venue, symbol=position.symbol, updated_at=order.updated_at)
            pos_row.qty = position.qty
            pos_row.avg_cost = position.avg_cost
            pos_row.realized_pnl = position.realized_pnl
            pos_row.opened_at = position.opened_at
            pos_row.updated_at = position.updated_at or order.updated_at
            session.add(pos_row)
            notional = fill.qty * fill.price
            balance = self._balance(session, fill.venue, currency)
            if trade_amount is None:
                trade_amount = -notional if fill.side is Side.BUY else notional
            for kind, amount in ((fill.side.value, trade_amount), ("fee", -fill.fee)):
                if amount == 0:
                    continue
                balance += amount
                session.add(
                    CashEntry(
                        venue=fill.venue,
                        currency=currency,
                        amount=amount,
                        balance_after=balance,
                        kind=kind,
                        ref=fill.client_order_id,
                        ts=fill.ts,
                    )
                )
            if fill.side is Side.BUY and balance < 0:
                # The broker checked a balance that another process's fill has spent since.
                raise StaleOrderError(f"cash {currency} would go to {balance} by the fill of {order.client_order_id}")

    def last_carry(self, venue: str, symbol: str, currency: str) -> datetime | None:
        with Session(self._engine) as session:
            return session.exec(
                select(col(CashEntry.ts))
                .where(
                    CashEntry.venue == venue,
                    CashEntry.currency == currency,
                    col(CashEntry.kind).in_(CARRY_KINDS),
                    col(CashEntry.ref).startswith(f"{symbol}@", autoescape=True),
                )
                .order_by(col(CashEntry.ts).desc())
                .limit(1)
            ).first()

    def charge_carry(self, venue: str, symbol: str, currency: str, amount: Decimal, *, kind: str, at: datetime) -> bool:
        if kind not in CARRY_KINDS:
            raise ValueError(f"unknown carry kind {kind!r}; valid: {', '.join(CARRY_KINDS)}")
        ref = f"{symbol}@{at.isoformat()}"
        with transaction(self._engine) as session:
            self._lock_cash(session, venue, currency)
            if self._entry_exists(session, venue, currency, kind, ref):
                return False
            balance = self._balance(session, venue, currency) - amount
            session.add(
                CashEntry(
                    venue=venue, currency=currency, amount=-amount, balance_after=balance, kind=kind, ref=ref, ts=at
                )
            )
            pos_row = self._position_row(session, venue, symbol)
            if pos_row is not None:
                pos_row.realized_pnl = pos_row.realized_pnl - amount
                session.add(pos_row)
        return True

    def bought_on(self, venue: str, symbol: str, trade_day: str) -> Decimal:
        with Session(self._engine) as session:
            rows = session.exec(
                select(col(FillRow.qty)).where(
                    FillRow.venue == venue,
                    FillRow.symbol == symbol,
                    FillRow.side == Side.BUY.value,
                    FillRow.trade_day == trade_day,
                )
            ).all()
            return sum(rows, ZERO)

    # --- helpers ---

    @staticmethod
    def _begin_writing(session: Session) -> None:
        """SQLite allows one writer at a time, but its driver only begins the transaction at the
        first INSERT or UPDATE: the reads before it (is the order still pending? the balance?)
        would see a state another process can change before we write. BEGIN IMMEDIATE takes the
        write lock first, waiting out the busy timeout if another process holds it."""
        if session.get_bind().dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")

    @classmethod
    def _lock_cash(cls, session: Session, venue: str, currency: str) -> None:
        """Serialise writers of one cash ledger, and of the positions it pays for, across processes:
        each entry carries the running balance, so two interleaved writers would both compute from
        the same previous balance."""
        if session.get_bind().dialect.name == "postgresql":
            lock = text("SELECT pg_advisory_xact_lock(hashtext(:key))")
            session.connection().execute(lock, {"key": f"cash:{venue}:{currency}"})
        else:
            cls._begin_writing(session)

    @staticmethod
    def _order_row(session: Session, client_order_id: str, *, for_update: bool = False) -> OrderRow:
        query = select(OrderRow).where(OrderRow.client_order_id == client_order_id)
        row = session.exec(query.with_for_update() if for_update else query).first()
        if row is None:
            raise KeyError(f"no order {client_order_id!r}")
        return row

    @staticmethod
    def _position_row(session: Session, venue: str, symbol: str) -> PositionRow | None:
        return session.exec(select(PositionRow).where(PositionRow.venue == venue, PositionRow.symbol == symbol)).first()

    @staticmethod
    def _entry_exists(session: Session, venue: str, currency: str, kind: str, ref: str) -> bool:
        """Whether the cash ledger holds an entry of ``kind`` with ``ref``: what makes a deposit or a
        carry charge happen once, whichever process gets there first."""
        query = select(CashEntry.id).where(
            CashEntry.venue == venue, CashEntry.currency == currency, CashEntry.kind == kind, CashEntry.ref == ref
        )
        return session.exec(query).first() is not None

    @staticmethod
    def _balance(session: Session, venue: str, currency: str) -> Decimal:
        # The last entry carries the running balance: exact on SQLite, where SUM() would be a float.
        last = session.exec(
            select(col(CashEntry.balance_after))
            .where(CashEntry.venue == venue, CashEntry.currency == currency)
            .order_by(col(CashEntry.id).desc())
            .limit(1)
        ).first()
        return last if last is not None else ZERO


def _stored(order: Order) -> Order:
    """``order`` as the database keeps it (its reason cut to the column's 500 characters)."""
    return order if len(order.reason) <= 500 else with_changes(order, {"reason": order.reason[:500]})


class RunPaperLedger:
    """A backtest's PaperLedger: the state lives in memory for the run and is written to the
    database once, by :meth:`flush`, in one transaction. It keeps the SQL ledger's rules (one order
    per client order id, a stored order changes only while pending, a fill against a position or
    cash that changed is refused, a deposit and each carry charge happen once, the running cash
    balance) so the broker behaves exactly as on :class:`SqlPaperLedger`. Only for a database that
    one process owns for the whole run and that holds no paper state yet (a fresh backtest one):
    nothing else sees the state before the flush."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._orders: dict[str, Order] = {}  # insertion order is id order
        self._pending: dict[str, None] = {}  # the pending ones' ids, in id order: read at every fire
        self._children: dict[str, list[str]] = {}  # parent id -> its children's ids, in id order
        self._fills: list[Fill] = []
        self._positions: dict[tuple[str, str], Position] = {}
        self._cash: list[_CashMove] = []
        # Running answers to what the broker asks at every fire (the SQL ledger's queries over
        # the entries): balance and deposits per (venue, currency), the entries' (venue,
        # currency, kind, ref) keys, the last carry per (venue, currency, symbol), and the
        # quantity bought per (venue, symbol, trade day).
        self._balance_of: dict[tuple[str, str], Decimal] = {}
        self._deposited: dict[tuple[str, str], Decimal] = {}
        self._entry_keys: set[tuple[str, str, str, str]] = set()
        self._last_carry: dict[tuple[str, str, str], datetime] = {}
        self._bought: dict[tuple[str, str, str], Decimal] = {}
        self._flushed = False
        # Bumped by every change: the broker reuses what it computed from this ledger (an account
        # at one moment) while the version is the same. No other process writes here meanwhile.
        self.version = 0

    # Orders and positions are frozen models: what is stored is handed out as it is, no copy.

    def order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def add_order(self, order: Order) -> tuple[Order, bool]:
        existing = self._orders.get(order.client_order_id)
        if existing is not None:
            return existing, False
        self._orders[order.client_order_id] = _stored(order)
        self.version += 1
        if order.parent is not None:
            self._children.setdefault(order.parent, []).append(order.client_order_id)
        if order.status is OrderStatus.PENDING:
            self._pending[order.client_order_id] = None
        return order, True

    def _row(self, client_order_id: str) -> Order:
        try:
            return self._orders[client_order_id]
        except KeyError:
            raise KeyError(f"no order {client_order_id!r}") from None

    def _update(self, order: Order) -> None:
        row = self._row(order.client_order_id)
        # with_changes(row, {the mutable fields of order, its reason cut}), in one dict copy: the
        # stored order takes them at every fill and every matching pass.
        fields = row.__dict__.copy()
        given = order.__dict__
        for name in _MUTABLE_ORDER_FIELDS:
            fields[name] = given[name]
        fields["reason"] = order.reason[:500]
        self._orders[order.client_order_id] = built(type(row), fields, row.__pydantic_fields_set__ | _STORED_CHANGES)
        self.version += 1
        if order.status is not OrderStatus.PENDING:
            self._pending.pop(order.client_order_id, None)

    def update_order(self, order: Order) -> None:
        row = self._row(order.client_order_id)
        if row.status is not OrderStatus.PENDING and row.status is not order.status:
            raise StaleOrderError(f"order {order.client_order_id} is already {row.status.value}")
        self._update(order)

    def update_pending(self, orders: Sequence[Order]) -> None:
        for order in orders:
            if self._row(order.client_order_id).status is OrderStatus.PENDING:
                self._update(order)

    def orders(self, venue: str, status: OrderStatus | None = None) -> list[Order]:
        if status is OrderStatus.PENDING:
            # A loop, not a comprehension (a call of its own): asked several times per fire, mostly of none.
            pending = []
            for coid in self._pending:
                order = self._orders[coid]
                if order.venue == venue:
                    pending.append(order)
            return pending
        return [o for o in self._orders.values() if o.venue == venue and (status is None or o.status is status)]

    def children(self, parent: str) -> list[Order]:
        return [self._orders[coid] for coid in self._children.get(parent, ())]

    def fills(self, venue: str, client_order_id: str | None = None) -> list[Fill]:
        return [
            f
            for f in self._fills
            if f.venue == venue and (client_order_id is None or f.client_order_id == client_order_id)
        ]

    def position(self, venue: str, symbol: str) -> Position | None:
        return self._positions.get((venue, symbol))

    def positions(self, venue: str) -> list[Position]:
        held = []
        for (v, _), position in sorted(self._positions.items()):
            if v == venue:
                held.append(position)
        return held

    def cash(self, venue: str, currency: str) -> Decimal:
        return self._balance_of.get((venue, currency), ZERO)

    def _entry(self, venue: str, currency: str, amount: Decimal, kind: str, ref: str, ts: datetime) -> None:
        balance = self.cash(venue, currency) + amount
        self._cash.append(_CashMove(venue, currency, amount, balance, kind, ref, ts))
        self.version += 1
        self._balance_of[(venue, currency)] = balance
        self._entry_keys.add((venue, currency, kind, ref))
        if kind == "deposit":
            self._deposited[(venue, currency)] = self._deposited.get((venue, currency), ZERO) + amount

    def _entry_exists(self, venue: str, currency: str, kind: str, ref: str) -> bool:
        return (venue, currency, kind, ref) in self._entry_keys

    def fund(self, venue: str, currency: str, amount: Decimal, ts: datetime) -> None:
        if not self._entry_exists(venue, currency, "deposit", INITIAL_DEPOSIT_REF):
            self._entry(venue, currency, amount, "deposit", INITIAL_DEPOSIT_REF, ts)

    def deposited(self, venue: str, currency: str) -> Decimal:
        return self._deposited.get((venue, currency), ZERO)

    def record_fill(
        self, order: Order, fill: Fill, position: Position, currency: str, *, trade_amount: Decimal | None = None
    ) -> None:
        # Every check before any write: all or nothing, as the SQL ledger's transaction.
        row = self._row(order.client_order_id)
        if row.status is not OrderStatus.PENDING:
            raise StaleOrderError(f"order {order.client_order_id} is no longer pending ({row.status.value})")
        stored = self._positions.get((position.venue, position.symbol))
        held = stored.qty if stored else ZERO
        held_before = position.qty - fill.qty if fill.side is Side.BUY else position.qty + fill.qty
        if held != held_before:
            raise StaleOrderError(f"position in {position.symbol} changed to {held} while the fill was priced")
        if trade_amount is None:
            notional = fill.qty * fill.price
            trade_amount = -notional if fill.side is Side.BUY else notional
        fee = -fill.fee
        # The entries that move cash (none for a zero amount), summed from zero as they are added.
        moved = ZERO
        if trade_amount:
            moved += trade_amount
        if fee:
            moved += fee
        balance = self.cash(fill.venue, currency) + moved
        if fill.side is Side.BUY and balance < 0:
            raise StaleOrderError(f"cash {currency} would go to {balance} by the fill of {order.client_order_id}")
        self._update(order)
        self._fills.append(fill)
        if fill.side is Side.BUY:
            bought = (fill.venue, fill.symbol, fill.trade_day)
            self._bought[bought] = self._bought.get(bought, ZERO) + fill.qty
        if position.updated_at is None:
            position = with_changes(position, {"updated_at": order.updated_at})
        self._positions[(position.venue, position.symbol)] = position
        if trade_amount:
            self._entry(fill.venue, currency, trade_amount, fill.side.value, fill.client_order_id, fill.ts)
        if fee:
            self._entry(fill.venue, currency, fee, "fee", fill.client_order_id, fill.ts)

    def last_carry(self, venue: str, symbol: str, currency: str) -> datetime | None:
        return self._last_carry.get((venue, currency, symbol))

    def charge_carry(self, venue: str, symbol: str, currency: str, amount: Decimal, *, kind: str, at: datetime) -> bool:
        if kind not in CARRY_KINDS:
            raise ValueError(f"unknown carry kind {kind!r}; valid: {', '.join(CARRY_KINDS)}")
        ref = f"{symbol}@{at.isoformat()}"
        if self._entry_exists(venue, currency, kind, ref):
            return False
        self._entry(venue, currency, -amount, kind, ref, at)
        last = self._last_carry.get((venue, currency, symbol))
        self._last_carry[(venue, currency, symbol)] = at if last is None else max(last, at)
        position = self._positions.get((venue, symbol))
        if position is not None:
            self._positions[(venue, symbol)] = with_changes(position, {"realized_pnl": position.realized_pnl - amount})
        return True

    def bought_on(self, venue: str, symbol: str, trade_day: str) -> Decimal:
        return self._bought.get((venue, symbol, trade_day), ZERO)

    def flush(self) -> None:
        """Write the run's orders, fills, positions and cash entries to the database, in one
        transaction; once (a second call raises RuntimeError: the rows would be written twice)."""
        if self._flushed:
            raise RuntimeError("this run's paper ledger is already written to the database")
        # One executemany per table, orders first (fills refer to them), not an ORM object per row.
        tables: list[tuple[Any, list[dict[str, Any]]]] = [
            (OrderRow, [_order_row_fields(o) for o in self._orders.values()]),
            (FillRow, [_fill_row_fields(f) for f in self._fills]),
            (PositionRow, [_position_row_fields(p) for p in self._positions.values()]),
            (CashEntry, [e._asdict() for e in self._cash]),
        ]
        with transaction(self._engine) as session:
            for table, rows in tables:
                insert_rows(session, table, rows)
        self._flushed = True


class _CashMove(NamedTuple):
    """A cash entry of the run, as :class:`CashEntry` stores it."""

    venue: str
    currency: str
    amount: Decimal
    balance_after: Decimal
    kind: str
    ref: str
    ts: datetime


_MUTABLE_ORDER_FIELDS = (
    "status",
    "qty",
    "stop_price",
    "limit_price",
    "trail",
    "filled_qty",
    "avg_fill_price",
    "fees",
    "updated_at",
    "filled_at",
    "checked_until",
    "triggered_at",
)
"""What may change on a stored order (as :func:`_copy_order_into`), besides its reason."""
_STORED_CHANGES = frozenset((*_MUTABLE_ORDER_FIELDS, "reason"))
"""The fields an update marks as set on the stored order (as ``with_changes`` marks its changes)."""


def _columns(row: type[SQLModel], model: type[BaseModel]) -> tuple[str, ...]:
    """The columns of ``row`` that ``model`` has a field for (the id is the database's)."""
    return tuple(name for name in row.model_fields if name != "id" and name in model.model_fields)


# Plain attribute reads per row, not a model_dump: a run flushes thousands of rows at once.
_POSITION_COLUMNS = _columns(PositionRow, Position)
_FILL_COLUMNS = _columns(FillRow, Fill)
_ORDER_COLUMNS = _columns(OrderRow, Order)


def _position_row_fields(position: Position) -> dict[str, Any]:
    assert position.updated_at is not None  # record_fill sets it
    return {name: getattr(position, name) for name in _POSITION_COLUMNS}


def _fill_row_fields(fill: Fill) -> dict[str, Any]:
    fields = {name: getattr(fill, name) for name in _FILL_COLUMNS}
    fields.update(side=fill.side.value, liquidity=fill.liquidity.value)
    return fields


def _order_row_fields(order: Order) -> dict[str, Any]:
    fields = {name: getattr(order, name) for name in _ORDER_COLUMNS}
    fields.update(side=order.side.value, type=order.type.value, status=order.status.value)
    return fields
