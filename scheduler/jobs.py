"""The scan job of each watchlist, built in one place for every driver (the demo's fast-forward,
`tradeops run`): the trigger of its venue's calendar, and a body that first does the tick (expire
approvals, fill orders, manage exits) and then scans, handing both results to the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from scheduler.driver import ScanJob, ScanTick
from scheduler.manage import PositionEvent
from scheduler.scan import Scanner, ScanReport, scan_interval
from scheduler.triggers import trigger_for
from storage.watchlists import WatchlistSpec

OnScan = Callable[[WatchlistSpec, ScanTick, list[PositionEvent], ScanReport], Awaitable[None]]
"""Called after each fire with the watchlist, the tick, the tick's position events and the scan's report."""


def watchlist_jobs(
    scanner: Scanner,
    watchlists: Sequence[WatchlistSpec],
    calendar_of: Callable[[str], str],
    on_scan: OnScan,
    *,
    trigger: str = "schedule",
) -> list[ScanJob]:
    """One :class:`ScanJob` per watchlist, with the id of its name and the trigger of its venue's
    calendar (``calendar_of(venue name)``: "XSHG", "XNYS", "24/7") at its :func:`scan_interval`.
    ``trigger`` is what the scan runs record as their cause."""

    def job_for(watchlist: WatchlistSpec) -> ScanJob:
        async def job(tick: ScanTick) -> None:
            events = await scanner.tick([watchlist.venue])
            report = await scanner.scan(watchlist, trigger=trigger)
            await on_scan(watchlist, tick, events, report)

        calendar = calendar_of(watchlist.venue)
        return ScanJob(id=watchlist.name, trigger=trigger_for(calendar, scan_interval(watchlist, calendar)), func=job)

    return [job_for(w) for w in watchlists]
