"""Errors raised by venues. Every message says what was wrong and what would have been valid."""

from __future__ import annotations

import re
from collections.abc import Iterable

# The password of a URL (scheme://user:password@host), as a proxy set in a venue's base URL has it.
_URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]+):[^/\s@]+@")


class VenueError(Exception):
    """Base class: the message is meant for the user and must be readable as is."""


def choices(valid: Iterable[str], limit: int = 20) -> str:
    items = sorted(set(valid))
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items)} in all)"
    return shown


class UnknownSymbolError(VenueError, KeyError):
    def __init__(self, symbol: str, venue: str, valid: Iterable[str]) -> None:
        self.symbol = symbol
        self.venue = venue
        super().__init__(f"unknown symbol {symbol!r} on venue {venue!r}; valid symbols: {choices(valid)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


class UnknownTimeframeError(VenueError, ValueError):
    def __init__(self, timeframe: str, valid: Iterable[str], *, reason: str = "") -> None:
        self.timeframe = timeframe
        what = reason or f"unknown timeframe {timeframe!r}"
        super().__init__(f"{what}; valid timeframes: {', '.join(valid)}")


class DataFileError(VenueError, ValueError):
    """A shipped or user-supplied bar file is malformed; names the file and the line (1-based, the
    header is line 1) of the offending row."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"malformed data file {where}: {problem}")


class OrderRejected(VenueError):
    """The broker refused an order; `reason` is what the user sees."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def without_url_passwords(text: str) -> str:
    """``text`` with the password of every URL in it masked: ``http://user:***@host/...``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


class VenueUnavailable(VenueError):
    """The venue did not answer usably: network errors, 5xx or 429 after every retry, or its circuit
    breaker is open after repeated failures. Transient: the same call may work later. A client's
    description of the failure often quotes the URL it called: its password is masked."""

    def __init__(self, venue: str, what: str, problem: str) -> None:
        self.venue = venue
        super().__init__(f"{venue} did not answer {what}: {without_url_passwords(problem)}")


class VenueAuthError(VenueError):
    """The venue refused the credentials; the message names the settings to fix (never their values)."""
