"""Pure functions of the Discord transport: the API/gateway URLs, button custom ids, card embeds,
and the core's plain text as Discord markdown (escaped, tables in code blocks) in 2,000-character
messages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord

from bot.render import card_text
from bot.telegram_render import table_lines
from bot.transport import Press

if TYPE_CHECKING:
    from bot.summary import Summary  # the summary's type only: its module wires the whole application

MESSAGE_LIMIT = 2000  # characters of a message's content
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
CUSTOM_ID_LIMIT = 100
DEFAULT_API_URL = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/"
CUSTOM_ID_PREFIX = "tradeops:"
CUSTOM_ID = re.compile(r"^tradeops:(approve|reject|details):([a-z0-9]{4,40})$")
FENCE = "```"
COLOURS = {"BUY": 0x2ECC71, "LONG": 0x2ECC71, "SELL": 0xE74C3C, "SHORT": 0xE74C3C}
DECIDED_COLOUR = 0x95A5A6
SUMMARY_COLOUR = 0x3498DB
MAX_EMBEDS = 10  # per message


def api_base(url: str | None) -> str:
    """The REST base URL as discord.py's ``Route.BASE`` takes it (no trailing slash)."""
    base = (url or "").strip().rstrip("/") or DEFAULT_API_URL
    if not base.startswith(("http://", "https://")):
        raise ValueError(
            f"TRADEOPS_DISCORD_API_URL must be an http(s) URL like {DEFAULT_API_URL} or http://127.0.0.1:8080/api/v10"
        )
    return base


def gateway_url(url: str | None) -> str:
    gateway = (url or "").strip() or DEFAULT_GATEWAY_URL
    if not gateway.startswith(("ws://", "wss://")):
        raise ValueError(
            f"TRADEOPS_DISCORD_GATEWAY_URL must be a ws(s) URL like {DEFAULT_GATEWAY_URL} or ws://127.0.0.1:8080/"
        )
    return gateway


def custom_id(action: str, signal_id: str) -> str:
    return f"{CUSTOM_ID_PREFIX}{action}:{signal_id}"


def parse_custom_id(data: str | None) -> Press | None:
    """A button's custom_id, which the client sends and anyone can forge: only
    ``tradeops:approve|reject|details:<id>`` is known; the id is checked, never trusted."""
    if not data or len(data) > CUSTOM_ID_LIMIT:
        return None
    match = CUSTOM_ID.fullmatch(data)
    return Press(match.group(1), match.group(2)) if match else None


def shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a line end where possible, marked when cut."""
    if len(text) <= limit:
        return text
    head = text[: limit - 2]
    if "\n" in head:
        head = head[: head.rindex("\n")]
    return head + "\n…"


def card_embed(card: dict[str, Any], *, outcome: str | None = None, chart: str | None = None) -> discord.Embed:
    """The card as an embed: its text (bot/render.py) as the description, the chart (an attachment's
    file name) as the image; a decided card leads with its outcome and loses its colour."""
    side = str(card.get("side", "?"))
    title = f"{side} {card.get('symbol', '?')} on {card.get('venue', '?')}"
    text = card_text(card)
    if outcome:
        title = f"{outcome.split(' ', 1)[0]}: {title}"
        text = f"**{discord.utils.escape_markdown(outcome)}**\n\n{discord.utils.escape_markdown(text)}"
    else:
        text = discord.utils.escape_markdown(text)
    colour = DECIDED_COLOUR if outcome else COLOURS.get(side.split(" ")[0], DECIDED_COLOUR)
    embed = discord.Embed(
        title=shorten(title, EMBED_TITLE_LIMIT),
        description=shorten(text, EMBED_DESCRIPTION_LIMIT),
        colour=colour,
    )
    embed.set_footer(text=f"signal {card.get('signal_id', '?')}")
    if chart:
        embed.set_image(url=f"attachment://{chart}")
    return embed


def summary_embeds(summary: Summary) -> list[discord.Embed]:
    """The daily summary: its first line as the title, the rest (a table) as the description, the
    first equity chart (attached by its file name) as the image; one more embed per further chart."""
    title, _, body = summary.text.partition("\n")
    first = discord.Embed(
        title=shorten(title, EMBED_TITLE_LIMIT),
        description=message_parts(body, EMBED_DESCRIPTION_LIMIT)[0],
        colour=SUMMARY_COLOUR,
    )
    embeds = [first]
    names = [Path(image).name for image in summary.images[:MAX_EMBEDS]]
    for i, name in enumerate(names):
        embed = first if i == 0 else discord.Embed(title=shorten(name, EMBED_TITLE_LIMIT), colour=SUMMARY_COLOUR)
        embed.set_image(url=f"attachment://{name}")
        if embed is not first:
            embeds.append(embed)
    return embeds


def message_parts(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Discord markdown in parts of at most ``limit`` characters, cut at line ends: text escaped,
    tables (bot/render.py table) in code blocks so their columns stay aligned, also across a cut."""
    lines = text.split("\n")
    tables = table_lines(lines)
    room = (limit - 2 * len(FENCE) - 2) // 2  # a raw piece that fits even when every character is escaped
    pieces: list[tuple[str, bool]] = []
    for i, line in enumerate(lines):
        while len(line) > room:
            pieces.append((line[:room], i in tables))
            line = line[room:]
        pieces.append((line, i in tables))
    parts: list[str] = []
    current: list[tuple[str, bool]] = []
    for piece in pieces:
        if current and len(_markdown([*current, piece])) > limit:
            parts.append(_markdown(current))
            current = []
        current.append(piece)
    if current and any(line for line, _ in current):
        parts.append(_markdown(current))
    return parts or [""]


def _markdown(lines: list[tuple[str, bool]]) -> str:
    rendered: list[str] = []
    block: list[str] = []
    for line, in_table in lines:
        if in_table:
            block.append(line.replace(FENCE, "`\u200b``"))
            continue
        if block:
            rendered.append(FENCE + "\n" + "\n".join(block) + "\n" + FENCE)
            block = []
        rendered.append(discord.utils.escape_markdown(line))
    if block:
        rendered.append(FENCE + "\n" + "\n".join(block) + "\n" + FENCE)
    return "\n".join(rendered)
