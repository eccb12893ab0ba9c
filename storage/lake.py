"""The bars lake: history downloaded by `tradeops backfill`, as Parquet files under the data dir.

Layout (one dataset per source venue, symbol and timeframe)::

    <lake>/bars/venue=<V>/symbol=<S>/timeframe=<T>/manifest.json
    <lake>/bars/venue=<V>/symbol=<S>/timeframe=<T>/part-000001.parquet ...

Path components are percent-encoded (``BTC/USDT:USDT`` -> ``BTC%2FUSDT%3AUSDT``), so any venue
symbol is one directory and the name decodes back to it. Each part holds the bars of one download
chunk: columns ``venue, symbol, timeframe`` (strings), ``ts`` (bar open time) and ``close_time``
(both timestamp[us, UTC]), ``open, high, low, close, volume`` (float64), zstd-compressed.

The manifest is the dataset's truth: only the parts it lists exist for readers (a part written by a
process killed before its manifest update is an orphan, removed by the next backfill), and its
``covered`` ranges are the backfill checkpoint. It is replaced atomically (temp file, fsync,
rename), always after the part it lists is durable.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from venues.lake import LakeSeries
from venues.models import Instrument
from venues.timeframes import BAR_COLUMNS, OHLCV, empty_bars

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
COMPRESSION = "zstd"
log = logging.getLogger(__name__)

PART_SCHEMA = pa.schema(
    [
        ("venue", pa.string()),
        ("symbol", pa.string()),
        ("timeframe", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        *[(name, pa.float64()) for name in OHLCV],
        ("close_time", pa.timestamp("us", tz="UTC")),
    ]
)


class LakeError(Exception):
    """A lake problem the user can act on; the message says what and where."""


class LakeBusyError(LakeError):
    """Another process holds the dataset's write lock."""


def encode_component(value: str) -> str:
    """``BTC/USDT:USDT`` -> ``BTC%2FUSDT%3AUSDT``: one safe path component, reversible with
    decode_component. ValueError for an empty value or one made only of dots."""
    if not value or set(value) <= {"."}:
        raise ValueError(f"{value!r} cannot name a lake directory: give a venue, symbol or timeframe name")
    return quote(value, safe="")


def decode_component(component: str) -> str:
    return unquote(component)


class Part(BaseModel):
    file: str  # name inside the dataset directory
    rows: int
    first: datetime  # open time of its first and last bar
    last: datetime


class Gap(BaseModel):
    """Trading time inside the venue's sessions that no bar covers: missing at the source."""

    start: datetime
    end: datetime
    bars: int  # about how many bars of the timeframe fit in it (at least 1)


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    venue: str
    symbol: str
    timeframe: str
    calendar: str  # exchange-calendars name the gaps were judged on (24/7 for crypto)
    instrument: dict[str, Any]  # the source venue's Instrument (JSON), so the lake venue can trade it
    # The checkpoint: [start, end) ranges of bar open times fetched and durably written, merged and
    # ascending. A range is added only after its part (if it had bars) is on disk.
    covered: list[tuple[datetime, datetime]] = Field(default_factory=list)
    parts: list[Part] = Field(default_factory=list)
    rows: int = 0
    first_bar: datetime | None = None
    last_bar: datetime | None = None
    gaps: list[Gap] = Field(default_factory=list)  # inside [first_bar, last_bar] only
    updated_at: datetime | None = None

    def source_instrument(self) -> Instrument:
        return Instrument.model_validate(self.instrument)

    @property
    def next_part(self) -> str:
        return f"part-{len(self.parts) + 1:06d}.parquet"


def merge_ranges(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Sorted, with touching or overlapping ranges joined."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def subtract_ranges(
    want: tuple[datetime, datetime], have: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The parts of ``want`` that no range of ``have`` covers, ascending."""
    start, end = want
    missing: list[tuple[datetime, datetime]] = []
    for have_start, have_end in merge_ranges(have):
        if have_end <= start or have_start >= end:
            continue
        if have_start > start:
            missing.append((start, have_start))
        start = max(start, have_end)
    if start < end:
        missing.append((start, end))
    return missing


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


class Dataset:
    """One venue/symbol/timeframe directory of the lake."""

    def __init__(self, root: Path, venue: str, symbol: str, timeframe: str) -> None:
        self.venue, self.symbol, self.timeframe = venue, symbol, timeframe
        self.path = (
            root
            / f"venue={encode_component(venue)}"
            / f"symbol={encode_component(symbol)}"
            / f"timeframe={encode_component(timeframe)}"
        )

    def __repr__(self) -> str:
        return f"Dataset({self.venue!r}, {self.symbol!r}, {self.timeframe!r})"

    @property
    def label(self) -> str:
        return f"{self.venue} {self.symbol} {self.timeframe}"

    def manifest(self) -> Manifest | None:
        path = self.path / MANIFEST
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValueError as exc:
            raise LakeError(f"unreadable lake manifest {path}: {exc}") from None
        if manifest.schema_version > SCHEMA_VERSION:
            raise LakeError(
                f"lake manifest {path} has schema version {manifest.schema_version}; this tradeops reads "
                f"up to {SCHEMA_VERSION}: upgrade tradeops"
            )
        return manifest

    def write_manifest(self, manifest: Manifest) -> None:
        """Atomically: readers see the old manifest or the new one, never a torn file."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{MANIFEST}.tmp"
        tmp.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        _durable_replace(tmp, self.path / MANIFEST)

    def write_part(self, name: str, bars: pd.DataFrame) -> Part:
        """Write a bar frame (venues.timeframes layout) as the part ``name``, durably, and return
        its manifest entry; the manifest itself is not touched."""
        self.path.mkdir(parents=True, exist_ok=True)
        table = frame_to_table(bars, self.venue, self.symbol, self.timeframe)
        tmp = self.path / f".{name}.tmp"
        pq.write_table(table, tmp, compression=COMPRESSION)
        _durable_replace(tmp, self.path / name)
        index = pd.DatetimeIndex(bars.index)
        return Part(file=name, rows=len(bars), first=index[0].to_pydatetime(), last=index[-1].to_pydatetime())

    def part_paths(self, manifest: Manifest | None = None) -> list[Path]:
        manifest = manifest if manifest is not None else self.manifest()
        return [self.path / p.file for p in manifest.parts] if manifest else []

    def read(self, manifest: Manifest | None = None) -> pd.DataFrame:
        """Every bar of the dataset's listed parts as a bar frame, ascending by open time."""
        paths = self.part_paths(manifest)
        if not paths:
            return empty_bars()
        table = pa.concat_tables([pq.read_table(p, schema=PART_SCHEMA) for p in paths])
        return table_to_frame(table)

    def remove_orphans(self, manifest: Manifest | None) -> list[str]:
        """Delete part and temp files the manifest does not list (left by a killed backfill)."""
        listed = {p.file for p in manifest.parts} if manifest else set()
        removed = []
        for entry in self.path.iterdir() if self.path.is_dir() else []:
            orphan_part = entry.name.startswith("part-") and entry.name not in listed
            if orphan_part or (entry.name.endswith(".tmp") and entry.name.startswith(".")):
                entry.unlink()
                removed.append(entry.name)
        return removed

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive write access to the dataset across processes (flock; released when the holder
        dies, even by kill -9); LakeBusyError at once when another process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+b") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LakeBusyError(
                    f"another backfill is writing {self.label} ({self.path}); wait for it or stop it"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def frame_to_table(bars: pd.DataFrame, venue: str, symbol: str, timeframe: str) -> pa.Table:
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise LakeError(f"bars of {venue} {symbol} {timeframe} lack the columns {missing}; expected {BAR_COLUMNS}")
    ts = pd.DatetimeIndex(bars.index).tz_convert("UTC").as_unit("us")
    n = len(bars)
    columns: dict[str, Any] = {
        "venue": pa.array([venue] * n, pa.string()),
        "symbol": pa.array([symbol] * n, pa.string()),
        "timeframe": pa.array([timeframe] * n, pa.string()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
    }
    for name in OHLCV:
        columns[name] = pa.array(bars[name].to_numpy(dtype="float64"), pa.float64())
    close_time = pd.DatetimeIndex(bars["close_time"]).tz_convert("UTC").as_unit("us")
    columns["close_time"] = pa.array(close_time, pa.timestamp("us", tz="UTC"))
    return pa.table(columns, schema=PART_SCHEMA)


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.select(["ts", *BAR_COLUMNS]).to_pandas()
    frame = frame.set_index(pd.DatetimeIndex(frame.pop("ts"), name="ts").as_unit("us"))
    frame["close_time"] = pd.DatetimeIndex(frame["close_time"]).as_unit("us")
    return frame.sort_index()[BAR_COLUMNS]


class BarsLake:
    """The lake under ``root`` (``<data dir>/lake``); its datasets live in ``root/bars``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.bars_root = self.root / "bars"

    def dataset(self, venue: str, symbol: str, timeframe: str) -> Dataset:
        return Dataset(self.bars_root, venue, symbol, timeframe)

    def datasets(self) -> list[tuple[Dataset, Manifest]]:
        """Every dataset that has a readable manifest, with it, ordered by venue, symbol, timeframe;
        an unreadable manifest is skipped with a warning in the log."""
        found: list[tuple[Dataset, Manifest]] = []
        for path in sorted(self.bars_root.glob(f"venue=*/symbol=*/timeframe=*/{MANIFEST}")):
            parts = [p.name.split("=", 1)[1] for p in (path.parent.parent.parent, path.parent.parent, path.parent)]
            venue, symbol, timeframe = (decode_component(p) for p in parts)
            dataset = self.dataset(venue, symbol, timeframe)
            try:
                manifest = dataset.manifest()
            except LakeError as exc:  # one bad dataset must not hide the others (or stop the app)
                log.warning("skipping a lake dataset: %s", exc)
                continue
            if manifest is not None:
                found.append((dataset, manifest))
        return found

    def part_files(self) -> list[Path]:
        """Every part a manifest lists, the files a reader may see."""
        return [path for dataset, manifest in self.datasets() for path in dataset.part_paths(manifest)]

    def lake_series(self) -> list[LakeSeries]:
        """One LakeSeries per dataset with bars, for a LakeVenue; each loads the parts its
        manifest listed now, so a backfill running meanwhile changes nothing it serves."""
        return [
            LakeSeries(
                source=manifest.venue,
                instrument=manifest.source_instrument(),
                timeframe=manifest.timeframe,
                load=functools.partial(dataset.read, manifest),
            )
            for dataset, manifest in self.datasets()
            if manifest.rows
        ]

    def exists(self) -> bool:
        return any(True for _ in self.bars_root.glob(f"venue=*/symbol=*/timeframe=*/{MANIFEST}"))


def manifest_summary(manifest: Manifest) -> dict[str, Any]:
    """The manifest as plain JSON values, without the instrument (for listings)."""
    data = json.loads(manifest.model_dump_json())
    data.pop("instrument", None)
    return data
