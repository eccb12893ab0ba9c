"""`tradeops run` with the Celery executor: any number of processes on one database, one leader.

Every process serves what any process may serve: `/healthz`, `/readyz`, `/metrics`, and Telegram
in webhook mode (Telegram delivers each update to the one webhook URL; whichever process behind it
takes the request answers it). Only the leader of the scheduler's lease (scheduler/leader.py: a
Redis lock with a lease, fires claimed in the database's fire log) fires the scheduled jobs, which
with this executor only queue scans for `tradeops worker` processes, and runs the transports that
must have a single receiver: Telegram long polling (a second poller gets 409 Conflict) and the
Discord gateway (one connection per bot). They are built and started when this process becomes
leader and stopped when it stops being one, before its lease could run out, so the next leader's
poller never meets this one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from apscheduler.triggers.base import BaseTrigger

from bot.services import Services
from bot.settings import Settings
from bot.transport import RequestStop, Transport, TransportError
from scheduler.driver import ScanJob
from scheduler.jobs import SUMMARY_JOB
from scheduler.leader import LeaderScheduler, RedisLease, leader_key, process_identity
from storage.fires import FireLog, deployment_id
from venues.clock import Clock

log = logging.getLogger("tradeops.run")

TransportFactory = Callable[[Settings, Services], Sequence[Transport]]


async def finish_within(task: asyncio.Task[None], grace: float, what: str) -> None:
    """Give ``task`` (the scheduling loop, stop already set) ``grace`` seconds to finish what it
    runs; then cancel it (``what`` names it in the warning)."""
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        log.warning("%s was still running after %s s; cancelled", what, grace)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def single_receiver(transport: Transport) -> bool:
    """True for a transport of which one process at a time may take updates (Telegram polling,
    the Discord gateway); False for one any process may serve (Telegram's webhook)."""
    return bool(getattr(transport, "single_receiver", True))


IN_PROCESS_RUN_HOLDS = (
    "an in-process tradeops run (TRADEOPS_EXECUTOR=inprocess) holds this database; stop it first: "
    "processes of one deployment must all use TRADEOPS_EXECUTOR=celery"
)


class LeaderTransports:
    """The single-receiver transports of this process while it leads: ``await self(True)`` builds
    and starts them (one that cannot start is logged and left out until the next leadership),
    ``await self(False)`` stops them. ``started``: the running list the run's fanout sends to;
    they are added to and removed from it."""

    def __init__(
        self,
        settings: Settings,
        services: Services,
        make_transports: TransportFactory,
        started: list[Transport],
        request_stop: RequestStop,
        stop_transports: Callable[[Sequence[Transport]], object],
    ) -> None:
        self.settings = settings
        self.services = services
        self.make_transports = make_transports
        self.started = started
        self.request_stop = request_stop
        self.stop_transports = stop_transports
        self.mine: list[Transport] = []

    async def __call__(self, leading: bool) -> None:
        if leading:
            for transport in self.make_transports(self.settings, self.services):
                if not single_receiver(transport):
                    continue  # already started by the run, in every process
                try:
                    await transport.start(self.request_stop)
                except TransportError as exc:
                    log.error("transport %s could not start on taking the lead: %s", transport.name, exc)
                    continue
                self.mine.append(transport)
                self.started.append(transport)
                log.info("transport %s started (this process leads)", transport.name)
            return
        mine, self.mine = self.mine, []
        for transport in mine:
            with contextlib.suppress(ValueError):
                self.started.remove(transport)
        outcome = self.stop_transports(mine)
        if asyncio.iscoroutine(outcome):
            await outcome


async def lead_until_stopped(
    services: Services,
    jobs: Sequence[ScanJob],
    clock: Clock,
    stop: asyncio.Event,
    *,
    changed: asyncio.Event,
    summary_trigger: Callable[[], BaseTrigger],
    on_leadership: LeaderTransports,
    since: datetime,
    grace: float,
) -> None:
    """Campaign for the scheduler's lease and, while leading, fire ``jobs`` (each fire claimed in
    the fire log first) until ``stop``; ``changed``: the summary job gets ``summary_trigger()``.
    On stop the lease is released at once; a fire in flight gets ``grace`` seconds."""
    settings = services.settings
    assert settings.redis_url is not None  # run_bot refuses the Celery executor without it
    key = leader_key(await asyncio.to_thread(deployment_id, services.engine, at=clock.now()))
    lease = RedisLease.from_url(
        settings.redis_url.get_secret_value(), key, settings.leader_lease, holder=process_identity()
    )
    leader = LeaderScheduler(
        jobs,
        clock=clock,
        lease=lease,
        fires=FireLog(services.engine),
        on_leadership=on_leadership,
        since=since,
    )
    log.info("campaigning for the scheduler's lease %s (%g s)", key, settings.leader_lease)
    drive = asyncio.create_task(leader.run(stop))
    try:
        while not drive.done():
            waits = {asyncio.create_task(changed.wait())}
            await asyncio.wait({drive, *waits}, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            if changed.is_set() and not stop.is_set():
                changed.clear()
                leader.reschedule(SUMMARY_JOB, summary_trigger())
            if stop.is_set():
                break
        await finish_within(drive, grace, "a fire")
    finally:
        if not drive.done():
            drive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drive
        if on_leadership.mine:  # cancelled mid-leadership: its transports still stop
            await on_leadership(False)
        await lease.aclose()
