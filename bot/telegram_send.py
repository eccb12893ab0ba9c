"""What the Telegram transport sends: text split at Telegram's limit, signal cards (the chart with
the card as caption), card edits after a decision, the daily summary. Every message goes as HTML
and, when Telegram cannot parse it ("can't parse entities"), again as plain text: nothing is lost
to formatting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMediaPhoto, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError

from bot.core import Reply
from bot.services import Services
from bot.summary import Summary
from bot.telegram_render import CAPTION_LIMIT, MESSAGE_LIMIT, callback_data, html_parts, shorten, units
from storage.chats import CardRef

log = logging.getLogger("bot.telegram")
PLATFORM = "telegram"
T = TypeVar("T")


def card_keyboard(signal_id: str) -> InlineKeyboardMarkup:
    labels: Sequence[tuple[str, str]] = (("Approve", "approve"), ("Reject", "reject"), ("Details", "details"))
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=callback_data(action, signal_id)) for label, action in labels]]
    )


async def html_or_plain(send: Callable[[str, ParseMode | None], Awaitable[T]], markup: str, plain: str) -> T:
    """``send(markup, HTML)``; on "can't parse entities", ``send(plain, None)`` instead."""
    try:
        return await send(markup, ParseMode.HTML)
    except BadRequest as exc:
        if "can't parse entities" not in str(exc).lower():
            raise
        log.warning("telegram: HTML refused (%s); sending plain text", exc)
        return await send(plain, None)


class TelegramOutbox:
    def __init__(self, bot: Bot, services: Services) -> None:
        self.bot = bot
        self.s = services

    async def text(self, chat_id: int, text: str, *, keyboard: InlineKeyboardMarkup | None = None) -> Message:
        """Every part of ``text`` (split at line ends); the keyboard goes with the last part."""
        parts = html_parts(text, MESSAGE_LIMIT)
        sent: Message | None = None
        for i, (markup, plain) in enumerate(parts):
            buttons = keyboard if i == len(parts) - 1 else None

            async def send(
                body: str, mode: ParseMode | None, buttons: InlineKeyboardMarkup | None = buttons
            ) -> Message:
                return await self.bot.send_message(chat_id, body, parse_mode=mode, reply_markup=buttons)

            sent = await html_or_plain(send, markup, plain)
        assert sent is not None
        return sent

    async def reply(self, chat_id: int, reply: Reply) -> None:
        if reply.text:
            await self.text(chat_id, reply.text)
        for image in reply.images:
            await self.bot.send_photo(chat_id, photo=Path(image))
        for signal_id in dict.fromkeys(b.signal_id for b in reply.buttons):
            sent = await self.text(chat_id, f"signal {signal_id}", keyboard=card_keyboard(signal_id))
            self.s.chats.remember_card(
                PLATFORM, signal_id, chat_id, sent.message_id, kind="text", at=self.s.clock.now()
            )

    async def card(self, chat_id: int, signal_id: str, text: str, chart: Path | None) -> None:
        """The chart with the card as caption (photo then text when longer than a caption may be),
        remembered so that a decision can edit it, in any process, after a restart."""
        keyboard = card_keyboard(signal_id)
        if chart is not None and units(text) <= CAPTION_LIMIT:
            markup, plain = html_parts(text, CAPTION_LIMIT)[0]

            async def send(body: str, mode: ParseMode | None) -> Message:
                return await self.bot.send_photo(
                    chat_id, photo=chart, caption=body, parse_mode=mode, reply_markup=keyboard
                )

            sent, kind = await html_or_plain(send, markup, plain), "caption"
        else:
            if chart is not None:
                await self.bot.send_photo(chat_id, photo=chart)
            sent, kind = await self.text(chat_id, text, keyboard=keyboard), "text"
        self.s.chats.remember_card(PLATFORM, signal_id, chat_id, sent.message_id, kind=kind, at=self.s.clock.now())

    async def edit_card(self, ref: CardRef, outcome: str, card: str) -> None:
        """Show the outcome on a card; an edit without a keyboard removes the buttons. A card that
        cannot be edited (deleted, too old) is logged and left."""
        limit = CAPTION_LIMIT if ref.kind == "caption" else MESSAGE_LIMIT
        markup, plain = html_parts(shorten(f"{outcome}\n\n{card}".rstrip(), limit), limit)[0]

        async def edit(body: str, mode: ParseMode | None) -> None:
            if ref.kind == "caption":
                await self.bot.edit_message_caption(ref.chat_id, ref.message_id, caption=body, parse_mode=mode)
            else:
                await self.bot.edit_message_text(body, ref.chat_id, ref.message_id, parse_mode=mode)

        try:
            await html_or_plain(edit, markup, plain)
        except BadRequest as exc:
            if "message is not modified" not in str(exc).lower():
                log.warning("telegram: card in chat %s not edited: %s", ref.chat_id, exc)
        except TelegramError as exc:
            log.warning("telegram: card in chat %s not edited: %s", ref.chat_id, exc)

    async def summary(self, chat_id: int, summary: Summary) -> None:
        """The equity charts (a photo, or an album) with the summary as caption; or the charts, then
        the text when it is longer than a caption may be."""
        photos = [Path(p) for p in summary.images]
        captioned = bool(photos) and units(summary.text) <= CAPTION_LIMIT
        markup, plain = html_parts(summary.text, CAPTION_LIMIT)[0] if captioned else ("", "")

        async def send(caption: str, mode: ParseMode | None) -> None:
            body = caption or None
            if len(photos) == 1:
                await self.bot.send_photo(chat_id, photo=photos[0], caption=body, parse_mode=mode)
            else:  # an album, its caption under the first photo; uploaded (a path would be read as a URL)
                files = [InputFile(await asyncio.to_thread(p.read_bytes), p.name, attach=True) for p in photos[:10]]
                await self.bot.send_media_group(
                    chat_id, [InputMediaPhoto(f) for f in files], caption=body, parse_mode=mode
                )

        if photos:
            await html_or_plain(send, markup, plain)
        if not captioned:
            await self.text(chat_id, summary.text)
