"""The command core, the one place every chat transport goes through: deny by default, roles on
every command, hostile input answered with what was wrong and what is valid (and nothing written),
and the real flows on the shipped 2021 replay data under a simulated clock."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine, inspect, text
from typer.testing import CliRunner

from bot.cli import app
from bot.console import CONSOLE_USER, ConsolePrompt, interactive, render
from bot.core import MAX_INPUT, SIGNAL_ID, Button, Caller, CommandCore, Reply
from bot.services import Services
from storage.signals import KILL_SWITCH_KEY, SignalStatus
from storage.users import Role
from tests.support import ADMIN, CALLERS, STRANGER, TRADER, VIEWER, entry_orders, restored_logging
from venues.clock import SimulatedClock

pytestmark = pytest.mark.usefixtures("hermetic")

# The security policy, written down once: a change to the command table that moves a command to
# another role has to change this too, on purpose.
POLICY = {
    "help": Role.VIEWER,
    "watch": Role.VIEWER,  # listing; add and rm check trader inside the command
    "scan": Role.TRADER,
    "signal": Role.TRADER,
    "signals": Role.VIEWER,
    "approve": Role.TRADER,
    "reject": Role.TRADER,
    "positions": Role.VIEWER,
    "close": Role.TRADER,
    "cancel": Role.TRADER,
    "plan": Role.TRADER,
    "orders": Role.VIEWER,
    "trades": Role.VIEWER,
    "pnl": Role.VIEWER,
    "summary": Role.VIEWER,
    "risk": Role.VIEWER,
    "pause": Role.ADMIN,
    "resume": Role.ADMIN,
    "users": Role.ADMIN,
    "chart": Role.VIEWER,
    "ask": Role.TRADER,  # spends tokens
    "backtest": Role.TRADER,  # holds a thread and a temporary database while it runs
    "llm": Role.VIEWER,
    "subscribe": Role.TRADER,
    "unsubscribe": Role.TRADER,
    "notify": Role.VIEWER,  # seeing; changes check trader inside the command
}

# One valid invocation per command, the text that proves its handler ran, and whether it succeeds
# on a fresh database (approve and reject name an id that does not exist: they answer, not fail).
EXAMPLES: dict[str, tuple[str, str, bool]] = {
    "help": ("/help", "tradeops commands", True),
    "watch": ("/watch list", "cn-stocks", True),
    "scan": ("/scan crypto", "scan at 2021-07-06T06:00:05", True),
    "signal": ("/signal BTC/USD", "BTC/USD: hold", True),
    "signals": ("/signals pending", "no pending signals", True),
    "approve": ("/approve abcd1234", "no signal abcd1234", False),
    "reject": ("/reject abcd1234 too late", "no signal abcd1234", False),
    "positions": ("/positions", "no open positions", True),
    "close": ("/close ETH/USDT", "no open position in ETH/USDT on replay-crypto", False),
    "cancel": ("/cancel abcd1234", "no order abcd1234", False),
    "plan": ("/plan abcd1234 stop=2000", "no plan for abcd1234", False),
    "orders": ("/orders", "no orders yet", True),
    "trades": ("/trades", "no closed trades yet", True),
    "pnl": ("/pnl", "equity", True),
    "summary": ("/summary", "daily summary 2021-07-06 06:00 UTC", True),
    "risk": ("/risk", "kill switch: off", True),
    "pause": ("/pause fire drill", "kill switch ON", True),
    "resume": ("/resume", "kill switch off", True),
    "users": ("/users list", "telegram:1002  trader", True),
    "chart": ("/chart ETH/USDT", "ETH/USDT 1h", True),
    # No endpoint is configured in these tests: the handler runs and says what to set.
    "ask": ("/ask how is ETH doing?", "/ask needs an LLM: set TRADEOPS_LLM_MODEL", False),
    "llm": ("/llm", "no LLM configured", True),
    "backtest": ("/backtest BTC/USD 2", "backtest BTC/USD 1h", True),
    # These callers come from no chat (like the console): the handler runs and says where it works.
    "subscribe": ("/subscribe crypto", "/subscribe works in a chat", False),
    "unsubscribe": ("/unsubscribe", "/unsubscribe works in a chat", False),
    "notify": ("/notify", "/notify works in a chat", False),
}

# The constructor only builds the table, so it can be read at collection time to parametrise over
# the real commands: a new command is tested for its role without anyone remembering to add it.
COMMANDS = CommandCore(cast(Services, None)).commands


def database_rows(engine: Engine) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, the checkpointer's included: what a refused command must not
    change (contents, not counts: an update would not change a count)."""
    with engine.connect() as connection:
        return {
            table: sorted(tuple(str(v) for v in row) for row in connection.execute(text(f'SELECT * FROM "{table}"')))
            for table in inspect(engine).get_table_names()
        }


def assert_png(path: str) -> None:
    file = Path(path)
    assert file.is_file(), path
    assert file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


async def refused_without_writes(services: Services, core: CommandCore, caller: Caller, message: str) -> Reply:
    before = database_rows(services.engine)
    reply = await core.handle(caller, message)
    assert not reply.ok, reply.text
    assert database_rows(services.engine) == before, f"{message!r} wrote to the database"
    assert not reply.buttons and not reply.images
    return reply


async def eth_signal(core: CommandCore) -> str:
    """Scan the crypto watchlist as a trader; the id of the pending ETH/USDT buy it proposes."""
    reply = await core.handle(TRADER, "/scan crypto")
    assert reply.ok, reply.text
    cards = [c for c in reply.data["cards"] if c["symbol"] == "ETH/USDT"]
    assert len(cards) == 1 and cards[0]["side"] == "BUY", reply.text
    return str(cards[0]["signal_id"])


# --- roles on every command ---


def test_the_command_table_is_the_policy() -> None:
    assert {name: command.role for name, command in COMMANDS.items()} == POLICY
    assert set(EXAMPLES) == set(COMMANDS), "every command needs an example invocation here"


@pytest.mark.parametrize("name", list(COMMANDS))
async def test_a_caller_without_a_row_is_refused_every_command(
    services: Services, core: CommandCore, name: str
) -> None:
    reply = await refused_without_writes(services, core, STRANGER, EXAMPLES[name][0])
    assert "not allowed" in reply.text
    assert "4242" in reply.text  # the numeric id an admin has to add
    assert EXAMPLES[name][1] not in reply.text


async def test_an_id_is_only_known_on_its_own_platform(services: Services, core: CommandCore) -> None:
    impostor = Caller("discord", VIEWER.user_id, "vera?")  # same number, other platform: nobody
    reply = await refused_without_writes(services, core, impostor, "/help")
    assert "discord:1001" in reply.text


@pytest.mark.parametrize("role", list(CALLERS), ids=[r.value for r in CALLERS])
@pytest.mark.parametrize("name", list(COMMANDS))
async def test_each_role_runs_what_it_may_and_is_refused_the_rest(
    services: Services, core: CommandCore, name: str, role: Role
) -> None:
    message, ran, ok = EXAMPLES[name]
    needed = COMMANDS[name].role
    if role.allows(needed):
        reply = await core.handle(CALLERS[role], message)
        assert "refused" not in reply.text
        assert ran in reply.text, reply.text
        assert reply.ok is ok, reply.text
        json.dumps(reply.to_json())  # every command's structured reply is plain JSON, no default= needed
    else:
        reply = await refused_without_writes(services, core, CALLERS[role], message)
        assert reply.text == f"refused: /{name} needs the {needed.value} role; you are a {role.value}."
        assert ran not in reply.text


def test_who_is_refused_what() -> None:
    """Spelled out, so the parametrised test above cannot pass by refusing nothing."""
    refused = {
        role: sorted(name for name, command in COMMANDS.items() if not role.allows(command.role)) for role in CALLERS
    }
    assert refused[Role.VIEWER] == [
        "approve",
        "ask",
        "backtest",
        "cancel",
        "close",
        "pause",
        "plan",
        "reject",
        "resume",
        "scan",
        "signal",
        "subscribe",
        "unsubscribe",
        "users",
    ]
    assert refused[Role.TRADER] == ["pause", "resume", "users"]
    assert refused[Role.ADMIN] == []


async def test_a_viewer_may_list_watchlists_but_not_change_them(services: Services, core: CommandCore) -> None:
    assert (await core.handle(VIEWER, "/watch list")).ok
    for message in ("/watch add mine BTC/USD", "/watch rm crypto", "/watch rm crypto BTC/USD", "/watch bogus"):
        reply = await refused_without_writes(services, core, VIEWER, message)
        assert "needs the trader role; you are a viewer" in reply.text
    assert services.watchlists.get("mine") is None
    assert services.watchlists.get("crypto") is not None


async def test_a_trader_cannot_pause_or_resume(services: Services, core: CommandCore) -> None:
    for message in ("/pause", "/resume"):
        reply = await refused_without_writes(services, core, TRADER, message)
        assert "needs the admin role; you are a trader" in reply.text
    assert services.signals.get_value(KILL_SWITCH_KEY) is None


# --- /users ---


async def test_an_admin_adds_changes_and_removes_users_and_each_change_is_audited(
    services: Services, core: CommandCore
) -> None:
    newcomer = Caller("telegram", 5555, "nina")
    assert not (await core.handle(newcomer, "/help")).ok
    reply = await core.handle(ADMIN, "/users add telegram:5555 viewer Nina K")
    assert reply.ok and reply.text == "telegram:5555 added as viewer (Nina K)"
    assert (await core.handle(newcomer, "/help")).ok
    assert services.users.role("telegram", 5555) is Role.VIEWER
    reply = await core.handle(ADMIN, "/users role telegram:5555 TRADER")
    assert reply.ok and reply.text == "telegram:5555 is now a trader (was viewer)"
    assert services.users.role("telegram", 5555) is Role.TRADER
    # Without a platform, the id is on the admin's own (Discord here).
    assert (await core.handle(ADMIN, "/users add 5555 admin")).text == "discord:5555 added as admin"
    assert services.users.role("discord", 5555) is Role.ADMIN
    listing = await core.handle(ADMIN, "/users list")
    assert {"user": "telegram:5555", "role": "trader"} in listing.data["users"]
    assert "Nina K" in listing.text
    reply = await core.handle(ADMIN, "/users rm telegram:5555")
    assert reply.ok and reply.text == "telegram:5555 removed (was trader): refused from now on"
    assert services.users.role("telegram", 5555) is None
    assert not (await core.handle(newcomer, "/help")).ok
    audit = [(e.action, e.target, e.detail) for e in services.signals.audit_log(limit=10) if e.actor == ADMIN.actor]
    assert audit[::-1] == [
        ("users_add", "telegram:5555", {"role": "viewer", "name": "Nina K"}),
        ("users_role", "telegram:5555", {"role": "trader", "before": "viewer"}),
        ("users_add", "discord:5555", {"role": "admin", "name": ""}),
        ("users_rm", "telegram:5555", {"role": "trader"}),
    ]


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        ("/users rm 1003", "refused: you cannot remove yourself (you would lock yourself out); ask another admin"),
        ("/users rm discord:1003", "you cannot remove yourself"),
        ("/users role 1003 trader", "refused: you cannot demote yourself (you would lock yourself out)"),
        ("/users role discord:1003 viewer", "you cannot demote yourself"),
        ("/users add telegram:1001 admin", "telegram:1001 is already a viewer; change it with /users role"),
        ("/users role telegram:4242 viewer", "telegram:4242 has no role (not in the users table)"),
        ("/users rm telegram:4242", "telegram:4242 has no role"),
        ("/users add @eve viewer", "'@eve' is not a user: a numeric id, or PLATFORM:ID"),
        ("/users add telegram:eve viewer", "is not a user"),
        ("/users add -5 viewer", "is not a user"),
        ("/users add 99999999999999999999 viewer", "is not a user"),
        ("/users add 9223372036854775808 viewer", "is not a user"),  # 2**63: does not fit the column
        ("/users add console:7 admin", "users live on telegram or discord"),
        ("/users add slack:7 admin", "users live on telegram or discord"),
        ("/users add 7 root", "'root' is not a role; roles: viewer, trader, admin"),
        ("/users add 7", "usage: /users add [PLATFORM:]ID ROLE [NAME]"),
        ("/users rm 7 now", "usage: /users rm [PLATFORM:]ID"),
        ("/users role 7", "usage: /users role [PLATFORM:]ID ROLE"),
        ("/users list all", "usage: /users list | add"),
        ("/users drop 7", "usage: /users list | add"),
    ],
)
async def test_users_bad_input_and_lock_out_are_refused_without_writes(
    services: Services, core: CommandCore, message: str, answer: str
) -> None:
    reply = await refused_without_writes(services, core, ADMIN, message)
    assert answer in reply.text, reply.text


async def test_the_console_admin_names_the_platform(services: Services) -> None:
    core = CommandCore(services)
    reply = await core.handle(CONSOLE_USER, "/users add 77 viewer")
    assert not reply.ok and "write telegram:ID or discord:ID (you are on the console)" in reply.text
    assert (await core.handle(CONSOLE_USER, "/users add telegram:77 viewer")).ok
    assert services.users.role("telegram", 77) is Role.VIEWER


async def test_another_admin_may_demote_an_admin_and_grant_checks_the_role_itself(
    services: Services, core: CommandCore
) -> None:
    other = Caller("discord", 2003, "bob")
    services.users.grant("discord", 2003, Role.ADMIN, at=services.clock.now())
    assert (await core.handle(other, "/users role discord:1003 viewer")).ok
    assert services.users.role("discord", 1003) is Role.VIEWER
    # What a button calls directly, without handle(): a demoted admin is refused there too.
    reply = core.grant_user(ADMIN, "telegram", 9, Role.VIEWER)
    assert not reply.ok and reply.text == "refused: adding a user needs the admin role; you are a viewer."
    assert services.users.role("telegram", 9) is None
    assert core.grant_user(other, "telegram", 9, Role.VIEWER).ok
    assert not core.grant_user(other, "telegram", 9, Role.ADMIN).ok  # already a viewer: not changed
    assert services.users.role("telegram", 9) is Role.VIEWER


async def test_a_chat_subscribes_to_a_watchlist_or_all_and_unsubscribes(services: Services, core: CommandCore) -> None:
    in_chat = dataclasses.replace(TRADER, chat_id=-100777)
    other = dataclasses.replace(ADMIN, chat_id=-100777)  # same number on Discord: another chat
    reply = await core.handle(in_chat, "/subscribe crypto")
    assert reply.ok and reply.text == "this chat now receives the cards of watchlist crypto"
    assert (await core.handle(in_chat, "/subscribe CRYPTO")).text == "this chat already receives crypto"
    assert (await core.handle(in_chat, "/subscribe all")).ok
    assert services.chats.subscriptions("telegram", -100777) == ["all", "crypto"]
    assert services.chats.chats_for("telegram", "us") == [-100777]  # through "all"
    assert services.chats.chats_for("discord", "crypto") == []
    bad = await refused_without_writes(services, core, in_chat, "/subscribe nosuch")
    assert "no watchlist 'nosuch'" in bad.text and "crypto" in bad.text
    assert not (await core.handle(other, "/unsubscribe crypto")).ok  # Discord's chat has none
    reply = await core.handle(in_chat, "/unsubscribe crypto")
    assert reply.ok and reply.data["removed"] == ["crypto"]
    assert services.chats.chats_for("telegram", "crypto") == [-100777]  # still "all"
    assert (await core.handle(in_chat, "/unsubscribe")).data["removed"] == ["all"]
    assert services.chats.chats_for("telegram", "crypto") == []
    actions = [e.action for e in services.signals.audit_log(limit=10) if e.actor == TRADER.actor]
    assert actions == ["unsubscribe", "unsubscribe", "subscribe", "subscribe"]


async def test_the_console_has_no_chat_to_subscribe(services: Services) -> None:
    reply = await CommandCore(services).handle(CONSOLE_USER, "/subscribe all")
    assert not reply.ok and reply.text == "/subscribe works in a chat (Telegram, Discord): this console has no chat id"


async def test_help_lists_only_what_the_caller_may_run(core: CommandCore) -> None:
    viewer = (await core.handle(VIEWER, "/help")).text
    admin = (await core.handle(ADMIN, "/help")).text
    assert "you are viewer" in viewer and "/signals" in viewer
    assert "/approve" not in viewer and "/pause" not in viewer
    assert all(command.usage in admin for command in COMMANDS.values())


# --- hostile and mistaken input ---


async def test_unknown_command_answers_with_the_help(services: Services, core: CommandCore) -> None:
    reply = await refused_without_writes(services, core, TRADER, "/sell everything")
    assert reply.text.startswith("Unknown command /sell.")
    assert "/approve ID" in reply.text


async def test_an_overlong_unknown_command_is_not_echoed_in_full(services: Services, core: CommandCore) -> None:
    reply = await refused_without_writes(services, core, ADMIN, "/" + "x" * 900)
    assert "x" * 33 not in reply.text


async def test_a_message_over_the_limit_is_refused_unread(services: Services, core: CommandCore) -> None:
    message = "/watch add big " + " ".join(["BTC/USD"] * 200)
    assert len(message) > MAX_INPUT
    reply = await refused_without_writes(services, core, ADMIN, message)
    assert reply.text == f"message too long ({len(message)} characters, at most {MAX_INPUT})"
    assert services.watchlists.get("big") is None


@pytest.mark.parametrize("message", ["", "   ", "\n\t", "help", "approve abcd1234", "hello /help"])
async def test_empty_or_slashless_text_gets_the_help(services: Services, core: CommandCore, message: str) -> None:
    reply = await refused_without_writes(services, core, TRADER, message)
    assert reply.text.startswith("Commands start with '/'.")
    assert "tradeops commands (you are trader)" in reply.text


async def test_telegram_bot_suffix_is_ignored(core: CommandCore) -> None:
    reply = await core.handle(VIEWER, "/help@tradeops_bot")
    assert reply.ok and "tradeops commands" in reply.text
    assert (await core.handle(VIEWER, "/SIGNALS@tradeops_bot pending")).ok


async def test_approve_without_an_id_says_how_and_what_is_pending(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    for verb in ("approve", "reject"):
        reply = await refused_without_writes(services, core, TRADER, f"/{verb}")
        assert reply.text == f"usage: /{verb} ID. Pending: {signal_id}."


async def test_usage_with_nothing_pending_says_so(services: Services, core: CommandCore) -> None:
    reply = await refused_without_writes(services, core, TRADER, "/approve")
    assert reply.text.endswith("Nothing is pending.")


@pytest.mark.parametrize(
    "bad_id",
    [
        "../x",
        "../../etc/passwd",
        "';",  # the first word of "'; drop table signals; --"
        "abc",  # too short
        "dlbl-mdx2",
        "ｄｌｂｌｍｄｘ２",  # full-width look-alikes
        "١٢٣٤٥٦",  # Arabic-Indic digits: digits to Unicode, not to the id format
        "abcd\u200b1234",  # a zero-width space inside
        "a" * 41,
        "z" * 500,
    ],
    ids=lambda s: repr(s[:12]),
)
async def test_malformed_signal_ids_are_refused_before_any_lookup(
    services: Services, core: CommandCore, bad_id: str
) -> None:
    signal_id = await eth_signal(core)
    for verb in ("approve", "reject"):
        reply = await refused_without_writes(services, core, TRADER, f"/{verb} {bad_id}")
        assert "is not a signal id (4-40 letters and digits)" in reply.text
        assert f"Pending: {signal_id}." in reply.text
        assert len(reply.text) < 200  # a long id is not echoed back in full
    assert services.signals.get(signal_id) is not None
    assert services.signals.get(signal_id).status == SignalStatus.PENDING.value  # type: ignore[union-attr]


async def test_sql_in_a_command_is_just_words(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    await refused_without_writes(services, core, TRADER, "/approve '; drop table signals; --")
    await refused_without_writes(services, core, TRADER, f"/approve {signal_id}'--")
    assert services.signals.get(signal_id) is not None


async def test_an_unknown_id_says_so_and_lists_the_pending(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    reply = await refused_without_writes(services, core, TRADER, "/approve zzzz9999")
    assert reply.text == f"no signal zzzz9999. Pending: {signal_id}."


async def test_ids_are_case_insensitive(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    reply = await core.handle(TRADER, f"/reject {signal_id.upper()}")
    assert reply.ok, reply.text
    assert reply.data == {"signal_id": signal_id, "status": "rejected"}


async def test_reject_keeps_the_reason(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    reply = await core.handle(TRADER, f"/reject {signal_id} chasing a 2% candle")
    assert reply.ok and reply.text == f"{signal_id} rejected by telegram:1002: chasing a 2% candle"
    approval = services.signals.approval(signal_id)
    assert approval is not None
    assert (approval.decision, approval.actor, approval.reason) == ("rejected", "telegram:1002", "chasing a 2% candle")
    assert entry_orders(services.engine, signal_id) == []
    again = await refused_without_writes(services, core, TRADER, f"/approve {signal_id}")
    assert again.text.startswith(f"already decided: {signal_id} rejected by telegram:1002 at ")
    assert again.text.endswith(" UTC: chasing a 2% candle")


@pytest.mark.parametrize("symbol", ["DOGE/USD", "NOPE"])
async def test_signal_for_an_unknown_symbol_lists_the_valid_ones(
    services: Services, core: CommandCore, symbol: str
) -> None:
    reply = await refused_without_writes(services, core, TRADER, f"/signal {symbol}")
    assert f"unknown symbol {symbol!r}" in reply.text
    for valid in ("BTC/USD", "ETH/USDT", "510300.SH", "600519.SH", "AMZN", "SPY"):
        assert valid in reply.text


async def test_a_second_signal_at_the_same_moment_says_it_was_decided_before_and_why(core: CommandCore) -> None:
    first = await core.handle(TRADER, "/signal BTC/USD")
    again = await core.handle(TRADER, "/signal BTC/USD")
    assert first.text.startswith("BTC/USD: hold") and "decided before" not in first.text
    signal_id = first.data["signal_id"]
    assert again.data["signal_id"] == signal_id
    assert again.text.startswith(f"BTC/USD: hold (decided before at this moment as signal {signal_id}: ")


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("/signal", "usage: /signal SYMBOL"),
        ("/signal BTC/USD ETH/USDT", "usage: /signal SYMBOL"),
        ("/signal $(reboot)", "'$(reboot)' is not a symbol"),
        ("/signal ../../x", "unknown symbol '../../x'"),  # plausible characters, still looked up, not found
    ],
)
async def test_signal_needs_exactly_one_known_symbol(
    services: Services, core: CommandCore, message: str, hint: str
) -> None:
    reply = await refused_without_writes(services, core, TRADER, message)
    assert hint in reply.text, reply.text


async def test_chart_without_a_position_draws_no_entry_or_stop(
    services: Services, core: CommandCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.render

    drawn: list[dict[str, Any]] = []
    real = bot.render.signal_chart

    def spy(*args: Any, **kwargs: Any) -> Any:
        drawn.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(bot.render, "signal_chart", spy)
    reply = await core.handle(VIEWER, "/chart ETH/USDT 4h")
    assert reply.ok and reply.images, reply.text
    assert [(d["side"], d["entry"], d["stop"], d["take_profits"]) for d in drawn] == [(None, None, None, [])]


async def test_chart_finer_than_the_data_lists_the_valid_timeframes(services: Services, core: CommandCore) -> None:
    reply = await refused_without_writes(services, core, VIEWER, "/chart ETH/USDT 15m")
    assert reply.text == "ETH/USDT has 1h bars at the finest; valid: 1h, 4h, 1d, 1w"
    daily = await refused_without_writes(services, core, VIEWER, "/chart 600519.SH 1h")
    assert daily.text.startswith("600519.SH has 1d bars at the finest; valid: 1d")
    assert "1h" not in daily.text.split("valid:")[1]


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("/chart", "usage: /chart SYMBOL [TIMEFRAME]"),
        ("/chart ETH/USDT 1h extra", "usage: /chart SYMBOL [TIMEFRAME]"),
        ("/chart ETH/USDT 7x", "unknown timeframe '7x'; valid timeframes: 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w"),
        ("/chart XRP/USD", "unknown symbol 'XRP/USD'"),
    ],
)
async def test_chart_bad_arguments(services: Services, core: CommandCore, message: str, hint: str) -> None:
    reply = await refused_without_writes(services, core, VIEWER, message)
    assert hint in reply.text, reply.text


@pytest.mark.parametrize(
    "message", ["/chart ETH/USDT 2h", "/chart BTC/USD 15m", "/chart XRP/USD", "/chart ETH/USDT 7x"]
)
async def test_chart_errors_read_in_one_style(services: Services, core: CommandCore, message: str) -> None:
    reply = await refused_without_writes(services, core, VIEWER, message)
    assert reply.bad_input and not reply.text.startswith("/"), reply.text


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("/watch add Bad!Name BTC/USD", "invalid watchlist name"),
        ("/watch add -x BTC/USD", "invalid watchlist name"),
        ("/watch add " + "n" * 40 + " BTC/USD", "invalid watchlist name"),
        ("/watch add mine", "usage: /watch add NAME SYMBOL..."),
        ("/watch add", "usage: /watch add NAME"),
        ("/watch add mine DOGE/USD", "valid symbols"),
        ("/watch add mine BTC/USD AMZN", "mine is on replay-crypto, not replay-us:AMZN"),  # one venue per list
        ("/watch add mine <script>", "is not a symbol"),
        ("/watch add crypto 600519.SH", "crypto is on replay-crypto, not replay-cn:600519.SH"),
        ("/watch add mine nosuch:BTC/USD", "unknown venue 'nosuch'; venues: replay-cn, replay-crypto, replay-us"),
        ("/watch add mine replay-us:BTC/USD", "unknown symbol 'BTC/USD' on venue 'replay-us'"),
        ("/watch rm nosuch", "no watchlist 'nosuch'"),
        ("/watch rm crypto SPY", "SPY not in crypto"),
        ("/watch rm cn-etf 510300.SH", "that would leave cn-etf empty"),
        ("/watch frobnicate", "usage: /watch list | add"),
    ],
)
async def test_watch_bad_input(services: Services, core: CommandCore, message: str, hint: str) -> None:
    before = services.watchlists.all()
    reply = await refused_without_writes(services, core, TRADER, message)
    assert hint in reply.text, reply.text
    assert services.watchlists.all() == before


async def test_signals_with_a_bad_filter(services: Services, core: CommandCore) -> None:
    reply = await refused_without_writes(services, core, VIEWER, "/signals bogus")
    assert reply.text == "usage: /signals [pending|today|all|holds] [PAGE]"


async def test_scan_of_an_unknown_watchlist(services: Services, core: CommandCore) -> None:
    reply = await refused_without_writes(services, core, TRADER, "/scan nosuch")
    assert reply.text == "no watchlist 'nosuch'; watchlists: cn-etf, cn-stocks, crypto, us"


# --- the flows, on the shipped replay data ---


async def test_scan_proposes_a_card_whose_buttons_carry_only_the_id(services: Services, core: CommandCore) -> None:
    reply = await core.handle(TRADER, "/scan")
    assert reply.ok, reply.text
    assert reply.text.startswith("scan at 2021-07-06T06:00:05+00:00")
    eth = next(c for c in reply.data["cards"] if c["symbol"] == "ETH/USDT")
    assert [eth[k] for k in ("side", "venue", "timeframe", "risk_decision")] == ["BUY", "replay-crypto", "1h", "allow"]
    assert f"BUY ETH/USDT on replay-crypto [1h]  id {eth['signal_id']}" in reply.text
    # A button is a label, an action and an opaque id: nothing a presser could forge a trade from.
    assert [f.name for f in dataclasses.fields(Button)] == ["label", "action", "signal_id"]
    pending = reply.data["pending"]
    assert eth["signal_id"] in pending
    assert [(b.action, b.signal_id) for b in reply.buttons] == [
        (action, signal_id) for signal_id in pending for action in ("approve", "reject")
    ]
    assert all(SIGNAL_ID.match(b.signal_id) for b in reply.buttons)
    assert len(reply.images) == len(pending)
    for image in reply.images:
        assert_png(image)
    assert any(eth["signal_id"] in image for image in reply.images)
    json.dumps(reply.to_json())  # no default=: the structured reply is plain JSON as it stands


async def test_a_second_scan_of_the_same_bar_proposes_nothing_new(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    again = await core.handle(TRADER, "/scan crypto")
    assert f"{signal_id} pending" in again.text
    assert again.buttons == [] and again.data["pending"] == []  # the card went out once


async def test_a_symbol_with_a_pending_signal_gets_no_second_one(services: Services, core: CommandCore) -> None:
    """/signal then /scan of the same symbol (issue 7): one card, and the second asker is told
    which signal to answer first."""
    first = await core.handle(TRADER, "/signal ETH/USDT")
    assert first.ok and first.data["status"] == "pending", first.text
    signal_id = first.data["signal_id"]
    scan = await core.handle(TRADER, "/scan crypto")
    assert scan.data["pending"] == [] and [c["symbol"] for c in scan.data.get("cards", [])] != ["ETH/USDT"]
    assert f"{signal_id} pending: ETH/USDT already has a pending BUY signal {signal_id}" in scan.text
    assert f"answer it first: /approve {signal_id} or /reject {signal_id}" in scan.text
    assert isinstance(services.clock, SimulatedClock)
    services.clock.advance(timedelta(minutes=1))  # a new on-demand signal id, same symbol
    again = await core.handle(TRADER, "/signal ETH/USDT")
    assert again.text.startswith(f"ETH/USDT: ETH/USDT already has a pending BUY signal {signal_id}"), again.text
    assert {b.signal_id for b in again.buttons} == {signal_id}
    assert [r.id for r in services.signals.recent(status=SignalStatus.PENDING)] == [signal_id]

    # Once it is answered, the symbol may be proposed again.
    await core.handle(TRADER, f"/reject {signal_id}")
    rescan = await core.handle(TRADER, "/scan crypto")
    assert [c["symbol"] for c in rescan.data["cards"]] == ["ETH/USDT"], rescan.text


async def test_approve_executes_once_and_the_second_answer_is_told(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    reply = await core.handle(TRADER, f"/approve {signal_id}")
    assert reply.ok, reply.text
    assert (
        reply.text == f"{signal_id} approved by telegram:1002: order {signal_id} placed; fills at the next bar's open"
    )
    assert reply.data == {"signal_id": signal_id, "status": SignalStatus.EXECUTED.value}
    assert len(entry_orders(services.engine, signal_id)) == 1

    for caller, verb in ((TRADER, "approve"), (ADMIN, "approve"), (ADMIN, "reject")):
        again = await refused_without_writes(services, core, caller, f"/{verb} {signal_id}")
        assert again.text.startswith(f"already decided: {signal_id} approved by telegram:1002 at ")
        assert again.text.endswith(f" UTC: order {signal_id} placed; fills at the next bar's open")
    assert len(entry_orders(services.engine, signal_id)) == 1
    pending = await core.handle(VIEWER, "/signals pending")
    assert signal_id not in pending.text


async def test_look_alike_characters_never_reach_an_id(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    kelvin = signal_id.replace("k", "\u212a") if "k" in signal_id else signal_id[:-1] + "\u212a"
    for message in (f"/approve {kelvin}", f"/approve {signal_id.upper()}\u0131", "/\u212aill", f"/reject {kelvin} no"):
        reply = await refused_without_writes(services, core, TRADER, message)
        assert "is not a signal id" in reply.text or "Unknown command" in reply.text, reply.text
    reply = await refused_without_writes(services, core, TRADER, "/watch add \u212aey BTC/USD")
    assert "outside ASCII" in reply.text
    assert services.signals.get(signal_id).status == SignalStatus.PENDING.value  # type: ignore[union-attr]
    assert (await core.handle(TRADER, f"/approve {signal_id.upper()}")).ok  # plain ASCII case still folds


async def test_an_expired_signal_cannot_be_approved(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    signal_id = await eth_signal(core)
    clock.advance_to(datetime(2021, 7, 6, 6, 20, tzinfo=UTC))  # past the 15-minute approval window
    reply = await core.handle(TRADER, f"/approve {signal_id}")
    assert not reply.ok
    assert reply.text == f"already decided: {signal_id} expired: no decision in time"
    assert entry_orders(services.engine, signal_id) == []


async def test_the_kill_switch_blocks_new_entries_until_resumed(services: Services, core: CommandCore) -> None:
    paused = await core.handle(ADMIN, "/pause fire drill")
    assert paused.ok and "kill switch ON" in paused.text and "fire drill" in paused.text
    risk = await core.handle(VIEWER, "/risk")
    assert "kill switch: ON (fire drill, by discord:1003)" in risk.text and risk.data["kill_switch"] is True

    scan = await core.handle(TRADER, "/scan crypto")
    assert scan.ok and scan.buttons == [] and scan.data["pending"] == []
    blocked = [s for s in services.signals.recent() if s.symbol == "ETH/USDT"]
    assert [s.status for s in blocked] == [SignalStatus.BLOCKED.value]
    assert f"{blocked[0].id} blocked" in scan.text
    assert any(c["rule"] == "kill_switch" and not c["passed"] for c in blocked[0].card["risk"])

    resumed = await core.handle(ADMIN, "/resume")
    assert resumed.ok and "kill switch off" in resumed.text
    assert (await core.handle(VIEWER, "/risk")).data["kill_switch"] is False
    fresh = await core.handle(TRADER, "/signal ETH/USDT")
    assert fresh.data["status"] == SignalStatus.PENDING.value, fresh.text
    assert any(c["rule"] == "kill_switch" and c["passed"] for c in fresh.data["cards"][0]["risk"])
    audit = [(a.actor, a.action) for a in services.signals.audit_log()]
    assert ("discord:1003", "pause") in audit and ("discord:1003", "resume") in audit


async def test_positions_orders_pnl_risk_and_chart_after_a_fill(
    services: Services, core: CommandCore, clock: SimulatedClock
) -> None:
    signal_id = await eth_signal(core)
    assert (await core.handle(TRADER, f"/approve {signal_id}")).ok
    orders = await core.handle(VIEWER, "/orders")
    # The entry fills when its bar is final; its bracket (stop and three targets) rests with it.
    bracket = {f"{signal_id}-sl", f"{signal_id}-tp1", f"{signal_id}-tp2", f"{signal_id}-tp3"}
    status = {o["id"]: o["status"] for o in orders.data["orders"]}
    assert status == {signal_id: "pending"} | dict.fromkeys(bracket, "pending")

    clock.advance_to(datetime(2021, 7, 6, 8, 0, 5, tzinfo=UTC))
    await services.scanner.tick(["replay-crypto"])
    orders = await core.handle(VIEWER, "/orders")
    status = {o["id"]: o["status"] for o in orders.data["orders"]}
    assert status == {signal_id: "filled"} | dict.fromkeys(bracket, "pending"), orders.text
    assert "ETH/USDT  buy" in orders.text and "stop 2245.37" in orders.text and "limit 2429.22" in orders.text

    positions = await core.handle(VIEWER, "/positions")
    assert [(p["venue"], p["symbol"]) for p in positions.data["positions"]] == [("replay-crypto", "ETH/USDT")]
    assert "stop 2245.37 TPs 2429.22/2502.76/2576.30 hit 0" in positions.text

    pnl = await core.handle(VIEWER, "/pnl")
    assert pnl.ok and pnl.images, pnl.text
    for image in pnl.images:
        assert_png(image)
    usdt = next(row for row in pnl.data["pnl"] if row["currency"] == "USDT")
    # The long on the perpetual was held across the 08:00 funding mark: at the assumed +0.01% per
    # 8 h it paid 0.01% of its value, realized as it was paid (the only realized P&L so far).
    with services.engine.connect() as db:
        (funding,) = db.execute(text("select amount, ts from cash_ledger where kind = 'funding'")).all()
    paid = Decimal(str(funding[0]))
    assert paid < 0 and str(funding[1]).startswith("2021-07-06 08:00:00")
    assert usdt["equity_start"] == "100000.00" and Decimal(usdt["realized"]) == paid.quantize(Decimal("0.01"))
    assert usdt["equity"] != usdt["equity_start"]  # marked to market
    # /positions marks with the same quote as the account behind /pnl: the same unrealized P&L.
    (held,) = positions.data["positions"]
    assert held["unrealized"] == usdt["unrealized"]
    # JSON money is at cents and a price at the instrument's tick (0.01 for ETH/USDT), never 28 digits.
    assert re.fullmatch(r"-?\d+\.\d\d", held["unrealized"]) and re.fullmatch(r"\d+\.\d\d", held["avg_cost"]), held
    assert all(re.fullmatch(r"-?\d+\.\d\d", usdt[k]) for k in ("equity", "realized", "unrealized")), usdt

    # P&L counts from what the ledger says was deposited, not from today's setting: a restart with
    # TRADEOPS_PAPER_CASH_USDT doubled still shows the 100,000 that went in.
    services.settings = services.settings.model_copy(update={"paper_cash_usdt": Decimal(200_000)})
    again = await core.handle(VIEWER, "/pnl")
    usdt_again = next(row for row in again.data["pnl"] if row["currency"] == "USDT")
    assert usdt_again["equity_start"] == "100000.00"

    risk = await core.handle(VIEWER, "/risk")
    assert "profile medium" in risk.text and "kill switch: off" in risk.text
    usdt_today = next(d for d in risk.data["today"] if d["currency"] == "USDT")
    assert (usdt_today["trades_today"], usdt_today["trades_left"]) == ("1", "4")
    assert "1/5     4     1/5" in risk.text  # trades, left, positions

    chart = await core.handle(VIEWER, "/chart ETH/USDT 4h")
    assert chart.ok and chart.text == "ETH/USDT 4h"
    assert_png(chart.images[0])
    for reply in (orders, positions, pnl, risk, chart):
        json.dumps(reply.to_json())


async def test_watchlist_round_trip(services: Services, core: CommandCore) -> None:
    created = await core.handle(TRADER, "/watch add Majors btc/usd")
    assert created.ok and created.text == "watchlist majors created on replay-crypto (1h): BTC/USD", created.text
    grown = await core.handle(TRADER, "/watch add majors ETH/USDT BTC/USD")
    assert grown.text == "majors: BTC/USD ETH/USDT"  # a repeat is not added twice
    listed = await core.handle(VIEWER, "/watch list")
    assert "majors" in listed.data["watchlists"]
    assert "BTC/USD ETH/USDT" in listed.text
    shrunk = await core.handle(TRADER, "/watch rm majors btc/usd")
    assert shrunk.text == "majors: ETH/USDT"
    assert (await core.handle(TRADER, "/scan majors")).ok
    removed = await core.handle(TRADER, "/watch rm majors")
    assert removed.text == "watchlist majors removed"
    assert "majors" not in (await core.handle(VIEWER, "/watch list")).data["watchlists"]
    actions = [a.action for a in reversed(services.signals.audit_log()) if a.actor == "telegram:1002"]
    assert actions == ["watch_add", "watch_add_symbols", "watch_rm_symbols", "scan", "watch_rm"]


async def test_signals_lists_pending_with_buttons_and_all_with_history(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    pending = await core.handle(VIEWER, "/signals")
    assert {s["id"] for s in pending.data["signals"]} >= {signal_id}
    assert Button("Approve", "approve", signal_id) in pending.buttons
    await core.handle(TRADER, f"/reject {signal_id}")
    every = await core.handle(VIEWER, "/signals all")
    assert {"id": signal_id, "symbol": "ETH/USDT", "status": "rejected"} in every.data["signals"]
    assert not any(b.signal_id == signal_id for b in every.buttons)
    today = await core.handle(VIEWER, "/signals today")
    assert signal_id in today.text


async def test_the_console_user_is_the_local_admin_without_a_row(services: Services) -> None:
    assert services.users.role(CONSOLE_USER.platform, CONSOLE_USER.user_id) is None
    core = CommandCore(services)
    assert (await core.handle(CONSOLE_USER, "/pause")).ok
    assert "kill switch: ON (paused by an admin, by console:0)" in render(await core.handle(CONSOLE_USER, "/risk"))


async def test_two_answers_at_once_first_wins(services: Services, core: CommandCore) -> None:
    signal_id = await eth_signal(core)
    replies = await asyncio.gather(
        core.handle(TRADER, f"/approve {signal_id}"),
        CommandCore(services).handle(ADMIN, f"/reject {signal_id} no"),  # another transport's core
    )
    winners = [r for r in replies if r.ok]
    assert len(winners) == 1, [r.text for r in replies]
    loser = next(r for r in replies if not r.ok)
    assert "already decided" in loser.text
    approval = services.signals.approval(signal_id)
    assert approval is not None
    assert len(entry_orders(services.engine, signal_id)) == (1 if approval.decision == "approved" else 0)
    assert winners[0].data["status"] == services.signals.get(signal_id).status  # type: ignore[union-attr]


@contextlib.contextmanager
def console_keys() -> Iterator[tuple[Any, ConsolePrompt]]:
    """A ConsolePrompt reading a pipe (what a test types) and writing nowhere."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    with create_pipe_input() as pipe:
        yield pipe, ConsolePrompt(pipe=pipe, output=DummyOutput())


async def test_the_interactive_console(services: Services) -> None:
    out: list[str] = []
    with console_keys() as (keys, prompt):
        keys.send_text("/signals\r\r   \r/pause drill\r/quit\r/resume\r")
        await interactive(services, echo=out.append, prompt=prompt)
    assert out[0] == "tradeops console at 2021-07-06T06:00:05+00:00 (simulated clock)"
    assert out[2:] == [
        "no pending signals",
        "kill switch ON: no new entries until /resume (drill). Exits keep running.",
    ]
    assert services.signals.get_value(KILL_SWITCH_KEY)["paused"] is True  # type: ignore[index]  # not resumed

    out.clear()
    with console_keys() as (keys, prompt):
        keys.send_text("\x04")  # Ctrl-D leaves quietly
        await interactive(services, echo=out.append, prompt=prompt)
    assert out[-1] == ""


async def test_console_history_and_ctrl_c_at_the_prompt(services: Services) -> None:
    out: list[str] = []
    with console_keys() as (keys, prompt):
        # Ctrl-C drops a half-typed line and gives a fresh prompt; Up brings back the last command.
        keys.send_text("/pause half typed\x03/risk\r")
        replied = asyncio.Event()

        def echo(text: str) -> None:
            out.append(text)
            if len(out) >= 3:
                replied.set()

        console = asyncio.create_task(interactive(services, echo=echo, prompt=prompt))
        await asyncio.wait_for(replied.wait(), 30)
        await asyncio.sleep(0.2)  # the next prompt has loaded its history
        keys.send_text("\x1b[A")
        await asyncio.sleep(0.2)
        keys.send_text("\r/quit\r")
        await asyncio.wait_for(console, 30)
    replies = out[2:]
    assert len(replies) == 2 and replies[0] == replies[1] and "profile medium" in replies[0]
    assert services.signals.get_value(KILL_SWITCH_KEY) is None  # the interrupted /pause never ran
    assert list(prompt.session.history.load_history_strings()) == ["/quit", "/risk"]  # newest first, a repeat kept once


async def test_ctrl_c_cancels_the_running_command_and_returns_to_the_prompt(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = CommandCore.handle
    started = asyncio.Event()

    async def slow_scan(self: CommandCore, caller: Caller, text: str) -> Reply:
        if text.startswith("/scan"):
            started.set()
            await asyncio.sleep(3600)
        return await handle(self, caller, text)

    monkeypatch.setattr(CommandCore, "handle", slow_scan)
    out: list[str] = []

    async def press_ctrl_c() -> None:
        await started.wait()
        os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends for Ctrl-C

    with console_keys() as (keys, prompt):
        keys.send_text("/scan\r/signals\r/quit\r")
        pressing = asyncio.create_task(press_ctrl_c())
        await asyncio.wait_for(interactive(services, echo=out.append, prompt=prompt), 30)
        await pressing
    assert out[2:] == ["cancelled", "no pending signals"]  # the console went on


async def test_yes_no_asks_again_and_ignores_what_was_typed_ahead() -> None:
    with console_keys() as (keys, prompt):

        async def answered(question: str, *typed: str) -> bool:
            prompt.asking.clear()
            asked = asyncio.create_task(prompt.ask_yes_no(question))
            await asyncio.wait_for(prompt.asking.wait(), 10)
            for text in typed:
                keys.send_text(text)
            return await asyncio.wait_for(asked, 10)

        assert await answered("approve x?", "maybe\r", "\r", "y\r") is True  # asked three times
        keys.send_text("y\r")  # typed while the card printed: dropped when the question comes
        await asyncio.sleep(0.05)
        assert await answered("approve y?", "n\r") is False


# --- the command line ---


@pytest.fixture
def quiet_logging() -> Iterator[None]:
    with restored_logging():
        yield


@pytest.mark.usefixtures("quiet_logging")
def test_chat_command_prints_json(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["chat", "--data-dir", str(tmp_path / "d"), "-c", "/positions", "--json"])
    assert result.exit_code == 0, result.output
    reply = json.loads(result.stdout)
    assert reply == {"ok": True, "text": "no open positions", "images": [], "buttons": [], "data": {"positions": []}}

    failed = runner.invoke(app, ["chat", "--data-dir", str(tmp_path / "d"), "-c", "/approve ../x", "--json"])
    assert failed.exit_code == 2  # a bad argument
    assert json.loads(failed.stdout)["ok"] is False


@pytest.mark.usefixtures("quiet_logging")
def test_scan_command_prints_json_and_remembers_the_clock(tmp_path: Path) -> None:
    runner = CliRunner()
    data_dir = str(tmp_path / "d")
    result = runner.invoke(app, ["scan", "--data-dir", data_dir, "--json"])
    assert result.exit_code == 0, result.output
    reply = json.loads(result.stdout)
    assert reply["ok"] is True
    assert reply["text"].startswith("scan at 2021-07-06T00:00:00+00:00")
    for name in ("cn-etf", "cn-stocks", "crypto", "us"):
        assert f"{name}: " in reply["text"]
    assert set(reply["data"]["pending"]) == {b["signal_id"] for b in reply["buttons"]}

    one = runner.invoke(app, ["scan", "crypto", "--data-dir", data_dir, "--json"])
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["text"].splitlines()[1].startswith("crypto: ")
    missing = runner.invoke(app, ["scan", "nosuch", "--data-dir", data_dir, "--json"])
    assert missing.exit_code == 2  # bad input, as everywhere else on the command line
    assert "no watchlist 'nosuch'" in json.loads(missing.stdout)["text"]


async def test_scan_and_signal_say_when_the_market_is_closed_and_when_it_opens(core: CommandCore) -> None:
    # 06:00 UTC on Tuesday 2021-07-06: New York opens at 13:30 UTC; crypto never closes.
    note = "market closed, opens 2021-07-06T13:30:00+00:00: entries fill at that open, within the drift limit"
    signal = await core.handle(TRADER, "/signal SPY")
    assert f"notice: {note}" in signal.text, signal.text
    scan = await core.handle(TRADER, "/scan us")
    assert "us: 2 symbols" in scan.text and note in scan.text, scan.text
    crypto = await core.handle(TRADER, "/scan crypto")
    assert "market closed" not in crypto.text


async def test_a_command_without_arguments_refuses_extra_words(core: CommandCore) -> None:
    for command in ("/positions x", "/pnl ; ls", "/risk 1", "/llm now"):
        reply = await core.handle(VIEWER, command)
        name = command.split()[0]
        assert not reply.ok and reply.text == f"{name} takes no arguments; usage: {name}", reply.text


async def test_the_console_reads_plain_lines_when_stdin_is_not_a_terminal(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tradeops chat < commands.txt`: every line runs, escape sequences are text, EOF leaves."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("/signals\n\x1b[31mred\n/pause from a file\n"))
    out: list[str] = []
    await interactive(services, echo=out.append)
    assert out[2] == "no pending signals"
    assert "Commands start with '/'" in out[3]
    assert out[4].startswith("kill switch ON") and out[-1] == ""


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (
            ("abc", "executed"),
            {"decision": "approved", "actor": "al", "reason": "order abc placed; fills at 5"},
            "abc approved by al: order abc placed; fills at 5",
        ),
        (
            ("abc", "executed"),
            {"decision": "approved", "actor": "al", "reason": "order abc filled at 2501.5"},
            "abc approved by al: order abc filled at 2501.5",
        ),
        (("abc", "rejected"), {"decision": "rejected", "actor": "bo", "reason": "rejected"}, "abc rejected by bo"),
        (("abc", "rejected"), {"decision": "rejected", "actor": "bo", "reason": "late"}, "abc rejected by bo: late"),
        (("abc", "expired"), {"decision": "expired", "actor": "expiry"}, "abc expired: no decision in time"),
        ((None, "expired"), {}, "EXPIRED: no decision in time"),
        (
            (None, "aborted"),
            {
                "decision": "approved",
                "actor": "al",
                "at": datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC),
                "reason": "price drifted",
            },
            "APPROVED by al at 2021-07-06 06:00 UTC, but no order was placed (aborted: price drifted)",
        ),
        ((None, "approved"), {"decision": "approved", "actor": "al"}, "APPROVED by al: placing the order"),
    ],
)
def test_a_decision_is_said_once_in_plain_words(args: tuple[Any, ...], kwargs: dict[str, Any], expected: str) -> None:
    from bot.render import decision_text

    text = decision_text(*args, **kwargs)
    assert text == expected
    assert "now " not in text and "executed" not in text


def test_a_card_shows_its_times_in_the_exchange_zone_with_utc_beside() -> None:
    from bot.render import card_text

    card = {"signal_id": "abcd1234", "side": "BUY", "symbol": "SPY", "venue": "replay-us", "entry": "428"}
    us = card_text(card | {"expires_at": "2021-07-08T14:15:05+00:00", "exchange_tz": "America/New_York"})
    assert "unanswered, it expires 2021-07-08 10:15 EDT (14:15 UTC): no order" in us
    cn = card_text(card | {"expires_at": "2021-07-08T02:00:00+00:00", "exchange_tz": "Asia/Shanghai"})
    assert "expires 2021-07-08 10:00 CST (02:00 UTC)" in cn
    crypto = card_text(card | {"expires_at": "2021-07-08T02:00:00+00:00"})  # a card stored before the zone
    assert "unanswered, it expires 2021-07-08 02:00 UTC: no order" in crypto


async def test_a_scan_leaves_out_watchlists_on_venues_this_process_does_not_run(
    services: Services, core: CommandCore
) -> None:
    # As with a live venue configured on a data dir that holds the shipped replay watchlists.
    services.venues.pop("replay-cn")
    reply = await core.handle(TRADER, "/scan")
    assert reply.ok, reply.text
    assert "cn-etf" not in reply.text and "cn-stocks" not in reply.text and "crypto:" in reply.text
    only = await core.handle(TRADER, "/scan cn-etf")
    assert not only.ok
    assert (
        "no watchlist to scan on replay-crypto, replay-us (watchlists on replay-cn are not scanned here)" in only.text
    )
