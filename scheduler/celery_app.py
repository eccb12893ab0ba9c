"""The Celery application of the Celery executor: Redis as broker, three queues, and the settings
that make a task survive a lost worker. Built from plain arguments (bot/ reads the settings and
passes them): this module reads no environment.

Queues: ``scan`` (a watchlist's tick and screen; short), ``decide`` (one candidate's walk through
the graph; LLM-bound, the queue to give most worker processes), ``notify`` (a card, a card edit,
an event, sent through the chat transports).

Delivery: at least once. A task is acknowledged after it ran (``task_acks_late``), and put back when
its worker process dies under it (``task_reject_on_worker_lost``). A worker killed outright (SIGKILL
of the whole worker, the machine lost) leaves its message unacknowledged in Redis: another worker
takes it back once ``visibility_timeout`` has passed since delivery, so it must be longer than the
longest task (an LLM walk with its retries), and is the delay before a lost task is redone. Each
worker process takes one message at a time (``worker_prefetch_multiplier=1``): a slow LLM walk does
not hold other messages hostage. JSON only, never pickle. Every task is idempotent (see
scheduler/executor.py), which is what makes redelivery safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis
    from celery import Celery

QUEUES = ("scan", "decide", "notify")
SCAN_TASK = "tradeops.scan"
DECIDE_TASK = "tradeops.decide"
NOTIFY_TASK = "tradeops.notify"
TASK_QUEUES = {SCAN_TASK: "scan", DECIDE_TASK: "decide", NOTIFY_TASK: "notify"}
# Bounded retries of a task that failed on a lost database or broker connection: 1, 2, 4 ... 300 s.
RETRY_MAX = 8
RETRY_BACKOFF_MAX = 300
PUBLISH_RETRY = {"max_retries": 15, "interval_start": 0, "interval_step": 1, "interval_max": 5}


def make_celery(broker_url: str, *, prefix: str, visibility_timeout: int) -> Celery:
    """The app, on the Redis at ``broker_url``. ``prefix`` starts every Redis key the broker and the
    workers use (queues, unacknowledged messages, done markers): deployments (or test runs) on one
    Redis with different prefixes share nothing. ``visibility_timeout``: seconds, see the module
    docstring."""
    from celery import Celery

    app = Celery("tradeops", broker=broker_url, set_as_current=False)
    # Abandoned messages are looked for every few seconds (at most a tenth of the timeout apart).
    restore_every = max(1, min(10, visibility_timeout // 10))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        event_serializer="json",
        task_ignore_result=True,  # nothing reads results: state lives in the database
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A broker connection lost while a late-acknowledged task runs: the task stops and its message
        # is delivered again (it could not be acknowledged on the lost connection anyway).
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # keep trying while running: Redis may come back
        # Sending (a scheduled scan, a decide or notify task) while Redis is away: tried for about a
        # minute (0, 1, 2 ... 5 s apart), then kombu's OperationalError reaches the caller.
        task_publish_retry=True,
        task_publish_retry_policy=PUBLISH_RETRY,
        broker_transport_options=transport_options(prefix, visibility_timeout, restore_every),
        task_routes={name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        task_default_queue="notify",
        task_create_missing_queues=True,
        # A worker process opens its services (database, venues, graph: seconds) before it says it is up.
        worker_proc_alive_timeout=120,
        worker_hijack_root_logger=False,  # tradeops's own logging (redaction, JSON lines) stays
        worker_redirect_stdouts=False,
        broker_channel_error_retry=True,
    )
    return app


def transport_options(prefix: str, visibility_timeout: int, restore_every: int) -> dict[str, Any]:
    return {
        "visibility_timeout": visibility_timeout,
        "global_keyprefix": prefix,
        "unacked_restore_interval": restore_every,
        "unacked_restore_throttle": 1,
        "socket_timeout": 30,  # a publish on a dead connection fails instead of hanging
        "socket_connect_timeout": 5,
        "health_check_interval": 10,
    }


def queue_key(prefix: str, queue: str) -> str:
    """The Redis list holding a queue's waiting messages (its length is the queue's depth)."""
    return f"{prefix}{queue}"


def stats_key(prefix: str) -> str:
    """The Redis hash of the workers' task counts: field ``QUEUE:OUTCOME``, value the count."""
    return f"{prefix}stats:tasks"


def queue_depths(client: redis.Redis, prefix: str) -> dict[str, int]:
    """Messages waiting in each queue (Redis LLEN of its list)."""
    return {queue: int(client.llen(queue_key(prefix, queue))) for queue in QUEUES}


def task_counts(client: redis.Redis, prefix: str) -> dict[tuple[str, str], int]:
    """{(queue, outcome): tasks} as the workers counted them."""
    counts: dict[tuple[str, str], int] = {}
    for field, value in client.hgetall(stats_key(prefix)).items():
        queue, _, outcome = (field.decode() if isinstance(field, bytes) else str(field)).partition(":")
        counts[(queue, outcome)] = int(value)
    return counts
