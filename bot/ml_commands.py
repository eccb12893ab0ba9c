"""`tradeops train` and `tradeops models list|show|promote|rollback`, registered on the main app by
``register`` (bot/cli.py). Heavy imports happen inside the commands."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from bot.settings import Settings

SettingsLoader = Callable[..., "Settings"]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Use this data directory (overrides TRADEOPS_DATA_DIR).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")]


@contextmanager
def _progress(console: Console) -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar on a terminal; a line per step on stderr elsewhere."""
    if not console.is_terminal:
        yield lambda done, total, what: typer.echo(f"train: {what} ({done}/{total})", err=True)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("train", total=None)

        def update(done: int, total: int, what: str) -> None:
            progress.update(task, completed=done, total=total, description=f"train: {what}")

        yield update


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def register(app: typer.Typer, load_settings: SettingsLoader) -> None:
    """Add ``train`` and the ``models`` group to ``app``; ``load_settings(data_dir, quiet=True)``
    is the CLI's settings loader (it prints and exits on invalid settings)."""
    models_app = typer.Typer(help="Trained ML models: list, show, promote, roll back.", no_args_is_help=True)
    app.add_typer(models_app, name="models")

    @app.command("train")
    def train_command(
        venue: Annotated[
            str, typer.Option(help="replay (any shipped series), replay-crypto, replay-us, replay-cn or lake.")
        ],
        symbols: Annotated[str, typer.Option(help="Comma-separated symbols, e.g. BTC/USD,ETH/USDT.")],
        timeframe: Annotated[
            str, typer.Option(help="Bar timeframe: 1m 5m 15m 30m 1h 4h 1d (not finer than the data).")
        ],
        from_: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD, or YYYY-MM-DDTHH:MM), UTC.")],
        to: Annotated[
            str, typer.Option(help="Last day, included (YYYY-MM-DD, or an exclusive YYYY-MM-DDTHH:MM), UTC.")
        ],
        model: Annotated[str, typer.Option(help="lgbm, xgb or ensemble (the mean of both).")] = "lgbm",
        folds: Annotated[int, typer.Option(help="Walk-forward folds (2 or more).", min=2)] = 4,
        threshold: Annotated[float, typer.Option(help="Calibrated probability at which the model signals.")] = 0.55,
        trees: Annotated[int, typer.Option(help="Boosting rounds per model.", min=1, max=5000)] = 200,
        seed: Annotated[int, typer.Option(help="Random seed: the same seed and data give the same model.")] = 7,
        short: Annotated[
            bool, typer.Option("--short", help="Also train the short side (mirrored labels) for sell-to-open.")
        ] = False,
        search: Annotated[
            int, typer.Option(help="Optuna trials tuning the trees on the first training window (0: none).", min=0)
        ] = 0,
        search_timeout: Annotated[
            float, typer.Option(help="Seconds the search may take at most (it stops starting trials).")
        ] = 600.0,
        as_json: JsonOption = False,
        data_dir: DataDirOption = None,
    ) -> None:
        """Train a model that scores how likely a long reaches TP1 before its stop after costs,
        validate it walk-forward, and store it with its card in the data dir (not promoted).
        Exit status 2: bad input."""
        from rich.console import Console

        from bot.lake_commands import CommandError, parse_moment
        from bot.ml import TrainError, card_text, load_series, train_model
        from tools.ml import TrainConfig
        from tools.model_registry import RegistryError
        from tools.search import SearchConfig
        from venues.clock import RealClock

        settings = load_settings(data_dir, quiet=True)
        console = Console(stderr=True)
        try:
            start = parse_moment(from_, option="--from", end=False)
            end = parse_moment(to, option="--to", end=True)
            config = TrainConfig(
                model=model.strip(),
                folds=folds,
                threshold=threshold,
                n_estimators=trees,
                seed=seed,
                sides=("long", "short") if short else ("long",),
            )
            bounds = SearchConfig(search, search_timeout) if search else None
            wanted = [s.strip() for s in symbols.split(",") if s.strip()]
            series = load_series(settings, venue.strip(), wanted, timeframe.strip(), start, end)
            with _progress(console) as on_progress:
                trained, directory = train_model(
                    settings,
                    series,
                    timeframe.strip(),
                    config,
                    clock=RealClock(),
                    window=(start, end),
                    on_progress=on_progress,
                    search=bounds,
                )
        except (CommandError, TrainError, RegistryError, ValueError) as exc:
            raise _fail(exc) from None
        if as_json:
            typer.echo(json.dumps(trained.card, indent=2))
        else:
            typer.echo(card_text(trained.card))
            typer.echo(f"saved to {directory}; not promoted: tradeops models promote {trained.id}")

    @models_app.command("list")
    def list_command(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
        """Every trained model, newest first; * marks the promoted one."""
        from bot.ml import list_text, registry
        from tools.model_registry import RegistryError

        reg = registry(load_settings(data_dir, quiet=True))
        try:
            if as_json:
                promoted = reg.promoted()
                rows: list[dict[str, Any]] = [
                    {"id": e.id, "promoted": e.id == promoted, "card": e.card, "problem": e.problem or None}
                    for e in reg.entries()
                ]
                typer.echo(json.dumps(rows, indent=2))
            else:
                typer.echo(list_text(reg))
        except RegistryError as exc:
            raise _fail(exc) from None

    @models_app.command("show")
    def show_command(
        model_id: Annotated[str | None, typer.Argument(help="Model id (default: the promoted one).")] = None,
        as_json: JsonOption = False,
        data_dir: DataDirOption = None,
    ) -> None:
        """A model's card: data, features, parameters, fold metrics, reliability table."""
        from bot.ml import card_text, registry
        from tools.model_registry import RegistryError

        reg = registry(load_settings(data_dir, quiet=True))
        try:
            chosen = model_id.strip() if model_id else reg.promoted()
            if chosen is None:
                raise RegistryError("no model is promoted; give a model id (tradeops models list)")
            card = reg.card(chosen)
            typer.echo(json.dumps(card, indent=2) if as_json else card_text(card, promoted=chosen == reg.promoted()))
        except RegistryError as exc:
            raise _fail(exc) from None

    @models_app.command("promote")
    def promote_command(
        model_id: Annotated[str, typer.Argument(help="Model id (tradeops models list).")],
        data_dir: DataDirOption = None,
    ) -> None:
        """Make a model the one the ML policy uses (its files must load and match its card)."""
        from bot.ml import registry
        from tools.model_registry import RegistryError

        reg = registry(load_settings(data_dir, quiet=True))
        try:
            before = reg.promote(model_id.strip())
        except RegistryError as exc:
            raise _fail(exc) from None
        typer.echo(f"promoted {model_id.strip()}" + (f" (was {before})" if before else ""))

    @models_app.command("rollback")
    def rollback_command(data_dir: DataDirOption = None) -> None:
        """Promote again the model that was promoted before the current one."""
        from bot.ml import registry
        from tools.model_registry import RegistryError

        reg = registry(load_settings(data_dir, quiet=True))
        try:
            current, previous = reg.rollback()
        except RegistryError as exc:
            raise _fail(exc) from None
        typer.echo(f"rolled back from {current} to {previous}")
