"""tools.charts: real PNGs of the expected size from real replay bars, byte-identical for the same
inputs (also when rendered from several threads at once), no metadata chunks, no change to
matplotlib's global state, and readable errors for bad input."""

from __future__ import annotations

import asyncio
import itertools
import math
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import tools.charts as charts
from tools.charts import HEIGHT_PX, WIDTH_PX, equity_curve_chart, signal_chart
from venues.clock import SimulatedClock
from venues.models import Side
from venues.replay import ReplayVenue

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@cache
def replay_bars(
    market: str, symbol: str, timeframe: str, limit: int = 120, at: datetime = datetime(2021, 7, 6, 7, tzinfo=UTC)
) -> pd.DataFrame:
    venue = ReplayVenue(market, SimulatedClock(at))
    return asyncio.run(venue.bars(symbol, timeframe, limit=limit))


def cn_bars() -> pd.DataFrame:
    return replay_bars("cn", "510300.SH", "15m")


def signal_args(bars: pd.DataFrame | None = None, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "bars": cn_bars() if bars is None else bars,
        "symbol": "510300.SH",
        "timeframe": "15m",
        "side": Side.BUY,
        "entry": Decimal("5.127"),
        "stop": Decimal("5.02"),
        "take_profits": [Decimal("5.18"), 5.25, 5.3],
        "title_note": "breakout above the 20-bar high",
        "tz": "Asia/Shanghai",
    }
    return args | overrides


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk, each CRC checked."""
    assert data[:8] == PNG_SIGNATURE
    chunks, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind, payload = data[i + 4 : i + 8], data[i + 8 : i + 8 + length]
        (crc,) = struct.unpack(">I", data[i + 8 + length : i + 12 + length])
        assert zlib.crc32(kind + payload) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, payload))
        i += 12 + length
    return chunks


def assert_valid_png(path: Path) -> bytes:
    data = path.read_bytes()
    chunks = png_chunks(data)
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert (width, height) == (WIDTH_PX, HEIGHT_PX) == (1080, 720)
    # Nothing that varies between runs or versions: no tEXt/iTXt/zTXt (matplotlib writes its
    # version there), no tIME.
    assert set(kinds) <= {b"IHDR", b"PLTE", b"IDAT", b"IEND"}, kinds
    with Image.open(path) as image:
        image.load()  # decodes every IDAT: a truncated or corrupt image raises here
        assert image.size == (1080, 720)
    assert 5_000 < len(data) < 80_000  # tens of KB
    return data


def colour_present(path: Path, hex_colour: str, tolerance: int = 40) -> bool:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16).reshape(-1, 3)
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return bool((np.abs(pixels - target).max(axis=1) <= tolerance).sum() > 200)


# --- signal chart ---------------------------------------------------------------------------------


def test_signal_chart_writes_a_phone_sized_png_with_the_levels(tmp_path: Path) -> None:
    out = signal_chart(**signal_args(), path=tmp_path / "cards" / "510300.png")
    assert out == tmp_path / "cards" / "510300.png"
    assert_valid_png(out)
    for colour in (charts.ENTRY, charts.STOP, charts.TAKE_PROFIT, charts.UP, charts.DOWN):
        assert colour_present(out, colour), colour


def test_a_plain_chart_marks_no_level_and_names_no_side(tmp_path: Path) -> None:
    args = {k: v for k, v in signal_args().items() if k not in ("side", "entry", "stop", "take_profits")}
    out = signal_chart(**args, path=tmp_path / "plain.png")
    marked = signal_chart(**signal_args(), path=tmp_path / "marked.png")
    assert_valid_png(out)
    # A tight tolerance: the stop's red is close to a down candle's.
    for colour in (charts.ENTRY, charts.STOP, charts.TAKE_PROFIT):
        assert colour_present(marked, colour, tolerance=8) and not colour_present(out, colour, tolerance=8), colour
    assert colour_present(out, charts.UP) and colour_present(out, charts.DOWN)


def test_same_inputs_give_byte_identical_files(tmp_path: Path) -> None:
    first = signal_chart(**signal_args(), path=tmp_path / "a.png")
    second = signal_chart(**signal_args(), path=tmp_path / "b.png")
    assert first.read_bytes() == second.read_bytes()
    other = signal_chart(**signal_args(stop=Decimal("5.03")), path=tmp_path / "c.png")
    assert other.read_bytes() != first.read_bytes()


@pytest.mark.parametrize(
    ("market", "symbol", "timeframe", "tz"),
    [
        ("crypto", "BTC/USD", "1h", None),
        ("cn", "600519.SH", "1d", "Asia/Shanghai"),
        ("us", "SPY", "5m", "America/New_York"),
    ],
)
def test_other_markets_floats_and_sell_side(tmp_path: Path, market: str, symbol: str, timeframe: str, tz: str) -> None:
    bars = replay_bars(market, symbol, timeframe)
    close = float(bars["close"].iloc[-1])
    out = signal_chart(
        bars,
        symbol=symbol,
        timeframe=timeframe,
        side="sell",
        entry=close,
        stop=close * 1.02,
        take_profits=[close * 0.98, close * 0.999],  # one close to the entry: labels pushed apart
        path=tmp_path / "s.png",
        tz=tz,
    )
    assert_valid_png(out)


def test_draws_only_the_last_120_bars_without_volume_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[pd.DataFrame] = []
    plot = charts.mpf.plot

    def recording_plot(data: pd.DataFrame, **kwargs: Any) -> Any:
        drawn.append(data)
        return plot(data, **kwargs)

    monkeypatch.setattr(charts.mpf, "plot", recording_plot)
    long = replay_bars("crypto", "BTC/USD", "1h", limit=500)
    signal_chart(**signal_args(long.drop(columns=["volume"]), take_profits=[]), path=tmp_path / "s.png")
    assert len(drawn) == 1 and len(drawn[0]) == charts.MAX_BARS == 120
    assert drawn[0].index[-1] == long.index[-1].tz_localize(None)  # naive UTC: no DST repeats
    assert_valid_png(tmp_path / "s.png")


def test_a_daylight_saving_change_inside_the_window(tmp_path: Path) -> None:
    # New York falls back at 2021-11-07 06:00 UTC: local 01:00-02:00 happens twice in these bars.
    bars = replay_bars("crypto", "BTC/USD", "1h", at=datetime(2021, 11, 8, tzinfo=UTC))
    local = bars.index.tz_convert("America/New_York")
    assert not local.tz_localize(None).is_unique
    close = float(bars["close"].iloc[-1])
    out = signal_chart(
        bars,
        symbol="BTC/USD",
        timeframe="1h",
        side="buy",
        entry=close,
        stop=close * 0.98,
        take_profits=[close * 1.03],
        path=tmp_path / "dst.png",
        tz="America/New_York",
    )
    assert_valid_png(out)


def test_time_labels_are_local_and_match_the_timeframe() -> None:
    index = pd.DatetimeIndex(["2021-07-05 01:30", "2021-07-05 05:45"], tz="UTC")
    shanghai = index.tz_convert("Asia/Shanghai")
    assert charts._time_labels(shanghai, "15m") == ["07-05 09:30", "07-05 13:45"]
    assert charts._time_labels(index.tz_convert("America/New_York"), "1h") == ["07-04 21:30", "07-05 01:45"]
    assert charts._time_labels(shanghai, "1d") == ["2021-07-05", "2021-07-05"]


def test_price_labels_keep_decimal_digits_and_use_the_bars_precision() -> None:
    assert charts._price_decimals(np.array([5.077, 5.1, 5.12])) == 3
    assert charts._price_decimals(np.array([34690.14, 34000.0])) == 2
    assert charts._price_decimals(np.array([34690.1428571])) == 2  # computed prices: ~7 digits
    assert charts._price_decimals(np.array([0.00001234])) == 8
    assert charts._price_text(Decimal("5.1"), 3) == "5.100"
    assert charts._price_text(Decimal("5.12345"), 3) == "5.12345"  # never rounds a Decimal away
    assert charts._price_text(34690.1449, 2) == "34,690.14"
    assert charts._tick_texts([5.2, 5.25, 5.3]) == ["5.20", "5.25", "5.30"]
    assert charts._tick_texts([32800.0, 33600.0]) == ["32,800", "33,600"]


def test_close_levels_get_labels_at_least_a_gap_apart() -> None:
    placed = charts._spread([10.0, 10.01, 9.99, 12.0], 0.5, (9.0, 13.0))
    assert placed[3] == 12.0
    ordered = sorted(placed)
    assert all(b - a >= 0.5 - 1e-12 for a, b in itertools.pairwise(ordered))
    assert charts._spread([12.9, 12.95], 0.5, (9.0, 13.0)) == pytest.approx([12.25, 12.75])


# --- threads and global state -------------------------------------------------------------------


def test_concurrent_renders_match_serial_ones_and_leave_matplotlib_alone(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    rc_before = dict(matplotlib.rcParams)
    figures_before = plt.get_fignums()
    jobs = [
        signal_args(stop=Decimal("5.02") - Decimal("0.01") * i, symbol=f"T{i}", title_note=f"job {i}") for i in range(6)
    ]
    serial = [signal_chart(**job, path=tmp_path / f"serial{i}.png").read_bytes() for i, job in enumerate(jobs)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        paths = list(pool.map(lambda ij: signal_chart(**ij[1], path=tmp_path / f"thread{ij[0]}.png"), enumerate(jobs)))
    assert [p.read_bytes() for p in paths] == serial
    assert len(set(serial)) == len(serial)
    assert dict(matplotlib.rcParams) == rc_before
    assert plt.get_fignums() == figures_before  # no figure went through pyplot


# --- bad input ------------------------------------------------------------------------------------


def test_empty_bars_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no bars to draw"):
        signal_chart(**signal_args(cn_bars().iloc[:0]), path=tmp_path / "s.png")
    assert not (tmp_path / "s.png").exists()


def test_missing_ohlc_columns_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) high, low"):
        signal_chart(**signal_args(cn_bars().drop(columns=["high", "low"])), path=tmp_path / "s.png")


def test_naive_index_and_no_finite_close_are_refused(tmp_path: Path) -> None:
    naive = cn_bars().copy()
    naive.index = naive.index.tz_localize(None)
    with pytest.raises(ValueError, match="naive"):
        signal_chart(**signal_args(naive), path=tmp_path / "s.png")
    blank = cn_bars().assign(close=math.nan)
    with pytest.raises(ValueError, match="no bars to draw"):
        signal_chart(**signal_args(blank), path=tmp_path / "s.png")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("entry", math.nan),
        ("entry", Decimal("NaN")),
        ("stop", math.inf),
        ("stop", Decimal("-Infinity")),
        ("entry", "5.1x"),
    ],
)
def test_non_finite_entry_or_stop_is_refused(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        signal_chart(**signal_args(**{field: value}), path=tmp_path / "s.png")


def test_non_finite_take_profit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"take_profits\[1\]"):
        signal_chart(**signal_args(take_profits=[5.2, math.nan]), path=tmp_path / "s.png")


# --- equity curve -------------------------------------------------------------------------------


def equity(n: int) -> list[tuple[datetime, float | Decimal]]:
    start = datetime(2021, 7, 1, tzinfo=UTC)
    return [(start + timedelta(hours=6 * k), Decimal("100000") + Decimal(k * 37 % 500) - 200) for k in range(n)]


@pytest.mark.parametrize("n", [0, 1, 2, 400])
def test_equity_chart_with_0_1_and_many_points(tmp_path: Path, n: int) -> None:
    out = equity_curve_chart(equity(n), path=tmp_path / "equity.png", currency="USD")
    data = assert_valid_png(out)
    again = equity_curve_chart(equity(n), path=tmp_path / "again.png", currency="USD")
    assert again.read_bytes() == data


def test_equity_chart_sorts_points_and_refuses_bad_ones(tmp_path: Path) -> None:
    points = equity(50)
    forward = equity_curve_chart(points, path=tmp_path / "a.png", currency="CNY", tz="Asia/Shanghai")
    shuffled = equity_curve_chart(points[::-1], path=tmp_path / "b.png", currency="CNY", tz="Asia/Shanghai")
    assert forward.read_bytes() == shuffled.read_bytes()
    with pytest.raises(ValueError, match="naive"):
        equity_curve_chart([(datetime(2021, 7, 1), 1.0), *points], path=tmp_path / "c.png", currency="USD")
    with pytest.raises(ValueError, match=r"points\[1\] value must be finite"):
        equity_curve_chart([points[0], (points[1][0], math.inf)], path=tmp_path / "c.png", currency="USD")


def test_equity_chart_steps_across_closed_hours_and_names_the_currency_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    texts: list[tuple[float, float, str]] = []
    lines: list[dict[str, object]] = []
    real_text, real_plot = Figure.text, Axes.plot

    def text(self: Figure, x: float, y: float, s: str, *args: Any, **kwargs: Any) -> Any:
        texts.append((x, y, s))
        return real_text(self, x, y, s, *args, **kwargs)

    def plot(self: Axes, *args: Any, **kwargs: Any) -> Any:
        lines.append(kwargs)
        return real_plot(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "text", text)
    monkeypatch.setattr(Axes, "plot", plot)
    # A session close (16:00) to the next open (09:30): no mark in between.
    zone = "America/New_York"
    day = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
    points = [(day, 100.0), (day + timedelta(hours=6), 110.0), (day + timedelta(hours=24), 90.0)]
    equity_curve_chart(points, path=tmp_path / "e.png", currency="USD", title="alpaca equity (USD)", tz=zone)
    assert [s for _, _, s in texts if "equity" in s] == ["alpaca equity (USD)"]
    (title_y,) = {y for _, y, s in texts if "equity" in s}
    note_y = {y for _, y, s in texts if s.startswith("start ")}
    assert note_y and title_y not in note_y  # the note sits under the title, not on its line
    assert lines[0].get("drawstyle") == "steps-post"
