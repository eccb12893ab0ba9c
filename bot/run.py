"""`tradeops run`: the long-running bot in one asyncio process.

It holds the one-bot lock of its database, starts every chat transport that has a token, schedules
a scan job per enabled watchlist on its market's triggers (each fire: expire approvals, fill orders,
manage exits, then scan) and the daily summary job (at the configured time and each time a chat
chose, in TRADEOPS_TIMEZONE), and hands every transport what happens: new cards, decisions made here
(an answer in any transport, an expiry), fills and exits, errors, notices, the daily summary (each
transport sends each kind only to the chats that want it). SIGINT or SIGTERM stops it cleanly;
pending approvals stay pending in the database, so their buttons work after the next start. A
transport that cannot go on (Telegram's 409 Conflict: another process took the token) asks the run
to stop with a reason (``Transport.start``'s ``request_stop``): the same clean stop, exit status 4.

Scheduling: live (the configured real venues, see bot/venues.py), the jobs run on APScheduler on
the real clock (:func:`schedule_live`, :func:`scheduler.driver.build_scheduler`). On replay
(``--replay``: the shipped data) the clock is a :class:`ScaledClock` (simulated time running
``speed`` times real time, from the moment the data dir remembers). APScheduler cannot follow such a
clock (its own wake-ups are wall-clock timers), so the same trigger objects are driven by
:class:`FastForwardDriver`, which waits for each fire with ``clock.sleep_until`` (scaled real time)
and coalesces or drops late fires as APScheduler would. Jobs run one at a time: at a high speed a
slow scan makes the next fires late, and they coalesce, as live would on a busy machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import logging
import os
import signal
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, time
from typing import Any

from apscheduler.triggers.base import BaseTrigger

from agent.runner import DecideResult
from bot.health import HealthServerError, serving_health, transport_problems
from bot.logs import redact, register_secret
from bot.render import decision_text, signal_outcome
from bot.retrain import drift_notices
from bot.run_leader import (
    IN_PROCESS_RUN_HOLDS,
    LeaderTransports,
    TransportFactory,
    finish_within,
    lead_until_stopped,
    single_receiver,
)
from bot.services import REPLAY_START, Services, open_services, seed_watchlists, stored_clock
from bot.settings import Settings
from bot.summary import Summary, daily_summary, due_chats, summary_times
from bot.transport import TRANSPORT_VARIABLES, StopRequest, Transport, TransportError
from bot.venues import VenueConfigError, uses_live_data
from bot.wiring import open_database
from scheduler.driver import FastForwardDriver, ScanJob, ScanTick, build_scheduler
from scheduler.executor import Executor, InProcessExecutor
from scheduler.jobs import SUMMARY_JOB, drift_job, executor_jobs, summary_job
from scheduler.manage import PositionEvent
from scheduler.scan import ScanReport
from scheduler.triggers import DailyTrigger
from storage.db import redact_url
from storage.locks import process_lock
from storage.signals import SignalStatus, SignalStore
from storage.watchlists import WatchlistSpec
from venues.clock import RealClock, ScaledClock
from venues.metrics import Metrics, installed, metrics

log = logging.getLogger("tradeops.run")

RUN_LOCK = "bot:run"  # held alone by an in-process `tradeops run`, shared by Celery runs
RUN_KEY = "run"  # {"pid": ..., "started": ...}: who holds the run lock, for the second one's message
EXIT_REFUSED = 2  # exit status: nothing to run with, or another run holds the database
EXIT_TRANSPORT_STOPPED = 4  # exit status: a transport asked the run to stop (e.g. Telegram's 409 Conflict)
STOP_GRACE_SECONDS = 10.0  # how long an in-flight scan and each transport's stop may take on shutdown
DEFAULT_SPEED = 60.0

# name -> (module, class): imported only when its token is set; built as cls(settings, services, token).
TRANSPORT_CLASSES = {
    "telegram": ("bot.telegram", "TelegramTransport"),
    "discord": ("bot.discord", "DiscordTransport"),
}
# PositionEvent.kind -> Transport.push_event kind.
EVENT_KINDS = {"opened": "fill", "cancelled": "fill", "exit": "exit", "hold": "exit", "closed": "exit"}


CELERY_NEEDS_REDIS = (
    "TRADEOPS_EXECUTOR=celery needs a broker: set TRADEOPS_REDIS_URL (e.g. redis://127.0.0.1:6379/0), "
    "or TRADEOPS_EXECUTOR=inprocess to run everything in this process"
)


class RunRefused(Exception):
    """The bot cannot run as configured; the message says why and what to do (exit status 2)."""


def no_transport_message() -> str:
    return (
        f"no chat transport is configured: set {TRANSPORT_VARIABLES} to run the bot; "
        "without one, try `tradeops chat` (the console) or `tradeops demo` (the offline walk)"
    )


def check_transports_configured(settings: Settings) -> None:
    """Raises RunRefused when no transport has a token."""
    if not settings.transport_tokens:
        raise RunRefused(no_transport_message())


def transports_for(settings: Settings, services: Services) -> list[Transport]:
    """One transport per token set, each imported by name only now. Raises RunRefused when a token
    is set for a transport that is not built yet, or none is set."""
    check_transports_configured(settings)
    transports: list[Transport] = []
    for name, token in settings.transport_tokens.items():
        module_name, class_name = TRANSPORT_CLASSES[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # the transport exists but something it needs is missing: a real error
            raise RunRefused(
                f"the {name} transport is not built yet (TRADEOPS_{name.upper()}_TOKEN is set); "
                "until it is, try `tradeops chat` or `tradeops demo`"
            ) from None
        transports.append(getattr(module, class_name)(settings, services, token))
    return transports


class Fanout:
    """Hands one event to every started transport; one that fails is logged and the rest still get it."""

    def __init__(self) -> None:
        self.transports: list[Transport] = []
        self.watched: set[str] = set()  # pending signals whose cards this run has pushed

    async def _each(self, what: str, call: Callable[[Transport], Any]) -> None:
        async def one(transport: Transport) -> None:
            try:
                await call(transport)
            except Exception:
                log.exception("transport %s: %s failed", transport.name, what)

        await asyncio.gather(*(one(t) for t in self.transports))

    async def push_card(self, card: dict[str, Any]) -> None:
        self.watched.add(str(card["signal_id"]))
        await self._each("push_card", lambda t: t.push_card(card))

    async def push_decision(self, result: DecideResult) -> None:
        outcome = result.outcome
        text = decision_text(
            None,
            result.status,
            decision=outcome.decision,
            actor=outcome.actor,
            at=outcome.decided_at,
            reason=result.reason,
        )
        await self.push_outcome(result.signal_id, result.status, text)

    async def push_outside_decisions(self, signals: SignalStore, deciding: Collection[str] = ()) -> None:
        """Cards answered by another process (`tradeops chat -c "/approve ID"`, a second transport's
        process): found at each scan as pushed cards no longer pending, and edited like the rest.
        ``deciding``: signals this process is deciding now; their own decision hook edits them."""
        for signal_id in sorted(self.watched):
            if signal_id in deciding:
                continue
            row = signals.get(signal_id)
            if row is None or row.status == SignalStatus.PENDING.value:
                continue
            text = signal_outcome(signals, signal_id, on_card=True)
            await self.push_outcome(signal_id, row.status, text)

    async def push_outcome(self, signal_id: str, status: str, text: str) -> None:
        """A signal was decided (``status`` now) and ``text`` says how: its cards are edited."""
        self.watched.discard(signal_id)
        text = redact(text)  # a reason may quote a venue's error, and with it a URL's credentials
        await self._each("push_decision", lambda t: t.push_decision(signal_id, status, text))

    async def push_event(self, text: str, *, kind: str) -> None:
        text = redact(text)  # a failed scan's reason quotes the venue's error: no secret reaches a chat
        await self._each("push_event", lambda t: t.push_event(text, kind=kind))

    async def push_summary(self, summary: Summary) -> None:
        await self._each("push_summary", lambda t: t.push_summary(summary))


async def run_bot(
    settings: Settings,
    make_transports: TransportFactory = transports_for,
    *,
    replay: bool = True,
    speed: float = DEFAULT_SPEED,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the bot until ``stop`` is set, SIGINT/SIGTERM arrives or a transport asks it to stop;
    returns the exit status (0 after a clean stop, EXIT_TRANSPORT_STOPPED when a transport asked for
    it, its reason logged). Raises RunRefused when another run holds the database, a configured
    transport does not exist, none is configured, or (live) no real venue is configured;
    TransportError when a transport cannot start.

    ``replay``: the shipped replay data on a simulated clock running ``speed`` simulated seconds per
    real second, from the moment the data dir remembers (or the replay start). Otherwise the
    configured real venues on the real clock, scheduled by APScheduler."""
    if settings.executor == "celery":
        await _check_broker(settings)
    if replay:
        settings = settings.model_copy(update={"market_data": "replay"})
    else:
        try:
            live = uses_live_data(settings)
        except VenueConfigError as exc:
            raise RunRefused(str(exc)) from None
        if not live:
            raise RunRefused(no_live_venue_message(settings))
    url = settings.resolved_database_url
    engine = await asyncio.to_thread(functools.partial(open_database, settings, one_shot=True))
    try:
        clock: ScaledClock | RealClock = RealClock()
        if replay:
            stored = stored_clock(SignalStore(engine))
            clock = ScaledClock(stored.now() if stored is not None else REPLAY_START, speed)
        # Celery runs hold the one-bot lock shared (any number of them; the scheduler's lease picks
        # the leader), an in-process run holds it alone: neither starts beside the other.
        shared = settings.executor == "celery"
        async with process_lock(engine, RUN_LOCK, wait=False, shared=shared) as held:
            if not held and shared:
                raise RunRefused(IN_PROCESS_RUN_HOLDS)
            if not held:
                holder = await asyncio.to_thread(SignalStore(engine).get_value, RUN_KEY)
                pid = f" (pid {holder['pid']})" if holder and holder.get("pid") else ""
                raise RunRefused(f"another tradeops run is using {redact_url(url)}{pid}; stop it first")
            return await _run_holding_lock(settings, make_transports, clock, stop or asyncio.Event())
    finally:
        engine.dispose()


async def _check_broker(settings: Settings) -> None:
    """RunRefused when the Celery executor has no Redis URL, or its Redis does not answer."""
    from bot.worker import WorkerError, check_redis

    url = settings.redis_url_text
    if not url:
        raise RunRefused(CELERY_NEEDS_REDIS)
    try:
        await asyncio.to_thread(check_redis, url)
    except WorkerError as exc:
        raise RunRefused(str(exc)) from None


def no_live_venue_message(settings: Settings) -> str:
    from bot.venues import LIVE_BUILDERS

    if settings.market_data == "replay":
        return "TRADEOPS_MARKET_DATA=replay: use `tradeops run --replay`, or set it to auto or live"
    kinds = "; ".join(f"{b.kind}: {b.variables}" for b in LIVE_BUILDERS) or "none is built yet"
    return (
        f"no live venue is configured (set one of {kinds}); or use `tradeops run --replay` for the shipped replay data"
    )


async def _run_holding_lock(
    settings: Settings, make_transports: TransportFactory, clock: ScaledClock | RealClock, stop: asyncio.Event
) -> int:
    for token in settings.transport_tokens.values():
        register_secret(token)
    fanout = Fanout()
    with installed(Metrics()) as counted:  # this run's own registry: what /metrics serves
        return await _run_with_services(settings, make_transports, clock, stop, fanout, counted)


async def _run_with_services(
    settings: Settings,
    make_transports: TransportFactory,
    clock: ScaledClock | RealClock,
    stop: asyncio.Event,
    fanout: Fanout,
    counted: Metrics,
) -> int:
    async with open_services(
        settings, clock=clock, on_card=fanout.push_card, on_decision=fanout.push_decision
    ) as services:
        started = clock.now()  # fires due while the transports start still run (late, within grace)
        services.signals.set_value(RUN_KEY, {"pid": os.getpid(), "started": started.isoformat()}, at=started)
        transports = list(make_transports(settings, services))
        if not transports:
            raise RunRefused(no_transport_message())
        requested: list[StopRequest] = []

        def request_stop(request: StopRequest) -> None:
            """A transport cannot go on: stop as on SIGTERM (a request after the stop began is only logged)."""
            if not stop.is_set():
                requested.append(request)
            log.error("stopping: transport %s asked to: %s", request.transport, request.reason)
            stop.set()

        leader: LeaderTransports | None = None
        if settings.executor == "celery":  # polling and the gateway: only while this process leads
            leader = LeaderTransports(
                settings, services, make_transports, fanout.transports, request_stop, _stop_transports
            )
            transports = [t for t in transports if not single_receiver(t)]

        def expected() -> list[Transport]:
            return [*transports, *(leader.mine if leader else [])]

        try:
            health = serving_health(
                settings,
                services.engine,
                services.venues,
                lambda: transport_problems(expected(), fanout.transports, requested),
                counted.registry,
            )
            async with health:
                for transport in transports:
                    await transport.start(request_stop)
                    fanout.transports.append(transport)
                    log.info("transport %s started", transport.name)
                await _schedule_until_stopped(services, fanout, clock, stop, since=started, leader=leader)
        except HealthServerError as exc:
            raise RunRefused(str(exc)) from None
        finally:
            await _stop_transports(fanout.transports)
    log.info("stopped; pending approvals stay pending until the next start")
    return EXIT_TRANSPORT_STOPPED if requested else 0


def scheduled_watchlists(services: Services) -> list[WatchlistSpec]:
    """The enabled watchlists on this process's venues; on replay, the shipped ones when none exist."""
    watchlists = [w for w in services.watchlists.all() if w.enabled]
    if not watchlists and services.simulated:
        watchlists = [w for w in seed_watchlists(services) if w.enabled]
    elsewhere = sorted({w.venue for w in watchlists if w.venue not in services.venues})
    if elsewhere:
        log.info(
            "watchlists on %s not scheduled: this run trades on %s", ", ".join(elsewhere), ", ".join(services.venues)
        )
    mine = [w for w in watchlists if w.venue in services.venues]
    if not mine:
        example = next(iter(services.venues), "VENUE")
        log.warning(
            "no watchlist on %s: nothing is scheduled until one is added, e.g. /watch add majors %s:SYMBOL, "
            "then restart",
            ", ".join(services.venues),
            example,
        )
    return mine


async def _schedule_until_stopped(
    services: Services,
    fanout: Fanout,
    clock: ScaledClock | RealClock,
    stop: asyncio.Event,
    *,
    since: datetime,
    leader: LeaderTransports | None = None,
) -> None:
    """Fire the jobs until ``stop``: this process alone (the in-process executor: it holds the
    database's one-bot lock), or, with ``leader`` (the Celery executor), while it holds the
    scheduler's lease, starting ``leader``'s transports when it takes the lead."""
    scans = executor_jobs(scan_executor(services, fanout), scheduled_watchlists(services), services.venue_calendar)
    summary = _summary_job(services, fanout)
    jobs = [*scans, _drift_job(services, fanout), summary]
    if isinstance(clock, ScaledClock):
        log.info("replay clock at %s, %g x real time", clock.now().isoformat(), clock.speed)
    else:
        log.info("live on %s, real clock", ", ".join(services.venues))
    for job in scans:
        moment = job.trigger.get_next_fire_time(None, clock.now())
        log.info("watchlist %s scheduled, next scan at %s", job.id, moment.isoformat() if moment else "never")
    moment = summary.trigger.get_next_fire_time(None, clock.now())
    log.info("daily summary at %s, next at %s", summary.trigger, moment.isoformat() if moment else "never")
    changed = asyncio.Event()  # a chat changed its summary settings: the summary job gets new times
    services.on_schedule_change = changed.set

    def summary_trigger() -> DailyTrigger:
        trigger = DailyTrigger(summary_times(services), services.settings.timezone)
        log.info("daily summary rescheduled: %s", trigger)
        return trigger

    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or no Unix signals
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    if leader is not None:
        try:
            await lead_until_stopped(
                services,
                jobs,
                clock,
                stop,
                changed=changed,
                summary_trigger=summary_trigger,
                on_leadership=leader,
                since=since,
                grace=STOP_GRACE_SECONDS,
            )
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
        return
    if isinstance(clock, ScaledClock):
        driver = FastForwardDriver(clock, jobs, since=since)
        drive = asyncio.create_task(_drive(driver, clock, stop, changed, summary_trigger))
    else:
        drive = asyncio.create_task(schedule_live(jobs, stop, changed, summary_trigger))
    # The one-bot lock this process holds makes it the only scheduler.
    metrics().set_scheduler_leader(True)
    try:
        await asyncio.wait({drive, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        # The wait for the next fire ends at once; a scan in flight gets the grace to finish its walks.
        await finish_within(drive, STOP_GRACE_SECONDS, "a scan")
    finally:
        metrics().set_scheduler_leader(False)
        for signum in handled:
            loop.remove_signal_handler(signum)


async def _drive(
    driver: FastForwardDriver,
    clock: ScaledClock,
    stop: asyncio.Event,
    changed: asyncio.Event,
    summary_trigger: Callable[[], BaseTrigger],
) -> None:
    """Run each fire when the clock reaches it, until ``stop``: the wait is abandoned at once, a
    started scan runs on (the caller bounds it). ``changed``: the summary job gets
    ``summary_trigger()`` and the wait starts again, for the new next fire."""
    while not stop.is_set() and (upcoming := driver.next_fire()) is not None:
        waits = {
            asyncio.create_task(clock.sleep_until(upcoming[1])),
            asyncio.create_task(stop.wait()),
            asyncio.create_task(changed.wait()),
        }
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if stop.is_set():
            return
        if changed.is_set():
            changed.clear()
            driver.reschedule(SUMMARY_JOB, summary_trigger())
            continue  # the next fire may be another now; a due one runs at once on the next turn
        await driver.step()  # the clock is at the fire time: runs it now (or coalesces late ones)


async def schedule_live(
    jobs: Sequence[ScanJob],
    stop: asyncio.Event,
    changed: asyncio.Event | None = None,
    summary_trigger: Callable[[], BaseTrigger] | None = None,
) -> None:
    """Run ``jobs`` on APScheduler (the real clock) until ``stop``; then no new fire starts, and the
    scans in flight run on (the caller bounds them; a cancel reaches them). ``changed``: the summary
    job gets ``summary_trigger()``."""
    running: set[asyncio.Task[Any]] = set()

    def tracked(job: ScanJob) -> ScanJob:
        async def func(tick: ScanTick) -> None:
            task = asyncio.current_task()
            assert task is not None
            running.add(task)
            try:
                await job.func(tick)
            finally:
                running.discard(task)

        return dataclasses.replace(job, func=func)

    scheduler = build_scheduler([tracked(job) for job in jobs])
    scheduler.start()
    try:
        while not stop.is_set():
            waits = {asyncio.create_task(stop.wait()), *([asyncio.create_task(changed.wait())] if changed else [])}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            if changed is not None and changed.is_set() and summary_trigger is not None and not stop.is_set():
                changed.clear()
                scheduler.reschedule_job(SUMMARY_JOB, trigger=summary_trigger())
    finally:
        scheduler.pause()  # no new fire starts; shutdown() would cancel the scans in flight
        try:
            if running:
                await asyncio.gather(*running)
        except asyncio.CancelledError:
            for task in running:
                task.cancel()
            raise
        finally:
            scheduler.shutdown(wait=False)


def _summary_job(services: Services, fanout: Fanout) -> ScanJob:
    """The daily summary at the configured time and each time a chat chose: built once per fire
    when some chat of a started transport is due, then handed to every transport."""

    async def send(tick: ScanTick) -> None:
        now = services.clock.now()
        if not any(due_chats(services, t.name, now) for t in fanout.transports):
            return
        summary = await daily_summary(services, record=True)
        await fanout.push_summary(summary)
        log.info("daily summary of %s pushed", summary.day.isoformat())

    return summary_job(summary_times(services), services.settings.timezone, send)


def _drift_job(services: Services, fanout: Fanout) -> ScanJob:
    """The promoted model's drift check once a day (bot/drift.py); a notice when it drifted, and
    the retrain's outcome when TRADEOPS_DRIFT_RETRAIN is on (bot/retrain.py)."""

    async def check(tick: ScanTick) -> None:
        for notice in await drift_notices(services):
            await fanout.push_event(notice, kind="notice")
            log.info("drift notice pushed")

    return drift_job(time.fromisoformat(services.settings.drift_time), services.settings.timezone, check)


def scan_executor(services: Services, fanout: Fanout) -> Executor:
    """Where the scan jobs run (TRADEOPS_EXECUTOR): in this process, their results to ``fanout``;
    or as Celery tasks that `tradeops worker` processes run (bot/worker.py)."""
    if services.settings.executor == "celery":
        from bot.worker import celery_executor

        return celery_executor(services.settings)
    return InProcessExecutor(services.scanner, _on_scan(fanout, services))


def _on_scan(
    fanout: Fanout, services: Services
) -> Callable[[WatchlistSpec, ScanTick, list[PositionEvent], ScanReport], Any]:
    async def on_scan(
        watchlist: WatchlistSpec, tick: ScanTick, events: list[PositionEvent], report: ScanReport
    ) -> None:
        await fanout.push_outside_decisions(services.signals, services.runner.deciding)
        for event in events:
            await fanout.push_event(f"{event.venue} {event.text}", kind=EVENT_KINDS.get(event.kind, "exit"))
        if report.error:
            await fanout.push_event(f"scan of {watchlist.name} failed: {report.error}", kind="error")
        for notice in dict.fromkeys(n for walk in report.walks for n in walk.notices):
            await fanout.push_event(notice, kind="notice")
        log.info(
            "scan %s at %s: %d candidates, %d new signals",
            watchlist.name,
            tick.fire_time.isoformat(),
            len(report.candidates),
            sum(1 for w in report.walks if w.created),
        )

    return on_scan


async def _stop_transports(transports: Sequence[Transport]) -> None:
    """Each transport stops (takes no more updates, lets in-flight commands finish) within the grace."""

    async def one(transport: Transport) -> None:
        try:
            await asyncio.wait_for(transport.stop(), STOP_GRACE_SECONDS)
            log.info("transport %s stopped", transport.name)
        except TimeoutError:
            log.warning("transport %s did not stop within %s s", transport.name, STOP_GRACE_SECONDS)
        except Exception:
            log.exception("transport %s failed to stop cleanly", transport.name)

    await asyncio.gather(*(one(t) for t in transports))


__all__ = ["RunRefused", "TransportError", "check_transports_configured", "run_bot", "transports_for"]
