"""Helpers of the lake tests: a source venue that fails or lacks bars on purpose, and file
fingerprints to prove what a command did not touch."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from venues.clock import SimulatedClock
from venues.errors import VenueError
from venues.models import Instrument, Quote
from venues.replay import ReplayVenue

# After every shipped series ends: every replay bar is final.
AFTER_DATA = datetime(2022, 6, 1, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class FlakySource:
    """A replay market seen as a source venue that (optionally) breaks after ``fail_after`` bars()
    calls, like a venue whose connection drops mid-download, and lacks the bars opening in
    ``missing`` ranges, like a venue with holes in its history. ``name`` may differ from the
    replay venue's, to stand for a second exchange listing the same symbols."""

    def __init__(
        self,
        market: str = "crypto",
        *,
        name: str | None = None,
        fail_after: int | None = None,
        missing: Sequence[tuple[datetime, datetime]] = (),
        clock: SimulatedClock | None = None,
    ) -> None:
        self.clock = clock or SimulatedClock(AFTER_DATA)
        self.replay = ReplayVenue(market, self.clock)
        self.name = name or self.replay.name
        self.fail_after = fail_after
        self.missing = list(missing)
        self.calls = 0

    async def instruments(self) -> list[Instrument]:
        return [i.model_copy(update={"venue": self.name}) for i in await self.replay.instruments()]

    async def instrument(self, symbol: str) -> Instrument:
        return (await self.replay.instrument(symbol)).model_copy(update={"venue": self.name})

    async def snapshot(self, symbols: Sequence[str]) -> dict[str, Quote]:
        return await self.replay.snapshot(symbols)

    async def bars(
        self,
        symbol: str,
        timeframe: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise VenueError(f"{self.name}: connection reset by peer (call {self.calls})")
        frame = await self.replay.bars(symbol, timeframe, start=start, end=end, limit=limit)
        for gap_start, gap_end in self.missing:
            index = pd.DatetimeIndex(frame.index)
            frame = frame[(index < gap_start) | (index >= gap_end)]
        return frame


def fingerprint(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: size and SHA-256, by relative path."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}
