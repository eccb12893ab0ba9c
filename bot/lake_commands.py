"""What `tradeops backfill` and `tradeops sql` do beyond parsing options: resolving the venue,
running the backfill with a progress display, and printing query results as a table, CSV or JSON."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from bot.settings import Settings
from storage.backfill import DEFAULT_CHUNK_BARS, BackfillReport, ChunkDone, backfill
from storage.lake import BarsLake
from venues.base import LiveVenue, MarketData
from venues.clock import Clock
from venues.lake import LAKE_VENUE
from venues.timeframes import parse_timeframe

OutputFormat = Literal["table", "csv", "json"]
Echo = Callable[[str], None]


class CommandError(Exception):
    """Bad input: the message says what is wrong and what is valid (exit status 2)."""


def parse_moment(value: str, *, option: str, end: bool) -> datetime:
    """``YYYY-MM-DD`` or an ISO date-time (UTC unless it names an offset). A bare date given to
    ``--to`` means the end of that day, so --from 2021-01-01 --to 2021-12-31 is all of 2021."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"{option} {value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC), e.g. 2021-01-01"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def source_venue(venues: dict[str, Any], name: str) -> MarketData:
    """The venue to download from, or CommandError naming the valid ones."""
    valid = ", ".join(n for n in venues if n != LAKE_VENUE)
    if name == LAKE_VENUE:
        raise CommandError(f"the lake is where backfill writes, not a source; valid venues: {valid}")
    venue = venues.get(name)
    if venue is None:
        raise CommandError(f"unknown venue {name!r}; valid venues: {valid}")
    return venue


@dataclass
class BackfillRun:
    """Progress of a multi-symbol backfill: a rich bar per dataset on a terminal, a line per
    chunk otherwise; also what was kept when the run is interrupted."""

    echo: Echo
    console: Console | None = None  # a terminal: show rich progress bars
    chunks_done: dict[str, int] = field(default_factory=dict)
    _progress: Progress | None = None
    _tasks: dict[str, TaskID] = field(default_factory=dict)
    _totals: dict[str, int] = field(default_factory=dict)

    def __enter__(self) -> BackfillRun:
        if self.console is not None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("chunks"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def planned(self, label: str, chunks: int) -> None:
        self._totals[label] = chunks
        self.chunks_done[label] = 0
        if self._progress is not None and chunks:
            self._tasks[label] = self._progress.add_task(label, total=chunks)

    def chunk_done(self, label: str, chunk: ChunkDone) -> None:
        self.chunks_done[label] += 1
        if self._progress is not None:
            self._progress.advance(self._tasks[label])
            return
        written = f"{chunk.rows} bars ({chunk.part})" if chunk.part else "no bars"
        self.echo(
            f"{label}: {chunk.start:%Y-%m-%d %H:%M} -> {chunk.end:%Y-%m-%d %H:%M} UTC: {written} "
            f"[{self.chunks_done[label]}/{self._totals[label]}]"
        )


async def run_backfill(
    lake: BarsLake,
    venue: MarketData,
    symbols: Sequence[str],
    timeframe: str,
    start: datetime,
    end: datetime,
    *,
    clock: Clock,
    run: BackfillRun,
    chunk_bars: int = DEFAULT_CHUNK_BARS,
) -> list[BackfillReport]:
    """Every symbol is checked before anything is downloaded, then each is backfilled in turn."""
    parse_timeframe(timeframe)  # UnknownTimeframeError lists the valid ones
    for symbol in symbols:
        await venue.instrument(symbol)  # UnknownSymbolError lists the valid ones
    reports = []
    for symbol in symbols:
        report = await backfill(
            lake, venue, symbol, timeframe, start, end, clock=clock, chunk_bars=chunk_bars, progress=run
        )
        reports.append(report)
        for line in report_lines(report, lake):
            run.echo(line)
    return reports


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def report_lines(report: BackfillReport, lake: BarsLake, *, max_gaps: int = 10) -> list[str]:
    lines = []
    asked = f"{_when(report.start)} -> {_when(report.end)} UTC"
    if report.orphans_removed:
        lines.append(f"{report.label}: removed {len(report.orphans_removed)} unfinished file(s) of an interrupted run")
    if report.chunks == 0:
        lines.append(f"{report.label}: the lake already has {asked}; nothing fetched, nothing written")
    else:
        lines.append(
            f"{report.label}: wrote {report.rows_written} bars in {report.parts_written} part(s) "
            f"({report.chunks} chunk(s) of {asked})"
        )
    path = lake.dataset(report.venue, report.symbol, report.timeframe).path
    lines.append(
        f"  the lake has {report.rows_total} bars, {_when(report.first_bar)} -> {_when(report.last_bar)} UTC, in {path}"
    )
    if report.end_cut:
        lines.append(f"  --to was cut to {_when(report.end)} UTC: later bars are not final yet")
    if report.gaps:
        missing = sum(g.bars for g in report.gaps)
        lines.append(
            f"  {len(report.gaps)} gap(s) the venue itself has (about {missing} bars missing in its sessions):"
        )
        lines += [f"    {_when(g.start)} -> {_when(g.end)} UTC ({g.bars} bars)" for g in report.gaps[:max_gaps]]
        if len(report.gaps) > max_gaps:
            lines.append(f"    ... and {len(report.gaps) - max_gaps} more (all in the manifest)")
    else:
        lines.append("  no gaps inside the venue's sessions")
    return lines


def backfill_blocking(
    lake: BarsLake,
    venue: MarketData,
    symbols: Sequence[str],
    timeframe: str,
    start: datetime,
    end: datetime,
    *,
    clock: Clock,
    run: BackfillRun,
    chunk_bars: int,
) -> list[BackfillReport]:
    async def download() -> list[BackfillReport]:
        try:
            return await run_backfill(
                lake, venue, symbols, timeframe, start, end, clock=clock, run=run, chunk_bars=chunk_bars
            )
        finally:
            if isinstance(venue, LiveVenue):
                await venue.aclose()

    with run:
        return asyncio.run(download())


def interrupted_lines(run: BackfillRun) -> list[str]:
    kept = ", ".join(f"{label}: {n} chunk(s)" for label, n in run.chunks_done.items()) or "nothing yet"
    return [f"interrupted; kept in the lake: {kept}. Run the same command again to resume where it stopped."]


# --- sql output ---


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def print_rows(
    columns: list[str], rows: Sequence[Sequence[Any]], fmt: OutputFormat, echo: Echo, *, truncated: bool = False
) -> None:
    """A rich table (with the row count), CSV with a header, or JSON: a list of row objects."""
    if fmt == "json":
        objects = [dict(zip(columns, (_plain(v) for v in row), strict=True)) for row in rows]
        echo(json.dumps(objects, indent=2, ensure_ascii=False, allow_nan=False, default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else _plain(v) for v in row] for row in rows])
        sys.stdout.flush()
    else:
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        console = Console()
        # Piped or redirected, rich would fold the table into 80 columns and cut cells ("replay-…"):
        # a file gets every cell whole, however wide the table.
        if not console.is_terminal:
            console = Console(width=max(80, Console(width=100_000).measure(table).maximum))
        console.print(table)
        echo(f"{len(rows)} row(s)")
    if truncated:
        sys.stderr.write(f"showing the first {len(rows)} rows; --limit N shows more\n")


def format_of(as_csv: bool, as_json: bool) -> OutputFormat:
    if as_csv and as_json:
        raise CommandError("--csv and --json exclude each other: choose one")
    return "csv" if as_csv else "json" if as_json else "table"


def settings_lake(settings: Settings) -> BarsLake:
    return BarsLake(settings.lake_dir)
