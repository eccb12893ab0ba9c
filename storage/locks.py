"""Cross-process named locks: one holder at a time across every process on the same database, released
by the operating system or the database server when the holder dies (``kill -9`` included).

- PostgreSQL: a session advisory lock keyed by a 64-bit hash of the name, on a connection of its
  own, opened for the lock and closed with it (not one of the engine's pooled connections: the lock
  is held across awaits, a whole walk or resume, and pooled connections held that way by a few
  concurrent resumes starve the short synchronous sessions those same resumes need; checking one out
  then blocks the event loop until the pool's timeout, and no holder can run to give its connection
  back: a deadlock). Closing the connection ends the session, which releases its advisory locks.
- SQLite file: an exclusive ``flock`` on a file named after the lock in ``<database>.locks/`` beside
  the database file. The kernel drops the lock when the holder's file descriptor closes, also when
  the process is killed. The holder removes the file on release, so the directory holds only the
  locks held now.
- In-memory SQLite: one process is the only user; the caller's in-process lock is enough.

Waiting polls (``POLL_SECONDS``): no in-process event can tell us when another process let go.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import Engine

POLL_SECONDS = 0.05
LOCK_DIR_SUFFIX = ".locks"


def thread_lock_name(thread_id: str) -> str:
    """The lock of one LangGraph thread (= one signal)."""
    return f"thread:{thread_id}"


def setup_lock_name(venue: str, symbol: str) -> str:
    """The lock under which a new signal for one venue and symbol is walked."""
    return f"setup:{venue}:{symbol}"


@asynccontextmanager
async def process_lock(engine: Engine, name: str, *, wait: bool = True, shared: bool = False) -> AsyncIterator[bool]:
    """Hold the cross-process lock ``name`` for the body. Yields True when held; with
    ``wait=False`` it does not wait and yields False at once when another holder has it (the body
    then runs without the lock and should do nothing the lock guards). ``shared``: any number of
    shared holders at once, but none beside an exclusive one (a reader-writer lock). Connection
    errors to PostgreSQL propagate (psycopg.OperationalError)."""
    if engine.dialect.name == "postgresql":
        async with _advisory_lock(engine, name, wait=wait, shared=shared) as held:
            yield held
        return
    directory = lock_directory(engine)
    if directory is None:
        yield True
        return
    async with _file_lock(directory, name, wait=wait, shared=shared) as held:
        yield held


def lock_directory(engine: Engine) -> Path | None:
    """Where a SQLite database's lock files live: ``<database file>.locks``; None in memory."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).resolve()
    return path.with_name(path.name + LOCK_DIR_SUFFIX)


@asynccontextmanager
async def _advisory_lock(engine: Engine, name: str, *, wait: bool, shared: bool = False) -> AsyncIterator[bool]:
    from psycopg import AsyncConnection

    # psycopg wants a plain libpq URL; search_path and other options ride along in the query.
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    # 64 bits of md5: hashtext's 32 bits would let two names a process holds at once collide.
    # Advisory locks are per database, not per schema: the schema is part of the key, so two
    # deployments in two schemas of one database (or two test runs) do not lock each other out.
    key_sql = "('x' || substr(md5(coalesce(current_schema(), '') || '|' || %s), 1, 16))::bit(64)::bigint"
    async with await AsyncConnection.connect(conninfo, autocommit=True) as connection:
        while True:
            function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
            row = await (await connection.execute(f"SELECT {function}({key_sql})", (name,))).fetchone()
            if row is not None and row[0]:
                break
            if not wait:
                yield False
                return
            await asyncio.sleep(POLL_SECONDS)
        # No unlock statement that could fail (on a broken connection) and hide what the body raised:
        # closing the connection releases the lock.
        yield True


@asynccontextmanager
async def _file_lock(directory: Path, name: str, *, wait: bool, shared: bool = False) -> AsyncIterator[bool]:
    os.makedirs(directory, exist_ok=True)  # local and quick, like the SQLite calls around it
    path = directory / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not wait:
                yield False
                return
            await asyncio.sleep(POLL_SECONDS)
            continue
        # The previous holder removes the file when it lets go: a lock taken on a file that is no
        # longer the one at ``path`` guards nothing; open the current one and try again.
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)
    try:
        yield True
    finally:
        # Remove while still holding, then release: whoever opened the old file retries above. A
        # shared holder leaves the file: others may hold it too (the exclusive holder removes it).
        try:
            if not shared:
                os.unlink(path)
        finally:
            os.close(fd)
