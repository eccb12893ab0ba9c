"""Two ways to run scan jobs on the same triggers: live on APScheduler, or fast-forward on a
simulated clock.

A :class:`ScanJob` is an id, a trigger (see :mod:`scheduler.triggers`) and an ``async def`` taking
one :class:`ScanTick` (job id, scheduled fire time, bar close). :func:`build_scheduler` puts jobs on
an :class:`AsyncIOScheduler`; :class:`FastForwardDriver` asks the very same trigger objects for
their fire times and jumps a :class:`~venues.clock.SimulatedClock` from one to the next, so the
offline demo and backtests fire exactly when live would.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.util import iscoroutinefunction_partial

from scheduler.triggers import FireGrid
from venues.clock import Clock, ensure_utc

__all__ = [
    "SCAN_EXECUTOR",
    "Claim",
    "FastForwardDriver",
    "FireRecord",
    "ScanFunc",
    "ScanJob",
    "ScanTick",
    "build_scheduler",
    "check_unique_jobs",
    "make_tick",
    "misfire_grace",
]

logger = logging.getLogger(__name__)

SCAN_EXECUTOR = "scan"
"""Alias of the executor :func:`build_scheduler` registers for scan jobs."""


@dataclass(frozen=True, slots=True)
class ScanTick:
    """What a scan job is called with."""

    job_id: str
    fire_time: datetime
    """The scheduled fire time (UTC); with coalescing, the latest of the fires folded together."""
    bar_close: datetime
    """Close of the bar this fire is for (``fire_time - delay``): read bars up to here, no further."""


ScanFunc = Callable[[ScanTick], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ScanJob:
    """One scan per watchlist: ``await func(ScanTick(...))`` at each fire of ``trigger``.

    ``misfire_grace_time``: how late a run may start and still run (else it is recorded as missed);
    None means the default of :func:`misfire_grace` (half a bar, at least one second).
    """

    id: str
    trigger: BaseTrigger
    func: ScanFunc
    misfire_grace_time: timedelta | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("ScanJob.id must be a non-empty string")
        if not isinstance(self.trigger, BaseTrigger):
            raise TypeError(f"ScanJob.trigger must be an APScheduler trigger, got {self.trigger!r}")
        # APScheduler runs only these on the event loop; anything else would go to a thread pool
        # and its coroutine would never be awaited.
        if not iscoroutinefunction_partial(self.func):
            raise TypeError(
                f"ScanJob.func must be an 'async def' function (or a functools.partial of one), got {self.func!r}"
            )
        if self.misfire_grace_time is not None and self.misfire_grace_time < timedelta(seconds=1):
            raise ValueError(f"misfire_grace_time must be at least one second, got {self.misfire_grace_time}")

    def tick(self, fire_time: datetime) -> ScanTick:
        return make_tick(self.id, self.trigger, fire_time)


def make_tick(job_id: str, trigger: BaseTrigger, fire_time: datetime) -> ScanTick:
    """The tick for a fire; the bar close is the fire time for a trigger without ``bar_close``."""
    fire_time = ensure_utc(fire_time)
    bar_close = getattr(trigger, "bar_close", None)
    return ScanTick(job_id, fire_time, ensure_utc(bar_close(fire_time)) if bar_close else fire_time)


def misfire_grace(job: ScanJob) -> timedelta:
    """The job's grace, or half its bar (at least 1 s; 60 s for a trigger without ``every``), in
    whole seconds as APScheduler takes it, so the driver and the live scheduler agree exactly.

    A scan more than half a bar late is not worth starting: the next bar closes soon and is fresher.
    """
    grace = job.misfire_grace_time
    if grace is None:
        every = getattr(job.trigger, "every", None)
        grace = max(every / 2, timedelta(seconds=1)) if isinstance(every, timedelta) else timedelta(seconds=60)
    return timedelta(seconds=math.ceil(grace.total_seconds()))


# --------------------------------------------------------------------------------------------------
# live: APScheduler


_TICK_PLACEHOLDER = None
"""The job's one stored argument, replaced by the run's ScanTick (APScheduler checks at ``add_job``
that the function's parameters are all supplied, and a job store must be able to pickle them)."""


class _JobWithTick:
    """A view of an APScheduler Job whose one argument is the run's ScanTick."""

    def __init__(self, job: Any, tick: ScanTick) -> None:
        self._job = job
        self.args = (tick,)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


class ScanExecutor(AsyncIOExecutor):
    """AsyncIOExecutor that hands a scan job its :class:`ScanTick`.

    APScheduler 3 calls ``job.func(*job.args, **job.kwargs)`` and never passes the scheduled run
    time; this executor calls ``job.func(tick)`` instead, with the tick for the (coalesced, hence
    single) run time it is given. Only jobs added by :func:`build_scheduler` belong on it.
    """

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        run_time = run_times[-1]  # scan jobs always coalesce: one run, for the latest due time
        tick = make_tick(job.id, job.trigger, run_time)
        super()._do_submit_job(_JobWithTick(job, tick), [run_time])


def build_scheduler(jobs: Sequence[ScanJob], *, timezone: str = "UTC") -> AsyncIOScheduler:
    """An AsyncIOScheduler (not started: call ``start()`` inside the running event loop) with
    ``jobs`` added under their ids on the :data:`SCAN_EXECUTOR` executor.

    How APScheduler 3.11 runs them, checked against its source:

    * Arguments: APScheduler calls ``func(*args, **kwargs)`` and never passes the run time; our
      executor (:class:`ScanExecutor`) calls ``func(tick)`` with a :class:`ScanTick` (fire time
      and bar close) built from the scheduled run time.
    * Coroutine functions (``async def``, or a ``functools.partial`` of one) run as tasks on the
      scheduler's event loop, not in a thread; ``ScanJob`` refuses anything else.
    * ``max_instances=1``: one scan at a time per job. A fire that comes due while the previous run
      is still going is **skipped, not queued**: APScheduler logs a WARNING on
      ``apscheduler.scheduler`` ('Execution of job "..." skipped: maximum number of running
      instances reached (1)') and emits ``EVENT_JOB_MAX_INSTANCES`` (a ``JobSubmissionEvent``
      carrying the skipped ``scheduled_run_times``); the job runs again at its next fire after that.
    * ``coalesce=True``: when several fires are overdue at once (the loop was blocked, the machine
      slept), one run happens, for the latest of them.
    * ``misfire_grace_time`` (:func:`misfire_grace`: half a bar by default): a run starting later
      than that after its fire time is dropped with ``EVENT_JOB_MISSED`` and a WARNING on
      ``apscheduler.executors.scan`` ('Run time of job "..." was missed by ...').
    * A job that raises: APScheduler logs it (``apscheduler.executors.scan``), emits
      ``EVENT_JOB_ERROR`` with the exception, and the job keeps its schedule.
    * A trigger returning None (e.g. past the calendar's horizon) removes the job.
    """
    check_unique_jobs(jobs)
    scheduler = AsyncIOScheduler(
        timezone=timezone,
        executors={"default": AsyncIOExecutor(), SCAN_EXECUTOR: ScanExecutor()},
        job_defaults={"coalesce": True, "max_instances": 1},
    )
    for job in jobs:
        scheduler.add_job(
            job.func,
            trigger=job.trigger,
            args=(_TICK_PLACEHOLDER,),
            id=job.id,
            name=job.id,
            executor=SCAN_EXECUTOR,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(misfire_grace(job).total_seconds()),
            replace_existing=True,
        )
    return scheduler


def check_unique_jobs(jobs: Sequence[ScanJob]) -> None:
    """ValueError when two jobs share an id (the id keys their schedule and their fire log)."""
    seen: set[str] = set()
    for job in jobs:
        if job.id in seen:
            raise ValueError(f"duplicate scan job id {job.id!r}")
        seen.add(job.id)


# --------------------------------------------------------------------------------------------------
# simulated: fast-forward


@dataclass(frozen=True, slots=True)
class FireRecord:
    """One fire of one job under the :class:`FastForwardDriver`."""

    job_id: str
    fire_time: datetime
    """Scheduled fire time (the latest one when several were coalesced)."""
    bar_close: datetime
    started_at: datetime
    """Simulated clock when the job started: ``fire_time`` unless the clock had run past it."""
    result: Any = None
    error: BaseException | None = None
    coalesced: tuple[datetime, ...] = field(default=())
    """Earlier overdue fire times folded into this run (empty normally)."""
    missed: bool = False
    """True when the run was later than the job's misfire grace and so did not run."""
    unclaimed: bool = False
    """True when the driver's ``claim`` hook refused the fire (another process fired it, or this
    one no longer leads), so it did not run here."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missed and not self.unclaimed


OnFire = Callable[[FireRecord], Any]
Claim = Callable[[ScanJob, datetime], Awaitable[bool]]
"""``await claim(job, fire_time)`` just before a fire runs: True to run it, False to leave it."""


class FastForwardDriver:
    """Runs scan jobs on a :class:`SimulatedClock`, jumping from one fire time to the next; or on
    any other :class:`Clock`, waiting for each fire with ``clock.sleep_until`` (a
    :class:`~venues.clock.ScaledClock` sleeps the scaled real time: `tradeops run --replay`).

    Each job's next fire time is ``trigger.get_next_fire_time(previous fire, clock.now())``, asked
    of the same trigger objects the live scheduler uses and kept per job exactly as APScheduler
    keeps ``next_run_time``. The earliest fire runs next; on a tie the job registered first runs
    first. Jobs run one at a time and are awaited before the clock moves on.

    Jobs should not move the clock themselves; if one does, other jobs' overdue fires are handled as
    live handles them: coalesced into one run for the latest, dropped when later than the grace.

    A job that raises is logged with its id and recorded in its :class:`FireRecord`; the run goes on.
    """

    def __init__(
        self,
        clock: Clock,
        jobs: Sequence[ScanJob],
        *,
        since: datetime | None = None,
        resume_after: Mapping[str, datetime] | None = None,
        claim: Claim | None = None,
    ) -> None:
        """``since``: the moment the first fire times are counted from (default: the clock's now at
        the first look). A run that took a while to start passes its start, so a fire that came
        due meanwhile runs late (within its grace) instead of being skipped.

        ``resume_after``: {job id: a fire time}; that job's first fire is the first one strictly
        after it, even when that is already past (it then runs late, coalesced, or is missed, as
        any late fire): a new scheduler leader resumes each job after its last recorded fire.

        ``claim``: awaited just before each fire runs (after the misfire check); a fire it refuses
        is recorded ``unclaimed`` and not run. The leader's claim records the fire in the fire log,
        so one process runs it."""
        check_unique_jobs(jobs)
        self._clock = clock
        self._since = None if since is None else ensure_utc(since)
        self._resume_after = {job_id: ensure_utc(moment) for job_id, moment in (resume_after or {}).items()}
        self._claim = claim
        self._jobs = list(jobs)
        self._next: dict[str, datetime | None] = {}  # as APScheduler's next_run_time; None: finished
        self._graces: dict[str, timedelta] = {}  # misfire_grace per job id, kept until a reschedule
        self.records: list[FireRecord] = []
        """Every fire so far, in the order run."""

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def jobs(self) -> list[ScanJob]:
        return list(self._jobs)

    def _next_time(self, job: ScanJob) -> datetime | None:
        if job.id not in self._next:  # first look: computed from the clock, as APScheduler's start()
            previous = self._resume_after.get(job.id)
            now = self._clock.now() if previous is not None else self._since or self._clock.now()
            self._set_next(job, job.trigger.get_next_fire_time(previous, now))
        return self._next[job.id]

    def _set_next(self, job: ScanJob, moment: datetime | None) -> None:
        self._next[job.id] = None if moment is None else ensure_utc(moment)
        if moment is None:
            logger.info("scan job %s has no more fire times", job.id)

    def reschedule(self, job_id: str, trigger: BaseTrigger) -> datetime | None:
        """Give a job a new trigger (as APScheduler's ``reschedule_job``): its next fire is computed
        afresh from the clock's now; returns it (None: the trigger will not fire). Raises KeyError
        for an unknown job id."""
        index = next((i for i, job in enumerate(self._jobs) if job.id == job_id), None)
        if index is None:
            raise KeyError(f"no job {job_id!r}; jobs: {', '.join(j.id for j in self._jobs)}")
        job = replace(self._jobs[index], trigger=trigger)
        self._jobs[index] = job
        self._graces.pop(job_id, None)
        self._set_next(job, trigger.get_next_fire_time(None, self._clock.now()))
        return self._next[job.id]

    def next_fire(self) -> tuple[ScanJob, datetime] | None:
        """The job that fires next and its scheduled time, without running it; None when none will."""
        best: tuple[ScanJob, datetime] | None = None
        for job in self._jobs:  # registration order: a strict < keeps the first on a tie
            moment = self._next_time(job)
            if moment is not None and (best is None or moment < best[1]):
                best = (job, moment)
        return best

    def skip_before(self, moment: datetime) -> Sequence[datetime]:
        """Pass over every fire scheduled before ``moment`` without running it (a backtest knows
        nothing can happen there); returns the fire times passed over, in order (a
        :class:`~scheduler.triggers.FireGrid` for one job on an even grid, whose datetimes are made
        only when read). The clock does not move: the next :meth:`step` jumps to the first fire at
        or after ``moment``, which then runs on time, as does every later one. Only for jobs that
        never move the clock themselves."""
        moment = ensure_utc(moment)
        per_job: list[Sequence[datetime]] = []
        for job in self._jobs:
            upcoming = self._next_time(job)
            if upcoming is None or upcoming >= moment:
                continue
            trigger = job.trigger
            fires: Sequence[datetime] = [upcoming]
            # A trigger on an even grid (candle closes) lists the fires in one step, and its next
            # fire after them is the grid's next point.
            fire_times_before = getattr(trigger, "fire_times_before", None)
            if fire_times_before is not None:
                listed = fire_times_before(upcoming, moment)
                if isinstance(listed, FireGrid) and listed.first - upcoming == listed.every:
                    self._set_next(job, listed.first + listed.size * listed.every)
                    per_job.append(FireGrid(upcoming, listed.every, listed.size + 1))
                    continue
                fires = [upcoming, *listed]
                upcoming = ensure_utc(fires[-1])
            # As step() computes the fire after a run on time: now is that fire's time.
            later: list[datetime] = []
            while (upcoming := trigger.get_next_fire_time(upcoming, upcoming)) is not None and (
                upcoming := ensure_utc(upcoming)
            ) < moment:
                later.append(upcoming)
            self._set_next(job, upcoming)
            per_job.append([*fires, *later] if later else fires)
        if len(per_job) == 1:
            return per_job[0]
        return sorted(fire for fires in per_job for fire in fires)

    async def step(self) -> FireRecord | None:
        """Advance the clock to the next fire and run that one job; None when no job will fire."""
        upcoming = self.next_fire()
        if upcoming is None:
            return None
        job, scheduled = upcoming
        # A simulated clock jumps there; a scaled one sleeps until it is there (and may be a little past).
        await self._clock.sleep_until(scheduled)
        now = self._clock.now()

        # As APScheduler: every due fire up to now, coalesced into one run for the latest. The
        # first fire after now, where the loop stops, is the job's next fire.
        trigger = job.trigger
        due = [scheduled]
        while (following := trigger.get_next_fire_time(due[-1], now)) is not None and (
            following := ensure_utc(following)
        ) <= now:
            due.append(following)
        fire_time = due[-1]
        self._set_next(job, following)

        tick = job.tick(fire_time)
        result: Any = None
        error: BaseException | None = None
        missed = unclaimed = False
        lateness = now - fire_time
        if lateness > self._grace(job):
            logger.warning("scan job %s: run for %s missed by %s; skipped", job.id, fire_time.isoformat(), lateness)
            missed = True
        elif not await self._claimed(job, fire_time):
            unclaimed = True
        else:
            try:
                result = await job.func(tick)
            except Exception as exc:
                logger.exception("scan job %s failed at %s", job.id, fire_time.isoformat())
                error = exc
        record = FireRecord(
            job.id,
            fire_time,
            tick.bar_close,
            now,
            result=result,
            error=error,
            coalesced=tuple(due[:-1]),
            missed=missed,
            unclaimed=unclaimed,
        )
        self.records.append(record)
        return record

    def _grace(self, job: ScanJob) -> timedelta:
        grace = self._graces.get(job.id)
        if grace is None:
            grace = self._graces[job.id] = misfire_grace(job)
        return grace

    async def _claimed(self, job: ScanJob, fire_time: datetime) -> bool:
        if self._claim is None:
            return True
        try:
            return await self._claim(job, fire_time)
        except Exception:
            # Not knowing whether another process fired it, this one must not: a second run is worse.
            logger.exception("scan job %s: the fire at %s could not be claimed; not run", job.id, fire_time.isoformat())
            return False

    async def run_until(self, end: datetime, *, on_fire: OnFire | None = None) -> list[FireRecord]:
        """Run every fire up to and including ``end``; returns this call's records.

        The clock ends at ``end`` even when the last fire was earlier: simulated time passes whether
        or not anything fires, so approvals pending at the end can expire, a summary dated ``end``
        sees the whole window, and consecutive calls cover back-to-back windows without a gap or a
        double fire. (If a job moved the clock past ``end`` it stays there: it never goes back.)

        ``on_fire(record)`` is called after each fire and awaited when it returns an awaitable.
        """
        end = ensure_utc(end)
        if end < self._clock.now():
            raise ValueError(
                f"cannot run until {end.isoformat()}: the clock is already at {self._clock.now().isoformat()}"
            )
        records: list[FireRecord] = []
        while (upcoming := self.next_fire()) is not None and upcoming[1] <= end:
            record = await self.step()
            assert record is not None
            records.append(record)
            if on_fire is not None:
                outcome = on_fire(record)
                if inspect.isawaitable(outcome):
                    await outcome
        await self._clock.sleep_until(end)
        return records
