"""`tradeops worker`: a Celery worker that runs the Celery executor's tasks (scheduler/executor.py,
scheduler/celery_app.py) on the queues it is given, with N prefork processes.

Each worker process opens the application's services once, at its first task (the database, the
venues, the agent graph, an event loop of its own), runs every task's coroutine on that loop, and
closes them when the worker stops. Its transports only send (Telegram: an initialised Bot, no
polling; Discord: a REST login, no gateway): cards, card edits and events reach the chats from
here, while one `tradeops run` process receives the commands and presses.

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

A task failing on a lost database or Redis connection is retried with exponential backoff (1 s
doubling to 5 min, at most 8 times); its message is acknowledged only once it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from bot.logs import redact, register_secret
from bot.settings import Settings
from scheduler.celery_app import (
    DECIDE_TASK,
    NOTIFY_TASK,
    QUEUES,
    RETRY_BACKOFF_MAX,
    RETRY_MAX,
    SCAN_TASK,
    TASK_QUEUES,
    make_celery,
    queue_key,
)
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
REDIS_CHECK_TIMEOUT = 3.0


class WorkerError(Exception):
    """The worker cannot start as configured; the message says what to set (exit status 2)."""


def safe_url(url: str) -> str:
    """A Redis URL fit for a message: the password replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))


def broker_url(settings: Settings) -> str:
    """The Redis URL of the Celery executor, its password registered for redaction. WorkerError
    when the executor is not celery or no Redis is set."""
    if settings.executor != "celery":
        raise WorkerError(
            f"TRADEOPS_EXECUTOR is {settings.executor}: set TRADEOPS_EXECUTOR=celery (and TRADEOPS_REDIS_URL) "
            "for `tradeops run` to queue scans for workers"
        )
    url = settings.redis_url_text
    if not url:
        raise WorkerError(
            "TRADEOPS_EXECUTOR=celery needs a broker: set TRADEOPS_REDIS_URL, e.g. redis://127.0.0.1:6379/0"
        )
    register_secret(urlsplit(url).password)
    return url


def celery_app(settings: Settings) -> Celery:
    """The Celery app of these settings, the tasks registered (a worker's and a producer's app are one)."""
    app = make_celery(
        broker_url(settings), prefix=settings.celery_prefix, visibility_timeout=settings.celery_visibility_timeout
    )
    _register_tasks(app, settings)
    return app


def celery_executor(settings: Settings) -> CeleryExecutor:
    return CeleryExecutor(celery_app(settings))


def parse_queues(text: str) -> list[str]:
    """``"scan,decide"`` -> ["scan", "decide"]; an unknown or empty name is a WorkerError listing the valid ones."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in QUEUES]
    if unknown or not names:
        what = f"unknown queue {', '.join(repr(n) for n in unknown)}" if unknown else "no queue given"
        raise WorkerError(f"{what}: --queues takes a comma-separated list of {', '.join(QUEUES)}")
    return list(dict.fromkeys(names))


def check_redis(url: str) -> None:
    """WorkerError naming the URL (password hidden) when Redis does not answer a PING."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_CHECK_TIMEOUT, socket_timeout=REDIS_CHECK_TIMEOUT)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise WorkerError(
            f"Redis at {safe_url(url)} does not answer ({redact(str(exc))}): start it, or fix TRADEOPS_REDIS_URL"
        ) from None
    finally:
        client.close()


def start_worker(settings: Settings, queues: Sequence[str], concurrency: int) -> None:
    """Run a Celery worker on ``queues`` with ``concurrency`` prefork processes until it is stopped
    (SIGTERM: a warm shutdown, running tasks finish). WorkerError before it starts when a setting
    cannot work or Redis does not answer."""
    if concurrency < 1:
        raise WorkerError(f"--concurrency must be at least 1 (worker processes), got {concurrency}")
    url = broker_url(settings)
    check_redis(url)
    from bot.wiring import open_database

    open_database(settings).dispose()  # migrated once here, not by every process at its first task
    app = celery_app(settings)
    from celery.signals import worker_process_init, worker_process_shutdown

    worker_process_init.connect(lambda **_: _open_process(settings, app), weak=False)
    worker_process_shutdown.connect(lambda **_: _close_process(), weak=False)
    log.info("worker on %s: queues %s, %d processes", safe_url(url), ",".join(queues), concurrency)
    app.worker_main(
        [
            "worker",
            f"--queues={','.join(queues)}",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--hostname=tradeops-{os.getpid()}@%h",
            f"--loglevel={settings.log_level}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


# --- the tasks ---

RETRYABLE: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


def _retryable() -> tuple[type[BaseException], ...]:
    """Lost database or broker connections: the errors a retry with backoff can outlast."""
    import psycopg
    import redis
    from kombu.exceptions import OperationalError as BrokerError
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    return (*RETRYABLE, OperationalError, InterfaceError, DisconnectionError, psycopg.OperationalError,
            redis.ConnectionError, redis.TimeoutError, BrokerError)  # fmt: skip


def _register_tasks(app: Celery, settings: Settings) -> None:
    options: dict[str, Any] = {
        "autoretry_for": _retryable(),
        "retry_backoff": True,
        "retry_backoff_max": RETRY_BACKOFF_MAX,
        "retry_jitter": True,
        "max_retries": RETRY_MAX,
        "acks_late": True,
        "reject_on_worker_lost": True,
    }
    bodies: dict[str, Callable[[WorkerProcess, dict[str, Any]], Awaitable[str]]] = {
        SCAN_TASK: _scan,
        DECIDE_TASK: _decide,
        NOTIFY_TASK: _notify,
    }
    for name, body in bodies.items():

        def run(payload: dict[str, Any], body: Callable[..., Awaitable[str]] = body, name: str = name) -> str:
            state = worker_process(settings, app)
            queue = TASK_QUEUES[name]
            try:
                outcome = state.run(body, state, payload)
            except Exception as exc:
                state.count(queue, "retried" if isinstance(exc, options["autoretry_for"]) else "failed")
                raise
            state.count(queue, outcome)
            return outcome

        app.task(name=name, **options)(run)


class TaskClock:
    """A replay worker's clock: the time of the task at hand (:meth:`follow`), never going back."""

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
            for transport in await _senders(self.settings, self.services):
                self._stack.push_async_callback(_close_sender, transport)
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


def stats_key(prefix: str) -> str:
    """The Redis hash of task counts: field ``QUEUE:OUTCOME``, value the count."""
    return f"{prefix}stats:tasks"


_process: tuple[int, WorkerProcess] | None = None  # (pid, state): a forked child makes its own


def worker_process(settings: Settings, app: Celery) -> WorkerProcess:
    global _process
    if _process is None or _process[0] != os.getpid():
        _process = (os.getpid(), WorkerProcess(settings, app))
    return _process[1]


def _open_process(settings: Settings, app: Celery) -> None:
    """At a worker process's start: its services open before its first task arrives. A failure
    (the database is away) is logged; the first task tries again, and retries with backoff."""
    state = worker_process(settings, app)
    try:
        state.run(asyncio.sleep, 0)
    except Exception as exc:
        log.warning("worker process %d: services not open yet: %s", os.getpid(), redact(str(exc)))


def _close_process() -> None:
    if _process is not None and _process[0] == os.getpid():
        try:
            _process[1].close()
        except Exception:
            log.exception("worker process %d did not close cleanly", os.getpid())


async def _scan(state: WorkerProcess, payload: dict[str, Any]) -> str:
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


async def _decide(state: WorkerProcess, payload: dict[str, Any]) -> str:
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


async def _notify(state: WorkerProcess, payload: dict[str, Any]) -> str:
    from bot.render import signal_outcome
    from storage.locks import process_lock
    from storage.signals import SignalStatus

    notice = Notice.from_json(payload)
    state.follow(notice.at)
    services = state.services
    assert services is not None
    fanout = await state.fanout_open()
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


async def _senders(settings: Settings, services: Services) -> list[Transport]:
    """The configured transports, send-only: Telegram's Bot initialised (getMe), no polling;
    Discord logged in over REST, no gateway. One that cannot start is logged and left out."""
    from bot.run import transports_for

    if not settings.transport_tokens:
        log.warning("no chat transport is configured (%s): notices are not sent", "TRADEOPS_TELEGRAM_TOKEN, ...")
        return []
    opened: list[Transport] = []
    for transport in transports_for(settings, services):
        try:
            await _open_sender(transport)
        except Exception as exc:
            log.error("transport %s cannot send: %s", transport.name, redact(str(exc)))
            continue
        opened.append(transport)
    return opened


async def _open_sender(transport: Any) -> None:
    if transport.name == "telegram":
        await transport.app.initialize()
    elif transport.name == "discord":
        transport.prepare()
        await transport.client.login(transport.token)


async def _close_sender(transport: Any) -> None:
    with contextlib.suppress(Exception):
        if transport.name == "telegram":
            await transport.app.shutdown()
        elif transport.name == "discord":
            await transport.client.close()


def queue_depths(client: redis.Redis, prefix: str) -> dict[str, int]:
    """Messages waiting in each queue (Redis LLEN of its list)."""
    return {queue: int(client.llen(queue_key(prefix, queue))) for queue in QUEUES}
