"""The Discord transport with interaction doubles (dpytest has no interaction support) built from
the published interaction JSON in tests/fixtures/discord (see its PROVENANCE.md): slash command and
button callbacks are called directly, channels are fakes that record what is sent and edited. The real
client against a local fake Discord (REST and gateway) is in tests/test_discord_gateway.py. No internet."""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from pydantic import SecretStr, ValidationError

import bot.discord as discord_module
from bot.core import Caller, CommandCore
from bot.discord import CardButton, CardView, DiscordTransport
from bot.discord_render import card_embed, custom_id, message_parts, parse_custom_id
from bot.render import table
from bot.services import Services
from bot.settings import load_settings
from bot.transport import Transport, TransportError
from storage.signals import SignalStatus
from storage.users import Role
from tests.support import entry_orders
from venues.clock import SimulatedClock

pytestmark = pytest.mark.usefixtures("hermetic", "discord_globals")

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GfakeX.fake_discord_token_for_tests_0123456789"
FIXTURES = Path(__file__).parent / "fixtures" / "discord"
DOCS = json.loads((FIXTURES / "discord_interactions_official_docs.json").read_text())
BODIES = json.loads((FIXTURES / "discord_interactions_js_test_bodies.json").read_text())
VIEWER, TRADER, TRADER2, ADMIN, STRANGER = 1001, 1002, 1003, 1004, 4242
CHANNEL, CHANNEL2, BROKEN = 645027906669510667, 772908445358620702, 666
ALLOWED = f"{VIEWER}:viewer,{TRADER}:trader,{TRADER2}:trader,{ADMIN}:admin"


# --- doubles ---


class FakeResponse:
    def __init__(self, log: list[tuple[str, dict[str, Any]]]) -> None:
        self.log, self.done = log, False

    def is_done(self) -> bool:
        return self.done

    async def defer(self, **kwargs: Any) -> None:
        assert not self.done, "answered twice"
        self.done = True
        self.log.append(("defer", kwargs))

    async def send_message(self, content: str = "", **kwargs: Any) -> None:
        assert not self.done, "answered twice"
        self.done = True
        self.log.append(("send_message", {"content": content, **kwargs}))


class FakeFollowup:
    def __init__(self, log: list[tuple[str, dict[str, Any]]], response: FakeResponse) -> None:
        self.log, self.response, self.next_id = log, response, 5000

    async def send(self, content: str = "", **kwargs: Any) -> SimpleNamespace:
        assert self.response.done, "a follow-up before the response"
        self.next_id += 1
        self.log.append(("followup", {"content": content, **kwargs}))
        return SimpleNamespace(id=self.next_id)


class FakeInteraction:
    """What the transport reads of a discord.Interaction, from a published payload."""

    def __init__(self, payload: dict[str, Any], client: discord.Client) -> None:
        user = payload["member"]["user"]
        self.user = SimpleNamespace(id=int(user["id"]), display_name=user["username"])
        self.channel_id = int(payload["channel_id"])
        self.data = payload["data"]
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.response = FakeResponse(self.calls)
        self.followup = FakeFollowup(self.calls, self.response)

    def texts(self) -> list[str]:
        return [c[1].get("content", "") for c in self.calls if c[0] != "defer"]


def command(client: discord.Client, user_id: int, name: str, channel: int = CHANNEL, **options: str) -> Any:
    payload = copy.deepcopy(DOCS["slash_command_interaction"]["payload"])
    payload["member"]["user"]["id"] = str(user_id)
    payload["channel_id"] = str(channel)
    payload["data"]["name"] = name
    payload["data"]["options"] = [{"type": 3, "name": k, "value": v} for k, v in options.items()]
    return FakeInteraction(payload, client)


def press(client: discord.Client, user_id: int, data: str, channel: int = CHANNEL) -> Any:
    payload = copy.deepcopy(DOCS["slash_command_interaction"]["payload"])  # user and channel
    payload["member"]["user"]["id"] = str(user_id)
    payload["channel_id"] = str(channel)
    payload["data"] = {**copy.deepcopy(BODIES["message_component"]["data"]), "custom_id": data}
    return FakeInteraction(payload, client)


@dataclass
class FakeChannel:
    id: int
    fail: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)
    edits: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    async def send(self, content: str | None = None, **kwargs: Any) -> SimpleNamespace:
        if self.fail:
            raise discord.Forbidden(SimpleNamespace(status=403, reason="Forbidden"), "Missing Access")
        self.sent.append({"content": content, **kwargs})
        return SimpleNamespace(id=9000 + len(self.sent))

    def get_partial_message(self, message_id: int) -> SimpleNamespace:
        async def edit(**kwargs: Any) -> None:
            self.edits.append((message_id, kwargs))

        return SimpleNamespace(edit=edit)


async def run_slash(transport: DiscordTransport, interaction: Any, **options: Any) -> None:
    cmd = transport.tree.get_command(interaction.data["name"])
    assert isinstance(cmd, discord.app_commands.Command)
    await cmd.callback(interaction, **options)


async def run_button(transport: DiscordTransport, interaction: Any) -> None:
    """As discord.py does: the CardButton class registered on the client for the custom_id's pattern."""
    data = interaction.data["custom_id"]
    store = transport.client._connection._view_store
    found = [(pattern, item) for pattern, item in store._dynamic_items.items() if pattern.fullmatch(data)]
    assert found, f"no registered item for {data!r}"
    pattern, factory = found[0]
    item = await factory.from_custom_id(interaction, discord.ui.Button(custom_id=data), pattern.fullmatch(data))
    await item.callback(interaction)


# --- fixtures ---


@pytest.fixture
def services(bare_services: Services) -> Services:
    return bare_services  # no users: each test grants the ones it needs


@pytest.fixture
def channels() -> dict[int, FakeChannel]:
    return {c: FakeChannel(c, fail=c == BROKEN) for c in (CHANNEL, CHANNEL2, BROKEN)}


def make_transport(services: Services, channels: dict[int, FakeChannel], **settings: Any) -> DiscordTransport:
    config = load_settings(data_dir=services.settings.data_dir, discord_allowed_users=ALLOWED, **settings)
    transport = DiscordTransport(config, services, SecretStr(TOKEN))
    transport.channel = channels.__getitem__  # type: ignore[assignment,method-assign]
    transport.prepare()  # what start() does before connecting: allowlist, persistent view
    return transport


@pytest.fixture
async def bot(services: Services, channels: dict[int, FakeChannel]) -> DiscordTransport:
    return make_transport(services, channels)


async def pending_card(services: Services) -> dict[str, Any]:
    reply = await CommandCore(services).handle(Caller("discord", TRADER), "/scan crypto")
    cards = [c for c in reply.data["cards"] if c["symbol"] == "ETH/USDT"]
    assert len(cards) == 1, reply.text
    return cards[0]


async def pushed(bot: DiscordTransport, services: Services, *subscribed: int) -> str:
    for channel in subscribed:
        services.chats.subscribe("discord", channel, "all", at=services.clock.now())
    card = await pending_card(services)
    await bot.push_card(card)
    return str(card["signal_id"])


def refusals(services: Services, user_id: int) -> list[str]:
    return [e.action for e in services.signals.audit_log() if e.actor == f"discord:{user_id}"]


# --- commands ---


async def test_every_core_command_is_a_slash_command_with_typed_options(bot: DiscordTransport) -> None:
    assert isinstance(bot, Transport)
    commands = {c.name: c for c in bot.tree.get_commands() if isinstance(c, discord.app_commands.Command)}
    assert set(commands) == set(bot.core.commands)
    approve = {p.name: p for p in commands["approve"].parameters}
    assert approve["signal_id"].required and approve["signal_id"].autocomplete
    assert [c.value for c in commands["signals"].parameters[0].choices] == ["pending", "today", "all", "holds"]
    close = {p.name: p for p in commands["close"].parameters}
    assert close["symbol"].required and close["symbol"].autocomplete and not close["qty"].required
    plan = {p.name: p for p in commands["plan"].parameters}
    assert list(plan) == ["signal_id", "stop", "tp1", "tp2", "tp3"] and plan["signal_id"].autocomplete
    assert [(p.name, p.min_value, p.max_value) for p in commands["orders"].parameters] == [
        ("n", 1, 50),
        ("page", 1, 10_000),
    ]
    assert not commands["watch"].parameters[1].required and commands["watch"].parameters[1].autocomplete


async def test_an_allowed_user_gets_the_core_reply_and_slow_commands_are_deferred(
    bot: DiscordTransport, services: Services
) -> None:
    assert services.users.role("discord", TRADER) is Role.TRADER  # the allowlist, seeded at start
    risk = command(bot.client, VIEWER, "risk")
    await run_slash(bot, risk)
    assert [c[0] for c in risk.calls] == ["send_message"]
    assert "kill switch: off" in risk.texts()[0] and "```\nvenue" in risk.texts()[0]
    scan = command(bot.client, TRADER, "scan")
    await run_slash(bot, scan, watchlist="crypto")
    assert scan.calls[0] == ("defer", {"thinking": True})  # first, before the scan runs
    assert any("ETH/USDT" in t for t in scan.texts())
    [row] = services.signals.recent(status=SignalStatus.PENDING)  # the scan's pending card
    sid = row.id
    offers = [c[1] for c in scan.calls if isinstance(c[1].get("view"), CardView)]
    assert [o["content"] for o in offers] == [f"signal {sid}"]
    ids = [child.custom_id for child in offers[0]["view"].children]  # type: ignore[attr-defined]
    assert ids == [f"tradeops:approve:{sid}", f"tradeops:reject:{sid}", f"tradeops:details:{sid}"]
    assert [(r.chat_id, r.kind) for r in services.chats.cards("discord", sid)] == [(CHANNEL, "text")]


async def test_a_slash_command_with_a_chart_attaches_it(bot: DiscordTransport) -> None:
    chart = command(bot.client, VIEWER, "chart")
    await run_slash(bot, chart, symbol="ETH/USDT", timeframe=None)
    assert chart.calls[0][0] == "defer"
    files = [f for _, kw in chart.calls for f in kw.get("files", [])]
    assert len(files) == 1 and isinstance(files[0], discord.File) and files[0].filename.endswith(".png")


async def test_a_stranger_is_refused_once_and_audited_and_autocomplete_tells_nothing(
    bot: DiscordTransport, services: Services
) -> None:
    tries = [command(bot.client, STRANGER, name) for name in ("signals", "approve", "help")]
    await run_slash(bot, tries[0])
    await run_slash(bot, tries[1], signal_id="abcd1234")
    await run_slash(bot, tries[2])
    assert len(tries[0].calls) == 1 and tries[0].calls[0][1]["ephemeral"] is True
    assert f"({STRANGER})" in tries[0].texts()[0] and not tries[1].calls and not tries[2].calls
    assert refusals(services, STRANGER) == ["refused"]
    cmd = bot.tree.get_command("approve")
    assert isinstance(cmd, discord.app_commands.Command)
    complete = cmd._params["signal_id"].autocomplete  # the callback (Parameter.autocomplete is a flag)
    assert callable(complete)
    sid = (await pending_card(services))["signal_id"]
    stranger = await complete(command(bot.client, STRANGER, "approve"), "")  # type: ignore[call-arg,arg-type]
    trader = await complete(command(bot.client, TRADER, "approve"), sid[:3])  # type: ignore[call-arg,arg-type]
    assert stranger == [] and [c.value for c in trader] == [sid]


async def test_a_viewer_running_a_trader_command_is_refused_and_audited(
    bot: DiscordTransport, services: Services
) -> None:
    sid = (await pending_card(services))["signal_id"]
    approve = command(bot.client, VIEWER, "approve")
    await run_slash(bot, approve, signal_id=sid)
    assert approve.texts()[-1] == "refused: /approve needs the trader role; you are a viewer."
    assert refusals(services, VIEWER) == ["refused"]
    assert services.signals.get(sid).status == SignalStatus.PENDING.value  # type: ignore[union-attr]


async def test_the_trading_slash_commands_become_core_commands_with_their_role_checks(
    bot: DiscordTransport, services: Services
) -> None:
    close = command(bot.client, VIEWER, "close")
    await run_slash(bot, close, symbol="ETH/USDT", qty="all")
    assert close.texts()[-1] == "refused: /close needs the trader role; you are a viewer."
    plan = command(bot.client, TRADER, "plan")
    await run_slash(bot, plan, signal_id="abcd1234", stop="2300", tp1=None, tp2=" 2500 ", tp3=None)
    assert plan.texts()[-1].startswith("no plan for abcd1234.")
    trades = command(bot.client, VIEWER, "trades")
    await run_slash(bot, trades, n=5, page=1)
    assert trades.calls[0] == ("defer", {"thinking": True}) and trades.texts()[-1] == "no closed trades yet"
    orders = command(bot.client, VIEWER, "orders")
    await run_slash(bot, orders, n=20, page=1)
    assert orders.texts()[-1] == "no orders yet"
    cancel = command(bot.client, TRADER, "cancel")
    await run_slash(bot, cancel, order_id="nope;1")
    assert "is not an order id" in cancel.texts()[-1]


# --- cards and buttons ---


async def test_a_card_goes_to_every_subscribed_channel_and_one_approval_wins(
    bot: DiscordTransport, services: Services, channels: dict[int, FakeChannel], caplog: pytest.LogCaptureFixture
) -> None:
    sid = await pushed(bot, services, CHANNEL, BROKEN, CHANNEL2)
    assert f"card {sid} not sent to channel {BROKEN}" in caplog.text
    for channel in (CHANNEL, CHANNEL2):
        [sent] = channels[channel].sent
        assert isinstance(sent["embed"], discord.Embed) and sid in (sent["embed"].footer.text or "")
        assert sent["embed"].image.url == f"attachment://{sent['files'][0].filename}"
        assert isinstance(sent["view"], CardView) and sent["view"].timeout is None
    assert {r.chat_id for r in services.chats.cards("discord", sid)} == {CHANNEL, CHANNEL2}
    presses = [press(bot.client, user, custom_id("approve", sid)) for user in (TRADER, TRADER2)]
    await asyncio.gather(*(run_button(bot, p) for p in presses))
    answers = [p.texts()[-1] for p in presses]
    assert sum("already decided" in a for a in answers) == 1, answers
    assert all(p.calls[0] == ("defer", {"ephemeral": True, "thinking": True}) for p in presses)
    assert all(p.calls[-1][1]["ephemeral"] for p in presses)
    assert len(entry_orders(services.engine, sid)) == 1
    for channel in (CHANNEL, CHANNEL2):
        edits = channels[channel].edits
        assert edits and all(kw["view"] is None for _, kw in edits)  # the buttons are gone
        assert edits[-1][1]["embed"].title.startswith("APPROVED: BUY ETH/USDT")
        assert "APPROVED by discord:100" in edits[-1][1]["embed"].description


async def test_refused_forged_and_replayed_presses_change_nothing_but_are_answered(
    bot: DiscordTransport, services: Services, channels: dict[int, FakeChannel]
) -> None:
    sid = await pushed(bot, services, CHANNEL)
    cases = [
        (VIEWER, custom_id("approve", sid)),
        (STRANGER, custom_id("reject", sid)),
        (TRADER, custom_id("approve", "zzzz9999")),
        (TRADER, "tradeops:sell:" + sid),
        (TRADER, "tradeops:approve:" + sid.upper()),
        (TRADER, "tradeops:approve:../" + "x" * 80),
    ]
    answers = []
    for user, data in cases:
        interaction = press(bot.client, user, data)
        await run_button(bot, interaction)
        answers.append(interaction.texts()[-1])
    assert answers[0] == "refused: approve needs the trader role; you are a viewer."
    assert answers[1] == "refused: not allowed."
    assert answers[2].startswith("no signal zzzz9999")
    assert answers[3:] == ["unknown button"] * 3
    assert services.signals.get(sid).status == SignalStatus.PENDING.value  # type: ignore[union-attr]
    assert not channels[CHANNEL].edits and not entry_orders(services.engine, sid)
    assert len([e for e in services.signals.audit_log() if e.action == "button_refused"]) == 6
    first, replay = (
        press(bot.client, TRADER, custom_id("approve", sid)),
        press(bot.client, TRADER, custom_id("approve", sid)),
    )
    await run_button(bot, first)
    await run_button(bot, replay)  # the same press again: answered, no second order
    assert "already decided" in replay.texts()[-1] and len(entry_orders(services.engine, sid)) == 1
    assert len([e for e in services.signals.audit_log() if e.action == "button_refused"]) == 7


async def test_details_answer_the_presser_only(bot: DiscordTransport, services: Services) -> None:
    sid = await pushed(bot, services, CHANNEL)
    details = press(bot.client, VIEWER, custom_id("details", sid))
    await run_button(bot, details)
    assert details.calls[0][1]["ephemeral"] is True and details.texts()[0].startswith(f"{sid}: pending")


async def test_buttons_work_after_a_restart_and_an_expired_signal_says_so(
    services: Services, channels: dict[int, FakeChannel]
) -> None:
    first = make_transport(services, channels)
    sid = await pushed(first, services, CHANNEL)
    old_button = channels[CHANNEL].sent[0]["view"].children[0].custom_id
    await first.stop()
    second = make_transport(services, channels)  # a new client: only add_view at start knows the buttons
    assert second.client is not first.client
    assert isinstance(services.clock, SimulatedClock)
    row = services.signals.get(sid)
    assert row is not None and row.card
    expires = datetime.fromisoformat(row.card["expires_at"])
    late = press(second.client, TRADER, old_button)
    services.clock.advance_to(expires + timedelta(minutes=1))
    await run_button(second, late)
    assert "expired" in late.texts()[-1]
    assert channels[CHANNEL].edits[-1][1]["embed"].title.startswith("EXPIRED")
    assert services.signals.get(sid).status == SignalStatus.EXPIRED.value  # type: ignore[union-attr]


async def test_after_a_restart_an_old_button_approves(services: Services, channels: dict[int, FakeChannel]) -> None:
    first = make_transport(services, channels)
    sid = await pushed(first, services, CHANNEL)
    await first.stop()
    second = make_transport(services, channels)
    interaction = press(second.client, TRADER, channels[CHANNEL].sent[0]["view"].children[0].custom_id)
    await run_button(second, interaction)
    assert len(entry_orders(services.engine, sid)) == 1 and "APPROVED" in channels[CHANNEL].edits[-1][1]["embed"].title


async def test_events_go_to_every_channel_and_a_failing_one_is_skipped(
    bot: DiscordTransport, services: Services, channels: dict[int, FakeChannel], caplog: pytest.LogCaptureFixture
) -> None:
    for channel in (BROKEN, CHANNEL):
        services.chats.subscribe("discord", channel, "crypto", at=services.clock.now())
    await bot.push_event("filled 1 ETH/USDT", kind="fill")
    assert [s["content"] for s in channels[CHANNEL].sent] == ["[fill] filled 1 ETH/USDT"]
    assert f"fill notice not sent to channel {BROKEN}" in caplog.text


# --- start, secrets, configuration ---


async def test_an_unreachable_api_is_a_transport_error(services: Services, channels: dict[int, FakeChannel]) -> None:
    transport = make_transport(services, channels, discord_api_url="http://127.0.0.1:9/api/v10")
    with pytest.raises(TransportError, match="Discord did not start") as failed:
        await transport.start()
    assert TOKEN not in str(failed.value)


async def test_bad_settings_are_clear_errors(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TransportError, match="TRADEOPS_DISCORD_ALLOWED_USERS: '7:boss'"):
        DiscordTransport(load_settings(discord_allowed_users="7:boss"), services, TOKEN)
    with pytest.raises(TransportError, match="TRADEOPS_DISCORD_API_URL must be an http"):
        DiscordTransport(load_settings(discord_api_url="discord.com/api"), services, TOKEN)
    with pytest.raises(TransportError, match="TRADEOPS_DISCORD_GATEWAY_URL must be a ws"):
        DiscordTransport(load_settings(discord_gateway_url="https://gateway.discord.gg"), services, TOKEN)
    with pytest.raises(TransportError, match="TOKEN is empty"):
        DiscordTransport(load_settings(), services, SecretStr(" "))
    monkeypatch.setenv("TRADEOPS_DISCORD_GUILD_ID", "my-server")
    with pytest.raises(ValidationError, match="discord_guild_id"):
        load_settings()
    monkeypatch.setenv("TRADEOPS_DISCORD_GUILD_ID", "290926798626357999")
    monkeypatch.setenv("TRADEOPS_DISCORD_ALLOWED_USERS", "53908232506183680:admin")
    settings = load_settings()
    assert settings.discord_guild_id == 290926798626357999
    assert DiscordTransport(settings, services, TOKEN).allowed == {53908232506183680: Role.ADMIN}


def test_custom_ids_are_parsed_strictly() -> None:
    assert parse_custom_id(custom_id("approve", "abcd1234")) is not None
    assert parse_custom_id("tradeops:details:abcd1234") is not None
    for forged in (
        None,
        "",
        "click_me",  # the docs' example button
        "tradeops:approve:ABCD1234",
        "tradeops:approve:abc",
        "tradeops:approve:" + "a" * 41,
        "tradeops:approve:abcd1234\n",
        "tradeops:approve:abcd1234:x",
        "tradeops:execute:abcd1234",
    ):
        assert parse_custom_id(forged) is None
    assert CardButton.__discord_ui_compiled_template__.fullmatch("click_me") is None  # not ours: not dispatched


def test_long_replies_are_split_at_2000_and_tables_stay_code_blocks() -> None:
    text = "head *bold* _x_\n" + table(["n", "value"], [(str(i), "v" * 60) for i in range(200)])
    parts = message_parts(text)
    assert len(parts) > 5 and all(len(p) <= 2000 for p in parts)
    assert parts[0].startswith("head \\*bold\\* \\_x\\_\n```\nn")
    assert all(p.count("```") % 2 == 0 for p in parts)
    rows = [line for p in parts for line in p.split("\n") if line.endswith("v" * 60)]
    assert len(rows) == 200
    assert message_parts("x" * 5000) == ["x" * 1000] * 5 or all(len(p) <= 2000 for p in message_parts("x" * 5000))


def test_the_card_embed_shows_the_card_and_its_outcome() -> None:
    card = {"signal_id": "abcd1234", "side": "BUY", "symbol": "ETH/USDT", "venue": "replay", "entry": "2500"}
    embed = card_embed(card, chart="abcd1234.png")
    assert embed.title == "BUY ETH/USDT on replay" and "entry 2500" in (embed.description or "")
    assert embed.image.url == "attachment://abcd1234.png" and embed.footer.text == "signal abcd1234"
    decided = card_embed(card, outcome="REJECTED by discord:1 at 2021-07-06 06:00 UTC: too late")
    assert decided.title == "REJECTED: BUY ETH/USDT on replay" and (decided.description or "").startswith("**REJECTED")


def test_ready_timeout_is_bounded() -> None:
    assert 0 < discord_module.READY_TIMEOUT <= 60 and 0 < discord_module.STOP_TIMEOUT <= 30


async def test_tradeops_run_builds_the_discord_transport_from_its_token(services: Services) -> None:
    from bot.run import transports_for

    settings = load_settings(data_dir=services.settings.data_dir, discord_token=SecretStr(TOKEN))
    [transport] = transports_for(settings, services)
    assert isinstance(transport, DiscordTransport) and transport.token == TOKEN
