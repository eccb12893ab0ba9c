"""Calling a venue's API: pacing, retries with backoff on transient failures only, and a circuit
breaker per venue.

An adapter wraps every request in :meth:`VenueGuard.call`. It supplies ``classify``, which says
whether a failure is transient (network error, timeout, HTTP 5xx, 429) and how long the venue asked
to wait (Retry-After, seconds), and ``translate``, which turns a permanent failure (bad key, unknown
symbol, any other 4xx) into a :class:`~venues.errors.VenueError` a user can read. Permanent failures
are never retried and do not trip the breaker (the venue answered); transient ones are retried with
exponential backoff and full jitter (tenacity), never sooner than Retry-After, and when they run out
they count as one failure of the venue. After ``failure_threshold`` consecutive failures the breaker
opens: calls fail at once with :class:`~venues.errors.VenueUnavailable` until ``reset_after``
seconds pass, then one probe call is let through (half-open); its success closes the breaker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TypeVar

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from venues.errors import VenueError, VenueUnavailable
from venues.metrics import metrics

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Transient:
    """A failure worth retrying; ``retry_after`` is the venue's own wait in seconds, if it gave one."""

    retry_after: float | None = None


# exc -> Transient (retry it) or None (permanent: translate and raise at once).
Classify = Callable[[BaseException], Transient | None]
# A permanent failure -> the user-readable error raised instead (return the exception itself to keep it).
Translate = Callable[[BaseException], BaseException]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` counts the first call. Waits grow from ``base_delay`` seconds, doubling, with
    jitter, up to ``max_delay``; a Retry-After longer than ``max_retry_after`` is not waited for (the
    call fails at once with VenueUnavailable saying when to try again)."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Consecutive-failure breaker with a half-open probe. ``timer`` gives seconds (monotonic)."""

    def __init__(
        self,
        venue: str,
        *,
        failure_threshold: int = 5,
        reset_after: float = 30.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        self.venue = venue
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._timer = timer
        self.failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.last_problem = ""

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._timer() - self._opened_at >= self.reset_after:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self, what: str) -> None:
        """Raise VenueUnavailable while open, or while the half-open probe is still out."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return
        assert self._opened_at is not None
        wait = max(0.0, self.reset_after - (self._timer() - self._opened_at))
        raise VenueUnavailable(
            self.venue,
            what,
            f"paused after {self.failures} failures in a row (last: {self.last_problem}); next try in {wait:.0f} s",
        )

    def success(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self, problem: str) -> None:
        self.failures += 1
        self.last_problem = problem
        if self._probing or self.failures >= self.failure_threshold:
            self._opened_at = self._timer()
        self._probing = False


class VenueGuard:
    """Every request of one venue goes through :meth:`call`: paced by ``rate_per_second`` (None: no
    pacing of our own, e.g. when the client library paces), retried per ``retry``, and cut off by the
    breaker. ``sleep`` is injectable so tests see the waits without waiting."""

    def __init__(
        self,
        venue: str,
        classify: Classify,
        translate: Translate,
        *,
        rate_per_second: float | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_second is not None and rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second}")
        self.venue = venue
        self.classify = classify
        self.translate = translate
        # aiolimiter's leaky bucket: max_rate per time_period; a capacity of 1 spaces calls evenly.
        self.limiter = AsyncLimiter(1, 1 / rate_per_second) if rate_per_second else None
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(venue)
        self._sleep = sleep
        self.requests = 0  # calls actually sent (retries included): what benchmarks count
        self.waits: list[float] = []  # backoff waits taken, seconds

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(multiplier=self.retry.base_delay, max=self.retry.max_delay)(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        verdict = self.classify(exc) if exc is not None else None
        after = verdict.retry_after if verdict is not None and verdict.retry_after is not None else 0.0
        wait = max(float(backoff), after)
        self.waits.append(wait)
        return wait

    def _retryable(self, exc: BaseException) -> bool:
        verdict = self.classify(exc)
        if verdict is None:
            return False
        # A wait longer than we are willing to hold a scan for: give up now.
        return verdict.retry_after is None or verdict.retry_after <= self.retry.max_retry_after

    async def call(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        """Run ``request`` (a fresh coroutine per attempt). Raises VenueUnavailable when transient
        failures outlast the retries or the breaker is open, the translated error for a permanent one."""
        try:
            self.breaker.before_call(what)
        except VenueUnavailable:
            metrics().observe_venue_error(self.venue, "circuit_open")
            raise
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if self.limiter is not None:
                        async with self.limiter:
                            self._count_request()
                            result = await request()
                    else:
                        self._count_request()
                        result = await request()
        except VenueError:
            metrics().observe_venue_error(self.venue, "refused")
            raise
        except Exception as exc:
            verdict = self.classify(exc)
            if verdict is None:
                self.breaker.success()  # the venue answered; the request was wrong
                metrics().observe_venue_error(self.venue, "refused")
                raise self.translate(exc) from exc
            problem = _describe(exc, verdict)
            self.breaker.failure(problem)
            metrics().observe_venue_error(self.venue, "unavailable")
            tries = f"after {self.retry.attempts} tries" if self._retryable(exc) else "(not retried)"
            raise VenueUnavailable(self.venue, what, f"{problem} {tries}") from exc
        self.breaker.success()
        return result

    def _count_request(self) -> None:
        self.requests += 1
        metrics().observe_venue_request(self.venue)


def _describe(exc: BaseException, verdict: Transient) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    kind = type(exc).__name__
    wait = f"; asked to wait {verdict.retry_after:.0f} s" if verdict.retry_after is not None else ""
    return f"{kind}{': ' + text if text else ''}{wait}"


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """Seconds from an HTTP Retry-After header: delta-seconds, or an HTTP date measured from ``now``
    (the adapter's clock); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - now).total_seconds())
