"""The allowlist setting every chat transport reads (TRADEOPS_TELEGRAM_ALLOWED_USERS,
TRADEOPS_DISCORD_ALLOWED_USERS): numeric user ids with roles, seeded into the users table at start."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime

from storage.users import Role, UserStore

_USER = re.compile(r"^(\d{1,19}):([a-z]+)$")


class AllowlistError(ValueError):
    """An allowlist entry that is not ``id:role``; the message names the setting and the entry."""


def parse_allowed_users(text: str, setting: str) -> dict[int, Role]:
    """``123:admin,456:trader,789:viewer`` -> {123: admin, ...}; a bad entry is named in the error."""
    allowed: dict[int, Role] = {}
    roles = ", ".join(r.value for r in Role)
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        match = _USER.fullmatch(entry.lower())
        if match is None:
            raise AllowlistError(f"{setting}: {entry[:40]!r} is not NUMERIC_ID:ROLE (e.g. 123:trader; roles: {roles})")
        user_id, role = int(match.group(1)), match.group(2)
        if role not in {r.value for r in Role}:
            raise AllowlistError(f"{setting}: {entry!r} has an unknown role; roles: {roles}")
        if user_id in allowed and allowed[user_id] != Role(role):
            raise AllowlistError(f"{setting}: user {user_id} is listed with two roles")
        allowed[user_id] = Role(role)
    return allowed


def seed_allowlist(users: UserStore, platform: str, allowed: dict[int, Role], *, at: datetime) -> None:
    """Write a transport's allowlist into the users table (the setting wins over earlier changes)."""
    for user_id, role in allowed.items():
        users.grant(platform, user_id, role, at=at)


class StrangerRefusals:
    """When to refuse a stranger out loud: once per ``interval_seconds`` per user, so a stranger
    flooding the bot gets (and the audit log records) one refusal, with the count ignored since."""

    def __init__(self, interval_seconds: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval_seconds
        self._clock = clock
        self._last: dict[int, tuple[float, int]] = {}  # stranger -> (last refusal, messages since)

    def due(self, user_id: int) -> int | None:
        """The number of messages ignored since the last refusal when one is due now, else None."""
        now = self._clock()
        last, since = self._last.get(user_id, (float("-inf"), 0))
        if now - last < self.interval:
            self._last[user_id] = (last, since + 1)
            return None
        self._last[user_id] = (now, 0)
        return since
