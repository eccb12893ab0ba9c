"""The process's Prometheus metrics: every metric tradeops exports, held by one :class:`Metrics` on
its own ``CollectorRegistry`` (never prometheus_client's global one, so two runs in one test process
count apart), served by `tradeops run` at ``/metrics`` (bot/health.py).

It lives in ``venues/`` only because that is the bottom of the import chain (bot -> scheduler ->
agent -> tools -> venues): every instrumented module can reach it. Instrumented code calls
``metrics().observe_...``; a process that serves the metrics installs its own object with
:func:`installed`; until then the calls count into a private registry that nobody reads.

Labels take values from small fixed sets (venue names from the settings, the configured model,
outcomes and statuses): never a symbol, a watchlist name or a chat id, which a user types.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

# Seconds. A scan is a screen plus a walk per candidate (an LLM call each, on the LLM policy).
SCAN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Seconds of the bot's clock from a card to its answer; the approval window defaults to 15 minutes.
APPROVAL_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 86400.0)
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class Metrics:
    """Every metric of one process, on ``registry`` (a new one when not given), with
    prometheus-client's standard process, Python platform and garbage-collector collectors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):  # they only read /proc and gc
            r.register(standard)
        self.scans = Counter(
            "tradeops_scans",
            "Scans of a watchlist, by venue and result (done, failed, busy)",
            ["venue", "result"],
            registry=r,
        )
        self.scan_duration = Histogram(
            "tradeops_scan_duration_seconds",
            "Wall-clock seconds of one scan: the screen and each candidate's walk up to its card",
            ["venue"],
            buckets=SCAN_BUCKETS,
            registry=r,
        )
        self.candidates = Counter(
            "tradeops_scan_candidates", "Candidates the screens found, by venue", ["venue"], registry=r
        )
        self.signals = Counter(
            "tradeops_signals",
            "Signal walks ended, by venue and outcome (pending: a card went out; hold, abstained, blocked, failed)",
            ["venue", "outcome"],
            registry=r,
        )
        self.decisions = Counter(
            "tradeops_signal_decisions",
            "Answers that decided a pending signal (approved, rejected, expired), by the signal's status after",
            ["decision", "status"],
            registry=r,
        )
        self.approval_latency = Histogram(
            "tradeops_approval_latency_seconds",
            "Seconds of the bot's clock (simulated on replay) from a card to the answer that decided it",
            ["decision"],
            buckets=APPROVAL_BUCKETS,
            registry=r,
        )
        self.orders = Counter(
            "tradeops_orders",
            "Paper orders placed, by venue and status at placement (pending, rejected)",
            ["venue", "status"],
            registry=r,
        )
        self.fills = Counter("tradeops_fills", "Paper fills, by venue and side", ["venue", "side"], registry=r)
        # The paper broker counts each order and fill, thousands per backtest: each labelled
        # child is looked up once (``labels`` validates and locks on every call).
        self._order_counts: dict[tuple[str, str], Counter] = {}
        self._fill_counts: dict[tuple[str, str], Counter] = {}
        self.venue_requests = Counter(
            "tradeops_venue_requests", "Requests sent to a venue's API (each retry counts)", ["venue"], registry=r
        )
        self.venue_errors = Counter(
            "tradeops_venue_errors",
            "Venue calls that failed, by kind: unavailable (transient failures outlasted the retries), "
            "circuit_open (refused at once by the breaker), refused (the venue answered no)",
            ["venue", "kind"],
            registry=r,
        )
        self.llm_calls = Counter(
            "tradeops_llm_calls",
            "LLM chat calls, by model, outcome (ok or the failure kind) and whether the cache answered",
            ["model", "outcome", "cached"],
            registry=r,
        )
        self.llm_tokens = Counter(
            "tradeops_llm_tokens",
            "LLM tokens paid for, by model and kind (prompt, completion)",
            ["model", "kind"],
            registry=r,
        )
        self.llm_cost = Counter(
            "tradeops_llm_cost_usd", "LLM cost in US dollars from the price table, by model", ["model"], registry=r
        )
        self.llm_latency = Histogram(
            "tradeops_llm_latency_seconds",
            "Wall-clock seconds of one LLM chat call, retries and cache look-up included, by model",
            ["model"],
            buckets=LLM_BUCKETS,
            registry=r,
        )
        self.tasks_queued = Counter(
            "tradeops_tasks_queued",
            "Celery tasks this process sent, by queue (scan, decide, notify)",
            ["queue"],
            registry=r,
        )
        self.scheduler_leader = Gauge(
            "tradeops_scheduler_leader",
            "1 while this process holds the scheduler (fires the scans), else 0",
            registry=r,
        )

    # Each call site is one line; the label values are made here, so they stay consistent.

    def observe_scan(self, venue: str, result: str, seconds: float, candidates: int = 0) -> None:
        self.scans.labels(venue, result).inc()
        if result != "busy":
            self.scan_duration.labels(venue).observe(seconds)
        if candidates:
            self.candidates.labels(venue).inc(candidates)

    def observe_walk(self, venue: str, outcome: str) -> None:
        self.signals.labels(venue, outcome or "unknown").inc()

    def observe_decision(self, decision: str, status: str, latency_seconds: float | None) -> None:
        self.decisions.labels(decision, status or "unknown").inc()
        if latency_seconds is not None:
            self.approval_latency.labels(decision).observe(max(0.0, latency_seconds))

    def observe_order(self, venue: str, status: str) -> None:
        count = self._order_counts.get((venue, status))
        if count is None:
            count = self._order_counts[(venue, status)] = self.orders.labels(venue, status)
        count.inc()

    def observe_fill(self, venue: str, side: str) -> None:
        count = self._fill_counts.get((venue, side))
        if count is None:
            count = self._fill_counts[(venue, side)] = self.fills.labels(venue, side)
        count.inc()

    def observe_venue_request(self, venue: str) -> None:
        self.venue_requests.labels(venue).inc()

    def observe_venue_error(self, venue: str, kind: str) -> None:
        self.venue_errors.labels(venue, kind).inc()

    def observe_llm_call(
        self,
        model: str,
        outcome: str,
        *,
        cached: bool,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: Decimal,
        seconds: float,
    ) -> None:
        self.llm_calls.labels(model, outcome, "true" if cached else "false").inc()
        if prompt_tokens:
            self.llm_tokens.labels(model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.llm_tokens.labels(model, "completion").inc(completion_tokens)
        if cost_usd:
            self.llm_cost.labels(model).inc(float(cost_usd))
        self.llm_latency.labels(model).observe(seconds)

    def observe_task_queued(self, queue: str) -> None:
        self.tasks_queued.labels(queue).inc()

    def set_scheduler_leader(self, held: bool) -> None:
        """The hook for the scheduler's leader lock: today each `tradeops run` holds its database's
        run lock and so the scheduler (1 while it schedules); with several processes on one database
        (the Celery executor), the one that takes the lease sets 1 and sets 0 when it loses it."""
        self.scheduler_leader.set(1 if held else 0)


_current = Metrics()


def metrics() -> Metrics:
    """The metrics this process counts into now."""
    return _current


@contextmanager
def installed(new: Metrics) -> Iterator[Metrics]:
    """Count into ``new`` until the block ends, then into what was counted into before."""
    global _current
    previous, _current = _current, new
    try:
        yield new
    finally:
        _current = previous
