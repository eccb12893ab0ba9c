"""The data directory and the SQLite file in it: checked before anything is written, so a wrong
path is one clear line naming it, never a silent new database somewhere unexpected.

Rules (README "Data directory"): the data dir (TRADEOPS_DATA_DIR or --data-dir) is a directory this
user can write, or does not exist yet but its parent does (then it is created); the database file,
when it exists, is a non-empty regular file (a 0-byte file is a truncated database, not a new one).
Standard library only: every command runs this before its heavy imports.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_SETTING = "TRADEOPS_DATA_DIR (or --data-dir)"


class DataDirError(Exception):
    """The data dir or the database file cannot be used; the message names the path, what is
    wrong and what would be valid. Exit status 2."""


def check_data_dir(path: Path, *, create: bool) -> Path:
    """``path`` resolved, checked (and created when ``create`` and only its last part is missing).
    With ``create=False`` a missing data dir is allowed (nothing is made). Raises DataDirError."""
    resolved = path.expanduser().resolve()
    if resolved.exists():
        if not resolved.is_dir():
            raise DataDirError(
                f"the data dir {resolved} is a file, not a directory: set {DATA_DIR_SETTING} to a directory "
                "(a new one is created if its parent exists)"
            )
        if not os.access(resolved, os.W_OK | os.X_OK):
            raise DataDirError(
                f"the data dir {resolved} is not writable by this user: make it writable "
                f"(chmod u+w {resolved}) or set {DATA_DIR_SETTING} to a directory you can write"
            )
        return resolved
    parent = resolved.parent
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise DataDirError(
            f"the data dir {resolved} cannot be created: its parent {parent} {what}; create the parent first "
            f"or set {DATA_DIR_SETTING} to an existing directory (or a new one inside an existing directory)"
        )
    if create:
        try:
            resolved.mkdir()
        except FileExistsError:
            pass  # another process made it a moment ago
        except PermissionError:
            raise DataDirError(
                f"the data dir {resolved} cannot be created: {parent} is not writable by this user; "
                f"set {DATA_DIR_SETTING} to a directory you can write"
            ) from None
    return resolved


def check_sqlite_file(path: Path, *, must_exist: bool = False) -> None:
    """A SQLite database file that may be opened: absent (created on first use, unless
    ``must_exist``), or a regular file with content. Raises DataDirError."""
    if not path.exists():
        if must_exist:
            raise DataDirError(
                f"no database at {path}: `tradeops db upgrade` creates it, or set {DATA_DIR_SETTING} "
                "to the data dir that holds it"
            )
        if not path.parent.is_dir():
            raise DataDirError(
                f"the database {path} cannot be created: its directory {path.parent} does not exist; "
                "create it, or fix TRADEOPS_DATABASE_URL"
            )
        return
    if not path.is_file():
        raise DataDirError(f"the database {path} is not a regular file: point TRADEOPS_DATABASE_URL at a SQLite file")
    if path.stat().st_size == 0:
        raise DataDirError(
            f"the database file {path} is empty (0 bytes), so it was truncated or never written; "
            "restore it from a backup, or delete it to start a new, empty database"
        )
