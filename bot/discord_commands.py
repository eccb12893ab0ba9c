"""The slash commands of the Discord transport: one per core command, with typed options and
autocomplete; each callback only turns its options into the core's text command (``/scan crypto``)
and hands it to the transport, which runs it through ``CommandCore.handle`` as the user."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands

from storage.chats import ALL
from storage.signals import SignalStatus

if TYPE_CHECKING:
    from bot.discord import DiscordTransport

AUTOCOMPLETE_LIMIT = 25  # Discord shows at most 25 choices
SLOW = {"scan", "signal", "ask", "chart", "pnl", "summary", "approve", "backtest"}  # may take over 3 s: deferred first

Complete = Callable[[discord.Interaction[Any], str], Coroutine[Any, Any, list[app_commands.Choice[str]]]]


def text_command(name: str, *words: str | None) -> str:
    return " ".join([f"/{name}", *(w.strip() for w in words if w and w.strip())])


def choices(values: Iterable[str], current: str) -> list[app_commands.Choice[str]]:
    wanted = current.strip().lower()
    found = sorted({v for v in values if wanted in v.lower()})
    return [app_commands.Choice(name=v, value=v) for v in found[:AUTOCOMPLETE_LIMIT]]


def add_commands(tree: app_commands.CommandTree[Any], transport: DiscordTransport) -> None:
    s = transport.s

    def completer(source: Callable[[], Iterable[str]]) -> Complete:
        async def complete(interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
            if s.users.role("discord", interaction.user.id) is None:
                return []  # strangers learn nothing, not even names
            return choices(source(), current)

        return complete

    watchlists = completer(lambda: [w.name for w in s.watchlists.all()])
    subscribable = completer(lambda: [ALL, *(w.name for w in s.watchlists.all())])
    symbols = completer(lambda: [sym for w in s.watchlists.all() for sym in w.symbols])
    pending = completer(lambda: [r.id for r in s.signals.recent(status=SignalStatus.PENDING, limit=100)])

    async def run(interaction: discord.Interaction[Any], name: str, *words: str | None) -> None:
        await transport.run_command(interaction, text_command(name, *words), slow=name in SLOW)

    def summary(name: str) -> str:
        return transport.core.commands[name].summary[:100]

    @tree.command(name="help", description=summary("help"))
    async def help_(interaction: discord.Interaction[Any]) -> None:
        await run(interaction, "help")

    @tree.command(name="watch", description=summary("watch"))
    @app_commands.describe(action="list, add symbols, or remove", name="watchlist", symbols="symbols, space-separated")
    @app_commands.autocomplete(name=watchlists)
    async def watch(
        interaction: discord.Interaction[Any],
        action: Literal["list", "add", "rm"] = "list",
        name: str | None = None,
        symbols: str | None = None,
    ) -> None:
        await run(interaction, "watch", action, name, symbols)

    @tree.command(name="scan", description=summary("scan"))
    @app_commands.describe(watchlist="one watchlist; empty = all")
    @app_commands.autocomplete(watchlist=watchlists)
    async def scan(interaction: discord.Interaction[Any], watchlist: str | None = None) -> None:
        await run(interaction, "scan", watchlist)

    @tree.command(name="signal", description=summary("signal"))
    @app_commands.autocomplete(symbol=symbols)
    async def signal(interaction: discord.Interaction[Any], symbol: str) -> None:
        await run(interaction, "signal", symbol)

    @tree.command(name="signals", description=summary("signals"))
    async def signals(
        interaction: discord.Interaction[Any], which: Literal["pending", "today", "all"] = "pending"
    ) -> None:
        await run(interaction, "signals", which)

    @tree.command(name="approve", description=summary("approve"))
    @app_commands.describe(signal_id="a pending signal's id")
    @app_commands.autocomplete(signal_id=pending)
    async def approve(interaction: discord.Interaction[Any], signal_id: str) -> None:
        await run(interaction, "approve", signal_id)

    @tree.command(name="reject", description=summary("reject"))
    @app_commands.describe(signal_id="a pending signal's id", reason="why (kept in the audit log)")
    @app_commands.autocomplete(signal_id=pending)
    async def reject(interaction: discord.Interaction[Any], signal_id: str, reason: str | None = None) -> None:
        await run(interaction, "reject", signal_id, reason)

    @tree.command(name="pause", description=summary("pause"))
    async def pause(interaction: discord.Interaction[Any], reason: str | None = None) -> None:
        await run(interaction, "pause", reason)

    @tree.command(name="chart", description=summary("chart"))
    @app_commands.describe(symbol="a symbol of a watchlist", timeframe="e.g. 15m, 1h, 1d; empty = the symbol's own")
    @app_commands.autocomplete(symbol=symbols)
    async def chart(interaction: discord.Interaction[Any], symbol: str, timeframe: str | None = None) -> None:
        await run(interaction, "chart", symbol, timeframe)

    @tree.command(name="backtest", description=summary("backtest"))
    @app_commands.describe(symbol="a symbol of a watchlist", days="days back from now (1-366)", policy="who decides")
    @app_commands.autocomplete(symbol=symbols)
    async def backtest(
        interaction: discord.Interaction[Any],
        symbol: str,
        days: app_commands.Range[int, 1, 366] = 30,
        policy: Literal["rules", "sma_cross", "llm"] = "rules",
    ) -> None:
        await run(interaction, "backtest", symbol, str(days), policy)

    @tree.command(name="ask", description=summary("ask"))
    async def ask(interaction: discord.Interaction[Any], question: str) -> None:
        await run(interaction, "ask", question)

    @tree.command(name="subscribe", description=summary("subscribe"))
    @app_commands.describe(watchlist="a watchlist, or all")
    @app_commands.autocomplete(watchlist=subscribable)
    async def subscribe(interaction: discord.Interaction[Any], watchlist: str) -> None:
        await run(interaction, "subscribe", watchlist)

    @tree.command(name="unsubscribe", description=summary("unsubscribe"))
    @app_commands.describe(watchlist="a watchlist, or all; empty = every subscription of this channel")
    @app_commands.autocomplete(watchlist=subscribable)
    async def unsubscribe(interaction: discord.Interaction[Any], watchlist: str | None = None) -> None:
        await run(interaction, "unsubscribe", watchlist)

    @tree.command(name="users", description=summary("users"))
    @app_commands.describe(
        action="list, add, remove, or change a role",
        user="a numeric user id, as PLATFORM:ID for another platform (telegram:123)",
        role="the role to give",
        name="a display name (add only)",
    )
    async def users(
        interaction: discord.Interaction[Any],
        action: Literal["list", "add", "rm", "role"] = "list",
        user: str | None = None,
        role: Literal["viewer", "trader", "admin"] | None = None,
        name: str | None = None,
    ) -> None:
        await run(interaction, "users", action, user, role, name)

    @tree.command(name="notify", description=summary("notify"))
    @app_commands.describe(
        kind="what to turn on or off (empty: show this channel's settings)",
        state="on or off",
        time="the summary's local time HH:MM, or default (kind summary only)",
    )
    async def notify(
        interaction: discord.Interaction[Any],
        kind: Literal["signals", "fills", "errors", "notices", "summary", "all"] | None = None,
        state: Literal["on", "off"] | None = None,
        time: str | None = None,
    ) -> None:
        await run(interaction, "notify", kind, time or state)

    for name in ("positions", "orders", "pnl", "summary", "risk", "resume", "llm"):  # no options
        tree.add_command(_plain(name, summary(name), run))
    missing = set(transport.core.commands) - {c.name for c in tree.get_commands()}
    if missing:  # a new core command needs its slash command here
        raise RuntimeError(f"core commands without a Discord slash command: {sorted(missing)}")


def _plain(name: str, description: str, run: Callable[..., Awaitable[None]]) -> app_commands.Command[Any, ..., None]:
    async def callback(interaction: discord.Interaction[Any]) -> None:
        await run(interaction, name)

    return app_commands.Command(name=name, description=description, callback=callback)
