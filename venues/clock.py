"""The one source of time. Nothing else in tradeops calls ``datetime.now()``.

The Clock lives in ``venues`` (not ``scheduler`` as DESIGN.md's layout card suggests) because the
replay venue and the paper broker need it and ``venues`` may import no other package; the scheduler
uses it from here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


def ensure_utc(moment: datetime) -> datetime:
    """Naive datetimes are refused: a wrong time zone is a silent, expensive bug in trading."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no time zone; pass an aware UTC datetime")
    return moment.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware moment (bar times' resolution: int64 arrays
    searched with numpy); ValueError for a naive one."""
    if moment.tzinfo is None:
        ensure_utc(moment)  # raises with a readable message
    return (moment - _EPOCH) // _ONE_US


def from_epoch_us(value: int) -> datetime:
    """The aware UTC moment ``value`` microseconds after the Unix epoch (inverse of :func:`epoch_us`)."""
    return _EPOCH + timedelta(0, 0, int(value))  # (days, seconds, microseconds): positional is faster


def moment_text(moment: datetime | str) -> str:
    """A time as people read it: ``2021-07-03 00:00 UTC`` (an ISO string is parsed first)."""
    parsed = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return f"{ensure_utc(parsed):%Y-%m-%d %H:%M} UTC"


def window_text(start: datetime, end: datetime) -> tuple[str, str]:
    """A [start, end) window as the user typed it: a midnight start is its date, a midnight end the
    day before it (``--to 2021-07-10`` is inclusive and is stored as 2021-07-11 00:00); any other
    moment reads ``YYYY-MM-DD HH:MM UTC``."""
    start, end = ensure_utc(start), ensure_utc(end)
    midnight = datetime.min.time()
    start_text = f"{start:%Y-%m-%d}" if start.time() == midnight else moment_text(start)
    end_text = f"{end - timedelta(days=1):%Y-%m-%d}" if end.time() == midnight else moment_text(end)
    return start_text, end_text


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, aware, UTC."""
        ...

    async def sleep_until(self, moment: datetime) -> None:
        """Wait until ``moment``: real time for the real clock, an instant jump for the simulated one."""
        ...


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        delay = (ensure_utc(moment) - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class SimulatedClock:
    """A clock that only moves when told to; it never goes backwards."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)

    def now(self) -> datetime:
        return self._now

    def advance_to(self, moment: datetime) -> None:
        moment = ensure_utc(moment)
        if moment < self._now:
            raise ValueError(f"simulated clock cannot go back from {self._now.isoformat()} to {moment.isoformat()}")
        self._now = moment

    def advance(self, delta: timedelta) -> None:
        self.advance_to(self._now + delta)

    async def sleep_until(self, moment: datetime) -> None:
        moment = ensure_utc(moment)
        if moment > self._now:
            self._now = moment


class ScaledClock:
    """Simulated time that runs ``speed`` times faster than real time, for `tradeops run --replay`.

    ``now() = start + (monotonic() - monotonic at creation) * speed``: continuous, and never
    backwards because the monotonic source never is (a wall-clock step, NTP or DST, changes
    nothing). ``sleep_until(moment)`` sleeps ``(moment - now) / speed`` real seconds, and again for
    what is left if it woke early, so it returns with ``now() >= moment``.

    ``monotonic`` (seconds, float) and ``sleep`` (real seconds) are injectable for tests.
    """

    def __init__(
        self,
        start: datetime,
        speed: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"speed must be a positive number, got {speed}")
        self._start = ensure_utc(start)
        self.speed = speed
        self._monotonic = monotonic
        self._sleep = sleep
        self._origin = monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(self._monotonic() - self._origin) * self.speed)

    async def sleep_until(self, moment: datetime) -> None:
        moment = ensure_utc(moment)
        while (left := (moment - self.now()).total_seconds()) > 0:
            # At least a microsecond of simulated time per wake: float rounding must not spin.
            await self._sleep(max(left, 1e-6) / self.speed)
