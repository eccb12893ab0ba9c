"""What the command core and its command groups share: the caller, the reply, the user-readable
error, the command table's row, and the checks every command applies to client-supplied words
(ASCII before any case folding, bounded whole numbers, pages)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from storage.roles import Role

T = TypeVar("T")
MAX_PAGE = 10_000
WHOLE = re.compile(r"^[0-9]{1,6}$")


class UserError(Exception):
    """A message for the user: what was wrong and what is valid."""


def fold(word: str) -> str:
    """Lower case for matching, after refusing anything outside ASCII: case folding would turn
    look-alikes into real ids (the Kelvin sign K lowers to k, so "xtmxxbKr" would approve xtmxxbkr)."""
    if not word.isascii():
        raise UserError(
            f"{word[:40]!r} has characters outside ASCII; ids, names and options are plain letters and digits"
        )
    return word.lower()


def whole_number(word: str, what: str, low: int, high: int, usage: str) -> int:
    """``word`` as a whole number in ``[low, high]``, or UserError naming the bounds and the usage."""
    if not word.isascii() or not WHOLE.match(word) or not low <= int(word) <= high:
        raise UserError(f"{what} {word[:12]!r} is not a whole number from {low} to {high}; usage: {usage}")
    return int(word)


@dataclass(frozen=True)
class Page:
    """Rows ``size`` at a time; ``number`` counts from 1."""

    size: int
    number: int = 1

    @classmethod
    def parse(cls, words: Sequence[str], usage: str, *, default: int = 10, most: int = 50) -> Page:
        """``[N] [PAGE]`` of a listing command: N rows a page (1 to ``most``), page PAGE (from 1)."""
        if len(words) > 2:
            raise UserError(f"usage: {usage}")
        size = whole_number(words[0], "N", 1, most, usage) if words else default
        number = whole_number(words[1], "PAGE", 1, MAX_PAGE, usage) if len(words) == 2 else 1
        return cls(size, number)

    def of(self, rows: Sequence[T]) -> list[T]:
        start = (self.number - 1) * self.size
        return list(rows[start : start + self.size])

    def footer(self, total: int, command: str, *, with_size: bool = True) -> str:
        """'rows 11-20 of 57; next page: /orders 10 3' (without the size when the command has no N),
        or '' when one page holds them all."""
        if total <= self.size and self.number == 1:
            return ""
        first = (self.number - 1) * self.size + 1
        last = min(self.number * self.size, total)
        if first > total:
            return f"page {self.number} is past the end: {total} rows, {self.size} a page"
        words = f"{self.size} {self.number + 1}" if with_size else str(self.number + 1)
        more = f"; next page: {command} {words}" if last < total else ""
        return f"rows {first}-{last} of {total}{more}"


@dataclass(frozen=True)
class Caller:
    platform: str  # console | telegram | discord | cli
    user_id: int
    name: str = ""
    role: Role | None = None  # set by the transport only for the local console; else looked up
    chat_id: int | None = None  # the chat the command came from (Telegram, Discord); none on the console

    @property
    def actor(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True)
class Button:
    label: str
    action: Literal["approve", "reject"]
    signal_id: str  # the only thing a button carries: the action is looked up server side


@dataclass
class Reply:
    text: str
    ok: bool = True
    images: list[str] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    bad_input: bool = False  # refused for what was typed (a CLI exits 2), not for a failure (exit 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "text": self.text,
            "images": self.images,
            "buttons": [{"label": b.label, "action": b.action, "signal_id": b.signal_id} for b in self.buttons],
            "data": self.data,
        }


Handler = Callable[[Caller, list[str]], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    name: str
    role: Role
    usage: str
    summary: str
    handler: Handler
