"""The Telegram transport against a local fake Bot API (real HTTP on 127.0.0.1, a real
python-telegram-bot Application polling it), fed with the published update JSON in
tests/fixtures/telegram (see its PROVENANCE.md). No internet."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError
from telegram import Update, WebhookInfo

from bot.core import Caller, CommandCore
from bot.services import Services, open_services, seed_watchlists
from bot.settings import load_settings
from bot.telegram import CONFLICT, TelegramTransport
from bot.telegram_render import (
    AccessPress,
    AllowlistError,
    api_urls,
    html_parts,
    parse_access,
    parse_allowed_users,
    parse_callback,
)
from bot.telegram_webhook import describe
from bot.transport import StopRequest, Transport, TransportError
from storage.signals import SignalStatus
from storage.users import Role
from tests.support import SIGNAL_AT, entry_orders, free_port, local_http_server
from venues.clock import SimulatedClock

pytestmark = pytest.mark.usefixtures("hermetic")

TOKEN = "123456789:AAE-fake_token_for_tests-0123456789xyz"
FIXTURES = Path(__file__).parent / "fixtures" / "telegram"
DOCS = json.loads((FIXTURES / "telegram_updates_official_docs.json").read_text())
TELOXIDE = json.loads((FIXTURES / "telegram_updates_teloxide.json").read_text())
GROUP = TELOXIDE["update_supergroup_bot_command_report_with_reply"]["payload"]["message"]["chat"]["id"]
VIEWER, TRADER, TRADER2, ADMIN, STRANGER, BLOCKED = 1001, 1002, 1003, 1004, 4242, 666
ALLOWED = f"{VIEWER}:viewer,{TRADER}:trader,{TRADER2}:trader,{ADMIN}:admin"


class FakeBotAPI:
    """Answers the Bot API methods the transport uses with real-shaped JSON and records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.tokens: set[str] = set()
        self.updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.blocked: set[int] = set()
        self.refuse_html = False
        self.next_id = 1000
        self.polls = 0  # getUpdates calls
        self.conflicts = 0  # getUpdates answered 409 because of ``conflict``
        self.revoked: set[str] = set()  # tokens answered 401 Unauthorized
        self.conflict = False  # answer getUpdates with 409, as Telegram does when another process polls
        self.unconfirmed: list[dict[str, Any]] = []  # delivered, not yet confirmed by a higher offset
        # getWebhookInfo's answer (the Bot API's WebhookInfo fields): set by setWebhook, cleared by deleteWebhook.
        self.webhook: dict[str, Any] = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        self.webhook_info_fails = False  # answer getWebhookInfo 502, as Telegram's front does at times

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    async def handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        form = await request.post()
        params = {k: v if isinstance(v, str) else "<file>" for k, v in form.items()}
        self.tokens.add(token)
        if token in self.revoked:
            return self.error(401, "Unauthorized")
        if method != "getUpdates":
            self.calls.append((method, params))
        if method == "getMe":
            return self.ok({"id": 42, "is_bot": True, "first_name": "tradeops", "username": "tradeops_test_bot"})
        if method == "getUpdates":
            return await self.get_updates(params)
        if method in ("setMyCommands", "answerCallbackQuery"):
            return self.ok(True)
        if method == "getWebhookInfo":
            return self.error(502, "Bad Gateway") if self.webhook_info_fails else self.ok(self.webhook)
        if method == "setWebhook":
            allowed = json.loads(params.get("allowed_updates", "null"))
            self.webhook = {**self.webhook, "url": params["url"], "max_connections": 40, "allowed_updates": allowed}
            return self.ok(True)
        if method == "deleteWebhook":
            self.webhook = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
            return self.ok(True)
        chat_id = int(params.get("chat_id", "0"))
        if chat_id in self.blocked:
            return self.error(403, "Forbidden: bot was blocked by the user")
        if self.refuse_html and params.get("parse_mode") == "HTML":
            return self.error(400, "Bad Request: can't parse entities: unsupported start tag at byte offset 7")
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "first_name": "x", "title": "g"}
        message: dict[str, Any] = {"message_id": self.new_id(), "date": 1625551205, "chat": chat}
        if method in ("editMessageText", "editMessageCaption"):
            message["message_id"] = int(params["message_id"])
        params.setdefault("message_id", str(message["message_id"]))  # recorded: what a press carries back
        if "text" in params:
            message["text"] = params["text"]
        if "caption" in params:
            message["caption"] = params["caption"]
        if method == "sendPhoto":
            message["photo"] = [{"file_id": "p1", "file_unique_id": "u1", "width": 90, "height": 60}]
        if "reply_markup" in params:
            message["reply_markup"] = json.loads(params["reply_markup"])
        return self.ok(message)

    async def get_updates(self, params: dict[str, str]) -> web.Response:
        """Like Telegram: an update stays until a later offset confirms it; ``timeout`` 0 waits for
        nothing (the long poll is shortened to 0.2 s here)."""
        self.polls += 1
        if self.conflict:
            self.conflicts += 1
            return self.error(
                409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
            )
        if self.webhook["url"]:
            return self.error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the "
                "webhook first",
            )
        offset = int(params.get("offset") or 0)
        self.unconfirmed = [u for u in self.unconfirmed if u["update_id"] >= offset]
        for _ in range(10 if params.get("timeout") not in (None, "0") else 0):
            if self.unconfirmed or not self.updates.empty():
                break
            await asyncio.sleep(0.02)  # a cancelled poll loses nothing: the queue is only drained below
        while not self.updates.empty():
            self.unconfirmed.append(self.updates.get_nowait())
        return self.ok(self.unconfirmed[: int(params.get("limit") or 100)])

    @staticmethod
    def ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def error(code: int, description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)

    def sent(self, method: str, **where: str) -> list[dict[str, str]]:
        return [p for m, p in self.calls if m == method and all(p.get(k) == v for k, v in where.items())]

    async def until(self, check: Callable[[], Any], seconds: float = 15) -> Any:
        for _ in range(int(seconds / 0.02)):
            if result := check():
                return result
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out; calls: {[m for m, _ in self.calls]}")

    # --- updates, from the fixtures with only ids, text and data set to the test's own ---

    def message(self, user_id: int, text: str, *, group: bool = False) -> None:
        self.updates.put_nowait(self.text_update(user_id, text, group=group))

    def text_update(self, user_id: int, text: str, *, group: bool = False) -> dict[str, Any]:
        name = "update_supergroup_bot_command_report_with_reply" if group else "update_private_text_message"
        update = copy.deepcopy(TELOXIDE[name]["payload"])
        update["update_id"] = self.new_id()
        message = update["message"]
        message["from"]["id"] = user_id
        if not group:
            message["chat"]["id"] = user_id
        message["text"] = text
        message.pop("entities", None)
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return update

    def press(self, user_id: int, data: str, card: dict[str, Any]) -> dict[str, Any]:
        query = copy.deepcopy(TELOXIDE["callback_query_object_only"]["payload"])
        for absent in ("inline_message_id", "game_short_name"):
            del query[absent]
        query.update({"id": str(self.new_id()), "data": data, "message": card})
        query["from"]["id"] = user_id
        return {"update_id": self.new_id(), "callback_query": query}


Api = TypeVar("Api", bound=FakeBotAPI)


@asynccontextmanager
async def serving_bot_api(api: Api) -> AsyncIterator[tuple[Api, str]]:
    """``api`` on a local port: (api, the base URL to point a bot client at)."""
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", api.handle)
    async with local_http_server(app) as port:
        yield api, f"http://127.0.0.1:{port}/bot"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeBotAPI, str]]:
    async with serving_bot_api(FakeBotAPI()) as served:
        yield served


@pytest.fixture
def services(bare_services: Services) -> Services:
    return bare_services  # no users: each test grants the ones it needs


def make_transport(services: Services, url: str, **more: Any) -> TelegramTransport:
    settings = load_settings(
        data_dir=services.settings.data_dir, telegram_api_url=url, telegram_allowed_users=ALLOWED, **more
    )
    return TelegramTransport(settings, services, SecretStr(TOKEN))


@pytest.fixture
async def bot(fake: tuple[FakeBotAPI, str], services: Services) -> AsyncIterator[TelegramTransport]:
    transport = make_transport(services, fake[1])
    await transport.start()
    try:
        yield transport
    finally:
        await transport.stop()


async def pending_card(services: Services) -> dict[str, Any]:
    reply = await CommandCore(services).handle(Caller("telegram", TRADER), "/scan crypto")
    cards = [c for c in reply.data["cards"] if c["symbol"] == "ETH/USDT"]
    assert len(cards) == 1, reply.text
    return cards[0]


def card_messages(api: FakeBotAPI, signal_id: str) -> dict[int, dict[str, Any]]:
    """The card message of each chat, as the fake answered it (what a press carries)."""
    out = {}
    for method, params in api.calls:
        if method == "sendPhoto" and f"a:{signal_id}" in params.get("reply_markup", ""):
            chat = int(params["chat_id"])
            out[chat] = {
                "message_id": 0,
                "date": 1625551205,
                "chat": {"id": chat, "type": "private", "first_name": "x"},
            }
    return out


# --- commands ---


async def test_an_allowed_user_gets_the_core_reply_and_the_commands_are_registered(
    fake: tuple[FakeBotAPI, str], bot: TelegramTransport, services: Services
) -> None:
    api, _ = fake
    assert isinstance(bot, Transport)
    assert services.users.role("telegram", TRADER) is Role.TRADER  # the allowlist, seeded at start
    api.message(VIEWER, "/risk")
    sent = await api.until(lambda: api.sent("sendMessage", chat_id=str(VIEWER)))
    assert "kill switch: off" in sent[0]["text"] and "<pre>venue" in sent[0]["text"]
    assert sent[0]["parse_mode"] == "HTML"
    default = [p for p in api.sent("setMyCommands") if '"default"' in p["scope"]]
    trader = [p for p in api.sent("setMyCommands") if f'"chat_id": {TRADER}' in p["scope"]]
    assert '"approve"' not in default[0]["commands"] and '"risk"' in default[0]["commands"]
    assert '"approve"' in trader[0]["commands"] and '"pause"' not in trader[0]["commands"]
    for name in ("close", "cancel", "plan"):  # a trader's, not a viewer's
        assert f'"{name}"' in trader[0]["commands"] and f'"{name}"' not in default[0]["commands"]
    assert '"trades"' in default[0]["commands"]


async def test_a_stranger_is_refused_once_and_audited(
    fake: tuple[FakeBotAPI, str], bot: TelegramTransport, services: Services
) -> None:
    api, _ = fake
    for text in ("/signals", "/approve abcd1234", "hello"):
        api.message(STRANGER, text)
    api.message(VIEWER, "/help")  # a marker: processed after the stranger's three
    await api.until(lambda: api.sent("sendMessage", chat_id=str(VIEWER)))
    refusals = api.sent("sendMessage", chat_id=str(STRANGER))
    assert len(refusals) == 1 and f"({STRANGER})" in refusals[0]["text"]
    audit = [e for e in services.signals.audit_log() if e.actor == f"telegram:{STRANGER}"]
    assert [e.action for e in audit] == ["refused"]


async def test_in_a_group_the_user_is_checked_not_the_chat(
    fake: tuple[FakeBotAPI, str], bot: TelegramTransport, services: Services
) -> None:
    api, _ = fake
    api.message(STRANGER, "/subscribe all", group=True)
    api.message(TRADER, "/subscribe all", group=True)
    api.message(TRADER2, "just chatting", group=True)  # group chatter is not for the bot: no answer
    api.message(TRADER2, "/subscribe", group=True)  # a marker, answered after the chatter

    def in_group() -> list[dict[str, str]]:
        return api.sent("sendMessage", chat_id=str(GROUP))

    sent = await api.until(lambda: len(in_group()) >= 3 and in_group())
    assert len(sent) == 3 and sent[2]["text"].startswith("usage: /subscribe WATCHLIST|all")
    texts = [p["text"] for p in sent]
    assert (
        texts[0].startswith("Sorry, this bot is private")
        and texts[1] == "this chat now receives every watchlist's cards"
    )
    assert services.chats.subscriptions("telegram", GROUP) == ["all"]


# --- cards and buttons ---


async def test_a_card_goes_to_every_subscribed_chat_and_one_approval_wins(
    fake: tuple[FakeBotAPI, str], bot: TelegramTransport, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    api, _ = fake
    api.blocked.add(BLOCKED)
    now = services.clock.now()
    for chat in (BLOCKED, TRADER, GROUP):
        services.chats.subscribe("telegram", chat, "all", at=now)
    card = await pending_card(services)
    sid = card["signal_id"]
    await bot.push_card(card)
    photos = api.sent("sendPhoto")
    # Sent in chat order: the blocked chat (666) fails between the two others, and is skipped.
    assert [int(p["chat_id"]) for p in photos] == [GROUP, BLOCKED, TRADER]
    assert "chat 666: Forbidden: bot was blocked" in caplog.text and all(p["photo"] == "<file>" for p in photos)
    assert {ref.chat_id for ref in services.chats.cards("telegram", sid)} == {GROUP, TRADER}
    assert sid in photos[0]["caption"] and photos[0]["parse_mode"] == "HTML"
    buttons = json.loads(photos[0]["reply_markup"])["inline_keyboard"][0]
    assert [(b["text"], b["callback_data"]) for b in buttons] == [
        ("Approve", f"a:{sid}"),
        ("Reject", f"r:{sid}"),
        ("Details", f"d:{sid}"),
    ]
    message = next(iter(card_messages(api, sid).values()))
    presses = [Update.de_json(api.press(user, f"a:{sid}", message), bot.app.bot) for user in (TRADER, TRADER2)]
    await asyncio.gather(*(bot.app.process_update(p) for p in presses))
    answers = [p["text"] for p in api.sent("answerCallbackQuery")]
    assert len(answers) == 2 and sum("already decided" in a for a in answers) == 1, answers
    assert len(entry_orders(services.engine, sid)) == 1
    edits = api.sent("editMessageCaption")
    assert {int(e["chat_id"]) for e in edits} == {GROUP, TRADER}
    assert all("reply_markup" not in e for e in edits)
    assert all("APPROVED by telegram:100" in e["caption"] and sid in e["caption"] for e in edits)


async def test_refused_forged_and_unknown_presses_change_nothing(
    fake: tuple[FakeBotAPI, str], bot: TelegramTransport, services: Services
) -> None:
    api, _ = fake
    services.chats.subscribe("telegram", TRADER, "crypto", at=services.clock.now())
    card = await pending_card(services)
    sid = card["signal_id"]
    await bot.push_card(card)
    message = card_messages(api, sid)[TRADER]
    for user, data in [
        (VIEWER, f"a:{sid}"),
        (STRANGER, f"r:{sid}"),
        (TRADER, "a:zzzz9999"),
        (TRADER, "approve:" + sid),
        (TRADER, "a:../" + "x" * 80),
    ]:
        await bot.app.process_update(Update.de_json(api.press(user, data, message), bot.app.bot))
    answers = [p["text"] for p in api.sent("answerCallbackQuery")]
    assert answers[0] == "refused: approve needs the trader role; you are a viewer."
    assert answers[1] == "refused: not allowed."
    assert answers[2].startswith("no signal zzzz9999")
    assert answers[3:] == ["unknown button", "unknown button"]
    assert services.signals.get(sid).status == SignalStatus.PENDING.value
    assert not api.sent("editMessageCaption") and not entry_orders(services.engine, sid)
    refused = [e for e in services.signals.audit_log() if e.action == "button_refused"]
    assert len(refused) == 5


async def test_buttons_work_after_a_restart_and_an_expired_signal_says_so(
    fake: tuple[FakeBotAPI, str], services: Services
) -> None:
    api, url = fake
    first = make_transport(services, url)
    await first.start()
    services.chats.subscribe("telegram", TRADER, "all", at=services.clock.now())
    card = await pending_card(services)
    await first.push_card(card)
    await first.stop()
    second = make_transport(services, url)
    await second.start()
    try:
        assert isinstance(services.clock, SimulatedClock)
        services.clock.advance_to(datetime.fromisoformat(card["expires_at"]) + timedelta(minutes=1))
        message = card_messages(api, card["signal_id"])[TRADER]
        api.updates.put_nowait(api.press(TRADER, f"a:{card['signal_id']}", message))
        edit = await api.until(lambda: api.sent("editMessageCaption"))
    finally:
        await second.stop()
    assert "expired" in api.sent("answerCallbackQuery")[0]["text"]
    assert edit[0]["caption"].startswith("EXPIRED") and "reply_markup" not in edit[0]


# --- formatting, length, secrets ---


async def test_html_breaking_text_arrives_and_falls_back_to_plain(
    fake: tuple[FakeBotAPI, str], bot: TelegramTransport
) -> None:
    api, _ = fake
    nasty = "/<b>&_*[🚀"
    api.message(TRADER, nasty)
    first = await api.until(lambda: api.sent("sendMessage", chat_id=str(TRADER)))
    assert "Unknown command /&lt;b&gt;&amp;_*[🚀" in first[0]["text"]
    api.refuse_html = True
    api.message(TRADER, nasty)
    plain = await api.until(lambda: [p for p in api.sent("sendMessage", chat_id=str(TRADER)) if "parse_mode" not in p])
    assert "Unknown command /<b>&_*[🚀" in plain[0]["text"]


async def test_a_10000_character_reply_arrives_whole_in_parts(
    fake: tuple[FakeBotAPI, str], bot: TelegramTransport
) -> None:
    api, _ = fake
    text = "\n".join(f"line {i:04d} " + "x" * 90 for i in range(100))
    assert len(text) >= 10_000
    await bot.send_text(TRADER, text)
    parts = [p["text"] for p in api.sent("sendMessage", chat_id=str(TRADER))]
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    assert "\n".join(parts) == text


async def test_the_token_never_reaches_a_log_line(
    fake: tuple[FakeBotAPI, str], services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    api, url = fake
    caplog.set_level(logging.DEBUG)
    transport = make_transport(services, url)
    for name in ("httpx", "httpcore", "telegram"):  # the worst case: every library at DEBUG
        caplog.set_level(logging.DEBUG, logger=name)
    await transport.start()
    try:
        api.message(TRADER, "/help")
        await api.until(lambda: api.sent("sendMessage"))
    finally:
        await transport.stop()
    assert api.tokens == {TOKEN}  # the token was in every request URL
    assert "Set Bot API URL" in caplog.text and "HTTP Request: POST" in caplog.text  # DEBUG was captured
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


# --- configuration ---


def test_the_allowlist_is_validated() -> None:
    assert parse_allowed_users(" 123:admin, 456:Trader ,") == {123: Role.ADMIN, 456: Role.TRADER}
    for bad, named in [("abc:admin", "'abc:admin'"), ("123:root", "'123:root'"), ("123", "'123'")]:
        with pytest.raises(AllowlistError, match=named):
            parse_allowed_users(bad)
    with pytest.raises(AllowlistError, match="two roles"):
        parse_allowed_users("1:admin,1:viewer")


async def test_a_bad_setting_or_token_is_a_transport_error(services: Services) -> None:
    with pytest.raises(TransportError, match="'7:boss'"):
        TelegramTransport(load_settings(telegram_allowed_users="7:boss"), services, TOKEN)
    with pytest.raises(TransportError, match="TOKEN is empty"):
        TelegramTransport(load_settings(), services, SecretStr(" "))


def test_the_file_url_follows_the_api_url() -> None:
    assert api_urls(None) == ("https://api.telegram.org/bot", "https://api.telegram.org/file/bot")
    assert api_urls("http://localhost:8081/bot") == ("http://localhost:8081/bot", "http://localhost:8081/file/bot")
    assert api_urls("https://api.telegram.org/bot{token}/test")[1] == "https://api.telegram.org/file/bot{token}/test"
    with pytest.raises(ValueError, match="TRADEOPS_TELEGRAM_API_URL"):
        api_urls("localhost:8081")


def test_callback_data_is_parsed_strictly() -> None:
    assert parse_callback("a:abcd1234") is not None
    for forged in (None, "", "a:ABCD1234", "x:abcd1234", "a:abc", "a:" + "a" * 41, "a:abcd1234\n", "d:abcd 1234"):
        assert parse_callback(forged) is None


def test_a_table_split_across_parts_stays_a_table() -> None:
    rows = "\n".join(f"{i}  <{i}>" for i in range(600))
    parts = html_parts("head & tail\nn    v\n---  -----\n" + rows, 4096)
    assert len(parts) == 2
    assert parts[0][0].startswith("head &amp; tail\n<pre>n") and parts[1][0].startswith("<pre>")
    assert all(p[0].endswith("</pre>") for p in parts)


# --- the whole bot: tradeops run with the Telegram transport ---


async def test_tradeops_run_pushes_scheduled_cards_to_telegram_and_an_approval_becomes_an_order(
    fake: tuple[FakeBotAPI, str], tmp_path: Path
) -> None:
    """What the issue asks a person to be able to do: run the bot on the replay data with a token,
    receive a scheduled card with its chart in a subscribed chat, approve it, see the order."""
    from bot.run import run_bot

    api, url = fake
    settings = load_settings(
        data_dir=tmp_path / "run",
        telegram_token=SecretStr(TOKEN),
        telegram_api_url=url,
        telegram_allowed_users=ALLOWED,
    )
    # The data dir remembers 05:59 on 2021-07-06 (the ETH/USDT setup closes at 06:00), and a
    # trader's chat is subscribed to every watchlist.
    async with open_services(settings, clock=SimulatedClock(datetime(2021, 7, 6, 5, 59, tzinfo=UTC))) as opened:
        seed_watchlists(opened)
        opened.users.grant("telegram", TRADER, Role.TRADER, at=opened.clock.now())
        reply = await CommandCore(opened).handle(Caller("telegram", TRADER, chat_id=TRADER), "/subscribe all")
        assert reply.ok, reply.text
    stop = asyncio.Event()
    running = asyncio.create_task(run_bot(settings, speed=60, stop=stop))  # a simulated minute a second
    try:
        card = await api.until(
            lambda: [p for p in api.sent("sendPhoto", chat_id=str(TRADER)) if "a:" in p.get("reply_markup", "")], 30
        )
        signal_id = json.loads(card[0]["reply_markup"])["inline_keyboard"][0][0]["callback_data"].split(":", 1)[1]
        message = {"message_id": 0, "date": 1625551205, "chat": {"id": TRADER, "type": "private", "first_name": "x"}}
        api.updates.put_nowait(api.press(TRADER, f"a:{signal_id}", message))
        await api.until(lambda: api.sent("editMessageCaption", chat_id=str(TRADER)))
        api.message(TRADER, "/orders")
        orders = await api.until(
            lambda: [p for p in api.sent("sendMessage", chat_id=str(TRADER)) if signal_id in p["text"]]
        )
        assert "ETH/USDT" in orders[-1]["text"] and "buy" in orders[-1]["text"]
    finally:
        stop.set()
        assert await asyncio.wait_for(running, 30) == 0
    assert TOKEN not in json.dumps(api.calls)  # the token travels in the URL only
    # One edit per card message: the press's decision reaches the transport once (the run's hook).
    assert len(api.sent("editMessageCaption", chat_id=str(TRADER))) == 1


# --- one poller per token ---


async def test_a_second_poller_is_refused_at_start_and_tradeops_run_exits_2(
    fake: tuple[FakeBotAPI, str], services: Services, tmp_path: Path
) -> None:
    api, url = fake
    api.conflict = True
    transport = make_transport(services, url)
    with pytest.raises(TransportError) as refused:
        await transport.start()
    assert str(refused.value) == CONFLICT and "409 Conflict" in CONFLICT
    assert not transport.app.running and not api.sent("setMyCommands")  # nothing done before the check

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    env |= {"TRADEOPS_TELEGRAM_TOKEN": TOKEN, "TRADEOPS_TELEGRAM_API_URL": url}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "tradeops"),
        *("run", "--replay", "--data-dir", str(tmp_path / "run")),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, stderr.decode()
    assert f"error: {CONFLICT}" in stderr.decode() and TOKEN not in stderr.decode()


async def test_a_conflict_while_running_stops_polling_instead_of_fighting(
    fake: tuple[FakeBotAPI, str], bot: TelegramTransport, caplog: pytest.LogCaptureFixture
) -> None:
    api, _ = fake
    api.message(VIEWER, "/help")
    await api.until(lambda: api.sent("sendMessage", chat_id=str(VIEWER)))
    assert bot.not_ready() is None  # /readyz: polling runs
    api.conflict = True  # another process starts polling the token
    stopping = await api.until(lambda: bot._stopping)
    await asyncio.wait_for(asyncio.shield(stopping), 10)  # the updater's stop, its last getUpdates included
    assert bot.app.updater is not None and not bot.app.updater.running
    assert bot.not_ready() == CONFLICT  # /readyz names the transport with this reason
    polls = api.polls
    await asyncio.sleep(2.5)  # the retry loop would poll again after 1 s, then 1.5 s
    assert api.polls == polls and api.conflicts == 1  # nor a last getUpdates to confirm what was fetched
    errors = [r.getMessage() for r in caplog.records if r.name == "bot.telegram" and r.levelno == logging.ERROR]
    assert errors == [f"telegram: {CONFLICT}. Polling stopped: this process takes no more Telegram updates."]


async def test_a_conflict_while_running_stops_the_whole_run_cleanly_with_exit_status_4(
    fake: tuple[FakeBotAPI, str], tmp_path: Path
) -> None:
    """Another process takes the token while `tradeops run` polls: the run stops as on SIGTERM (the
    transports stop, pending approvals stay pending), logs why, and exits 4."""
    api, url = fake
    settings = load_settings(data_dir=tmp_path / "run")
    async with open_services(settings, clock=SimulatedClock(SIGNAL_AT)) as opened:
        seed_watchlists(opened)
        opened.users.grant("telegram", TRADER, Role.TRADER, at=opened.clock.now())
        card = await pending_card(opened)
    env = {
        "TRADEOPS_TELEGRAM_TOKEN": TOKEN,
        "TRADEOPS_TELEGRAM_API_URL": url,
        "TRADEOPS_TELEGRAM_ALLOWED_USERS": ALLOWED,
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "tradeops"),
        *("run", "--replay", "--speed", "1", "--data-dir", str(tmp_path / "run")),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")} | env,
        cwd=tmp_path,
    )
    try:
        await api.until(lambda: api.polls >= 3, 60)  # the one-poller check, then polling
        api.message(VIEWER, "/help")
        await api.until(lambda: api.sent("sendMessage", chat_id=str(VIEWER)))  # it answers
        api.conflict = True  # another process polls the token now
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = stderr.decode()
    assert process.returncode == 4, log
    assert f"stopping: transport telegram asked to: {CONFLICT}" in log
    assert "transport telegram stopped" in log and "stopped; pending approvals stay pending" in log
    assert "Traceback" not in log and TOKEN.split(":")[1] not in log
    assert api.conflicts == 1  # no retry, and no last getUpdates to confirm (it would end the other's poll)
    async with open_services(settings, clock=SimulatedClock(SIGNAL_AT)) as opened:
        row = opened.signals.get(card["signal_id"])
        assert row is not None and row.status == SignalStatus.PENDING.value


# --- webhook mode ---

WEBHOOK_URL = "https://bot.example.com/tradeops/telegram-updates"


async def post_update(port: int, update: dict[str, Any], secret: str | None) -> int:
    """POST an update to the webhook server as Telegram does; the HTTP status it answered."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"http://127.0.0.1:{port}/tradeops/telegram-updates", content=json.dumps(update), headers=headers
        )
    return answer.status_code


async def test_webhook_mode_sets_the_webhook_and_handles_only_requests_with_the_secret(
    fake: tuple[FakeBotAPI, str], services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    api, url = fake
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "telegram", "tornado"):  # the worst case: every library at DEBUG
        caplog.set_level(logging.DEBUG, logger=name)
    port = free_port()
    transport = make_transport(services, url, telegram_webhook_url=WEBHOOK_URL, telegram_webhook_port=port)
    await transport.start()
    try:
        [hook] = api.sent("setWebhook")
        secret = hook["secret_token"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)  # made at start: 32 random bytes
        assert hook["url"] == WEBHOOK_URL and TOKEN.split(":")[1] not in hook["url"]
        assert json.loads(hook["allowed_updates"]) == ["message", "callback_query"]
        assert hook.get("drop_pending_updates", "false").lower() == "false"  # what queued at Telegram arrives
        assert api.polls == 0 and not api.sent("deleteWebhook")  # no poll, no one-poller check
        assert api.sent("setMyCommands")

        risk = api.text_update(VIEWER, "/risk")
        assert await post_update(port, risk, None) == 403
        assert await post_update(port, risk, "not-the-secret") == 403
        assert await post_update(port, risk, secret[:-1]) == 403
        assert await post_update(port, api.text_update(VIEWER, "/help"), secret) == 200
        replies = await api.until(lambda: api.sent("sendMessage", chat_id=str(VIEWER)))
        await asyncio.sleep(0.3)  # a reply to /risk would have come first (updates are handled in order)
        assert len(api.sent("sendMessage", chat_id=str(VIEWER))) == 1 and "/help" in replies[0]["text"]
        assert "kill switch" not in replies[0]["text"]
    finally:
        await transport.stop()
    assert not api.sent("deleteWebhook") and api.webhook["url"] == WEBHOOK_URL  # left set: updates wait there
    with pytest.raises(httpx.ConnectError):  # the server is gone
        await post_update(port, api.text_update(VIEWER, "/help"), secret)
    assert "Setting webhook" in caplog.text and "Calling Bot API endpoint `setWebhook`" in caplog.text  # DEBUG
    assert secret not in caplog.text and TOKEN.split(":")[1] not in caplog.text
    assert f"telegram: webhook set to {WEBHOOK_URL}; listening on http://127.0.0.1:{port}/tradeops/" in caplog.text


async def test_a_webhook_secret_setting_is_used_and_a_taken_port_is_a_clear_error(
    fake: tuple[FakeBotAPI, str], services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    api, url = fake
    api.webhook["url"] = "https://old.example.com/hook"  # another deployment's
    secret = "s3cret_-" * 32  # 256 characters, Telegram's longest
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        transport = make_transport(
            services, url, telegram_webhook_url=WEBHOOK_URL, telegram_webhook_port=port, telegram_webhook_secret=secret
        )
        with pytest.raises(TransportError) as refused:
            await transport.start()
    assert str(refused.value).startswith(f"the Telegram webhook server cannot listen on 127.0.0.1:{port} (")
    assert "TRADEOPS_TELEGRAM_WEBHOOK_PORT" in str(refused.value) and not transport.app.running
    assert api.sent("setWebhook")[0]["secret_token"] == secret
    assert "telegram: replacing the webhook https://old.example.com/hook" in caplog.text
    assert secret not in caplog.text


async def test_a_webhook_taken_over_by_another_process_asks_the_run_to_stop(
    fake: tuple[FakeBotAPI, str], services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    api, url = fake
    transport = make_transport(services, url, telegram_webhook_url=WEBHOOK_URL, telegram_webhook_port=free_port())
    assert transport.webhook is not None and transport.webhook.check_seconds == 60.0
    transport.webhook = dataclasses.replace(transport.webhook, check_seconds=0.05)
    asked: list[StopRequest] = []
    await transport.start(asked.append)
    try:
        await asyncio.sleep(0.3)
        assert not asked and len(api.sent("getWebhookInfo")) >= 3  # still ours: asked each round, nothing done
        api.webhook_info_fails = True
        await asyncio.sleep(0.3)
        assert not asked and "telegram: webhook check failed, next in 0.05 s: Bad Gateway" in caplog.text
        api.webhook_info_fails = False
        api.webhook["url"] = "https://other.example.com/hook"  # another deployment set its own
        await api.until(lambda: asked)
        await asyncio.sleep(0.2)
    finally:
        await transport.stop()
    reason = (
        f"Telegram now posts this bot's updates to https://other.example.com/hook, not to {WEBHOOK_URL}: "
        "another process took the token; stop it, or use another bot token"
    )
    assert asked == [StopRequest("telegram", reason)]  # once
    assert f"telegram: {reason}" in caplog.text
    assert not api.sent("setWebhook")[1:]  # not set back: no fight


async def test_back_to_polling_after_webhook_mode_deletes_the_webhook(
    fake: tuple[FakeBotAPI, str], services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    api, url = fake
    hooked = make_transport(services, url, telegram_webhook_url=WEBHOOK_URL, telegram_webhook_port=free_port())
    await hooked.start()
    await hooked.stop()
    assert api.webhook["url"] == WEBHOOK_URL  # left set
    polling = make_transport(services, url)
    await polling.start()
    try:
        api.message(VIEWER, "/help")
        await api.until(lambda: api.sent("sendMessage", chat_id=str(VIEWER)))
    finally:
        await polling.stop()
    assert api.sent("deleteWebhook") and api.webhook["url"] == ""
    assert "telegram: a webhook was set for this bot; polling replaces it" in caplog.text


async def test_webhook_settings_are_validated(services: Services) -> None:
    for bad in ("bad secret", "ä" * 3, "x" * 257, "a;b"):
        with pytest.raises(ValidationError, match="1-256 characters of A-Z, a-z, 0-9, _ and -") as error:
            load_settings(telegram_webhook_secret=bad)
        assert bad not in str(error.value).split("input_value")[0]  # the message never echoes it
    assert load_settings(telegram_webhook_secret="  ").telegram_webhook_secret is None  # blank: made at start
    for bad in ("bot.example.com/hook", "ftp://bot.example.com/", "https:///hook", "https://h.example.com/#x"):
        with pytest.raises(ValidationError, match="TRADEOPS_TELEGRAM_WEBHOOK_URL must be the public https URL"):
            load_settings(telegram_webhook_url=bad)
    with pytest.raises(ValidationError, match="telegram_webhook_port"):
        load_settings(telegram_webhook_port=70000)
    for webhook, why in [
        (f"https://bot.example.com/{TOKEN}", "contains the bot token"),
        (f"https://bot.example.com/{TOKEN.split(':')[1]}", "contains the bot token"),
        ("http://bot.example.com/hook", "must be https: Telegram posts only to https"),
        ("https://bot.example.com:8080/hook", "has port 8080: Telegram posts only to ports 443, 80, 88, 8443"),
    ]:
        with pytest.raises(TransportError, match=why):
            TelegramTransport(load_settings(telegram_webhook_url=webhook), services, TOKEN)
    # A self-hosted Bot API server posts to any URL.
    local = load_settings(
        telegram_webhook_url="http://127.0.0.1:9000/hook", telegram_api_url="http://127.0.0.1:8081/bot"
    )
    hook = TelegramTransport(local, services, TOKEN).webhook
    assert hook is not None and (hook.path, hook.listen, hook.port) == ("/hook", "127.0.0.1", 8443)
    assert hook.secret not in repr(hook)
    assert TelegramTransport(load_settings(), services, TOKEN).webhook is None  # long polling
    # Several runs serve one webhook with the Celery executor: one shared secret, not one each.
    shared = {"telegram_webhook_url": "https://bot.example.com/hook", "executor": "celery"}
    with pytest.raises(TransportError, match="set TRADEOPS_TELEGRAM_WEBHOOK_SECRET to one secret shared by all"):
        TelegramTransport(load_settings(**shared), services, TOKEN)
    with_secret = TelegramTransport(load_settings(**shared, telegram_webhook_secret="s3cret_1"), services, TOKEN)
    assert with_secret.webhook is not None and not with_secret.single_receiver
    assert TelegramTransport(load_settings(executor="celery"), services, TOKEN).single_receiver  # polling


# --- access requests ---


def request_message(api: FakeBotAPI, admin: int, stranger: int) -> dict[str, Any]:
    """The access request an admin received, as a press carries it."""
    sent = [p for p in api.sent("sendMessage", chat_id=str(admin)) if f"g:{stranger}" in p.get("reply_markup", "")]
    assert len(sent) == 1, sent
    return {"message_id": int(sent[0]["message_id"]), "date": 1625551205, "chat": {"id": admin, "type": "private"}}


async def test_a_stranger_asks_once_and_an_admin_grants_viewer_with_one_press(
    fake: tuple[FakeBotAPI, str], bot: TelegramTransport, services: Services
) -> None:
    api, _ = fake
    services.users.grant("telegram", 7007, Role.ADMIN, at=services.clock.now())  # an admin without a chat
    api.blocked.add(7007)
    api.message(STRANGER, "/signals")
    api.message(STRANGER, "/help")  # within 10 minutes: neither a refusal nor a request
    api.message(VIEWER, "/help")  # a marker
    await api.until(lambda: api.sent("sendMessage", chat_id=str(VIEWER)))
    requests = [p for p in api.calls if p[0] == "sendMessage" and "access request" in p[1]["text"]]
    assert [int(p["chat_id"]) for _, p in requests] == [ADMIN, 7007]  # 7007's failed: skipped
    body = requests[0][1]
    assert body["text"] == f"access request from Waffle (@WaffleLapkin) (id {STRANGER})"  # the fixture's sender
    keyboard = json.loads(body["reply_markup"])["inline_keyboard"][0]
    assert [(b["text"], b["callback_data"]) for b in keyboard] == [
        ("Grant viewer", f"g:{STRANGER}"),
        ("Deny", f"n:{STRANGER}"),
    ]
    message = request_message(api, ADMIN, STRANGER)
    for user, data in [(TRADER, f"g:{STRANGER}"), (STRANGER, f"g:{STRANGER}"), (ADMIN, "g:12x"), (ADMIN, "g:-5")]:
        await bot.app.process_update(Update.de_json(api.press(user, data, message), bot.app.bot))
    answers = [p["text"] for p in api.sent("answerCallbackQuery")]
    assert answers == ["refused: only an admin may answer an access request."] * 2 + ["unknown button"] * 2
    assert services.users.role("telegram", STRANGER) is None and not api.sent("editMessageText")

    await bot.app.process_update(Update.de_json(api.press(ADMIN, f"g:{STRANGER}", message), bot.app.bot))
    assert services.users.role("telegram", STRANGER) is Role.VIEWER
    granted = api.sent("answerCallbackQuery")[-1]["text"]
    assert granted == f"telegram:{STRANGER} added as viewer (Waffle (@WaffleLapkin))"
    edit = api.sent("editMessageText", chat_id=str(ADMIN))
    assert edit[0]["text"].endswith(f"GRANTED viewer by telegram:{ADMIN}") and "reply_markup" not in edit[0]
    welcome = api.sent("sendMessage", chat_id=str(STRANGER))[-1]["text"]
    assert welcome.startswith("You may use this bot now, as a viewer")
    added = [e for e in services.signals.audit_log() if e.action == "users_add"]
    assert [(e.actor, e.target, e.detail["role"]) for e in added] == [
        (f"telegram:{ADMIN}", f"telegram:{STRANGER}", "viewer")
    ]
    # A second press (another admin's copy, or a double tap) changes nothing.
    await bot.app.process_update(Update.de_json(api.press(ADMIN, f"g:{STRANGER}", message), bot.app.bot))
    assert api.sent("answerCallbackQuery")[-1]["text"] == f"telegram:{STRANGER} is already a viewer"
    api.message(STRANGER, "/risk")
    await api.until(lambda: any("kill switch" in p["text"] for p in api.sent("sendMessage", chat_id=str(STRANGER))))


async def test_deny_stops_the_requests_of_that_stranger(
    fake: tuple[FakeBotAPI, str], bot: TelegramTransport, services: Services
) -> None:
    api, _ = fake
    bot.access.refusals.interval = 0.0  # every message is refused now
    api.message(STRANGER, "hello")
    await api.until(lambda: api.sent("sendMessage", chat_id=str(ADMIN)))
    message = request_message(api, ADMIN, STRANGER)
    await bot.app.process_update(Update.de_json(api.press(ADMIN, f"n:{STRANGER}", message), bot.app.bot))
    assert services.users.role("telegram", STRANGER) is None
    assert api.sent("editMessageText", chat_id=str(ADMIN))[0]["text"].endswith(f"DENIED by telegram:{ADMIN}")
    denied = [e for e in services.signals.audit_log() if e.action == "access_denied"]
    assert [(e.actor, e.target) for e in denied] == [(f"telegram:{ADMIN}", f"telegram:{STRANGER}")]
    api.message(STRANGER, "hello again")
    api.message(VIEWER, "/help")  # a marker
    await api.until(lambda: api.sent("sendMessage", chat_id=str(VIEWER)))
    assert len(api.sent("sendMessage", chat_id=str(STRANGER))) == 2  # refused again, politely
    assert len([p for p in api.sent("sendMessage", chat_id=str(ADMIN)) if "access request" in p["text"]]) == 1


def test_access_button_data_is_parsed_strictly() -> None:
    assert parse_access("g:4242") == AccessPress(True, 4242)
    assert parse_access("n:4242") == AccessPress(False, 4242)
    for forged in ("g:0", "g:-1", "g:01", "x:1", "g:1 ", "g:99999999999999999999", "g:9223372036854775808", "", None):
        assert parse_access(forged) is None, forged
    assert parse_callback("g:4242") is None  # and a signal button is not an access button


# --- tradeops doctor ---


async def tradeops(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """The installed CLI in a subprocess (this loop keeps serving the fake meanwhile): status, stdout + stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "tradeops"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=clean | env,
        cwd=cwd,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_doctor_checks_the_telegram_token_with_get_me_and_never_prints_it(
    fake: tuple[FakeBotAPI, str], tmp_path: Path
) -> None:
    api, url = fake
    env = {"TRADEOPS_TELEGRAM_TOKEN": TOKEN, "TRADEOPS_TELEGRAM_API_URL": url, "TRADEOPS_DATA_DIR": str(tmp_path)}
    status, out = await tradeops("doctor", env=env, cwd=tmp_path)
    assert f"[ok  ] telegram: the token belongs to @tradeops_test_bot (getMe at {url})" in out, out
    assert TOKEN not in out and TOKEN.split(":")[1] not in out
    assert api.sent("getMe") and api.tokens == {TOKEN}

    api.revoked.add(TOKEN)
    status, out = await tradeops("doctor", env=env, cwd=tmp_path)
    assert status == 1
    assert f"[FAIL] telegram: Telegram refused the token at {url}: set TRADEOPS_TELEGRAM_TOKEN" in out, out
    assert TOKEN not in out and TOKEN.split(":")[1] not in out

    status, out = await tradeops(
        "doctor", env=env | {"TRADEOPS_TELEGRAM_API_URL": "http://127.0.0.1:9/bot"}, cwd=tmp_path
    )
    assert status == 1 and "[FAIL] telegram: no answer from http://127.0.0.1:9/bot" in out, out
    assert TOKEN not in out and TOKEN.split(":")[1] not in out

    status, out = await tradeops("doctor", env={"TRADEOPS_DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    assert "[ok  ] chat: no transport configured" in out and "telegram:" not in out


async def test_doctor_shows_the_webhook_telegram_has_and_its_last_error_never_the_secret(
    fake: tuple[FakeBotAPI, str], tmp_path: Path
) -> None:
    api, url = fake
    secret = "doctor_must_not_print_this"
    env = {
        "TRADEOPS_TELEGRAM_TOKEN": TOKEN,
        "TRADEOPS_TELEGRAM_API_URL": url,
        "TRADEOPS_DATA_DIR": str(tmp_path),
        "TRADEOPS_TELEGRAM_WEBHOOK_URL": WEBHOOK_URL,
        "TRADEOPS_TELEGRAM_WEBHOOK_SECRET": secret,
        "TRADEOPS_TELEGRAM_ALLOWED_USERS": ALLOWED,
    }
    # What Telegram answers for a webhook it cannot reach (the Bot API's WebhookInfo fields).
    api.webhook |= {
        "url": WEBHOOK_URL,
        "pending_update_count": 3,
        "last_error_date": 1625551205,
        "last_error_message": "Connection refused",
    }
    status, out = await tradeops("doctor", env=env, cwd=tmp_path)
    assert (
        f"[ok  ] telegram: the token belongs to @tradeops_test_bot (getMe at {url}); webhook mode: Telegram posts "
        f"to {WEBHOOK_URL}; 3 updates pending; last delivery error at 2021-07-06T06:00:05+00:00: Connection refused"
    ) in out, out
    assert status == 0 and secret not in out and TOKEN.split(":")[1] not in out
    assert [m for m, _ in api.calls if m != "getMe"] == ["getWebhookInfo"]  # the doctor changes nothing

    # Polling configured, and a webhook set at Telegram by someone else, with the token as its path.
    api.webhook["url"] = f"https://other.example.com/{TOKEN}"
    polling = {k: v for k, v in env.items() if "WEBHOOK" not in k}
    status, out = await tradeops("doctor", env=polling, cwd=tmp_path)
    assert (
        "long polling; Telegram has the webhook https://other.example.com/<token> set: `tradeops run` deletes it"
    ) in out, out
    assert status == 0 and TOKEN.split(":")[1] not in out


def test_the_webhook_state_is_described_against_the_setting() -> None:
    info = WebhookInfo(url="", has_custom_certificate=False, pending_update_count=0)
    assert describe(info, None) == "long polling (no webhook set at Telegram)"
    assert describe(info, WEBHOOK_URL) == (
        f"webhook mode ({WEBHOOK_URL}); Telegram has no webhook yet: `tradeops run` sets it; 0 updates pending"
    )
    other = WebhookInfo(url="https://old.example.com/x", has_custom_certificate=False, pending_update_count=2)
    assert describe(other, WEBHOOK_URL) == (
        f"webhook mode ({WEBHOOK_URL}); Telegram posts to https://old.example.com/x: `tradeops run` replaces it; "
        "2 updates pending"
    )
