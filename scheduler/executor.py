"""Where a scan's work runs: "run this scan", "decide this candidate", "send this notice", behind one
small interface with two implementations.

- :class:`InProcessExecutor` (``TRADEOPS_EXECUTOR=inprocess``, the default): the scan job of today,
  in the scheduling process: ``scanner.tick`` then ``scanner.scan``, each candidate walked inline
  (side by side, up to the scanner's concurrency), the results handed to the run's hook.
- :class:`CeleryExecutor` (``TRADEOPS_EXECUTOR=celery``): each piece becomes a Celery task on its
  queue (``scan``, ``decide``, ``notify``; see scheduler/celery_app.py) that any `tradeops worker`
  runs (bot/worker.py holds the task bodies).

Every task is keyed, so a second delivery does nothing new: a scan by ``scan:WATCHLIST@FIRE_TIME``
(its Celery task id), a decision by ``decide:SIGNAL_ID`` (signal ids are deterministic, and
``SignalRunner.start`` returns what became of an id it has seen), a notice by its kind and signal id,
or a hash of its text and time (:meth:`Notice.key`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from scheduler.celery_app import DECIDE_TASK, NOTIFY_TASK, SCAN_TASK, TASK_QUEUES
from scheduler.driver import ScanTick
from storage.watchlists import WatchlistSpec
from tools.models import Candidate
from venues.metrics import metrics

if TYPE_CHECKING:
    from celery import Celery

    from agent.runner import WalkResult
    from scheduler.manage import PositionEvent
    from scheduler.scan import Scanner, ScanReport

log = logging.getLogger("tradeops.executor")

NoticeKind = Literal["card", "decision", "fill", "exit", "error", "notice"]
NOTICE_KINDS: tuple[str, ...] = get_args(NoticeKind)
EXECUTORS = ("inprocess", "celery")

OnScan = Callable[["WatchlistSpec", ScanTick, "list[PositionEvent]", "ScanReport"], Awaitable[None]]
"""Called after each in-process fire with the watchlist, the tick, the tick's position events and the report."""


@dataclass(frozen=True)
class DecideRequest:
    """One candidate of one scan, to walk through the graph up to its approval. JSON-safe
    (:meth:`to_json`, :meth:`from_json`): it crosses the broker as it is."""

    signal_id: str
    watchlist: str
    venue: str
    symbol: str
    timeframe: str
    candidate: dict[str, Any]  # Candidate.model_dump(mode="json")
    at: str  # ISO time of the scan that found it: a worker on a simulated clock acts at this moment

    @property
    def key(self) -> str:
        return f"decide:{self.signal_id}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DecideRequest:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def parsed_candidate(self) -> Candidate:
        return Candidate.model_validate(self.candidate)


@dataclass(frozen=True)
class Notice:
    """Something for the chats: a new card (``card``: the signal's stored card is sent), a decision
    (``decision``: its cards are edited to ``text``, the signal ending in ``status``), or an event
    of kind fill, exit, error or notice (``text``). ``at``: ISO time it happened (the bot's clock)."""

    kind: NoticeKind
    at: str
    signal_id: str = ""
    text: str = ""
    status: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in NOTICE_KINDS:
            raise ValueError(f"unknown notice kind {self.kind!r}; kinds: {', '.join(NOTICE_KINDS)}")

    @property
    def key(self) -> str:
        """What makes two deliveries the same notice: a card by its signal, a decision by its
        signal and status, an event by a hash of its kind, text and time."""
        if self.kind == "card":
            return f"notify:card:{self.signal_id}"
        if self.kind == "decision":
            return f"notify:decision:{self.signal_id}:{self.status}"
        digest = hashlib.sha256(f"{self.kind}|{self.at}|{self.text}".encode()).hexdigest()[:24]
        return f"notify:{self.kind}:{digest}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def scan_key(watchlist: str, fire_time: datetime) -> str:
    """The key (and Celery task id) of one scheduled scan: ``scan:WATCHLIST@FIRE_TIME``."""
    return f"scan:{watchlist}@{fire_time.isoformat()}"


class Executor(Protocol):
    async def run_scan(self, watchlist: WatchlistSpec, tick: ScanTick, *, trigger: str = "schedule") -> None:
        """The tick's housekeeping (expiries, fills, exits on the watchlist's venue), then the scan
        of ``watchlist`` at ``tick``, its candidates decided and their cards sent."""
        ...

    async def decide(self, request: DecideRequest) -> WalkResult | None:
        """Walk one candidate up to its approval; in process, its result; queued, None."""
        ...

    async def notify(self, notice: Notice) -> None:
        """Hand ``notice`` to the chat transports."""
        ...


NoticeSink = Callable[[Notice], Awaitable[None]]


class InProcessExecutor:
    """Everything in this process, exactly as the scan job always ran: ``scanner.tick`` then
    ``scanner.scan`` with the walks inline, then ``on_scan`` with what happened. ``sink`` takes
    :meth:`notify`'s notices (the run's transports); without one a notice is only logged."""

    def __init__(self, scanner: Scanner, on_scan: OnScan, *, sink: NoticeSink | None = None) -> None:
        self.scanner = scanner
        self.on_scan = on_scan
        self.sink = sink

    async def run_scan(self, watchlist: WatchlistSpec, tick: ScanTick, *, trigger: str = "schedule") -> None:
        events = await self.scanner.tick([watchlist.venue])
        report = await self.scanner.scan(watchlist, trigger=trigger)
        await self.on_scan(watchlist, tick, events, report)

    async def decide(self, request: DecideRequest) -> WalkResult:
        return await self.scanner.decide(request)

    async def notify(self, notice: Notice) -> None:
        if self.sink is None:
            log.info("notice %s not sent: no transport in this process", notice.key)
            return
        await self.sink(notice)


class CeleryExecutor:
    """Each call sends one task to its queue on ``app`` (scheduler/celery_app.py's app, configured by
    bot/), keyed as the module docstring says; the call returns once the broker has the message.
    Raises kombu's OperationalError when the broker cannot be reached (after its own retries)."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    async def _send(self, name: str, payload: dict[str, Any], key: str) -> None:
        # The broker client is blocking (kombu): a slow broker must not stall the event loop.
        await asyncio.to_thread(self.app.send_task, name, args=(payload,), task_id=key)
        metrics().observe_task_queued(TASK_QUEUES[name])

    async def run_scan(self, watchlist: WatchlistSpec, tick: ScanTick, *, trigger: str = "schedule") -> None:
        payload = {
            "watchlist": watchlist.model_dump(mode="json"),
            "fire_time": tick.fire_time.isoformat(),
            "bar_close": tick.bar_close.isoformat(),
            "job_id": tick.job_id,
            "trigger": trigger,
        }
        key = scan_key(watchlist.name, tick.fire_time)
        await self._send(SCAN_TASK, payload, key)
        log.info("scan %s queued", key)

    async def decide(self, request: DecideRequest) -> None:
        await self._send(DECIDE_TASK, request.to_json(), request.key)

    async def decide_all(self, requests: Sequence[DecideRequest]) -> None:
        for request in requests:
            await self.decide(request)

    async def notify(self, notice: Notice) -> None:
        await self._send(NOTIFY_TASK, notice.to_json(), notice.key)


def scan_payload(payload: dict[str, Any]) -> tuple[WatchlistSpec, ScanTick, str]:
    """The watchlist, tick and trigger of a scan task's payload (CeleryExecutor.run_scan's)."""
    tick = ScanTick(
        str(payload.get("job_id") or payload["watchlist"]["name"]),
        datetime.fromisoformat(payload["fire_time"]),
        datetime.fromisoformat(payload["bar_close"]),
    )
    return WatchlistSpec.model_validate(payload["watchlist"]), tick, str(payload.get("trigger") or "schedule")
