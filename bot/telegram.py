"""The Telegram transport (python-telegram-bot 22): long polling, or a webhook (bot/telegram_webhook.py);
commands go to the one CommandCore as the sender (in groups the user is checked, not the chat); cards
are a chart photo with the card as caption and Approve / Reject / Details buttons; a decision edits the
card in every chat. Strangers and their access requests: bot/telegram_access.py.

It only receives, renders and sends. Button data is client-supplied: it names an action and an id,
the action is looked up here and run through the core as the presser, at press time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pydantic import SecretStr
from telegram import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.error import Conflict, InvalidToken, NetworkError, TelegramError
from telegram.ext import AIORateLimiter, Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from bot.allowlist import seed_allowlist
from bot.core import Caller, CommandCore, Reply
from bot.logs import redact
from bot.render import card_chart, card_text
from bot.services import Services
from bot.settings import Settings
from bot.summary import Summary, due_chats, summary_sent
from bot.telegram_access import AccessRequests
from bot.telegram_render import (
    CALLBACK_ANSWER_LIMIT,
    api_urls,
    parse_access,
    parse_allowed_users,
    parse_callback,
    shorten,
)
from bot.telegram_send import TelegramOutbox
from bot.telegram_webhook import start_webhook, watch_webhook, webhook_config
from bot.transport import RequestStop, StopRequest, TransportError, secret_token
from storage.chats import CardRef
from storage.signals import SignalStatus
from storage.users import Role

log = logging.getLogger(__name__)
PLATFORM = "telegram"
UPDATES = ["message", "callback_query"]
CONFLICT = (
    "another process is polling this bot's token (Telegram answered 409 Conflict); stop it, or use another bot token"
)


class TelegramTransport:
    name = PLATFORM

    def __init__(self, settings: Settings, services: Services, token: SecretStr | str) -> None:
        self.token = secret_token(
            token, empty="TRADEOPS_TELEGRAM_TOKEN is empty: create a bot with @BotFather and set its token"
        )
        self.settings = settings
        self.s = services
        self.core = CommandCore(services)
        try:
            self.allowed = parse_allowed_users(settings.telegram_allowed_users)
            base_url, file_url = api_urls(settings.telegram_api_url)
            self.webhook = webhook_config(settings, self.token)  # None: long polling
            if self.webhook is not None and settings.executor == "celery" and settings.telegram_webhook_secret is None:
                # Each run would register a random secret of its own, and the last one would lock the others out.
                raise ValueError(
                    "with TRADEOPS_EXECUTOR=celery every tradeops run serves the webhook: set "
                    "TRADEOPS_TELEGRAM_WEBHOOK_SECRET to one secret shared by all of them"
                )
        except ValueError as exc:
            raise TransportError(str(exc)) from None
        self.app: Application[Any, Any, Any, Any, Any, Any] = (
            Application.builder()
            .token(self.token)
            .base_url(base_url)
            .base_file_url(file_url)
            .rate_limiter(AIORateLimiter(max_retries=3))  # 30/s overall, 20/min per group, RetryAfter honoured
            .build()
        )
        self.app.add_handler(MessageHandler(filters.TEXT, self._on_message))
        self.app.add_handler(CallbackQueryHandler(self._on_press))
        self.app.add_error_handler(self._on_error)
        self.access = AccessRequests(self)
        self.out = TelegramOutbox(self.app.bot, services)
        self._stopping: asyncio.Task[None] | None = None  # polling stopped after a 409 Conflict
        self._watch: asyncio.Task[None] | None = None  # webhook mode: is the webhook still ours?
        self._request_stop: RequestStop | None = None  # the run's, when a run started this transport
        self._lost: str | None = None  # why updates stopped arriving (a 409 Conflict), for /readyz

    @property
    def single_receiver(self) -> bool:
        """Long polling: one process at a time (a second poller gets 409 Conflict); a webhook: any."""
        return self.webhook is None

    # --- lifecycle ---

    async def start(self, request_stop: RequestStop | None = None) -> None:
        seed_allowlist(self.s.users, PLATFORM, self.allowed, at=self.s.clock.now())
        self._request_stop = request_stop
        try:
            await self.app.initialize()
            if self.webhook is None:
                await self._check_no_other_poller()
            await self._register_commands()
            await self.app.start()
            assert self.app.updater is not None
            if self.webhook is not None:
                await start_webhook(self.app, self.webhook, UPDATES)
                self._watch = asyncio.create_task(watch_webhook(self.app.bot, self.webhook, self._webhook_lost))
            else:
                await self.app.updater.start_polling(allowed_updates=UPDATES, error_callback=self._on_polling_error)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self.stop()
            if isinstance(exc, InvalidToken):
                raise TransportError(
                    "Telegram refused the token: check TRADEOPS_TELEGRAM_TOKEN (from @BotFather)"
                ) from None
            if isinstance(exc, Conflict):
                raise TransportError(CONFLICT) from None
            if isinstance(exc, NetworkError):
                raise TransportError(
                    f"Telegram did not start: no answer from {self.app.bot.base_url.removesuffix(self.token)} "
                    f"({redact(str(exc))}): check the network, a proxy, or TRADEOPS_TELEGRAM_API_URL"
                ) from None
            if isinstance(exc, TelegramError):
                raise TransportError(f"Telegram did not start: {redact(str(exc))}") from None
            raise
        mode = "polling" if self.webhook is None else "on the webhook"
        log.info("telegram: %s as @%s, %d allowed users", mode, self.app.bot.username, len(self.allowed))

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._stopping is not None:
            await self._stopping
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    def not_ready(self) -> str | None:
        """For `/readyz`: None while updates arrive (polling runs, or the webhook is still ours)."""
        if self._lost is not None:
            return self._lost
        if not self.app.running:
            return "not running"
        if self.webhook is None and (self.app.updater is None or not self.app.updater.running):
            return "polling stopped"
        return None

    async def _check_no_other_poller(self) -> None:
        """One getUpdates that waits for nothing and confirms nothing (no offset): Telegram answers
        409 Conflict when another process is polling the token. A webhook set for the token is also
        a 409; polling's start deletes it, as python-telegram-bot always does."""
        try:
            await self.app.bot.get_updates(timeout=0, limit=1, allowed_updates=UPDATES)
        except Conflict as exc:
            if "webhook" not in str(exc).lower():
                raise
            log.warning("telegram: a webhook was set for this bot; polling replaces it")

    def _on_polling_error(self, exc: TelegramError) -> None:
        """Called by the updater's retry loop (synchronously) for each failed getUpdates. A 409
        Conflict means another process polls the token now (or set a webhook): stop polling at once
        instead of fighting it, and ask the run, if one started this transport, to stop."""
        if not isinstance(exc, Conflict):
            log.warning("telegram: polling failed, retrying: %s", redact(str(exc)))
            return
        if self._stopping is None:
            log.error("telegram: %s. Polling stopped: this process takes no more Telegram updates.", CONFLICT)
            self._lost = CONFLICT
            self._stopping = asyncio.get_running_loop().create_task(self._stop_polling())
            if self._request_stop is not None:
                self._request_stop(StopRequest(PLATFORM, CONFLICT))

    def _webhook_lost(self, reason: str) -> None:
        """Webhook mode's 409: Telegram posts elsewhere now; the run, if one started this, is asked to stop."""
        log.error("telegram: %s", reason)
        self._lost = reason
        if self._request_stop is not None:
            self._request_stop(StopRequest(PLATFORM, reason))

    async def _stop_polling(self) -> None:
        updater = self.app.updater
        if updater is not None and updater.running:
            # Its stop would call getUpdates once more to confirm what was fetched: after a 409 that
            # call can only fail (an error with a traceback) or, by ending the other process's long
            # poll, make it stop too. Skipped: updates fetched here may reach the other process again.
            updater._Updater__polling_cleanup_cb = None  # type: ignore[attr-defined]
            await updater.stop()

    async def _register_commands(self) -> None:
        def listing(role: Role) -> list[BotCommand]:
            return [
                BotCommand(c.name, shorten(c.summary, 256)) for c in self.core.commands.values() if role.allows(c.role)
            ]

        await self.app.bot.set_my_commands(listing(Role.VIEWER), scope=BotCommandScopeDefault())
        for user_id, role in self.allowed.items():  # a private chat's id is its user's id
            try:
                await self.app.bot.set_my_commands(listing(role), scope=BotCommandScopeChat(user_id))
            except TelegramError as exc:  # the user has not opened a chat with the bot yet
                log.info("telegram: commands for %s not set: %s", user_id, exc)

    # --- pushes ---

    async def push_card(self, card: dict[str, Any]) -> None:
        signal_id = str(card["signal_id"])
        chart = await card_chart(
            self.s.venues[card["venue"]], card, self.s.charts_dir, self.s.venue_calendar(card["venue"])
        )
        row = self.s.signals.get(signal_id)  # the card dict does not name its watchlist; its row does
        watchlist = card.get("watchlist") or (row.watchlist if row is not None else None)
        for chat_id in self.s.chats.chats_for(PLATFORM, watchlist):
            try:
                await self.out.card(chat_id, signal_id, card_text(card), chart)
            except TelegramError as exc:
                log.warning("telegram: card %s not sent to chat %s: %s", signal_id, chat_id, exc)

    async def push_decision(self, signal_id: str, status: str, text: str) -> None:
        row = self.s.signals.get(signal_id)
        card = card_text(row.card) if row is not None and row.card else ""
        for ref in self.s.chats.cards(PLATFORM, signal_id):
            await self._edit_card(ref, text, card)

    async def push_event(self, text: str, *, kind: str) -> None:
        for chat_id in self.s.chats.chats_wanting(PLATFORM, kind):
            try:
                await self.send_text(chat_id, f"[{kind}] {text}")
            except TelegramError as exc:
                log.warning("telegram: %s notice not sent to chat %s: %s", kind, chat_id, exc)

    async def push_summary(self, summary: Summary) -> None:
        for chat_id in due_chats(self.s, PLATFORM, summary.at):
            try:
                await self.out.summary(chat_id, summary)
            except TelegramError as exc:
                log.warning("telegram: summary not sent to chat %s: %s", chat_id, exc)
                continue
            summary_sent(self.s, PLATFORM, chat_id, summary)

    # --- receiving ---

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or message.text is None or user.is_bot:
            return
        text = message.text.strip()
        private = message.chat.type == "private"
        if not text.startswith("/"):
            if not private:
                return  # group chatter is not for the bot
        else:
            command, _, rest = text.partition(" ")
            name, _, addressee = command.partition("@")
            if addressee and addressee.lower() != (self.app.bot.username or "").lower():
                return  # another bot's command in a group
            text = ("/help" if name.lower() == "/start" else name) + (f" {rest}" if rest else "")
        role = self.s.users.role(PLATFORM, user.id)
        if role is None:
            await self.access.refuse_stranger(user, message.chat_id, text)
            return
        caller = Caller(PLATFORM, user.id, user.full_name[:64], chat_id=message.chat_id)
        reply = await self.core.handle(caller, text)
        await self.send_reply(message.chat_id, reply)

    async def _on_press(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        actor = f"{PLATFORM}:{user.id}"
        press = parse_callback(query.data)
        access = parse_access(query.data) if press is None else None
        if access is not None:
            await self.access.on_press(query, user, access)
            return
        if press is None:
            self._audit(actor, "button_refused", "", {"data": (query.data or "")[:64], "why": "unknown button"})
            await self._answer(query.answer, "unknown button")
            return
        role = self.s.users.role(PLATFORM, user.id)
        needed = Role.VIEWER if press.action == "details" else Role.TRADER
        if role is None or not role.allows(needed):
            why = "not allowed" if role is None else f"{press.action} needs the trader role; you are a {role.value}"
            self._audit(actor, "button_refused", press.signal_id, {"action": press.action, "why": why})
            await self._answer(query.answer, f"refused: {why}.")
            return
        chat_id = query.message.chat.id if query.message is not None else None
        if press.action == "details":
            await self._answer(query.answer, "details below" if chat_id is not None else "open the chat for details")
            if chat_id is not None:
                await self.send_reply(chat_id, self._details(press.signal_id))
            return
        caller = Caller(PLATFORM, user.id, user.full_name[:64], chat_id=chat_id)
        reply = await self.core.handle(caller, f"/{press.action} {press.signal_id}")
        await self._answer(query.answer, reply.text)
        row = self.s.signals.get(press.signal_id)
        if row is None:  # a forged id: nothing to edit
            self._audit(actor, "button_refused", press.signal_id, {"action": press.action, "why": reply.text[:200]})
            return
        if not reply.ok:
            self._audit(actor, "button_refused", press.signal_id, {"action": press.action, "why": reply.text[:200]})
        # Decided now or before (anywhere): show it everywhere. A decision made here under `tradeops run`
        # reaches every transport through the runner's decision hook already: editing again doubles it.
        told = reply.ok and self.s.runner.on_decision is not None
        if row.status != SignalStatus.PENDING.value and not told:
            await self.push_decision(row.id, row.status, self.core.outcome(row.id))

    def _details(self, signal_id: str) -> Reply:
        row = self.s.signals.get(signal_id)
        if row is None:
            return Reply(f"no signal {signal_id}", ok=False)
        return Reply(f"{signal_id}: {row.status}\n{card_text(row.card) if row.card else ''}".rstrip())

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram: handling an update failed: %s", redact(repr(context.error)), exc_info=context.error)

    # --- sending ---

    async def send_text(self, chat_id: int, text: str, *, keyboard: InlineKeyboardMarkup | None = None) -> Message:
        return await self.out.text(chat_id, text, keyboard=keyboard)

    async def send_reply(self, chat_id: int, reply: Reply) -> None:
        await self.out.reply(chat_id, reply)

    async def _edit_card(self, ref: CardRef, outcome: str, card: str) -> None:
        await self.out.edit_card(ref, outcome, card)

    async def _answer(self, answer: Any, text: str) -> None:
        try:
            await answer(shorten(text, CALLBACK_ANSWER_LIMIT))
        except TelegramError as exc:  # a press older than Telegram keeps queries for
            log.info("telegram: button press not answered: %s", exc)

    def _audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        self.s.signals.audit(actor, action, at=self.s.clock.now(), target=target, detail=detail)
