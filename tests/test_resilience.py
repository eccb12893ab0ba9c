"""The shared venue plumbing: retries only on transient failures (honouring Retry-After), the
circuit breaker, pacing, and the caches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from tests.support import bars_frame
from venues.adapters.cache import BarsCache, QuoteCache
from venues.adapters.resilience import (
    BreakerState,
    CircuitBreaker,
    RetryPolicy,
    Transient,
    VenueGuard,
    retry_after_seconds,
)
from venues.clock import SimulatedClock
from venues.errors import VenueAuthError, VenueError, VenueUnavailable


class Http(Exception):
    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def classify(exc: BaseException) -> Transient | None:
    if isinstance(exc, TimeoutError | ConnectionError):
        return Transient()
    if isinstance(exc, Http) and (exc.status == 429 or exc.status >= 500):
        return Transient(exc.retry_after)
    return None


def translate(exc: BaseException) -> BaseException:
    if isinstance(exc, Http) and exc.status == 401:
        return VenueAuthError("the venue refused the key: check TRADEOPS_X_API_KEY")
    return VenueError(f"the venue refused the request: {exc}")


class Script:
    """A request that fails with the given exceptions in turn, then answers "ok"."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def guard(*, attempts: int = 4, threshold: int = 5, timer: Timer | None = None) -> tuple[VenueGuard, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    breaker = CircuitBreaker("test", failure_threshold=threshold, reset_after=30, timer=timer or Timer())
    made = VenueGuard(
        "test", classify, translate, retry=RetryPolicy(attempts=attempts, base_delay=0.5), breaker=breaker, sleep=sleep
    )
    return made, slept


async def test_5xx_then_success_is_retried_with_backoff() -> None:
    made, slept = guard()
    request = Script(Http(503), Http(502))
    assert await made.call("fetch_tickers", request) == "ok"
    assert request.calls == 3 and made.requests == 3
    assert len(slept) == 2 and all(0 <= s <= 20 for s in slept)
    assert made.breaker.failures == 0


async def test_429_waits_at_least_retry_after() -> None:
    made, slept = guard()
    request = Script(Http(429, retry_after=7), TimeoutError())
    assert await made.call("fetch_ohlcv", request) == "ok"
    assert slept[0] >= 7  # the venue's own wait, not a shorter backoff
    assert request.calls == 3


async def test_a_retry_after_too_long_is_not_waited_for() -> None:
    made, slept = guard()
    with pytest.raises(VenueUnavailable, match=r"asked to wait 3600 s \(not retried\)"):
        await made.call("fetch_ohlcv", Script(Http(429, retry_after=3600)))
    assert slept == []


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_4xx_is_never_retried_and_is_translated(status: int) -> None:
    made, slept = guard()
    request = Script(Http(status))
    with pytest.raises(VenueError) as caught:
        await made.call("fetch_balance", request)
    assert request.calls == 1 and slept == []
    assert not isinstance(caught.value, VenueUnavailable)
    if status == 401:
        assert isinstance(caught.value, VenueAuthError) and "TRADEOPS_X_API_KEY" in str(caught.value)
    assert made.breaker.failures == 0  # the venue answered: it is not down


async def test_retries_run_out_into_a_readable_error() -> None:
    made, slept = guard(attempts=3)
    request = Script(TimeoutError("read timed out"), TimeoutError(), TimeoutError(), TimeoutError())
    with pytest.raises(VenueUnavailable, match=r"test did not answer fetch_tickers: TimeoutError.* after 3 tries"):
        await made.call("fetch_tickers", request)
    assert request.calls == 3 and len(slept) == 2


async def test_the_breaker_opens_then_lets_one_probe_through() -> None:
    timer = Timer()
    made, _ = guard(attempts=1, threshold=2, timer=timer)
    for _ in range(2):
        with pytest.raises(VenueUnavailable):
            await made.call("fetch_tickers", Script(ConnectionError("refused")))
    assert made.breaker.state is BreakerState.OPEN
    idle = Script()
    with pytest.raises(VenueUnavailable, match=r"paused after 2 failures in a row .*next try in 30 s"):
        await made.call("fetch_tickers", idle)
    assert idle.calls == 0  # nothing sent while open
    timer.now = 31
    assert made.breaker.state is BreakerState.HALF_OPEN
    # A failed probe opens it again at once.
    with pytest.raises(VenueUnavailable):
        await made.call("fetch_tickers", Script(ConnectionError()))
    assert made.breaker.state is BreakerState.OPEN
    timer.now = 62
    assert await made.call("fetch_tickers", Script()) == "ok"  # the probe succeeds: closed
    assert made.breaker.state is BreakerState.CLOSED and made.breaker.failures == 0


async def test_pacing_spaces_calls() -> None:
    import asyncio

    made = VenueGuard("paced", classify, translate, rate_per_second=20)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5):
        await made.call("x", Script())
    # 5 calls at 20/s: the limiter admits one per 50 ms after the first.
    assert loop.time() - started >= 0.15


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("12", now=now) == 12
    assert retry_after_seconds("Mon, 30 Nov 2026 12:00:30 GMT", now=now) == 30
    assert retry_after_seconds(None, now=now) is None
    assert retry_after_seconds("soon", now=now) is None


def test_quote_cache_expires_on_the_clock() -> None:
    clock = SimulatedClock(datetime(2026, 1, 5, tzinfo=UTC))
    cache: QuoteCache[float] = QuoteCache(clock, ttl=3)
    cache.put_many({"BTC/USDT": 1.0})
    assert cache.get_many(["BTC/USDT", "ETH/USDT"]) == ({"BTC/USDT": 1.0}, ["ETH/USDT"])
    clock.advance(timedelta(seconds=4))
    assert cache.get_many(["BTC/USDT"]) == ({}, ["BTC/USDT"])


def test_bars_cache_asks_only_for_what_it_lacks() -> None:
    rows = [
        ("2026-01-05T00:00Z", 1, 2, 0.5, 1.5, 10),
        ("2026-01-05T01:00Z", 1.5, 2.5, 1, 2, 11),
    ]
    frame = bars_frame(rows, "1h")
    cache = BarsCache(max_bars=3)
    key = ("BTC/USDT", "1h")
    hour = timedelta(hours=1)
    assert cache.next_open(key, hour) is None and not cache.up_to_date(key, datetime(2026, 1, 5, tzinfo=UTC), hour)
    cache.merge(key, frame)
    assert cache.next_open(key, hour) == datetime(2026, 1, 5, 2, tzinfo=UTC)
    # The last bar closed at 02:00; until 03:00 no new bar can have closed.
    assert cache.up_to_date(key, datetime(2026, 1, 5, 2, 59, tzinfo=UTC), hour)
    assert not cache.up_to_date(key, datetime(2026, 1, 5, 3, 0, tzinfo=UTC), hour)
    newer = bars_frame(
        [
            ("2026-01-05T01:00Z", 1.5, 2.6, 1, 2.1, 12),
            ("2026-01-05T02:00Z", 2, 3, 2, 3, 5),
            ("2026-01-05T03:00Z", 3, 3, 2, 2, 5),
        ],
        "1h",
    )
    held = cache.merge(key, newer)
    assert list(held.index) == list(pd.DatetimeIndex(["2026-01-05T01:00Z", "2026-01-05T02:00Z", "2026-01-05T03:00Z"]))
    assert held.loc["2026-01-05T01:00Z", "high"] == 2.6  # the newer copy wins; at most max_bars kept
