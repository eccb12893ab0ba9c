"""LangGraph checkpointers on the project database; their tables live beside ours, so a pending
approval survives a restart with the rest of the state.

PostgreSQL: AsyncPostgresSaver. SQLite: the synchronous SqliteSaver, answering LangGraph's async
calls in the event loop's own thread, like every other database call of the application. The
aiosqlite-based AsyncSqliteSaver cannot share a SQLite file with synchronous writers in the same
event loop: it holds the write lock between an INSERT and the COMMIT it still has to be scheduled
for, while a synchronous writer blocks the loop waiting for that very lock (a deadlock until the
busy timeout).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver
from sqlalchemy.engine import make_url

from storage.db import SQLITE_BUSY_TIMEOUT_MS, normalize_url


class LoopSqliteSaver(SqliteSaver):
    """SqliteSaver whose async methods run the synchronous ones (short, local transactions)."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)

    async def aget_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> Mapping[str, Any]:
        return self.get_delta_channel_history(config=config, channels=channels)


@asynccontextmanager
async def open_checkpointer(database_url: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    url = make_url(normalize_url(database_url))
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = url.database or ":memory:"
        sqlite_connection = sqlite3.connect(path, check_same_thread=False, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            sqlite_connection.execute("PRAGMA journal_mode=WAL")
            sqlite_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            sqlite_saver = LoopSqliteSaver(sqlite_connection)
            sqlite_saver.setup()
            yield sqlite_saver
        finally:
            sqlite_connection.close()
        return
    if backend == "postgresql":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg import AsyncConnection
        from psycopg.rows import dict_row

        # psycopg wants a plain libpq URL; search_path and other options ride along in the query.
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        async with await AsyncConnection.connect(
            conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row
        ) as connection:
            pg_saver = AsyncPostgresSaver(connection)
            await pg_saver.setup()
            yield pg_saver
        return
    raise ValueError(f"no LangGraph checkpointer for database backend {backend!r}")
