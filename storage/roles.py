"""The roles a chat user can have, apart from storage/users.py so that the command table (and
/help) can name them without loading the database libraries."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"  # sees signals, positions, P&L
    TRADER = "trader"  # also approves, rejects, scans, asks for signals, edits watchlists
    ADMIN = "admin"  # also pauses and resumes trading, manages users

    @property
    def rank(self) -> int:
        return [Role.VIEWER, Role.TRADER, Role.ADMIN].index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank
