"""Scale-out: scan-to-last-decision time of a 1,000-symbol universe with 1, 2 and 4 Celery worker
processes (`tradeops worker --concurrency N` on the local Redis), beside the in-process executor
(and the scan job's own path, scanner.tick + scanner.scan, as before the executors) on the same
input, with a stand-in LLM (tests/fake_llm.py) answering every decision after a fixed delay.

Input: the shipped ETH/USDT series (replay-crypto, 1h bars of 2021) written into a bars lake under
1,000 symbol names (ETH0000/USDT ... ETH0999/USDT: one real series aliased, said in the output),
in 10 watchlists of 100 symbols on the lake venue, scanned at 2021-07-06 06:00 UTC, where that
series is a BUY setup. Every watchlist's screen returns its top 5 candidates, so one round is 10
scans and 50 LLM-bound decisions (each walk: gather, one LLM call, risk gate, pending card stored).

Each configuration starts on a fresh database (PostgreSQL schema when TRADEOPS_TEST_POSTGRES_URL
is set, else a SQLite file) and a fresh Redis key prefix, so no answer is cached and no signal seen
before. Worker processes open their services before the clock starts (their start-up is not
counted); the time runs from sending the 10 scan tasks to the last decide task's end. In process,
the 10 scans run side by side (as APScheduler runs due jobs), each deciding its candidates up to
TRADEOPS_LLM_CONCURRENCY (4) at a time.

Run from the repo root: `.venv/bin/python benchmarks/scale.py [--delay 1.0] [--symbols 1000]`.
Needs Redis at 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The repo root first: benchmarks/venues.py must not stand for the venues package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks")]

import redis  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from bot.services import open_services  # noqa: E402
from bot.settings import Settings, load_settings  # noqa: E402
from bot.venues import replay_venues  # noqa: E402
from bot.worker import celery_executor  # noqa: E402
from scheduler.celery_app import task_counts  # noqa: E402
from scheduler.driver import ScanTick  # noqa: E402
from scheduler.executor import InProcessExecutor  # noqa: E402
from storage.db import make_engine, sqlite_url  # noqa: E402
from storage.lake import BarsLake, Manifest  # noqa: E402
from storage.tables import ScanRun  # noqa: E402
from storage.watchlists import WatchlistSpec  # noqa: E402
from tests.fake_llm import FakeLLM  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
FIRE = datetime(2021, 7, 6, 6, tzinfo=UTC)
SOURCE = ("replay-crypto", "ETH/USDT")
WATCHLISTS = 10
WORKERS = (1, 2, 4)
CLI = [sys.executable, "-c", "from bot.cli import app; app(prog_name='tradeops')"]
WAIT = 900.0


def alias(i: int) -> str:
    return f"ETH{i:04d}/USDT"


async def build_lake(data_dir: Path, symbols: int) -> None:
    """The source series' 1h bars written into the lake under ``symbols`` names."""
    engine = make_engine(sqlite_url(data_dir / "lake-source.db"))
    venue = replay_venues(load_settings(data_dir=data_dir), SimulatedClock(FIRE + timedelta(days=1)), engine)[SOURCE[0]]
    instrument = await venue.instrument(SOURCE[1])
    bars = await venue.bars(SOURCE[1], "1h", start=datetime(2021, 1, 1, tzinfo=UTC))
    engine.dispose()
    lake = BarsLake(data_dir / "lake")
    first, last = bars.index[0].to_pydatetime(), bars.index[-1].to_pydatetime()
    for i in range(symbols):
        dataset = lake.dataset(SOURCE[0], alias(i), "1h")
        part = dataset.write_part("part-000001.parquet", bars)
        dataset.write_manifest(
            Manifest(
                venue=SOURCE[0],
                symbol=alias(i),
                timeframe="1h",
                calendar="24/7",
                instrument=instrument.model_copy(update={"symbol": alias(i)}).model_dump(mode="json"),
                covered=[(first, last + timedelta(hours=1))],
                parts=[part],
                rows=len(bars),
                first_bar=first,
                last_bar=last,
            )
        )


def watchlists(symbols: int) -> list[WatchlistSpec]:
    size = symbols // WATCHLISTS
    return [
        WatchlistSpec(
            name=f"w{k}",
            venue="lake",
            symbols=tuple(alias(i) for i in range(k * size, (k + 1) * size)),
            timeframe="1h",
            confirm=("4h", "1d"),
        )
        for k in range(WATCHLISTS)
    ]


class Databases:
    """A fresh database per configuration: a PostgreSQL schema (dropped at the end), or a SQLite file."""

    def __init__(self, tmp: Path, schemas: contextlib.ExitStack) -> None:
        self.tmp = tmp
        self.postgres = os.environ.get("TRADEOPS_TEST_POSTGRES_URL", "")
        self.schemas = schemas

    @property
    def kind(self) -> str:
        return "PostgreSQL" if self.postgres else "SQLite"

    def fresh(self, name: str) -> str:
        if not self.postgres:
            return sqlite_url(self.tmp / f"{name}.db")
        from tests.conftest import postgres_schema

        return self.schemas.enter_context(postgres_schema("bench_"))


def env_for(data_dir: Path, database: str, llm: FakeLLM, **more: str) -> dict[str, str]:
    return {
        "TRADEOPS_DATA_DIR": str(data_dir),
        "TRADEOPS_DATABASE_URL": database,
        "TRADEOPS_MARKET_DATA": "replay",
        "TRADEOPS_LLM_BASE_URL": llm.url,
        "TRADEOPS_LLM_API_KEY": "sk-fake",
        "TRADEOPS_LLM_MODEL": "fake-llm",
        "TRADEOPS_LOG_LEVEL": "WARNING",
        **more,
    }


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings(**{k.removeprefix("TRADEOPS_").lower(): v for k, v in env.items()})


def decided(settings: Settings) -> int:
    """Candidates the finished scans handed on (each one decide task)."""
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            return sum(r.candidates or 0 for r in session.exec(select(ScanRun)).all())
    finally:
        engine.dispose()


async def migrate(settings: Settings) -> None:
    async with open_services(settings, clock=SimulatedClock(FIRE), agent=False):
        pass


def run_workers(n: int, base: dict[str, str], data_dir: Path, lists: list[WatchlistSpec]) -> tuple[float, int]:
    """Seconds from sending the scans to the last decide task's end, with ``n`` worker processes;
    and the decisions made."""
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    env = {**base, "TRADEOPS_EXECUTOR": "celery", "TRADEOPS_REDIS_URL": REDIS_URL, "TRADEOPS_CELERY_PREFIX": prefix}
    env["TRADEOPS_LOG_LEVEL"] = "INFO"  # the worker says when each process's services are open
    settings = settings_of(env)
    asyncio.run(migrate(settings))
    log = data_dir / f"worker-{n}.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*CLI, "worker", f"--concurrency={n}"], env=clean | env, cwd=data_dir, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    client = redis.Redis.from_url(REDIS_URL)
    try:
        wait(lambda: log.read_text(errors="replace").count("services open") >= n, worker, log)
        started = time.perf_counter()
        executor = celery_executor(settings)

        async def send() -> None:
            for watchlist in lists:
                await executor.run_scan(watchlist, ScanTick(watchlist.name, FIRE, FIRE))

        asyncio.run(send())

        def finished() -> bool:
            counts = task_counts(client, prefix)
            if counts.get(("scan", "done"), 0) < len(lists):
                return False
            walks = sum(v for (queue, what), v in counts.items() if queue == "decide" and what in ("done", "seen"))
            return walks >= decided(settings)

        wait(finished, worker, log)
        seconds = time.perf_counter() - started
        return seconds, decided(settings)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, 15)
            worker.wait(60)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def wait(check: Any, worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited ({worker.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


async def run_in_process(base: dict[str, str], lists: list[WatchlistSpec], *, executor: bool) -> tuple[float, int]:
    """The 10 scans side by side in this process: through the in-process executor, or (``executor``
    False) as the scan job ran before the executors (scanner.tick, then scanner.scan)."""
    settings = settings_of(base)
    async with open_services(settings, clock=SimulatedClock(FIRE)) as services:
        scanner = services.scanner

        async def nothing(*_: Any) -> None:
            return None

        inprocess = InProcessExecutor(scanner, nothing)

        async def one(watchlist: WatchlistSpec) -> None:
            if executor:
                await inprocess.run_scan(watchlist, ScanTick(watchlist.name, FIRE, FIRE))
            else:
                await scanner.tick([watchlist.venue])
                await scanner.scan(watchlist)

        started = time.perf_counter()
        await asyncio.gather(*(one(w) for w in lists))
        seconds = time.perf_counter() - started
    return seconds, decided(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the stand-in LLM takes per answer")
    parser.add_argument("--symbols", type=int, default=1000, help="universe size (a multiple of 10)")
    args = parser.parse_args()
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        print(f"skipped: the Celery executor needs Redis, and none answers at {REDIS_URL} ({exc})")
        return
    with (
        tempfile.TemporaryDirectory(prefix="tradeops-scale-") as tmp,
        FakeLLM(delay=args.delay) as llm,
        contextlib.ExitStack() as schemas,
    ):
        data_dir = Path(tmp)
        databases = Databases(data_dir, schemas)
        built = time.perf_counter()
        asyncio.run(build_lake(data_dir, args.symbols))
        print(
            f"universe: {args.symbols} symbols = the shipped {SOURCE[1]} ({SOURCE[0]}, 1h) aliased under "
            f"{alias(0)} .. {alias(args.symbols - 1)} in a bars lake ({time.perf_counter() - built:.1f} s to write); "
            f"{WATCHLISTS} watchlists x {args.symbols // WATCHLISTS}, scanned at {FIRE:%Y-%m-%d %H:%M} UTC; "
            f"stand-in LLM answering after {args.delay:g} s; database {databases.kind}; machine: {os.cpu_count()} CPUs"
        )
        lists = watchlists(args.symbols)
        rows: list[tuple[str, float, int]] = []
        for label, use_executor in (("today's scan job (tick + scan)", False), ("in-process executor", True)):
            env = env_for(data_dir, databases.fresh(f"inproc{int(use_executor)}"), llm)
            seconds, count = asyncio.run(run_in_process(env, lists, executor=use_executor))
            rows.append((label, seconds, count))
            print(f"  {label:<34} {seconds:7.2f} s  {count} decisions", flush=True)
        for n in WORKERS:
            env = env_for(data_dir, databases.fresh(f"workers{n}"), llm)
            seconds, count = run_workers(n, env, data_dir, lists)
            rows.append((f"celery, {n} worker process{'es' if n > 1 else ''}", seconds, count))
            print(f"  {rows[-1][0]:<34} {seconds:7.2f} s  {count} decisions", flush=True)
    print()
    print(f"{'configuration':<34} {'seconds':>8} {'decisions':>10} {'per s':>7} {'vs 1 worker':>12}")
    one = next(s for label, s, _ in rows if label.startswith("celery, 1 "))
    for label, seconds, count in rows:
        print(f"{label:<34} {seconds:8.2f} {count:>10} {count / seconds:7.2f} {one / seconds:11.2f}x")
    four = next(s for label, s, _ in rows if label.startswith("celery, 4 "))
    today, inproc = rows[0][1], rows[1][1]
    print()
    print(f"4 workers vs 1: {one / four:.2f}x (target >= 3x)")
    print(f"in-process executor vs today's scan job: {today / inproc:.2f}x the speed (target >= 1, within noise)")


if __name__ == "__main__":
    main()
