"""Signals, their status history and approvals, decision traces, scan runs, the audit log and the
small key-value settings. Every method is one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, and_, exists, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from storage.db import transaction
from storage.tables import (
    Approval,
    AuditEntry,
    DecisionTrace,
    KeyValue,
    ScanRun,
    SignalRow,
    SignalStatusChange,
)

KILL_SWITCH_KEY = "kill_switch"  # {"paused": bool, "by": actor, "reason": str}
RISK_TRACE_NODE = "risk"  # the decision trace of the risk gate, written when a walk ends
CLOCK_KEY = "clock"  # {"mode": "simulated", "now": ISO time}: the demo's clock, for later sessions


ORDER_NOTE_PREFIX = "order_note:"


class SignalStatus(StrEnum):
    HOLD = "hold"  # the policy wanted nothing
    ABSTAINED = "abstained"  # the policy could not decide
    BLOCKED = "blocked"  # the risk gate said no
    PENDING = "pending"  # waiting for a human (or an auto-approve rule, or expiry)
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    EXECUTED = "executed"  # the paper order was placed
    ABORTED = "aborted"  # approved, but drift or risk stopped it at execution
    FAILED = "failed"  # an error; the reason says which

    @property
    def final(self) -> bool:
        return self not in (SignalStatus.PENDING, SignalStatus.APPROVED)


DECISIONS = {"approved": SignalStatus.APPROVED, "rejected": SignalStatus.REJECTED, "expired": SignalStatus.EXPIRED}


@dataclass(frozen=True)
class DecisionOutcome:
    won: bool  # this caller's answer is the one that counts
    decision: str  # the decision that counts (this caller's, or the earlier one)
    actor: str
    decided_at: datetime


class SignalStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- signals ---

    def create(self, row: SignalRow, *, actor: str = "system", reason: str = "") -> tuple[SignalRow, bool]:
        """Insert a signal with its first status; an id that exists returns the stored one."""
        try:
            with transaction(self.engine) as session:
                session.add(row)
                session.flush()
                session.add(
                    SignalStatusChange(
                        signal_id=row.id, to_status=row.status, actor=actor, reason=reason[:500], at=row.created_at
                    )
                )
        except IntegrityError:
            existing = self.get(row.id)
            if existing is None:
                raise
            return existing, False
        return row, True

    def get(self, signal_id: str) -> SignalRow | None:
        with Session(self.engine) as session:
            return session.get(SignalRow, signal_id)

    def set_status(
        self,
        signal_id: str,
        status: SignalStatus,
        *,
        at: datetime,
        actor: str = "system",
        reason: str = "",
        updates: dict[str, Any] | None = None,
    ) -> SignalRow:
        """Move a signal to ``status``; the same status again changes nothing (node re-runs)."""
        with transaction(self.engine) as session:
            row = session.get(SignalRow, signal_id, with_for_update=True)
            if row is None:
                raise KeyError(f"no signal {signal_id!r}")
            for key, value in (updates or {}).items():
                setattr(row, key, value)
            if row.status != status.value:
                session.add(
                    SignalStatusChange(
                        signal_id=signal_id,
                        from_status=row.status,
                        to_status=status.value,
                        actor=actor,
                        reason=reason[:500],
                        at=at,
                    )
                )
                row.status = status.value
            row.updated_at = at
            session.add(row)
            return row

    def history(self, signal_id: str) -> list[SignalStatusChange]:
        with Session(self.engine) as session:
            query = select(SignalStatusChange).where(SignalStatusChange.signal_id == signal_id)
            return list(session.exec(query.order_by(col(SignalStatusChange.id))).all())

    def recent(
        self,
        *,
        status: SignalStatus | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        without: tuple[SignalStatus, ...] = (),
    ) -> list[SignalRow]:
        """The newest signals first; ``without``: statuses left out (HOLD rows in a listing)."""
        query = self._filtered(select(SignalRow), status, since, without)
        query = query.order_by(col(SignalRow.created_at).desc(), col(SignalRow.id)).offset(offset).limit(limit)
        with Session(self.engine) as session:
            return list(session.exec(query).all())

    def count(
        self,
        *,
        status: SignalStatus | None = None,
        since: datetime | None = None,
        without: tuple[SignalStatus, ...] = (),
    ) -> int:
        """How many signals ``recent`` pages through with the same filters."""
        query = self._filtered(select(func.count()).select_from(SignalRow), status, since, without)
        with Session(self.engine) as session:
            return int(session.exec(query).one())

    @staticmethod
    def _filtered(
        query: Any, status: SignalStatus | None, since: datetime | None, without: tuple[SignalStatus, ...]
    ) -> Any:
        if status is not None:
            query = query.where(SignalRow.status == status.value)
        if since is not None:
            query = query.where(col(SignalRow.created_at) >= since)
        if without:
            query = query.where(col(SignalRow.status).not_in([s.value for s in without]))
        return query

    def pending_for(self, venue: str, symbol: str, *, now: datetime) -> SignalRow | None:
        """The signal on ``venue`` and ``symbol`` that waits for an answer, if any (the newest). One
        whose window has closed does not count: it is expired, whether or not a sweep said so yet."""
        query = select(SignalRow).where(
            SignalRow.venue == venue,
            SignalRow.symbol == symbol,
            SignalRow.status == SignalStatus.PENDING.value,
            or_(col(SignalRow.expires_at).is_(None), col(SignalRow.expires_at) > now),
        )
        with Session(self.engine) as session:
            return session.exec(query.order_by(col(SignalRow.created_at).desc()).limit(1)).first()

    def due_for_expiry(self, now: datetime) -> list[SignalRow]:
        query = select(SignalRow).where(
            SignalRow.status == SignalStatus.PENDING.value, col(SignalRow.expires_at) <= now
        )
        with Session(self.engine) as session:
            return list(session.exec(query.order_by(col(SignalRow.expires_at))).all())

    def counts(self, *, since: datetime | None = None) -> dict[str, int]:
        query = select(SignalRow.status)
        if since is not None:
            query = query.where(col(SignalRow.created_at) >= since)
        out: dict[str, int] = {}
        with Session(self.engine) as session:
            for status in session.exec(query).all():
                out[status] = out.get(status, 0) + 1
        return out

    # --- approvals: first answer wins ---

    def decide(self, signal_id: str, decision: str, *, actor: str, at: datetime, reason: str = "") -> DecisionOutcome:
        """Record the decision on a pending signal. The approvals table holds one row per signal,
        so of any number of concurrent answers (any process) exactly one wins."""
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}; valid: {', '.join(DECISIONS)}")
        try:
            with transaction(self.engine) as session:
                row = session.get(SignalRow, signal_id, with_for_update=True)
                if row is None:
                    raise KeyError(f"no signal {signal_id!r}")
                if row.status != SignalStatus.PENDING.value:
                    return self._earlier(session, signal_id, row)
                session.add(
                    Approval(signal_id=signal_id, decision=decision, actor=actor, reason=reason[:500], decided_at=at)
                )
                session.add(
                    SignalStatusChange(
                        signal_id=signal_id,
                        from_status=row.status,
                        to_status=DECISIONS[decision].value,
                        actor=actor,
                        reason=reason[:500],
                        at=at,
                    )
                )
                row.status = DECISIONS[decision].value
                row.updated_at = at
                session.add(row)
        except IntegrityError:
            with Session(self.engine) as session:
                row = session.get(SignalRow, signal_id)
                assert row is not None
                return self._earlier(session, signal_id, row)
        return DecisionOutcome(won=True, decision=decision, actor=actor, decided_at=at)

    def approval(self, signal_id: str) -> Approval | None:
        with Session(self.engine) as session:
            return session.exec(select(Approval).where(Approval.signal_id == signal_id)).first()

    @staticmethod
    def _earlier(session: Session, signal_id: str, row: SignalRow) -> DecisionOutcome:
        approval = session.exec(select(Approval).where(Approval.signal_id == signal_id)).first()
        if approval is None:  # final without a human decision: blocked, hold, failed
            return DecisionOutcome(won=False, decision=row.status, actor="system", decided_at=row.updated_at)
        return DecisionOutcome(
            won=False, decision=approval.decision, actor=approval.actor, decided_at=approval.decided_at
        )

    def awaiting_resume(self) -> list[SignalRow]:
        """Decided, but the walk did not end: the process stopped between recording the decision
        and finishing the resume. Approved signals are then neither executed, aborted nor failed;
        rejected and expired ones (whose status is final at once) have no ``risk`` trace, which the
        graph's last step writes for every signal that reached an approval. The runner resumes
        these threads at start."""
        walk_ended = exists().where(
            col(DecisionTrace.signal_id) == col(SignalRow.id), col(DecisionTrace.node) == RISK_TRACE_NODE
        )
        refused = [SignalStatus.REJECTED.value, SignalStatus.EXPIRED.value]
        query = select(SignalRow).where(
            or_(
                col(SignalRow.status) == SignalStatus.APPROVED.value,
                and_(col(SignalRow.status).in_(refused), ~walk_ended),
            )
        )
        with Session(self.engine) as session:
            return list(session.exec(query.order_by(col(SignalRow.updated_at), col(SignalRow.id))).all())

    # --- traces, scans, audit ---

    def add_trace(self, trace: DecisionTrace) -> None:
        with transaction(self.engine) as session:
            session.add(trace)

    def traces(self, signal_id: str) -> list[DecisionTrace]:
        with Session(self.engine) as session:
            query = select(DecisionTrace).where(DecisionTrace.signal_id == signal_id)
            return list(session.exec(query.order_by(col(DecisionTrace.id))).all())

    def start_scan(self, run: ScanRun) -> ScanRun:
        with transaction(self.engine) as session:
            session.add(run)
            session.flush()
            session.refresh(run)
            return run

    def finish_scan(self, run_id: int, *, at: datetime, status: str, **counts: int | str) -> None:
        with transaction(self.engine) as session:
            run = session.get(ScanRun, run_id)
            if run is None:
                raise KeyError(f"no scan run {run_id}")
            for key, value in counts.items():
                setattr(run, key, value)
            run.status = status
            run.finished_at = at
            session.add(run)

    def scans(self, *, limit: int = 20) -> list[ScanRun]:
        with Session(self.engine) as session:
            return list(session.exec(select(ScanRun).order_by(col(ScanRun.id).desc()).limit(limit)).all())

    def audit(
        self, actor: str, action: str, *, at: datetime, target: str = "", detail: dict[str, Any] | None = None
    ) -> None:
        with transaction(self.engine) as session:
            session.add(AuditEntry(actor=actor, action=action, target=target[:128], detail=detail or {}, ts=at))

    def audit_log(self, *, limit: int = 50) -> list[AuditEntry]:
        with Session(self.engine) as session:
            return list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)).all())

    # --- key-value ---

    def get_value(self, key: str) -> dict[str, Any] | None:
        with Session(self.engine) as session:
            row = session.get(KeyValue, key)
            return dict(row.value) if row else None

    def set_value(self, key: str, value: dict[str, Any], *, at: datetime) -> None:
        with transaction(self.engine) as session:
            row = session.get(KeyValue, key, with_for_update=True)
            if row is None:
                session.add(KeyValue(key=key, value=value, updated_at=at))
            else:
                row.value = value
                row.updated_at = at
                session.add(row)

    def set_order_note(self, client_order_id: str, note: str, *, at: datetime) -> None:
        """Who asked for an order and why, in words (``manual close by telegram:1002``): kept beside
        the broker's own reason, which says how it filled or why it was refused."""
        self.set_value(ORDER_NOTE_PREFIX + client_order_id, {"note": note[:200]}, at=at)

    def order_notes(self) -> dict[str, str]:
        """Client order id -> its note, for every order that has one."""
        query = select(KeyValue).where(col(KeyValue.key).startswith(ORDER_NOTE_PREFIX, autoescape=True))
        with Session(self.engine) as session:
            return {
                row.key.removeprefix(ORDER_NOTE_PREFIX): str(row.value.get("note", ""))
                for row in session.exec(query).all()
            }

    def set_value_if_absent(self, key: str, value: dict[str, Any], *, at: datetime) -> dict[str, Any]:
        """Store ``value`` unless the key exists; return what is stored (first writer wins)."""
        try:
            with transaction(self.engine) as session:
                if (row := session.get(KeyValue, key)) is not None:
                    return dict(row.value)
                session.add(KeyValue(key=key, value=value, updated_at=at))
        except IntegrityError:
            stored = self.get_value(key)
            assert stored is not None
            return stored
        return value


def decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
