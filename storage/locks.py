"""Cross-process locks for LangGraph threads. On PostgreSQL a session advisory lock keyed by the
thread id (several workers may resume threads); on SQLite nothing is needed beyond the in-process
lock, because the approvals table already lets exactly one answer win.

The advisory lock lives on a connection of its own, opened for the lock and closed with it, not on
one of the engine's pooled connections: the lock is held across awaits (a whole walk or resume),
and pooled connections held that way by a few concurrent resumes starve the short synchronous
sessions those same resumes need. Checking one out then blocks the event loop until the pool's
timeout, and no holder can run to give its connection back: a deadlock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Engine

POLL_SECONDS = 0.05


@asynccontextmanager
async def thread_lock(engine: Engine, key: str) -> AsyncIterator[None]:
    if engine.dialect.name != "postgresql":
        yield
        return
    from psycopg import AsyncConnection

    # psycopg wants a plain libpq URL; search_path and other options ride along in the query.
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"thread:{key}"
    async with await AsyncConnection.connect(conninfo, autocommit=True) as connection:
        # Another process holds it: poll, since no in-process event can tell us when it is free.
        while True:
            row = await (await connection.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,))).fetchone()
            if row is not None and row[0]:
                break
            await asyncio.sleep(POLL_SECONDS)
        # Closing the connection ends the session, which releases its advisory locks: no unlock
        # statement that could fail (on a broken connection) and hide what the body raised.
        yield
