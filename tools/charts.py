"""Chart PNGs for signal cards and run summaries: a candlestick chart with the trade's levels, and an
equity curve.

Output
    1080 x 720 px (7.2 x 4.8 in at 150 dpi): legible on a phone in Telegram, which shows photos up
    to 1280 px wide. The PNG is a 64-colour palette image (typically 15-25 KB) written by Pillow
    without any text chunk, so the same inputs give byte-identical files on the same installation
    (matplotlib's own ``savefig`` would embed ``Software: Matplotlib version ...``).

Speed (benchmarks/charts.py)
    The plain call, ``mplfinance.plot(..., type="candle", volume=True, savefig=...)``, takes about
    140 ms of CPU per chart on the development machine; ``signal_chart`` takes about 50 ms (an
    equity chart about 40 ms). Where the time went, and what this module does instead:

    - ``savefig`` draws the figure a second time just to encode it, then zlib-compresses RGBA
      (about 35 ms together). We draw once on our own Agg canvas and give its buffer to Pillow,
      quantised to a 64-colour palette: about 9 ms, and half the file size.
    - mplfinance's volume panel is ``Axes.bar``: one ``Rectangle`` artist per bar, each updating
      the data limits (about 20 ms for 120 bars). Volume here is one ``PolyCollection``.
    - Panel mode builds four axes (two panels, each with a twin) and creating an ``Axes`` costs
      about 6 ms. We use mplfinance's external-axes mode on a single axes whose bottom band is the
      volume pane.
    - matplotlib ``Tick`` objects are expensive (two tick lines, a grid line and two texts each,
      re-laid-out at every draw), and an axes title or automatic axis-label placement measures
      every tick label at draw time: together about 20 ms. The axes' ``Axis`` objects are hidden;
      grid lines are one ``LineCollection`` and the few labels are plain texts at positions from
      matplotlib's own locators (``MaxNLocator``, ``AutoDateLocator``/``ConciseDateFormatter``).

    What remains is creating one axes (~6 ms), mplfinance's argument checks and candle
    collections (~5 ms), drawing (~25 ms, two thirds of it FreeType text layout and rasterising
    for ~20 labels) and encoding (~9 ms). Matplotlib holds the GIL for nearly all of it, so worker
    threads keep the event loop free but do not render faster together than one after another.

Threads
    mplfinance's panel mode is not safe to call from worker threads: it creates the figure with
    ``pyplot.figure`` (pyplot's global figure registry, and a GUI window if the process's backend
    is interactive) and applies its style with ``plt.style.use`` and ``rcParams.update``, which
    rewrite the process-wide defaults for every other matplotlib user and are not restored (its
    ``rc_context`` decorator is commented out in 0.12.10b0). This module never uses pyplot and
    never writes ``rcParams``: each call builds its own ``Figure`` on its own ``FigureCanvasAgg``
    and calls mplfinance in external-axes mode, which applies no style globally and creates no
    figure. Every style value is passed to the artists explicitly. No mathtext is produced (its
    parser cache is shared); matplotlib keys its FreeType font cache by thread. Charts may
    therefore be rendered concurrently from worker threads (e.g. ``asyncio.to_thread``) with no
    lock; tests/test_charts.py renders concurrently and checks the bytes against serial renders.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
import mplfinance as mpf
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory
from PIL import Image

from venues.clock import ensure_utc
from venues.timeframes import parse_timeframe

MAX_BARS = 120
WIDTH_PX = 1080
HEIGHT_PX = 720
DPI = 150
PALETTE_COLOURS = 64

FONT = "DejaVu Sans"  # ships with matplotlib: the same glyphs on every machine
INK = "#1f2328"
MUTED = "#656d76"
GRID = "#e7e9ec"
UP = "#089981"
DOWN = "#f23645"
UP_VOLUME = "#9ed5cc"
DOWN_VOLUME = "#f7b3b9"
ENTRY = "#1f6feb"
STOP = "#d1242f"
TAKE_PROFIT = "#1a7f37"
EQUITY = "#1f6feb"

_OHLC = ("open", "high", "low", "close")
_VOLUME_BAND = 0.25  # bottom fraction of the chart axes that holds the volume pane
_VOLUME_TOP = 0.17  # the tallest volume bar, in axes fractions (room above it for the label)
_LEFT, _RIGHT = 0.015, 0.895  # plot area in figure fractions; the right margin holds the price ticks
_STYLE = mpf.make_mpf_style(
    marketcolors=mpf.make_marketcolors(up=UP, down=DOWN, edge="inherit", wick="inherit"),
    y_on_right=True,
)

Price = Decimal | float | int


def signal_chart(
    bars: pd.DataFrame,
    *,
    symbol: str,
    timeframe: object,
    side: object = None,
    entry: Price | None = None,
    stop: Price | None = None,
    take_profits: Sequence[Price] = (),
    path: str | os.PathLike[str],
    title_note: str = "",
    tz: str | tzinfo | None = None,
) -> Path:
    """Draw the last ``MAX_BARS`` bars as candles with volume, and the entry (blue), stop (red) and
    take-profit levels (green, ``TP1``...) as labelled horizontal lines; write a PNG to ``path``.
    A plain chart (no signal, no open position) passes none of them and shows no level at all.

    ``bars`` is a bar frame (``venues.timeframes``): tz-aware ``DatetimeIndex`` of bar open times,
    float ``open, high, low, close`` and, optionally, ``volume``. ``timeframe`` and ``side`` are
    shown as given (``Timeframe`` and ``Side`` print as ``15m`` and ``buy``); the title reads
    ``510300.SH 15m BUY`` (``510300.SH 15m`` without a side), followed by ``title_note``. Times
    are shown in ``tz`` (an IANA name such as ``"Asia/Shanghai"``, or a tzinfo), in UTC without it.
    Prices may be Decimal or float; labels show them at the precision of the bars' prices (a
    Decimal never loses digits).

    Raises ``ValueError`` for an empty frame, missing OHLC columns, a frame without a usable close,
    a naive index, and a non-finite entry, stop or take-profit.
    """
    frame = _checked_bars(bars)
    take_profits = list(take_profits)
    targets = [_finite(f"take_profits[{i}]", tp) for i, tp in enumerate(take_profits)]
    zone = _zone(tz)

    frame = frame.iloc[-MAX_BARS:]
    local = frame.index.tz_convert(zone)
    n = len(frame)
    decimals = _price_decimals(frame["close"].to_numpy(dtype="float64"))
    has_volume = "volume" in frame.columns and bool(np.nan_to_num(frame["volume"].to_numpy(dtype="float64")).any())

    fig, canvas = _figure()
    # One axes holds both panes: the volume pane is its bottom band (a second axes would cost about
    # 6 ms to create), prices live above ``floor``.
    ax = fig.add_axes((_LEFT, 0.10, _RIGHT - _LEFT, 0.81))
    floor = _VOLUME_BAND if has_volume else 0.0
    levels: list[tuple[str, float, Price, str, str]] = [
        *((("Entry", _finite("entry", entry), entry, ENTRY, "-"),) if entry is not None else ()),
        *((("Stop", _finite("stop", stop), stop, STOP, "--"),) if stop is not None else ()),
        *(
            (f"TP{i + 1}", f, tp, TAKE_PROFIT, "--")
            for i, (f, tp) in enumerate(zip(targets, take_profits, strict=True))
        ),
    ]
    lows = frame["low"].to_numpy(dtype="float64")
    highs = frame["high"].to_numpy(dtype="float64")
    lo = float(np.nanmin([np.nanmin(lows), *(lv[1] for lv in levels)]))
    hi = float(np.nanmax([np.nanmax(highs), *(lv[1] for lv in levels)]))
    pad = (hi - lo) * 0.06 or abs(hi) * 0.01 or 1.0
    price_lim = (lo - pad, hi + pad)
    ylim = (price_lim[0] - floor / (1 - floor) * (price_lim[1] - price_lim[0]), price_lim[1])
    label_chars = max((len(f"{lv[0]} {_price_text(lv[2], decimals)}") for lv in levels), default=0)
    gutter = max(4.0, (n + 1) * label_chars * 0.0145) if levels else 1.5  # bars of empty space right of the last bar
    xlim = (-0.8, n - 1 + gutter)

    # mplfinance in external-axes mode: it draws candles and levels onto our axes and touches no
    # global state (see the module docstring).
    mpf.plot(
        _mpf_frame(frame),
        ax=ax,
        type="candle",
        style=dict(_STYLE),
        volume=False,
        **(
            {
                "hlines": {
                    "hlines": [lv[1] for lv in levels],
                    "colors": [lv[3] for lv in levels],
                    "linestyle": [lv[4] for lv in levels],
                    "linewidths": [1.6 for _ in levels],
                }
            }
            if levels
            else {}
        ),
        xlim=xlim,
        ylim=ylim,
        xrotation=0,
        ylabel="",
        warn_too_much_data=MAX_BARS + 1,
    )
    _plain_axes(ax, xlim)
    _y_ticks(ax, MaxNLocator(6).tick_values(*price_lim), price_lim, transform=ax.get_yaxis_transform())
    if has_volume:
        _volume(ax, frame)
    # Level labels sit in an empty gutter right of the last bar, next to the latest price action,
    # where they cover no candle; labels of close levels are pushed apart so that none hides another.
    band_px = HEIGHT_PX * 0.81 * (1 - floor)
    label_y = _spread([lv[1] for lv in levels], (price_lim[1] - price_lim[0]) * 32 / band_px, price_lim)
    for (name, _value, given, colour, _), y in zip(levels, label_y, strict=True):
        ax.text(
            xlim[1] - 0.4,
            y,
            f"{name} {_price_text(given, decimals)}",
            ha="right",
            va="center",
            fontsize=9.5,
            fontweight="bold",
            fontfamily=FONT,
            color=colour,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": colour, "alpha": 0.95},
            zorder=5,
            clip_on=False,
        )

    labels = _time_labels(local, timeframe)
    _x_ticks(ax, ticks := _time_ticks(n), [labels[i] for i in ticks])

    title = f"{symbol} {timeframe}"
    if side is not None:
        title += f" {str(getattr(side, 'value', side)).upper()}"
    fig.text(_LEFT, 0.955, title, fontsize=15, fontweight="bold", fontfamily=FONT, color=INK, va="center")
    if title_note:
        fig.text(_LEFT, 0.918, title_note, fontsize=10, fontfamily=FONT, color=MUTED, va="center")
    last = float(frame["close"].iloc[-1])
    _corner_note(
        fig, f"close {_price_text(last, decimals)} at {_as_of(bars, frame, zone):%Y-%m-%d %H:%M} {_zone_name(zone)}"
    )
    return _write_png(canvas, path)


def equity_curve_chart(
    points: Sequence[tuple[datetime, float | Decimal]],
    *,
    path: str | os.PathLike[str],
    currency: str,
    title: str = "Equity",
    tz: str | tzinfo | None = None,
) -> Path:
    """A step chart of equity over time, with the starting value as a dashed line and the final
    value annotated (with the change since the start); write a PNG to ``path``. The title reads
    ``title (currency)``, the currency once even when ``title`` already names it.

    ``points`` are (aware datetime, value) pairs, in any order. With fewer than two points the PNG
    says there is not enough history (and shows the one value, if any). Times are shown in ``tz``
    (UTC without it). Raises ``ValueError`` for a naive datetime or a non-finite value.
    """
    zone = _zone(tz)
    rows = sorted(
        ((ensure_utc(moment), _finite(f"points[{i}] value", value)) for i, (moment, value) in enumerate(points)),
        key=lambda row: row[0],
    )
    fig, canvas = _figure()
    head = f"{title} ({currency})" if currency and f"({currency})" not in title else title
    fig.text(_LEFT, 0.955, head, fontsize=15, fontweight="bold", fontfamily=FONT, color=INK, va="center")

    if len(rows) < 2:
        message = "Not enough history to draw an equity curve"
        detail = (
            f"one point: {_money(rows[0][1], currency)} at {_local(rows[0][0], zone):%Y-%m-%d %H:%M} {_zone_name(zone)}"
            if rows
            else "no points yet"
        )
        fig.text(0.5, 0.55, message, fontsize=14, fontfamily=FONT, color=INK, ha="center", va="center")
        fig.text(0.5, 0.45, detail, fontsize=11, fontfamily=FONT, color=MUTED, ha="center", va="center")
        return _write_png(canvas, path)

    # Wall-clock times in the display zone, as naive datetimes read as UTC by matplotlib's date
    # converter and formatted with tz=UTC: the labels do not depend on rcParams["timezone"].
    x = mdates.date2num([_local(moment, zone).replace(tzinfo=None) for moment, _ in rows])
    y = np.array([value for _, value in rows], dtype="float64")
    start, final = float(y[0]), float(y[-1])

    lo, hi = float(min(y.min(), start)), float(max(y.max(), start))
    pad = (hi - lo) * 0.08 or abs(hi) * 0.01 or 1.0
    span = float(x[-1] - x[0]) or 1.0
    ylim = (lo - pad, hi + pad)
    ax = fig.add_axes((_LEFT, 0.10, _RIGHT - _LEFT, 0.81))
    _plain_axes(ax, (float(x[0] - span * 0.01), float(x[-1] + span * 0.01)))
    ax.set_ylim(*ylim)
    # Steps, not slopes: equity is marked only while a market is open, so between two snapshots it
    # stayed where it was (a closed session or weekend is a flat run, not a line drifting across it).
    ax.plot(x, y, color=EQUITY, linewidth=2.0, drawstyle="steps-post", solid_joinstyle="miter")
    ax.fill_between(x, y, start, color=EQUITY, alpha=0.08, linewidth=0, step="post")
    ax.axhline(start, color=MUTED, linewidth=1.2, linestyle="--")
    _y_ticks(ax, MaxNLocator(6).tick_values(*ylim), ylim, transform=ax.get_yaxis_transform())
    # Date ticks and labels from matplotlib's date locator and concise formatter, drawn as texts.
    locator = mdates.AutoDateLocator(minticks=3, maxticks=7, tz=mdates.UTC)
    ticks = [t for t in locator.tick_values(mdates.num2date(x[0]), mdates.num2date(x[-1])) if x[0] <= t <= x[-1]]
    _x_ticks(ax, ticks, mdates.ConciseDateFormatter(locator, tz=mdates.UTC, show_offset=False).format_ticks(ticks))

    change = (final - start) / start * 100 if start else float("nan")
    change_text = f" ({change:+.2f}%)" if math.isfinite(change) else ""
    colour = TAKE_PROFIT if final >= start else STOP
    ax.annotate(
        f"{_money(final, currency)}{change_text}",
        xy=(x[-1], final),
        xytext=(-8, 10 if final >= start else -10),
        textcoords="offset points",
        ha="right",
        va="bottom" if final >= start else "top",
        fontsize=11,
        fontweight="bold",
        fontfamily=FONT,
        color=colour,
        bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": colour, "alpha": 0.9},
    )
    ax.plot([x[-1]], [final], marker="o", markersize=5, color=colour)
    first, last = _local(rows[0][0], zone), _local(rows[-1][0], zone)
    # Under the title, not beside it: a long venue name would run into a note on the same line.
    fig.text(
        _LEFT,
        0.918,
        f"start {_money(start, currency)} · {first:%Y-%m-%d} → {last:%Y-%m-%d} {_zone_name(zone)}",
        fontsize=10,
        fontfamily=FONT,
        color=MUTED,
        va="center",
    )
    return _write_png(canvas, path)


# --- input checks -------------------------------------------------------------------------------


def _corner_note(fig: Figure, text: str) -> None:
    """The muted line at the top right: what the chart is as of."""
    fig.text(_RIGHT, 0.955, text, fontsize=10, fontfamily=FONT, color=MUTED, ha="right", va="center")


def _checked_bars(bars: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(bars, pd.DataFrame):
        raise ValueError(f"bars must be a pandas DataFrame (a bar frame), got {type(bars).__name__}")
    missing = [c for c in _OHLC if c not in bars.columns]
    if len(bars) == 0:
        raise ValueError("no bars to draw: the bar frame is empty")
    if missing:
        raise ValueError(f"bar frame is missing column(s) {', '.join(missing)}; need {', '.join(_OHLC)}")
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError(f"bar frame must be indexed by bar open time (DatetimeIndex), got {type(bars.index).__name__}")
    if bars.index.tz is None:
        raise ValueError("bar frame index is naive; bar open times must be tz-aware (UTC)")
    columns = [c for c in (*_OHLC, "volume") if c in bars.columns]
    frame = bars[columns].astype("float64")
    frame = frame[np.isfinite(frame["close"].to_numpy())]
    if len(frame) == 0:
        raise ValueError("no bars to draw: no bar has a finite close")
    return frame


def _finite(name: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, InvalidOperation):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def _zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return ZoneInfo("UTC")
    if isinstance(tz, str):
        return ZoneInfo(tz)
    return tz


def _zone_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone)


def _as_of(bars: pd.DataFrame, frame: pd.DataFrame, zone: tzinfo) -> datetime:
    """When the last drawn bar is final: its ``close_time``, or its open time without one."""
    moment = frame.index[-1]
    if "close_time" in bars.columns:
        close_time = pd.Timestamp(bars["close_time"].loc[moment] if bars.index.is_unique else moment)
        if close_time is not pd.NaT and close_time.tzinfo is not None:
            moment = close_time
    return pd.Timestamp(moment).tz_convert(zone).to_pydatetime()


def _local(moment: datetime, zone: tzinfo) -> datetime:
    return moment.astimezone(zone)


# --- drawing helpers ----------------------------------------------------------------------------


def _figure() -> tuple[Figure, FigureCanvasAgg]:
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor="white")
    return fig, FigureCanvasAgg(fig)


_TICK_TEXT: dict[str, Any] = {"fontsize": 10, "fontfamily": FONT, "color": INK}


def _plain_axes(ax: Any, xlim: tuple[float, float]) -> None:
    """Axes without matplotlib's tick machinery: no ``Axis`` is drawn, and ``_y_ticks`` and the
    time labels are a few plain texts and one line collection. A matplotlib ``Tick`` is two tick
    lines, a grid line and two texts, re-created and re-laid-out at every draw; dropping them saves
    about a third of a signal chart's render time (see the module docstring)."""
    ax.set_facecolor("white")
    ax.set_xlim(*xlim)
    ax.xaxis.set_visible(False)
    ax.yaxis.set_visible(False)
    for name, spine in ax.spines.items():
        spine.set_visible(name in ("bottom", "right"))
        spine.set_color(MUTED)


def _y_ticks(
    ax: Any,
    values: Sequence[float] | np.ndarray,
    ylim: tuple[float, float],
    *,
    transform: Any,
    text: Callable[[Sequence[float]], list[str]] = lambda values: _tick_texts(values),
) -> None:
    """Right-hand labels with tick marks and horizontal grid lines at ``values`` (those inside
    ``ylim``); ``transform`` maps (axes x, value) to the display."""
    lo, hi = min(ylim), max(ylim)
    shown = [float(v) for v in values if lo <= v <= hi]
    labels = text(shown)
    ax.add_collection(
        LineCollection([[(0, v), (1, v)] for v in shown], colors=GRID, linewidths=0.8, transform=transform, zorder=0.5),
        autolim=False,
    )
    marks = LineCollection([[(1, v), (1.008, v)] for v in shown], colors=MUTED, linewidths=0.8, transform=transform)
    marks.set_clip_on(False)
    ax.add_collection(marks, autolim=False)
    for v, label in zip(shown, labels, strict=True):
        ax.text(1.014, v, label, transform=transform, ha="left", va="center", **_TICK_TEXT)


def _spread(values: Sequence[float], gap: float, limits: tuple[float, float]) -> list[float]:
    """Positions for labels at ``values``, at least ``gap`` apart and inside ``limits`` where there is
    room, each as close to its value as that allows; returned in the order of ``values``."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    placed = [values[i] for i in order]
    for k in range(1, len(placed)):  # push up
        placed[k] = max(placed[k], placed[k - 1] + gap)
    top = limits[1] - gap / 2
    for k in range(len(placed) - 1, -1, -1):  # then down from the top, where the first pass overflowed
        ceiling = top if k == len(placed) - 1 else placed[k + 1] - gap
        placed[k] = min(placed[k], ceiling)
    out = [0.0] * len(values)
    for k, i in enumerate(order):
        out[i] = placed[k]
    return out


def _x_ticks(ax: Any, values: Sequence[float], labels: Sequence[str]) -> None:
    """Tick marks and labels under the x axis at data positions ``values``."""
    transform = ax.get_xaxis_transform()
    marks = LineCollection([[(v, 0), (v, -0.008)] for v in values], colors=MUTED, linewidths=0.8, transform=transform)
    marks.set_clip_on(False)
    ax.add_collection(marks, autolim=False)
    for v, label in zip(values, labels, strict=True):
        ax.text(v, -0.016, label, transform=transform, ha="center", va="top", **_TICK_TEXT)


def _mpf_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """mplfinance wants a naive DatetimeIndex. Its x axis is the bar number (no gaps for closed
    sessions) and the time labels are ours (``_time_labels``), so the index is only carried along:
    naive UTC, which unlike local wall time never repeats at a daylight-saving change."""
    out = frame[list(_OHLC)].copy()
    out.index = frame.index.tz_convert("UTC").tz_localize(None)
    return out


def _volume(ax: Any, frame: pd.DataFrame) -> None:
    """Volume bars in the bottom band of the price axes (x in bars, y in axes fractions), one
    ``PolyCollection`` rather than mplfinance's ``Axes.bar`` (one artist per bar, ~20 ms)."""
    volume = np.nan_to_num(frame["volume"].to_numpy(dtype="float64"))
    top = float(volume.max()) or 1.0
    height = volume / top * _VOLUME_TOP
    up = frame["close"].to_numpy() >= frame["open"].to_numpy()
    x = np.arange(len(volume), dtype="float64")
    left, right, zero = x - 0.35, x + 0.35, np.zeros_like(volume)
    verts: Any = np.stack(  # one (N, 4, 2) array: PolyCollection's fast path, no per-bar list
        [
            np.column_stack([left, zero]),
            np.column_stack([left, height]),
            np.column_stack([right, height]),
            np.column_stack([right, zero]),
        ],
        axis=1,
    )
    colours = np.where(up[:, None], np.array(to_rgba(UP_VOLUME)), np.array(to_rgba(DOWN_VOLUME)))
    band = blended_transform_factory(ax.transData, ax.transAxes)
    ax.add_collection(PolyCollection(verts, facecolors=colours, linewidths=0, transform=band), autolim=False)
    border = _VOLUME_BAND - 0.012
    ax.add_collection(
        LineCollection([[(0, border), (1, border)]], colors=MUTED, linewidths=0.8, transform=ax.transAxes),
        autolim=False,
    )
    _y_ticks(ax, [_VOLUME_TOP], (0, 1), transform=ax.transAxes, text=lambda _: _volume_text([top]))
    ax.text(
        0.006, _VOLUME_BAND - 0.03, "Volume", transform=ax.transAxes, fontsize=9, fontfamily=FONT, color=MUTED, va="top"
    )


def _write_png(canvas: FigureCanvasAgg, path: str | os.PathLike[str]) -> Path:
    canvas.draw()
    width, height = canvas.get_width_height()
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    palette = image.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")  # no pnginfo, no dpi: nothing that varies between runs
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())
    return target


# --- number and time formatting -----------------------------------------------------------------


def _price_decimals(closes: np.ndarray) -> int:
    """The fewest decimals that show every close exactly (the bars' price precision), but no more
    than about seven significant digits need: ``34,690.14``, ``5.077``, ``0.00001234``."""
    values = closes[np.isfinite(closes)]
    scale = float(np.abs(values).max()) if values.size else 1.0
    integer_digits = math.floor(math.log10(scale)) + 1 if scale > 0 else 1
    cap = min(10, max(2, 7 - integer_digits))
    for decimals in range(cap):
        if np.allclose(np.round(values, decimals), values, rtol=0, atol=max(scale * 1e-12, 1e-12)):
            return decimals
    return cap


def _price_text(value: Price, decimals: int) -> str:
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        own = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        return f"{value:,.{max(decimals, own)}f}"
    return f"{float(value):,.{decimals}f}"


def _money(value: float, currency: str) -> str:
    text = f"{value:,.2f}"
    return f"{text} {currency}" if currency else text


def _tick_texts(values: Sequence[float]) -> list[str]:
    """Tick labels with thousands separators and as few decimals as the values need; never an
    offset or scientific notation (which would need mathtext)."""
    ticks = np.asarray(values, dtype="float64")
    scale = float(np.abs(ticks).max()) if ticks.size else 1.0
    decimals = 0
    while decimals < 10 and not np.allclose(np.round(ticks, decimals), ticks, rtol=0, atol=max(scale * 1e-9, 1e-12)):
        decimals += 1
    return [f"{v:,.{decimals}f}" for v in ticks]


def _volume_text(values: Sequence[float]) -> list[str]:
    out = []
    for x in values:
        for threshold, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"), (0.0, "")):
            if abs(x) >= threshold:
                out.append(f"{x / threshold if threshold else x:.3g}{suffix}")
                break
    return out


def _time_ticks(n: int) -> list[int]:
    """Five evenly spaced bars, kept away from the left edge so the first label is not cut."""
    if n <= 5:
        return list(range(n))
    return sorted({round(v) for v in np.linspace(n * 0.06, n - 1 - n * 0.04, 5)})


def _time_labels(local: pd.DatetimeIndex, timeframe: object) -> list[str]:
    """Dates for daily (or longer) bars, else month-day and time. An unknown timeframe counts as
    intraday when two bars share a local date."""
    try:
        intraday = parse_timeframe(str(timeframe)).delta < pd.Timedelta(days=1)
    except ValueError:
        intraday = len(set(local.date)) < len(local)
    fmt = "%m-%d %H:%M" if intraday else "%Y-%m-%d"
    return [moment.strftime(fmt) for moment in local]
