"""The Celery executor's task bodies, run by `tradeops worker` (bot/worker.py), and each worker
process's state.

Each worker process opens the application's services once, when it starts (or at its first task,
if the database was away then): the database, the venues, the agent graph, an event loop of its
own on which every task's coroutine runs; they close when the worker stops. Its transports only
send (Telegram: an initialised Bot, no polling; Discord: a REST login, no gateway): cards, card
edits and events reach the chats from here, while one `tradeops run` process receives the commands
and presses.

- ``scan`` (payload: the watchlist, fire time, bar close, trigger): the tick's housekeeping
  (expiries, fills, exits) on the watchlist's venue, the screen, then one ``decide`` task per
  candidate instead of walking them here; position events and a failed scan go out as ``notify``
  tasks. A scan key (``scan:WATCHLIST@FIRE_TIME``) done before is not run again; a watchlist being
  scanned by another worker is not scanned twice at once (the later one is dropped, as the
  scheduler coalesces a late scan).
- ``decide`` (a DecideRequest): ``SignalRunner.start`` under its deterministic signal id: a second
  delivery finds the signal and only makes sure its card went out.
- ``notify`` (a Notice): a card is sent to the transports that have not sent it yet (the card
  references in the database say which) under the notice's cross-process lock; a decision edits the
  cards; an event is sent once (a done marker in Redis, set after sending: a worker dying in between
  sends it again).

Clock: live, the real clock. On replay data the worker has no time of its own: a scan task carries
its fire time and a decide task the time of its scan, and the worker's clock is moved to it before
the work (never back), so a signal is created, and expires, at the moment the scheduler fired.
Each body returns its outcome (done, seen, duplicate, busy, ...), which the worker counts in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from bot.logs import redact
from bot.settings import Settings
from scheduler.celery_app import stats_key
from scheduler.executor import CeleryExecutor, DecideRequest, Notice, scan_key, scan_payload
from venues.clock import Clock, RealClock, ensure_utc

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from agent.runner import DecideResult
    from bot.run import Fanout
    from bot.services import Services
    from bot.transport import Transport

log = logging.getLogger("tradeops.worker")
T = TypeVar("T")
DONE_TTL_SECONDS = 7 * 86400  # how long a finished scan or a sent event is remembered


class TaskClock:
    """A replay worker's clock: the time of the task at hand (:meth:`follow`), never going back. Not
    a SimulatedClock on purpose: services store a simulated clock's time when they close, and a
    worker's (the last task's) must not overwrite the one `tradeops run` keeps for the data dir."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)

    def now(self) -> datetime:
        return self._now

    def follow(self, moment: datetime) -> None:
        self._now = max(self._now, ensure_utc(moment))

    async def sleep_until(self, moment: datetime) -> None:
        self.follow(moment)


class WorkerProcess:
    """One worker process's services, event loop, send-only transports and Redis client, opened
    at its first task (after the fork: nothing of the parent's is shared) and closed at shutdown."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.executor = CeleryExecutor(app)
        self.prefix = settings.celery_prefix
        self.loop: asyncio.AbstractEventLoop | None = None
        self.services: Services | None = None
        self.fanout: Fanout | None = None  # the send-only transports, opened at the first notice
        self.clock: Clock | None = None
        self._stack = contextlib.AsyncExitStack()
        self._redis: redis.Redis | None = None

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            import redis

            url = self.settings.redis_url_text or ""
            self._redis = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        return self._redis

    def run(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``work(*args)`` on this process's loop, the services opened first if they are not."""
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        if self.services is None:
            self.loop.run_until_complete(self._open())
        return self.loop.run_until_complete(work(*args))

    async def _open(self) -> None:
        from bot.services import REPLAY_START, open_services, stored_clock
        from bot.venues import uses_live_data

        clock: Clock = RealClock() if uses_live_data(self.settings) else TaskClock(REPLAY_START)
        try:
            self.services = await self._stack.enter_async_context(
                open_services(self.settings, clock=clock, on_card=self._on_card, on_decision=self._on_decision)
            )
        except BaseException:
            await self._stack.aclose()
            raise
        stored = stored_clock(self.services.signals)
        if stored is not None:
            self.follow(stored.now())
        self.clock = clock
        self.services.scanner.delegate = self._delegate
        log.info("worker process %d: services open (%s clock)", os.getpid(), type(clock).__name__)

    def follow(self, moment: datetime | str) -> None:
        clock = self.services.clock if self.services is not None else None
        if isinstance(clock, TaskClock):
            clock.follow(datetime.fromisoformat(moment) if isinstance(moment, str) else moment)

    async def fanout_open(self) -> Fanout:
        if self.fanout is None:
            from bot.run import Fanout

            assert self.services is not None
            fanout = Fanout()
            for transport in await open_senders(self.settings, self.services):
                self._stack.push_async_callback(close_sender, transport)
                fanout.transports.append(transport)
            self.fanout = fanout
        return self.fanout

    async def _delegate(self, requests: Sequence[DecideRequest]) -> None:
        for request in requests:
            await self.executor.decide(request)

    def _now(self) -> str:
        assert self.services is not None
        return self.services.clock.now().isoformat()

    async def _on_card(self, card: dict[str, Any]) -> None:
        await self.executor.notify(Notice("card", self._now(), signal_id=str(card["signal_id"])))

    async def _on_decision(self, result: DecideResult) -> None:
        notice = Notice("decision", self._now(), signal_id=result.signal_id, status=result.status)
        await self.executor.notify(notice)

    # Redis: done markers and the task counts /metrics reads (bot/health.py).

    def done(self, key: str) -> bool:
        return bool(self.redis.exists(f"{self.prefix}done:{key}"))

    def mark_done(self, key: str) -> None:
        self.redis.set(f"{self.prefix}done:{key}", "1", ex=DONE_TTL_SECONDS)

    def count(self, queue: str, outcome: str) -> None:
        try:
            self.redis.hincrby(stats_key(self.prefix), f"{queue}:{outcome}", 1)
        except Exception:  # a count lost with Redis must not fail (or retry) the task
            log.warning("task count %s:%s not recorded", queue, outcome, exc_info=True)

    @contextlib.contextmanager
    def claim(self, name: str) -> Iterator[bool]:
        """A Redis lock ``name`` for the block (lease: the visibility timeout); yields whether held."""
        lock = self.redis.lock(f"{self.prefix}lock:{name}", timeout=self.settings.celery_visibility_timeout)
        held = lock.acquire(blocking=False)
        try:
            yield bool(held)
        finally:
            if held:
                with contextlib.suppress(Exception):  # expired meanwhile: someone else may hold it now
                    lock.release()

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self._stack.aclose())
            self.loop.close()
            self.loop = None
        if self._redis is not None:
            self._redis.close()
        self.services = None


_process: tuple[int, WorkerProcess] | None = None  # (pid, state): a forked child makes its own


def worker_process(settings: Settings, app: Celery) -> WorkerProcess:
    global _process
    if _process is None or _process[0] != os.getpid():
        _process = (os.getpid(), WorkerProcess(settings, app))
    return _process[1]


def open_process(settings: Settings, app: Celery) -> None:
    """At a worker process's start: its services open before its first task arrives. A failure
    (the database is away) is logged; the first task tries again, and retries with backoff."""
    state = worker_process(settings, app)
    try:
        state.run(asyncio.sleep, 0)
    except Exception as exc:
        log.warning("worker process %d: services not open yet: %s", os.getpid(), redact(str(exc)))


def close_process() -> None:
    if _process is not None and _process[0] == os.getpid():
        try:
            _process[1].close()
        except Exception:
            log.exception("worker process %d did not close cleanly", os.getpid())


async def run_scan(state: WorkerProcess, payload: dict[str, Any]) -> str:
    from bot.run import EVENT_KINDS

    watchlist, tick, trigger = scan_payload(payload)
    key = scan_key(watchlist.name, tick.fire_time)
    if state.done(key):
        log.info("scan %s was done before: nothing to do", key)
        return "duplicate"
    state.follow(tick.fire_time)
    assert state.services is not None
    scanner = state.services.scanner
    with state.claim(f"scan:{watchlist.name}") as held:
        if not held:
            log.warning("scan %s dropped: another worker is scanning %s", key, watchlist.name)
            return "busy"
        events = await scanner.tick([watchlist.venue])
        report = await scanner.scan(watchlist, trigger=trigger)
    at = tick.fire_time.isoformat()
    for event in events:
        kind = EVENT_KINDS.get(event.kind, "exit")
        await state.executor.notify(Notice(kind, at, text=f"{event.venue} {event.text}"))  # type: ignore[arg-type]
    if report.error:
        await state.executor.notify(Notice("error", at, text=f"scan of {watchlist.name} failed: {report.error}"))
    state.mark_done(key)
    log.info("scan %s: %d candidates, %d decide tasks queued", key, len(report.candidates), len(report.delegated))
    return "failed_scan" if report.error else "done"


async def run_decide(state: WorkerProcess, payload: dict[str, Any]) -> str:
    from storage.signals import SignalStatus

    request = DecideRequest.from_json(payload)
    state.follow(request.at)
    assert state.services is not None
    result = await state.services.scanner.decide(request)
    for text in result.notices:
        await state.executor.notify(Notice("notice", request.at, text=text))
    if not result.created and result.status == SignalStatus.PENDING.value:
        # Seen before (a second delivery, or a walk whose process died after storing its card):
        # its card may never have gone out; the notice is a no-op where it did.
        await state.executor.notify(Notice("card", request.at, signal_id=result.signal_id))
    return "done" if result.created else "seen"


async def run_notify(state: WorkerProcess, payload: dict[str, Any]) -> str:
    from bot.render import signal_outcome
    from storage.locks import process_lock
    from storage.signals import SignalStatus

    notice = Notice.from_json(payload)
    state.follow(notice.at)
    services = state.services
    assert services is not None
    fanout = await state.fanout_open()
    if not fanout.transports:
        return "unsent"  # no transport configured (or none could start): logged when they were opened
    if notice.kind in ("card", "decision"):
        # A card and its decision's edit in order, across processes: the edit waits for the card.
        async with process_lock(services.engine, f"notify:card:{notice.signal_id}"):
            row = services.signals.get(notice.signal_id)
            if row is None:
                return "unknown"
            if notice.kind == "card":
                missing = [t for t in fanout.transports if not services.chats.cards(t.name, row.id)]
                if not missing or not row.card:
                    return "duplicate"
                await _only(missing).push_card(dict(row.card))
                row = services.signals.get(notice.signal_id)  # answered meanwhile: the card shows it
                if row is None or row.status == SignalStatus.PENDING.value:
                    return "done"
            await fanout.push_outcome(row.id, row.status, signal_outcome(services.signals, row.id, on_card=True))
            return "done"
    if state.done(notice.key):
        return "duplicate"
    await fanout.push_event(notice.text, kind=notice.kind)
    state.mark_done(notice.key)
    return "done"


def _only(transports: Sequence[Transport]) -> Fanout:
    """A Fanout of only ``transports``: its error handling, not the whole list."""
    from bot.run import Fanout

    some = Fanout()
    some.transports = list(transports)
    return some


async def open_senders(settings: Settings, services: Services) -> list[Transport]:
    """The configured transports, send-only: Telegram's Bot initialised (getMe), no polling;
    Discord logged in over REST, no gateway. One that cannot start is logged and left out."""
    from bot.run import transports_for

    if not settings.transport_tokens:
        log.warning("no chat transport is configured (%s): notices are not sent", "TRADEOPS_TELEGRAM_TOKEN, ...")
        return []
    opened: list[Transport] = []
    for transport in transports_for(settings, services):
        try:
            await open_sender(transport)
        except Exception as exc:
            log.error("transport %s cannot send: %s", transport.name, redact(str(exc)))
            continue
        opened.append(transport)
    return opened


async def open_sender(transport: Any) -> None:
    if transport.name == "telegram":
        await transport.app.initialize()
    elif transport.name == "discord":
        transport.prepare()
        await transport.client.login(transport.token)


async def close_sender(transport: Any) -> None:
    with contextlib.suppress(Exception):
        if transport.name == "telegram":
            await transport.app.shutdown()
        elif transport.name == "discord":
            await transport.client.close()
