"""Cross-process locks for LangGraph threads. On PostgreSQL a session advisory lock keyed by the
thread id (several workers may resume threads); on SQLite nothing is needed beyond the in-process
lock, because the approvals table already lets exactly one answer win."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Engine, text

POLL_SECONDS = 0.05


@asynccontextmanager
async def thread_lock(engine: Engine, key: str) -> AsyncIterator[None]:
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        take = text("SELECT pg_try_advisory_lock(hashtext(:key))")
        # Another process holds it: poll, since no in-process event can tell us when it is free.
        while not connection.execute(take, {"key": f"thread:{key}"}).scalar():  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": f"thread:{key}"})
            connection.commit()
