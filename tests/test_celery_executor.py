"""The Celery executor on a real Redis (127.0.0.1:6379) with real `tradeops worker` processes, on the
database the other tests use (PostgreSQL when TRADEOPS_TEST_POSTGRES_URL is set, else a SQLite
file: both are shared across processes), on the shipped replay data.

- A scan task makes one decide task per candidate; the decisions become pending signals whose cards
  reach the subscribed Telegram chat (the fake Bot API of test_telegram) through notify tasks.
- The same scan delivered twice does nothing new; a scan redone after its done marker was lost
  decides nothing twice and sends no card twice.
- A worker killed (SIGKILL) while its decide task waits for the LLM (tests/fake_llm.py, answering
  after a delay): a second worker redoes the task, and approving the signal places one order.
- `tradeops worker` and `tradeops run` refuse settings that cannot work, in one line each.

Settings come from the conftest's ``hermetic`` fixture's clean environment. Every run uses a Redis
key prefix of its own (TRADEOPS_CELERY_PREFIX), so runs and other users of the Redis share no
queue; each worker is started with ``sys.executable`` and stopped by its own PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr, ValidationError
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cli import app
from bot.core import Caller, CommandCore
from bot.health import CeleryQueues
from bot.run import RunRefused, run_bot
from bot.services import DEFAULT_WATCHLISTS, open_services, seed_watchlists
from bot.settings import Settings, load_settings
from bot.worker import celery_executor
from scheduler.celery_app import queue_depths, stats_key
from scheduler.driver import ScanTick
from scheduler.executor import DecideRequest, Notice
from storage.db import make_engine
from storage.signals import SignalStatus
from storage.tables import ScanRun, SignalRow
from storage.users import Role
from tests.conftest import REDIS_URL, redis_answers
from tests.fake_llm import FakeLLM
from tests.support import entry_orders, free_port
from tests.test_telegram import ALLOWED, TOKEN, TRADER, FakeBotAPI
from venues.clock import SimulatedClock
from venues.metrics import Metrics, installed

FIRE = datetime(2021, 7, 6, 6, tzinfo=UTC)  # the crypto watchlist's 06:00 scan: ETH/USDT is a BUY (see test_core)
CRYPTO = DEFAULT_WATCHLISTS[0]
WAIT = 90.0  # seconds: the bound of each wait on a worker (normally a few)
T = TypeVar("T")
CLI = [sys.executable, "-c", "from bot.cli import app; app(prog_name='tradeops')"]


def _redis_or_skip() -> redis.Redis:
    if not redis_answers():
        pytest.skip(f"no Redis server answers at {REDIS_URL}")
    return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


@pytest.fixture
def broker() -> Iterator[tuple[redis.Redis, str]]:
    """The Redis and a key prefix of this test's own; its keys are deleted afterwards."""
    client = _redis_or_skip()
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    try:
        yield client, prefix
    finally:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def database(shared_database: str) -> str:
    return shared_database


class ThreadedApp:
    """An aiohttp app served on 127.0.0.1 by a thread with its own event loop: reachable from the
    worker processes while the test's loop waits in plain blocking code."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    def __enter__(self) -> ThreadedApp:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def telegram() -> Iterator[tuple[FakeBotAPI, str]]:
    api = FakeBotAPI()
    web_app = web.Application()
    web_app.router.add_post("/bot{token}/{method}", api.handle)
    with ThreadedApp(web_app) as served:
        yield api, f"http://127.0.0.1:{served.port}/bot"


def worker_env(tmp_path: Path, database: str, prefix: str, **more: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    return clean | {
        "TRADEOPS_DATA_DIR": str(tmp_path / "var"),
        "TRADEOPS_DATABASE_URL": database,
        "TRADEOPS_EXECUTOR": "celery",
        "TRADEOPS_REDIS_URL": REDIS_URL,
        "TRADEOPS_CELERY_PREFIX": prefix,
        "TRADEOPS_MARKET_DATA": "replay",
        **more,
    }


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings(
        **{k.removeprefix("TRADEOPS_").lower(): v for k, v in env.items() if k.startswith("TRADEOPS_")}
    )


class Worker:
    """A `tradeops worker` process in a process group of its own (its prefork children with it)."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path, *args: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*CLI, "worker", *args], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL to the worker and its children at once: nothing gets to acknowledge or clean up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_for(check: Callable[[], Any], worker: Worker | None = None, seconds: float = WAIT) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := check():
            return result
        if worker is not None and worker.process.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.process.returncode}):\n{worker.tail()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out{':' + chr(10) + worker.tail() if worker else ''}")


def counts(client: redis.Redis, prefix: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(stats_key(prefix)).items()}


async def prepare(settings: Settings) -> None:
    """The database migrated, the shipped watchlists, and a trader's chat subscribed to every card."""
    async with open_services(settings, clock=SimulatedClock(FIRE)) as services:
        seed_watchlists(services)
        services.users.grant("telegram", TRADER, Role.TRADER, at=services.clock.now())
        reply = await CommandCore(services).handle(Caller("telegram", TRADER, chat_id=TRADER), "/subscribe all")
        assert reply.ok, reply.text


def rows(settings: Settings, table: type[T]) -> list[T]:
    """Every row of ``table`` in the database the workers use."""
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(table)).all())
    finally:
        engine.dispose()


def signals(settings: Settings) -> list[SignalRow]:
    return rows(settings, SignalRow)


def card_photos(api: FakeBotAPI) -> list[dict[str, str]]:
    return [p for p in api.sent("sendPhoto", chat_id=str(TRADER)) if "a:" in p.get("reply_markup", "")]


def send_scan(settings: Settings) -> None:
    asyncio.run(celery_executor(settings).run_scan(CRYPTO, ScanTick(CRYPTO.name, FIRE, FIRE)))


# --------------------------------------------------------------------------------------------------


def test_a_scan_task_decides_its_candidates_in_decide_tasks_and_cards_arrive_once(
    hermetic: None,
    tmp_path: Path,
    broker: tuple[redis.Redis, str],
    database: str,
    telegram: tuple[FakeBotAPI, str],
) -> None:
    client, prefix = broker
    api, bot_url = telegram
    env = worker_env(
        tmp_path,
        database,
        prefix,
        TRADEOPS_TELEGRAM_TOKEN=TOKEN,
        TRADEOPS_TELEGRAM_API_URL=bot_url,
        TRADEOPS_TELEGRAM_ALLOWED_USERS=ALLOWED,
    )
    settings = settings_of(env)
    asyncio.run(prepare(settings))
    worker = Worker(env, tmp_path, tmp_path / "worker.log", "--concurrency", "2")
    try:
        send_scan(settings)
        cards = wait_for(lambda: card_photos(api), worker)
        wait_for(lambda: counts(client, prefix).get("notify:done") == 1, worker)
        [pending] = [s for s in signals(settings) if s.status == SignalStatus.PENDING.value]
        assert pending.symbol == "ETH/USDT" and pending.watchlist == "crypto"
        assert f"a:{pending.id}" in cards[0]["reply_markup"] and "ETH/USDT" in cards[0]["caption"]
        assert counts(client, prefix) == {"scan:done": 1, "decide:done": 1, "notify:done": 1}, worker.tail()
        assert len(rows(settings, ScanRun)) == 1

        # The same scan delivered again: its done marker answers, nothing runs.
        send_scan(settings)
        wait_for(lambda: counts(client, prefix).get("scan:duplicate") == 1, worker)
        assert len(rows(settings, ScanRun)) == 1

        # A scan redone after its worker died before marking it done: the decision is found, not
        # made again; the card notice finds the card sent.
        client.delete(f"{prefix}done:scan:crypto@{FIRE.isoformat()}")
        send_scan(settings)
        wait_for(lambda: counts(client, prefix).get("notify:duplicate") == 1, worker)
        assert counts(client, prefix) == {
            "scan:done": 2,
            "scan:duplicate": 1,
            "decide:done": 1,
            "decide:seen": 1,
            "notify:done": 1,
            "notify:duplicate": 1,
        }
        assert [s.id for s in signals(settings)] == [pending.id]
        assert len(card_photos(api)) == 1
        assert queue_depths(client, prefix) == {"scan": 0, "decide": 0, "notify": 0}
    finally:
        worker.stop()
    assert worker.process.returncode == 0, worker.tail()
    assert TOKEN not in worker.log.read_text()


def test_a_worker_killed_in_a_decide_task_leaves_it_to_another_and_one_order_results(
    hermetic: None, tmp_path: Path, broker: tuple[redis.Redis, str], database: str
) -> None:
    client, prefix = broker
    with FakeLLM(delay=3.0) as llm:
        env = worker_env(
            tmp_path,
            database,
            prefix,
            TRADEOPS_LLM_BASE_URL=llm.url,
            TRADEOPS_LLM_API_KEY="sk-fake",
            TRADEOPS_LLM_MODEL="fake-llm",
            TRADEOPS_CELERY_VISIBILITY_TIMEOUT="10",  # the least allowed: a lost task waits this long
        )
        settings = settings_of(env)
        asyncio.run(prepare(settings))
        first = Worker(env, tmp_path, tmp_path / "first.log", "--concurrency", "1")
        try:
            send_scan(settings)
            wait_for(lambda: llm.received >= 1, first)  # the decide task waits for the model now
            first.kill()
        finally:
            first.stop()
        assert llm.answered == 0 and not [s for s in signals(settings) if s.status == SignalStatus.PENDING.value]
        assert counts(client, prefix) == {"scan:done": 1}

        second = Worker(env, tmp_path, tmp_path / "second.log", "--concurrency", "1")
        try:
            pending = wait_for(lambda: [s for s in signals(settings) if s.status == SignalStatus.PENDING.value], second)
            wait_for(lambda: counts(client, prefix).get("decide:done") == 1, second)
        finally:
            second.stop()
    [signal_row] = pending
    assert signal_row.symbol == "ETH/USDT" and signal_row.policy.startswith("llm"), signal_row.policy
    assert llm.received == 2  # the killed walk's call, and the redone one

    async def approve() -> None:
        async with open_services(settings, clock=SimulatedClock(FIRE)) as services:
            results = await asyncio.gather(
                *(services.runner.decide(signal_row.id, "approved", actor=f"telegram:{TRADER}") for _ in range(3))
            )
            assert sum(r.outcome.won for r in results) == 1
            assert len(entry_orders(services.engine, signal_row.id)) == 1

    asyncio.run(approve())


# --- settings that cannot work -------------------------------------------------------------------


def test_the_worker_refuses_what_cannot_work_in_one_line(hermetic: None, tmp_path: Path) -> None:
    runner = CliRunner()
    base = {"TRADEOPS_DATA_DIR": str(tmp_path / "var"), "TRADEOPS_EXECUTOR": "celery", "TRADEOPS_REDIS_URL": REDIS_URL}

    def refused(env: dict[str, str], *args: str) -> str:
        result = runner.invoke(app, ["worker", *args], env=env)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        return lines[0]

    assert "TRADEOPS_EXECUTOR=celery" in refused({**base, "TRADEOPS_EXECUTOR": "inprocess"})
    assert "set TRADEOPS_REDIS_URL" in refused({**base, "TRADEOPS_REDIS_URL": ""})
    line = refused(base, "--queues", "scan,llm")
    assert "unknown queue 'llm'" in line and "scan, decide, notify" in line
    assert "--concurrency must be at least 1" in refused(base, "--concurrency", "0")
    closed = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"
    line = refused({**base, "TRADEOPS_REDIS_URL": closed})
    assert "does not answer" in line and "redis://:***@127.0.0.1" in line and "s3cret-pass" not in line
    result = runner.invoke(app, ["worker"], env={**base, "TRADEOPS_CELERY_PREFIX": "no spaces"})
    assert result.exit_code == 2 and "TRADEOPS_CELERY_PREFIX must be" in result.output, result.output


async def test_tradeops_run_on_celery_without_redis_or_with_redis_away_is_refused_at_start(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "var", executor="celery", telegram_token=SecretStr(TOKEN))
    with pytest.raises(RunRefused, match="TRADEOPS_EXECUTOR=celery needs a broker: set TRADEOPS_REDIS_URL"):
        await run_bot(settings, make_transports=lambda s, sv: [])
    away = settings.model_copy(update={"redis_url": SecretStr(f"redis://:pw-s3cret@127.0.0.1:{free_port()}/0")})
    with pytest.raises(RunRefused, match=r"Redis at redis://:\*\*\*@127.0.0.1:\d+/0 does not answer") as refused:
        await run_bot(away, make_transports=lambda s, sv: [])
    assert "pw-s3cret" not in str(refused.value)
    with pytest.raises(ValidationError, match="inprocess"):
        load_settings(executor="threads")


# --- the messages: keys and JSON ------------------------------------------------------------------


def test_requests_and_notices_cross_the_broker_as_json_under_stable_keys() -> None:
    request = DecideRequest("abcd2345", "crypto", "replay-crypto", "ETH/USDT", "1h", {"symbol": "ETH/USDT"}, "x")
    assert DecideRequest.from_json(request.to_json()) == request and request.key == "decide:abcd2345"
    card = Notice("card", "2021-07-06T06:00:00+00:00", signal_id="abcd2345")
    assert Notice.from_json(card.to_json()) == card and card.key == "notify:card:abcd2345"
    fill = Notice("fill", "2021-07-06T07:00:00+00:00", text="replay-crypto ETH/USDT bought 1.2 at 2320")
    later = Notice("fill", "2021-07-07T07:00:00+00:00", text=fill.text)
    assert fill.key == Notice.from_json(fill.to_json()).key != later.key  # the same text another day: another
    with pytest.raises(ValueError, match="unknown notice kind 'summary'"):
        Notice("summary", "x")  # type: ignore[arg-type]


async def test_queue_depth_and_task_counts_are_on_metrics(broker: tuple[redis.Redis, str], tmp_path: Path) -> None:
    client, prefix = broker
    settings = load_settings(
        data_dir=tmp_path / "var", executor="celery", redis_url=SecretStr(REDIS_URL), celery_prefix=prefix
    )
    executor = celery_executor(settings)
    with installed(Metrics()) as counted:
        await executor.run_scan(CRYPTO, ScanTick(CRYPTO.name, FIRE, FIRE))
        await executor.notify(Notice("notice", FIRE.isoformat(), text="hello"))
        await executor.notify(Notice("error", FIRE.isoformat(), text="oops"))
    assert queue_depths(client, prefix) == {"scan": 1, "decide": 0, "notify": 2}
    client.hincrby(stats_key(prefix), "decide:done", 3)
    client.hincrby(stats_key(prefix), "decide:retried", 1)
    queues = CeleryQueues(REDIS_URL, prefix)
    counted.registry.register(queues)
    text = generate_latest(counted.registry).decode()
    assert 'tradeops_tasks_queued_total{queue="notify"} 2.0' in text
    assert 'tradeops_queue_depth{queue="scan"} 1.0' in text and 'tradeops_queue_depth{queue="notify"} 2.0' in text
    assert 'tradeops_tasks_total{outcome="done",queue="decide"} 3.0' in text
    assert 'tradeops_tasks_total{outcome="retried",queue="decide"} 1.0' in text
    queues.client.close()
    gone = CeleryQueues(f"redis://127.0.0.1:{free_port()}/0", prefix)  # Redis away: no samples, no error
    assert "tradeops_queue_depth{" not in generate_latest(registry_with(gone)).decode()
    gone.client.close()


def registry_with(collector: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def test_a_task_on_a_lost_database_is_retried_with_backoff_a_bounded_number_of_times(
    broker: tuple[redis.Redis, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run eagerly in this process (a retry runs at once instead of after its countdown): every
    attempt finds the database away, is counted as retried, and the last one fails with the error."""
    from sqlalchemy.exc import OperationalError

    import bot.worker_tasks
    from bot.worker import celery_app
    from scheduler.celery_app import DECIDE_TASK, RETRY_BACKOFF_MAX, RETRY_MAX

    client, prefix = broker
    monkeypatch.setattr(bot.worker_tasks, "_process", None)  # this process's worker state: a fresh one
    settings = load_settings(
        data_dir=tmp_path / "var",
        executor="celery",
        redis_url=SecretStr(REDIS_URL),
        celery_prefix=prefix,
        market_data="replay",
        database_url=SecretStr(f"postgresql://postgres@127.0.0.1:{free_port()}/test"),  # nothing listens
    )
    task = celery_app(settings).tasks[DECIDE_TASK]
    assert task.retry_backoff is True and task.retry_backoff_max == RETRY_BACKOFF_MAX and task.max_retries == RETRY_MAX
    request = DecideRequest("abcd2345", "crypto", "replay-crypto", "ETH/USDT", "1h", {}, FIRE.isoformat())
    result = task.apply(args=(request.to_json(),))
    assert result.failed() and isinstance(result.result, OperationalError)
    assert counts(client, prefix) == {"decide:retried": RETRY_MAX + 1}
    bot.worker_tasks.close_process()


async def test_tradeops_run_on_celery_queues_its_scheduled_scans_and_walks_nothing_itself(
    hermetic: None, tmp_path: Path, broker: tuple[redis.Redis, str]
) -> None:
    import json
    import re

    from tests.test_run import RecordingTransport

    client, prefix = broker
    settings = load_settings(
        data_dir=tmp_path / "var", executor="celery", redis_url=SecretStr(REDIS_URL), celery_prefix=prefix
    )
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_bot(settings, make_transports=lambda s, services: [RecordingTransport(services)], speed=7200, stop=stop)
    )
    try:
        for _ in range(600):  # two simulated hours a second: the hourly crypto scan fires within a second
            if queue_depths(client, prefix)["scan"] >= 2 or running.done():
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        assert await asyncio.wait_for(running, 60) == 0
    keys = [json.loads(raw)["headers"]["id"] for raw in client.lrange(f"{prefix}scan", 0, -1)]
    # No worker runs: the scans wait in the queue, keyed by watchlist and fire time (a fire more than
    # half a bar late, on a busy machine at this speed, is skipped: the hour is not always 01:00).
    assert any(re.fullmatch(r"scan:crypto@2021-07-06T\d\d:00:05\+00:00", key) for key in keys), keys
    assert signals(settings) == []  # the run itself screened and walked nothing
