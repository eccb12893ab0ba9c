"""`tradeops worker`: a Celery worker that runs the Celery executor's tasks (scheduler/executor.py,
scheduler/celery_app.py) on the queues it is given, with N prefork processes; the settings it needs
checked first, each refusal one line. The task bodies and the per-process state are in
bot/worker_tasks.py.

A task failing on a lost database or Redis connection is retried with exponential backoff (1 s
doubling to 5 min, at most 8 times); its message is acknowledged only once it ran.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from bot.logs import redact, register_secret
from bot.settings import Settings
from bot.worker_tasks import (
    WorkerProcess,
    close_process,
    open_process,
    run_decide,
    run_notify,
    run_scan,
    worker_process,
)
from scheduler.celery_app import (
    DECIDE_TASK,
    NOTIFY_TASK,
    QUEUES,
    RETRY_BACKOFF_MAX,
    RETRY_MAX,
    SCAN_TASK,
    TASK_QUEUES,
    make_celery,
)
from scheduler.executor import CeleryExecutor

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("tradeops.worker")
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
    asyncio.run(_checkpoint_tables(settings))
    app = celery_app(settings)
    from celery.signals import worker_process_init, worker_process_shutdown

    worker_process_init.connect(lambda **_: open_process(settings, app), weak=False)
    worker_process_shutdown.connect(lambda **_: close_process(), weak=False)
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


async def _checkpoint_tables(settings: Settings) -> None:
    """LangGraph's checkpoint tables set up once, before the fork: processes setting them up at
    the same moment collide on its migrations table."""
    from storage.checkpoints import open_checkpointer

    async with open_checkpointer(settings.resolved_database_url):
        pass


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
        SCAN_TASK: run_scan,
        DECIDE_TASK: run_decide,
        NOTIFY_TASK: run_notify,
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

        app.task(name=name, shared=False, **options)(run)  # this app only: its settings, not the first app's
