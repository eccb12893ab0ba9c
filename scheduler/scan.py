"""One scan of a watchlist: the screen, then a graph walk per candidate, decided side by side (or,
with a ``delegate``, handed to it: the Celery executor queues one decide task per candidate); and
the per-tick housekeeping (expired approvals, managed exits, equity snapshots)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agent.deps import AgentDeps
from agent.runner import SignalRunner, WalkResult
from scheduler.executor import DecideRequest
from scheduler.manage import PositionEvent, PositionManager
from storage.tables import ScanRun
from storage.watchlists import WatchlistSpec
from tools.models import Candidate
from tools.screen import ScreenConfig, screen
from venues.errors import VenueError
from venues.metrics import metrics
from venues.timeframes import parse_timeframe

log = logging.getLogger("tradeops.scan")

DEFAULT_CONCURRENCY = 4
# Confirmation timeframes for each base timeframe, where a watchlist names none.
CONFIRM_LADDER: dict[str, tuple[str, ...]] = {
    "1m": ("5m", "15m", "1h"),
    "5m": ("15m", "1h", "1d"),
    "15m": ("1h", "4h", "1d"),
    "30m": ("1h", "4h", "1d"),
    "1h": ("4h", "1d"),
    "4h": ("1d", "1w"),
    "1d": ("1w",),
}


MIN_SCAN_INTERVAL = timedelta(minutes=30)


def scan_interval(watchlist: WatchlistSpec, calendar: str) -> timedelta:
    """How often a watchlist scans: crypto at every candle close of its timeframe; exchanges every
    30 minutes inside the sessions (a daily watchlist once, at the close)."""
    timeframe = parse_timeframe(watchlist.timeframe).delta
    if calendar == "24/7":
        return timeframe
    return max(timeframe, MIN_SCAN_INTERVAL)


def signal_id_for(scope: str, symbol: str, bar_close: datetime) -> str:
    """Deterministic and short enough to type: the same scan of the same bar gives the same id,
    so a re-run decides nothing twice; lower-case base32 of a hash, 8 characters."""
    digest = hashlib.sha256(f"{scope}|{symbol}|{bar_close.isoformat()}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:8]


@dataclass(frozen=True)
class ScanReport:
    watchlist: str
    venue: str
    at: datetime
    universe: int
    shortlisted: int
    candidates: tuple[Candidate, ...]
    skipped: dict[str, str]
    walks: tuple[WalkResult, ...] = ()
    error: str = ""
    # Candidates handed to the scanner's delegate instead of walked here (their walks run elsewhere).
    delegated: tuple[str, ...] = ()
    # Candidates not walked, with why: their market settles in a currency the venue's paper account
    # holds no cash in (the reason names the setting that funds it).
    not_walked: dict[str, str] = field(default_factory=dict)

    @property
    def pending(self) -> list[WalkResult]:
        return [w for w in self.walks if w.status == "pending"]


WalkDelegate = Callable[[Sequence[DecideRequest]], Awaitable[None]]
"""Takes a scan's candidates instead of walking them (the Celery executor: a decide task each)."""


@dataclass
class Scanner:
    runner: SignalRunner
    manager: PositionManager
    concurrency: int = DEFAULT_CONCURRENCY
    delegate: WalkDelegate | None = None
    _busy: set[str] = field(default_factory=set)

    @property
    def deps(self) -> AgentDeps:
        return self.runner.deps

    def screen_config(self, watchlist: WatchlistSpec) -> ScreenConfig:
        confirm = watchlist.confirm or CONFIRM_LADDER.get(watchlist.timeframe, ("1d",))
        return ScreenConfig(timeframe=watchlist.timeframe, confirm=confirm, min_score=watchlist.min_score)

    async def scan(self, watchlist: WatchlistSpec, *, trigger: str = "schedule") -> ScanReport:
        """Screen the watchlist and walk each candidate up to its approval. A second scan of the
        same watchlist while one runs is refused, not queued (the scheduler coalesces too)."""
        now = self.deps.clock.now()
        started = time.perf_counter()
        if watchlist.name in self._busy:
            metrics().observe_scan(watchlist.venue, "busy", 0.0)
            return ScanReport(watchlist.name, watchlist.venue, now, 0, 0, (), {}, error="a scan of it is running")
        self._busy.add(watchlist.name)
        run = self.deps.signals.start_scan(
            ScanRun(watchlist=watchlist.name, venue=watchlist.venue, trigger=trigger, started_at=now)
        )
        assert run.id is not None
        try:
            venue = self.deps.venue(watchlist.venue)
            result = await screen(venue, watchlist.symbols, self.screen_config(watchlist), now=now)
            not_walked = await self._unfunded(watchlist.venue, [c.symbol for c in result.candidates])
            requests = self.requests(watchlist, [c for c in result.candidates if c.symbol not in not_walked], now)
            walks: tuple[WalkResult, ...] = ()
            if self.delegate is not None:
                await self.delegate(requests)
            else:
                walks = await self._walk(requests)
        except Exception as exc:
            self.deps.signals.finish_scan(run.id, at=self.deps.clock.now(), status="failed", error=str(exc)[:1000])
            log.exception("scan of %s failed", watchlist.name)
            metrics().observe_scan(watchlist.venue, "failed", time.perf_counter() - started)
            return ScanReport(watchlist.name, watchlist.venue, now, len(watchlist.symbols), 0, (), {}, error=str(exc))
        finally:
            self._busy.discard(watchlist.name)
        self.deps.signals.finish_scan(
            run.id,
            at=self.deps.clock.now(),
            status="done",
            universe_size=result.universe,
            candidates=len(result.candidates),
            signals=sum(1 for w in walks if w.created),
        )
        metrics().observe_scan(watchlist.venue, "done", time.perf_counter() - started, len(result.candidates))
        return ScanReport(
            watchlist.name,
            watchlist.venue,
            now,
            result.universe,
            len(result.shortlisted),
            result.candidates,
            result.skipped,
            walks,
            not_walked=not_walked,
            delegated=tuple(r.signal_id for r in requests) if self.delegate is not None else (),
        )

    async def _unfunded(self, venue_name: str, symbols: Sequence[str]) -> dict[str, str]:
        """The symbols whose market settles in a currency the venue's paper account has no cash in,
        each with the account's reason (which names the setting); one account read per currency."""
        venue = self.deps.venue(venue_name)
        broker = venue.broker_required()
        reasons: dict[str, str] = {}
        by_currency: dict[str, str] = {}
        for symbol in symbols:
            currency = (await venue.instrument(symbol)).currency
            if currency not in by_currency:
                by_currency[currency] = (await broker.account(currency)).unfunded
            if by_currency[currency]:
                reasons[symbol] = f"skipped: {by_currency[currency]}"
                log.info("%s %s %s", venue_name, symbol, reasons[symbol])
        return reasons

    @staticmethod
    def requests(watchlist: WatchlistSpec, candidates: Sequence[Candidate], at: datetime) -> list[DecideRequest]:
        """One decide request per candidate, under its deterministic signal id."""
        return [
            DecideRequest(
                signal_id=signal_id_for(watchlist.name, c.symbol, c.bar_close),
                watchlist=watchlist.name,
                venue=watchlist.venue,
                symbol=c.symbol,
                timeframe=c.timeframe,
                candidate=c.model_dump(mode="json"),
                at=at.isoformat(),
            )
            for c in candidates
        ]

    async def decide(self, request: DecideRequest) -> WalkResult:
        """Walk one candidate up to its approval (``SignalRunner.start``: a signal id seen before
        returns what became of it)."""
        return await self.runner.start(
            signal_id=request.signal_id,
            venue=request.venue,
            symbol=request.symbol,
            timeframe=request.timeframe,
            candidate=request.parsed_candidate(),
            watchlist=request.watchlist,
        )

    async def _walk(self, requests: Sequence[DecideRequest]) -> tuple[WalkResult, ...]:
        limit = asyncio.Semaphore(self.concurrency)

        async def one(request: DecideRequest) -> WalkResult:
            async with limit:
                return await self.decide(request)

        return tuple(await asyncio.gather(*(one(r) for r in requests)))

    async def signal_now(self, venue_name: str, symbol: str, timeframe: str, *, actor: str) -> WalkResult:
        """A decision on demand for one symbol: the screen's rules are checked on it (with no
        minimum score), and the graph walks whatever they found, a setup or not. A market whose
        currency the paper account has no cash in raises VenueError naming the setting."""
        venue = self.deps.venue(venue_name)
        unfunded = await self._unfunded(venue_name, [symbol])
        if unfunded:
            raise VenueError(f"{symbol} {unfunded[symbol]}")
        now = self.deps.clock.now()
        spec = WatchlistSpec(name=f"on-demand:{actor}", venue=venue_name, symbols=(symbol,), timeframe=timeframe)
        config = self.screen_config(spec).model_copy(update={"min_score": 0.0, "top_n": 1, "shortlist": 1})
        result = await screen(venue, [symbol], config, now=now)
        candidate = result.candidates[0] if result.candidates else None
        instrument = await venue.instrument(symbol)
        used_tf = candidate.timeframe if candidate else max(timeframe, instrument.timeframe, key=_seconds)
        signal_id = signal_id_for(f"manual:{venue_name}", symbol, now)
        notes = () if candidate else (f"screen: {result.skipped.get(symbol, 'no setup')}",)
        return await self.runner.start(
            signal_id=signal_id, venue=venue_name, symbol=symbol, timeframe=used_tf, candidate=candidate, notes=notes
        )

    async def tick(self, venues: Sequence[str]) -> list[PositionEvent]:
        """Housekeeping on every scheduler fire: expire approvals, fill orders, manage exits."""
        await self.runner.expire_due()
        events: list[PositionEvent] = []
        for name in venues:
            events.extend(await self.manager.tick(name))
        return events


def _seconds(name: str) -> int:
    return parse_timeframe(name).seconds
