"""Backfill: download a venue's history through its ``bars()`` into the bars lake, chunk by chunk.

Each chunk is a span of ``chunk_bars`` bars of the timeframe on the UTC epoch grid. Its bars are
written as one Parquet part; only then does the manifest's checkpoint (``covered``) grow by the
chunk, atomically. A run that dies at any moment (Ctrl-C, kill -9, a venue error) leaves the lake
as of its last finished chunk, plus at most an orphan part that the next run deletes; the next run
fetches exactly the ranges not yet covered, so there is no gap and no duplicate, and a range
already covered is never fetched or written again.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from storage.lake import BarsLake, Dataset, Gap, LakeError, Manifest, merge_ranges, subtract_ranges
from venues.base import MarketData
from venues.clock import Clock, ensure_utc, epoch_us, from_epoch_us, window_text
from venues.timeframes import Timeframe, parse_timeframe, with_close_time

DEFAULT_CHUNK_BARS = 5000  # `tradeops backfill --chunk-bars` has the same default
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class BackfillProgress(Protocol):
    def planned(self, label: str, chunks: int) -> None:
        """``chunks`` chunks are left to fetch for the dataset ``label`` (0: it has them all)."""

    def chunk_done(self, label: str, chunk: ChunkDone) -> None: ...


@dataclass(frozen=True, slots=True)
class ChunkDone:
    start: datetime  # the chunk's range of bar open times, [start, end)
    end: datetime
    rows: int  # bars written (0: the venue has none there; no part is written)
    part: str | None


@dataclass(slots=True)
class BackfillReport:
    venue: str
    symbol: str
    timeframe: str
    start: datetime  # the range asked for, [start, end), end cut at what is final now
    end: datetime
    chunks: int = 0  # chunks fetched by this run
    rows_written: int = 0
    parts_written: int = 0
    orphans_removed: list[str] = field(default_factory=list)
    rows_total: int = 0
    first_bar: datetime | None = None
    last_bar: datetime | None = None
    gaps: list[Gap] = field(default_factory=list)
    end_cut: bool = False  # the asked end was later than the last final bar could be

    @property
    def label(self) -> str:
        return f"{self.venue} {self.symbol} {self.timeframe}"


def plan_chunks(
    missing: list[tuple[datetime, datetime]], timeframe: Timeframe, chunk_bars: int
) -> list[tuple[datetime, datetime]]:
    """Split ranges at multiples of ``chunk_bars`` bars on the UTC epoch grid, so the parts of two
    runs line up whatever range each asked for."""
    if chunk_bars < 1:
        raise ValueError(f"chunk_bars must be 1 or more, got {chunk_bars}")
    span = timeframe.delta.to_pytimedelta() * chunk_bars
    chunks: list[tuple[datetime, datetime]] = []
    for start, end in missing:
        cursor = start
        while cursor < end:
            boundary = _EPOCH + ((cursor - _EPOCH) // span + 1) * span
            chunks.append((cursor, min(boundary, end)))
            cursor = chunks[-1][1]
    return chunks


async def backfill(
    lake: BarsLake,
    venue: MarketData,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    *,
    clock: Clock,
    chunk_bars: int = DEFAULT_CHUNK_BARS,
    progress: BackfillProgress | None = None,
) -> BackfillReport:
    """Fetch the bars of ``symbol`` opening in ``[start, end)`` that the lake lacks.

    ``end`` is cut to two bars before ``clock.now()``: a bar still forming is never marked as
    fetched. Errors: UnknownSymbolError / UnknownTimeframeError from the venue (they list what is
    valid), ValueError for a bad range, LakeBusyError when another backfill writes the dataset,
    LakeError for bars that break the frame layout. Whatever a failure interrupts, every chunk
    finished before it stays in the lake and counts as fetched.
    """
    tf = parse_timeframe(timeframe)
    start, end = ensure_utc(start), ensure_utc(end)
    if start >= end:
        start_text, end_text = window_text(start, end)  # as typed: a date-only --to is its own day
        raise ValueError(f"empty range: --from {start_text} must be before --to {end_text}")
    horizon = clock.now() - 2 * tf.delta.to_pytimedelta()
    if start >= horizon:
        raise ValueError(
            f"nothing final to fetch yet: {start:%Y-%m-%d %H:%M} UTC is not before the last final {tf.name} bar "
            f"(now is {clock.now():%Y-%m-%d %H:%M} UTC); give an earlier --from"
        )
    instrument = await venue.instrument(symbol)  # UnknownSymbolError names the valid symbols
    report = BackfillReport(venue.name, symbol, tf.name, start, min(end, horizon), end_cut=end > horizon)
    dataset = lake.dataset(venue.name, symbol, tf.name)
    created = not dataset.path.exists()
    try:
        with dataset.locked():
            manifest = dataset.manifest()
            report.orphans_removed = dataset.remove_orphans(manifest)
            if manifest is None:
                manifest = Manifest(
                    venue=venue.name,
                    symbol=symbol,
                    timeframe=tf.name,
                    calendar=instrument.calendar,
                    instrument=instrument.model_dump(mode="json"),
                )
            missing = subtract_ranges((report.start, report.end), manifest.covered)
            chunks = plan_chunks(missing, tf, chunk_bars)
            if progress is not None:
                progress.planned(report.label, len(chunks))
            for chunk_start, chunk_end in chunks:
                bars = await venue.bars(symbol, tf.name, start=chunk_start, end=chunk_end - _ONE_US)
                bars = _chunk_bars(bars, tf, chunk_start, chunk_end, clock.now(), report.label)
                part = None
                if len(bars):
                    entry = dataset.write_part(manifest.next_part, bars)
                    manifest.parts.append(entry)
                    manifest.rows += entry.rows
                    part = entry.file
                    report.rows_written += entry.rows
                    report.parts_written += 1
                # The checkpoint moves only now that the part is durable.
                manifest.covered = merge_ranges([*manifest.covered, (chunk_start, chunk_end)])
                manifest.instrument = instrument.model_dump(mode="json")
                manifest.updated_at = clock.now()
                dataset.write_manifest(manifest)
                report.chunks += 1
                if progress is not None:
                    progress.chunk_done(report.label, ChunkDone(chunk_start, chunk_end, len(bars), part))
                # A venue that answers without suspending (replay, the lake) would otherwise never let
                # a cancellation (Ctrl-C under asyncio.run) in before the last chunk.
                await asyncio.sleep(0)
            _finish(dataset, manifest, tf, report, clock)
    finally:
        if created and dataset.manifest() is None:
            _remove_empty(dataset)
    return report


def _finish(dataset: Dataset, manifest: Manifest, tf: Timeframe, report: BackfillReport, clock: Clock) -> None:
    """Judge the venue's own gaps over everything the dataset holds; the manifest is rewritten
    only when something changed, so a run that fetched nothing writes nothing."""
    bars = dataset.read(manifest)
    gaps = source_gaps(bars, manifest.covered, manifest.calendar, tf)
    first = pd.DatetimeIndex(bars.index)[0].to_pydatetime() if len(bars) else None
    last = pd.DatetimeIndex(bars.index)[-1].to_pydatetime() if len(bars) else None
    if report.chunks or gaps != manifest.gaps or (first, last) != (manifest.first_bar, manifest.last_bar):
        manifest.gaps, manifest.first_bar, manifest.last_bar = gaps, first, last
        manifest.updated_at = clock.now()
        dataset.write_manifest(manifest)
    report.rows_total, report.first_bar, report.last_bar, report.gaps = manifest.rows, first, last, gaps


def _chunk_bars(
    bars: pd.DataFrame, tf: Timeframe, start: datetime, end: datetime, now: datetime, label: str
) -> pd.DataFrame:
    """The chunk's final bars in the lake's layout; a venue answer that breaks the layout is a
    LakeError rather than silently stored."""
    if not isinstance(bars.index, pd.DatetimeIndex) or bars.index.tz is None:
        raise LakeError(f"{label}: the venue's bars are not indexed by UTC open time")
    bars = with_close_time(bars, tf)
    index = pd.DatetimeIndex(bars.index)
    keep = (index >= start) & (index < end) & (pd.DatetimeIndex(bars["close_time"]) <= now)
    bars = bars[keep]
    if not pd.DatetimeIndex(bars.index).is_monotonic_increasing or pd.DatetimeIndex(bars.index).has_duplicates:
        raise LakeError(f"{label}: the venue returned bars out of order or twice in {start:%Y-%m-%d %H:%M} ->")
    return bars


def _remove_empty(dataset: Dataset) -> None:
    """A first run that failed before writing anything leaves no directory behind."""
    for entry in (dataset.path / ".lock",):
        entry.unlink(missing_ok=True)
    for path in (dataset.path, dataset.path.parent, dataset.path.parent.parent):
        try:
            path.rmdir()
        except OSError:
            break


def trading_segments(calendar: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime, date | None]]:
    """The spans of ``[start, end)`` when the market trades, with their session day: all of it
    for 24/7 (day None), else each session's hours (split at a lunch break) from exchange-calendars."""
    if start >= end:
        return []
    if calendar == "24/7":
        return [(start, end, None)]
    from venues.calendars import get_calendar

    cal = get_calendar(calendar)
    schedule = cal.schedule
    first_day = pd.Timestamp(start).tz_convert(cal.tz).tz_localize(None).normalize() - pd.Timedelta(days=1)
    last_day = pd.Timestamp(end).tz_convert(cal.tz).tz_localize(None).normalize() + pd.Timedelta(days=1)
    rows = schedule[(schedule.index >= first_day) & (schedule.index <= last_day)]
    segments: list[tuple[datetime, datetime, date | None]] = []
    has_break = "break_start" in rows.columns
    for row in rows.itertuples():
        opens, closes = row.open.to_pydatetime(), row.close.to_pydatetime()
        brk_start = row.break_start if has_break else pd.NaT
        brk_end = row.break_end if has_break else pd.NaT
        if pd.isna(brk_start) or pd.isna(brk_end):
            spans = [(opens, closes)]
        else:
            spans = [(opens, brk_start.to_pydatetime()), (brk_end.to_pydatetime(), closes)]
        for span_start, span_end in spans:
            clipped = (max(span_start, start), min(span_end, end))
            if clipped[0] < clipped[1]:
                segments.append((*clipped, row.Index.date()))
    return segments


@dataclass(slots=True)
class _Hole:
    start: int  # microseconds since the epoch
    end: int
    trading: int  # trading time inside, microseconds
    sessions: set[Any]  # session days (weeks for 1w) it touches

    def bars(self, timeframe: Timeframe) -> int:
        """Missing bars: sessions (or weeks) for daily and weekly bars of an exchange, else
        trading time over the bar length."""
        if self.sessions and timeframe.delta >= pd.Timedelta(days=1):
            return len(self.sessions)
        return max(1, math.ceil(self.trading / (timeframe.delta.to_pytimedelta() // _ONE_US)))


def source_gaps(
    bars: pd.DataFrame, covered: list[tuple[datetime, datetime]], calendar: str, timeframe: Timeframe
) -> list[Gap]:
    """Trading time between the first bar's open and the last bar's close, inside the fetched
    ranges, that no bar ``[open, close_time)`` covers: bars the venue itself does not have.
    Holes with no bar opening between them are one gap (a missing A-share day is one gap across
    its lunch break, two missing days one gap of 2 bars)."""
    if bars.empty:
        return []
    opens = pd.DatetimeIndex(bars.index).as_unit("us").asi8
    closes = pd.DatetimeIndex(bars["close_time"]).as_unit("us").asi8
    first, last = from_epoch_us(opens[0]), from_epoch_us(int(closes.max()))
    # The union of the bars' spans: a new block starts where a bar opens after every earlier close.
    reach = np.maximum.accumulate(closes)
    starts = np.r_[True, opens[1:] > reach[:-1]]
    blocks = list(zip(opens[starts].tolist(), reach[np.r_[starts[1:], True]].tolist(), strict=True))
    weekly = timeframe.name == "1w"
    holes: list[_Hole] = []
    for have_start, have_end in merge_ranges(covered):
        lo, hi = max(have_start, first), min(have_end, last)
        for seg_start, seg_end, day in trading_segments(calendar, lo, hi):
            key = None if day is None else day.isocalendar()[:2] if weekly else day
            for hole_start, hole_end in _uncovered(epoch_us(seg_start), epoch_us(seg_end), blocks):
                bar_between = bool(holes) and bool(
                    np.searchsorted(opens, hole_start) - np.searchsorted(opens, holes[-1].end)
                )
                if holes and not bar_between:
                    holes[-1].end = hole_end
                    holes[-1].trading += hole_end - hole_start
                    holes[-1].sessions |= {key} if key is not None else set()
                else:
                    sessions = {key} if key is not None else set()
                    holes.append(_Hole(hole_start, hole_end, hole_end - hole_start, sessions))
    return [Gap(start=from_epoch_us(h.start), end=from_epoch_us(h.end), bars=h.bars(timeframe)) for h in holes]


def _uncovered(start: int, end: int, blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    i = _first_block(blocks, start)
    cursor = start
    while i < len(blocks) and blocks[i][0] < end:
        block_start, block_end = blocks[i]
        if block_start > cursor:
            out.append((cursor, min(block_start, end)))
        cursor = max(cursor, block_end)
        if cursor >= end:
            break
        i += 1
    if cursor < end:
        out.append((cursor, end))
    return out


def _first_block(blocks: list[tuple[int, int]], moment: int) -> int:
    lo, hi = 0, len(blocks)
    while lo < hi:  # first block ending after ``moment``
        mid = (lo + hi) // 2
        if blocks[mid][1] <= moment:
            lo = mid + 1
        else:
            hi = mid
    return lo
