"""`tradeops demo`: the whole walk, offline, on the shipped 2021 data and one simulated clock.

Four watchlists on three replay venues (crypto, China A-shares, US equities) each scan on their own
market's calendar (crypto at every 1h candle close, A-shares every 30 minutes in both sessions and
the daily stocks at the close, US every 30 minutes in NYSE hours), driven by the same triggers the
live scheduler uses. Each scan screens, walks the candidates through the graph (rule policy, risk
gate, approval), and each tick fills paper orders and manages the open positions' exits.

Approvals: ``ask`` prompts on a terminal (and falls back to ``all`` when there is none, saying
so); ``all`` approves everything; ``none`` decides nothing and stops right after the first scan
that proposed signals, so they are still pending for `tradeops chat` to act on.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import inspect, make_url
from sqlmodel import Session, SQLModel, select

from agent.deps import AutoApprove
from bot.console import CONSOLE_USER, ConsolePrompt
from bot.render import card_chart, card_text, equity_chart
from bot.services import REPLAY_START, Services, open_services, seed_watchlists
from bot.settings import Settings
from scheduler.driver import FastForwardDriver, ScanTick
from scheduler.jobs import OnScan, watchlist_jobs
from scheduler.manage import PositionEvent
from scheduler.scan import ScanReport
from storage.db import make_engine, redact_url
from storage.llm import LLMCache
from storage.signals import SignalStatus
from storage.tables import Approval, AuditEntry, FillRow, KeyValue, LLMCacheEntry, OrderRow, SignalRow, User, Watchlist
from storage.users import Role
from storage.watchlists import WatchlistSpec

if TYPE_CHECKING:
    from venues.clock import SimulatedClock

ApproveMode = Literal["ask", "all", "none"]
DEMO_KEY = "demo"
MAX_DAYS = 60  # the shipped replay data covers 2021-07-06 plus about two months


class DemoError(Exception):
    pass


@dataclass
class DemoRun:
    approve: ApproveMode
    asked: bool
    echo: Callable[[str], None]
    proposed: int = 0  # pending cards seen this run
    # The card charts this run drew: the charts dir may still hold an earlier run's.
    charts: list[str] = field(default_factory=list)
    stop_after_scan: bool = False
    prompt: ConsolePrompt | None = None  # the y/n questions of --approve ask
    resume: bool = False  # --continue


def prepare_database(settings: Settings) -> list[LLMCacheEntry]:
    """A demo starts from an empty database, so the same inputs give the same run. A database that
    an earlier demo wrote is wiped; one holding anything a person made (users, watchlists, signals,
    orders, audit entries) that no demo wrote is refused, never touched.

    The LLM response cache survives the wipe (it is returned, to be put back): a re-run of an LLM
    demo asks the endpoint nothing it answered before."""
    url = settings.resolved_database_url
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        if "signals" not in tables:
            return []
        with Session(engine) as session:
            marker = session.get(KeyValue, DEMO_KEY)
            # What someone made or decided: users and their roles, watchlists, signals, orders and
            # the audit trail (the rest is derived from these, or is the clock and starting cash).
            models: list[type[SQLModel]] = [User, Watchlist, SignalRow, OrderRow, AuditEntry]
            held = [
                name
                for model in models
                if (name := str(model.__tablename__)) in tables
                and session.exec(select(model).limit(1)).first() is not None
            ]
        if marker is None and held:
            raise DemoError(
                f"the database {redact_url(url)} holds {', '.join(held)} that no demo wrote; the demo needs an "
                "empty one: pass --data-dir to a new folder"
            )
        import storage.tables  # noqa: F401  (every table on the metadata)

        cached: list[LLMCacheEntry] = []
        if LLMCacheEntry.__tablename__ in tables:
            with Session(engine, expire_on_commit=False) as session:
                cached = list(session.exec(select(LLMCacheEntry)).all())
                session.expunge_all()
        with engine.begin() as connection:
            SQLModel.metadata.drop_all(connection)
            for table in (
                "alembic_version",
                "checkpoints",
                "writes",
                "checkpoint_blobs",
                "checkpoint_writes",
                "checkpoint_migrations",
            ):
                if table in tables:
                    connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}"')
        return cached
    finally:
        engine.dispose()


def continued_clock(settings: Settings) -> SimulatedClock:
    """The simulated clock where the last demo on this data dir stopped; DemoError when the
    database holds no demo (nothing to continue)."""
    from bot.services import stored_clock
    from storage.signals import SignalStore

    url = settings.resolved_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        # Opening it would create an empty database: nothing is made for a refusal.
        raise DemoError(f"no demo to continue in {redact_url(url)}: run `tradeops demo` first")
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        store = SignalStore(engine)
        clock = stored_clock(store) if KeyValue.__tablename__ in tables else None
        if clock is None or store.get_value(DEMO_KEY) is None:
            raise DemoError(f"no demo to continue in {redact_url(url)}: run `tradeops demo` first")
        return clock
    finally:
        engine.dispose()


async def run_demo(
    settings: Settings,
    *,
    approve: ApproveMode = "ask",
    days: int = 7,
    echo: Callable[[str], None] = print,
    interactive: bool | None = None,
    warn: Callable[[str], None] | None = None,
    prompt: ConsolePrompt | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run the demo and return its summary. ``echo`` tells the story; ``warn`` (default ``echo``)
    gets what the user must hear even when the story is silenced, as `--json` does.

    ``resume`` (`--continue`): carry on from where the last demo on this data dir stopped, for
    ``days`` more, keeping its signals, orders and positions (what was approved in `tradeops chat`
    meanwhile fills, what nobody answered expires). Raises DemoError when there is no demo to
    continue, or when the shipped data would run out (``MAX_DAYS`` after 2021-07-06)."""
    if days < 1 or days > MAX_DAYS:
        raise DemoError(f"--days must be between 1 and {MAX_DAYS}, got {days}")
    started = time.perf_counter()
    interactive = sys.stdin.isatty() if interactive is None else interactive
    asked = approve == "ask"
    from venues.clock import SimulatedClock

    if resume:
        cached: list[LLMCacheEntry] = []
        clock = await asyncio.to_thread(continued_clock, settings)
        if clock.now() + timedelta(days=days) > REPLAY_START + timedelta(days=MAX_DAYS):
            left = (REPLAY_START + timedelta(days=MAX_DAYS) - clock.now()).days
            raise DemoError(
                f"the shipped data ends {MAX_DAYS} days after {REPLAY_START:%Y-%m-%d}: "
                + (f"--continue --days {left} at most" if left >= 1 else "run `tradeops demo` to start again")
            )
    else:
        cached = await asyncio.to_thread(prepare_database, settings)
        clock = SimulatedClock(REPLAY_START)
        # The earlier run's card and equity charts go with its database (a /chart of yours stays).
        charts = settings.data_dir / "charts"
        for old in [*charts.glob("signal-*.png"), *charts.glob("equity-*.png")]:
            old.unlink(missing_ok=True)
    # Only once the run can go ahead (a --continue with nothing to continue is refused first).
    if asked and not interactive:
        (warn or echo)("not on a terminal: approving every signal automatically (use --approve none to decide later)")
        approve = "all"
    start = clock.now()
    end = start + timedelta(days=days)
    run = DemoRun(approve=approve, asked=asked, echo=echo, resume=resume)
    if approve == "ask":
        run.prompt = prompt or ConsolePrompt()
    auto = AutoApprove(mode="all") if approve == "all" else AutoApprove(mode="none")
    # The shipped replay data only: a bars lake in the data dir must not change the demo's summary.
    async with open_services(settings, clock=clock, auto_approve=auto, with_lake=False) as services:
        services.signals.set_value(DEMO_KEY, {"approve": approve, "days": days, "from": start.isoformat()}, at=start)
        cache = LLMCache(services.engine)
        for entry in cached:
            cache.put(
                entry.request_hash,
                model=entry.model,
                request=entry.request,
                response=entry.response,
                at=entry.created_at,
            )
        services.users.grant("console", CONSOLE_USER.user_id, Role.ADMIN, at=clock.now(), display_name="console")
        watchlists = seed_watchlists(services)
        jobs = watchlist_jobs(
            services.scanner, watchlists, services.venue_calendar, _on_scan(services, run), trigger="demo"
        )
        # Fires from the clock's now: a continued run does not replay the scans of the last one.
        driver = FastForwardDriver(clock, jobs, since=start)
        echo(
            f"demo{' continued' if resume else ''}: {days} days from {start:%Y-%m-%d %H:%M} UTC on "
            f"{len(watchlists)} watchlists, approvals: {approve}"
        )
        if resume:
            # What was approved in chat meanwhile fills now, what nobody answered expires.
            await services.runner.expire_due()
        while (upcoming := driver.next_fire()) is not None and upcoming[1] <= end:
            record = await driver.step()
            if record is not None and record.error:
                echo(f"  ! {record.job_id} failed: {record.error}")
            if run.stop_after_scan:
                break
        if not run.stop_after_scan:
            clock.advance_to(max(clock.now(), end))
            await services.scanner.tick(sorted(services.venues))
        summary = await _summary(services, run, started, days)
    return summary


def _on_scan(services: Services, run: DemoRun) -> OnScan:
    async def on_scan(
        watchlist: WatchlistSpec, tick: ScanTick, events: list[PositionEvent], report: ScanReport
    ) -> None:
        local = tick.fire_time.strftime("%Y-%m-%d %H:%M UTC")
        for event in events:
            run.echo(f"{local}  {event.venue}  {event.text}")
        for walk in report.walks:
            for notice in walk.notices:
                run.echo(f"{local}  notice: {notice}")
            if not walk.created:
                continue
            card = walk.card or {}
            if walk.status == SignalStatus.BLOCKED.value:
                run.echo(
                    f"{local}  {watchlist.name}  {walk.signal_id} {card.get('symbol', '')} blocked by risk: "
                    + "; ".join(c["detail"] for c in card.get("risk", []) if not c["passed"])
                )
                continue
            if not card or walk.status in (SignalStatus.HOLD.value, SignalStatus.ABSTAINED.value):
                continue
            run.proposed += 1
            chart = await card_chart(
                services.venues[watchlist.venue], card, services.charts_dir, services.venue_calendar(watchlist.venue)
            )
            if chart is not None:
                run.charts.append(str(chart))
            run.echo(f"\n{local}  signal card\n{card_text(card)}")
            if walk.status != SignalStatus.PENDING.value:
                run.echo(
                    f"  -> {walk.status} ({'auto-approved' if run.approve == 'all' else ''}) {walk.reason}".rstrip()
                )
                continue
            if run.approve == "ask":
                assert run.prompt is not None
                yes = await run.prompt.ask_yes_no(f"approve {walk.signal_id}?")
                decision = "approved" if yes else "rejected"
                result = await services.runner.decide(walk.signal_id, decision, actor=CONSOLE_USER.actor)
                run.echo(f"  -> {result.status} {result.reason}".rstrip())
        # A fresh run stops here so the cards wait for `tradeops chat`; a continued one runs its days
        # and lets what nobody answers expire.
        if run.approve == "none" and not run.resume and report.pending and any(w.created for w in report.pending):
            run.stop_after_scan = True

    return on_scan


async def _summary(services: Services, run: DemoRun, started: float, days: int) -> dict[str, Any]:
    with Session(services.engine) as session:
        signals = list(session.exec(select(SignalRow)).all())
        approvals = list(session.exec(select(Approval)).all())
        orders = list(session.exec(select(OrderRow)).all())
        fills = list(session.exec(select(FillRow)).all())
    trade_signals = [s for s in signals if s.side in ("buy", "sell")]
    per_venue: dict[str, dict[str, int]] = {}
    equity_start: dict[str, str] = {}
    equity_end: dict[str, str] = {}
    realized: dict[str, Decimal] = {}
    open_positions: list[dict[str, str]] = []
    charts = sorted(run.charts)
    for name, venue in sorted(services.venues.items()):
        broker = venue.broker_required()
        positions = await broker.positions()
        per_venue[name] = {
            "signals": sum(1 for s in trade_signals if s.venue == name),
            "orders": sum(1 for o in orders if o.venue == name),
            "fills": sum(1 for f in fills if f.venue == name),
            "open_positions": len(positions),
        }
        open_positions.extend({"venue": name, "symbol": p.symbol, "qty": str(p.qty)} for p in positions)
        instruments = await venue.instruments()
        for currency in sorted({i.currency for i in instruments}):
            key = f"{name}:{currency}"
            account = await broker.account(currency)
            history = [h for h in services.plans.equity_history(name) if h.currency == currency]
            equity_start[key] = str((history[0].equity if history else account.equity).quantize(Decimal("0.01")))
            equity_end[key] = str(account.equity.quantize(Decimal("0.01")))
            symbols = {i.symbol for i in instruments if i.currency == currency}
            ledger_positions = [p for p in await broker.positions(include_closed=True) if p.symbol in symbols]
            realized[currency] = realized.get(currency, Decimal(0)) + sum(
                (p.realized_pnl for p in ledger_positions), Decimal(0)
            )
            if len(history) >= 2:
                path = services.charts_dir / f"equity-{name}-{currency}.png"
                points = [(h.ts, h.equity) for h in history]
                charts.append(str(await equity_chart(points, path, currency, f"{name} equity")))
    abstained: dict[str, int] = {}
    for row in signals:
        if row.status == SignalStatus.ABSTAINED.value:
            kind = abstain_kind(row.reasons[0] if row.reasons else "")
            abstained[kind] = abstained.get(kind, 0) + 1
    decided = {a.decision: 0 for a in approvals}
    for approval in approvals:
        decided[approval.decision] += 1
    summary = {
        "approve_mode": run.approve,
        "policy": services.deps.policy.name,
        "days": days,
        "clock_start": REPLAY_START.isoformat(),
        "clock_end": services.clock.now().isoformat(),
        "signals": len(trade_signals),
        "pending": sum(1 for s in signals if s.status == SignalStatus.PENDING.value),
        "approved": decided.get("approved", 0),
        "rejected": decided.get("rejected", 0),
        "expired": decided.get("expired", 0),
        "blocked_by_risk": sum(1 for s in signals if s.status == SignalStatus.BLOCKED.value),
        "executed": sum(1 for s in signals if s.status == SignalStatus.EXECUTED.value),
        "aborted": sum(1 for s in signals if s.status == SignalStatus.ABORTED.value),
        # A run where every LLM call failed must not look like a quiet day.
        "abstained": sum(abstained.values()),
        "abstained_by_reason": dict(sorted(abstained.items(), key=lambda kv: (-kv[1], kv[0]))),
        "orders": len(orders),
        "fills": len(fills),
        "open_positions": open_positions,
        "realized_pnl": {c: str(v.quantize(Decimal("0.01"))) for c, v in sorted(realized.items())},
        "equity_start": equity_start,
        "equity_end": equity_end,
        "per_venue": per_venue,
        "charts": charts,
        "database": redact_url(services.settings.resolved_database_url),
        "data_dir": str(services.charts_dir.parent),
        "elapsed_seconds": round(time.perf_counter() - started, 2),
    }
    return summary


def abstain_kind(reason: str) -> str:
    """The kind of an abstention from its reason: "LLM timeout: ..." -> "LLM timeout"."""
    head, sep, _ = reason.partition(":")
    return head.strip()[:60] if sep and head.strip() else (reason.strip()[:60] or "no reason given")


def summary_text(summary: dict[str, Any]) -> str:
    lines = [
        "",
        f"demo done in {summary['elapsed_seconds']} s: {summary['clock_start']} -> {summary['clock_end']}",
        f"signals {summary['signals']}: approved {summary['approved']}, rejected {summary['rejected']}, "
        f"expired {summary['expired']}, blocked by risk {summary['blocked_by_risk']}, pending {summary['pending']}",
        f"orders {summary['orders']}, fills {summary['fills']}, open positions {len(summary['open_positions'])}",
        *(
            [
                f"abstained {summary['abstained']} (no decision made): "
                + ", ".join(f"{kind} {n}" for kind, n in summary["abstained_by_reason"].items())
            ]
            if summary["abstained"]
            else []
        ),
        "realized P&L: " + ", ".join(f"{v} {c}" for c, v in summary["realized_pnl"].items()),
    ]
    for key, end in summary["equity_end"].items():
        lines.append(f"equity {key}: {summary['equity_start'][key]} -> {end}")
    lines.append(f"database: {summary['database']}")
    lines.append(f"charts: {len(summary['charts'])} in {summary['data_dir']}/charts")
    if summary["pending"]:
        lines.append("pending signals wait for you: tradeops chat -c '/signals pending', then /approve ID")
    return "\n".join(lines)
