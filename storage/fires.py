"""The fire log: one row per fire of a scheduled job (table ``scan_fires``), unique on (job id,
scheduled fire time).

Several `tradeops run` processes may share one database; one of them leads and fires the jobs
(scheduler/leader.py). Before a fire runs it is claimed here, and the unique constraint decides:
exactly one claimer of a (job, fire time) gets True, on SQLite and PostgreSQL alike, even when two
processes both believe they lead for a moment. A new leader resumes each job after its last
recorded fire (:meth:`FireLog.last_fire`), so a fire that came due while nobody led is not lost.

Also here: the deployment's identity, a random id stored once in the database (``kv``), which
names the leader lock so two deployments sharing one Redis never share a leader, while every
process of one deployment agrees on it whatever host name or URL it reaches the database by.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from storage.db import transaction
from storage.signals import SignalStore
from storage.tables import ScanFire

DEPLOYMENT_KEY = "deployment"  # kv: {"id": 32 hex digits}
JOB_ID_MAX = 100  # ScanFire.job_id's length
FIRED_BY_MAX = 200
RETENTION = timedelta(days=7)
"""How long fires are kept (:meth:`FireLog.prune`); each job's latest is always kept."""


class FireLog:
    """The ``scan_fires`` table. Synchronous (a SQLAlchemy engine): call from a thread in async code."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, job_id: str, fire_time: datetime, *, fired_at: datetime, fired_by: str) -> bool:
        """Record that ``fired_by`` ("host:pid") fires job ``job_id`` for the scheduled
        ``fire_time`` (aware; stored as UTC), at ``fired_at`` (the clock's now). True for exactly one
        caller per (job id, fire time) across every process on the database; every other caller
        gets False (an ``INSERT ... ON CONFLICT DO NOTHING`` on the unique constraint: no error,
        nothing written). ValueError for an empty or too long job id, or a naive time; database
        errors (the server gone) propagate."""
        if not job_id or len(job_id) > JOB_ID_MAX:
            raise ValueError(f"job id must be 1 to {JOB_ID_MAX} characters, got {job_id[:120]!r}")
        values = {
            "job_id": job_id,
            "fire_time": fire_time,
            "fired_at": fired_at,
            "fired_by": fired_by[:FIRED_BY_MAX],
        }
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(ScanFire)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[col(ScanFire.job_id), col(ScanFire.fire_time)])
            .returning(col(ScanFire.id))  # a row back: inserted (rowcount is -1 on psycopg with RETURNING)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def last_fire(self, job_id: str) -> datetime | None:
        """The latest scheduled fire time recorded for ``job_id`` (UTC), or None when it never fired."""
        with Session(self.engine) as session:
            # max() keeps the column's type, so the value comes back through UTCDateTime: aware UTC.
            return session.scalar(select(func.max(col(ScanFire.fire_time))).where(col(ScanFire.job_id) == job_id))

    def fires(self, job_id: str | None = None) -> list[ScanFire]:
        """Recorded fires (of one job, or all), oldest fire time first."""
        query = select(ScanFire).order_by(col(ScanFire.fire_time), col(ScanFire.id))
        if job_id is not None:
            query = query.where(col(ScanFire.job_id) == job_id)
        with Session(self.engine) as session:
            return list(session.scalars(query).all())

    def prune(self, before: datetime) -> int:
        """Delete fires scheduled before ``before``, except each job's latest (what a new leader
        resumes from); returns how many were deleted."""
        later = aliased(ScanFire)
        newer_exists = (
            select(col(later.id))
            .where(col(later.job_id) == col(ScanFire.job_id), col(later.fire_time) > col(ScanFire.fire_time))
            .exists()
        )
        with transaction(self.engine) as session:
            result = session.execute(delete(ScanFire).where(col(ScanFire.fire_time) < before, newer_exists))
            return int(getattr(result, "rowcount", 0) or 0)


def deployment_id(engine: Engine, *, at: datetime) -> str:
    """This database's deployment id (32 hex digits), created by the first process that asks
    (``at``: its clock's now) and the same for every later one: first writer wins."""
    stored = SignalStore(engine).set_value_if_absent(DEPLOYMENT_KEY, {"id": uuid.uuid4().hex}, at=at)
    return str(stored["id"])
