"""Strangers on Telegram: one polite refusal per interval, and an access request to every admin
with Grant viewer / Deny buttons. A part of the Telegram transport (bot/telegram.py), kept apart so
that module stays small; it sends and edits through the transport.

A press on Grant viewer / Deny is client-supplied data like any other: the presser must be an admin
at press time, and a grant goes through the same code as `/users add` (audited).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, User
from telegram.error import TelegramError

from bot.allowlist import StrangerRefusals
from bot.core import Caller
from bot.telegram_render import AccessPress, access_data
from storage.chats import CardRef
from storage.users import Role

if TYPE_CHECKING:
    from bot.telegram import TelegramTransport

log = logging.getLogger("bot.telegram")
PLATFORM = "telegram"
REFUSAL_INTERVAL = 600.0  # seconds between two refusals to the same stranger
MAX_OPEN_REQUESTS = 1000  # unanswered access requests remembered (to edit every admin's copy on an answer)


class AccessRequests:
    def __init__(self, transport: TelegramTransport) -> None:
        self.t = transport
        self.refusals = StrangerRefusals(REFUSAL_INTERVAL)
        # Access requests of this process: stranger -> (name, the admins' request messages); and
        # the strangers an admin denied, who are not asked about again until a restart.
        self._requests: dict[int, tuple[str, list[tuple[int, int]]]] = {}
        self._denied: set[int] = set()

    async def refuse_stranger(self, user: User, chat_id: int, text: str) -> None:
        since = self.refusals.due(user.id)
        if since is None:
            return
        self.t._audit(f"{PLATFORM}:{user.id}", "refused", text.split(" ")[0][:64], {"unanswered_before": since})
        await self.t.send_text(
            chat_id,
            f"Sorry, this bot is private. Ask its admin to add your numeric Telegram id ({user.id}).",
        )
        if user.id not in self._denied:
            await self._request_access(user.id, self._name(user))

    async def _request_access(self, user_id: int, name: str) -> None:
        """Each Telegram admin (their private chat's id is their user id) gets the request with
        Grant viewer / Deny buttons; an admin who never opened a chat with the bot is skipped."""
        keyboard = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton("Grant viewer", callback_data=access_data(True, user_id)),
                    InlineKeyboardButton("Deny", callback_data=access_data(False, user_id)),
                ]
            ]
        )
        sent: list[tuple[int, int]] = []
        for admin in self._admins():
            try:
                message = await self.t.send_text(admin, f"access request from {name} (id {user_id})", keyboard=keyboard)
                sent.append((admin, message.message_id))
            except TelegramError as exc:
                log.info("telegram: access request not sent to admin %s: %s", admin, exc)
        if sent:
            self._requests[user_id] = (name, sent + self._requests.pop(user_id, ("", []))[1])
            while len(self._requests) > MAX_OPEN_REQUESTS:  # the oldest unanswered ones keep their buttons
                del self._requests[next(iter(self._requests))]

    def _admins(self) -> list[int]:
        users = self.t.s.users.all()
        return [u.platform_user_id for u in users if u.platform == PLATFORM and u.role == Role.ADMIN]

    @staticmethod
    def _name(user: User) -> str:
        name = " ".join(user.full_name.split())[:64] or "?"
        return f"{name} (@{user.username})" if user.username else name

    async def on_press(self, query: CallbackQuery, user: User, press: AccessPress) -> None:
        actor = f"{PLATFORM}:{user.id}"
        target = f"{PLATFORM}:{press.user_id}"
        role = self.t.s.users.role(PLATFORM, user.id)
        if role is not Role.ADMIN:
            why = "only an admin may answer an access request"
            self.t._audit(actor, "button_refused", target, {"action": "grant" if press.grant else "deny", "why": why})
            await self.t._answer(query.answer, f"refused: {why}.")
            return
        name, messages = self._requests.get(press.user_id, ("", []))
        if query.message is not None and (query.message.chat.id, query.message.message_id) not in messages:
            messages = [*messages, (query.message.chat.id, query.message.message_id)]  # sent before a restart
        caller = Caller(
            PLATFORM, user.id, user.full_name[:64], chat_id=query.message.chat.id if query.message else None
        )
        if press.grant:
            reply = self.t.core.grant_user(caller, PLATFORM, press.user_id, Role.VIEWER, name=name)
            await self.t._answer(query.answer, reply.text)
            if not reply.ok:
                return
            outcome = f"GRANTED viewer by {actor}"
            try:
                await self.t.send_text(
                    press.user_id, "You may use this bot now, as a viewer: /help lists the commands."
                )
            except TelegramError as exc:
                log.info("telegram: %s not told of the grant: %s", target, exc)
        else:
            current = self.t.s.users.role(PLATFORM, press.user_id)
            if current is not None:
                await self.t._answer(
                    query.answer, f"{target} is a {current.value} now; /users rm {target} removes them"
                )
                return
            self._denied.add(press.user_id)
            self.t._audit(actor, "access_denied", target, {"name": name})
            await self.t._answer(query.answer, f"{target} denied: no more requests from them until a restart")
            outcome = f"DENIED by {actor}"
        self._requests.pop(press.user_id, None)
        text = f"access request from {name or target} (id {press.user_id}): {outcome}"
        for chat_id, message_id in messages:  # every admin's copy shows the answer, without buttons
            await self.t._edit_card(CardRef(chat_id=chat_id, message_id=message_id, kind="text"), text, "")
