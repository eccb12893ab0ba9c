"""End to end on real venues (issue 9, "Done when"): the real commands on the real ccxt and
alpaca-py adapters, against the local fakes of OKX (tests/fake_ccxt.py) and Alpaca
(tests/fake_alpaca.py, through the URL overrides), on the real clock, as on replay.

- `tradeops scan` (in a subprocess for OKX), `/chart` and `/signal` through `tradeops chat -c`:
  candidates and cards come from the fakes' bars.
- `tradeops run` live (``run_bot(replay=False)``: the real clock, APScheduler) with the real
  python-telegram-bot transport polling the local fake Bot API of test_telegram (updates shaped as
  the published ones in tests/fixtures/telegram): a scheduled scan pushes a card to the subscribed
  chat, a stranger's press changes nothing, the trader's press approves it, the paper order takes
  OKX's fee, amount step and price tick from its markets and fills at the open of the 1m bar the fake
  serves once that bar has closed, and /orders shows it.

The fake is anchored (``FakeExchange(anchor=...)``): whenever the tests run, the hour they start in
serves the series of the anchor hour, 2024-01-29 03:00 UTC, where BTC/USDT is in a 15m uptrend
confirmed on 1h that lasts beyond the hour: every 15m bar from 03:00 to 05:00 is a setup the rule
policy buys on BTC, ETH, SOL and LTC, and the "high" risk profile allows at a reward/risk of 1.38 to
1.43 after costs with a slippage of 1 bp (the fake's bars move little: at the default 5 bp it is
1.19 to 1.26, too close to the profile's minimum of 1.2 to be a stable test).
Only the scan interval is shortened (to seconds, on the real candle-close trigger), so the first
scheduled scan comes at once; the fill still waits for its 1m bar to close (at most a minute).
The fake Alpaca serves its shipped SPY minutes moved to now the same way (whole quarter hours).
A restart of a live run keeps the card's button working and pushes no second card. An exchange
failing a scheduled scan is told to the chat as an error, and a proxy password in the exchange's URL
(which ccxt quotes in its errors) reaches no chat, log or doctor line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd
import pytest
from aiohttp import web
from pydantic import SecretStr
from typer.testing import CliRunner

from bot.cli import app
from bot.run import run_bot
from bot.settings import Settings, load_settings
from bot.wiring import open_database
from storage.chats import ChatStore
from storage.db import make_engine, sqlite_url
from storage.paper_ledger import SqlPaperLedger
from storage.signals import SignalStatus, SignalStore
from storage.watchlists import WatchlistSpec, WatchlistStore
from tests.fake_alpaca import KEY_ID, SECRET, FakeAlpaca, shipped_bars
from tests.fake_ccxt import ASSETS, OKX_SPOT_LOT, FakeExchange
from tests.support import entry_orders, local_http_server
from tests.test_telegram import ALLOWED, STRANGER, TOKEN, TRADER, FakeBotAPI, card_messages
from venues.clock import RealClock
from venues.models import Liquidity, OrderStatus, Side

ANCHOR = datetime(2024, 1, 29, 3, tzinfo=UTC)  # see the module docstring
QUARTER_MS = 15 * 60_000
WAIT_SECONDS = 120.0  # the bound on each wait for the run; normally a few seconds (a fill: up to a minute)
SCAN_EVERY = timedelta(seconds=2)  # the watchlist's scan interval in the live run, instead of its 15m
OKX = ccxt.okx().describe()  # ccxt's own description of OKX: its default trading fees
PROXY_PASSWORD = "pr0xy-s3cret"
SPY_BUY = pd.Timestamp("2021-07-13 15:15", tz="UTC")  # a shipped SPY 15m bar the rule policy buys (score 0.83)
ETH_BLOCKED = "ETH/USDT: blocked (correlation +1.00 with BTC/USDT held, cap 0.90)"
CLI = [sys.executable, "-c", "from bot.cli import app; app(prog_name='tradeops')"]


@pytest.fixture
def okx() -> Iterator[FakeExchange]:
    with FakeExchange("okx", None, anchor=ANCHOR) as fake:
        yield fake


# --------------------------------------------------------------------------------------------------
# tradeops scan, /chart, /signal


def test_tradeops_scan_chart_and_signal_on_okx_on_the_real_clock(
    hermetic: None, tmp_path: Path, okx: FakeExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "TRADEOPS_CCXT_EXCHANGE": "okx",
        "TRADEOPS_CCXT_API_URL": okx.url,
        "TRADEOPS_CCXT_MARKETS": "spot",
        "TRADEOPS_DATA_DIR": str(tmp_path / "var"),
        "TRADEOPS_RISK_PROFILE": "high",
        "TRADEOPS_PAPER_SLIPPAGE_BPS": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    added = runner.invoke(app, ["chat", "-c", "/watch add majors okx:BTC/USDT okx:ETH/USDT okx:SOL/USDT"])
    assert added.exit_code == 0 and "watchlist majors created on okx (15m)" in added.output, added.output

    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    started = okx.now_ms
    scanned = subprocess.run(
        [*CLI, "scan", "majors", "--json"], capture_output=True, text=True, env=clean | env, cwd=tmp_path, timeout=180
    )
    assert scanned.returncode == 0, scanned.stderr
    report = json.loads(scanned.stdout)
    assert report["ok"] and "majors: 3 symbols, 3 candidates" in report["text"], report["text"]
    cards = {card["symbol"]: card for card in report["data"]["cards"]}
    assert set(cards) == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}, report["text"]
    assert sorted(report["data"]["pending"]) == sorted(card["signal_id"] for card in cards.values())
    assert all(Path(image).read_bytes().startswith(b"\x89PNG") for image in report["images"])
    closes = {started - started % QUARTER_MS, okx.now_ms - okx.now_ms % QUARTER_MS}  # the scan's last 15m close
    for symbol, card in cards.items():
        base = symbol.split("/")[0]
        assert card["venue"] == "okx" and card["side"] == "BUY" and card["timeframe"] == "15m"
        # The entry is the close of the last final 15m bar the fake served, on OKX's tick.
        entry = float(card["entry"])
        assert any(abs(entry - okx.price(base, ms)) <= float(ASSETS[base][2]) for ms in closes), (symbol, entry)
        assert Decimal(card["entry"]) % Decimal(ASSETS[base][2]) == 0  # on OKX's price tick
        # In OKX's lot size (lotSz: BTC-USDT's is finer than its minimum order size) and at least that minimum.
        assert Decimal(card["qty"]) % Decimal(OKX_SPOT_LOT.get(base, ASSETS[base][1])) == 0
        assert Decimal(card["qty"]) >= Decimal(ASSETS[base][1])
    assert okx.count("/market/tickers") >= 1 and okx.count("/market/candles") + okx.count("/history-candles") >= 3
    assert okx.count("/trade/") == 0  # no keys: nothing is sent to the exchange's order routes

    chart = runner.invoke(app, ["chat", "-c", "/chart okx:BTC/USDT 1h", "--json"])
    assert chart.exit_code == 0, chart.output
    drawn = json.loads(chart.output)
    assert drawn["ok"] and drawn["text"] == "BTC/USDT 1h", drawn
    assert Path(drawn["images"][0]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # BTC/USDT has the scan's signal pending: /signal names it; LTC/USDT gets a card of its own.
    again = runner.invoke(app, ["chat", "-c", "/signal okx:BTC/USDT", "--json"])
    assert cards["BTC/USDT"]["signal_id"] in again.output, again.output
    signal = runner.invoke(app, ["chat", "-c", "/signal okx:LTC/USDT", "--json"])
    assert signal.exit_code == 0, signal.output
    made = json.loads(signal.output)
    assert made["ok"] and made["text"].startswith("BUY LTC/USDT on okx [15m]"), made["text"]
    [card] = made["data"]["cards"]
    assert [b["action"] for b in made["buttons"]] == ["approve", "reject"]
    assert card["venue"] == "okx" and "risk: allow" in made["text"]
    assert Path(made["images"][0]).read_bytes().startswith(b"\x89PNG")


def _spy_at_its_buy_now() -> dict[str, pd.DataFrame]:
    """The fake Alpaca's shipped bars moved by whole quarter hours so that the 15m bar forming now is
    SPY's of SPY_BUY. Close to a quarter's end, the next quarter is awaited first (the move must hold
    for the test's few seconds)."""
    now = pd.Timestamp(RealClock().now())
    if now.ceil("15min") - now < pd.Timedelta(seconds=30):
        time.sleep((now.ceil("15min") - now).total_seconds() + 0.1)
    shift = pd.Timestamp(RealClock().now()).floor("15min") - SPY_BUY
    moved = {}
    for symbol, frame in shipped_bars().items():
        frame = frame.copy()
        frame["close_time"] += shift
        frame.index += shift
        moved[symbol] = frame
    return moved


def test_tradeops_scan_chart_and_signal_on_alpaca_on_the_real_clock(
    hermetic: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("APCA_")]:
        monkeypatch.delenv(name)
    bars = _spy_at_its_buy_now()
    with FakeAlpaca(now=RealClock().now, bars=bars).serving() as fake:
        env = {
            "TRADEOPS_ALPACA_API_KEY": KEY_ID,
            "TRADEOPS_ALPACA_SECRET_KEY": SECRET,
            "TRADEOPS_ALPACA_TRADING_URL": fake.url,
            "TRADEOPS_ALPACA_DATA_URL": fake.url,
            "TRADEOPS_DATA_DIR": str(tmp_path / "var"),
            "TRADEOPS_RISK_PROFILE": "high",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        runner = CliRunner()
        added = runner.invoke(app, ["chat", "-c", "/watch add us alpaca:SPY alpaca:AMZN"])
        assert added.exit_code == 0 and "watchlist us created on alpaca (15m): SPY AMZN" in added.output, added.output
        scanned = runner.invoke(app, ["scan", "us", "--json"])
        assert scanned.exit_code == 0, scanned.output
        report = json.loads(scanned.stdout)
        assert report["ok"] and "us: 2 symbols, 1 candidate" in report["text"], report["text"]
        [card] = report["data"]["cards"]
        assert (card["venue"], card["symbol"], card["side"], card["timeframe"]) == ("alpaca", "SPY", "BUY", "15m")
        spy = bars["SPY"]
        boundary = pd.Timestamp(RealClock().now()).floor("15min")
        assert float(card["entry"]) == float(spy[spy["close_time"] <= boundary]["close"].iloc[-1])  # its 15m close
        assert fake.hits["GET /v2/stocks/snapshots"] == 1  # one snapshot call for the watchlist
        assert fake.hits["POST /v2/orders"] == 0

        chart = runner.invoke(app, ["chat", "-c", "/chart alpaca:AMZN 1h", "--json"])
        drawn = json.loads(chart.stdout)
        assert drawn["ok"] and drawn["text"] == "AMZN 1h", drawn
        assert Path(drawn["images"][0]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        signal = runner.invoke(app, ["chat", "-c", "/signal alpaca:SPY", "--json"])
        assert card["signal_id"] in signal.output, signal.output  # the scan's card waits for an answer


# --------------------------------------------------------------------------------------------------
# tradeops run, live, with Telegram


def _live_settings(tmp_path: Path, okx: FakeExchange, bot_api_url: str, db_url: str | None = None) -> Settings:
    return load_settings(
        data_dir=tmp_path / "var",
        database_url=db_url or sqlite_url(tmp_path / "var" / "tradeops.db"),
        ccxt_exchange="okx",
        ccxt_api_url=okx.url,
        ccxt_markets="spot",
        risk_profile="high",
        paper_slippage_bps=Decimal(1),
        telegram_token=SecretStr(TOKEN),
        telegram_api_url=bot_api_url,
        telegram_allowed_users=ALLOWED,
    )


def _prepare(settings: Settings) -> None:
    """What a trader did before this start: a watchlist on okx, and /subscribe all in their chat."""
    engine = open_database(settings)
    try:
        now = datetime.now(UTC)
        spec = WatchlistSpec(name="majors", venue="okx", symbols=("BTC/USDT",), timeframe="15m")
        WatchlistStore(engine).ensure(spec, at=now)
        ChatStore(engine).subscribe("telegram", TRADER, "all", at=now)
    finally:
        engine.dispose()


def _answers(api: FakeBotAPI) -> list[str]:
    return [p["text"] for p in api.sent("answerCallbackQuery")]


def _slipped_up(price: float, bps: Decimal, tick: Decimal) -> Decimal:
    """A buy's fill price: ``price`` moved up by ``bps`` and rounded up to the tick (against the buyer)."""
    moved = Decimal(repr(price)) * (1 + bps / Decimal(10_000))
    return (moved / tick).to_integral_value(rounding=ROUND_CEILING) * tick


class LiveRun:
    """``run_bot(settings, replay=False)`` in a task, with the scan interval shortened to seconds."""

    def __init__(self, settings: Settings) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_bot(settings, replay=False, stop=self.stop))

    async def until(self, check: Callable[[], Any]) -> Any:
        """``check()``'s first truthy value, polled while the run runs (at most WAIT_SECONDS)."""

        async def poll() -> Any:
            while not (found := check()):
                if self.task.done():
                    self.task.result()  # raises what the run raised
                    raise AssertionError("the run ended before the check held")
                await asyncio.sleep(0.05)
            return found

        return await asyncio.wait_for(poll(), WAIT_SECONDS)

    async def stopped(self) -> int:
        self.stop.set()
        return await asyncio.wait_for(self.task, 60)


@pytest.fixture
async def bot_api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeBotAPI, str]]:
    """The fake Bot API and its URL; live scans every SCAN_EVERY on the candle-close trigger."""
    import scheduler.jobs

    monkeypatch.setattr(scheduler.jobs, "scan_interval", lambda watchlist, calendar: SCAN_EVERY)
    api = FakeBotAPI()
    web_app = web.Application()
    web_app.router.add_post("/bot{token}/{method}", api.handle)
    async with local_http_server(web_app) as port:
        yield api, f"http://127.0.0.1:{port}/bot"


def _card(api: FakeBotAPI) -> tuple[str, dict[str, Any], str]:
    """The signal id, the message (as a press carries it) and the caption of the card in TRADER's chat."""
    [photo] = api.sent("sendPhoto", chat_id=str(TRADER))
    [button] = [b for b in json.loads(photo["reply_markup"])["inline_keyboard"][0] if b["text"] == "Approve"]
    signal_id = button["callback_data"].removeprefix("a:")
    return signal_id, card_messages(api, signal_id)[TRADER], photo["caption"]


async def test_a_live_run_on_okx_pushes_a_card_to_telegram_and_an_approval_fills_on_the_exchanges_bars(
    hermetic: None, tmp_path: Path, okx: FakeExchange, bot_api: tuple[FakeBotAPI, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tradeops")
    api, url = bot_api
    settings = _live_settings(tmp_path, okx, url)
    await asyncio.to_thread(_prepare, settings)
    run = LiveRun(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        await run.until(lambda: api.sent("sendPhoto", chat_id=str(TRADER)))
        signal_id, message, caption = _card(api)
        assert f"BUY BTC/USDT on okx [15m]  id {signal_id}" in caption, caption
        entry, close = float(caption.split("entry ", 1)[1].split()[0]), okx.now_ms // QUARTER_MS * QUARTER_MS
        assert any(abs(entry - okx.price("BTC", ms)) <= 0.1 for ms in (close, close - QUARTER_MS)), entry
        signals = SignalStore(engine)

        # A stranger presses Approve: refused, nothing decided, nothing ordered.
        api.updates.put_nowait(api.press(STRANGER, f"a:{signal_id}", message))
        await run.until(lambda: _answers(api))
        assert _answers(api) == ["refused: not allowed."]
        assert signals.get(signal_id).status == SignalStatus.PENDING.value  # type: ignore[union-attr]
        assert not entry_orders(engine, signal_id) and not api.sent("editMessageCaption")

        # The trader presses Approve: the paper order is placed and the card edited.
        api.updates.put_nowait(api.press(TRADER, f"a:{signal_id}", message))
        edits = await run.until(lambda: api.sent("editMessageCaption", chat_id=str(TRADER)))
        assert edits[0]["caption"].startswith(f"APPROVED by telegram:{TRADER} at ")
        assert f"UTC: order {signal_id} placed; fills at the next bar's open" in edits[0]["caption"]
        assert "reply_markup" not in edits[0]  # the buttons are gone
        assert signals.get(signal_id).status == SignalStatus.EXECUTED.value  # type: ignore[union-attr]
        ledger = SqlPaperLedger(engine)
        order = ledger.order(signal_id)
        assert order is not None and order.symbol == "BTC/USDT" and order.side is Side.BUY
        step, tick = Decimal(OKX_SPOT_LOT["BTC"]), Decimal(ASSETS["BTC"][2])  # OKX's lotSz and tickSz
        assert order.qty > 0 and order.qty % step == 0

        # The fill: at the open of the 1m bar the order went in on, once the fake has closed it.
        fills = await run.until(lambda: ledger.fills("okx", signal_id))
        [fill] = fills
        assert ledger.order(signal_id).status is OrderStatus.FILLED  # type: ignore[union-attr]
        bar_open = fill.ts
        assert bar_open.second == 0 and bar_open.microsecond == 0
        assert order.created_at - timedelta(minutes=1) <= bar_open <= order.created_at
        open_ms = int(bar_open.timestamp() * 1000)
        expected = _slipped_up(okx.price("BTC", open_ms), settings.paper_slippage_bps, tick)
        assert fill.price == expected and fill.qty == order.qty
        taker = Decimal(str(OKX["fees"]["trading"]["taker"]))
        assert fill.liquidity is Liquidity.TAKER
        assert abs(fill.fee - fill.qty * fill.price * taker) < Decimal("0.01"), (fill.fee, taker)
        events = await run.until(
            lambda: [p for p in api.sent("sendMessage", chat_id=str(TRADER)) if "[fill]" in p["text"]]
        )
        assert "BTC/USDT" in events[0]["text"], events[0]["text"]

        # /orders in the chat shows it.
        api.message(TRADER, "/orders")
        replies = await run.until(
            lambda: [p for p in api.sent("sendMessage", chat_id=str(TRADER)) if signal_id in p["text"]]
        )
        assert "filled" in replies[0]["text"] and "BTC/USDT" in replies[0]["text"], replies[0]["text"]

        # /positions: the position, with its exit plan resting (the stop and TP1-3 of the card).
        api.message(TRADER, "/positions")
        held = await run.until(lambda: [p for p in api.sent("sendMessage", chat_id=str(TRADER)) if "TPs" in p["text"]])
        stop_price = caption.split("stop ", 1)[1].split()[0]
        assert "BTC/USDT" in held[0]["text"] and f"stop {stop_price} TPs" in held[0]["text"], held
        assert str(fill.qty) in held[0]["text"], held

        # /chart and /signal from the chat, on the exchange's bars.
        api.message(TRADER, "/chart okx:BTC/USDT 1h")
        await run.until(lambda: api.sent("sendMessage", chat_id=str(TRADER), text="BTC/USDT 1h"))
        api.message(TRADER, "/signal okx:ETH/USDT")

        # Every symbol of the fake follows one shape: ETH moves with the BTC now held, and the risk
        # gate, which sees the live position, says so.
        assert await run.until(lambda: api.sent("sendMessage", chat_id=str(TRADER), text=ETH_BLOCKED))
        assert len(api.sent("sendPhoto", chat_id=str(TRADER))) == 2  # the card, the chart
    finally:
        status = await run.stopped()
        engine.dispose()
    assert status == 0
    assert okx.count("/trade/") == 0  # no keys: the order stayed in the paper ledger
    assert "live on okx, real clock" in caplog.text
    # Nothing failed quietly on the way (a transport's push failing is only logged).
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, failures


async def test_a_card_of_a_live_run_is_approved_after_a_restart_and_not_pushed_again(
    hermetic: None, tmp_path: Path, okx: FakeExchange, bot_api: tuple[FakeBotAPI, str], db_url: str
) -> None:
    api, url = bot_api
    settings = _live_settings(tmp_path, okx, url, db_url)
    await asyncio.to_thread(_prepare, settings)
    first = LiveRun(settings)
    await first.until(lambda: api.sent("sendPhoto", chat_id=str(TRADER)))
    assert await first.stopped() == 0
    signal_id, message, _ = _card(api)

    second = LiveRun(settings)
    polls = api.polls
    await second.until(lambda: api.polls > polls + 1)  # polling again
    api.updates.put_nowait(api.press(TRADER, f"a:{signal_id}", message))
    edits = await second.until(lambda: api.sent("editMessageCaption", chat_id=str(TRADER)))
    assert edits[0]["caption"].startswith(f"APPROVED by telegram:{TRADER} at ")
    assert f"UTC: order {signal_id} placed" in edits[0]["caption"]
    scans = await asyncio.to_thread(_scan_count, settings)
    await second.until(lambda: _scan_count(settings) > scans)  # a scan after the press: the symbol is held now
    assert await second.stopped() == 0
    assert len(api.sent("sendPhoto", chat_id=str(TRADER))) == 1  # the restart's scans pushed no second card
    engine = make_engine(settings.resolved_database_url)
    try:
        assert [o.client_order_id for o in entry_orders(engine, signal_id)] == [signal_id]
    finally:
        engine.dispose()


def _scan_count(settings: Settings) -> int:
    from sqlmodel import Session, func, select

    from storage.tables import ScanRun

    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            return int(session.exec(select(func.count()).select_from(ScanRun)).one())
    finally:
        engine.dispose()


async def test_an_exchange_failing_a_scheduled_scan_is_told_to_the_chat_and_the_next_scan_goes_on(
    hermetic: None, tmp_path: Path, okx: FakeExchange, bot_api: tuple[FakeBotAPI, str], caplog: pytest.LogCaptureFixture
) -> None:
    api, url = bot_api
    okx.fail("/market/tickers", 503, times=4)  # one scan's every try: the first scan fails
    # Through a proxy that wants credentials in its URL: ccxt's messages quote the URL it called.
    proxy = okx.url.replace("http://", f"http://tradeops:{PROXY_PASSWORD}@")
    settings = _live_settings(tmp_path, okx, url).model_copy(update={"ccxt_api_url": proxy})
    await asyncio.to_thread(_prepare, settings)
    run = LiveRun(settings)
    try:
        said = await run.until(
            lambda: [p["text"] for p in api.sent("sendMessage", chat_id=str(TRADER)) if p["text"].startswith("[error]")]
        )
        await run.until(lambda: api.sent("sendPhoto", chat_id=str(TRADER)))  # the next scan's card
    finally:
        assert await run.stopped() == 0
    assert said[0].startswith("[error] scan of majors failed: "), said
    assert "okx did not answer fetch_tickers" in said[0] and "503" in said[0] and "after 4 tries" in said[0], said
    assert PROXY_PASSWORD not in said[0] and "tradeops:***@127.0.0.1" in said[0], said
    assert PROXY_PASSWORD not in caplog.text and "scan of majors failed" in caplog.text
    assert okx.count("/market/tickers") >= 5


def test_a_proxy_password_in_the_exchange_url_shows_neither_in_doctor_nor_in_a_scans_reply(
    hermetic: None, tmp_path: Path, okx: FakeExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.doctor import venue_checks

    proxy = okx.url.replace("http://", f"http://tradeops:{PROXY_PASSWORD}@")
    okx.fail("/public/instruments", 503, times=4)
    settings = load_settings(data_dir=tmp_path / "var", ccxt_exchange="okx", ccxt_api_url=proxy, ccxt_markets="spot")
    failed = {c.name: c for c in venue_checks(settings)}["venue ccxt"]
    assert not failed.ok and "503" in failed.detail, failed.detail
    assert PROXY_PASSWORD not in failed.detail and "tradeops:***@" in failed.detail, failed.detail

    for name, value in {"TRADEOPS_CCXT_EXCHANGE": "okx", "TRADEOPS_CCXT_API_URL": proxy}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    added = runner.invoke(app, ["chat", "-c", "/watch add majors okx:BTC/USDT"])
    assert added.exit_code == 0, added.output
    okx.fail("/market/tickers", 503, times=4)
    scanned = runner.invoke(app, ["scan", "majors", "--json"])
    reply = json.loads(scanned.stdout)["text"]
    assert "majors: okx did not answer fetch_tickers" in reply and "tradeops:***@" in reply, reply
    assert PROXY_PASSWORD not in scanned.output
