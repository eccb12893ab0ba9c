"""The Discord transport (discord.py 2.x): slash commands (bot/discord_commands.py) go to the one
CommandCore as the user who ran them; cards are embeds with the chart attached and Approve / Reject /
Details buttons; a decision edits the card in every channel. It only receives, renders and sends.

Buttons are persistent: their custom_id is ``tradeops:<action>:<signal id>``, matched by a
:class:`CardButton` (a ``DynamicItem``) that ``add_view`` of a :class:`CardView` registers at start,
so a card sent before a restart still works, whatever its id. The custom_id is client-supplied: it is
parsed strictly, the action is looked up here and run through the core as the presser, at press time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route
from pydantic import SecretStr

from bot.allowlist import StrangerRefusals, parse_allowed_users, seed_allowlist
from bot.core import Caller, CommandCore, Reply
from bot.discord_commands import add_commands
from bot.discord_render import (
    MESSAGE_LIMIT,
    api_base,
    card_embed,
    custom_id,
    gateway_url,
    message_parts,
    parse_custom_id,
    shorten,
    summary_embeds,
)
from bot.logs import redact
from bot.render import card_chart, card_chart_path, card_text
from bot.services import Services
from bot.settings import Settings
from bot.summary import Summary, due_chats, summary_sent
from bot.transport import RequestStop, StopRequest, TransportError, secret_token
from storage.signals import SignalStatus
from storage.users import Role

log = logging.getLogger(__name__)
PLATFORM = "discord"
REFUSAL_INTERVAL = 600.0  # seconds between two refusals to the same stranger
READY_TIMEOUT = 30.0  # seconds from login to the gateway's READY
STOP_TIMEOUT = 10.0
AUTHENTICATION_FAILED = 4004  # the gateway's close code for a refused token
REFUSED = "Discord refused the token: check TRADEOPS_DISCORD_TOKEN (Developer Portal > Bot > Reset Token)"


class CardButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"tradeops:[^\s]{1,91}"):
    """One card button. Any custom_id with our prefix lands here (also a forged one, which is then
    answered and ignored); the transport parses it and decides."""

    def __init__(self, data: str, label: str = "?", style: discord.ButtonStyle = discord.ButtonStyle.secondary) -> None:
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=data))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CardButton:
        return cls(match.string)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        transport = getattr(interaction.client, "transport", None)
        if isinstance(transport, DiscordTransport):
            await transport.on_press(interaction, self.custom_id)


class CardView(discord.ui.View):
    """A card's buttons: persistent (no timeout, a stable custom_id per button)."""

    BUTTONS = (
        ("Approve", "approve", discord.ButtonStyle.success),
        ("Reject", "reject", discord.ButtonStyle.danger),
        ("Details", "details", discord.ButtonStyle.secondary),
    )

    def __init__(self, signal_id: str) -> None:
        super().__init__(timeout=None)
        for label, action, style in self.BUTTONS:
            self.add_item(CardButton(custom_id(action, signal_id), label, style))


class TradeopsClient(discord.Client):
    def __init__(self, transport: DiscordTransport) -> None:
        # The bot never joins a voice channel: discord.py's "voice will NOT be supported" warnings
        # about PyNaCl and davey would only alarm the person reading the log.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(intents=discord.Intents(guilds=True), allowed_mentions=discord.AllowedMentions.none())
        self.transport = transport


class DiscordTransport:
    name = PLATFORM
    single_receiver = True  # one gateway connection per bot: held by the scheduler's leader only

    def __init__(self, settings: Settings, services: Services, token: SecretStr | str) -> None:
        self.token = secret_token(
            token, empty="TRADEOPS_DISCORD_TOKEN is empty: copy the bot token from the Developer Portal"
        )
        self.settings = settings
        self.s = services
        self.core = CommandCore(services)
        try:
            self.allowed = parse_allowed_users(settings.discord_allowed_users, "TRADEOPS_DISCORD_ALLOWED_USERS")
            self.api_url = api_base(settings.discord_api_url)
            self.gateway_url = gateway_url(settings.discord_gateway_url)
        except ValueError as exc:
            raise TransportError(str(exc)) from None
        self.client = TradeopsClient(self)
        self.tree: app_commands.CommandTree[TradeopsClient] = app_commands.CommandTree(self.client)
        add_commands(self.tree, self)
        self._refusals = StrangerRefusals(REFUSAL_INTERVAL)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._request_stop: RequestStop | None = None
        self.client.event(self.on_connect)

    # --- lifecycle ---

    def prepare(self) -> None:
        """What start does before connecting: URL overrides, the allowlist, the persistent view."""
        Route.BASE = self.api_url
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        seed_allowlist(self.s.users, PLATFORM, self.allowed, at=self.s.clock.now())
        self.client.add_view(CardView("0000"))  # registers CardButton for every tradeops:... custom_id

    async def on_connect(self) -> None:
        # The gateway's READY: interactions arrive from now on. discord.py's on_ready comes
        # guild_ready_timeout (2 s) after the last GUILD_CREATE, for a guild cache we do not use.
        self._ready.set()

    async def start(self, request_stop: RequestStop | None = None) -> None:
        """``request_stop`` is called when the gateway loop ends for good (discord.py reconnects by
        itself from everything else): a run that cannot hear Discord any more stops, as it does
        when Telegram answers 409."""
        self._request_stop = request_stop
        self.prepare()
        try:
            await self._connect()
            await self._sync()
        except BaseException:
            await self.stop()  # nothing left open: the HTTP session, the gateway
            raise
        assert self._task is not None  # _connect returned: the gateway loop runs
        self._task.add_done_callback(self._gateway_ended)
        user = self.client.user
        log.info("discord: connected as %s, %d allowed users", user.name if user else "?", len(self.allowed))

    async def _connect(self) -> None:
        """Login (GET /users/@me: the token check), then the gateway until its READY."""
        try:
            await asyncio.wait_for(self.client.login(self.token), READY_TIMEOUT)
        except discord.LoginFailure:
            raise TransportError(REFUSED) from None
        except discord.HTTPException as exc:
            raise TransportError(f"Discord did not start: {redact(str(exc)) or type(exc).__name__}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransportError(
                f"Discord did not start: no answer from {self.api_url} ({redact(str(exc)) or type(exc).__name__}): "
                "check the network, a proxy, or TRADEOPS_DISCORD_API_URL"
            ) from None
        self._task = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({self._task, ready}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if self._ready.is_set():
            return
        ready.cancel()
        failure = self._task.exception() if self._task.done() else None
        if isinstance(failure, discord.ConnectionClosed) and failure.code == AUTHENTICATION_FAILED:
            raise TransportError(REFUSED)
        why = (redact(str(failure)) or type(failure).__name__) if failure else "no READY from the gateway in time"
        raise TransportError(f"Discord did not start: {why}")

    def _gateway_ended(self, task: asyncio.Task[None]) -> None:
        """The gateway loop ends by itself only on what discord.py cannot reconnect from (a token
        reset, an unexpected payload): say so, since no interaction arrives any more."""
        if task.cancelled() or self._stopping:
            return
        failure = task.exception()
        why = (redact(str(failure)) or type(failure).__name__) if failure else "closed"
        log.error("discord: the gateway connection ended (%s); this process takes no more Discord interactions", why)
        if self._request_stop is not None:
            self._request_stop(StopRequest(self.name, f"the Discord gateway connection ended ({why})"))

    def not_ready(self) -> str | None:
        """For `/readyz`: None while the gateway connection is up (discord.py reconnects by itself)."""
        if self._task is None or self._task.done() or self.client.is_closed():
            return "the gateway connection ended"
        return None

    async def _sync(self) -> None:
        guild_id = self.settings.discord_guild_id
        try:
            if guild_id:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
            else:
                synced = await self.tree.sync()
        except discord.HTTPException as exc:
            where = f"server {guild_id}" if guild_id else "Discord (global)"
            raise TransportError(
                f"slash commands not registered with {where}: {redact(str(exc))}; invite the bot with the "
                "applications.commands scope (see README, Discord)"
            ) from None
        log.info(
            "discord: %d slash commands synced %s", len(synced), f"to server {guild_id}" if guild_id else "globally"
        )

    async def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), STOP_TIMEOUT)
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, STOP_TIMEOUT)
            self._task = None

    # --- pushes ---

    def channel(self, channel_id: int) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(channel_id)

    async def push_card(self, card: dict[str, Any]) -> None:
        signal_id = str(card["signal_id"])
        chart = await card_chart(
            self.s.venues[card["venue"]], card, self.s.charts_dir, self.s.venue_calendar(card["venue"])
        )
        row = self.s.signals.get(signal_id)  # the card dict does not name its watchlist; its row does
        watchlist = card.get("watchlist") or (row.watchlist if row is not None else None)
        for channel_id in self.s.chats.chats_for(PLATFORM, watchlist):
            try:
                files = [discord.File(chart, filename=chart.name)] if chart is not None else []
                embed = card_embed(card, chart=chart.name if chart is not None else None)
                sent = await self.channel(channel_id).send(embed=embed, files=files, view=CardView(signal_id))
            except (discord.HTTPException, discord.ClientException, OSError) as exc:
                log.warning("discord: card %s not sent to channel %s: %s", signal_id, channel_id, redact(str(exc)))
                continue
            self.s.chats.remember_card(PLATFORM, signal_id, channel_id, sent.id, kind="embed", at=self.s.clock.now())

    async def push_decision(self, signal_id: str, status: str, text: str) -> None:
        row = self.s.signals.get(signal_id)
        card = row.card if row is not None and row.card else {"signal_id": signal_id}
        chart = card_chart_path(self.s.charts_dir, signal_id)  # attached when the card was sent: it stays
        embed = card_embed(card, outcome=text, chart=chart.name if chart.exists() else None)
        for ref in self.s.chats.cards(PLATFORM, signal_id):
            message = self.channel(ref.chat_id).get_partial_message(ref.message_id)
            try:  # a new view-less edit removes the buttons
                if ref.kind == "embed":
                    await message.edit(embed=embed, view=None)
                else:
                    body = shorten(
                        f"{text}\n\n{card_text(card) if row is not None and row.card else ''}", MESSAGE_LIMIT
                    )
                    await message.edit(content=message_parts(body)[0], view=None)
            except (discord.HTTPException, discord.ClientException) as exc:
                log.warning("discord: card in channel %s not edited: %s", ref.chat_id, redact(str(exc)))

    async def push_event(self, text: str, *, kind: str) -> None:
        for channel_id in self.s.chats.chats_wanting(PLATFORM, kind):
            try:
                for part in message_parts(f"[{kind}] {text}"):
                    await self.channel(channel_id).send(part)
            except (discord.HTTPException, discord.ClientException) as exc:
                log.warning("discord: %s notice not sent to channel %s: %s", kind, channel_id, redact(str(exc)))

    async def push_summary(self, summary: Summary) -> None:
        for channel_id in due_chats(self.s, PLATFORM, summary.at):
            try:  # an embed per chart (the first holds the text), the charts attached
                files = [discord.File(p, filename=Path(p).name) for p in summary.images[:10]]
                await self.channel(channel_id).send(embeds=summary_embeds(summary), files=files)
            except (discord.HTTPException, discord.ClientException, OSError) as exc:
                log.warning("discord: summary not sent to channel %s: %s", channel_id, redact(str(exc)))
                continue
            summary_sent(self.s, PLATFORM, channel_id, summary)

    # --- receiving ---

    async def run_command(self, interaction: discord.Interaction[Any], text: str, *, slow: bool = False) -> None:
        """A slash command as the core's text command, run as its user; ``slow`` ones are deferred
        first (Discord wants an answer within 3 s), then answered with follow-ups."""
        user = interaction.user
        name = text.split(" ", 1)[0][1:]
        role = self.s.users.role(PLATFORM, user.id)
        if role is None:
            await self._refuse_stranger(interaction, text)
            return
        command = self.core.commands.get(name)
        if command is not None and not role.allows(command.role):
            why = f"/{name} needs the {command.role.value} role; they are a {role.value}"
            self._audit(f"{PLATFORM}:{user.id}", "refused", name, {"why": why})
        if slow:
            await interaction.response.defer(thinking=True)
        caller = Caller(PLATFORM, user.id, user.display_name[:64], chat_id=interaction.channel_id)
        reply = await self.core.handle(caller, text)
        await self.send_reply(interaction, reply)

    async def _refuse_stranger(self, interaction: discord.Interaction[Any], text: str) -> None:
        user_id = interaction.user.id
        since = self._refusals.due(user_id)
        if since is None:
            return
        self._audit(f"{PLATFORM}:{user_id}", "refused", text.split(" ")[0][:64], {"unanswered_before": since})
        await interaction.response.send_message(
            f"Sorry, this bot is private. Ask its admin to add your numeric Discord id ({user_id}).", ephemeral=True
        )

    async def on_press(self, interaction: discord.Interaction[Any], data: str) -> None:
        user = interaction.user
        actor = f"{PLATFORM}:{user.id}"
        press = parse_custom_id(data)
        if press is None:
            self._audit(actor, "button_refused", "", {"data": data[:100], "why": "unknown button"})
            await interaction.response.send_message("unknown button", ephemeral=True)
            return
        role = self.s.users.role(PLATFORM, user.id)
        needed = Role.VIEWER if press.action == "details" else Role.TRADER
        if role is None or not role.allows(needed):
            why = "not allowed" if role is None else f"{press.action} needs the trader role; you are a {role.value}"
            self._audit(actor, "button_refused", press.signal_id, {"action": press.action, "why": why})
            await interaction.response.send_message(f"refused: {why}.", ephemeral=True)
            return
        if press.action == "details":
            row = self.s.signals.get(press.signal_id)
            text = f"{press.signal_id}: {row.status}\n{card_text(row.card) if row.card else ''}" if row else ""
            await interaction.response.send_message(
                message_parts(text.rstrip() or f"no signal {press.signal_id}")[0], ephemeral=True
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)  # an approval places an order
        caller = Caller(PLATFORM, user.id, user.display_name[:64], chat_id=interaction.channel_id)
        reply = await self.core.handle(caller, f"/{press.action} {press.signal_id}")
        await interaction.followup.send(message_parts(reply.text)[0], ephemeral=True)
        row = self.s.signals.get(press.signal_id)
        if row is None or not reply.ok:  # a forged id, or too late: nothing changes
            self._audit(actor, "button_refused", press.signal_id, {"action": press.action, "why": reply.text[:200]})
        # Decided now or before: show it everywhere. A decision made here under `tradeops run` reaches
        # every transport through the runner's decision hook already: editing again doubles the edits.
        told = reply.ok and self.s.runner.on_decision is not None
        if row is not None and row.status != SignalStatus.PENDING.value and not told:
            await self.push_decision(row.id, row.status, self.core.outcome(row.id))

    # --- sending ---

    async def send_reply(self, interaction: discord.Interaction[Any], reply: Reply) -> None:
        """The reply's text in parts, its images as attachments, a card view per signal it offers."""
        parts = message_parts(reply.text) if reply.text else []
        files = [discord.File(Path(image), filename=Path(image).name) for image in reply.images]
        for i, part in enumerate(parts or [""]):
            attach = files if i == len(parts or [""]) - 1 else []
            if not part and not attach:
                continue
            if not interaction.response.is_done():
                await interaction.response.send_message(part, files=attach)
            else:
                await interaction.followup.send(part, files=attach)
        for signal_id in dict.fromkeys(b.signal_id for b in reply.buttons):
            if not interaction.response.is_done():
                await interaction.response.defer()
            sent = await interaction.followup.send(f"signal {signal_id}", view=CardView(signal_id), wait=True)
            if interaction.channel_id is not None:
                self.s.chats.remember_card(
                    PLATFORM, signal_id, interaction.channel_id, sent.id, kind="text", at=self.s.clock.now()
                )

    def _audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        self.s.signals.audit(actor, action, at=self.s.clock.now(), target=target, detail=detail)
