"""The chat command table (name, role, usage, summary) and the answers that need nothing else:
/help, and the refusals decided before a command runs (too long, not a command, unknown, above
the caller's role, arguments to a command that takes none). It imports no database, venue, graph
or chart library, so `tradeops chat -c /help` answers without opening the application; the
command core (bot/core.py) attaches a handler to each row and gives the same answers."""

from __future__ import annotations

from dataclasses import dataclass

from bot.command_types import Reply
from storage.roles import Role

MAX_INPUT = 1000  # characters in one message
CLOSE_USAGE = "/close SYMBOL [QTY|all], e.g. /close ETH/USDT all or /close 600519.SH 100"
PLAN_USAGE = "/plan ID stop=PRICE tp1=PRICE tp2=PRICE ..., e.g. /plan ab12cd34 stop=2300 tp2=2550"
TRADES_USAGE = "/trades [N] [PAGE]"
ORDERS_USAGE = "/orders [N] [PAGE]"
SIGNALS_USAGE = "/signals [pending|today|all|holds] [PAGE]"
NOTIFY_USAGE = "/notify [KIND on|off] | [summary HH:MM|default] (KIND: signals, fills, errors, notices, summary, all)"
USERS_USAGE = (
    "/users list | add [PLATFORM:]ID ROLE [NAME] | rm [PLATFORM:]ID | role [PLATFORM:]ID ROLE "
    "(numeric ids; PLATFORM telegram or discord, default yours; ROLE viewer, trader or admin)"
)


@dataclass(frozen=True)
class CommandSpec:
    """One row of the table: the command core runs its method ``_<name>`` for it."""

    name: str
    role: Role  # the least role that may use it
    usage: str
    summary: str


COMMAND_TABLE: tuple[CommandSpec, ...] = tuple(
    CommandSpec(*row)
    for row in [
        ("help", Role.VIEWER, "/help", "this list"),
        ("watch", Role.VIEWER, "/watch list | add NAME SYMBOL... | rm NAME [SYMBOL...]", "watchlists"),
        ("scan", Role.TRADER, "/scan [WATCHLIST]", "scan now (all watchlists, or one)"),
        ("signal", Role.TRADER, "/signal SYMBOL", "a decision on one symbol now"),
        (
            "signals",
            Role.VIEWER,
            SIGNALS_USAGE,
            "signals and their status, 20 a page (HOLD rows only with /signals holds)",
        ),
        ("approve", Role.TRADER, "/approve ID", "approve a pending signal: it becomes a paper order"),
        ("reject", Role.TRADER, "/reject ID [REASON]", "reject a pending signal"),
        ("positions", Role.VIEWER, "/positions", "open positions and their exit plans"),
        ("close", Role.TRADER, CLOSE_USAGE, "exit a position now at market (all, or QTY of it)"),
        ("cancel", Role.TRADER, "/cancel ID", "cancel a pending order (an entry takes its exits along)"),
        ("plan", Role.TRADER, PLAN_USAGE, "move the stop or a target of an open position; the live exit orders follow"),
        ("orders", Role.VIEWER, ORDERS_USAGE, "paper orders, newest first, N a page (default 20)"),
        (
            "trades",
            Role.VIEWER,
            TRADES_USAGE,
            "closed round trips: entry, exit, P&L net of fees, R, exit reason (N a page, default 10)",
        ),
        ("pnl", Role.VIEWER, "/pnl", "profit and loss, with the equity curve"),
        ("summary", Role.VIEWER, "/summary", "the daily summary now: P&L per venue and equity charts"),
        (
            "risk",
            Role.VIEWER,
            "/risk",
            "risk limits; today's realized P&L, loss against the limit, trades left, cooldowns",
        ),
        ("pause", Role.ADMIN, "/pause [REASON]", "kill switch: no new entries"),
        ("resume", Role.ADMIN, "/resume", "lift the kill switch"),
        ("users", Role.ADMIN, USERS_USAGE, "who may use the bot, and as what"),
        ("chart", Role.VIEWER, "/chart SYMBOL [TIMEFRAME]", "candlestick chart"),
        ("ask", Role.TRADER, "/ask QUESTION", "ask the model about the markets (read-only)"),
        ("llm", Role.VIEWER, "/llm", "the model in use and today's LLM spend"),
        (
            "backtest",
            Role.TRADER,
            "/backtest SYMBOL [DAYS] [POLICY]",
            "replay the last DAYS (30) with POLICY (rules, sma_cross, llm): chart and key figures",
        ),
        ("subscribe", Role.TRADER, "/subscribe WATCHLIST|all", "this chat receives the watchlist's signal cards"),
        (
            "unsubscribe",
            Role.TRADER,
            "/unsubscribe [WATCHLIST|all]",
            "stop one subscription of this chat, or all of them",
        ),
        ("notify", Role.VIEWER, NOTIFY_USAGE, "what this chat is sent: signals, fills, errors, ..."),
    ]
)
COMMANDS = {spec.name: spec for spec in COMMAND_TABLE}
# Commands whose handlers never touch the agent graph's runner or the scanner: a one-shot process
# (`tradeops chat -c`) opens the application without the graph for them (see open_services).
WITHOUT_AGENT = frozenset(
    {"positions", "orders", "trades", "pnl", "summary", "risk", "watch", "users", "llm", "notify", "pause", "resume"}
)


def help_reply(role: Role, note: str = "") -> Reply:
    """The commands ``role`` may use, two lines each; with a ``note`` (what was wrong) first, not ok."""
    # Two lines per command, not a table: one long usage (/users) would pad every row of a table
    # past what a phone shows.
    lines = [f"{c.usage}\n  {c.summary}" for c in COMMAND_TABLE if role.allows(c.role)]
    head = f"{note}\n" if note else ""
    return Reply(f"{head}tradeops commands (you are {role.value}):\n" + "\n".join(lines), ok=not note)


def command_of(text: str) -> tuple[CommandSpec | None, list[str]]:
    """The row a message names and its words after the command: "/orders@bot 5" -> (orders, ["5"]);
    (None, words) when it names none."""
    words = text.strip().split()
    if not words or not words[0].startswith("/"):
        return None, words
    name = words[0][1:].split("@", 1)[0]  # Telegram appends @botname in groups
    return (COMMANDS.get(name.lower()) if name.isascii() else None), words[1:]


def needs_agent(text: str) -> bool:
    """Whether the command in ``text`` may use the agent graph (any command not in WITHOUT_AGENT)."""
    command, _ = command_of(text)
    return command is None or command.name not in WITHOUT_AGENT


def answer_before_running(role: Role, text: str) -> Reply | None:
    """The reply to ``text`` from a caller with ``role`` when the table alone decides it (see the
    module docstring); None when the command must run."""
    text = (text or "").strip()
    if len(text) > MAX_INPUT:
        return Reply(f"message too long ({len(text)} characters, at most {MAX_INPUT})", ok=False, bad_input=True)
    words = text.split()
    if not words or not words[0].startswith("/"):
        return help_reply(role, note="Commands start with '/'.")
    command, args = command_of(text)
    if command is None:
        return help_reply(role, note=f"Unknown command /{words[0][1:].split('@', 1)[0][:32]}.")
    if not role.allows(command.role):
        return Reply(f"refused: /{command.name} needs the {command.role.value} role; you are a {role.value}.", ok=False)
    if args and command.usage == f"/{command.name}":
        return Reply(f"/{command.name} takes no arguments; usage: {command.usage}", ok=False, bad_input=True)
    if command.name == "help":
        return help_reply(role)
    return None
