"""The transport-agnostic command core. Every chat transport (console, Telegram, Discord, the CLI)
turns a message or a button press into ``handle(caller, text)`` and renders the ``Reply``.

Deny by default: a caller is identified by platform and numeric user id, and gets the role the
users table gives it (the local console user is admin). Every command names the role it needs,
and a caller below it is refused with the reason. Input is treated as hostile: length-limited,
split on whitespace, ids and symbols validated before anything is looked up, and errors answer
with what was wrong and what would be valid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from agent.llm.ask import ask
from bot.amounts import money_json, price_json
from bot.command_table import (
    COMMAND_TABLE,
    MAX_INPUT,
    NOTIFY_USAGE,
    ORDERS_USAGE,
    SIGNALS_USAGE,
    USERS_USAGE,
    answer_before_running,
    command_of,
    help_reply,
)
from bot.command_types import Button, Caller, Command, Page, Reply, UserError, fold
from bot.core_positions import TradingCommands, on_tick
from bot.options_view import describe_position, mark_price, plan_symbol, spread_order_rows
from bot.render import card_chart, card_text, decision_text, plural, signal_outcome, symbol_chart, table
from bot.services import LLM_VARIABLES, Services
from bot.settings import parse_hhmm
from bot.summary import daily_summary, equity_charts, starting_cash, venue_pnl
from bot.trading_days import assumption_warning
from storage.chats import ALL, KINDS
from storage.llm import LLM_NODE_PREFIX, usage_since
from storage.signals import KILL_SWITCH_KEY, SignalStatus
from storage.users import Role
from storage.watchlists import WatchlistSpec, valid_name
from tools.risk import PROFILES
from venues import calendars
from venues.clock import ensure_utc
from venues.errors import UnknownSymbolError, UnknownTimeframeError, VenueError
from venues.models import Order, OrderType
from venues.symbols import resolve_symbol, split_venue
from venues.timeframes import TIMEFRAMES, parse_timeframe

SIGNALS_PAGE = 20
SIGNAL_ID = re.compile(r"^[a-z0-9]{4,40}$")


SYMBOL = re.compile(r"^[A-Za-z0-9./:_-]{1,32}$")
USER_PLATFORMS = ("telegram", "discord")  # where /users manages people (the console user is always admin)
USER_REF = re.compile(r"^(?:([a-z]{1,16}):)?([0-9]{1,19})$")
NOTIFY_KINDS = {
    "signals": "new signal cards",
    "fills": "fills and exits",
    "errors": "failed scans",
    "notices": "notices (e.g. the LLM budget is spent)",
    "summary": "the daily summary",
}


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _order_type(order: Order, tick: Decimal) -> str:
    """How an order is priced, at the venue's tick (2576.30, as quoted, not 2576.3)."""

    def price(value: Decimal | None) -> str:
        return "-" if value is None else str(value.quantize(tick) if tick < 1 else value)

    if order.type is OrderType.STOP:
        return f"stop {price(order.stop_price)}" + (f" trail {price(order.trail)}" if order.trail else "")
    if order.type is OrderType.LIMIT:
        return f"limit {price(order.limit_price)}"
    return "market"


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _money(value: Decimal, currency: str = "") -> str:
    return f"{value:,.2f}{' ' + currency if currency else ''}"


class CommandCore(TradingCommands):
    def __init__(self, services: Services) -> None:
        self.s = services
        self._calendar_warned: dict[str, date] = {}  # calendar -> the day its weekday warning was shown
        self.commands: dict[str, Command] = {}
        self._backtests: set[str] = set()  # callers (actor) whose /backtest is running
        for spec in COMMAND_TABLE:  # each row's handler is the method named after it
            handler = getattr(self, f"_{spec.name}")
            self.commands[spec.name] = Command(spec.name, spec.role, spec.usage, spec.summary, handler)

    # --- entry point ---

    async def handle(self, caller: Caller, text: str) -> Reply:
        role = caller.role or self.s.users.role(caller.platform, caller.user_id)
        if role is None:
            return Reply(
                f"You are not allowed to use this bot. Ask an admin to add your numeric id ({caller.actor}).",
                ok=False,
            )
        caller = dataclasses.replace(caller, role=role)
        early = answer_before_running(role, text)  # /help, and refusals the command table decides
        if early is not None:
            return early
        spec, args = command_of(text)
        assert spec is not None  # answer_before_running answered every message that names no command
        command = self.commands[spec.name]
        try:
            return await command.handler(caller, args)
        except UserError as exc:
            return Reply(str(exc), ok=False, bad_input=True)
        except (UnknownSymbolError, UnknownTimeframeError) as exc:
            return Reply(str(exc), ok=False, bad_input=True)  # one style: no "/chart:" on some errors only
        except (VenueError, ValueError) as exc:
            return Reply(str(exc), ok=False)

    # --- commands ---

    async def _help(self, caller: Caller, args: list[str], note: str = "") -> Reply:
        return help_reply(caller.role or Role.VIEWER, note)

    async def _watch(self, caller: Caller, args: list[str]) -> Reply:
        action = fold(args[0]) if args else "list"
        if action == "list":
            rows = [
                (w.name, w.venue, w.timeframe, w.profile, "yes" if w.enabled else "no", " ".join(w.symbols))
                for w in self.s.watchlists.all()
            ]
            return Reply(
                table(["name", "venue", "tf", "risk", "on", "symbols"], rows) if rows else "no watchlists",
                data={"watchlists": [r[0] for r in rows]},
            )
        self._need(caller, Role.TRADER, "/watch add and rm")
        if action not in ("add", "rm"):
            raise UserError("usage: /watch list | add NAME SYMBOL... | rm NAME [SYMBOL...]")
        if len(args) < 2:
            raise UserError(f"usage: /watch {action} NAME {'SYMBOL...' if action == 'add' else '[SYMBOL...]'}")
        name = valid_name(fold(args[1]))
        words = [self._symbol_word(s) for s in args[2:]]
        now = self.s.clock.now()
        existing = self.s.watchlists.get(name)
        if action == "rm":
            held = {s.upper(): s for s in existing.symbols} if existing else {}
            symbols = [held.get(split_venue(w, self.s.venues)[1].upper(), w) for w in words]
            if existing is None:
                raise UserError(f"no watchlist {name!r}; watchlists: {self._watchlist_names()}")
            if not symbols:
                self.s.watchlists.delete(name)
                self._audit(caller, "watch_rm", name)
                return Reply(f"watchlist {name} removed")
            missing = [s for s in symbols if s not in existing.symbols]
            if missing:
                raise UserError(f"{', '.join(missing)} not in {name}: it holds {' '.join(existing.symbols)}")
            kept = tuple(s for s in existing.symbols if s not in symbols)
            if not kept:
                raise UserError(f"that would leave {name} empty; remove the watchlist with /watch rm {name}")
            self.s.watchlists.set_symbols(name, kept, at=now)
            self._audit(caller, "watch_rm_symbols", name, {"symbols": symbols})
            return Reply(f"{name}: {' '.join(kept)}")
        if not words:
            raise UserError("usage: /watch add NAME SYMBOL...")
        resolved = [await self._resolve(w, prefer=existing.venue if existing else None) for w in words]
        venue = existing.venue if existing else resolved[0][0]
        elsewhere = [f"{v}:{s}" for v, s in resolved if v != venue]
        if elsewhere:
            raise UserError(
                f"a watchlist holds one venue's symbols; {name} is on {venue}, not {', '.join(elsewhere)}"
                + ("" if existing else ": make one watchlist per venue")
            )
        symbols = list(dict.fromkeys(s for _, s in resolved))
        if existing is None:
            timeframe = await self._native_or(venue, symbols, "15m")
            spec = WatchlistSpec(name=name, venue=venue, symbols=tuple(symbols), timeframe=timeframe)
            self.s.watchlists.create(spec, at=now)
            self._audit(caller, "watch_add", name, {"venue": venue, "symbols": symbols})
            return Reply(f"watchlist {name} created on {venue} ({timeframe}): {' '.join(spec.symbols)}")
        merged = existing.symbols + tuple(s for s in symbols if s not in existing.symbols)
        self.s.watchlists.set_symbols(name, merged, at=now)
        self._audit(caller, "watch_add_symbols", name, {"symbols": symbols})
        return Reply(f"{name}: {' '.join(merged)}")

    async def _scan(self, caller: Caller, args: list[str]) -> Reply:
        watchlists = self.s.watchlists.all()
        if args:
            wanted = fold(args[0])
            watchlists = [w for w in watchlists if w.name == wanted]
            if not watchlists:
                raise UserError(f"no watchlist {args[0][:32]!r}; watchlists: {self._watchlist_names()}")
        watchlists = [w for w in watchlists if w.enabled]
        # A watchlist on a venue this process does not run (the replay ones, with a live venue set)
        # is left out: scanning it would need a market this process cannot see.
        elsewhere = sorted({w.venue for w in watchlists if w.venue not in self.s.venues})
        watchlists = [w for w in watchlists if w.venue in self.s.venues]
        if not watchlists:
            venues = ", ".join(self.s.venues)
            raise UserError(
                "no watchlist to scan"
                + (f" on {venues} (watchlists on {', '.join(elsewhere)} are not scanned here)" if elsewhere else "")
                + f": add one with /watch add NAME {next(iter(self.s.venues), 'VENUE')}:SYMBOL..."
            )
        self._audit(caller, "scan", ",".join(w.name for w in watchlists))
        await self.s.scanner.tick(sorted({w.venue for w in watchlists}))
        lines, reply = [], Reply("")
        for watchlist in watchlists:
            report = await self.s.scanner.scan(watchlist, trigger="manual")
            if report.error:
                lines.append(f"{watchlist.name}: {report.error}")
                continue
            lines.append(
                f"{watchlist.name}: {plural(report.universe, 'symbol')}, {plural(len(report.candidates), 'candidate')}"
                + "".join(f"; {note}" for note in self._market_closed(watchlist.venue))
                + "".join(f"\n  {symbol} {why[:300]}" for symbol, why in report.not_walked.items())
                + "".join(
                    f"\n  {w.signal_id} {w.status}"
                    # A pending walk's card says it all, unless it is an earlier signal this scan
                    # did not create (the symbol already waits for an answer): then the reason.
                    + (
                        f": {w.reason[:200]}"
                        if w.reason and (w.status != SignalStatus.PENDING.value or not w.created)
                        else ""
                    )
                    for w in report.walks
                )
            )
            for walk in report.walks:
                lines.extend(f"notice: {n}" for n in walk.notices)
                if walk.status == SignalStatus.PENDING.value and walk.card and walk.created:
                    await self._attach_card(reply, walk.card)
        reply.text = (
            f"scan at {self.s.clock.now().isoformat()}\n"
            + "\n".join(lines)
            + ("\n\n" + reply.text if reply.text else "")
        )
        reply.data["pending"] = [b.signal_id for b in reply.buttons if b.action == "approve"]
        return reply

    async def _signal(self, caller: Caller, args: list[str]) -> Reply:
        if len(args) != 1:
            raise UserError("usage: /signal SYMBOL, e.g. /signal 510300.SH")
        venue, symbol = await self._resolve(self._symbol_word(args[0]))
        timeframe = await self._native_or(venue, [symbol], "15m")
        self._audit(caller, "signal", symbol)
        walk = await self.s.scanner.signal_now(venue, symbol, timeframe, actor=caller.actor)
        notices = "".join(f"\nnotice: {n}" for n in (*self._market_closed(venue), *walk.notices))
        reason = walk.reason
        if not walk.created and not reason and walk.status != SignalStatus.PENDING.value:
            # The same symbol at the same moment was decided before (signal ids are per moment, so a
            # second ask decides nothing twice): say so, and why it was decided, not a bare status.
            history = self.s.signals.history(walk.signal_id)
            why = history[-1].reason if history else ""
            reason = f"decided before at this moment as signal {walk.signal_id}" + (f": {why}" if why else "")
        reply = Reply(f"{symbol}: {walk.status}" + (f" ({reason})" if reason else "") + notices)
        if walk.status == SignalStatus.PENDING.value and not walk.created and walk.reason:
            # Another signal on this symbol waits for an answer: no new walk, that one's buttons.
            reply.text = f"{symbol}: {walk.reason}"
            reply.buttons.extend(self._buttons(walk.signal_id))
        elif walk.status == SignalStatus.PENDING.value and walk.card:
            # The card replaces the status line, not the notices: they are shown once, so here.
            reply.text = notices.lstrip("\n")
            await self._attach_card(reply, walk.card)
        reply.data.update({"signal_id": walk.signal_id, "status": walk.status})
        return reply

    async def _signals(self, caller: Caller, args: list[str]) -> Reply:
        which = fold(args[0]) if args else "pending"
        if which not in ("pending", "today", "all", "holds") or len(args) > 2:
            raise UserError(f"usage: {SIGNALS_USAGE}")
        page = Page(SIGNALS_PAGE, 1)
        if len(args) == 2:
            page = Page.parse([str(SIGNALS_PAGE), args[1]], SIGNALS_USAGE)
        await self.s.runner.expire_due()
        # HOLD rows (the policy wanted nothing) are most rows: listed only when asked for.
        status = {"pending": SignalStatus.PENDING, "holds": SignalStatus.HOLD}.get(which)
        since = self._today_start() if which == "today" else None
        without = (SignalStatus.HOLD,) if which in ("today", "all") else ()
        total = self.s.signals.count(status=status, since=since, without=without)
        offset = (page.number - 1) * page.size
        rows = self.s.signals.recent(status=status, since=since, without=without, limit=page.size, offset=offset)
        if not rows:
            label = {"pending": "pending signals", "today": "signals today", "all": "signals"}.get(which, which)
            past = f" on page {page.number} ({total} in all)" if total else ""
            return Reply(f"no {label}{past}", data={"signals": [], "total": total})
        reply = Reply(
            table(
                ["id", "symbol", "side", "status", "entry", "stop", "conf", f"created {self.zone_label}", "expires"],
                [
                    (
                        r.id,
                        r.symbol,
                        r.side,
                        r.status,
                        r.entry,
                        r.stop,
                        f"{r.confidence:.2f}" if r.confidence is not None else "",
                        self.stamp(r.created_at),
                        self.stamp(r.expires_at) if r.expires_at and r.status == "pending" else "",
                    )
                    for r in rows
                ],
            ),
            data={"signals": [{"id": r.id, "symbol": r.symbol, "status": r.status} for r in rows], "total": total},
        )
        footer = page.footer(total, f"/signals {which}", with_size=False)
        if footer:
            reply.text += f"\n{footer}"
        for row in rows:
            if row.status == SignalStatus.PENDING.value:
                reply.buttons.extend(self._buttons(row.id))
        return reply

    async def _approve(self, caller: Caller, args: list[str]) -> Reply:
        return await self._decide(caller, args, "approved")

    async def _reject(self, caller: Caller, args: list[str]) -> Reply:
        return await self._decide(caller, args, "rejected")

    async def _decide(self, caller: Caller, args: list[str], decision: str) -> Reply:
        verb = "approve" if decision == "approved" else "reject"
        if not args:
            raise UserError(f"usage: /{verb} ID. {self._pending_list()}")
        signal_id = args[0].lower() if args[0].isascii() else ""  # validated before folding: see fold()
        if not SIGNAL_ID.match(signal_id):
            raise UserError(f"{args[0][:40]!r} is not a signal id (4-40 letters and digits). {self._pending_list()}")
        await self.s.runner.expire_due()
        row = self.s.signals.get(signal_id)
        if row is None:
            raise UserError(f"no signal {signal_id}. {self._pending_list()}")
        reason = " ".join(args[1:])[:200] if decision == "rejected" else ""
        if row.status != SignalStatus.PENDING.value:
            return Reply(self._already(signal_id), ok=False, data={"signal_id": signal_id, "status": row.status})
        result = await self.s.runner.decide(signal_id, decision, actor=caller.actor, reason=reason)
        if not result.outcome.won:
            return Reply(self._already(signal_id), ok=False, data={"signal_id": signal_id, "status": result.status})
        text = decision_text(signal_id, result.status, decision=decision, actor=caller.actor, reason=result.reason)
        return Reply(text, data={"signal_id": signal_id, "status": result.status})

    async def _positions(self, caller: Caller, args: list[str]) -> Reply:
        rows, data = [], []
        plans = {(p.venue, p.symbol): p for p in self.s.plans.active()}
        for name, venue in self.s.venues.items():
            broker = venue.broker_required()
            for position in await broker.positions():
                instrument = await venue.instrument(position.symbol)
                marked = await mark_price(venue, position.symbol, instrument.timeframe)  # an option: its quote
                last = marked if marked is not None else position.avg_cost
                unrealized = (last - position.avg_cost) * position.qty * instrument.multiplier
                plan = plans.get((name, plan_symbol(position.symbol)))  # a spread's legs: its underlying's plan
                exits = ""
                if plan is not None:
                    # A trailing stop follows the price: up under a long, down over a short.
                    trailed = plan.trailing_stop is not None and (
                        plan.trailing_stop > plan.stop if position.qty > 0 else plan.trailing_stop < plan.stop
                    )
                    stop = plan.trailing_stop if trailed and plan.trailing_stop is not None else plan.stop
                    tick = instrument.tick_size
                    targets = "/".join(on_tick(Decimal(tp), tick) for tp in plan.take_profits)
                    # The plan's id first: what /plan ID acts on.
                    exits = f"{plan.signal_id}: stop {on_tick(stop, tick)} TPs {targets} hit {plan.targets_hit}"
                rows.append(
                    (
                        name,
                        describe_position(position.symbol),
                        position.qty,
                        f"{position.avg_cost:.4f}",
                        last,
                        _money(unrealized, instrument.currency),
                        exits,
                    )
                )
                data.append(
                    {
                        "venue": name,
                        "symbol": position.symbol,
                        "qty": str(position.qty),
                        "avg_cost": price_json(position.avg_cost, instrument.tick_size),
                        "unrealized": money_json(unrealized),
                    }
                )
        if not rows:
            return Reply("no open positions", data={"positions": []})
        return Reply(
            table(["venue", "symbol", "qty", "avg cost", "last", "unrealized", "exit plan"], rows),
            data={"positions": data},
        )

    async def _orders(self, caller: Caller, args: list[str]) -> Reply:
        page = Page.parse(args, ORDERS_USAGE, default=20)
        orders: list[Order] = []
        ticks: dict[tuple[str, str], Decimal] = {}
        currencies: dict[tuple[str, str], str] = {}
        for venue in self.s.venues.values():
            orders.extend(await venue.broker_required().orders())
            for i in await venue.instruments():
                ticks[(venue.name, i.symbol)] = i.tick_size
                currencies[(venue.name, i.symbol)] = i.currency
        spreads = await spread_order_rows(dict(self.s.venues), self.stamp)  # multi-leg option orders, one row each
        if not orders and not spreads:
            return Reply("no orders yet", data={"orders": []})
        reasons = dict(zip((o.client_order_id for o in orders), self.order_reasons(orders), strict=True))
        listed = [
            (
                o.created_at,
                o.client_order_id,
                (
                    o.client_order_id,
                    o.venue,
                    o.symbol,
                    o.side.value,
                    o.qty,
                    _order_type(o, ticks.get((o.venue, o.symbol), Decimal("0.01"))),
                    o.status.value,
                    o.avg_fill_price,
                    _money(o.fees, currencies.get((o.venue, o.symbol), "")),
                    self.stamp(o.created_at),
                    reasons[o.client_order_id][:80],
                ),
                {
                    "id": o.client_order_id,
                    "status": o.status.value,
                    "type": o.type.value,
                    "parent": o.parent,
                    "reason": reasons[o.client_order_id],
                },
            )
            for o in orders
        ]
        everything = sorted([*listed, *spreads], key=lambda x: (x[0], x[1]), reverse=True)
        shown = page.of(everything)
        created = f"created {self.zone_label}"
        text = table(
            ["id", "venue", "symbol", "side", "qty", "type", "status", "fill", "fees", created, "reason"],
            [row for _, _, row, _ in shown],
        )
        footer = page.footer(len(everything), "/orders")
        return Reply(
            text + (f"\n{footer}" if footer else ""),
            data={"orders": [data for _, _, _, data in shown], "total": len(everything)},
        )

    async def _pnl(self, caller: Caller, args: list[str]) -> Reply:
        rows = await venue_pnl(self.s)
        table_rows = [
            (
                r.venue,
                r.currency,
                _money(r.deposits),
                _money(r.equity),
                _money(r.realized),
                _money(r.unrealized),
                _money(r.equity - r.deposits),
            )
            for r in rows
        ]
        data = [
            {
                "venue": r.venue,
                "currency": r.currency,
                "equity_start": money_json(r.deposits),
                "equity": money_json(r.equity),
                "realized": money_json(r.realized),
                "unrealized": money_json(r.unrealized),
            }
            for r in rows
        ]
        return Reply(
            table(["venue", "ccy", "start", "equity", "realized", "unrealized", "change"], table_rows),
            images=await equity_charts(self.s, rows),
            data={"pnl": data},
        )

    async def _summary(self, caller: Caller, args: list[str]) -> Reply:
        summary = await daily_summary(self.s)
        return Reply(summary.text, images=summary.images, data=summary.data)

    async def _risk(self, caller: Caller, args: list[str]) -> Reply:
        config = self.s.deps.config
        profile = config.risk_for("")
        kill = self.s.signals.get_value(KILL_SWITCH_KEY) or {}
        switch = f"ON ({kill.get('reason') or 'paused'}, by {kill.get('by')})" if kill.get("paused") else "off"
        lines = [
            f"profile {profile.name}: {profile.max_trades_per_day} trades/day per venue, cooldown "
            f"{int(profile.cooldown.total_seconds() // 60)} min, position <= {profile.max_position_pct:.0%} of equity, "
            f"risk {profile.risk_per_trade_pct:.1%}/trade, confidence >= {profile.min_confidence}, "
            f"reward/risk >= {profile.min_reward_risk}, net profit >= {profile.min_net_profit_pct:.2%} of value, "
            f"<= {profile.max_concurrent_positions} positions, correlation <= {profile.max_correlation}, "
            f"daily loss <= {profile.daily_loss_limit_pct:.0%}",
            f"kill switch: {switch}",
            f"approvals expire after {int(config.approval_timeout.total_seconds() // 60)} min of market time; "
            f"drift limit {config.max_drift_bps} bps; auto-approve {config.auto_approve.mode}",
            f"other profiles: {', '.join(p for p in PROFILES if p != profile.name)}",
            self._llm_line(),
        ]
        rows, cooldowns, today = await self.risk_today(profile)
        text = (
            "\n".join(lines)
            + "\n"
            + table(["venue", "day", "realized today", "loss today / limit", "trades", "left", "positions"], rows)
        )
        text += "\n" + ("cooldowns: " + "; ".join(cooldowns) if cooldowns else "cooldowns: none in force")
        return Reply(
            text,
            data={
                "profile": profile.name,
                "kill_switch": bool(kill.get("paused")),
                "today": today,
                "cooldowns": cooldowns,
            },
        )

    async def _pause(self, caller: Caller, args: list[str]) -> Reply:
        reason = " ".join(args)[:200] or "paused by an admin"
        now = self.s.clock.now()
        self.s.signals.set_value(
            KILL_SWITCH_KEY, {"paused": True, "by": caller.actor, "reason": reason, "at": now.isoformat()}, at=now
        )
        self._audit(caller, "pause", "", {"reason": reason})
        return Reply(f"kill switch ON: no new entries until /resume ({reason}). Exits keep running.")

    async def _resume(self, caller: Caller, args: list[str]) -> Reply:
        now = self.s.clock.now()
        self.s.signals.set_value(KILL_SWITCH_KEY, {"paused": False, "by": caller.actor, "at": now.isoformat()}, at=now)
        self._audit(caller, "resume", "")
        return Reply("kill switch off: new entries allowed again")

    async def _users(self, caller: Caller, args: list[str]) -> Reply:
        action = fold(args[0]) if args else "list"
        if action == "list":
            if len(args) > 1:
                raise UserError(f"usage: {USERS_USAGE}")
            users = self.s.users.all()
            rows = [
                (f"{u.platform}:{u.platform_user_id}", u.role, u.display_name, u.updated_at.isoformat()) for u in users
            ]
            empty = "no users: everyone on Telegram and Discord is refused (the local console is always admin)"
            text = table(["user", "role", "name", "changed"], rows) if rows else empty
            return Reply(text, data={"users": [{"user": r[0], "role": r[1]} for r in rows]})
        shapes = {"add": "[PLATFORM:]ID ROLE [NAME]", "rm": "[PLATFORM:]ID", "role": "[PLATFORM:]ID ROLE"}
        if action not in shapes:
            raise UserError(f"usage: {USERS_USAGE}")
        wanted = {"add": (3, MAX_INPUT), "rm": (2, 2), "role": (3, 3)}[action]
        if not wanted[0] <= len(args) <= wanted[1]:
            raise UserError(f"usage: /users {action} {shapes[action]}")
        platform, user_id = self._user_ref(caller, args[1])
        target = f"{platform}:{user_id}"
        current = self.s.users.role(platform, user_id)
        if action == "add":
            role = self._role_word(args[2])
            if current is not None:
                raise UserError(f"{target} is already {_a(current.value)}; change it with /users role {target} ROLE")
            return self.grant_user(caller, platform, user_id, role, name=" ".join(args[3:])[:64])
        if current is None:
            raise UserError(f"{target} has no role (not in the users table); add one with /users add {target} ROLE")
        yourself = (platform, user_id) == (caller.platform, caller.user_id)
        if action == "rm":
            if yourself:
                raise UserError("refused: you cannot remove yourself (you would lock yourself out); ask another admin")
            self.s.users.revoke(platform, user_id)
            self._audit(caller, "users_rm", target, {"role": current.value})
            return Reply(f"{target} removed (was {current.value}): refused from now on")
        role = self._role_word(args[2])
        if yourself and not role.allows(Role.ADMIN):
            raise UserError("refused: you cannot demote yourself (you would lock yourself out); ask another admin")
        if role is current:
            return Reply(f"{target} is already {_a(role.value)}")
        self.s.users.grant(platform, user_id, role, at=self.s.clock.now())
        self._audit(caller, "users_role", target, {"role": role.value, "before": current.value})
        return Reply(f"{target} is now {_a(role.value)} (was {current.value})")

    def grant_user(self, caller: Caller, platform: str, user_id: int, role: Role, *, name: str = "") -> Reply:
        """Give a user without a role one: ``/users add`` and an admin's Grant button. The caller must
        be an admin (checked here too: a button press does not pass through ``handle``)."""
        have = caller.role or self.s.users.role(caller.platform, caller.user_id)
        if have is None or not have.allows(Role.ADMIN):
            who = f"a {have.value}" if have else "not allowed"
            return Reply(f"refused: adding a user needs the admin role; you are {who}.", ok=False)
        caller = dataclasses.replace(caller, role=have)
        target = f"{platform}:{user_id}"
        current = self.s.users.role(platform, user_id)
        if current is not None:
            return Reply(f"{target} is already {_a(current.value)}", ok=False)
        self.s.users.grant(platform, user_id, role, at=self.s.clock.now(), display_name=name)
        self._audit(caller, "users_add", target, {"role": role.value, "name": name})
        return Reply(f"{target} added as {role.value}" + (f" ({name})" if name else ""))

    @staticmethod
    def _user_ref(caller: Caller, word: str) -> tuple[str, int]:
        match = USER_REF.fullmatch(fold(word))
        if match is None or int(match.group(2)) >= 2**63:
            raise UserError(
                f"{word[:40]!r} is not a user: a numeric id, or PLATFORM:ID (e.g. telegram:123456789); "
                "names are not accepted"
            )
        platform = match.group(1) or caller.platform
        if platform not in USER_PLATFORMS:
            raise UserError(
                f"users live on {' or '.join(USER_PLATFORMS)}: write telegram:ID or discord:ID"
                + ("" if match.group(1) else f" (you are on the {caller.platform})")
            )
        return platform, int(match.group(2))

    @staticmethod
    def _role_word(word: str) -> Role:
        try:
            return Role(fold(word))
        except ValueError:
            raise UserError(f"{word[:32]!r} is not a role; roles: viewer, trader, admin") from None

    async def _chart(self, caller: Caller, args: list[str]) -> Reply:
        if not args or len(args) > 2:
            raise UserError("usage: /chart SYMBOL [TIMEFRAME], e.g. /chart BTC/USD 4h")
        venue_name, symbol = await self._resolve(self._symbol_word(args[0]))
        venue = self.s.venues[venue_name]
        instrument = await venue.instrument(symbol)
        timeframe = parse_timeframe(fold(args[1])).name if len(args) == 2 else instrument.timeframe
        if parse_timeframe(timeframe).delta < parse_timeframe(instrument.timeframe).delta:
            raise UserError(
                f"{symbol} has {instrument.timeframe} bars at the finest; valid: "
                + ", ".join(
                    t for t, tf in TIMEFRAMES.items() if tf.delta >= parse_timeframe(instrument.timeframe).delta
                )
            )
        plan = next((p for p in self.s.plans.active(venue_name) if p.symbol == symbol), None)
        levels = None
        if plan is not None and plan.entry_price is not None:
            stop = plan.trailing_stop or plan.stop
            levels = {
                "side": "short" if stop > plan.entry_price else "long",
                "entry": plan.entry_price,
                "stop": stop,
                "take_profits": plan.take_profits,
            }
        path = await symbol_chart(venue, symbol, timeframe, self.s.charts_dir, instrument.calendar, levels)
        if path is None:
            return Reply(f"no {timeframe} bars for {symbol} yet", ok=False)
        return Reply(f"{symbol} {timeframe}", images=[str(path)])

    async def _backtest(self, caller: Caller, args: list[str]) -> Reply:
        from bot.backtest import CHAT_POLICIES, MAX_CHAT_DAYS, chat_text, run_in_thread
        from scheduler.backtest.engine import BacktestError, BacktestSpec
        from scheduler.backtest.report import write_chart

        usage = "usage: /backtest SYMBOL [DAYS] [POLICY], e.g. /backtest BTC/USD 30 rules"
        if not args or len(args) > 3:
            raise UserError(usage)
        days = 30
        if len(args) >= 2:
            if not args[1].isascii() or not args[1].isdigit() or not 1 <= int(args[1]) <= MAX_CHAT_DAYS:
                raise UserError(f"DAYS {args[1][:12]!r} is not a whole number from 1 to {MAX_CHAT_DAYS}; {usage}")
            days = int(args[1])
        policy = fold(args[2]) if len(args) == 3 else "rules"
        if policy not in CHAT_POLICIES:
            raise UserError(f"POLICY {args[2][:20]!r} is not one of: {', '.join(CHAT_POLICIES)}")
        venue, symbol = await self._resolve(self._symbol_word(args[0]))
        instrument = await self.s.venues[venue].instrument(symbol)
        # One at a time per user: a backtest holds a thread and a temporary database while it runs.
        if caller.actor in self._backtests:
            raise UserError("a backtest of yours is still running; its answer comes first")
        end = self.s.clock.now().replace(minute=0, second=0, microsecond=0)
        spec = BacktestSpec(
            venue=venue,
            symbols=(symbol,),
            timeframe=await self._native_or(venue, [symbol], "1h"),
            start=end - timedelta(days=days),
            end=end,
            policy=policy,
            capital=starting_cash(self.s, instrument.currency, venue),
            profile=self.s.settings.risk_profile,
        )
        self._audit(caller, "backtest", symbol, {"days": days, "policy": policy})
        self._backtests.add(caller.actor)
        try:
            result = await asyncio.to_thread(run_in_thread, self.s.settings, spec)
        except BacktestError as exc:
            raise UserError(f"/backtest: {exc}") from None
        finally:
            self._backtests.discard(caller.actor)
        name = re.sub(r"[^A-Za-z0-9]+", "-", f"backtest-{venue}-{symbol}-{days}d-{policy}")
        chart = await asyncio.to_thread(write_chart, result, self.s.charts_dir / f"{name}.png")
        return Reply(chat_text(result), images=[str(chart)], data={"metrics": result.metrics})

    async def _ask(self, caller: Caller, args: list[str]) -> Reply:
        client = self.s.llm
        if client is None:
            raise UserError(f"/ask needs an LLM: set {LLM_VARIABLES}")
        self._audit(caller, "ask", "", {"question": " ".join(args)[:200]})
        answer = await ask(client, self.s.deps, " ".join(args), max_rounds=self.s.settings.llm_max_rounds)
        now = self.s.clock.now()
        for i, call in enumerate(answer.calls, 1):
            node = f"{LLM_NODE_PREFIX}:ask:{i}"
            self.s.signals.add_trace(call.trace(signal_id=None, node=node, policy="ask", at=now))
        return Reply(answer.text, ok=answer.ok, data={"tools": list(answer.tools_used), "calls": len(answer.calls)})

    async def _llm(self, caller: Caller, args: list[str]) -> Reply:
        return Reply(self._llm_line(), data={"policy": self.s.deps.policy.name})

    def _llm_line(self) -> str:
        settings = self.s.settings
        if self.s.llm is None:
            return f"policy {self.s.deps.policy.name}: no LLM configured ({LLM_VARIABLES})"
        now = self.s.clock.now()
        used = usage_since(self.s.engine, now.replace(hour=0, minute=0, second=0, microsecond=0))
        budget = settings.llm_daily_token_budget
        left = f"{max(budget - used.tokens, 0):,} of {budget:,} tokens left" if budget else "no daily token budget"
        return (
            f"policy {self.s.deps.policy.name} ({self.s.llm.provider}); today (UTC): {used.calls} calls, "
            f"{used.prompt_tokens:,} prompt + {used.completion_tokens:,} completion tokens, ${used.cost_usd:.4f}; "
            f"{left}; cache {settings.llm_cache}"
        )

    async def _subscribe(self, caller: Caller, args: list[str]) -> Reply:
        chat_id = self._chat_of(caller, "subscribe")
        current = self.s.chats.subscriptions(caller.platform, chat_id)
        if len(args) != 1:
            raise UserError(
                f"usage: /subscribe WATCHLIST|all; watchlists: {self._watchlist_names()}; "
                f"this chat receives: {', '.join(current) or 'nothing'}"
            )
        name = self._subscription_name(args[0])
        if not self.s.chats.subscribe(caller.platform, chat_id, name, at=self.s.clock.now()):
            return Reply(f"this chat already receives {name}", data={"subscriptions": current})
        self._audit(caller, "subscribe", name, {"chat_id": chat_id})
        what = "every watchlist's cards" if name == ALL else f"the cards of watchlist {name}"
        return Reply(
            f"this chat now receives {what}",
            data={"subscriptions": self.s.chats.subscriptions(caller.platform, chat_id)},
        )

    async def _unsubscribe(self, caller: Caller, args: list[str]) -> Reply:
        chat_id = self._chat_of(caller, "unsubscribe")
        if len(args) > 1:
            raise UserError("usage: /unsubscribe [WATCHLIST|all]")
        name = fold(args[0]) if args else None
        removed = self.s.chats.unsubscribe(caller.platform, chat_id, name)
        if not removed:
            current = self.s.chats.subscriptions(caller.platform, chat_id)
            raise UserError(
                f"this chat does not receive {name or 'anything'}; it receives: {', '.join(current) or 'nothing'}"
            )
        self._audit(caller, "unsubscribe", ",".join(removed), {"chat_id": chat_id})
        return Reply(f"this chat no longer receives: {', '.join(removed)}", data={"removed": removed})

    async def _notify(self, caller: Caller, args: list[str]) -> Reply:
        chat_id = self._chat_of(caller, "notify")
        if not args:
            return self._notify_settings(caller.platform, chat_id)
        self._need(caller, Role.TRADER, "changing what this chat is sent")
        kind = args[0].lower()
        valid = "on, off, a time HH:MM or default" if kind == "summary" else "on or off"
        if kind not in (*KINDS, ALL):
            raise UserError(f"{args[0][:32]!r} is not a kind; usage: {NOTIFY_USAGE}")
        if len(args) != 2:
            raise UserError(f"/notify {kind} takes one more word: {valid}; usage: {NOTIFY_USAGE}")
        value, now = args[1].lower(), self.s.clock.now()
        if value in ("on", "off"):
            for each in KINDS if kind == ALL else (kind,):
                self.s.chats.set_kind(caller.platform, chat_id, each, value == "on", at=now)
            change = f"{kind} {value}"
        elif kind == "summary":
            hhmm = None if value == "default" else self._summary_time(args[1])
            self.s.chats.set_summary_time(caller.platform, chat_id, hhmm, at=now)
            self.s.chats.set_kind(caller.platform, chat_id, "summary", True, at=now)
            change = f"summary at {hhmm or 'the default time'}"
        else:
            raise UserError(f"{args[1][:32]!r} is not a setting for {kind}: use {valid}; usage: {NOTIFY_USAGE}")
        self._audit(caller, "notify", change, {"chat_id": chat_id})
        if kind in ("summary", ALL) and self.s.on_schedule_change is not None:
            self.s.on_schedule_change()  # the running bot's summary job fires at the new times
        return self._notify_settings(caller.platform, chat_id, note=f"this chat: {change}")

    def _summary_time(self, word: str) -> str:
        try:
            return parse_hhmm(word, "the summary time").strftime("%H:%M")
        except ValueError as exc:
            raise UserError(f"{exc}; or default ({self.s.settings.summary_time}); usage: {NOTIFY_USAGE}") from None

    def _notify_settings(self, platform: str, chat_id: int, *, note: str = "") -> Reply:
        current = self.s.chats.notify_settings(platform, chat_id)
        zone, default = self.s.settings.timezone, self.s.settings.summary_time
        time = current.summary_time or default
        rows = [(kind, "on" if current.wants(kind) else "off", what) for kind, what in NOTIFY_KINDS.items()]
        subscriptions = self.s.chats.subscriptions(platform, chat_id)
        lines = [
            *([note] if note else []),
            table(["kind", "", "what"], rows) + "\n",  # a blank line ends the table (<pre>, code block)
            f"summary at {time} {zone}"
            + ("" if current.summary_time else " (the default)")
            + f"; last sent: {current.summary_sent_on or 'never'}",
            f"watchlists: {', '.join(subscriptions)}"
            if subscriptions
            else "no subscription: nothing is pushed here until a trader sends /subscribe WATCHLIST|all",
        ]
        data = {
            "notify": dict(current.kinds),
            "summary_time": time,
            "timezone": zone,
            "summary_sent_on": current.summary_sent_on,
            "subscriptions": subscriptions,
        }
        return Reply("\n".join(lines), data=data)

    # --- helpers ---

    @staticmethod
    def _chat_of(caller: Caller, command: str) -> int:
        if caller.chat_id is None:
            raise UserError(f"/{command} works in a chat (Telegram, Discord): this {caller.platform} has no chat id")
        return caller.chat_id

    def _subscription_name(self, word: str) -> str:
        name = fold(word)
        if name == ALL:
            return ALL
        if self.s.watchlists.get(name) is None:
            raise UserError(f"no watchlist {word[:32]!r}; watchlists: {self._watchlist_names()}, or all")
        return name

    def _need(self, caller: Caller, role: Role, what: str) -> None:
        if not (caller.role and caller.role.allows(role)):
            have = caller.role.value if caller.role else "nobody"
            raise UserError(f"refused: {what} needs the {role.value} role; you are a {have}.")

    async def _attach_card(self, reply: Reply, card: dict[str, Any]) -> None:
        venue = self.s.venues[card["venue"]]
        chart = await card_chart(venue, card, self.s.charts_dir, self.s.venue_calendar(card["venue"]))
        reply.text += ("\n\n" if reply.text else "") + card_text(card)
        if chart is not None:
            reply.images.append(str(chart))
        reply.buttons.extend(self._buttons(card["signal_id"]))
        reply.data.setdefault("cards", []).append(card)

    def _market_closed(self, venue: str) -> tuple[str, ...]:
        """A note when the venue's market is closed now (an entry then fills at the next open), and
        once a day one when its sessions are assumed weekdays (past the calendar's horizon)."""
        calendar, now = self.s.venue_calendar(venue), self.s.clock.now()
        notes: list[str] = []
        opens = calendars.next_open(calendar, now)
        if opens is not None:
            notes.append(f"market closed, opens {opens.isoformat()}: entries fill at that open, within the drift limit")
        soon = now.date() + timedelta(days=7)
        assumed = any(day <= soon for day in calendars.assumed_weekdays(calendar))
        if assumed and self._calendar_warned.get(calendar) != now.date():
            self._calendar_warned[calendar] = now.date()
            notes.append(assumption_warning(calendar))
        return tuple(notes)

    @staticmethod
    def _buttons(signal_id: str) -> list[Button]:
        return [Button("Approve", "approve", signal_id), Button("Reject", "reject", signal_id)]

    def _pending_list(self) -> str:
        pending = [r.id for r in self.s.signals.recent(status=SignalStatus.PENDING, limit=20)]
        return f"Pending: {', '.join(pending)}." if pending else "Nothing is pending."

    def stamp(self, moment: datetime) -> str:
        """A time in a list (/signals, /orders, /trades): month, day and minute in the user's display
        zone (TRADEOPS_TIMEZONE); the column header names the zone (:attr:`zone_label`)."""
        return ensure_utc(moment).astimezone(self.s.settings.zone).strftime("%m-%d %H:%M")

    @property
    def zone_label(self) -> str:
        return f"({self.s.settings.zone.key})"

    def outcome(self, signal_id: str) -> str:
        """What became of a signal, in the one wording every transport shows on its card."""
        return signal_outcome(self.s.signals, signal_id, on_card=True)

    def _already(self, signal_id: str) -> str:
        row = self.s.signals.get(signal_id)
        if self.s.signals.approval(signal_id) is not None:
            return "already decided: " + signal_outcome(self.s.signals, signal_id)
        status = row.status if row else "unknown"
        return f"{signal_id} is {status}: only pending signals can be approved or rejected"

    def _watchlist_names(self) -> str:
        return ", ".join(w.name for w in self.s.watchlists.all()) or "none"

    @staticmethod
    def _symbol_word(word: str) -> str:
        if not SYMBOL.match(word):
            raise UserError(f"{word[:40]!r} is not a symbol (letters, digits and . / : _ -), e.g. 600519.SH, BTC/USD")
        return word

    async def _resolve(self, word: str, *, prefer: str | None = None) -> tuple[str, str]:
        """(venue, the venue's spelling) of SYMBOL or VENUE:SYMBOL (venues/symbols.py)."""
        try:
            return await resolve_symbol(self.s.venues, word, prefer=prefer)
        except VenueError as exc:
            raise UserError(str(exc)) from None

    async def _native_or(self, venue: str, symbols: list[str], default: str) -> str:
        native = max(
            [parse_timeframe((await self.s.venues[venue].instrument(s)).timeframe) for s in symbols],
            key=lambda tf: tf.delta,
        )
        return native.name if native.delta > parse_timeframe(default).delta else default

    def _today_start(self) -> datetime:
        now = self.s.clock.now()
        return now.replace(hour=0, minute=0, second=0, microsecond=0)

    def _audit(self, caller: Caller, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
        self.s.signals.audit(caller.actor, action, at=self.s.clock.now(), target=target, detail=detail)
