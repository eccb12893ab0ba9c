"""The scheduler's leader: of any number of `tradeops run` processes on one deployment, one fires
the scheduled jobs; when it dies another takes over within the lease, and no fire runs twice.

- **The lease** (:class:`RedisLease`): redis-py's asyncio ``Lock`` with a ``timeout`` (the lease),
  taken with ``SET NX PX`` and renewed and released by its token-checked Lua scripts, so a process
  can only renew or release the lock while it still holds it. Its key names the deployment
  (:func:`leader_key`, from the id stored in the database: storage/fires.py), so two deployments on
  one Redis never share a leader. Its value is ``host:pid/<random>``: ``GET`` it to see who leads.
- **Leadership** (:class:`LeaderScheduler`): a process campaigns (tries the lock) every
  ``lease / 3``; the holder renews every ``lease / 3``. It stops acting as leader *before* its lease
  could have expired: it keeps a monotonic deadline, the start of its last successful renewal plus
  the lease minus a margin (a fifth of the lease), and when a renewal fails (Redis gone, the lock
  lost) and the deadline passes, it stops firing, logs why and campaigns again. Redis counts the
  lease from when it ran the command, which is after we sent it, so our deadline is always earlier.
- **Firing** reuses :class:`~scheduler.driver.FastForwardDriver` (next fire times, coalescing,
  misfire grace, on any :class:`~venues.clock.Clock`: the real one live, the ScaledClock of
  ``--replay``). On becoming leader each job resumes after its last recorded fire: a fire that came
  due while nobody led runs now when within the job's misfire grace (several are coalesced into
  the latest), older ones are logged as missed; a job never fired starts from now. Before a fire
  runs it is claimed in the fire log (storage/fires.py); only a claimed fire runs, so even two
  processes that both believe they lead for a moment run each fire once.

Jobs run one at a time, as on replay (with the Celery executor a job only hands its scan to a
worker). A job that raises is logged and leadership goes on. When leadership ends, no new fire
starts; a fire already running finishes (it holds its claim). Stopping releases the lock at once, so
another process takes over without waiting for the lease to run out.

How `tradeops run` is meant to use it (instead of APScheduler / its own fast-forward loop, when
several processes share the database)::

    key = leader_key(deployment_id(engine, at=clock.now()))
    lease = RedisLease.from_url(redis_url, key, settings.leader_lease, holder=process_identity())
    leader = LeaderScheduler(jobs, clock=clock, lease=lease, fires=FireLog(engine),
                             on_leadership=start_or_stop_polling_transports, since=started)
    drive = asyncio.create_task(leader.run(stop))  # the summary's new times: leader.reschedule(...)
    ...                                            # on stop: wait for drive within the grace, cancel
    await lease.aclose()

Not here: a PostgreSQL advisory lock behind the same :class:`Lease` interface. Such a lock lives as
long as its connection, and the server notices a dead client only through TCP keepalives (two hours
by default), so "another takes over within the lease" would need server settings we do not control.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from apscheduler.triggers.base import BaseTrigger
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.backoff import NoBackoff
from redis.exceptions import LockNotOwnedError
from redis.retry import Retry

from scheduler.driver import FastForwardDriver, OnFire, ScanJob, check_unique_jobs, misfire_grace
from storage.fires import RETENTION, FireLog
from venues.clock import Clock, ensure_utc
from venues.metrics import metrics

__all__ = [
    "LeaderScheduler",
    "Lease",
    "RedisLease",
    "leader_key",
    "process_identity",
]

log = logging.getLogger(__name__)

MIN_LEASE_SECONDS = 0.5  # the setting allows 3 s and up; tests use a second or two
RENEWALS_PER_LEASE = 3  # renew (and campaign) every lease / 3
MARGIN_FRACTION = 0.2  # stop leading a fifth of the lease before it could expire
PRUNE_EVERY = timedelta(days=1)  # of the scheduler's clock: how often the leader prunes the fire log

OnLeadership = Callable[[bool], Awaitable[None] | None]


def leader_key(deployment: str) -> str:
    """The Redis key of a deployment's scheduler lock (``deployment``: storage.fires.deployment_id)."""
    return f"tradeops:{deployment}:scheduler:leader"


def process_identity() -> str:
    """``host:pid``: who fired a scan (the fire log), who holds the lock (its value)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease(Protocol):
    """A lock that expires unless renewed. Connection errors propagate from every method."""

    key: str
    seconds: float

    async def acquire(self) -> bool:
        """Take the lock when it is free (or still ours); True when held, for ``seconds`` from now."""
        ...

    async def renew(self) -> bool:
        """Hold it ``seconds`` more from now; False when it is no longer ours (expired, taken)."""
        ...

    async def release(self) -> None:
        """Let go now, when it is still ours; nothing when it is not."""
        ...


class RedisLease:
    """:class:`Lease` on a Redis key, through redis-py's asyncio ``Lock`` (its token-checked
    ``SET NX PX`` / Lua extend and release). ``client`` is the caller's (see :meth:`from_url`)."""

    def __init__(self, client: Redis, key: str, seconds: float, *, holder: str) -> None:
        if not seconds >= MIN_LEASE_SECONDS:  # NaN too
            raise ValueError(f"a lease must be at least {MIN_LEASE_SECONDS} s, got {seconds}")
        self.client = client
        self.key = key
        self.seconds = seconds
        self.holder = holder
        # thread_local=False: the token belongs to this object, whichever task renews it.
        self._lock = Lock(client, key, timeout=seconds, blocking=False, thread_local=False)

    @classmethod
    def from_url(cls, url: str, key: str, seconds: float, *, holder: str) -> RedisLease:
        """A lease on its own client for ``url``; close it with :meth:`aclose`. Each command gives up
        after a third of the lease, and is not retried by the client: the scheduler retries."""
        timeout = seconds / RENEWALS_PER_LEASE
        client = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        return cls(client, key, seconds, holder=holder)

    @property
    def _token(self) -> bytes | None:
        token: bytes | None = self._lock.local.token
        return token

    async def acquire(self) -> bool:
        if self._token is not None and await self.renew():
            return True  # still ours: a renewal whose answer was lost, Redis back within the lease
        token = f"{self.holder}/{uuid.uuid4().hex}"
        return bool(await self._lock.acquire(blocking=False, token=token))

    async def renew(self) -> bool:
        if self._token is None:
            return False
        try:
            await self._lock.reacquire()  # PEXPIRE to the full lease, only when the key holds our token
        except LockNotOwnedError:
            self._lock.local.token = None
            return False
        return True

    async def release(self) -> None:
        if self._token is None:
            return
        with contextlib.suppress(LockNotOwnedError):  # expired or taken meanwhile: nothing to let go
            await self._lock.release()

    async def holder_now(self) -> str | None:
        """Who holds the key now (its value), or None when nobody does."""
        value = await self.client.get(self.key)
        if value is None:
            return None
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

    async def aclose(self) -> None:
        await self.client.aclose()


def _problem(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class LeaderScheduler:
    """Fire ``jobs`` on ``clock`` while this process holds ``lease``; campaign while it does not.

    ``fires``: the fire log (claims, last fires). ``holder``: who this process is (default
    ``host:pid``). ``on_leadership(held)``: called (awaited when it returns an awaitable) when this
    process becomes leader and when it stops being one, to start and stop what only the leader
    runs (polling chat transports, the Discord gateway); the gauge ``tradeops_scheduler_leader`` is
    kept true too. ``on_fire(record)``: after each fire (its :class:`FireRecord`). ``since``: the
    first leadership counts never-fired jobs' first fires from here (the run's start) rather than
    from now. ``renew_every`` / ``poll_every``: seconds (default ``lease / 3``).
    """

    def __init__(
        self,
        jobs: Sequence[ScanJob],
        *,
        clock: Clock,
        lease: Lease,
        fires: FireLog,
        holder: str | None = None,
        on_leadership: OnLeadership | None = None,
        on_fire: OnFire | None = None,
        since: datetime | None = None,
        renew_every: float | None = None,
        poll_every: float | None = None,
    ) -> None:
        check_unique_jobs(jobs)
        self._jobs = list(jobs)
        self._clock = clock
        self._lease = lease
        self._fires = fires
        self.holder = holder or process_identity()
        self._on_leadership = on_leadership
        self._on_fire = on_fire
        self._since = None if since is None else ensure_utc(since)
        self._renew_every = renew_every if renew_every is not None else lease.seconds / RENEWALS_PER_LEASE
        self._poll_every = poll_every if poll_every is not None else lease.seconds / RENEWALS_PER_LEASE
        self._margin = lease.seconds * MARGIN_FRACTION
        if self._renew_every >= lease.seconds - self._margin:
            raise ValueError(f"renew_every ({self._renew_every} s) must be well under the lease ({lease.seconds} s)")
        self.is_leader = False
        self._deadline = 0.0  # time.monotonic(): acting as leader only before this
        self._lost = asyncio.Event()
        self._wake = asyncio.Event()  # a job was rescheduled: the fire loop looks again
        self._driver: FastForwardDriver | None = None
        self._pruned_at: datetime | None = None
        self._fire_problem: str | None = None  # why the last leadership could not fire, logged once

    @property
    def jobs(self) -> list[ScanJob]:
        return list(self._jobs)

    def reschedule(self, job_id: str, trigger: BaseTrigger) -> None:
        """Give a job a new trigger (the daily summary's times changed); its next fire is counted
        from now. KeyError for an unknown job id."""
        index = next((i for i, job in enumerate(self._jobs) if job.id == job_id), None)
        if index is None:
            raise KeyError(f"no job {job_id!r}; jobs: {', '.join(j.id for j in self._jobs)}")
        self._jobs[index] = replace(self._jobs[index], trigger=trigger)
        if self._driver is not None:
            self._driver.reschedule(job_id, trigger)
            self._wake.set()

    def leading_now(self) -> bool:
        """True while this process may act as leader: it holds the lease and its deadline is ahead."""
        return self.is_leader and not self._lost.is_set() and time.monotonic() < self._deadline

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign, lead, campaign again... until ``stop`` is set; the lock is released at once
        then. A fire running when ``stop`` comes runs on (the caller may cancel this call to end
        it); the lock is released before that wait."""
        problem: str | None = None  # the last campaign's failure, logged once per outage
        try:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    held = await asyncio.wait_for(self._lease.acquire(), self._poll_every)
                except Exception as exc:
                    held = False
                    if _problem(exc) != problem:
                        problem = _problem(exc)
                        log.warning("cannot reach the scheduler's lock %s (%s); trying again", self._lease.key, problem)
                else:
                    if problem is not None:
                        log.info("the scheduler's lock %s answers again", self._lease.key)
                        problem = None
                if held and not stop.is_set():  # (taken just as the stop came: the finally releases it)
                    await self._lead(stop, deadline=sent + self._lease.seconds - self._margin)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_every)
        finally:
            await self._release()

    async def _release(self) -> None:
        try:
            await asyncio.wait_for(self._lease.release(), self._renew_every)
        except Exception as exc:
            problem = _problem(exc)
            log.warning("could not release the scheduler's lock %s (%s): it will expire", self._lease.key, problem)

    async def _lead(self, stop: asyncio.Event, *, deadline: float) -> None:
        self._deadline = deadline
        self._lost = asyncio.Event()
        self.is_leader = True
        metrics().set_scheduler_leader(True)
        log.info("%s leads the scheduler (lock %s, lease %g s)", self.holder, self._lease.key, self._lease.seconds)
        keeper = asyncio.create_task(self._keep())  # renews while the callback below starts things
        stopping = asyncio.create_task(stop.wait())
        firing: asyncio.Task[None] | None = None
        try:
            # Announced before any fire, and so before the announcement that it ended: in this order.
            await self._announce(True)
            firing = asyncio.create_task(self._fire_while_leading())
            await asyncio.wait({keeper, firing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if firing is not None:
                firing.cancel()  # the caller gave up waiting (a stop's grace ran out): end the fire in flight
            raise
        finally:
            self._lost.set()  # no fire starts from here on
            self.is_leader = False
            metrics().set_scheduler_leader(False)
            keeper.cancel()
            stopping.cancel()
        failed = firing.exception() if firing.done() and not firing.cancelled() else None
        if stopping.done():
            await self._release()  # at once: the next leader need not wait for the lease to run out
            log.info("stopping: the scheduler's lock is released")
        elif failed is not None:  # the fire loop failed (the database gone): let a process that can, lead
            if _problem(failed) != self._fire_problem:  # the traceback once per outage, not every poll
                self._fire_problem = _problem(failed)
                log.error("the scheduler stopped firing (%s); releasing its lock", self._fire_problem, exc_info=failed)
            await self._release()
        else:
            why = keeper.result() if keeper.done() else "its deadline passed before a renewal"
            log.warning("this process no longer leads the scheduler: %s; campaigning again", why)
        await self._announce(False)
        try:
            await firing  # a fire in flight finishes, holding its claim; nothing new starts
        except Exception:
            pass  # logged above
        finally:
            self._driver = None

    async def _keep(self) -> str:
        """Renew the lease every ``renew_every`` until it cannot be kept; returns why."""
        next_at = self._deadline - self._lease.seconds + self._margin + self._renew_every
        problem = "the event loop was blocked past the deadline"
        warned = False
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                return f"the lease could not be renewed before it could expire ({problem})"
            sent = time.monotonic()
            try:
                renewed = await asyncio.wait_for(self._lease.renew(), remaining)
            except Exception as exc:
                problem = _problem(exc)
                if not warned:
                    warned = True
                    log.warning("could not renew the scheduler's lock (%s); retrying for %.1f s", problem, remaining)
                next_at = time.monotonic() + self._renew_every / RENEWALS_PER_LEASE
                continue
            if not renewed:
                return "the lock expired or another process holds it"
            if warned:
                log.info("the scheduler's lock is renewed again")
                warned = False
            self._deadline = sent + self._lease.seconds - self._margin
            next_at = sent + self._renew_every

    async def _announce(self, held: bool) -> None:
        if self._on_leadership is None:
            return
        try:
            outcome = self._on_leadership(held)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("on_leadership(%s) failed", held)

    async def _fire_while_leading(self) -> None:
        driver = self._driver = await self._resumed_driver()
        self._fire_problem = None
        while self.leading_now():
            await self._prune()
            upcoming = driver.next_fire()
            waits: set[asyncio.Task[object]] = {
                asyncio.create_task(self._lost.wait()),
                asyncio.create_task(self._wake.wait()),
            }
            if upcoming is not None:
                waits.add(asyncio.create_task(self._clock.sleep_until(upcoming[1])))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
            if self._wake.is_set():
                self._wake.clear()
                continue  # rescheduled: look again (a fire due now runs on the next turn)
            if not self.leading_now():
                return
            record = await driver.step()
            if record is not None and self._on_fire is not None:
                try:
                    outcome = self._on_fire(record)
                    if inspect.isawaitable(outcome):
                        await outcome
                except Exception:
                    log.exception("on_fire failed for %s at %s", record.job_id, record.fire_time.isoformat())

    async def _resumed_driver(self) -> FastForwardDriver:
        """A driver whose jobs resume after their last recorded fires (see the module's doc)."""
        jobs = list(self._jobs)
        last = await asyncio.to_thread(lambda: {job.id: self._fires.last_fire(job.id) for job in jobs})
        now = self._clock.now()
        resume: dict[str, datetime] = {}
        for job in jobs:
            previous = last[job.id]
            if previous is None:
                continue  # never fired: from now (or the run's start), as a fresh start does
            horizon = now - misfire_grace(job)
            first_due = job.trigger.get_next_fire_time(previous, now)
            if first_due is not None and ensure_utc(first_due) < horizon:
                log.warning(
                    "scan job %s: fires from %s to before %s came due while no process led and are later "
                    "than the misfire grace (%s): missed",
                    job.id,
                    ensure_utc(first_due).isoformat(),
                    horizon.isoformat(),
                    misfire_grace(job),
                )
                previous = horizon - timedelta(microseconds=1)  # the next fire is the first within grace
            resume[job.id] = previous
        since, self._since = self._since, None  # the run's start counts for the first leadership only
        return FastForwardDriver(self._clock, jobs, since=since, resume_after=resume, claim=self._claim)

    async def _claim(self, job: ScanJob, fire_time: datetime) -> bool:
        if not self.leading_now():
            log.info("scan job %s: fire at %s not run: this process no longer leads", job.id, fire_time.isoformat())
            return False
        claimed = await asyncio.to_thread(
            self._fires.claim, job.id, fire_time, fired_at=self._clock.now(), fired_by=self.holder
        )
        if not claimed:
            log.info("scan job %s: fire at %s was already fired by another process", job.id, fire_time.isoformat())
        return claimed

    async def _prune(self) -> None:
        now = self._clock.now()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            deleted = await asyncio.to_thread(self._fires.prune, now - RETENTION)
        except Exception as exc:
            log.warning("could not prune the fire log (%s)", _problem(exc))
            return
        if deleted:
            log.info("fire log: %d fires older than %s pruned", deleted, RETENTION)
