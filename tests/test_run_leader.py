"""`tradeops run` with the Celery executor: two runs on one database, one leader.

Both runs are real ``run_bot`` calls (the replay data on a fast clock) on one database and a real
Redis; their scans go to Celery's ``scan`` queue (no worker is needed to see them queued). Each run
has a polling-like transport (one receiver at a time) and a webhook-like one (any process): only
the leader starts the first; both start the second. When the leader stops, the other takes the
lead and starts its own polling transport; no scan is queued twice.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from bot.run import RunRefused, run_bot
from bot.services import Services
from bot.settings import Settings
from bot.transport import RequestStop
from scheduler.celery_app import queue_key
from storage.fires import FireLog

SPEED = 3600.0  # a simulated hour per real second: the crypto watchlist scans every few real seconds
WAIT = 90.0  # seconds: the bound of each wait (normally a few)


class Receiver:
    """Records its start and stop; ``single_receiver`` as given (polling: True, webhook: False)."""

    def __init__(self, name: str, single_receiver: bool) -> None:
        self.name = name
        self.single_receiver = single_receiver
        self.running = False
        self.starts = 0

    async def start(self, request_stop: RequestStop | None = None) -> None:
        self.running = True
        self.starts += 1

    async def stop(self) -> None:
        self.running = False

    async def push_card(self, card: dict[str, Any]) -> None: ...

    async def push_decision(self, signal_id: str, status: str, text: str) -> None: ...

    async def push_event(self, text: str, *, kind: str) -> None: ...

    async def push_summary(self, summary: Any) -> None: ...


class Run:
    """One ``run_bot`` in a task; every transport it was handed, by kind."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.made: list[Receiver] = []
        self.task: asyncio.Task[int] | None = None

    def _make(self, settings: Settings, services: Services) -> list[Receiver]:
        made = [Receiver("polling", True), Receiver("webhook", False)]
        self.made.extend(made)
        return made  # type: ignore[return-value]

    def start(self) -> None:
        self.task = asyncio.create_task(run_bot(self.settings, self._make, speed=SPEED, stop=self.stop))  # type: ignore[arg-type]

    def running(self, name: str) -> bool:
        return any(r.running for r in self.made if r.name == name)


async def _until(condition: Callable[[], bool], runs: list[Run], what: str) -> None:
    async def wait() -> None:
        while not condition():
            for run in runs:
                if run.task is not None and run.task.done() and not run.stop.is_set():
                    run.task.result()
                    raise AssertionError(f"a run ended while waiting for: {what}")
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(wait(), WAIT)
    except TimeoutError:
        raise AssertionError(f"not seen within {WAIT} s: {what}") from None


@pytest.fixture
def database(shared_database: str) -> str:
    return shared_database


def _scan_ids(client: redis.Redis, prefix: str) -> list[str]:
    return [json.loads(m)["headers"]["id"] for m in client.lrange(queue_key(prefix, "scan"), 0, -1)]


async def test_two_celery_runs_one_leader_and_the_other_takes_over_on_stop(
    hermetic: None, tmp_path: Path, database: str, redis_url: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(redis_url)

    def settings(name: str) -> Settings:
        return Settings(  # type: ignore[call-arg]
            data_dir=tmp_path / name,
            database_url=database,
            executor="celery",
            redis_url=SecretStr(redis_url),
            celery_prefix=prefix,
            leader_lease=3,
            _env_file=None,
        )

    first, second = Run(settings("a")), Run(settings("b"))
    runs = [first, second]
    try:
        first.start()
        await _until(lambda: first.running("polling"), runs, "the first run leads")
        second.start()
        await _until(lambda: second.running("webhook"), runs, "the second run serves its webhook")
        await _until(lambda: len(_scan_ids(client, prefix)) >= 2, runs, "the leader queues scans")
        # Only the leader polls; both serve the webhook.
        assert first.running("polling") and not second.running("polling")
        assert first.running("webhook") and second.running("webhook")
        # An in-process run would scan and poll on its own: refused while Celery runs hold the database.
        alone = Run(settings("c").model_copy(update={"executor": "inprocess"}))
        alone.start()
        with pytest.raises(RunRefused, match="another tradeops run is using"):
            await asyncio.wait_for(alone.task, WAIT)  # type: ignore[arg-type]

        first.stop.set()
        assert await asyncio.wait_for(first.task, WAIT) == 0  # type: ignore[arg-type]
        assert not first.running("polling") and not first.running("webhook")
        queued = len(_scan_ids(client, prefix))
        await _until(lambda: second.running("polling"), runs, "the second run takes the lead")
        await _until(lambda: len(_scan_ids(client, prefix)) > queued, runs, "the new leader queues the next scan")
        second.stop.set()
        assert await asyncio.wait_for(second.task, WAIT) == 0  # type: ignore[arg-type]

        ids = _scan_ids(client, prefix)
        assert len(ids) == len(set(ids)), ids  # no scan queued twice
        assert all(i.startswith("scan:") for i in ids)
        from storage.db import make_engine

        engine = make_engine(database)
        try:
            fires = FireLog(engine).fires()
        finally:
            engine.dispose()
        scans = [f for f in fires if not f.job_id.startswith("daily:")]
        # Every claimed scan fire was queued once, by whichever run led then.
        assert sorted(ids) == sorted(f"scan:{f.job_id}@{f.fire_time.isoformat()}" for f in scans)
    finally:
        for run in runs:
            run.stop.set()
        for run in runs:
            if run.task is not None:
                await asyncio.gather(run.task, return_exceptions=True)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


async def test_a_celery_run_is_refused_beside_an_in_process_run(
    hermetic: None, tmp_path: Path, database: str, redis_url: str
) -> None:
    from storage.db import make_engine
    from storage.locks import process_lock

    engine = make_engine(database)
    try:
        async with process_lock(engine, "bot:run", wait=False) as held:  # as an in-process run holds it
            assert held
            run = Run(
                Settings(  # type: ignore[call-arg]
                    data_dir=tmp_path / "c",
                    database_url=database,
                    executor="celery",
                    redis_url=SecretStr(redis_url),
                    _env_file=None,
                )
            )
            run.start()
            with pytest.raises(RunRefused, match="an in-process tradeops run"):
                await asyncio.wait_for(run.task, WAIT)  # type: ignore[arg-type]
    finally:
        engine.dispose()


async def test_the_one_bot_lock_is_shared_by_celery_runs_and_exclusive_for_an_in_process_one(
    hermetic: None, database: str
) -> None:
    from storage.db import make_engine
    from storage.locks import process_lock

    engine = make_engine(database)
    try:
        async with (
            process_lock(engine, "bot:run", wait=False, shared=True) as one,
            process_lock(engine, "bot:run", wait=False, shared=True) as two,
        ):
            assert one and two
            async with process_lock(engine, "bot:run", wait=False) as alone:
                assert not alone
        async with process_lock(engine, "bot:run", wait=False) as alone:
            assert alone
            async with process_lock(engine, "bot:run", wait=False, shared=True) as beside:
                assert not beside
        async with process_lock(engine, "bot:run", wait=False, shared=True) as again:
            assert again  # an exclusive holder's release leaves the lock usable
    finally:
        engine.dispose()
