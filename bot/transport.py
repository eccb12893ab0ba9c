"""What `tradeops run` needs of a chat transport (Telegram, Discord): the long-running process starts
each configured transport, hands it what happens (new signal cards, decisions, fills and exits), and
stops it on shutdown. A transport only receives, renders and sends: every command goes through the
one ``CommandCore`` (bot/core.py), which checks who may do what.

A transport that cannot go on while running (Telegram's 409 Conflict: another process took the
token) asks the run to stop with a :class:`StopRequest`, through the ``request_stop`` callback the
run hands to ``start``; the run then stops as on SIGTERM and exits with its own status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import SecretStr

if TYPE_CHECKING:
    from bot.summary import Summary

TRANSPORT_VARIABLES = "TRADEOPS_TELEGRAM_TOKEN or TRADEOPS_DISCORD_TOKEN"  # the settings that enable one


@dataclass(frozen=True)
class StopRequest:
    """A transport asks the whole run to stop: it can take no more updates and the run would go on
    deaf to that platform."""

    transport: str  # the transport's name
    reason: str  # what happened and what to do, for the log (never a secret)


RequestStop = Callable[[StopRequest], None]  # called in the event loop's thread; returns at once


@runtime_checkable
class Transport(Protocol):
    name: str  # "telegram" | "discord": the ``platform`` of its callers

    async def start(self, request_stop: RequestStop | None = None) -> None:
        """Connect and begin taking updates; returns once it is running. Raises TransportError
        with a readable message when it cannot (bad token, another process polls the same token).
        ``request_stop``: the run's, called (at most once) when the transport cannot go on; None when
        no run started it (then it only stops taking updates)."""
        ...

    async def stop(self) -> None:
        """Stop taking updates, let in-flight commands finish (bounded), close connections."""
        ...

    async def push_card(self, card: dict[str, Any]) -> None:
        """A new pending signal's card (the graph's card dict), with its chart and Approve / Reject
        buttons, to every chat subscribed to it with signals on. A failing chat is logged and skipped."""
        ...

    async def push_decision(self, signal_id: str, status: str, text: str) -> None:
        """A signal was decided (anywhere): edit its cards to show the outcome, remove the buttons."""
        ...

    async def push_event(self, text: str, *, kind: str) -> None:
        """A notice for the subscribed chats that want its kind (storage.chats.EVENT_KINDS): ``kind``
        is "fill", "exit", "error" or "notice" (e.g. the LLM's daily token budget is spent). A
        failing chat is logged and skipped."""
        ...

    async def push_summary(self, summary: Summary) -> None:
        """The daily summary (text and equity charts) to each chat due for it (bot.summary.due_chats);
        each chat that got it is remembered for its day (bot.summary.summary_sent), so it gets one a
        day, also across restarts. A failing chat is logged and skipped."""
        ...


@runtime_checkable
class ReportsReadiness(Protocol):
    """A transport that can tell whether it still takes updates (for `/readyz`). One without this
    counts as ready from its start until it asks the run to stop."""

    def not_ready(self) -> str | None:
        """None while it takes updates; else what is wrong, one line, never a secret."""
        ...


@dataclass(frozen=True)
class Press:
    """A card button pressed, as parsed from the client-supplied data (never trusted beyond this:
    the action is run through the core as the presser, at press time)."""

    action: str  # approve | reject | details
    signal_id: str


class TransportError(Exception):
    """A transport that cannot start or run; the message says what is wrong and what to do."""


def secret_token(token: SecretStr | str, *, empty: str) -> str:
    """A transport's bot token, stripped, registered for redaction in every log record before any
    client can log it; TransportError(``empty``) when blank."""
    from bot.logs import install_redaction, register_secret

    value = (token.get_secret_value() if isinstance(token, SecretStr) else token).strip()
    if not value:
        raise TransportError(empty)
    register_secret(value)
    install_redaction()
    return value
