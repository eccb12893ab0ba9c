"""`tradeops run`'s health and metrics server, on ``TRADEOPS_HTTP_HOST``:``TRADEOPS_HTTP_PORT``
(aiohttp, which discord.py already brings; off when no port is set).

- ``GET /healthz``: 200 ``{"status": "up"}`` while the process runs (a liveness probe).
- ``GET /readyz``: 200 when every part answers, else 503; the JSON body names each part and what is
  wrong: ``{"status": "ready" | "not ready", "failing": [names], "checks": {name: {"ok": bool,
  "detail": str}}}``. Parts: ``database`` (``SELECT 1``), ``redis`` (PING; only when
  ``TRADEOPS_REDIS_URL`` is set), ``venue:NAME`` (each venue's ``health()``, the line
  `tradeops doctor` prints; a venue without one, the replay data, has nothing remote to ask), and
  ``transport:NAME`` (started, not asked the run to stop, and still taking updates). Each check
  gets ``READY_TIMEOUT_SECONDS``; a venue's answer is reused for ``venue_ttl`` seconds, since a
  venue's health costs requests against its rate limit and probes come every few seconds.
- ``GET /metrics``: the process's Prometheus metrics (venues/metrics.py) in the text format, or
  OpenMetrics when the scraper's Accept header asks for it (prometheus-client's own encoders). With
  the Celery executor also, read from Redis at each scrape (:class:`CeleryQueues`):
  ``tradeops_queue_depth{queue}`` (messages waiting) and ``tradeops_tasks_total{queue, outcome}``
  (tasks every worker ran, as they counted them in Redis).

Details are error messages worded for users (VenueError) or an exception's kind and first line,
with every registered secret redacted (bot/logs.py); none carries a password or a token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from sqlalchemy import Engine, text

from bot.logs import redact, register_secret
from bot.settings import Settings
from bot.transport import ReportsReadiness, StopRequest, Transport
from venues.base import Venue
from venues.errors import VenueError

log = logging.getLogger("tradeops.health")

READY_TIMEOUT_SECONDS = 5.0  # per check: a probe must answer before its own timeout (often 10 s)
VENUE_HEALTH_TTL_SECONDS = 30.0


class HealthServerError(Exception):
    """The server cannot listen where it was told; the message says where and what to change."""


@dataclass(frozen=True)
class Check:
    name: str  # database | redis | venue:NAME | transport:NAME
    ok: bool
    detail: str


def transport_problems(
    transports: Sequence[Transport], started: Sequence[Transport], requests: Sequence[StopRequest]
) -> dict[str, str | None]:
    """{transport name: None when it takes updates, else why not}: not started yet, asked the run
    to stop (its reason), or its own ``not_ready()``."""
    asked = {r.transport: r.reason for r in requests}
    problems: dict[str, str | None] = {}
    for transport in transports:
        if not any(t is transport for t in started):
            problems[transport.name] = "starting"
        elif transport.name in asked:
            problems[transport.name] = asked[transport.name]
        elif isinstance(transport, ReportsReadiness):
            problems[transport.name] = transport.not_ready()
        else:
            problems[transport.name] = None
    return problems


def _problem(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {READY_TIMEOUT_SECONDS:g} s"
    if isinstance(exc, VenueError):
        return redact(str(exc))
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


class Readiness:
    """The checks of ``/readyz``. ``transports``: called at each probe, {name: problem or None}."""

    def __init__(
        self,
        engine: Engine,
        venues: Mapping[str, Venue],
        transports: Callable[[], Mapping[str, str | None]],
        *,
        redis_url: str | None = None,
        venue_ttl: float | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.venues = venues
        self.transports = transports
        self.redis_url = redis_url
        self.venue_ttl = VENUE_HEALTH_TTL_SECONDS if venue_ttl is None else venue_ttl
        self._timer = timer
        self._venue_answers: dict[str, tuple[float, Check]] = {}  # name -> (when asked, answer)
        self._venue_lock = asyncio.Lock()  # probes arriving together ask each venue once

    async def checks(self) -> list[Check]:
        parts: list[Awaitable[Check]] = [self._check("database", self._database())]
        if self.redis_url:
            parts.append(self._check("redis", self._redis(self.redis_url)))
        found, venues = await asyncio.gather(asyncio.gather(*parts), self._venue_checks())
        checks = [*found, *venues]
        for name, problem in self.transports().items():
            checks.append(Check(f"transport:{name}", problem is None, problem or "taking updates"))
        return checks

    @staticmethod
    async def _check(name: str, probe: Awaitable[str]) -> Check:
        try:
            return Check(name, True, await asyncio.wait_for(probe, READY_TIMEOUT_SECONDS))
        except Exception as exc:
            return Check(name, False, _problem(exc))

    async def _database(self) -> str:
        def ping() -> str:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return f"{self.engine.dialect.name} answers"

        return await asyncio.to_thread(ping)

    @staticmethod
    async def _redis(url: str) -> str:
        import redis.asyncio as redis

        client = redis.from_url(url, socket_connect_timeout=READY_TIMEOUT_SECONDS, socket_timeout=READY_TIMEOUT_SECONDS)
        try:
            await client.ping()
        finally:
            await client.aclose()
        return "PONG"

    async def _venue_checks(self) -> list[Check]:
        async with self._venue_lock:
            now = self._timer()
            due = [
                name
                for name in self.venues
                if name not in self._venue_answers or now - self._venue_answers[name][0] >= self.venue_ttl
            ]
            answers = await asyncio.gather(*(self._check(f"venue:{n}", self._venue(self.venues[n])) for n in due))
            for name, answer in zip(due, answers, strict=True):
                self._venue_answers[name] = (now, answer)
            return [self._venue_answers[name][1] for name in self.venues]

    @staticmethod
    async def _venue(venue: Venue) -> str:
        health = getattr(venue, "health", None)
        if health is None:
            return "local data: nothing remote to ask"
        return str(await health())


class CeleryQueues:
    """A Prometheus collector of the Celery executor's queues, read from Redis at each scrape. Redis
    not answering leaves the two metrics without samples (``/readyz`` names the problem)."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self.prefix = prefix

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily("tradeops_queue_depth", "Celery tasks waiting in each queue", labels=["queue"]),
            CounterMetricFamily(
                "tradeops_tasks",
                "Celery tasks run by the workers, by queue and outcome (done, seen, duplicate, busy, retried, failed)",
                labels=["queue", "outcome"],
            ),
        )

    def describe(self) -> list[Metric]:
        return list(self._families())  # registering asks Redis nothing

    def collect(self) -> list[Metric]:
        import redis

        from scheduler.celery_app import queue_depths, task_counts

        depth, tasks = self._families()
        try:
            depths, counts = queue_depths(self.client, self.prefix), task_counts(self.client, self.prefix)
        except redis.RedisError as exc:
            log.warning("queue metrics not read: %s", redact(str(exc)))
            return [depth, tasks]
        for queue, waiting in depths.items():
            depth.add_metric([queue], waiting)
        for (queue, outcome), count in sorted(counts.items()):
            tasks.add_metric([queue, outcome], count)
        return [depth, tasks]


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``host``:``port`` (0 = any free port; ``port``
    is the bound one after ``start``)."""

    def __init__(self, host: str, port: int, readiness: Readiness, registry: CollectorRegistry) -> None:
        self.host = host
        self.port = port
        self.readiness = readiness
        self.registry = registry
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        self._failing: list[str] | None = None  # at the last /readyz

    async def start(self) -> None:
        """Listen; HealthServerError when the address cannot be bound (in use, not this machine's)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise HealthServerError(
                f"the health server cannot listen on {self.host}:{self.port} ({exc.strerror or exc}): "
                "set TRADEOPS_HTTP_PORT to a free port (or leave it empty for no server), "
                "TRADEOPS_HTTP_HOST to an address of this machine"
            ) from None
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("health server on http://%s:%d (/healthz, /readyz, /metrics)", self.host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "up"})

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = await self.readiness.checks()
        failing = [c.name for c in checks if not c.ok]
        body: dict[str, Any] = {
            "status": "not ready" if failing else "ready",
            "failing": failing,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
        }
        if failing != self._failing:  # said once per change, not at every probe
            if failing:
                log.warning("not ready: %s", "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok))
            else:
                log.info("ready: %s", ", ".join(c.name for c in checks))
            self._failing = failing
        return web.Response(
            text=redact(json.dumps(body, ensure_ascii=False)),
            status=503 if failing else 200,
            content_type="application/json",
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = await asyncio.to_thread(encode, self.registry)  # a collector may ask Redis
        return web.Response(body=body, headers={"Content-Type": content_type})


@asynccontextmanager
async def serving_health(
    settings: Settings,
    engine: Engine,
    venues: Mapping[str, Venue],
    transports: Callable[[], Mapping[str, str | None]],
    registry: CollectorRegistry,
) -> AsyncIterator[HealthServer | None]:
    """The health server while the block runs, when ``settings.http_port`` is set (else None).
    Raises HealthServerError when it cannot listen."""
    if settings.http_port is None:
        yield None
        return
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    if redis_url:
        register_secret(urlsplit(redis_url).password)  # a driver's message may quote the URL
    readiness = Readiness(engine, venues, transports, redis_url=redis_url)
    server = HealthServer(settings.http_host, settings.http_port, readiness, registry)
    queues = CeleryQueues(redis_url, settings.celery_prefix) if redis_url and settings.executor == "celery" else None
    if queues is not None:
        registry.register(queues)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        if queues is not None:
            registry.unregister(queues)
            queues.client.close()
