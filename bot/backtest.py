"""`tradeops backtest`: the application's own objects (venues, paper brokers, graph, risk gate,
scanner) wired on a fresh temporary database and a simulated clock with every signal approved, then
driven by scheduler.backtest over the window. The user's database is never touched; the bars lake
of the data dir is the ``lake`` venue, as everywhere else."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from agent.deps import AutoApprove
from agent.llm.cutoff import LeakCheck, leak_check
from bot.services import LLM_VARIABLES, open_services
from bot.settings import Settings
from bot.venues import build_venues
from bot.wiring import open_database
from scheduler.backtest.engine import BacktestError, BacktestResult, BacktestSpec, run_backtest
from scheduler.backtest.report import number_text as _num
from scheduler.backtest.report import percent_text as _pct
from scheduler.backtest.report import price_text as _price
from scheduler.backtest.walkforward import fold_windows, walk_forward_json
from storage.db import make_engine, sqlite_url
from storage.llm import LLMCache, call_counts
from storage.migrate import create_migrated_sqlite
from tools.model_registry import ModelRegistry, RegistryError
from venues.clock import SimulatedClock, moment_text, window_text
from venues.lake import LAKE_VENUE
from venues.paper import PaperBroker

POLICIES = ("rules", "llm", "ml", "sma_cross")
PROFILES = ("low", "medium", "high")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Beyond a trillion, quantities and cash outgrow the ledger's decimal context (the order sizing
# raised InvalidOperation on every signal at 1e21 and sma_cross DivisionImpossible at 1e30).
MAX_CAPITAL = Decimal(10) ** 12
LLM_COUNTS = ("requests_sent", "answers_from_cache", "cache_misses", "abstained_on_cache_miss")


def parse_params(values: Sequence[str]) -> dict[str, float]:
    """``["fast=10", "slow=30"]`` -> {"fast": 10.0, "slow": 30.0}; BacktestError on anything else."""
    params: dict[str, float] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        name = name.strip()
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not sep or not name or not math.isfinite(number):
            raise BacktestError(f"--param {item!r} is not NAME=NUMBER, e.g. --param fast=10")
        if name in params:
            raise BacktestError(f"--param {name} is given twice ({params[name]:g} and {number:g}): give it once")
        params[name] = number
    return params


def parse_capital(value: str) -> Decimal:
    """``--capital`` as a Decimal; BacktestError when it is not a plain number (``1,000``) or lies
    outside (0, :data:`MAX_CAPITAL`]."""
    try:
        capital = Decimal(value.strip())
    except InvalidOperation:
        raise BacktestError(f"--capital {value!r} is not a number; write it plainly, e.g. 1000 or 0.5") from None
    if not capital.is_finite():
        raise BacktestError(f"--capital {value!r} is not a number; write it plainly, e.g. 1000 or 0.5")
    check_capital(capital, typed=value.strip())
    return capital


def check_capital(capital: Decimal, *, typed: str | None = None) -> None:
    """BacktestError unless 0 < ``capital`` <= :data:`MAX_CAPITAL` (the message names the range and
    quotes ``typed``, what the user wrote, when given)."""
    if not capital.is_finite() or not 0 < capital <= MAX_CAPITAL:
        raise BacktestError(
            f"--capital {typed or capital} is out of range: it must be above zero and at most {MAX_CAPITAL:,} "
            "(one trillion), e.g. --capital 100"
        )


def backtest_settings(settings: Settings, spec: BacktestSpec, database: Path) -> Settings:
    """The user's settings with the backtest's database, capital, profile, costs and approvals."""
    cash = spec.capital
    return settings.model_copy(
        update={
            "database_url": SecretStr(sqlite_url(database)),
            "market_data": "replay",
            "risk_profile": spec.profile,
            "auto_approve": "all",
            # sma_cross decides outside the graph; the graph keeps the rule policy it never uses.
            "policy": "rules" if spec.policy == "sma_cross" else spec.policy,
            "paper_cash_usd": cash,
            "paper_cash_usdt": cash,
            "paper_cash_cny": cash,
            "paper_slippage_bps": settings.paper_slippage_bps if spec.costs else Decimal(0),
            # One decision at a time: side by side, what a prompt shows (cash, positions, today's
            # trades) would depend on which candidate's order landed first, so a re-run would ask
            # other questions than the cache holds.
            "llm_concurrency": 1,
        }
    )


@asynccontextmanager
async def shared_llm_cache(settings: Settings, spec: BacktestSpec) -> AsyncIterator[LLMCache | None]:
    """The LLM response cache of the data dir's database (the one `tradeops run` uses), for an LLM
    backtest with the cache on: its own database is thrown away, its answers must not be. Nothing
    else of that database is read or written."""
    if spec.policy != "llm" or settings.llm_cache == "off":
        yield None
        return
    engine = await asyncio.to_thread(open_database, settings, one_shot=True)
    try:
        yield LLMCache(engine)
    finally:
        engine.dispose()


def llm_report(settings: Settings, spec: BacktestSpec, engine: Engine) -> tuple[dict[str, Any], LeakCheck]:
    """The ``llm`` block of an LLM backtest (from the decision traces of its database) and the
    training cut-off check of its window."""
    config = settings.llm_config
    counts = call_counts(engine, EPOCH)
    leak = leak_check(config.model or "", spec.start, spec.end, config.training_cutoff)
    block: dict[str, Any] = {
        "model": config.model,
        "cache": config.cache,
        "requests_sent": counts.sent,
        "answers_from_cache": counts.cached,
        "cache_misses": counts.cache_misses,
        "abstained_on_cache_miss": counts.missed_signals,
        "prompt_tokens": counts.usage.prompt_tokens,
        "completion_tokens": counts.usage.completion_tokens,
        "cost_usd": str(counts.usage.cost_usd),
        **leak.to_json(),
    }
    return block, leak


def ml_leak_check(model_id: str, card: dict[str, Any], start: datetime) -> LeakCheck:
    """An ML backtest whose window starts before the end of the model's training window (its card's
    ``window``) tests the model partly on bars it was trained on, or with knowledge of bars after them."""
    trained_to = (card.get("window") or {}).get("to")
    if not trained_to:
        return LeakCheck(model_id, None, "", False, "")
    end = datetime.fromisoformat(trained_to)
    if start >= end:
        return LeakCheck(model_id, end.date(), "model card", False, "")
    reason = (
        f"model {model_id} was trained on bars up to {trained_to}: a window from {start.isoformat()} is partly "
        "in its training data (or before it), so these results are in sample"
    )
    return LeakCheck(model_id, end.date(), "model card", True, reason)


@contextmanager
def progress_bar(console: Console | None) -> Iterator[Callable[[float], None] | None]:
    """A rich progress bar on a terminal (None elsewhere), fed the share of the window done."""
    if console is None:
        yield None
        return
    with Progress(
        TextColumn("backtest"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("backtest", total=1.0)
        yield lambda done: progress.update(task, completed=done)


def check_keep_db(path: Path) -> None:
    """BacktestError unless ``path`` can become a new file: a kept database never overwrites one,
    and its folder must exist and be writable. Checked before the run, which may take minutes."""
    if path.exists() or path.is_symlink():
        raise BacktestError(f"--keep-db {path} already exists: name a new file (a kept database never overwrites one)")
    folder = path.parent
    if not folder.is_dir():
        raise BacktestError(f"--keep-db {path}: the folder {folder} does not exist; create it or name another file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BacktestError(f"--keep-db {path}: the folder {folder} is not writable")


def fold_db_path(path: Path, index: int) -> Path:
    """Where a walk-forward fold's database is kept: ``run.db`` -> ``run.fold0.db`` for fold 0."""
    return path.with_name(f"{path.stem}.fold{index}{path.suffix}")


def keep_database(database: Path, path: Path) -> None:
    """Copy the closed run database ``database`` to the new file ``path``, as one self-contained
    file (rollback journal, no -wal beside it). BacktestError when ``path`` appeared meanwhile."""
    connection = sqlite3.connect(database)
    try:
        connection.execute("PRAGMA journal_mode=DELETE")  # folds the WAL into the file
    finally:
        connection.close()
    try:
        with database.open("rb") as source, path.open("xb") as target:
            shutil.copyfileobj(source, target)
    except FileExistsError:
        raise BacktestError(f"--keep-db {path} appeared during the run; the run's database was not kept") from None


async def backtest(
    settings: Settings,
    spec: BacktestSpec,
    *,
    on_progress: Callable[[float], None] | None = None,
    keep_db: Path | None = None,
) -> BacktestResult:
    """Run ``spec`` on a fresh database in a temporary directory (deleted afterwards). ``keep_db``:
    a new SQLite file that receives the run's database at the end, with its paper ledger (orders,
    fills, positions, cash), equity curve, signals and plans (`--keep-db`); BacktestError before
    the run when it exists or its folder does not (:func:`check_keep_db`), and for a capital out of
    range (:func:`check_capital`)."""
    if keep_db is not None:
        check_keep_db(keep_db)
    check_capital(spec.capital)
    if spec.policy not in POLICIES:
        raise BacktestError(f"--policy {spec.policy!r} is not one of: {', '.join(POLICIES)}")
    if spec.profile not in PROFILES:
        raise BacktestError(f"--profile {spec.profile!r} is not one of: {', '.join(PROFILES)}")
    if spec.policy == "llm" and not settings.llm_config.configured:
        raise BacktestError(f"--policy llm needs an LLM endpoint: set {LLM_VARIABLES}")
    ml_leak = LeakCheck("", None, "", False, "")
    if spec.policy == "ml":
        try:
            model = await asyncio.to_thread(ModelRegistry(settings.models_dir).load, settings.ml_model or None)
        except RegistryError as exc:
            raise BacktestError(f"--policy ml: {exc}") from None
        spec = dataclasses.replace(spec, model=model.id)
        ml_leak = ml_leak_check(model.id, model.card, spec.start)
    with tempfile.TemporaryDirectory(prefix="tradeops-backtest-") as tmp:
        database = Path(tmp) / "backtest.db"
        await asyncio.to_thread(create_migrated_sqlite, database)
        run_settings = backtest_settings(settings, spec, database)
        clock = SimulatedClock(spec.start)
        async with (
            shared_llm_cache(settings, spec) as cache,
            open_services(
                run_settings,
                clock=clock,
                auto_approve=AutoApprove(mode="all"),
                one_shot=True,
                with_lake=spec.venue == LAKE_VENUE,
                llm_cache=cache,
                with_graph=spec.policy != "sma_cross",  # it decides outside the graph
                fresh=True,
            ) as services,
        ):
            if spec.venue not in services.venues:
                raise BacktestError(f"unknown venue {spec.venue!r}; valid venues: {', '.join(services.venues)}")
            if not spec.costs:
                for venue in services.venues.values():
                    broker = getattr(venue, "broker", None)
                    if isinstance(broker, PaperBroker):
                        broker.config = dataclasses.replace(broker.config, charge_fees=False)
            result = await run_backtest(
                services.scanner,
                spec,
                calendar=services.venue_calendar(spec.venue),
                on_progress=on_progress,
                persist=keep_db is not None,
                fresh_database=True,
            )
            if spec.policy == "ml":
                result = dataclasses.replace(
                    result, possible_leak=ml_leak.possible_leak, possible_leak_reason=ml_leak.reason
                )
            elif spec.policy == "llm":
                block, leak = llm_report(run_settings, spec, services.engine)
                result = dataclasses.replace(
                    result, llm=block, possible_leak=leak.possible_leak, possible_leak_reason=leak.reason
                )
        if keep_db is not None:
            await asyncio.to_thread(keep_database, database, keep_db)
        return result


def venue_calendar(settings: Settings, spec: BacktestSpec) -> str:
    """The calendar of the backtest's venue ("24/7", "XNYS", "XSHG"), as scans are scheduled on it;
    BacktestError for an unknown venue. Venues are cheap to build and read nothing yet."""
    engine = make_engine("sqlite://")
    try:
        venues = build_venues(
            settings.model_copy(update={"market_data": "replay"}),
            SimulatedClock(spec.start),
            engine,
            with_lake=spec.venue == LAKE_VENUE,
        )
    finally:
        engine.dispose()
    if spec.venue not in venues:
        raise BacktestError(f"unknown venue {spec.venue!r}; valid venues: {', '.join(venues)}")
    return str(getattr(venues[spec.venue], "calendar", "24/7"))


async def walk_forward_backtest(
    settings: Settings,
    spec: BacktestSpec,
    k: int,
    *,
    purge: int = 0,
    embargo: int = 0,
    on_progress: Callable[[float], None] | None = None,
    keep_db: Path | None = None,
) -> dict[str, Any]:
    """K folds in time order, each test window a backtest of its own from the starting capital (a
    fresh database each); returns the walk-forward JSON document (scheduler.backtest.walkforward).
    ``keep_db``: each fold's database is kept in a file of its own, :func:`fold_db_path` (all of
    them checked before the first fold runs)."""
    calendar = venue_calendar(settings, spec)
    if spec.policy == "ml":  # recorded in params (each fold checks that the model loads)
        spec = dataclasses.replace(spec, model=settings.ml_model or ModelRegistry(settings.models_dir).promoted())
    windows = fold_windows(spec, calendar, k, purge=purge, embargo=embargo)
    fold_paths = [None if keep_db is None else fold_db_path(keep_db, w.fold.index) for w in windows]
    for path in fold_paths:
        if path is not None:
            check_keep_db(path)
    results: list[BacktestResult] = []
    for number, window in enumerate(windows):

        def fold_progress(done: float, number: int = number) -> None:
            if on_progress is not None:
                on_progress((number + done) / len(windows))

        fold_spec = dataclasses.replace(spec, start=window.test_start, end=window.test_end)
        results.append(await backtest(settings, fold_spec, on_progress=fold_progress, keep_db=fold_paths[number]))
    doc = walk_forward_json(spec, windows, results, purge=purge, embargo=embargo, calendar=calendar)
    llm: dict[str, Any] | None = None
    leak = LeakCheck("", None, "", False, "")
    if spec.policy == "ml" and results:
        leak = LeakCheck("", None, "", results[0].possible_leak, results[0].possible_leak_reason)
    if spec.policy == "llm":
        config = settings.llm_config
        leak = leak_check(config.model or "", windows[0].test_start, spec.end, config.training_cutoff)
        blocks = [r.llm or {} for r in results]
        llm = {**blocks[0], **{k: sum(int(b.get(k) or 0) for b in blocks) for k in LLM_COUNTS}, **leak.to_json()}
        for key in ("prompt_tokens", "completion_tokens"):
            llm[key] = sum(int(b.get(key) or 0) for b in blocks)
        llm["cost_usd"] = str(sum((Decimal(b.get("cost_usd") or 0) for b in blocks), Decimal(0)))
    return {
        "params": doc.pop("params"),
        "possible_leak": leak.possible_leak,
        "possible_leak_reason": leak.reason or None,
        **doc,
        "llm": llm,
    }


def walk_forward_text(doc: dict[str, Any]) -> str:
    """The terminal summary of a walk-forward run: one line per fold, then the out-of-sample total."""
    wf = doc["walk_forward"]
    lines = [f"walk-forward: {wf['k']} folds, purge {wf['purge_bars']} bars, embargo {wf['embargo_bars']} bars"]
    for fold in wf["folds"]:
        m = fold["metrics"]
        lines.append(
            f"  fold {fold['index']}: test {moment_text(fold['test'][0])} -> {moment_text(fold['test'][1])}: "
            f"return {_pct(m['total_return'])}, "
            f"trades {m['trades']}, win rate {_pct(m['win_rate'])}, max drawdown {_pct(m['max_drawdown'])}"
        )
    m = doc["metrics"]
    lines += llm_lines(doc.get("llm"), doc.get("possible_leak_reason"))
    lines.append(
        f"out of sample: return {_pct(m['total_return'])}, Sharpe {_num(m['sharpe'])}, "
        f"max drawdown {_pct(m['max_drawdown'])}, trades {m['trades']}, win rate {_pct(m['win_rate'])}, "
        f"TP1 hit rate {_pct(m['tp1_hit_rate'])}, profit factor {_num(m['profit_factor'])}"
    )
    return "\n".join(lines)


def llm_lines(llm: dict[str, Any] | None, leak_reason: str | None) -> list[str]:
    """An LLM backtest's calls and, loudly, its leak flag; nothing for the other policies."""
    lines = []
    if llm:
        lines.append(
            f"LLM {llm['model']} (cache {llm['cache']}): {llm['requests_sent']} requests sent, "
            f"{llm['answers_from_cache']} answers from the cache, {llm['cache_misses']} cache misses "
            f"({llm['abstained_on_cache_miss']} decisions abstained on them), "
            f"{llm['prompt_tokens'] + llm['completion_tokens']:,} tokens, ${llm['cost_usd']}"
        )
    if leak_reason:
        lines.append(f"WARNING {leak_reason}")
    return lines


def result_text(result: BacktestResult) -> str:
    """The terminal summary: settings, the data range, the key metrics and the trades."""
    m = result.metrics
    spec = result.spec
    start_text, end_text = window_text(spec.start, spec.end)
    lines = [
        f"backtest {spec.venue} {','.join(spec.symbols)} {spec.timeframe} {start_text} -> "
        f"{end_text} policy {spec.policy}{f' (model {spec.model})' if spec.model else ''} profile {spec.profile} "
        f"capital {spec.capital} {result.currency}" + ("" if spec.costs else " (no costs)"),
    ]
    for symbol, info in result.data_range.items():
        first, last = moment_text(str(info["first"])), moment_text(str(info["last"]))
        lines.append(f"  data {symbol}: {info['bars']} bars {first} -> {last}")
    lines += [
        f"equity {_num(m['start_equity'])} -> {_num(m['end_equity'])} {result.currency}: "
        f"total return {_pct(m['total_return'])}, CAGR {_pct(m['cagr'])}",
        f"Sharpe {_num(m['sharpe'])}, Sortino {_num(m['sortino'])}, max drawdown {_pct(m['max_drawdown'])} "
        f"lasting {_num(m['max_drawdown_days'], 1)} days, exposure {_pct(m['exposure'])}",
        f"trades {m['trades']} (closed {m['closed_trades']}): win rate {_pct(m['win_rate'])}, "
        f"TP1 hit rate {_pct(m['tp1_hit_rate'])}, average R {_num(m['average_r'])}, "
        f"profit factor {_num(m['profit_factor'])}, fees paid {_num(m['costs_paid'])}",
        "signals: " + (", ".join(f"{k} {v}" for k, v in result.signals.items()) or "none"),
        *llm_lines(result.llm, result.possible_leak_reason),
    ]
    for trade in result.trades:
        exit_at = f"{trade.exit_time:%Y-%m-%d %H:%M}" if trade.exit_time else "open"
        lines.append(
            f"  {trade.entry_time:%Y-%m-%d %H:%M} -> {exit_at}  {trade.symbol} {trade.qty:g} "
            f"@ {_price(trade.entry_price)} -> {_price(trade.exit_price)}  "
            f"P&L {trade.pnl:.2f}  R {_num(trade.r)}  {trade.reason}"
        )
    for item in result.skipped[:20]:
        lines.append(f"  skipped {item['time']} {item['symbol']}: {item['reason']}")
    if len(result.skipped) > 20:
        lines.append(f"  ... and {len(result.skipped) - 20} more skipped")
    lines.append(f"done in {result.elapsed_seconds:.1f} s")
    return "\n".join(lines)


CHAT_POLICIES = ("rules", "sma_cross", "llm")
MAX_CHAT_DAYS = 366


def chat_text(result: BacktestResult) -> str:
    """The key figures for a chat reply (the chart carries the curve)."""
    m = result.metrics
    spec = result.spec
    start_text, end_text = window_text(spec.start, spec.end)
    return "\n".join(
        [
            f"backtest {','.join(spec.symbols)} {spec.timeframe} {start_text} -> {end_text} "
            f"({spec.policy}, {spec.profile}, {spec.capital} {result.currency})",
            f"return {_pct(m['total_return'])}, max drawdown {_pct(m['max_drawdown'])}, Sharpe {_num(m['sharpe'])}",
            f"trades {m['trades']}, win rate {_pct(m['win_rate'])}, TP1 hit rate {_pct(m['tp1_hit_rate'])}, "
            f"profit factor {_num(m['profit_factor'])}, fees {_num(m['costs_paid'])}",
            *llm_lines(result.llm, result.possible_leak_reason),
        ]
    )


def run_in_thread(settings: Settings, spec: BacktestSpec) -> BacktestResult:
    """The whole backtest on an event loop of its own: called with asyncio.to_thread, it keeps the
    bot's loop free while it runs."""
    import asyncio

    return asyncio.run(backtest(settings, spec))
