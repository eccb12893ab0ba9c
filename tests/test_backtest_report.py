"""The backtest report (one self-contained HTML file and a PNG) and /backtest in chat."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import math
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.backtest import backtest, result_text
from bot.cli import app
from bot.core import Caller, CommandCore
from bot.services import Services, open_services
from bot.settings import load_settings
from scheduler.backtest.engine import BacktestResult, BacktestSpec
from scheduler.backtest.metrics import EquityPoint
from scheduler.backtest.report import equity_figure, monthly_returns, report_html
from storage.users import Role
from venues.clock import SimulatedClock

pytestmark = pytest.mark.usefixtures("hermetic")

PNG = b"\x89PNG\r\n\x1a\n"
TRADER = Caller("telegram", 2001, "tom")
OTHER = Caller("telegram", 2002, "tia")
VIEWER = Caller("telegram", 2003, "vera")


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.sources: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.sources += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


class Sections(HTMLParser):
    """The report as a reader sees it: the h1's text, and each table's rows of cell texts under the
    heading (h2) before it."""

    def __init__(self) -> None:
        super().__init__()
        self.h1 = ""
        self.tables: dict[str, list[list[str]]] = {}
        self.heading = ""
        self.inside = ""
        self.rows: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2"):
            self.inside, self.heading = tag, ""
        elif tag == "table":
            self.rows = []
            self.tables[self.heading] = self.rows
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.inside = "cell"
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "td", "th"):
            self.inside = ""

    def handle_data(self, data: str) -> None:
        if self.inside == "h1":
            self.h1 += data
        elif self.inside == "h2":
            self.heading += data
        elif self.inside == "cell":
            self.rows[-1][-1] += data


def sections(page: str) -> Sections:
    parser = Sections()
    parser.feed(page)
    parser.close()
    return parser


def sma_cross(
    tmp_path: Path,
    *,
    costs: bool = True,
    start: datetime = datetime(2021, 6, 20, tzinfo=UTC),
    end: datetime = datetime(2021, 8, 1, tzinfo=UTC),
) -> BacktestResult:
    spec = BacktestSpec(venue="replay-crypto", symbols=("BTC/USD",), timeframe="1h", start=start, end=end,
                        policy="sma_cross", capital=Decimal(100), profile="medium", costs=costs,
                        params={"fast": 10.0, "slow": 30.0})  # fmt: skip
    return asyncio.run(backtest(load_settings(data_dir=tmp_path), spec))


def test_monthly_returns_of_a_known_curve() -> None:
    # 100 at the start, Jan ends at 110 (+10%), Feb at 99 (-10%), Mar at 108.9 (+10%).
    points = [
        EquityPoint(datetime(2021, 1, 1, tzinfo=UTC), 100),
        EquityPoint(datetime(2021, 1, 31, tzinfo=UTC), 110),
        EquityPoint(datetime(2021, 2, 15, tzinfo=UTC), 120),
        EquityPoint(datetime(2021, 2, 28, tzinfo=UTC), 99),
        EquityPoint(datetime(2021, 3, 31, tzinfo=UTC), 108.9),
    ]
    assert monthly_returns(points) == pytest.approx({(2021, 1): 0.1, (2021, 2): -0.1, (2021, 3): 0.1})


def test_a_point_at_midnight_on_the_first_closes_the_month_before() -> None:
    # The window [2021-01-01, 2021-03-01): its last point, at the exclusive end, is February's close.
    points = [
        EquityPoint(datetime(2021, 1, 1, tzinfo=UTC), 100),
        EquityPoint(datetime(2021, 1, 31, 23, tzinfo=UTC), 105),
        EquityPoint(datetime(2021, 2, 1, tzinfo=UTC), 110),
        EquityPoint(datetime(2021, 2, 28, 23, tzinfo=UTC), 120),
        EquityPoint(datetime(2021, 3, 1, tzinfo=UTC), 99),
    ]
    assert monthly_returns(points) == pytest.approx({(2021, 1): 0.1, (2021, 2): -0.1})


def test_report_shows_the_monthly_returns_of_the_window_only(tmp_path: Path) -> None:
    result = sma_cross(tmp_path)
    assert result.equity[-1].ts == result.spec.end  # the point the old report filed under August
    months = sections(report_html(result)).tables["Monthly returns"]
    assert [row[0] for row in months[1:]] == ["2021-06", "2021-07"]
    assert all(re.fullmatch(r"-?\d+\.\d{2}%", row[1]) for row in months[1:])
    # The months chain to the total return: nothing after the window, nothing of it left out.
    chained = math.prod(1 + r for r in monthly_returns(result.equity).values()) - 1
    assert chained == pytest.approx(result.metrics["total_return"], abs=1e-12)


def test_report_metrics_read_as_the_terminal_shows_them(tmp_path: Path) -> None:
    result = sma_cross(tmp_path)
    m: dict[str, Any] = result.metrics
    rows = sections(report_html(result)).tables["Metrics"]
    metrics = {label: value for label, value in rows[1:]}
    assert metrics["Total return"] == f"{m['total_return'] * 100:.2f}%"
    assert metrics["CAGR"] == f"{m['cagr'] * 100:.2f}%"
    assert metrics["Max drawdown"] == f"{m['max_drawdown'] * 100:.2f}%"
    assert metrics["Max drawdown duration (days)"] == f"{m['max_drawdown_days']:.1f}"
    assert metrics["Win rate"] == f"{m['win_rate'] * 100:.2f}%"
    assert metrics["Exposure"] == f"{m['exposure'] * 100:.2f}%"
    assert metrics["Sharpe"] == f"{m['sharpe']:.2f}" and metrics["Sortino"] == f"{m['sortino']:.2f}"
    assert metrics["Profit factor"] == f"{m['profit_factor']:.2f}"
    assert metrics["TP1 hit rate"] == "n/a" and metrics["Average R"] == "n/a"  # sma_cross: no stop, no target
    assert metrics["Trades"] == str(m["trades"]) and m["trades"] > 0
    assert metrics["Fees paid (USD)"] == f"{m['costs_paid']:.2f}"
    assert metrics["End equity (USD)"] == f"{m['end_equity']:.2f}"
    # Each figure is in the terminal summary as well, and no raw field name is left.
    summary = result_text(result)
    for label in ("Total return", "CAGR", "Sharpe", "Max drawdown", "Win rate", "Profit factor", "Exposure"):
        assert metrics[label] in summary
    assert not any("_" in label for label in metrics)


def test_report_trades_show_prices_in_full_and_money_in_cents(tmp_path: Path) -> None:
    result = sma_cross(tmp_path)
    table = sections(report_html(result)).tables[f"Trades ({len(result.trades)})"]
    header, rows = table[0], table[1:]
    entry, exit_, pnl = header.index("entry"), header.index("exit"), header.index("P&L (USD)")
    assert len(rows) == len(result.trades) > 0
    summary = result_text(result)
    for row, trade in zip(rows, result.trades, strict=True):
        assert re.fullmatch(r"\d+\.\d{2,8}", row[entry]) and float(row[entry]) == pytest.approx(trade.entry_price)
        assert re.fullmatch(r"-?\d+\.\d{2}", row[pnl]) and row[pnl] == f"{trade.pnl:.2f}"
        # The same text as the terminal's trade line.
        assert f"@ {row[entry]} -> {row[exit_]}  P&L {row[pnl]}" in summary
    # Prices the old report cut to 6 significant figures keep every decimal here.
    assert any(len(row[entry].replace(".", "").lstrip("0")) > 6 for row in rows)


def test_report_settings_are_plain_text(tmp_path: Path) -> None:
    result = sma_cross(tmp_path, costs=False)
    settings = {name: value for name, value in sections(report_html(result)).tables["Settings"][1:]}
    assert settings["Symbols"] == "BTC/USD"
    assert settings["Policy parameters"] == "fast=10, slow=30"
    assert settings["Costs"] == "no costs"
    assert not any(c in value for value in settings.values() for c in "[]{}'")
    several = dataclasses.replace(
        result, spec=dataclasses.replace(result.spec, symbols=("BTC/USD", "ETH/USD"), params={})
    )
    settings = {name: value for name, value in sections(report_html(several)).tables["Settings"][1:]}
    assert settings["Symbols"] == "BTC/USD, ETH/USD" and settings["Policy parameters"] == "none"


@pytest.mark.parametrize(("costs", "said"), [(True, "fees and slippage"), (False, "no costs")])
def test_headline_and_chart_title_say_whether_costs_were_charged(tmp_path: Path, costs: bool, said: str) -> None:
    result = sma_cross(
        tmp_path, costs=costs, start=datetime(2021, 7, 1, tzinfo=UTC), end=datetime(2021, 7, 8, tzinfo=UTC)
    )
    terms = f"policy sma_cross (fast=10, slow=30), profile medium, capital 100 USD, {said}"
    h1 = sections(report_html(result)).h1
    assert "replay-crypto BTC/USD 1h 2021-07-01 -> 2021-07-07" in h1 and terms in h1
    total_return = result.metrics["total_return"]
    assert total_return is not None and f"return {total_return * 100:.2f}%" in h1
    title = equity_figure(result).get_suptitle()
    assert terms in title and "2021-07-01 -> 2021-07-07" in title


def test_report_is_one_self_contained_html_file_with_the_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "out" / "report.html"
    args = ["backtest", "--venue", "replay-crypto", "--symbols", "BTC/USD", "--timeframe", "1h",
            "--from", "2021-07-01", "--to", "2021-07-05", "--capital", "100", "--json",
            "--report", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    parser = Collect()
    parser.feed(page)
    parser.close()
    assert parser.tags[0] == "html" and {"table", "img", "h2"} <= set(parser.tags)
    # Nothing to fetch: every image is inline PNG data, and there are no links or scripts.
    assert parser.sources and all(s.startswith("data:image/png;base64,") for s in parser.sources)
    assert all(base64.b64decode(s.split(",", 1)[1]).startswith(PNG) for s in parser.sources)
    assert "script" not in parser.tags and "link" not in parser.tags
    text = " ".join(parser.text)
    for label in ("Total return", "Sharpe", "Max drawdown", "Win rate", "TP1 hit rate", "Profit factor"):
        assert label in text
    assert "Monthly returns" in text and "Trades (" in text and "2021-07-01T00:00:00+00:00" in text
    assert out.with_suffix(".png").read_bytes().startswith(PNG)


def test_report_escapes_what_it_shows(tmp_path: Path) -> None:
    spec = BacktestSpec(
        venue="replay-crypto",
        symbols=("BTC/USD",),
        timeframe="1h",
        start=datetime(2021, 7, 1, tzinfo=UTC),
        end=datetime(2021, 7, 2, tzinfo=UTC),
        policy="rules",
        capital=Decimal(100),
        profile="medium",
        params={"<script>": 1.0},
    )
    result = asyncio.run(backtest(load_settings(data_dir=tmp_path), spec))
    page = report_html(result)
    assert "<script>" not in page and "&lt;script&gt;" in page


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    clock = SimulatedClock(datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC))
    async with open_services(load_settings(data_dir=tmp_path / "data"), clock=clock) as opened:
        now = clock.now()
        for caller, role in ((TRADER, Role.TRADER), (OTHER, Role.TRADER), (VIEWER, Role.VIEWER)):
            opened.users.grant(caller.platform, caller.user_id, role, at=now, display_name=caller.name)
        yield opened


async def test_chat_backtest_replies_with_the_chart_and_keeps_the_loop_free(services: Services) -> None:
    core = CommandCore(services)
    beats = 0

    async def heartbeat() -> None:
        nonlocal beats
        while True:
            await asyncio.sleep(0.01)
            beats += 1

    ticker = asyncio.create_task(heartbeat())
    try:
        first = asyncio.create_task(core.handle(TRADER, "/backtest BTC/USD 3"))
        await asyncio.sleep(0.2)
        # One at a time per user: the same trader's second one is refused while the first runs...
        again = await core.handle(TRADER, "/backtest ETH/USDT 3")
        assert not again.ok and "still running" in again.text
        # ...and the event loop kept running meanwhile (the backtest is on a thread of its own).
        assert beats >= 5
        reply = await first
    finally:
        ticker.cancel()
    assert reply.ok, reply.text
    assert "backtest BTC/USD 1h 2021-07-03 06:00 UTC -> 2021-07-06 06:00 UTC" in reply.text and "return" in reply.text
    assert reply.images
    assert (await asyncio.to_thread(Path(reply.images[0]).read_bytes)).startswith(PNG)
    assert "total_return" in reply.data["metrics"]
    # Finished: the same trader may run another.
    assert (await core.handle(TRADER, "/backtest BTC/USD 1 sma_cross")).ok


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/backtest", "usage: /backtest SYMBOL [DAYS] [POLICY]"),
        ("/backtest BTC/USD 0", "from 1 to 366"),
        ("/backtest BTC/USD ten", "from 1 to 366"),
        ("/backtest BTC/USD 5 magic", "rules, sma_cross, llm"),
        ("/backtest NOPE/USD", "NOPE/USD"),
    ],
)
async def test_chat_backtest_bad_input(services: Services, text: str, message: str) -> None:
    reply = await CommandCore(services).handle(TRADER, text)
    assert not reply.ok and message in reply.text


async def test_chat_backtest_needs_a_trader(services: Services) -> None:
    reply = await CommandCore(services).handle(VIEWER, "/backtest BTC/USD 1")
    assert not reply.ok and "needs the trader role" in reply.text
