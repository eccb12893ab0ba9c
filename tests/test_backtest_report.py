"""The backtest report (one self-contained HTML file and a PNG) and /backtest in chat."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.backtest import backtest
from bot.cli import app
from bot.core import Caller, CommandCore
from bot.services import Services, open_services
from bot.settings import load_settings
from scheduler.backtest.engine import BacktestSpec
from scheduler.backtest.metrics import EquityPoint
from scheduler.backtest.report import monthly_returns, report_html
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
    for word in ("total_return", "sharpe", "max_drawdown", "win_rate", "tp1_hit_rate", "profit_factor"):
        assert word in text
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
