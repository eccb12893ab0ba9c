"""The backtest report: one self-contained HTML file (settings and data range, metrics, the equity
and drawdown chart and the monthly returns as PNGs embedded in base64, monthly returns and trades as
tables; nothing fetched when it opens) and a PNG of the equity and drawdown for chat.

Charts are drawn on a bare matplotlib ``Figure`` with the Agg canvas (no pyplot, no global state),
so a report can be rendered from any thread."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scheduler.backtest.engine import BacktestResult
from scheduler.backtest.metrics import EquityPoint, drawdown_series
from venues.clock import moment_text

INK = "#1f2933"
UP = "#1a7f37"
DOWN = "#c62828"


def monthly_returns(curve: Sequence[EquityPoint]) -> dict[tuple[int, int], float]:
    """(year, month) -> that month's return: its last equity over the previous month's last (the
    curve's first point for the first month), minus one."""
    last: dict[tuple[int, int], float] = {}
    for point in curve:
        last[(point.ts.year, point.ts.month)] = point.equity
    out: dict[tuple[int, int], float] = {}
    previous = curve[0].equity if curve else 0.0
    for key in sorted(last):
        if previous > 0:
            out[key] = last[key] / previous - 1.0
        previous = last[key]
    return out


def _title(result: BacktestResult) -> str:
    spec = result.spec
    m = result.metrics
    ret = m["total_return"]
    dd = m["max_drawdown"]
    head = f"{spec.venue} {','.join(spec.symbols)} {spec.timeframe} {spec.policy}"
    figures = f"return {ret * 100:+.2f}%" if ret is not None else "return n/a"
    figures += f", max drawdown {dd * 100:.2f}%" if dd is not None else ""
    return f"{head}: {figures}, {m['trades']} trades"


def _png(fig: Figure) -> bytes:
    canvas = FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()


def equity_png(result: BacktestResult) -> bytes:
    """Equity (top) and drawdown (bottom) over the window, titled with the key figures."""
    fig = Figure(figsize=(10, 6), dpi=100)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fig.suptitle(_title(result), fontsize=12, color=INK)
    curve = result.equity
    if curve:
        times = [p.ts for p in curve]
        top.plot(times, [p.equity for p in curve], color=INK, linewidth=1.2)
        top.axhline(curve[0].equity, color="#9aa5b1", linestyle="--", linewidth=0.8)
        bottom.fill_between(times, [d * 100 for d in drawdown_series(curve)], 0, color=DOWN, alpha=0.4)
    else:
        top.text(0.5, 0.5, "no equity points", ha="center", va="center", transform=top.transAxes)
    top.set_ylabel(f"equity ({result.currency})")
    bottom.set_ylabel("drawdown %")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    return _png(fig)


def monthly_png(months: dict[tuple[int, int], float]) -> bytes:
    fig = Figure(figsize=(10, 3), dpi=100)
    ax = fig.subplots()
    labels = [f"{y}-{m:02d}" for y, m in months]
    values = [v * 100 for v in months.values()]
    ax.bar(labels, values, color=[UP if v >= 0 else DOWN for v in values])
    ax.set_ylabel("monthly return %")
    ax.grid(True, axis="y", alpha=0.3)
    ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    return _png(fig)


def write_chart(result: BacktestResult, path: Path) -> Path:
    """The chat PNG (equity and drawdown) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(equity_png(result))
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _leak_banner(result: BacktestResult) -> list[str]:
    """Above everything else: the model may have been trained on the period it is tested on."""
    if not result.possible_leak:
        return []
    return [f'<p class="leak" id="possible-leak"><strong>{html.escape(result.possible_leak_reason)}</strong></p>']


def _llm_section(result: BacktestResult) -> list[str]:
    if not result.llm:
        return []
    return ["<h2>LLM</h2>", _table(["item", "value"], [[k, v] for k, v in result.llm.items()])]


def report_html(result: BacktestResult) -> str:
    """The whole report as one HTML document (UTF-8, no external resource)."""
    doc = result.to_json()
    params = doc["params"]
    months = monthly_returns(result.equity)
    trades = [
        [moment_text(t["entry_time"]), moment_text(t["exit_time"]) if t["exit_time"] else "open",
         t["symbol"], t["side"], t["qty"], t["entry_price"], t["exit_price"], round(t["pnl"], 6), t["r"],
         t["reason"]]
        for t in doc["trades"]
    ]  # fmt: skip
    sections = [
        f"<h1>Backtest: {html.escape(_title(result))}</h1>",
        *_leak_banner(result),
        "<h2>Settings</h2>",
        _table(["setting", "value"], [[k, v] for k, v in params.items()]),
        "<h2>Data range</h2>",
        _table(
            ["symbol", "bars", "first bar", "last bar"],
            [
                [s, r["bars"], moment_text(str(r["first"])), moment_text(str(r["last"]))]
                for s, r in doc["data_range"].items()
            ],
        ),
        "<h2>Metrics</h2>",
        _table(["metric", "value"], [[k, v] for k, v in doc["metrics"].items()]),
        *_llm_section(result),
        "<h2>Equity and drawdown</h2>",
        _img(equity_png(result), "equity and drawdown"),
        "<h2>Monthly returns</h2>",
        _img(monthly_png(months), "monthly returns") if months else "<p>no equity points</p>",
        _table(["month", "return %"], [[f"{y}-{m:02d}", round(v * 100, 4)] for (y, m), v in months.items()]),
        f"<h2>Trades ({len(trades)})</h2>",
        _table(
            ["entry time", "exit time", "symbol", "side", "qty", "entry", "exit", "P&L", "R", "reason"], trades
        ),
        f"<h2>Signals</h2>{_table(['status', 'count'], list(result.signals.items()))}",
        f"<h2>Skipped ({len(result.skipped)})</h2>",
        _table(
            ["time", "symbol", "status", "reason"],
            [[s["time"], s["symbol"], s["status"], s["reason"]] for s in result.skipped],
        ),
    ]  # fmt: skip
    style = (
        "body{font-family:sans-serif;margin:2em;color:#1f2933}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #cbd2d9;padding:3px 8px;text-align:left;font-size:13px}img{max-width:100%}"
        ".leak{background:#fdecea;border:2px solid #c62828;padding:0.8em;color:#8e1b1b}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>tradeops backtest</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def write_report(result: BacktestResult, path: Path) -> tuple[Path, Path]:
    """Write the HTML report at ``path`` and the chat PNG beside it (same name, ``.png``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(result), encoding="utf-8")
    return path, write_chart(result, path.with_suffix(".png"))
