"""The Discord transport with the real discord.py client against a local fake Discord (REST and
gateway, tests/fake_discord.py): login, READY, command sync, slash commands and button presses
arriving as INTERACTION_CREATE, answers through the interaction callback and follow-up webhooks,
cards through the channel routes; and `tradeops run` on replay with only Discord configured.
No internet; every wait is on what the fake recorded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.core import Caller, CommandCore
from bot.discord import DiscordTransport
from bot.services import Services, open_services, seed_watchlists
from bot.settings import load_settings
from bot.transport import TransportError
from storage.signals import SignalStatus
from storage.users import Role
from tests.fake_discord import EPHEMERAL, FakeDiscord, serving
from tests.support import entry_orders
from venues.clock import SimulatedClock

pytestmark = pytest.mark.usefixtures("hermetic", "discord_globals")

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GfakeX.fake_discord_token_for_tests_0123456789"
GUILD = 290926798626357999  # the documented interaction's guild
CHANNEL, CHANNEL2, GONE = 645027906669510667, 772908445358620702, 666  # GONE: the bot lost access
VIEWER, TRADER, TRADER2, ADMIN, STRANGER = 1001, 1002, 1003, 1004, 4242
ALLOWED = f"{VIEWER}:viewer,{TRADER}:trader,{TRADER2}:trader,{ADMIN}:admin"
DEFERRED, MESSAGE, AUTOCOMPLETE_RESULT = 5, 4, 8  # interaction callback types


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    discord_api = FakeDiscord(TOKEN, guild_id=GUILD, channels=[CHANNEL, CHANNEL2, GONE])
    discord_api.forbidden.add(GONE)
    async with serving(discord_api) as served:
        yield served


@pytest.fixture
def services(bare_services: Services) -> Services:
    return bare_services  # no users: each test grants the ones it needs


def discord_settings(fake: FakeDiscord, **more: Any) -> dict[str, Any]:
    return {
        "discord_api_url": fake.api_url,
        "discord_gateway_url": fake.gateway_url,
        "discord_allowed_users": ALLOWED,
        "discord_guild_id": GUILD,
    } | more


def make_transport(services: Services, fake: FakeDiscord, token: str = TOKEN, **more: Any) -> DiscordTransport:
    config = load_settings(data_dir=services.settings.data_dir, **discord_settings(fake, **more))
    return DiscordTransport(config, services, SecretStr(token))


@pytest.fixture
async def bot(services: Services, fake: FakeDiscord) -> AsyncIterator[DiscordTransport]:
    transport = make_transport(services, fake)
    await transport.start()
    try:
        yield transport
    finally:
        await transport.stop()


async def pushed_card(bot: DiscordTransport, services: Services, fake: FakeDiscord, *channels: int) -> tuple[str, int]:
    """A scan's ETH/USDT card pushed to ``channels`` (subscribed first): its id and CHANNEL's message id."""
    for channel in channels:
        services.chats.subscribe("discord", channel, "all", at=services.clock.now())
    reply = await CommandCore(services).handle(Caller("discord", TRADER), "/scan crypto")
    [card] = [c for c in reply.data["cards"] if c["symbol"] == "ETH/USDT"]
    await bot.push_card(card)
    [sent] = [r for r in fake.seen("POST", rf"/channels/{CHANNEL}/messages") if card["signal_id"] in str(r.body)]
    message = next(m for m in fake.messages.values() if m["channel_id"] == str(CHANNEL) and m["embeds"])
    assert sent.files and message["embeds"][0]["footer"]["text"] == f"signal {card['signal_id']}"
    return str(card["signal_id"]), int(message["id"])


def button(message: dict[str, Any], action: str) -> str:
    ids = [c["custom_id"] for row in message["components"] for c in row["components"]]
    return next(i for i in ids if i.startswith(f"tradeops:{action}:"))


def audited(services: Services, user_id: int) -> list[tuple[str, str]]:
    return [(e.action, e.target) for e in services.signals.audit_log() if e.actor == f"discord:{user_id}"]


# --- start ---


async def test_start_logs_in_identifies_and_syncs_the_slash_commands_to_the_server(
    bot: DiscordTransport, fake: FakeDiscord
) -> None:
    assert [(r.method, r.path) for r in fake.requests[:2]] == [
        ("GET", "/users/@me"),
        ("GET", "/oauth2/applications/@me"),
    ]
    assert all(r.auth == f"Bot {TOKEN}" for r in fake.requests[:3])
    assert fake.connects == [{"v": "10", "encoding": "json", "compress": "zstd-stream"}]  # frames are zstd here
    identify = next(p["d"] for p in fake.received if p["op"] == 2)
    assert identify["token"] == TOKEN and identify["intents"] == 1  # GUILDS only: no privileged intent
    assert any(p["op"] == 1 for p in fake.received)  # it heartbeats
    [sync] = fake.seen("PUT", rf"/applications/{fake.app_id}/guilds/{GUILD}/commands")
    assert {c["name"] for c in sync.body} == set(bot.core.commands)
    assert not fake.seen("PUT", rf"/applications/{fake.app_id}/commands", status=None)  # no global sync
    assert bot.client.user is not None and bot.client.user.name == "tradeops"
    assert fake.unknown() == []


async def test_without_a_server_id_the_commands_sync_globally(services: Services, fake: FakeDiscord) -> None:
    transport = make_transport(services, fake, discord_guild_id=None)
    await transport.start()
    try:
        [sync] = fake.seen("PUT", rf"/applications/{fake.app_id}/commands")
        assert len(sync.body) == len(transport.core.commands)
        assert not fake.seen("PUT", r"/applications/\d+/guilds/\d+/commands", status=None)
    finally:
        await transport.stop()
    assert fake.gateways[-1].ws.closed  # stop closes the gateway


# --- slash commands over the gateway ---


async def test_a_slash_command_is_answered_through_the_interaction_callback(
    bot: DiscordTransport, fake: FakeDiscord, services: Services
) -> None:
    help_ = await fake.slash(VIEWER, "help", CHANNEL)
    [text] = await fake.answered(help_)
    assert help_.callbacks[0]["type"] == MESSAGE and "/help" in text and "(you are viewer)" in text
    subscribe = await fake.slash(TRADER, "subscribe", CHANNEL2, watchlist="crypto")
    await fake.answered(subscribe)
    assert services.chats.chats_for("discord", "crypto") == [CHANNEL2]  # the interaction's channel

    scan = await fake.slash(TRADER, "scan", CHANNEL, watchlist="crypto")
    texts = await fake.answered(scan, 2)
    assert scan.callbacks == [{"type": DEFERRED}]  # deferred at once: a scan may take over 3 s
    [row] = services.signals.recent(status=SignalStatus.PENDING)
    assert "ETH/USDT" in texts[0] and texts[1] == f"signal {row.id}"
    offer = scan.messages[1]  # the card's buttons come with it, as a message of its own
    assert [c["custom_id"] for c in offer["components"][0]["components"]] == [
        f"tradeops:{action}:{row.id}" for action in ("approve", "reject", "details")
    ]
    assert not scan.messages[0]["flags"] & EPHEMERAL  # the thinking message became the public reply

    press = await fake.press(TRADER, int(offer["id"]), f"tradeops:approve:{row.id}")
    await fake.until(lambda: fake.edits(int(offer["id"])))
    assert (
        fake.messages[int(offer["id"])]["components"] == [] and "APPROVED" in fake.messages[int(offer["id"])]["content"]
    )
    assert (
        press.texts()[0].startswith(f"{row.id} approved by discord:{TRADER}")
        and len(entry_orders(services.engine, row.id)) == 1
    )


async def test_autocomplete_offers_pending_ids_to_users_and_nothing_to_strangers(
    bot: DiscordTransport, fake: FakeDiscord, services: Services
) -> None:
    await pushed_card(bot, services, fake, CHANNEL)
    [row] = services.signals.recent(status=SignalStatus.PENDING)
    trader = await fake.autocomplete(TRADER, "approve", CHANNEL, "signal_id", row.id[:3])
    stranger = await fake.autocomplete(STRANGER, "approve", CHANNEL, "signal_id", "")
    await fake.until(lambda: trader.callbacks and stranger.callbacks)
    assert trader.callbacks[0] == {
        "type": AUTOCOMPLETE_RESULT,
        "data": {"choices": [{"name": row.id, "value": row.id}]},
    }
    assert stranger.callbacks[0] == {"type": AUTOCOMPLETE_RESULT, "data": {"choices": []}}


async def test_a_stranger_is_refused_once_privately_and_audited(
    bot: DiscordTransport, fake: FakeDiscord, services: Services
) -> None:
    first = await fake.slash(STRANGER, "signals", CHANNEL)
    [text] = await fake.answered(first)
    assert first.callbacks[0]["data"]["flags"] == EPHEMERAL and f"({STRANGER})" in text
    second = await fake.slash(STRANGER, "orders", CHANNEL)
    help_ = await fake.slash(VIEWER, "help", CHANNEL)  # answered after the stranger's second try was handled
    await fake.answered(help_)
    assert second.callbacks == [] and audited(services, STRANGER) == [("refused", "/signals")]


# --- cards and presses ---


async def test_a_card_arrives_with_its_chart_and_buttons_and_a_press_approves_it(
    bot: DiscordTransport, fake: FakeDiscord, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    sid, message_id = await pushed_card(bot, services, fake, CHANNEL, GONE, CHANNEL2)
    assert f"card {sid} not sent to channel {GONE}" in caplog.text  # 403 Missing Access: skipped, logged
    for channel in (CHANNEL, CHANNEL2):
        [post] = fake.seen("POST", rf"/channels/{channel}/messages")
        [file] = post.files
        assert file["filename"] == f"signal-{sid}.png" and file["content_type"] == "image/png" and file["size"] > 1000
        assert post.body["embeds"][0]["image"]["url"] == f"attachment://signal-{sid}.png"
    card = fake.messages[message_id]
    assert [a["filename"] for a in card["attachments"]] == [f"signal-{sid}.png"]

    stranger = await fake.press(STRANGER, message_id, button(card, "approve"))
    viewer = await fake.press(VIEWER, message_id, button(card, "reject"))
    assert await fake.answered(stranger) == ["refused: not allowed."]
    assert await fake.answered(viewer) == ["refused: reject needs the trader role; you are a viewer."]
    assert all(i.callbacks[0]["data"]["flags"] == EPHEMERAL for i in (stranger, viewer))
    assert audited(services, STRANGER) == [("button_refused", sid)] and audited(services, VIEWER) == [
        ("button_refused", sid)
    ]
    assert fake.edits(message_id) == [] and not entry_orders(services.engine, sid)

    presses = [await fake.press(user, message_id, button(card, "approve")) for user in (TRADER, TRADER2)]  # at once
    answers = [(await fake.answered(press))[0] for press in presses]
    assert sum("already decided" in a for a in answers) == 1, answers
    assert all(p.callbacks[0] == {"type": DEFERRED, "data": {"flags": EPHEMERAL}} for p in presses)
    assert all(p.messages[0]["flags"] & EPHEMERAL for p in presses)  # only the presser sees the answer
    await fake.until(lambda: len(fake.seen("PATCH", r"/channels/\d+/messages/\d+")) >= 2)  # both channels
    edited = fake.messages[message_id]
    assert edited["components"] == [] and edited["embeds"][0]["title"].startswith("APPROVED: BUY ETH/USDT")
    assert "APPROVED by discord:100" in edited["embeds"][0]["description"]
    assert edited["embeds"][0]["image"]["url"] == f"attachment://signal-{sid}.png"  # the chart stays in the card
    assert [a["filename"] for a in edited["attachments"]] == [f"signal-{sid}.png"]
    assert len(entry_orders(services.engine, sid)) == 1


async def test_a_notice_goes_to_every_subscribed_channel_as_text_and_a_lost_one_is_skipped(
    bot: DiscordTransport, fake: FakeDiscord, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    for channel in (GONE, CHANNEL):
        services.chats.subscribe("discord", channel, "crypto", at=services.clock.now())
    await bot.push_event("filled 8.62 ETH/USDT at 2318.91 *market*", kind="fill")
    [post] = fake.seen("POST", rf"/channels/{CHANNEL}/messages")
    assert post.files == [] and post.body["content"] == "[fill] filled 8.62 ETH/USDT at 2318.91 \\*market\\*"
    assert fake.seen("POST", rf"/channels/{GONE}/messages", status=403)
    assert f"fill notice not sent to channel {GONE}" in caplog.text


async def test_after_a_restart_the_old_card_button_still_approves(services: Services, fake: FakeDiscord) -> None:
    first = make_transport(services, fake)
    await first.start()
    try:
        sid, message_id = await pushed_card(first, services, fake, CHANNEL)
    finally:
        await first.stop()
    second = make_transport(services, fake)  # a new client: only add_view at start knows the buttons
    await second.start()
    try:
        assert len([p for p in fake.received if p["op"] == 2]) == 2  # a second IDENTIFY, a new session
        press = await fake.press(TRADER, message_id, f"tradeops:approve:{sid}")
        [answer] = await fake.answered(press)
        assert answer.startswith(f"{sid} approved by discord:{TRADER}")
        await fake.until(lambda: fake.edits(message_id))
        assert fake.messages[message_id]["embeds"][0]["title"].startswith("APPROVED")
        assert len(entry_orders(services.engine, sid)) == 1
    finally:
        await second.stop()


# --- the gateway connection ---


async def test_a_gateway_reconnect_resumes_the_session_and_interactions_still_arrive(
    bot: DiscordTransport, fake: FakeDiscord
) -> None:
    session = fake.current().session_id
    await fake.current().send({"op": 7, "d": None})  # RECONNECT, as Discord asks before a restart
    await fake.until(lambda: any(p["op"] == 6 for p in fake.received))
    resume = next(p["d"] for p in fake.received if p["op"] == 6)
    assert resume["session_id"] == session and resume["token"] == TOKEN and resume["seq"] >= 2
    assert len(fake.connects) == 2 and len([p for p in fake.received if p["op"] == 2]) == 1  # no new IDENTIFY
    help_ = await fake.slash(VIEWER, "help", CHANNEL)
    assert "/help" in (await fake.answered(help_))[0]


async def test_a_gateway_that_refuses_the_session_later_asks_the_run_to_stop(
    services: Services, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.transport import StopRequest

    asked: list[StopRequest] = []
    bot = make_transport(services, fake)
    await bot.start(request_stop=asked.append)
    try:
        assert bot._task is not None
        assert bot.not_ready() is None  # /readyz: the gateway connection is up
        await fake.current().ws.close(code=4004, message=b"Authentication failed.")  # the token was reset
        await asyncio.wait({bot._task}, timeout=10)
        assert bot.not_ready() == "the gateway connection ended"
    finally:
        await bot.stop()
    [error] = [r.getMessage() for r in caplog.records if r.name == "bot.discord" and r.levelno == logging.ERROR]
    assert "the gateway connection ended" in error and "no more Discord interactions" in error and TOKEN not in error
    [request] = asked  # the run stops (exit 4) instead of going on deaf to Discord
    assert request.transport == "discord" and "gateway connection ended" in request.reason
    assert TOKEN not in request.reason


# --- the fake keeps Discord's rules (else the tests above could not fail) ---


async def test_the_fake_refuses_what_discord_refuses(fake: FakeDiscord, bot: DiscordTransport) -> None:
    import aiohttp

    auth = {"Authorization": f"Bot {TOKEN}"}
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, body: Any = None, headers: dict[str, str] = auth) -> tuple[int, Any]:
            async with http.request(method, fake.api_url + path, json=body, headers=headers) as response:
                return response.status, (await response.json()) if response.status != 204 else None

        assert await call("GET", "/gateway/bot") == (404, {"message": "404: Not Found", "code": 0})
        assert fake.unknown()[-1].path == "/gateway/bot"
        assert (await call("GET", "/users/@me", headers={}))[0] == 401
        assert (await call("POST", f"/channels/{CHANNEL}/messages", {"content": ""}))[1]["code"] == 50006
        assert (await call("POST", f"/channels/{CHANNEL}/messages", {"content": "x" * 2001}))[1]["code"] == 50035
        assert (await call("POST", f"/channels/{GONE}/messages", {"content": "x"}))[1]["code"] == 50001
        bad = [{"name": "Help", "description": "x"}]
        assert (await call("PUT", f"/applications/{fake.app_id}/commands", bad))[1]["code"] == 50035
        await fake.answered(await fake.slash(STRANGER, "help", CHANNEL))  # the refusal, once in 10 minutes
        slow = await fake.slash(STRANGER, "help", CHANNEL)  # unanswered by the bot: the test answers it
        callback = f"/interactions/{slow.id}/{slow.token}/callback"
        followup = f"/webhooks/{fake.app_id}/{slow.token}"
        assert (await call("POST", followup, {"content": "x"}))[1]["code"] == 10015  # no answer yet
        slow.sent_at -= 3.1  # Discord waits 3 s for an answer
        assert (await call("POST", callback, {"type": 4, "data": {"content": "late"}}))[1]["code"] == 10062
        slow.sent_at += 3.1
        assert (await call("POST", callback, {"type": 4, "data": {"content": "x"}}))[0] == 204
        assert (await call("POST", callback, {"type": 4, "data": {"content": "x"}}))[1]["code"] == 40060


# --- a refused token ---


async def test_a_refused_token_is_a_clear_error_naming_the_setting_and_never_logged(
    services: Services, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("discord", "discord.http", "discord.client", "discord.gateway", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)  # the worst case: everything at DEBUG
    wrong = TOKEN[:-4] + "XXXX"
    transport = make_transport(services, fake, token=wrong)
    with pytest.raises(TransportError, match="TRADEOPS_DISCORD_TOKEN") as refused:
        await transport.start()
    assert [(r.method, r.path, r.status) for r in fake.requests] == [("GET", "/users/@me", 401)]
    assert fake.requests[0].auth == f"Bot {wrong}" and fake.connects == []
    assert "/users/@me" in caplog.text  # DEBUG was captured
    assert wrong not in caplog.text and wrong not in str(refused.value)
    assert all(wrong not in r.getMessage() for r in caplog.records)


async def test_a_whole_session_at_debug_level_never_logs_the_token(
    services: Services, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("discord", "discord.http", "discord.client", "discord.gateway", "discord.webhook", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    transport = make_transport(services, fake)
    await transport.start()
    try:
        await fake.answered(await fake.slash(VIEWER, "help", CHANNEL))
    finally:
        await transport.stop()
    assert "INTERACTION_CREATE" in caplog.text and "IDENTIFY" in caplog.text  # DEBUG was captured
    assert TOKEN not in caplog.text and all(TOKEN not in r.getMessage() for r in caplog.records)


async def test_a_token_the_gateway_refuses_is_the_same_clear_error(services: Services, fake: FakeDiscord) -> None:
    fake.gateway_token = "another token"  # REST still takes it (e.g. reset between the two)
    transport = make_transport(services, fake)
    with pytest.raises(TransportError, match="TRADEOPS_DISCORD_TOKEN") as refused:
        await transport.start()
    assert TOKEN not in str(refused.value) and fake.gateways[-1].ws.closed
    assert not fake.seen("PUT", r".*commands", status=None)  # nothing registered with a refused session


# --- the whole bot: tradeops run with only Discord ---


async def test_tradeops_run_pushes_a_scheduled_card_to_discord_and_a_press_places_the_order(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    """What the issue asks a person to be able to do, in Discord: run the bot on the replay data
    with a token, receive a scheduled card with its chart, approve it, see the order in /orders."""
    from bot.run import run_bot

    settings = load_settings(data_dir=tmp_path / "run", discord_token=SecretStr(TOKEN), **discord_settings(fake))
    # The data dir remembers 05:59:25 on 2021-07-06 (the ETH/USDT setup closes at 06:00, scanned at
    # 06:00:05), and a channel is subscribed to every watchlist. At 10 x real time the run has 4 s
    # to start before that scan (a fire due while it starts would be skipped, as a live one would).
    start = datetime(2021, 7, 6, 5, 59, 25, tzinfo=UTC)
    async with open_services(settings, clock=SimulatedClock(start)) as opened:
        seed_watchlists(opened)
        opened.users.grant("discord", TRADER, Role.TRADER, at=opened.clock.now())
        reply = await CommandCore(opened).handle(Caller("discord", TRADER, chat_id=CHANNEL), "/subscribe all")
        assert reply.ok, reply.text
    stop = asyncio.Event()
    running = asyncio.create_task(run_bot(settings, speed=10, stop=stop))
    try:
        [post] = await fake.until(lambda: fake.seen("POST", rf"/channels/{CHANNEL}/messages"), 30)
        card = next(m for m in fake.messages.values() if m["embeds"])
        sid = card["embeds"][0]["footer"]["text"].removeprefix("signal ")
        assert post.files[0]["filename"] == f"signal-{sid}.png"
        assert [c["custom_id"] for c in card["components"][0]["components"]] == [
            f"tradeops:{action}:{sid}" for action in ("approve", "reject", "details")
        ]
        press = await fake.press(TRADER, int(card["id"]), f"tradeops:approve:{sid}")
        assert (await fake.answered(press))[0].startswith(f"{sid} approved by discord:{TRADER}")
        [edit] = await fake.until(lambda: fake.edits(int(card["id"])))  # once, by the run's decision hook
        assert edit["components"] == [] and edit["embeds"][0]["title"].startswith("APPROVED: BUY ETH/USDT")
        assert f"APPROVED by discord:{TRADER} at " in edit["embeds"][0]["description"]
        orders = await fake.slash(TRADER, "orders", CHANNEL)
        [text] = await fake.answered(orders)
        assert sid in text and "ETH/USDT" in text and "buy" in text
    finally:
        stop.set()
        assert await asyncio.wait_for(running, 30) == 0
    assert fake.gateways[-1].ws.closed and fake.unknown() == [] and len(fake.edits(int(card["id"]))) == 1
    assert all(TOKEN not in str(r.body) for r in fake.requests)  # the token travels in the header only


# --- tradeops doctor ---


async def doctor(env: dict[str, str]) -> tuple[int, str]:
    """`tradeops doctor` through the CLI app, in a thread (this loop serves the fake meanwhile)."""
    from typer.testing import CliRunner

    from bot.cli import app

    result = await asyncio.to_thread(CliRunner().invoke, app, ["doctor"], env=env)
    return result.exit_code, result.output


async def test_doctor_checks_the_discord_token_and_application_and_never_prints_the_token(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    env = {
        "TRADEOPS_DISCORD_TOKEN": TOKEN,
        "TRADEOPS_DISCORD_API_URL": fake.api_url,
        "TRADEOPS_DATA_DIR": str(tmp_path),
        "TRADEOPS_DISCORD_ALLOWED_USERS": f"{ADMIN}:admin",
    }
    status, out = await doctor(env)
    assert status == 0, out
    assert "[ok  ] discord users: 1 listed (admin); 0 in the database" in out
    found = (
        f"[ok  ] discord: the token belongs to tradeops (bot user {fake.bot_user['id']}) of application {fake.app_id}"
    )
    assert found in out, out
    invite = f"https://discord.com/oauth2/authorize?client_id={fake.app_id}&scope=bot+applications.commands"
    assert invite in out and TOKEN not in out
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/users/@me"), ("GET", "/applications/@me")]
    assert all(r.auth == f"Bot {TOKEN}" for r in fake.requests)


async def probe(fake: FakeDiscord, token: str = TOKEN, **more: Any) -> tuple[bool, str]:
    """The doctor's Discord check, in a thread (this loop serves the fake meanwhile): ok, detail."""
    from bot.doctor import _run, discord_probe

    settings = load_settings(**({"discord_api_url": fake.api_url} | more))
    check = await asyncio.to_thread(_run, "discord", lambda: discord_probe(settings, token))
    assert token not in check.detail
    return check.ok, check.detail


async def test_doctor_says_what_to_fix_for_a_refused_token_a_missing_server_or_no_answer(fake: FakeDiscord) -> None:
    invite = f"https://discord.com/oauth2/authorize?client_id={fake.app_id}&scope=bot+applications.commands"
    ok, detail = await probe(fake, discord_guild_id=GUILD)
    assert ok and f"slash commands can be registered in server {GUILD} (0 now)" in detail, detail
    ok, detail = await probe(fake, discord_guild_id=123456789)
    assert not ok and "cannot register slash commands in server 123456789" in detail and invite in detail, detail

    ok, detail = await probe(fake, token=TOKEN[:-4] + "XXXX")
    assert not ok and detail.startswith(f"Discord refused the token at {fake.api_url}: set TRADEOPS_DISCORD_TOKEN")
    assert TOKEN[:-4] not in detail

    fake.interactions_endpoint_url = "https://example.com/interactions"
    ok, detail = await probe(fake)
    assert not ok and "Interactions Endpoint URL" in detail
    fake.interactions_endpoint_url = None

    ok, detail = await probe(fake, discord_api_url="http://127.0.0.1:9/api/v10")
    assert not ok and detail.startswith("no answer from http://127.0.0.1:9/api/v10"), detail
    ok, detail = await probe(fake, discord_api_url="discord.com/api")
    assert not ok and "TRADEOPS_DISCORD_API_URL must be an http" in detail
