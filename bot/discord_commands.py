"""The slash commands of the Discord transport: one per core command, with typed options and
autocomplete; each callback only turns its options into the core's text command (``/scan crypto``)
and hands it to the transport, which runs it through ``CommandCore.handle`` as the user."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands

from bot.command_types import MAX_PAGE
from storage.chats import ALL
from storage.signals import SignalStatus
from venues.models import OrderStatus

if TYPE_CHECKING:
    from bot.discord import DiscordTransport

AUTOCOMPLETE_LIMIT = 25  # Discord shows at most 25 choices
SLOW = {
    "scan",
    "signal",
    "ask",
    "chart",
    "pnl",
    "summary",
    "approve",
    "backtest",
    "close",
    "trades",
}  # may take over 3 s: deferred first

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
    open_plans = completer(lambda: [p.signal_id for p in s.plans.active() if p.status == "open"])
    held = completer(lambda: [p.symbol for p in s.plans.active() if p.status == "open"])

    async def pending_orders(interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        if s.users.role("discord", interaction.user.id) is None:
            return []
        ids = [
            o.client_order_id for v in s.venues.values() for o in await v.broker_required().orders(OrderStatus.PENDING)
        ]
        return choices(ids, current)

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
    @app_commands.describe(which="which signals (holds: only the HOLD rows)", page="page of 20 rows")
    async def signals(
        interaction: discord.Interaction[Any],
        which: Literal["pending", "today", "all", "holds"] = "pending",
        page: app_commands.Range[int, 1, MAX_PAGE] = 1,
    ) -> None:
        await run(interaction, "signals", which, str(page) if page > 1 else None)

    @tree.command(name="orders", description=summary("orders"))
    @app_commands.describe(n="rows a page (1-50)", page="page number")
    async def orders(
        interaction: discord.Interaction[Any],
        n: app_commands.Range[int, 1, 50] = 20,
        page: app_commands.Range[int, 1, MAX_PAGE] = 1,
    ) -> None:
        await run(interaction, "orders", str(n), str(page))

    @tree.command(name="trades", description=summary("trades"))
    @app_commands.describe(n="rows a page (1-50)", page="page number")
    async def trades(
        interaction: discord.Interaction[Any],
        n: app_commands.Range[int, 1, 50] = 10,
        page: app_commands.Range[int, 1, MAX_PAGE] = 1,
    ) -> None:
        await run(interaction, "trades", str(n), str(page))

    @tree.command(name="close", description=summary("close"))
    @app_commands.describe(symbol="a held symbol", qty="how much: a quantity, or all (default)")
    @app_commands.autocomplete(symbol=held)
    async def close(interaction: discord.Interaction[Any], symbol: str, qty: str = "all") -> None:
        await run(interaction, "close", symbol, qty)

    @tree.command(name="cancel", description=summary("cancel"))
    @app_commands.describe(order_id="a pending order's id (see /orders)")
    @app_commands.autocomplete(order_id=pending_orders)
    async def cancel(interaction: discord.Interaction[Any], order_id: str) -> None:
        await run(interaction, "cancel", order_id)

    @tree.command(name="plan", description=summary("plan"))
    @app_commands.describe(
        signal_id="the plan's signal id (see /positions)",
        stop="the new stop price",
        tp1="the new first target",
        tp2="the new second target",
        tp3="the new third target",
    )
    @app_commands.autocomplete(signal_id=open_plans)
    async def plan(
        interaction: discord.Interaction[Any],
        signal_id: str,
        stop: str | None = None,
        tp1: str | None = None,
        tp2: str | None = None,
        tp3: str | None = None,
    ) -> None:
        levels = {"stop": stop, "tp1": tp1, "tp2": tp2, "tp3": tp3}
        await run(interaction, "plan", signal_id, *(f"{k}={v.strip()}" for k, v in levels.items() if v))

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

    for name in ("positions", "pnl", "summary", "risk", "resume", "llm"):  # no options
        tree.add_command(_plain(name, summary(name), run))
    missing = set(transport.core.commands) - {c.name for c in tree.get_commands()}
    if missing:  # a new core command needs its slash command here
        raise RuntimeError(f"core commands without a Discord slash command: {sorted(missing)}")


def _plain(name: str, description: str, run: Callable[..., Awaitable[None]]) -> app_commands.Command[Any, ..., None]:
    async def callback(interaction: discord.Interaction[Any]) -> None:
        await run(interaction, name)

    return app_commands.Command(name=name, description=description, callback=callback)
