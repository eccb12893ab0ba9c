"""What a failure means to the person at the terminal: each kind of configuration, file system or
database fault becomes one line naming the setting or path and what would be valid, with an exit
status (README "Data directory, errors and read-only SQL"). ``OneLineErrors`` applies it once,
around every command of bot/cli.py.

Only the standard library and typer at import time (`tradeops --help` stays fast); anything else
is imported when a failure is described.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

from bot.data_dir import DATA_DIR_SETTING, DataDirError

if TYPE_CHECKING:
    from typer._click import Context

    from bot.settings import Settings

BAD_INPUT = 2  # a setting, a path or an argument that cannot work
DATABASE_UNAVAILABLE = 3  # the database cannot be reached, opened, written or read
FAILED = 1  # the machine refused (disk full, an I/O error)
# File system errors worth one line; others (a refused TCP connection is an OSError too) are not ours.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
PATH_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.EIO})


@dataclass(frozen=True)
class Failure:
    message: str  # one line, without the "error: " prefix
    exit_code: int


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes and contexts, and the first exception of any group, outermost first."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        found = todo.pop(0)
        if any(found is s for s in seen):
            continue
        seen.append(found)
        inner = getattr(found, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
        context = None if found.__suppress_context__ else found.__context__
        for nxt in (inner, found.__cause__, context):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
        if isinstance(found, BaseExceptionGroup) and found.exceptions:
            todo.append(found.exceptions[0])
    return seen


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def settings_error_line(exc: Exception) -> str | None:
    """pydantic-settings' SettingsError (a value that is not the JSON a dict or list setting takes)
    as ``TRADEOPS_NAME: ...``; None for another error."""
    match = re.search(r'error parsing value for field "(\w+)"', str(exc))
    if match is None:
        return None
    name = f"TRADEOPS_{match.group(1).upper()}"
    cause = f" ({one_line(exc.__cause__)})" if exc.__cause__ is not None else ""
    example = EXAMPLES.get(match.group(1), "")
    return f"{name}: not valid JSON{cause}; this setting takes a JSON value{example}, see .env.example"


EXAMPLES = {"llm_prices": ', e.g. {"my-model": [0.27, 1.10]} (USD per million prompt and completion tokens)'}


def _sqlite_path(database_url: str | None) -> Path | None:
    if not database_url or not database_url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(database_url).database
    return Path(database) if database and database != ":memory:" else None


def describe_failure(exc: BaseException, *, database_url: str | None, data_dir: Path | None) -> Failure | None:
    """The one line for a failure of a known kind; None for anything else (a bug: let it surface)."""
    chain = _chain(exc)
    for found in chain:
        if isinstance(found, DataDirError):
            return Failure(one_line(found), BAD_INPUT)
    for found in chain:
        # ConfigError (bot/services.py), VenueConfigError (bot/venues.py), DatabaseUrlError (storage/db.py):
        # a setting that cannot work, the message names it. Matched by name: importing them is slow.
        name, module = type(found).__name__, type(found).__module__
        if (name.endswith("ConfigError") and module.startswith("bot.")) or (
            name == "DatabaseUrlError" and module == "storage.db"
        ):
            return Failure(one_line(found), BAD_INPUT)
    if database_url is not None:
        from storage.db import connection_problem

        problem = connection_problem(exc, database_url)
        if problem is not None:
            return Failure(one_line(problem), DATABASE_UNAVAILABLE)
    for found in chain:
        if type(found).__module__ == "sqlite3":
            return _sqlite_failure(found, _sqlite_path(database_url), data_dir)
    for found in chain:
        if isinstance(found, OSError) and (
            found.errno in DISK_ERRNOS or (found.filename and found.errno in PATH_ERRNOS)
        ):
            return _os_failure(found, data_dir)
    return None


def _sqlite_failure(exc: BaseException, path: Path | None, data_dir: Path | None) -> Failure:
    detail = one_line(exc)
    where = str(path) if path is not None else "the SQLite database"
    lowered = detail.lower()
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return Failure(
            f"the database file {where} is damaged ({detail}): restore it from a backup, or move it away to "
            "start a new, empty database; `tradeops doctor` checks it",
            DATABASE_UNAVAILABLE,
        )
    if "full" in lowered:
        return Failure(
            f"the disk holding {where} is full ({detail}): free some space there, or set {DATA_DIR_SETTING} "
            "to a directory on a disk with room",
            FAILED,
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return Failure(
            f"cannot write the database {where} ({detail}): make it and its directory writable by this user, "
            f"or set {DATA_DIR_SETTING} to a directory you can write",
            DATABASE_UNAVAILABLE,
        )
    if "locked" in lowered or "busy" in lowered:
        return Failure(
            f"the database {where} is busy ({detail}): another tradeops process holds it; wait and try again",
            DATABASE_UNAVAILABLE,
        )
    return Failure(f"the database {where} failed: {detail}", DATABASE_UNAVAILABLE)


def _os_failure(exc: OSError, data_dir: Path | None) -> Failure:
    path = exc.filename or (str(data_dir) if data_dir is not None else "a file")
    reason = exc.strerror or one_line(exc)
    if exc.filename and not _inside(Path(str(exc.filename)), data_dir):
        # A path the user named (--report, --keep-db), not the data dir: the data dir is no remedy.
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return Failure(f"cannot write {path}: {reason}; free some space on that disk", FAILED)
        if exc.errno in (
            errno.ENOTDIR,
            errno.EEXIST,
            errno.EISDIR,
            errno.ENOENT,
            errno.EACCES,
            errno.EPERM,
            errno.EROFS,
        ):
            return Failure(f"cannot write {path}: {reason}; name a file in a folder you can write", BAD_INPUT)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Failure(
            f"cannot write {path}: {reason}; free some space on that disk, or set {DATA_DIR_SETTING} "
            "to a directory on a disk with room",
            FAILED,
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Failure(
            f"cannot write {path}: {reason}; make it writable by this user, or set {DATA_DIR_SETTING} "
            "to a directory you can write",
            BAD_INPUT,
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOENT):
        return Failure(
            f"{path}: {reason}; set {DATA_DIR_SETTING} to a directory (a new one is created if its parent exists)",
            BAD_INPUT,
        )
    return Failure(f"{path}: {reason} (an I/O error: check the disk)", FAILED)


# The settings the running command loaded, for the handler's messages (a path, a URL).
_loaded: dict[str, Settings] = {}


def remember_settings(settings: Settings) -> None:
    _loaded["settings"] = settings


class OneLineErrors(TyperGroup):
    """The one top-level handler: a failure of a known kind (a data dir or database file that cannot
    be used, a database that cannot be reached or is damaged, a full disk, a setting that makes the
    command impossible) is one line on stderr and a non-zero exit status, never a traceback.
    Anything else is a bug and surfaces as one."""

    def invoke(self, ctx: Context) -> object:
        _loaded.clear()
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            settings = _loaded.get("settings")
            failure = describe_failure(
                exc,
                database_url=settings.resolved_database_url if settings is not None else None,
                data_dir=settings.data_dir if settings is not None else None,
            )
            if failure is None:
                raise
            typer.echo(f"error: {failure.message}", err=True)
            raise typer.Exit(failure.exit_code) from None


def _inside(path: Path, data_dir: Path | None) -> bool:
    """Whether ``path`` lies in the data dir (True without one: the data dir's advice applies)."""
    if data_dir is None:
        return True
    try:
        return path.resolve().is_relative_to(data_dir.resolve())
    except OSError:
        return True
