"""The `tradeops` command line. Imports of anything heavy (pandas, venue libraries, the database)
happen inside the commands, so `tradeops --help` starts instantly."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from bot.errors import OneLineErrors, remember_settings

if TYPE_CHECKING:
    from bot.settings import Settings

app = typer.Typer(
    cls=OneLineErrors,
    name="tradeops",
    help="Chat-ops trading copilot: session-aware scans, a deterministic risk gate, approvals in chat, paper orders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"tradeops {version('tradeops')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """tradeops: paper trading only; there is no path to a real-money order."""


DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Use this data directory (overrides TRADEOPS_DATA_DIR).", show_default=False),
]
DATABASE_UNAVAILABLE = 3  # exit status: the database could not be reached or had no connection left


class DemoApproval(StrEnum):
    """--approve of the demo: listed in --help, and typer refuses any other value (exit 2)."""

    ask = "ask"
    all = "all"
    none = "none"


class DemoPolicy(StrEnum):
    rules = "rules"
    llm = "llm"
    ml = "ml"


JsonOption = Annotated[bool, typer.Option("--json", help="Print the structured result as JSON.")]


def setting_name(loc: tuple[int | str, ...]) -> str:
    """The variable a user sets for a settings field: ("discord_guild_id",) -> TRADEOPS_DISCORD_GUILD_ID."""
    field = str(loc[0]) if loc else "settings"
    return f"TRADEOPS_{field.upper()}" if field.islower() else field


def _settings(
    data_dir: Path | None = None, *, quiet: bool = False, create: bool = True, check_dir: bool = True
) -> Settings:
    """Settings, with the data dir checked (bot/data_dir.py) and, when ``create``, made; and
    logging: with ``quiet`` only warnings reach the terminal, and everything goes to tradeops.log in
    the data dir unless ``create`` is False (a command that must write nothing: sql, doctor).
    ``check_dir=False``: the command reports on the data dir itself (doctor)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from bot.data_dir import check_data_dir
    from bot.errors import settings_error_line
    from bot.logs import setup_logging
    from bot.settings import load_settings

    try:
        settings = load_settings(**({"data_dir": data_dir} if data_dir is not None else {}))
    except ValidationError as exc:
        lines = [f"{setting_name(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        heading = "invalid settings (TRADEOPS_* variables or .env):"
        text = f"{heading} {lines[0]}" if len(lines) == 1 else "\n  ".join([heading, *lines])
        typer.echo(text, err=True)
        raise typer.Exit(2) from None
    except SettingsError as exc:
        line = settings_error_line(exc)
        if line is None:
            raise
        typer.echo(f"invalid settings (TRADEOPS_* variables or .env): {line}", err=True)
        raise typer.Exit(2) from None
    remember_settings(settings)
    if check_dir:
        check_data_dir(settings.data_dir, create=create)
    setup_logging(
        settings.log_level,
        log_file=settings.data_dir / "tradeops.log" if quiet and create else None,
        console_level="WARNING" if quiet else None,
        fmt=settings.log_format,
    )
    return settings


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDirOption = None) -> None:
    """Create or update the database schema to the latest revision."""
    from bot.wiring import open_database
    from storage.db import redact_url
    from storage.migrate import upgrade

    settings = _settings(data_dir)
    with _database_errors(settings):
        engine = open_database(settings, migrate=False, one_shot=True)
        try:
            revision = upgrade(engine)
        finally:
            engine.dispose()
    typer.echo(f"database {redact_url(settings.resolved_database_url)} is at revision {revision}")


@db_app.command("status")
def db_status(data_dir: DataDirOption = None) -> None:
    """Show the schema revision of the database and the latest one this version knows (creates nothing)."""
    from bot.wiring import open_database
    from storage.db import redact_url
    from storage.migrate import current_revision, head_revision

    settings = _settings(data_dir, create=False)
    with _database_errors(settings):
        engine = open_database(settings, read_only=True)
        try:
            current, head = current_revision(engine), head_revision()
        finally:
            engine.dispose()
    state = "up to date" if current == head else "needs `tradeops db upgrade`"
    url = redact_url(settings.resolved_database_url)
    typer.echo(f"database {url}: revision {current or 'none'}, latest {head}: {state}")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help='One read-only SQL statement, e.g. "select * from orders".')],
    lake: Annotated[
        bool, typer.Option("--lake", help="Query the bars lake (view `bars`) with DuckDB instead of the database.")
    ] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: a list of row objects.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(help="At most this many rows (default: 100 in the table, all with --csv or --json).", min=0),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run one read-only query and print the rows: against the tradeops database, or with --lake
    against the bars lake (`bars`: venue, symbol, timeframe, ts, open, high, low, close, volume).
    One plain SELECT (or WITH ... SELECT), checked by a SQL parser before it is sent, in a read-only
    transaction on a read-only connection; creates nothing. Exit status 2: refused or bad input."""
    from bot.lake_commands import CommandError, format_of, print_rows

    try:
        fmt = format_of(as_csv, as_json)
    except CommandError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows_limit = limit if limit is not None else (100 if fmt == "table" else None)
    settings = _settings(data_dir, quiet=True, create=False)
    try:
        if lake:
            from bot.lake_commands import settings_lake
            from storage.lake_sql import query_lake

            result = query_lake(settings_lake(settings), query, limit=rows_limit)
            columns, rows, truncated = result.columns, result.rows, result.truncated
        else:
            from bot.wiring import open_database
            from storage.db import read_only_query

            with _database_errors(settings):
                engine = open_database(settings, read_only=True)
                try:
                    fetch = None if rows_limit is None else rows_limit + 1
                    columns, rows = read_only_query(engine, query, limit=fetch)
                finally:
                    engine.dispose()
            truncated = rows_limit is not None and len(rows) > rows_limit
            rows = rows[:rows_limit] if truncated else rows
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    print_rows(columns, rows, fmt, typer.echo, truncated=truncated)


@app.command()
def backfill(
    venue: Annotated[str, typer.Option(help="Download from this venue, e.g. replay-crypto.", show_default=False)],
    symbol: Annotated[list[str], typer.Option(help="A symbol of the venue; repeat for more.", show_default=False)],
    timeframe: Annotated[str, typer.Option(help="Bar timeframe: 1m 5m 15m 30m 1h 4h 1d 1w.", show_default=False)],
    from_: Annotated[
        str, typer.Option("--from", help="First day (YYYY-MM-DD, or YYYY-MM-DDTHH:MM), UTC.", show_default=False)
    ],
    to: Annotated[str, typer.Option(help="Last day, included (YYYY-MM-DD, or an exclusive YYYY-MM-DDTHH:MM), UTC.")],
    chunk_bars: Annotated[
        int, typer.Option(help="Bars per chunk: one Parquet part and one checkpoint each.", min=1, max=1_000_000)
    ] = 5000,
    data_dir: DataDirOption = None,
) -> None:
    """Download history into the bars lake (<data dir>/lake), chunk by chunk; a re-run resumes an
    interrupted one and never fetches what the lake has. Exit status 2: bad input; 1: the venue
    failed (what was fetched is kept); 130: interrupted."""
    from rich.console import Console

    from bot.lake_commands import (
        BackfillRun,
        CommandError,
        backfill_blocking,
        interrupted_lines,
        parse_moment,
        settings_lake,
        source_venue,
    )
    from bot.venues import history_sources
    from bot.wiring import open_database
    from storage.lake import LakeBusyError, LakeError
    from venues.clock import RealClock
    from venues.errors import UnknownSymbolError, UnknownTimeframeError, VenueError

    settings = _settings(data_dir, quiet=True)
    console = Console(stderr=True)
    run = BackfillRun(echo=typer.echo, console=console if console.is_terminal else None)
    clock = RealClock()
    try:
        start = parse_moment(from_, option="--from", end=False)
        end = parse_moment(to, option="--to", end=True)
        with _database_errors(settings):
            engine = open_database(settings, one_shot=True)
        try:
            source = source_venue(history_sources(settings, clock, engine), venue)
            backfill_blocking(
                settings_lake(settings), source, symbol, timeframe, start, end,
                clock=clock, run=run, chunk_bars=chunk_bars,
            )  # fmt: skip
        finally:
            engine.dispose()
    except (CommandError, UnknownSymbolError, UnknownTimeframeError, LakeBusyError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (VenueError, LakeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        typer.echo(interrupted_lines(run)[0], err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        for line in interrupted_lines(run):
            typer.echo(line, err=True)
        raise typer.Exit(130) from None


@app.command()
def backtest(
    venue: Annotated[str, typer.Option(help="replay-crypto, replay-us, replay-cn or lake (the data dir's bars lake).")],
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols of the venue, e.g. BTC/USD.")],
    timeframe: Annotated[str, typer.Option(help="Bar timeframe the scans use: 1m 5m 15m 30m 1h 4h 1d.")],
    from_: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD, or YYYY-MM-DDTHH:MM), UTC.")],
    to: Annotated[str, typer.Option(help="Last day, included (YYYY-MM-DD, or an exclusive YYYY-MM-DDTHH:MM), UTC.")],
    policy: Annotated[
        str,
        typer.Option(
            help="rules, llm, ml (TRADEOPS_ML_MODEL or the promoted model) or sma_cross (the reference crossover)."
        ),
    ] = "rules",
    param: Annotated[
        list[str] | None, typer.Option(help="A policy parameter NAME=NUMBER; repeat for more.", show_default=False)
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="With --policy ml: the model id (default: TRADEOPS_ML_MODEL, else the promoted model).",
            show_default=False,
        ),
    ] = None,
    capital: Annotated[str, typer.Option(help="Starting cash in the symbols' currency.")] = "100000",
    profile: Annotated[str, typer.Option(help="Risk profile: low, medium or high.")] = "medium",
    no_costs: Annotated[bool, typer.Option("--no-costs", help="No fees and no slippage.")] = False,
    walk_forward: Annotated[
        int, typer.Option(help="Run K folds in time order and report each and the out-of-sample total.", min=0)
    ] = 0,
    purge_bars: Annotated[int, typer.Option(help="Walk-forward: bars between a fold's train and test.", min=0)] = 0,
    embargo_bars: Annotated[int, typer.Option(help="Walk-forward: bars after a test window no fold tests.", min=0)] = 0,
    report: Annotated[
        Path | None,
        typer.Option(help="Write a self-contained HTML report here (and its chart PNG beside it).", show_default=False),
    ] = None,
    keep_db: Annotated[
        Path | None,
        typer.Option(
            "--keep-db",
            help="Keep the run's SQLite database (orders, fills, positions, cash, equity curve, signals, plans) "
            "in this new file, for `tradeops sql` or sqlite3; with --walk-forward one file per fold "
            "(run.db -> run.fold0.db, run.fold1.db, ...). Never overwrites a file.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Replay the live path (screen, policy, risk gate, paper broker, exits) over a window on a
    simulated clock, approving every signal, on a fresh temporary database (thrown away unless
    --keep-db). Exit status 2: bad input."""
    from rich.console import Console

    from bot.backtest import backtest as run_backtest
    from bot.backtest import (
        check_keep_db,
        fold_db_path,
        parse_capital,
        parse_params,
        progress_bar,
        result_text,
        walk_forward_backtest,
        walk_forward_text,
    )
    from bot.lake_commands import CommandError, parse_moment
    from scheduler.backtest.engine import BacktestError, BacktestSpec
    from venues.errors import UnknownSymbolError, UnknownTimeframeError

    settings = _settings(data_dir, quiet=True)
    if model is not None:
        if policy.strip() != "ml":
            typer.echo(f"error: --model is for --policy ml, not --policy {policy.strip()}", err=True)
            raise typer.Exit(2)
        settings = settings.model_copy(update={"ml_model": model.strip()})
    console = Console(stderr=True)
    try:
        spec = BacktestSpec(
            venue=venue.strip(),
            symbols=tuple(s.strip() for s in symbols.split(",") if s.strip()),
            timeframe=timeframe.strip(),
            start=parse_moment(from_, option="--from", end=False),
            end=parse_moment(to, option="--to", end=True),
            policy=policy.strip(),
            params=parse_params(param or []),
            capital=parse_capital(capital),
            profile=profile.strip(),
            costs=not no_costs,
        )
        if report is not None and walk_forward:
            raise BacktestError("--report is for a single run; leave out --walk-forward, or --report")
        if (purge_bars or embargo_bars) and not walk_forward:
            # They shape the folds only: without folds they would be silently ignored.
            raise BacktestError("--purge-bars and --embargo-bars are for --walk-forward K; add it, or leave them out")
        if len(set(spec.symbols)) < len(spec.symbols):
            raise BacktestError(f"--symbols {symbols.strip()} names a symbol twice: name each once")
        if spec.params and spec.policy != "sma_cross":
            # The other policies take their parameters from settings: a --param would be silently ignored.
            raise BacktestError(f"--param is for --policy sma_cross (fast, slow, size, qty), not {spec.policy}")
        if keep_db is not None and not walk_forward:
            check_keep_db(keep_db)  # before the run, which may take minutes (each fold's file: when known)
        with _database_errors(settings), progress_bar(console if console.is_terminal else None) as on_progress:
            if walk_forward:
                doc = asyncio.run(
                    walk_forward_backtest(
                        settings,
                        spec,
                        walk_forward,
                        purge=purge_bars,
                        embargo=embargo_bars,
                        on_progress=on_progress,
                        keep_db=keep_db,
                    )
                )
            else:
                result = asyncio.run(run_backtest(settings, spec, on_progress=on_progress, keep_db=keep_db))
    except (CommandError, BacktestError, UnknownSymbolError, UnknownTimeframeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if keep_db is not None:
        kept = [fold_db_path(keep_db, f["index"]) for f in doc["walk_forward"]["folds"]] if walk_forward else [keep_db]
        typer.echo(f"database kept: {', '.join(str(p) for p in kept)}", err=True)
    if walk_forward:
        typer.echo(json.dumps(doc, indent=2) if as_json else walk_forward_text(doc))
        return
    if report is not None:
        from scheduler.backtest.report import write_report

        html_path, png_path = write_report(result, report)
        typer.echo(f"report: {html_path} (chart {png_path})", err=True)
    if as_json:
        typer.echo(json.dumps({**result.to_json(), "elapsed_seconds": result.elapsed_seconds}, indent=2))
    else:
        typer.echo(result_text(result))


@app.command()
def doctor(data_dir: DataDirOption = None) -> None:
    """Say what is configured and what answers: database, schema, market data, indicators. Creates
    nothing (a missing data dir or database is reported as such). Exit status 1: a check failed."""
    from bot.doctor import run_checks

    settings = _settings(data_dir, create=False, check_dir=False)
    failed = 0
    for check in run_checks(settings):
        mark = "ok  " if check.ok and not check.warning else "warn" if check.ok else "FAIL"
        failed += not check.ok
        typer.echo(f"[{mark}] {check.name}: {check.detail}")
    raise typer.Exit(1 if failed else 0)


def _one_command(settings: Settings, text: str, *, as_json: bool, seed_watchlists: bool = False) -> int:
    """Run one chat command as the console user and print the reply; the exit code says if it worked."""
    from bot.console import answer_without_services, run_command_status

    answered = answer_without_services(text, as_json=as_json)  # /help needs no database
    if answered is not None:
        typer.echo(answered[0])
        return answered[1]
    from bot.command_table import needs_agent
    from bot.services import open_services
    from bot.services import seed_watchlists as seed

    async def main() -> int:
        async with open_services(settings, one_shot=True, agent=needs_agent(text)) as services:
            # The shipped watchlists are on the replay venues: only a replay process gets them.
            if seed_watchlists and services.simulated and not services.watchlists.all():
                seed(services)
            out, status = await run_command_status(services, text, as_json=as_json)
            typer.echo(out)
            return status

    with _database_errors(settings):
        return asyncio.run(main())


@contextlib.contextmanager
def _database_errors(settings: Settings) -> Iterator[None]:
    """A database that cannot be reached or has no connection left to give (PostgreSQL's "too
    many clients") is one clear message on stderr and exit status 3, not a traceback."""
    try:
        yield
    except Exception as exc:
        from storage.db import connection_problem

        problem = connection_problem(exc, settings.resolved_database_url)
        if problem is None:
            raise
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(DATABASE_UNAVAILABLE) from None


@app.command()
def chat(
    command: Annotated[
        str | None, typer.Option("-c", "--command", help='Run one command and exit, e.g. -c "/positions".')
    ] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """The console chat: the same commands as Telegram and Discord, as the local admin."""
    settings = _settings(data_dir, quiet=True)
    if command is not None:
        raise typer.Exit(_one_command(settings, command, as_json=as_json))
    from bot.console import interactive
    from bot.services import open_services

    async def main() -> None:
        async with open_services(settings) as services:
            await interactive(services, echo=typer.echo)

    with _database_errors(settings):
        asyncio.run(main())


@app.command()
def scan(
    watchlist: Annotated[str | None, typer.Argument(help="Scan only this watchlist.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """One scan now, of every watchlist (or one): the screen, the graph, the cards."""
    settings = _settings(data_dir, quiet=True)
    text = f"/scan {watchlist or ''}".strip()
    raise typer.Exit(_one_command(settings, text, as_json=as_json, seed_watchlists=True))


@app.command()
def demo(
    approve: Annotated[
        DemoApproval,
        typer.Option(help="ask: y/n per signal on a terminal; all: approve everything; none: decide later."),
    ] = DemoApproval.ask,
    days: Annotated[int, typer.Option(help="Days of 2021 to replay (from 2021-07-06).", min=1, max=60)] = 7,
    resume: Annotated[
        bool,
        typer.Option(
            "--continue",
            help="Carry on from where the last demo on this data dir stopped, for --days more, keeping "
            "its signals and positions (approvals made in `tradeops chat` meanwhile fill; the rest expire).",
        ),
    ] = False,
    policy: Annotated[
        DemoPolicy,
        typer.Option(
            help="rules: the deterministic rule policy (offline); llm: the configured LLM endpoint; ml: the "
            "trained model (TRADEOPS_ML_MODEL, else the promoted one). TRADEOPS_POLICY is not used here."
        ),
    ] = DemoPolicy.rules,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """The whole walk offline on real 2021 data: scans, signals, approvals, paper fills, exits."""
    from bot.demo import DemoError, run_demo
    from bot.services import LLM_VARIABLES

    mode: Literal["ask", "all", "none"] = approve.value
    configured = _settings(data_dir, quiet=True)
    settings = configured.model_copy(update={"policy": policy.value})
    if policy is DemoPolicy.llm and not settings.llm_config.configured:
        typer.echo(f"error: --policy llm needs an LLM endpoint: set {LLM_VARIABLES}", err=True)
        raise typer.Exit(2)
    if policy is DemoPolicy.ml:
        from bot.doctor import ml_model_problem

        _, problem = ml_model_problem(settings)
        if problem is not None:
            typer.echo(f"error: --policy ml needs a model that loads: {problem}", err=True)
            raise typer.Exit(2)
    echo = (lambda _line: None) if as_json else typer.echo
    # With --json, stdout is the summary alone; a fallback the user did not ask for goes to stderr.
    warn = (lambda line: typer.echo(line, err=True)) if as_json else None
    if configured.policy not in ("auto", policy.value):
        (warn or echo)(
            f"note: the demo decides with --policy {policy.value}; TRADEOPS_POLICY={configured.policy} is not used"
        )
    try:
        summary = asyncio.run(run_demo(settings, approve=mode, days=days, echo=echo, warn=warn, resume=resume))
    except DemoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    from bot.demo import summary_text

    typer.echo(summary_text(summary))


@app.command()
def run(
    replay: Annotated[
        bool,
        typer.Option("--replay", help="Run on the shipped 2021 replay data on a simulated clock (no venue needed)."),
    ] = False,
    speed: Annotated[
        float, typer.Option(help="With --replay: simulated seconds per real second.", min=0.001, max=1_000_000)
    ] = 60.0,
    data_dir: DataDirOption = None,
) -> None:
    """The bot: scheduled scans, approvals expiry, position management and every chat transport
    that has a token, until Ctrl-C or SIGTERM. Exit status 2: nothing to run with, or another run
    holds the database; 3: the database cannot be reached; 4: a transport stopped the run (another
    process took the Telegram token)."""
    from bot.run import RunRefused, TransportError, check_transports_configured, run_bot

    settings = _settings(data_dir)
    try:
        check_transports_configured(settings)
        with _database_errors(settings):
            status = asyncio.run(run_bot(settings, replay=replay, speed=speed))
    except (RunRefused, TransportError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(status)


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues to take tasks from: scan, decide, notify.")
    ] = "scan,decide,notify",
    concurrency: Annotated[
        int | None, typer.Option(help="Worker processes (prefork); default: one per CPU.", show_default=False)
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """A Celery worker of the Celery executor (TRADEOPS_EXECUTOR=celery, TRADEOPS_REDIS_URL): runs the
    scans, decisions and notices `tradeops run` queues, until SIGTERM (running tasks finish). Exit
    status 2: a setting cannot work or Redis does not answer; 3: the database cannot be reached."""
    import os

    from bot.worker import WorkerError, parse_queues, start_worker

    settings = _settings(data_dir)
    try:
        names = parse_queues(queues)
        with _database_errors(settings):
            start_worker(settings, names, concurrency if concurrency is not None else os.cpu_count() or 1)
    except WorkerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


# `train` and `models` live in bot/ml_commands.py; registered last so they list after the others.
from bot.ml_commands import register as _register_ml_commands  # noqa: E402

_register_ml_commands(app, _settings)
