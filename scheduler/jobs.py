"""The scan job of each watchlist, built in one place for every driver (the demo's fast-forward,
`tradeops run`): the trigger of its venue's calendar, and a body that hands the fire to an
executor (scheduler/executor.py): in process, it first does the tick (expire approvals, fill
orders, manage exits) and then scans, handing both results to the caller; on Celery, it queues the
scan. And the daily summary's job: a daily trigger at local wall-clock times."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import time, timedelta

from scheduler.driver import ScanJob, ScanTick
from scheduler.executor import Executor, InProcessExecutor
from scheduler.executor import OnScan as OnScan
from scheduler.scan import Scanner, scan_interval
from scheduler.triggers import DailyTrigger, trigger_for
from storage.watchlists import WatchlistSpec

SUMMARY_JOB = "daily:summary"  # not a watchlist name (those have no ':'), so never a clash
SUMMARY_GRACE = timedelta(hours=6)
"""How late a summary may still go out: a scan running over its time (at a high replay speed, a
simulated hour or more) delays it, and a late summary is still worth sending, unlike a late scan."""

DRIFT_JOB = "daily:drift"


def watchlist_jobs(
    scanner: Scanner,
    watchlists: Sequence[WatchlistSpec],
    calendar_of: Callable[[str], str],
    on_scan: OnScan,
    *,
    trigger: str = "schedule",
) -> list[ScanJob]:
    """:func:`executor_jobs` on the in-process executor: each fire ticks, scans and calls
    ``on_scan`` (with the watchlist, the tick, the tick's position events and the scan's report)."""
    return executor_jobs(InProcessExecutor(scanner, on_scan), watchlists, calendar_of, trigger=trigger)


def executor_jobs(
    executor: Executor,
    watchlists: Sequence[WatchlistSpec],
    calendar_of: Callable[[str], str],
    *,
    trigger: str = "schedule",
) -> list[ScanJob]:
    """One :class:`ScanJob` per watchlist, with the id of its name and the trigger of its venue's
    calendar (``calendar_of(venue name)``: "XSHG", "XNYS", "24/7") at its :func:`scan_interval`,
    each fire handed to ``executor.run_scan``. ``trigger`` is what the scan runs record as their cause."""

    def job_for(watchlist: WatchlistSpec) -> ScanJob:
        async def job(tick: ScanTick) -> None:
            await executor.run_scan(watchlist, tick, trigger=trigger)

        calendar = calendar_of(watchlist.venue)
        return ScanJob(id=watchlist.name, trigger=trigger_for(calendar, scan_interval(watchlist, calendar)), func=job)

    return [job_for(w) for w in watchlists]


def summary_job(times: Iterable[time], timezone: str, func: Callable[[ScanTick], Awaitable[None]]) -> ScanJob:
    """The daily summary's job: ``func(tick)`` every day at each of ``times`` in ``timezone`` (an
    IANA name), with a grace of :data:`SUMMARY_GRACE`."""
    return ScanJob(id=SUMMARY_JOB, trigger=DailyTrigger(times, timezone), func=func, misfire_grace_time=SUMMARY_GRACE)


def drift_job(at: time, timezone: str, func: Callable[[ScanTick], Awaitable[None]]) -> ScanJob:
    """The daily drift check of the promoted model: ``func(tick)`` every day at ``at`` in
    ``timezone``, with the summary's grace (a late check is still worth running)."""
    return ScanJob(id=DRIFT_JOB, trigger=DailyTrigger([at], timezone), func=func, misfire_grace_time=SUMMARY_GRACE)
