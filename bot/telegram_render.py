"""Pure functions of the Telegram transport: the allowlist, the API URLs, callback data, and the
core's plain text as Telegram HTML (escaped, tables in <pre>) in parts that fit a message."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from bot import allowlist
from bot.allowlist import AllowlistError as AllowlistError  # re-exported: tests and callers import it here
from bot.transport import Press
from storage.users import Role

MESSAGE_LIMIT = 4096  # characters of a message's text after entity parsing
CAPTION_LIMIT = 1024
CALLBACK_ANSWER_LIMIT = 200
DEFAULT_API_URL = "https://api.telegram.org/bot"
ACTIONS = {"a": "approve", "r": "reject", "d": "details"}
CALLBACK = re.compile(r"^([ard]):([a-z0-9]{4,40})$")
ACCESS = re.compile(r"^([gn]):([1-9][0-9]{0,18})$")  # an access request's Grant viewer / Deny
_RULE = re.compile(r"^-+(  -+)*$")  # the dashes under a table's header (bot/render.py table)


def parse_allowed_users(text: str) -> dict[int, Role]:
    """``123:admin,456:trader,789:viewer`` -> {123: admin, ...}; a bad entry is named in the error."""
    return allowlist.parse_allowed_users(text, "TRADEOPS_TELEGRAM_ALLOWED_USERS")


def api_urls(api_url: str | None) -> tuple[str, str]:
    """The Bot API base URL as python-telegram-bot takes it (the token is appended, or replaces
    ``{token}``) and the file URL that follows it: its last ``/bot`` becomes ``/file/bot``."""
    base = (api_url or "").strip() or DEFAULT_API_URL
    if not base.startswith(("http://", "https://")) or "/bot" not in base:
        raise ValueError(
            f"TRADEOPS_TELEGRAM_API_URL must be an http(s) URL ending in /bot (the token follows), "
            f"like {DEFAULT_API_URL} or http://localhost:8081/bot"
        )
    head, _, tail = base.rpartition("/bot")
    return base, f"{head}/file/bot{tail}"


def callback_data(action: str, signal_id: str) -> str:
    return f"{action[0]}:{signal_id}"


def parse_callback(data: str | None) -> Press | None:
    """A button's data, which the client sends and anyone can forge: only ``a|r|d:<id>`` is known."""
    if not data or len(data) > 64:
        return None
    match = CALLBACK.fullmatch(data)
    return Press(ACTIONS[match.group(1)], match.group(2)) if match else None


@dataclass(frozen=True)
class AccessPress:
    grant: bool  # Grant viewer (g), or Deny (n)
    user_id: int  # the stranger who asked


def access_data(grant: bool, user_id: int) -> str:
    return f"{'g' if grant else 'n'}:{user_id}"


def parse_access(data: str | None) -> AccessPress | None:
    """An access request button's data (forgeable like any other): only ``g|n:<numeric id>``."""
    if not data or len(data) > 64:
        return None
    match = ACCESS.fullmatch(data)
    if match is None or int(match.group(2)) >= 2**63:
        return None
    return AccessPress(match.group(1) == "g", int(match.group(2)))


def units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: an emoji may be two)."""
    return len(text.encode("utf-16-le")) // 2


def split_lines(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Parts of at most ``limit`` units, cut at line ends; a longer line is cut inside."""
    return ["\n".join(line for line, _ in part) for part in _pack([(line, False) for line in text.split("\n")], limit)]


def _pack(lines: list[tuple[str, bool]], limit: int) -> list[list[tuple[str, bool]]]:
    pieces: list[tuple[str, bool]] = []
    for line, flag in lines:
        while units(line) > limit:
            head = _fit(line, limit)
            pieces.append((head, flag))
            line = line[len(head) :]
        pieces.append((line, flag))
    parts: list[list[tuple[str, bool]]] = []
    current: list[tuple[str, bool]] = []
    size = 0
    for piece in pieces:
        extra = units(piece[0]) + (1 if current else 0)
        if current and size + extra > limit:
            parts.append(current)
            current, size, extra = [], 0, units(piece[0])
        current.append(piece)
        size += extra
    if current and any(line for line, _ in current):
        parts.append(current)
    return parts or [[("", False)]]


def _fit(line: str, limit: int) -> str:
    end = min(len(line), limit)
    while units(line[:end]) > limit:
        end -= 1
    return line[:end]


def table_lines(lines: list[str]) -> set[int]:
    """Indexes of the lines that belong to a table: the header, its rule, and the rows under it (up to a blank line)."""
    found: set[int] = set()
    for i, line in enumerate(lines):
        if i > 0 and _RULE.match(line) and lines[i - 1].strip():
            found.update({i - 1, i})
            j = i + 1
            while j < len(lines) and lines[j].strip():
                found.add(j)
                j += 1
    return found


def to_html(text: str) -> str:
    """Escaped HTML; tables in <pre> so their columns stay aligned."""
    return html_parts(text, limit=max(units(text), 1))[0][0]


def html_parts(text: str, limit: int = MESSAGE_LIMIT) -> list[tuple[str, str]]:
    """(html, plain) per message: split as plain text (the limit counts text after parsing), so
    either form can be sent; a table cut by a split stays a table in both parts."""
    lines = text.split("\n")
    tables = table_lines(lines)
    parts = _pack([(line, i in tables) for i, line in enumerate(lines)], limit)
    return [(_chunk_html(part), "\n".join(line for line, _ in part)) for part in parts]


def _chunk_html(lines: list[tuple[str, bool]]) -> str:
    rendered: list[str] = []
    block: list[str] = []
    for line, in_table in lines:
        if in_table:
            block.append(html.escape(line, quote=False))
            continue
        if block:
            rendered.append("<pre>" + "\n".join(block) + "</pre>")
            block = []
        rendered.append(html.escape(line, quote=False))
    if block:
        rendered.append("<pre>" + "\n".join(block) + "</pre>")
    return "\n".join(rendered)


def shorten(text: str, limit: int) -> str:
    """At most ``limit`` units, cut at a line end where possible, marked when cut."""
    if units(text) <= limit:
        return text
    head = split_lines(text, limit - 2)[0]
    return head + "\n…"
