"""Per-chat pushes (issue 8, "Pushes"): each chat's notify settings stored on both backends and
honoured by both transports (a chat with fills off gets no fill, another does; a failing chat is
skipped); /notify's answers to bad input; the daily trigger; and the daily summary, built once in
bot/summary.py, sent as photo + caption (Telegram, the local fake Bot API of test_telegram) or embeds
with the charts (Discord), once per chat per local day: a run at a high speed crossing the summary
time sends exactly one per due chat, and a restart the same day sends none again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import discord
import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError
from sqlalchemy import Engine

from bot.core import Caller, CommandCore
from bot.discord import DiscordTransport
from bot.services import Services, open_services, seed_watchlists
from bot.settings import load_settings
from bot.summary import SUMMARY_KEY, daily_summary
from bot.telegram import TelegramTransport
from scheduler.triggers import DailyTrigger, fire_times
from storage.chats import KINDS, ChatStore
from storage.users import Role
from tests import test_discord as discord_tests
from tests import test_telegram as telegram_tests
from tests.test_telegram import ALLOWED, TOKEN, TRADER, VIEWER, FakeBotAPI
from venues.clock import SimulatedClock

pytestmark = pytest.mark.usefixtures("hermetic", "discord_globals")

T0 = datetime(2021, 7, 6, 17, 0, tzinfo=UTC)
GROUP_A, GROUP_B, BLOCKED = -1001, -1002, 666


# --- storage, on each backend ---


def test_notify_settings_are_stored_and_filter_cards_and_events(engine: Engine) -> None:
    chats = ChatStore(engine)
    for chat in (GROUP_A, GROUP_B):
        chats.subscribe("telegram", chat, "all", at=T0)
    chats.subscribe("discord", GROUP_A, "crypto", at=T0)
    assert chats.notify_settings("telegram", GROUP_A).kinds == dict.fromkeys(KINDS, True)  # the defaults, with no row
    chats.set_kind("telegram", GROUP_A, "fills", False, at=T0)
    chats.set_kind("telegram", GROUP_A, "signals", False, at=T0)
    chats.set_kind("telegram", GROUP_A, "signals", True, at=T0)  # the same row, updated
    chats.set_kind("telegram", GROUP_B, "errors", False, at=T0)
    assert chats.chats_wanting("telegram", "fill") == [GROUP_B]
    assert chats.chats_wanting("telegram", "exit") == [GROUP_B]  # fills and exits are one kind
    assert chats.chats_wanting("telegram", "error") == [GROUP_A]
    assert chats.chats_wanting("telegram", "notice") == [GROUP_B, GROUP_A]  # sorted ids
    assert chats.chats_wanting("discord", "fill") == [GROUP_A]  # per platform
    chats.set_kind("telegram", GROUP_B, "signals", False, at=T0)
    assert chats.chats_for("telegram", "crypto") == [GROUP_A]
    with pytest.raises(ValueError, match="unknown event kind 'trade'"):
        chats.chats_wanting("telegram", "trade")
    with pytest.raises(ValueError, match="unknown kind 'fill'; kinds: signals, fills"):
        chats.set_kind("telegram", GROUP_A, "fill", False, at=T0)

    # The summary: due once its time has come, until it is sent that day.
    chats.set_summary_time("telegram", GROUP_B, "18:30", at=T0)
    day = date(2021, 7, 6)
    assert chats.summary_times() == {"18:30"}
    assert chats.summary_due("telegram", day, "17:59", "18:00") == []
    assert chats.summary_due("telegram", day, "18:00", "18:00") == [GROUP_A]
    assert chats.summary_due("telegram", day, "18:30", "18:00") == [GROUP_B, GROUP_A]
    chats.summary_sent("telegram", GROUP_A, day, at=T0)
    assert chats.summary_due("telegram", day, "23:59", "18:00") == [GROUP_B]
    assert chats.summary_due("telegram", day + timedelta(days=1), "18:00", "18:00") == [GROUP_A]
    chats.set_kind("telegram", GROUP_B, "summary", False, at=T0)
    assert chats.summary_due("telegram", day, "23:59", "18:00") == [] and chats.summary_times() == set()
    assert chats.notify_settings("telegram", GROUP_A).summary_sent_on == "2021-07-06"


# --- the daily trigger ---


def test_the_daily_trigger_fires_at_local_times_across_daylight_saving() -> None:
    trigger = DailyTrigger([time(18, 0), time(9, 30)], "Europe/Berlin")
    fires = fire_times(trigger, datetime(2021, 3, 27, tzinfo=UTC), datetime(2021, 3, 29, tzinfo=UTC))
    # CET (+1) on the 27th; CEST (+2) from 02:00 on the 28th.
    assert [f.isoformat() for f in fires] == [
        "2021-03-27T08:30:00+00:00",
        "2021-03-27T17:00:00+00:00",
        "2021-03-28T07:30:00+00:00",
        "2021-03-28T16:00:00+00:00",
    ]
    gap = DailyTrigger([time(2, 30)], "Europe/Berlin")  # 02:30 does not exist on the 28th: once, at 03:30 CEST
    fires = fire_times(gap, datetime(2021, 3, 27, tzinfo=UTC), datetime(2021, 3, 29, 12, tzinfo=UTC))
    assert [f.isoformat() for f in fires] == [
        "2021-03-27T01:30:00+00:00",
        "2021-03-28T01:30:00+00:00",
        "2021-03-29T00:30:00+00:00",
    ]
    # A fire exactly now is the next one; after a fire, the next is strictly later.
    at = datetime(2021, 7, 6, 16, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, at) == at
    assert trigger.get_next_fire_time(at, at) == datetime(2021, 7, 7, 7, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="at least one time"):
        DailyTrigger([], "UTC")


def test_summary_time_and_timezone_settings_are_validated() -> None:
    settings = load_settings(summary_time="7:05", timezone="Asia/Shanghai")
    assert settings.summary_time == "07:05" and settings.zone.key == "Asia/Shanghai"
    assert load_settings().summary_time == "18:00" and load_settings().timezone == "UTC"
    for bad in ("24:00", "18", "18:60", "six"):
        with pytest.raises(ValidationError, match="TRADEOPS_SUMMARY_TIME must be a 24-hour time HH:MM"):
            load_settings(summary_time=bad)
    for bad in ("Mars/Olympus", "CEST+2", "../etc/passwd"):
        with pytest.raises(ValidationError, match="TRADEOPS_TIMEZONE must be an IANA time zone name"):
            load_settings(timezone=bad)


# --- /notify in the core ---


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(data_dir=tmp_path / "data")
    async with open_services(settings, clock=SimulatedClock(T0)) as opened:
        seed_watchlists(opened)
        for user, role in ((TRADER, Role.TRADER), (VIEWER, Role.VIEWER)):
            for platform in ("telegram", "discord"):
                opened.users.grant(platform, user, role, at=opened.clock.now())
        yield opened


async def test_notify_shows_and_changes_this_chats_settings(services: Services) -> None:
    core = CommandCore(services)
    trader = Caller("telegram", TRADER, chat_id=GROUP_A)
    viewer = Caller("telegram", VIEWER, chat_id=GROUP_A)
    shown = await core.handle(viewer, "/notify")
    assert shown.ok and shown.data["notify"] == dict.fromkeys(KINDS, True)
    assert "summary at 18:00 UTC (the default); last sent: never" in shown.text
    assert "no subscription: nothing is pushed here until a trader sends /subscribe" in shown.text
    refused = await core.handle(viewer, "/notify fills off")
    assert not refused.ok and refused.text == (
        "refused: changing what this chat is sent needs the trader role; you are a viewer."
    )
    assert services.chats.notify_settings("telegram", GROUP_A).wants("fills")

    changed = await core.handle(trader, "/notify FILLS off")
    assert changed.ok and changed.text.startswith("this chat: fills off") and changed.data["notify"]["fills"] is False
    changed = await core.handle(trader, "/notify summary 9:30")
    assert changed.ok and "summary at 09:30 UTC; last sent: never" in changed.text
    assert (await core.handle(trader, "/notify all off")).data["notify"] == dict.fromkeys(KINDS, False)
    back = await core.handle(trader, "/notify summary default")  # the default time, and the summary on again
    assert back.data["summary_time"] == "18:00" and back.data["notify"]["summary"] is True
    assert services.chats.notify_settings("discord", GROUP_A).wants("fills")  # another platform's chat
    audit = [(e.actor, e.target) for e in services.signals.audit_log() if e.action == "notify"]
    assert (f"telegram:{TRADER}", "fills off") in audit and len(audit) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/notify trades off", "'trades' is not a kind; usage: /notify [KIND on|off]"),
        ("/notify fills", "/notify fills takes one more word: on or off"),
        ("/notify fills maybe", "'maybe' is not a setting for fills: use on or off"),
        ("/notify errors 18:00", "'18:00' is not a setting for errors: use on or off"),
        ("/notify summary", "/notify summary takes one more word: on, off, a time HH:MM or default"),
        ("/notify summary 25:00", "the summary time must be a 24-hour time HH:MM, 00:00 to 23:59 (e.g. 18:00)"),
        ("/notify summary 18:00 daily", "/notify summary takes one more word"),
    ],
)
async def test_bad_notify_input_says_what_is_wrong_and_what_is_valid(
    services: Services, text: str, message: str
) -> None:
    reply = await CommandCore(services).handle(Caller("telegram", TRADER, chat_id=GROUP_A), text)
    assert not reply.ok and message in reply.text, reply.text
    assert "(KIND: signals, fills, errors, notices, summary, all)" in reply.text
    assert services.chats.notify_settings("telegram", GROUP_A).kinds == dict.fromkeys(KINDS, True)


async def test_notify_needs_a_chat_and_summary_works_on_the_console(services: Services) -> None:
    core = CommandCore(services)
    console = Caller("console", 0, role=Role.ADMIN)
    reply = await core.handle(console, "/notify")
    assert not reply.ok and "/notify works in a chat (Telegram, Discord)" in reply.text
    await equity_history(services)
    reply = await core.handle(console, "/summary")
    assert reply.ok and reply.text.startswith("daily summary 2021-07-06 17:30 UTC")
    assert "realized and change since the deposits (no earlier summary)" in reply.text
    assert reply.images and all(is_png(p) for p in reply.images)
    assert services.signals.get_value(SUMMARY_KEY) is None  # on demand: no baseline recorded


def is_png(path: str) -> bool:
    return Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def equity_history(services: Services) -> None:
    """Two ticks half an hour apart: equity snapshots of every venue, what the charts draw."""
    assert isinstance(services.clock, SimulatedClock)
    for minutes in (0, 30):
        services.clock.advance_to(T0 + timedelta(minutes=minutes))
        await services.scanner.tick(list(services.venues))


async def test_the_summary_counts_from_the_previous_days_summary(services: Services) -> None:
    await equity_history(services)
    first = await daily_summary(services, record=True)
    assert first.data["since"] is None and first.day == date(2021, 7, 6)
    again = await daily_summary(services, record=True)  # the same day: the baseline stays the deposits
    assert again.data["since"] is None
    assert isinstance(services.clock, SimulatedClock)
    services.clock.advance_to(T0 + timedelta(days=1))
    services.signals.set_value(
        SUMMARY_KEY,
        {**services.signals.get_value(SUMMARY_KEY), "rows": {"replay-cn|CNY": {"equity": "999000", "realized": "-5"}}},
        at=services.clock.now(),
    )
    next_day = await daily_summary(services)
    assert next_day.data["since"] == again.at.isoformat()
    assert "since the summary of 2021-07-06 17:30 UTC" in next_day.text
    cn = next(r for r in next_day.data["pnl"] if r["venue"] == "replay-cn")
    assert Decimal(cn["change"]) == 1000 and Decimal(cn["realized"]) == 5  # 1,000,000 - 999,000; 0 - (-5)
    assert "1,000.00 (+0.10%)" in next_day.text


# --- Telegram: filters and the summary ---


class AlbumBotAPI(FakeBotAPI):
    """The fake Bot API, answering sendMediaGroup with a list of messages, as Telegram does."""

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["method"] != "sendMediaGroup":
            return await super().handle(request)
        form = await request.post()
        params = {k: v if isinstance(v, str) else "<file>" for k, v in form.items()}
        self.calls.append(("sendMediaGroup", params))
        chat_id = int(params["chat_id"])
        if chat_id in self.blocked:
            return self.error(403, "Forbidden: bot was blocked by the user")
        chat = {"id": chat_id, "type": "supergroup", "title": "g"}
        media = json.loads(params["media"])
        messages = [{"message_id": self.new_id(), "date": 1625551205, "chat": chat} for _ in media]
        return self.ok(messages)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[AlbumBotAPI, str]]:
    async with telegram_tests.serving_bot_api(AlbumBotAPI()) as served:
        yield served


@pytest.fixture
async def telegram(fake: tuple[AlbumBotAPI, str], services: Services) -> AsyncIterator[TelegramTransport]:
    transport = telegram_tests.make_transport(services, fake[1])
    await transport.start()
    try:
        yield transport
    finally:
        await transport.stop()


def summaries(api: FakeBotAPI, chat: int) -> list[str]:
    """The summary captions (or texts) a chat received."""
    out = []
    for method, params in api.calls:
        if int(params.get("chat_id", "0")) != chat:
            continue
        if method == "sendMediaGroup":
            out.append(json.loads(params["media"])[0].get("caption", ""))
        elif method in ("sendPhoto", "sendMessage") and "daily summary" in params.get(
            "caption", params.get("text", "")
        ):
            out.append(params.get("caption", params.get("text", "")))
    return [s for s in out if s.startswith("daily summary ")]


async def test_telegram_sends_each_kind_only_to_the_chats_that_want_it(
    fake: tuple[AlbumBotAPI, str], telegram: TelegramTransport, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    api, _ = fake
    default = [p for p in api.sent("setMyCommands") if '"default"' in p["scope"]]
    assert '"notify"' in default[0]["commands"] and '"summary"' in default[0]["commands"]  # for viewers too
    api.blocked.add(BLOCKED)
    for chat in (GROUP_A, GROUP_B, BLOCKED):
        services.chats.subscribe("telegram", chat, "all", at=T0)
    core = CommandCore(services)
    for chat, text in ((GROUP_A, "/notify fills off"), (GROUP_B, "/notify signals off")):
        assert (await core.handle(Caller("telegram", TRADER, chat_id=chat), text)).ok
    await telegram.push_event("replay-crypto bought 1 ETH/USDT", kind="fill")
    await telegram.push_event("replay-crypto sold 1 ETH/USDT: stop", kind="exit")
    await telegram.push_event("scan of crypto failed: venue down", kind="error")
    texts = {chat: [p["text"] for p in api.sent("sendMessage", chat_id=str(chat))] for chat in (GROUP_A, GROUP_B)}
    assert texts[GROUP_A] == ["[error] scan of crypto failed: venue down"]
    assert texts[GROUP_B] == [
        "[fill] replay-crypto bought 1 ETH/USDT",
        "[exit] replay-crypto sold 1 ETH/USDT: stop",
        "[error] scan of crypto failed: venue down",
    ]
    assert f"error notice not sent to chat {BLOCKED}: Forbidden" in caplog.text  # skipped, the rest still got it

    card = await telegram_tests.pending_card(services)
    await telegram.push_card(card)
    assert {int(p["chat_id"]) for p in api.sent("sendPhoto")} == {GROUP_A, BLOCKED}  # GROUP_B: signals off


async def test_telegram_summary_is_an_album_with_its_caption_once_a_day_per_chat(
    fake: tuple[AlbumBotAPI, str], telegram: TelegramTransport, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    api, _ = fake
    api.blocked.add(BLOCKED)
    for chat in (GROUP_A, GROUP_B, BLOCKED):
        services.chats.subscribe("telegram", chat, "all", at=T0)
    services.chats.set_kind("telegram", GROUP_B, "summary", False, at=T0)
    await equity_history(services)
    assert isinstance(services.clock, SimulatedClock)
    services.clock.advance_to(datetime(2021, 7, 6, 18, 0, tzinfo=UTC))
    summary = await daily_summary(services, record=True)
    assert len(summary.images) >= 2  # an album
    await telegram.push_summary(summary)
    [caption] = summaries(api, GROUP_A)
    assert caption.startswith("daily summary 2021-07-06 18:00 UTC\n<pre>venue") and "replay-cn" in caption
    media = json.loads(api.sent("sendMediaGroup", chat_id=str(GROUP_A))[0]["media"])
    assert len(media) == len(summary.images) and media[0]["parse_mode"] == "HTML"
    assert all(m["type"] == "photo" and m["media"].startswith("attach://") for m in media), media
    assert summaries(api, GROUP_B) == []  # summary off
    assert f"summary not sent to chat {BLOCKED}" in caplog.text
    assert services.chats.notify_settings("telegram", GROUP_A).summary_sent_on == "2021-07-06"
    assert services.chats.notify_settings("telegram", BLOCKED).summary_sent_on is None  # may get it later

    await telegram.push_summary(await daily_summary(services))  # the same day again: nothing new
    assert len(summaries(api, GROUP_A)) == 1

    # Longer than a caption: the charts, then the text in a message; one chart: a photo.
    api.blocked.clear()
    long = type(summary)(**{**summary.__dict__, "text": summary.text + "\n" + "x" * 1100, "images": summary.images[:1]})
    await telegram.push_summary(long)
    photo = api.sent("sendPhoto", chat_id=str(BLOCKED))
    assert len(photo) == 1 and "caption" not in photo[0]
    assert summaries(api, BLOCKED)[-1].endswith("x" * 1100)  # the earlier ones were refused


# --- Discord: filters and the summary ---


@pytest.fixture
def channels() -> dict[int, Any]:
    return {c: discord_tests.FakeChannel(c, fail=c == BLOCKED) for c in (GROUP_A, GROUP_B, BLOCKED)}


@pytest.fixture
def discord_bot(services: Services, channels: dict[int, Any]) -> DiscordTransport:
    return discord_tests.make_transport(services, channels)


async def test_discord_filters_events_and_sends_the_summary_as_embeds_with_the_charts(
    discord_bot: DiscordTransport, services: Services, channels: dict[int, Any], caplog: pytest.LogCaptureFixture
) -> None:
    for chat in (GROUP_A, GROUP_B, BLOCKED):
        services.chats.subscribe("discord", chat, "all", at=T0)
    services.chats.set_kind("discord", GROUP_A, "fills", False, at=T0)
    services.chats.set_summary_time("discord", GROUP_B, "19:00", at=T0)
    await discord_bot.push_event("replay-crypto bought 1 ETH/USDT", kind="fill")
    await discord_bot.push_event("LLM daily token budget spent", kind="notice")
    assert [s["content"] for s in channels[GROUP_A].sent] == ["[notice] LLM daily token budget spent"]
    assert [s["content"] for s in channels[GROUP_B].sent] == [
        "[fill] replay-crypto bought 1 ETH/USDT",
        "[notice] LLM daily token budget spent",
    ]

    await equity_history(services)
    assert isinstance(services.clock, SimulatedClock)
    services.clock.advance_to(datetime(2021, 7, 6, 18, 0, 1, tzinfo=UTC))
    summary = await daily_summary(services, record=True)
    await discord_bot.push_summary(summary)
    [sent] = [s for s in channels[GROUP_A].sent if "embeds" in s]
    embeds, files = sent["embeds"], sent["files"]
    assert embeds[0].title == "daily summary 2021-07-06 18:00 UTC"
    assert embeds[0].description.startswith("```\nvenue") and "replay-us" in embeds[0].description
    assert [e.image.url for e in embeds] == [f"attachment://{f.filename}" for f in files]
    assert len(files) == len(summary.images) >= 2
    assert not [s for s in channels[GROUP_B].sent if "embeds" in s]  # its time is 19:00
    assert f"summary not sent to channel {BLOCKED}" in caplog.text
    await discord_bot.push_summary(summary)  # once a day
    assert len([s for s in channels[GROUP_A].sent if "embeds" in s]) == 1


async def test_notify_and_summary_are_discord_slash_commands_with_typed_options(
    discord_bot: DiscordTransport, services: Services
) -> None:
    notify = discord_bot.tree.get_command("notify")
    assert isinstance(notify, discord.app_commands.Command)
    options = {p.name: p for p in notify.parameters}
    assert [c.value for c in options["kind"].choices] == ["signals", "fills", "errors", "notices", "summary", "all"]
    assert [c.value for c in options["state"].choices] == ["on", "off"] and not options["time"].required
    interaction = discord_tests.command(discord_bot.client, TRADER, "notify", channel=GROUP_A)
    await discord_tests.run_slash(discord_bot, interaction, kind="summary", state=None, time="07:45")
    assert interaction.texts()[0].startswith("this chat: summary at 07:45")
    assert services.chats.notify_settings("discord", GROUP_A).summary_time == "07:45"
    interaction = discord_tests.command(discord_bot.client, VIEWER, "summary", channel=GROUP_A)
    await discord_tests.run_slash(discord_bot, interaction)
    assert interaction.calls[0][0] == "defer"  # draws charts: deferred first
    assert "daily summary 2021-07-06" in interaction.texts()[0]


# --- the whole bot: tradeops run crossing the summary time, then a restart the same day ---


async def test_a_run_crossing_the_summary_time_sends_one_summary_per_chat_and_a_restart_none_again(
    fake: tuple[AlbumBotAPI, str], tmp_path: Path
) -> None:
    from bot.run import run_bot

    api, url = fake
    settings = load_settings(
        data_dir=tmp_path / "run",
        telegram_token=SecretStr(TOKEN),
        telegram_api_url=url,
        telegram_allowed_users=ALLOWED,
    )
    # The data dir remembers 17:50; A takes the default 18:00, B chose 19:00, C has the summary off.
    # B is the group of the published updates (test_telegram's fixtures): its messages come from there.
    chat_b, chat_c = telegram_tests.GROUP, -1003
    async with open_services(settings, clock=SimulatedClock(datetime(2021, 7, 6, 17, 0, tzinfo=UTC))) as opened:
        seed_watchlists(opened)
        for at in (17, 17.5, 17 + 50 / 60):  # the bot ran before: equity history to draw
            assert isinstance(opened.clock, SimulatedClock)
            opened.clock.advance_to(datetime(2021, 7, 6, tzinfo=UTC) + timedelta(hours=at))
            await opened.scanner.tick(list(opened.venues))
        opened.users.grant("telegram", TRADER, Role.TRADER, at=opened.clock.now())
        core = CommandCore(opened)
        for chat, texts in ((GROUP_A, []), (chat_b, ["/notify summary 19:00"]), (chat_c, ["/notify summary off"])):
            for text in ["/subscribe all", *texts]:
                reply = await core.handle(Caller("telegram", TRADER, chat_id=chat), text)
                assert reply.ok, reply.text

    async def run_until(check: Any) -> Any:
        stop = asyncio.Event()
        running = asyncio.create_task(run_bot(settings, speed=300, stop=stop))  # five simulated minutes a second
        try:
            return await api.until(check, 60)
        finally:
            stop.set()
            assert await asyncio.wait_for(running, 30) == 0

    [caption] = await run_until(lambda: summaries(api, GROUP_A))
    assert caption.startswith("daily summary 2021-07-06 18:00 UTC")
    assert summaries(api, chat_b) == [] and summaries(api, chat_c) == []
    assert [p["chat_id"] for m, p in api.calls if m == "sendMediaGroup"] == [str(GROUP_A)]  # with the charts

    # The restart, the same day: B moves its summary to 20 simulated minutes after the stop (four
    # seconds of the run's time) from its chat while the bot runs: the summary job is rescheduled.
    # A, served today already, gets nothing more.
    async with open_services(settings) as opened:
        stopped = opened.clock.now()
    assert stopped.date() == date(2021, 7, 6)
    later = (stopped + timedelta(minutes=21)).strftime("%H:%M")
    api.message(TRADER, f"/notify summary {later}", group=True)
    [caption] = await run_until(lambda: summaries(api, chat_b))
    sent_at = caption.split("\n", 1)[0].removeprefix("daily summary 2021-07-06 ")
    assert later <= sent_at.removesuffix(" UTC") < "23:59", caption  # at its time, or later when a scan ran over it
    assert len(summaries(api, GROUP_A)) == 1 and summaries(api, chat_c) == []
    answer = [p["text"] for p in api.sent("sendMessage", chat_id=str(chat_b)) if "this chat:" in p["text"]]
    assert answer[0].startswith(f"this chat: summary at {later}")
