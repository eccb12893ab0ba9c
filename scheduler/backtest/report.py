"""The backtest report: one self-contained HTML file (settings and data range, metrics, the equity
and drawdown chart and the monthly returns as PNGs embedded in base64, monthly returns and trades as
tables; nothing fetched when it opens) and a PNG of the equity and drawdown for chat.

Charts are drawn on a bare matplotlib ``Figure`` with the Agg canvas (no pyplot, no global state),
so a report can be rendered from any thread."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scheduler.backtest.engine import BacktestResult, BacktestSpec
from scheduler.backtest.metrics import EquityPoint, drawdown_series
from venues.clock import moment_text, window_text

INK = "#1f2933"
UP = "#1a7f37"
DOWN = "#c62828"
INSTANT = timedelta(microseconds=1)  # the finest step of a datetime


def monthly_returns(curve: Sequence[EquityPoint]) -> dict[tuple[int, int], float]:
    """(year, month) -> that month's return: its last equity over the previous month's last (the
    curve's first point for the first month), minus one. A point is the account's value at its
    instant, so one at exactly midnight on the 1st (the window's exclusive end, ``--to``'s day
    after) closes the month before it and opens no month of its own."""
    if not curve:
        return {}
    first = curve[0]
    last: dict[tuple[int, int], float] = {(first.ts.year, first.ts.month): first.equity}
    for point in curve[1:]:
        closed = point.ts - INSTANT
        last[(closed.year, closed.month)] = point.equity
    out: dict[tuple[int, int], float] = {}
    previous = first.equity
    for key in sorted(last):
        if previous > 0:
            out[key] = last[key] / previous - 1.0
        previous = last[key]
    return out


def percent_text(value: float | None) -> str:
    """A fraction as a percentage with 2 decimals (-0.587333 -> ``-58.73%``), ``n/a`` for None."""
    return "n/a" if value is None else f"{value * 100:.2f}%"


def number_text(value: float | None, digits: int = 2) -> str:
    """A ratio or an amount with ``digits`` decimals (-1.27605 -> ``-1.28``), ``n/a`` for None."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def price_text(value: float | None) -> str:
    """A fill price in full: every decimal it has up to 8, at least the cents (32176.18, 2300.00);
    ``n/a`` for None."""
    if value is None:
        return "n/a"
    whole, _, decimals = f"{value:.8f}".partition(".")
    return f"{whole}.{decimals.rstrip('0').ljust(2, '0')}"


def quantity_text(value: float) -> str:
    """A quantity in full, every decimal up to 8 and no trailing zero (3.0769, 0.00012345, 100)."""
    return f"{value:.8f}".rstrip("0").rstrip(".")


def plain_number(value: float) -> str:
    """A parameter as typed: 10.0 -> ``10``, 0.25 -> ``0.25`` (the shortest text that reads back)."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def costs_text(costs: bool) -> str:
    return "fees and slippage" if costs else "no costs"


def policy_text(spec: BacktestSpec) -> str:
    """``sma_cross (fast=10, slow=30)``, ``ml (model m1)``, ``rules``."""
    details = [f"model {spec.model}"] if spec.model else []
    if spec.params:
        details.append(", ".join(f"{name}={plain_number(v)}" for name, v in spec.params.items()))
    return f"{spec.policy} ({'; '.join(details)})" if details else spec.policy


def headline(result: BacktestResult) -> tuple[str, str, str]:
    """What was run (market and window; policy, profile, capital and whether costs were charged)
    and what came of it (return, max drawdown, trades): the report's h1 and the chart's title."""
    spec = result.spec
    m = result.metrics
    start_text, end_text = window_text(spec.start, spec.end)
    market = f"{spec.venue} {','.join(spec.symbols)} {spec.timeframe} {start_text} -> {end_text}"
    terms = (
        f"policy {policy_text(spec)}, profile {spec.profile}, capital {spec.capital} {result.currency}, "
        f"{costs_text(spec.costs)}"
    )
    figures = f"return {percent_text(m['total_return'])}, max drawdown {percent_text(m['max_drawdown'])}"
    return market, terms, f"{figures}, {m['trades']} trades"


def _png(fig: Figure) -> bytes:
    canvas = FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()


def equity_figure(result: BacktestResult) -> Figure:
    """Equity (top) and drawdown (bottom) over the window, titled with :func:`headline`, a line each."""
    fig = Figure(figsize=(10, 6), dpi=100)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fig.suptitle("\n".join(headline(result)), fontsize=11, color=INK)
    fig.subplots_adjust(top=0.84)  # room for the title's three lines
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
    return fig


def equity_png(result: BacktestResult) -> bytes:
    """:func:`equity_figure` as PNG bytes."""
    return _png(equity_figure(result))


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


def _money(value: float | None) -> str:
    return number_text(value, 2)


def _days(value: float | None) -> str:
    return number_text(value, 1)


def _count(value: float | None) -> str:
    return "n/a" if value is None else str(value)


# The metrics in the terminal summary's order, labelled as it labels them; a key not listed here
# (a metric added later) is shown after them under its own name.
METRICS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("start_equity", "Start equity", _money),
    ("end_equity", "End equity", _money),
    ("total_return", "Total return", percent_text),
    ("cagr", "CAGR", percent_text),
    ("sharpe", "Sharpe", number_text),
    ("sortino", "Sortino", number_text),
    ("max_drawdown", "Max drawdown", percent_text),
    ("max_drawdown_days", "Max drawdown duration (days)", _days),
    ("exposure", "Exposure", percent_text),
    ("trades", "Trades", _count),
    ("closed_trades", "Closed trades", _count),
    ("win_rate", "Win rate", percent_text),
    ("tp1_hit_rate", "TP1 hit rate", percent_text),
    ("average_r", "Average R", number_text),
    ("profit_factor", "Profit factor", number_text),
    ("costs_paid", "Fees paid", _money),
    ("periods_per_year", "Periods per year (Sharpe, Sortino)", _count),
)
MONEY_METRICS = ("start_equity", "end_equity", "costs_paid")


def metric_rows(result: BacktestResult) -> list[list[str]]:
    """[label, value] per metric: fractions as percentages, ratios with 2 decimals, money with 2
    decimals and the currency in the label, n/a for None."""
    m = result.metrics
    rows = []
    for key, label, fmt in METRICS:
        if key in m:
            suffix = f" ({result.currency})" if key in MONEY_METRICS else ""
            rows.append([label + suffix, fmt(m[key])])
    known = {key for key, _, _ in METRICS}
    rows += [[key.replace("_", " "), _fmt(value)] for key, value in m.items() if key not in known]
    return rows


SETTINGS = {
    "model": "Model",
    "venue": "Venue",
    "symbols": "Symbols",
    "timeframe": "Timeframe",
    "from": "From",
    "to": "To (exclusive)",
    "policy": "Policy",
    "policy_params": "Policy parameters",
    "capital": "Capital",
    "profile": "Risk profile",
    "costs": "Costs",
    "currency": "Currency",
    "calendar": "Calendar",
}


def setting_rows(params: dict[str, Any]) -> list[list[str]]:
    """[label, value] per ``--json`` param as plain text: ``BTC/USD, ETH/USD``, ``fast=10, slow=30``
    (``none`` without any), ``fees and slippage`` or ``no costs``."""
    rows = []
    for key, value in params.items():
        if key == "symbols":
            text = ", ".join(value)
        elif key == "policy_params":
            text = ", ".join(f"{name}={plain_number(v)}" for name, v in value.items()) or "none"
        elif key == "costs":
            text = costs_text(bool(value))
        else:
            text = _fmt(value)
        rows.append([SETTINGS.get(key, key.replace("_", " ")), text])
    return rows


def trade_rows(result: BacktestResult) -> list[list[str]]:
    """One row per trade: times, prices in full (:func:`price_text`), P&L in money, R."""
    return [
        [moment_text(t.entry_time), moment_text(t.exit_time) if t.exit_time else "open", t.symbol, t.side,
         quantity_text(t.qty), price_text(t.entry_price), price_text(t.exit_price), _money(t.pnl),
         number_text(t.r), t.reason]
        for t in result.trades
    ]  # fmt: skip


def report_html(result: BacktestResult) -> str:
    """The whole report as one HTML document (UTF-8, no external resource)."""
    doc = result.to_json()
    months = monthly_returns(result.equity)
    trades = trade_rows(result)
    market, terms, figures = headline(result)
    sections = [
        f"<h1>Backtest {html.escape(market)}, {html.escape(terms)}: {html.escape(figures)}</h1>",
        *_leak_banner(result),
        "<h2>Settings</h2>",
        _table(["setting", "value"], setting_rows(doc["params"])),
        "<h2>Data range</h2>",
        _table(
            ["symbol", "bars", "first bar", "last bar"],
            [
                [s, r["bars"], moment_text(str(r["first"])), moment_text(str(r["last"]))]
                for s, r in doc["data_range"].items()
            ],
        ),
        "<h2>Metrics</h2>",
        _table(["metric", "value"], metric_rows(result)),
        *_llm_section(result),
        "<h2>Equity and drawdown</h2>",
        _img(equity_png(result), "equity and drawdown"),
        "<h2>Monthly returns</h2>",
        _img(monthly_png(months), "monthly returns") if months else "<p>no equity points</p>",
        _table(["month", "return"], [[f"{y}-{m:02d}", percent_text(v)] for (y, m), v in months.items()]),
        f"<h2>Trades ({len(trades)})</h2>",
        _table(
            ["entry time", "exit time", "symbol", "side", "qty", "entry", "exit",
             f"P&L ({result.currency})", "R", "reason"],
            trades,
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
