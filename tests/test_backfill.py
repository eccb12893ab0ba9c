"""`tradeops backfill`: history into the Parquet lake in checkpointed chunks. Every test downloads
from the replay venues (real recorded bars), through the MarketData protocol, with no network."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bot.cli import app
from storage.backfill import backfill, plan_chunks
from storage.lake import BarsLake, LakeBusyError, LakeError, Manifest, decode_component, encode_component
from storage.lake_sql import query_lake
from tests.lake_support import AFTER_DATA, FlakySource, fingerprint, mtimes, utc
from venues.clock import SimulatedClock
from venues.errors import UnknownSymbolError, VenueError
from venues.timeframes import BAR_COLUMNS, parse_timeframe

pytestmark = pytest.mark.usefixtures("hermetic")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def lake(tmp_path: Path) -> BarsLake:
    return BarsLake(tmp_path / "lake")


async def source_bars(source: FlakySource, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
    frame = await source.replay.bars(symbol, timeframe, start=start, end=end)
    frame = frame[pd.DatetimeIndex(frame.index) < end]
    for gap_start, gap_end in source.missing:
        index = pd.DatetimeIndex(frame.index)
        frame = frame[(index < gap_start) | (index >= gap_end)]
    return frame


def no_duplicates(lake: BarsLake) -> bool:
    result = query_lake(lake, "select count(*) = count(distinct (venue, symbol, timeframe, ts)) from bars")
    return bool(result.rows[0][0])


@pytest.mark.parametrize(
    ("market", "symbol", "timeframe", "start", "end"),
    [
        ("crypto", "BTC/USD", "1h", "2021-01-01", "2022-01-01"),
        ("cn", "510300.SH", "5m", "2021-05-01", "2021-08-01"),  # lunch breaks, holidays
        ("cn", "600519.SH", "1d", "2019-01-01", "2022-01-01"),  # daily bars close at 15:00 Shanghai
        ("us", "AMZN", "1h", "2021-03-01", "2021-06-01"),  # extended hours
        ("crypto", "ETH/USDT", "4h", "2021-02-01", "2021-04-01"),  # resampled by the venue
    ],
)
async def test_a_backfill_equals_the_source_bars(
    lake: BarsLake, market: str, symbol: str, timeframe: str, start: str, end: str
) -> None:
    source = FlakySource(market)
    report = await backfill(lake, source, symbol, timeframe, utc(start), utc(end), clock=source.clock, chunk_bars=700)
    expected = await source_bars(source, symbol, timeframe, utc(start), utc(end))
    dataset = lake.dataset(source.name, symbol, timeframe)
    stored = dataset.read()
    pd.testing.assert_frame_equal(stored, expected[BAR_COLUMNS], check_freq=False)
    manifest = dataset.manifest()
    assert manifest is not None
    assert (manifest.venue, manifest.symbol, manifest.timeframe, manifest.schema_version) == (
        source.name,
        symbol,
        timeframe,
        1,
    )
    assert manifest.covered == [(utc(start), utc(end))]
    assert manifest.rows == report.rows_written == report.rows_total == len(expected)
    assert (manifest.first_bar, manifest.last_bar) == (expected.index[0], expected.index[-1])
    assert manifest.source_instrument() == await source.instrument(symbol)
    assert len(manifest.parts) == report.parts_written == len(list(dataset.path.glob("part-*.parquet")))
    assert report.chunks == len(plan_chunks([(utc(start), utc(end))], parse_timeframe(timeframe), 700))
    # The one parquet layout of the lake, zstd-compressed, under a reversible path.
    first_part = dataset.path / manifest.parts[0].file
    metadata = pq.ParquetFile(first_part).metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_schema(first_part).names == [
        "venue",
        "symbol",
        "timeframe",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "close_time",
    ]
    assert dataset.path.parts[-3:] == (
        f"venue={encode_component(source.name)}",
        f"symbol={encode_component(symbol)}",
        f"timeframe={timeframe}",
    )
    if market == "cn":  # the recorded A-share bars are complete: no false gap over breaks or holidays
        assert report.gaps == []


def test_symbols_are_path_safe_and_reversible() -> None:
    for symbol in ["BTC/USDT:USDT", "SPY240419C00500000", "600519.SH", "a b%c", "..x", "cu0"]:
        encoded = encode_component(symbol)
        assert "/" not in encoded and ":" not in encoded and encoded not in (".", "..")
        assert decode_component(encoded) == symbol
    assert encode_component("BTC/USDT:USDT") == "BTC%2FUSDT%3AUSDT"
    for bad in ["", ".", ".."]:
        with pytest.raises(ValueError, match="cannot name a lake directory"):
            encode_component(bad)


async def test_a_second_run_writes_nothing_and_a_wider_one_only_the_new_bars(lake: BarsLake) -> None:
    source = FlakySource("crypto")
    await backfill(lake, source, "ETH/USDT", "1h", utc("2021-03-01"), utc("2021-05-01"), clock=source.clock)
    before, times = fingerprint(lake.root), mtimes(lake.root)
    calls = source.calls
    again = await backfill(lake, source, "ETH/USDT", "1h", utc("2021-03-01"), utc("2021-05-01"), clock=source.clock)
    assert (again.chunks, again.rows_written, again.parts_written) == (0, 0, 0)
    assert source.calls == calls  # nothing was even asked of the venue
    assert fingerprint(lake.root) == before and mtimes(lake.root) == times
    # A range inside the covered one: also nothing.
    inside = await backfill(lake, source, "ETH/USDT", "1h", utc("2021-04-01"), utc("2021-04-02"), clock=source.clock)
    assert inside.chunks == 0 and mtimes(lake.root) == times
    # Wider on both sides: only the two new stretches are fetched; old parts are untouched.
    wider = await backfill(lake, source, "ETH/USDT", "1h", utc("2021-02-01"), utc("2021-06-01"), clock=source.clock)
    assert wider.rows_written == (28 + 31) * 24
    after = fingerprint(lake.root)
    old_parts = {k: v for k, v in before.items() if "/part-" in k}
    assert {k: after[k] for k in old_parts} == old_parts
    expected = await source_bars(source, "ETH/USDT", "1h", utc("2021-02-01"), utc("2021-06-01"))
    pd.testing.assert_frame_equal(lake.dataset(source.name, "ETH/USDT", "1h").read(), expected, check_freq=False)
    assert lake.dataset(source.name, "ETH/USDT", "1h").manifest().covered == [(utc("2021-02-01"), utc("2021-06-01"))]  # type: ignore[union-attr]
    assert no_duplicates(lake)


async def test_a_venue_failing_midway_keeps_the_finished_chunks_and_a_rerun_completes(lake: BarsLake) -> None:
    start, end = utc("2021-01-01"), utc("2021-12-01")
    chunks = plan_chunks([(start, end)], parse_timeframe("1h"), 500)
    flaky = FlakySource("crypto", fail_after=3)
    with pytest.raises(VenueError, match="connection reset"):
        await backfill(lake, flaky, "ETH/USDT", "1h", start, end, clock=flaky.clock, chunk_bars=500)
    dataset = lake.dataset(flaky.name, "ETH/USDT", "1h")
    manifest = dataset.manifest()
    assert manifest is not None
    assert manifest.covered == [(start, chunks[2][1])]  # exactly the three chunks that finished
    kept = await source_bars(flaky, "ETH/USDT", "1h", start, chunks[2][1])
    pd.testing.assert_frame_equal(dataset.read(), kept, check_freq=False)
    assert manifest.rows == len(kept)
    healthy = FlakySource("crypto")
    report = await backfill(lake, healthy, "ETH/USDT", "1h", start, end, clock=healthy.clock, chunk_bars=500)
    assert report.chunks == len(chunks) - 3
    assert healthy.calls == len(chunks) - 3
    expected = await source_bars(healthy, "ETH/USDT", "1h", start, end)
    pd.testing.assert_frame_equal(dataset.read(), expected, check_freq=False)
    assert no_duplicates(lake)


async def test_an_orphan_part_of_a_killed_run_is_never_read_and_is_removed(lake: BarsLake) -> None:
    start, end = utc("2021-01-01"), utc("2021-04-01")
    flaky = FlakySource("crypto", fail_after=1)
    with pytest.raises(VenueError):
        await backfill(lake, flaky, "BTC/USD", "1h", start, end, clock=flaky.clock, chunk_bars=500)
    dataset = lake.dataset(flaky.name, "BTC/USD", "1h")
    manifest = dataset.manifest()
    assert manifest is not None
    # What kill -9 between writing a part and the manifest update leaves: a part nobody lists, and
    # a half-written temp file.
    bars = dataset.read()
    orphan = dataset.write_part(manifest.next_part, bars.iloc[:5])
    (dataset.path / ".part-000003.parquet.tmp").write_bytes(b"PAR1 torn")
    assert len(dataset.read()) == manifest.rows  # readers follow the manifest
    assert query_lake(lake, "select count(*) from bars").rows == [(manifest.rows,)]
    healthy = FlakySource("crypto")
    report = await backfill(lake, healthy, "BTC/USD", "1h", start, end, clock=healthy.clock, chunk_bars=500)
    assert set(report.orphans_removed) == {orphan.file, ".part-000003.parquet.tmp"}
    expected = await source_bars(healthy, "BTC/USD", "1h", start, end)
    pd.testing.assert_frame_equal(dataset.read(), expected, check_freq=False)
    listed = {p.file for p in dataset.manifest().parts}  # type: ignore[union-attr]
    assert {p.name for p in dataset.path.glob("part-*")} == listed
    assert no_duplicates(lake)


async def test_gaps_the_venue_has_are_reported(lake: BarsLake) -> None:
    hole = (utc("2021-03-10T05:00"), utc("2021-03-10T08:00"))
    source = FlakySource("crypto", missing=[hole])
    report = await backfill(lake, source, "ETH/USDT", "1h", utc("2021-03-01"), utc("2021-04-01"), clock=source.clock)
    assert [(g.start, g.end, g.bars) for g in report.gaps] == [(*hole, 3)]
    manifest = lake.dataset(source.name, "ETH/USDT", "1h").manifest()
    assert manifest is not None and manifest.gaps == report.gaps
    # An exchange: a missing A-share day is one gap of one bar across its lunch break (its session
    # 09:30-15:00 Shanghai); two missing days are one gap of two; nights and weekends are no gap.
    cn = FlakySource("cn", missing=[(utc("2021-03-10"), utc("2021-03-11")), (utc("2021-03-15"), utc("2021-03-17"))])
    report = await backfill(lake, cn, "600519.SH", "1d", utc("2021-03-01"), utc("2021-04-01"), clock=cn.clock)
    assert [(g.start, g.end, g.bars) for g in report.gaps] == [
        (utc("2021-03-10T01:30"), utc("2021-03-10T07:00"), 1),
        (utc("2021-03-15T01:30"), utc("2021-03-16T07:00"), 2),
    ]
    minutes = FlakySource("cn", missing=[(utc("2021-06-01T03:15"), utc("2021-06-01T05:10"))])
    report = await backfill(lake, minutes, "510300.SH", "5m", utc("2021-06-01"), utc("2021-06-02"), clock=cn.clock)
    # 11:15-11:30 and 13:00-13:10 Shanghai: 5 bars, one gap over the lunch break.
    assert [(g.start, g.end, g.bars) for g in report.gaps] == [(utc("2021-06-01T03:15"), utc("2021-06-01T05:10"), 5)]


async def test_bars_not_final_yet_are_left_for_a_later_run(lake: BarsLake) -> None:
    clock = SimulatedClock(utc("2021-03-10T12:30"))
    source = FlakySource("crypto", clock=clock)
    report = await backfill(lake, source, "ETH/USDT", "1h", utc("2021-03-10"), utc("2021-03-12"), clock=clock)
    assert report.end_cut and report.end == utc("2021-03-10T10:30")
    assert report.last_bar == utc("2021-03-10T10:00")
    clock.advance_to(utc("2021-03-13"))
    later = await backfill(lake, source, "ETH/USDT", "1h", utc("2021-03-10"), utc("2021-03-12"), clock=clock)
    assert later.rows_written == 48 - 11 and later.rows_total == 48
    with pytest.raises(ValueError, match="nothing final to fetch yet"):
        await backfill(lake, source, "ETH/USDT", "1h", utc("2021-03-13"), utc("2021-03-14"), clock=clock)


async def test_bad_input_is_refused_before_anything_is_written(lake: BarsLake) -> None:
    source = FlakySource("crypto")
    with pytest.raises(UnknownSymbolError, match="valid symbols: BTC/USD, ETH/USDT"):
        await backfill(lake, source, "XRP/USD", "1h", utc("2021-01-01"), utc("2021-02-01"), clock=source.clock)
    with pytest.raises(ValueError, match="must be before"):
        await backfill(lake, source, "BTC/USD", "1h", utc("2021-02-01"), utc("2021-01-01"), clock=source.clock)
    with pytest.raises(ValueError, match="valid timeframes: 1h, 4h, 1d, 1w"):
        await backfill(lake, source, "BTC/USD", "1m", utc("2021-01-01"), utc("2021-02-01"), clock=source.clock)
    assert not lake.root.exists() or not any(lake.root.rglob("*.json"))
    assert not lake.bars_root.exists() or not any(p.is_file() for p in lake.bars_root.rglob("*"))


async def test_two_backfills_of_one_dataset_do_not_run_at_once(lake: BarsLake) -> None:
    source = FlakySource("crypto")
    busy = pytest.raises(LakeBusyError, match="another backfill is writing replay-crypto BTC/USD 1h")
    with lake.dataset(source.name, "BTC/USD", "1h").locked(), busy:
        await backfill(lake, source, "BTC/USD", "1h", utc("2021-01-01"), utc("2021-02-01"), clock=source.clock)


def test_manifest_is_json_with_the_documented_fields(lake: BarsLake) -> None:
    source = FlakySource("crypto")
    asyncio.run(backfill(lake, source, "BTC/USD", "1h", utc("2021-01-01"), utc("2021-03-01"), clock=source.clock))
    path = lake.dataset("replay-crypto", "BTC/USD", "1h").path / "manifest.json"
    data = json.loads(path.read_text())
    assert set(data) == set(Manifest.model_fields)
    assert data["covered"] == [["2021-01-01T00:00:00Z", "2021-03-01T00:00:00Z"]]
    assert data["gaps"] == [{"start": "2021-01-11T06:00:00Z", "end": "2021-01-11T09:00:00Z", "bars": 3}]
    assert data["updated_at"] == AFTER_DATA.isoformat().replace("+00:00", "Z")


# --- the command ---


def test_backfill_command_writes_reports_and_refuses_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    args = ["backfill", "--venue", "replay-crypto", "--timeframe", "1h", "--from", "2021-01-01", "--to", "2021-03-31"]
    result = runner.invoke(app, [*args, "--symbol", "BTC/USD", "--symbol", "ETH/USDT", "--chunk-bars", "1000"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert (
        "replay-crypto BTC/USD 1h: 2021-01-01 00:00 -> 2021-02-08 16:00 UTC: 919 bars (part-000001.parquet) [1/3]"
        in out
    )  # a plain line per chunk
    assert "replay-crypto ETH/USDT 1h: wrote 2160 bars in 3 part(s)" in out  # --to 2021-03-31 is included
    assert "1 gap(s) the venue itself has (about 3 bars missing in its sessions):" in out
    assert "2021-01-11 06:00 -> 2021-01-11 09:00 UTC (3 bars)" in out
    lake_dir = tmp_path / "data" / "lake"
    before = mtimes(lake_dir)
    again = runner.invoke(app, [*args, "--symbol", "ETH/USDT"])
    assert again.exit_code == 0, again.output
    assert "replay-crypto ETH/USDT 1h: the lake already has 2021-01-01 00:00 -> 2021-04-01 00:00 UTC; nothing " in (
        again.output
    )
    assert "nothing written" in again.output and mtimes(lake_dir) == before

    refusals = {
        "unknown venue 'okx'; valid venues: replay-crypto, replay-cn, replay-us": ["--venue", "okx"],
        "the lake is where backfill writes, not a source": ["--venue", "lake"],
        "unknown symbol 'XRP/USD' on venue 'replay-crypto'; valid symbols: BTC/USD, ETH/USDT": ["--symbol", "XRP/USD"],
        "unknown timeframe '2h'; valid timeframes: 1m, 5m": ["--timeframe", "2h"],
        "BTC/USD has 1h bars at the finest, so 15m is not available": ["--timeframe", "15m"],
        "--from '2021-13-01' is not a date: use YYYY-MM-DD": ["--from", "2021-13-01"],
        "empty range: --from 2021-05-01 must be before --to 2021-03-31": ["--from", "2021-05-01"],
        "nothing final to fetch yet": ["--from", "2999-01-01", "--to", "2999-02-01"],
    }
    for message, change in refusals.items():
        options = dict(zip(args[1::2], args[2::2], strict=True)) | {"--symbol": "BTC/USD"}
        options.update(dict(zip(change[::2], change[1::2], strict=True)))
        argv = ["backfill", *[x for kv in options.items() for x in kv]]
        refused = runner.invoke(app, argv)
        assert refused.exit_code == 2, (argv, refused.output)
        assert message in refused.output, (message, refused.output)
        assert "Traceback" not in refused.output
    assert mtimes(lake_dir) == before


def _backfill_process(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    env["TRADEOPS_DATA_DIR"] = str(data_dir)
    # Each "(part-" line reaches the test as it is written, not in 8 KB blocks: otherwise the 40th
    # may arrive with the last, after the backfill ended, and the interrupt comes too late.
    env["PYTHONUNBUFFERED"] = "1"
    argv = [
        sys.executable,
        "-c",
        # Python's own Ctrl-C handler, even when this test runs in a background job (which starts
        # its children with SIGINT ignored, and Python then installs none).
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); from bot.cli import app; app()",
        "backfill",
        "--venue",
        "replay-cn",
        "--symbol",
        "510300.SH",
        "--timeframe",
        "5m",
        "--from",
        "2021-04-22",
        "--to",
        "2022-01-18",
        "--chunk-bars",
        "12",  # an hour of 5-minute bars per chunk: thousands of chunks, time to interrupt
        *extra,
    ]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_parts(process: subprocess.Popen[str], parts: int) -> None:
    assert process.stdout is not None
    seen = 0
    for line in process.stdout:
        seen += "(part-" in line
        if seen >= parts:
            return
    raise AssertionError(f"the backfill ended before writing {parts} parts: {process.wait()} {process.stderr}")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill -9", "Ctrl-C"])
def test_an_interrupted_backfill_process_resumes_with_no_gap_and_no_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    data_dir = tmp_path / "data"
    process = _backfill_process(data_dir)
    try:
        _wait_for_parts(process, 40)
        os.kill(process.pid, signal.SIGKILL if how == "kill -9" else signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if how == "kill -9":
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130, stderr
        assert "interrupted; kept in the lake: replay-cn 510300.SH 5m:" in stderr
        assert "Run the same command again to resume" in stderr
    lake = BarsLake(data_dir / "lake")
    dataset = lake.dataset("replay-cn", "510300.SH", "5m")
    manifest = dataset.manifest()
    assert manifest is not None and len(manifest.parts) >= 40
    start, end = utc("2021-04-22"), utc("2022-01-19")
    assert manifest.covered[0][0] == start and manifest.covered[-1][1] < end  # stopped midway
    # Resume (in this process, through the same command) and compare with the source.
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(data_dir))
    resumed = CliRunner().invoke(
        app,
        [
            "backfill",
            "--venue",
            "replay-cn",
            "--symbol",
            "510300.SH",
            "--timeframe",
            "5m",
            "--from",
            "2021-04-22",
            "--to",
            "2022-01-18",
            "--chunk-bars",
            "2000",
        ],
    )
    assert resumed.exit_code == 0, resumed.output
    source = FlakySource("cn")
    expected = asyncio.run(source_bars(source, "510300.SH", "5m", start, end))
    pd.testing.assert_frame_equal(dataset.read(), expected, check_freq=False)
    assert dataset.manifest().covered == [(start, end)]  # type: ignore[union-attr]
    assert no_duplicates(lake)
    listed = {p.file for p in dataset.manifest().parts}  # type: ignore[union-attr]
    assert {p.name for p in dataset.path.iterdir() if p.name.startswith(("part-", "."))} - {".lock"} == listed


async def test_an_unreadable_manifest_is_a_clear_error_for_its_dataset_only(lake: BarsLake) -> None:
    source = FlakySource("crypto")
    for symbol in ("BTC/USD", "ETH/USDT"):
        await backfill(lake, source, symbol, "1h", utc("2021-01-01"), utc("2021-01-03"), clock=source.clock)
    broken = lake.dataset(source.name, "BTC/USD", "1h")
    (broken.path / "manifest.json").write_text('{"schema_version": 99, "venue": "x"')
    assert [d.symbol for d, _ in lake.datasets()] == ["ETH/USDT"]  # the other dataset still serves
    assert query_lake(lake, "select distinct symbol from bars").rows == [("ETH/USDT",)]
    with pytest.raises(LakeError, match=r"unreadable lake manifest .*manifest\.json"):
        await backfill(lake, source, "BTC/USD", "1h", utc("2021-01-01"), utc("2021-01-05"), clock=source.clock)


async def test_a_terminal_gets_a_progress_bar_and_no_chunk_lines(lake: BarsLake) -> None:
    from rich.console import Console

    from bot.lake_commands import BackfillRun, run_backfill

    screen = io.StringIO()
    lines: list[str] = []
    run = BackfillRun(echo=lines.append, console=Console(file=screen, force_terminal=True, width=120))
    source = FlakySource("crypto")
    with run:
        await run_backfill(
            lake, source, ["BTC/USD"], "1h", utc("2021-01-01"), utc("2021-03-01"), clock=source.clock, run=run,
            chunk_bars=500,
        )  # fmt: skip
    assert "replay-crypto BTC/USD 1h" in screen.getvalue() and "3/3" in screen.getvalue()
    assert not any("(part-" in line for line in lines)  # the bar replaces the per-chunk lines
    assert lines[0] == "replay-crypto BTC/USD 1h: wrote 1407 bars in 3 part(s) (3 chunk(s) of 2021-01-01 00:00 -> " + (
        "2021-03-01 00:00 UTC)"
    )


def test_doctor_reports_the_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path / "data"))
    lake = BarsLake(tmp_path / "data" / "lake")
    source = FlakySource("crypto")
    asyncio.run(backfill(lake, source, "BTC/USD", "1h", utc("2021-01-01"), utc("2021-02-01"), clock=source.clock))
    doctor = CliRunner().invoke(app, ["doctor"])
    assert "[ok  ] bars lake: 1 dataset(s), 735 bars, 1 gap(s) the venues have" in doctor.output
