"""A worker's transports only send: Telegram through an initialised Bot without polling, Discord
logged in over REST without the gateway (bot/worker_tasks.py's open_senders), against the local
fakes of both platforms; a card goes out on each and a decision edits it, and neither takes updates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.core import Caller, CommandCore
from bot.render import signal_outcome
from bot.run import Fanout
from bot.services import open_services, seed_watchlists
from bot.settings import load_settings
from bot.worker_tasks import close_sender, open_senders
from storage.users import Role
from tests.fake_discord import FakeDiscord, serving
from tests.support import local_http_server
from tests.test_telegram import ALLOWED, TOKEN, TRADER, FakeBotAPI
from venues.clock import SimulatedClock

DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GfakeX.fake_discord_token_for_tests_0123456789"
GUILD, CHANNEL = 290926798626357999, 645027906669510667
SIGNAL_AT = datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC)  # ETH/USDT proposes a BUY here (see test_core)


pytestmark = pytest.mark.usefixtures("hermetic", "discord_globals")


@pytest.fixture
async def platforms() -> AsyncIterator[tuple[FakeBotAPI, str, FakeDiscord]]:
    telegram = FakeBotAPI()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", telegram.handle)
    async with (
        local_http_server(app) as port,
        serving(FakeDiscord(DISCORD_TOKEN, guild_id=GUILD, channels=[CHANNEL])) as discord,
    ):
        yield telegram, f"http://127.0.0.1:{port}/bot", discord


async def test_worker_transports_send_cards_and_edits_and_take_no_updates(
    tmp_path: Path, platforms: tuple[FakeBotAPI, str, FakeDiscord]
) -> None:
    telegram, bot_url, discord = platforms
    settings = load_settings(
        data_dir=tmp_path / "data",
        telegram_token=SecretStr(TOKEN),
        telegram_api_url=bot_url,
        telegram_allowed_users=ALLOWED,
        discord_token=SecretStr(DISCORD_TOKEN),
        discord_api_url=discord.api_url,
        discord_gateway_url=discord.gateway_url,
        discord_guild_id=GUILD,
        discord_allowed_users=f"{TRADER}:trader",
    )
    async with open_services(settings, clock=SimulatedClock(SIGNAL_AT)) as services:
        seed_watchlists(services)
        now = services.clock.now()
        services.users.grant("telegram", TRADER, Role.TRADER, at=now)
        services.chats.subscribe("telegram", TRADER, "all", at=now)
        services.chats.subscribe("discord", CHANNEL, "all", at=now)
        reply = await CommandCore(services).handle(Caller("telegram", TRADER), "/scan crypto")
        [card] = [c for c in reply.data["cards"] if c["symbol"] == "ETH/USDT"]
        signal_id = str(card["signal_id"])

        senders = await open_senders(settings, services)
        try:
            assert sorted(t.name for t in senders) == ["discord", "telegram"]
            fanout = Fanout()
            fanout.transports = senders
            await fanout.push_card(card)
            assert [p for p in telegram.sent("sendPhoto", chat_id=str(TRADER)) if f"a:{signal_id}" in p["reply_markup"]]
            assert [r for r in discord.seen("POST", rf"/channels/{CHANNEL}/messages") if signal_id in str(r.body)]
            # Remembered, so any process can edit them later.
            assert [ref.chat_id for ref in services.chats.cards("telegram", signal_id)] == [TRADER]
            assert [ref.chat_id for ref in services.chats.cards("discord", signal_id)] == [CHANNEL]

            await services.runner.decide(signal_id, "rejected", actor=f"telegram:{TRADER}", reason="not now")
            await fanout.push_outcome(signal_id, "rejected", signal_outcome(services.signals, signal_id, on_card=True))
            assert telegram.sent("editMessageCaption", chat_id=str(TRADER))
            assert discord.seen("PATCH", rf"/channels/{CHANNEL}/messages/\d+")
        finally:
            for transport in senders:
                await close_sender(transport)
    # Sending only: no getUpdates, no webhook, no command registration; no gateway, no command sync.
    assert telegram.polls == 0 and not telegram.sent("setWebhook") and not telegram.sent("setMyCommands")
    assert discord.connects == [] and not discord.seen("PUT", r"/applications/.*", status=None)
