"""The scheduler's leader lease (Redis) and fire log (SQLite, PostgreSQL): one process fires each
scan once, another takes over within the lease when it dies or stops, a leader cut off from Redis
yields before its lease ends, and a new leader fires what came due unrecorded (within the grace).

Real Redis on 127.0.0.1:6379 (TRADEOPS_TEST_REDIS_URL to change it); every test uses keys of its
own (a fresh database's deployment id, or a random one).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import Engine

from scheduler.driver import FireRecord, ScanJob, ScanTick
from scheduler.leader import LeaderScheduler, RedisLease, leader_key
from scheduler.triggers import CandleCloseTrigger
from storage.fires import FireLog, deployment_id
from tests.leader_child import JOB_ID
from venues.clock import Clock, RealClock, SimulatedClock
from venues.metrics import Metrics, installed

ROOT = Path(__file__).resolve().parent.parent
WAIT = 20.0  # seconds any one awaited event may take before the test fails (never reached when it works)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def _every(seconds: float, **changes: Any) -> CandleCloseTrigger:
    return CandleCloseTrigger(timedelta(seconds=seconds), delay=timedelta(0), **changes)


# --------------------------------------------------------------------------------------------------
# the fire log


def test_one_claimer_wins_each_fire_among_many_threads(engine: Engine) -> None:
    fires = FireLog(engine)
    moments = [T0 + timedelta(minutes=i) for i in range(5)]
    claimers = 8
    barrier = threading.Barrier(claimers)
    won: list[tuple[int, datetime]] = []
    errors: list[BaseException] = []

    def claimer(number: int) -> None:
        try:
            barrier.wait()
            for moment in moments:
                if fires.claim(JOB_ID, moment, fired_at=moment, fired_by=f"thread-{number}"):
                    won.append((number, moment))
        except BaseException as exc:  # surfaces below: a thread's exception would vanish otherwise
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(moment for _, moment in won) == moments  # each fire won exactly once
    rows = fires.fires(JOB_ID)
    assert [(row.fire_time, row.fired_by) for row in rows] == sorted((m, f"thread-{n}") for n, m in won)
    assert fires.last_fire(JOB_ID) == moments[-1] and fires.last_fire("other") is None


def test_fire_log_prune_keeps_each_jobs_latest_and_the_deployment_id_is_stable(engine: Engine) -> None:
    fires = FireLog(engine)
    for job_id, hours in (("a", [0, 1, 2]), ("b", [0])):
        for hour in hours:
            assert fires.claim(job_id, T0 + timedelta(hours=hour), fired_at=T0, fired_by="x")
    assert fires.prune(T0 + timedelta(days=30)) == 2
    assert [(row.job_id, row.fire_time) for row in fires.fires()] == [("b", T0), ("a", T0 + timedelta(hours=2))]
    with pytest.raises(ValueError, match="job id must be 1 to 100 characters"):
        fires.claim("", T0, fired_at=T0, fired_by="x")
    first = deployment_id(engine, at=T0)
    assert len(first) == 32 and deployment_id(engine, at=T0 + timedelta(days=1)) == first


# --------------------------------------------------------------------------------------------------
# in-process schedulers


class Rig:
    """One LeaderScheduler with what happened to it: leadership changes, fires, scans run."""

    def __init__(
        self,
        name: str,
        jobs_for: Callable[[Rig], list[ScanJob]],
        *,
        clock: Clock,
        lease: RedisLease,
        fires: FireLog,
        on_leadership: Callable[[Rig, bool], Any] | None = None,
        poll_every: float | None = None,
    ) -> None:
        self.name = name
        self.lease = lease
        self.ran: list[tuple[str, datetime]] = []
        self.records: list[FireRecord] = []
        self.leading: list[bool] = []
        self.changed = asyncio.Event()
        self.fired = asyncio.Event()
        self._hook = on_leadership

        async def leadership(held: bool) -> None:
            if self._hook is not None:
                await self._hook(self, held)
            self.leading.append(held)
            self.changed.set()

        def on_fire(record: FireRecord) -> None:
            self.records.append(record)
            self.fired.set()

        self.scheduler = LeaderScheduler(
            jobs_for(self),
            clock=clock,
            lease=lease,
            fires=fires,
            holder=name,
            on_leadership=leadership,
            on_fire=on_fire,
            poll_every=poll_every,
        )
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def scan(self, job_id: str) -> ScanJob:
        async def run(tick: ScanTick) -> None:
            self.ran.append((tick.job_id, tick.fire_time))

        return ScanJob(id=job_id, trigger=_every(1), func=run, misfire_grace_time=timedelta(seconds=5))

    def start(self) -> None:
        self.task = asyncio.create_task(self.scheduler.run(self.stop))

    async def until(self, condition: Callable[[], bool], event: str = "changed") -> None:
        async def wait() -> None:
            while not condition():
                flag = self.changed if event == "changed" else self.fired
                flag.clear()
                if condition():
                    return
                await flag.wait()

        await asyncio.wait_for(wait(), WAIT)

    async def shutdown(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, WAIT)


@asynccontextmanager
async def lease_on(url: str, key: str, seconds: float, holder: str) -> AsyncIterator[RedisLease]:
    lease = RedisLease.from_url(url, key, seconds, holder=holder)
    try:
        yield lease
    finally:
        await lease.aclose()


class OnlyOneLeader:
    """Fails the test when two schedulers lead at once (checked at every leadership change)."""

    def __init__(self) -> None:
        self.now: set[str] = set()
        self.history: list[tuple[str, bool]] = []

    async def __call__(self, rig: Rig, held: bool) -> None:
        self.history.append((rig.name, held))
        if held:
            assert not self.now, f"{rig.name} leads while {self.now} does"
            self.now.add(rig.name)
        else:
            self.now.discard(rig.name)


async def test_takeover_fires_what_is_due_and_unrecorded_and_skips_what_is_past_the_grace(
    engine: Engine, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The last leader died at 10:02; this one takes over at 10:05:10 on a simulated clock."""
    now = T0 + timedelta(minutes=5, seconds=10)
    clock = SimulatedClock(now)
    fires = FireLog(engine)
    minute = _every(60)
    for job_id, last in (("late", 2), ("coalesced", 2), ("recorded", 5), ("stale", -30)):
        fires.claim(job_id, T0 + timedelta(minutes=last), fired_at=T0, fired_by="dead-leader")
    ran: list[tuple[str, datetime]] = []
    failed_once: list[datetime] = []

    async def scan(tick: ScanTick) -> None:
        ran.append((tick.job_id, tick.fire_time))
        if tick.job_id == "late" and not failed_once:
            failed_once.append(tick.fire_time)
            raise RuntimeError("venue down")  # a job raising does not end leadership

    jobs = [
        ScanJob("late", minute, scan),  # grace: half a bar, 30 s
        ScanJob("coalesced", minute, scan, misfire_grace_time=timedelta(minutes=5)),
        ScanJob("recorded", minute, scan),
        ScanJob("new", minute, scan),
        ScanJob("stale", _every(900), scan, misfire_grace_time=timedelta(minutes=1)),
    ]
    stop = asyncio.Event()
    records: list[FireRecord] = []

    def on_fire(record: FireRecord) -> None:
        records.append(record)
        if record.job_id == "stale":
            stop.set()

    async with lease_on(redis_url, leader_key(uuid.uuid4().hex), 5, "me") as lease:
        with installed(Metrics()) as counted:
            gauge: list[float | None] = []
            scheduler = LeaderScheduler(
                jobs,
                clock=clock,
                lease=lease,
                fires=fires,
                holder="me",
                on_fire=on_fire,
                on_leadership=lambda held: gauge.append(counted.registry.get_sample_value("tradeops_scheduler_leader")),
            )
            await asyncio.wait_for(scheduler.run(stop), WAIT)
            assert gauge == [1.0, 0.0]
        assert await lease.holder_now() is None  # released on stop

    first = {
        job_id: next(r for r in records if r.job_id == job_id) for job_id in ("late", "coalesced", "recorded", "new")
    }
    at = {job_id: (r.fire_time - T0, r.coalesced, r.started_at) for job_id, r in first.items()}
    # Due and not recorded: fired now, 10 s late; within its grace. Older fires past the grace: missed.
    assert at["late"] == (timedelta(minutes=5), (), now) and first["late"].error is not None
    # Several due within the grace: one run, for the latest, the earlier ones coalesced into it.
    assert at["coalesced"] == (timedelta(minutes=5), (T0 + timedelta(minutes=3), T0 + timedelta(minutes=4)), now)
    # Already fired by the dead leader: not again; its next fire on time.
    assert at["recorded"][0] == timedelta(minutes=6)
    # Never fired: from now, as a fresh start.
    assert at["new"][0] == timedelta(minutes=6)
    # Every fire since 09:30 past its one-minute grace: missed, and the next one runs on time.
    stale = [r for r in records if r.job_id == "stale"]
    assert [(r.fire_time - T0, r.ok) for r in stale] == [(timedelta(minutes=15), True)]
    warned = [r.getMessage() for r in caplog.records if "no process led" in r.getMessage()]
    assert len(warned) == 2 and "scan job late: fires from 2026-03-02T10:03:00" in warned[0]
    assert "scan job stale: fires from 2026-03-02T09:45:00" in warned[1]
    # The failed fire did not end leadership: the job ran at every minute after it.
    late_runs = [moment - T0 for job_id, moment in ran if job_id == "late"]
    assert late_runs == [timedelta(minutes=m) for m in range(5, 16)]
    # Each fire that ran is recorded once, by this process; nothing ran unrecorded.
    mine = [(row.job_id, row.fire_time) for row in fires.fires() if row.fired_by == "me"]
    assert sorted(mine) == sorted(ran) and len(set(mine)) == len(mine)


async def test_a_leader_cut_off_from_redis_yields_before_its_lease_ends_and_one_leads_when_it_is_back(
    engine: Engine, redis_url: str, redis: Redis
) -> None:
    key = leader_key(uuid.uuid4().hex)
    fires = FireLog(engine)
    clock = RealClock()
    only_one = OnlyOneLeader()
    at_step_down: list[tuple[int, bytes | None, int]] = []  # (key's ms left, its value, scans run so far)

    async def watch(rig: Rig, held: bool) -> None:
        await only_one(rig, held)
        if rig.name == "cut" and not held and not at_step_down:
            at_step_down.append((await redis.pttl(key), await redis.get(key), len(rig.ran)))

    proxy = TcpProxy(redis_url)
    async with (
        proxy,
        lease_on(proxy.url, key, 2, "cut") as cut_lease,
        lease_on(redis_url, key, 2, "direct") as direct_lease,
    ):
        cut = Rig("cut", lambda r: [r.scan("job")], clock=clock, lease=cut_lease, fires=fires, on_leadership=watch)
        direct = Rig(
            "direct", lambda r: [r.scan("job")], clock=clock, lease=direct_lease, fires=fires, on_leadership=watch
        )
        cut.start()
        await cut.until(lambda: cut.leading == [True])
        direct.start()
        await cut.until(lambda: len(cut.ran) >= 2, event="fired")

        await proxy.close()  # Redis is gone for "cut": its renewals fail
        await cut.until(lambda: cut.leading == [True, False])
        ms_left, holder, scans = at_step_down[0]
        # It stopped leading while its lock still held its token, unexpired: before the lease ended.
        assert ms_left > 0 and holder is not None and holder.decode().startswith("cut/")
        await direct.until(lambda: direct.leading == [True])  # once the key expired
        await direct.until(lambda: len(direct.ran) >= 2, event="fired")
        assert len(cut.ran) == scans  # nothing fired by the cut-off one after it yielded

        await proxy.open()  # Redis is back for "cut": it campaigns and finds "direct" leading
        await asyncio.wait_for(proxy.reconnected.wait(), WAIT)
        fired = len(direct.ran)
        await direct.until(lambda: len(direct.ran) > fired, event="fired")
        assert not cut.scheduler.is_leader and direct.scheduler.is_leader

        await direct.shutdown()  # now "cut" takes over through the restored connection
        await cut.until(lambda: cut.leading == [True, False, True])
        await cut.until(lambda: len(cut.ran) > scans, event="fired")
        await cut.shutdown()

    assert only_one.history[:3] == [("cut", True), ("cut", False), ("direct", True)]
    runs = [moment for _, moment in cut.ran + direct.ran]
    assert len(runs) == len(set(runs))  # no fire ran twice
    assert sorted(runs) == [row.fire_time for row in fires.fires("job")]


async def test_a_graceful_stop_releases_the_lock_at_once(engine: Engine, redis_url: str, redis: Redis) -> None:
    key = leader_key(uuid.uuid4().hex)
    fires, clock = FireLog(engine), RealClock()
    lease_seconds = 60  # the other must take over long before this: only a release lets it
    order: list[str] = []

    async def watch(rig: Rig, held: bool) -> None:
        if rig.name == "second" and held:
            order.append(f"second leads; key's ms left before: {await redis.pttl(key)}")

    async with (
        lease_on(redis_url, key, lease_seconds, "first") as first_lease,
        lease_on(redis_url, key, lease_seconds, "second") as second_lease,
    ):
        first = Rig("first", lambda r: [r.scan("job")], clock=clock, lease=first_lease, fires=fires)
        second = Rig(
            "second",
            lambda r: [r.scan("job")],
            clock=clock,
            lease=second_lease,
            fires=fires,
            on_leadership=watch,
            poll_every=0.1,
        )
        first.start()
        await first.until(lambda: first.leading == [True])
        second.start()
        await first.until(lambda: len(first.ran) >= 1, event="fired")
        assert (await redis.pttl(key)) > (lease_seconds - 5) * 1000 and not second.leading
        await first.shutdown()
        order.append("first stopped")
        assert first.leading == [True, False] and await redis.exists(key) in (0, 1)
        await second.until(lambda: second.leading == [True])
        assert (await redis.get(key) or b"").decode().startswith("second/")
        await second.shutdown()
        assert await redis.exists(key) == 0
    assert order[0] == "first stopped" and order[1].startswith("second leads")


# --------------------------------------------------------------------------------------------------
# two processes


class Child:
    """A scheduler process (tests/leader_child.py) and the JSON lines it printed."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.new_line = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                self.lines.append({"event": "text", "text": raw.decode(errors="replace")})
            self.new_line.set()

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == event]

    async def until(self, condition: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not condition():
                self.new_line.clear()
                if condition():
                    return
                if self.reader.done():
                    await asyncio.wait_for(self.process.wait(), WAIT)
                    raise AssertionError(f"{self.name} ended: {self.lines}\n{await self.stderr()}")
                line = asyncio.create_task(self.new_line.wait())
                await asyncio.wait({self.reader, line}, return_when=asyncio.FIRST_COMPLETED)
                line.cancel()

        await asyncio.wait_for(wait(), WAIT)

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()[-3000:]


@asynccontextmanager
async def child(name: str, db_url: str, redis_url: str) -> AsyncIterator[Child]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.leader_child",
        db_url,
        redis_url,
        "--lease",
        "1",
        "--every",
        "2",
        "--grace",
        "3",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    spawned = Child(name, process)
    try:
        yield spawned
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)  # this test's own child, by its PID
        await process.wait()
        await spawned.reader


async def test_two_processes_one_leader_and_the_survivor_fires_the_next_scan_once(
    engine: Engine, db_url: str, redis_url: str, redis: Redis
) -> None:
    key = leader_key(deployment_id(engine, at=RealClock().now()))
    try:
        async with child("first", db_url, redis_url) as first:
            await first.until(lambda: first.events("leader") == [{"event": "leader", "held": True}])
            async with child("second", db_url, redis_url) as second:
                await second.until(lambda: bool(second.events("started")))
                await first.until(lambda: len(first.events("ran")) >= 2)
                assert not second.events("leader")  # one leader

                os.kill(first.process.pid, signal.SIGKILL)  # dies holding the lock: no release
                await first.process.wait()
                killed_after = {line["fire_time"] for line in first.events("ran")}
                await second.until(lambda: second.events("leader") == [{"event": "leader", "held": True}])
                await second.until(lambda: len(second.events("ran")) >= 2)

                second.process.send_signal(signal.SIGTERM)  # a clean stop releases the lock
                assert await asyncio.wait_for(second.process.wait(), WAIT) == 0
                assert await redis.exists(key) == 0
    finally:
        await redis.delete(key)

    ran = [line["fire_time"] for child_ in (first, second) for line in child_.events("ran")]
    assert len(ran) == len(set(ran))  # no fire ran twice
    recorded = [row.fire_time for row in FireLog(engine).fires(JOB_ID)]
    assert sorted(datetime.fromisoformat(t) for t in ran) == recorded  # each ran fire recorded once
    # None skipped: every 2 s from the first fire to the last was run, or coalesced into a run (a
    # takeover so slow that the next fire was over 3 s late, its grace, would have missed it).
    covered = set(recorded) | {datetime.fromisoformat(t) for line in second.events("fire") for t in line["coalesced"]}
    grid = [
        recorded[0] + timedelta(seconds=2 * i)
        for i in range(int((recorded[-1] - recorded[0]).total_seconds()) // 2 + 1)
    ]
    assert sorted(covered) == grid
    # The survivor's first fire is the one after the last the dead leader ran.
    assert min(line["fire_time"] for line in second.events("ran")) not in killed_after
    assert not any(line["missed"] or line["unclaimed"] for line in first.events("fire") + second.events("fire"))


# --------------------------------------------------------------------------------------------------


class TcpProxy:
    """A TCP relay to Redis that can be cut (listener and every connection closed) and restored on
    the same port: Redis going away and coming back, for the clients that go through it."""

    def __init__(self, target_url: str) -> None:
        kwargs = Redis.from_url(target_url).connection_pool.connection_kwargs
        self.target = (kwargs["host"], kwargs["port"])
        self.db = kwargs.get("db", 0)
        self.port = 0
        self.connections = 0
        self.reconnected = asyncio.Event()  # a client connected after open()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    async def open(self) -> None:
        self.reconnected.clear()
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):
            writer.close()
        self._pipes.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.reconnected.set()
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._pipes |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def __aenter__(self) -> TcpProxy:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None and self._server.is_serving():
            await self.close()


async def test_two_leaders_at_once_still_run_each_fire_once(engine: Engine, redis_url: str) -> None:
    """A split brain (here: two leases on different keys, so both lead): the fire log's claim lets
    one of them run each fire, the other records it unclaimed."""
    fires, clock = FireLog(engine), RealClock()
    async with (
        lease_on(redis_url, leader_key(uuid.uuid4().hex), 5, "left") as left_lease,
        lease_on(redis_url, leader_key(uuid.uuid4().hex), 5, "right") as right_lease,
    ):
        rigs = [
            Rig(name, lambda r: [r.scan("job")], clock=clock, lease=lease, fires=fires)
            for name, lease in (("left", left_lease), ("right", right_lease))
        ]
        for rig in rigs:
            rig.start()
        for rig in rigs:
            await rig.until(lambda rig=rig: len(rig.records) >= 3, event="fired")
        for rig in rigs:
            await rig.shutdown()
    runs = sorted(moment for rig in rigs for _, moment in rig.ran)
    assert len(runs) == len(set(runs)) and runs == [row.fire_time for row in fires.fires("job")]
    refused = [r for rig in rigs for r in rig.records if r.unclaimed]
    assert refused and {r.fire_time for r in refused} <= set(runs)  # the loser's copy of a fire that ran


async def test_a_rescheduled_job_fires_on_its_new_trigger(engine: Engine, redis_url: str) -> None:
    clock = SimulatedClock(T0 + timedelta(seconds=30))
    stop = asyncio.Event()
    fired: list[datetime] = []

    async def scan(tick: ScanTick) -> None:
        fired.append(tick.fire_time)
        if len(fired) == 1:
            scheduler.reschedule("summary", _every(900))  # as a chat changing its summary time
        elif len(fired) == 2:
            stop.set()

    async with lease_on(redis_url, leader_key(uuid.uuid4().hex), 5, "me") as lease:
        scheduler = LeaderScheduler(
            [ScanJob("summary", _every(60), scan)], clock=clock, lease=lease, fires=FireLog(engine), holder="me"
        )
        with pytest.raises(KeyError, match="no job 'nosuch'; jobs: summary"):
            scheduler.reschedule("nosuch", _every(60))
        await asyncio.wait_for(scheduler.run(stop), WAIT)
    assert fired == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=15)]


def test_the_lease_setting_is_bounded_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from bot.settings import Settings

    for value, seconds in (("", 15.0), ("4.5", 4.5), (" 300 ", 300.0)):
        monkeypatch.setenv("TRADEOPS_LEADER_LEASE", value)
        assert Settings(_env_file=None).leader_lease == seconds  # type: ignore[call-arg]
    for value in ("2", "301", "nan", "soon"):
        monkeypatch.setenv("TRADEOPS_LEADER_LEASE", value)
        with pytest.raises(ValidationError) as caught:
            Settings(_env_file=None)  # type: ignore[call-arg]
        assert caught.value.errors()[0]["msg"] == (
            f"Value error, TRADEOPS_LEADER_LEASE must be a number of seconds from 3 to 300 (default 15), got {value!r}"
        )


async def test_the_leader_fires_on_the_scaled_clock_of_replay(engine: Engine, redis_url: str) -> None:
    from venues.clock import ScaledClock

    clock = ScaledClock(T0 + timedelta(seconds=50), speed=120)  # a simulated minute every half second
    stop = asyncio.Event()
    fired: list[datetime] = []

    async def scan(tick: ScanTick) -> None:
        assert clock.now() >= tick.fire_time  # the scaled clock reached the fire before it ran
        fired.append(tick.fire_time)
        if len(fired) == 3:
            stop.set()

    fires = FireLog(engine)
    async with lease_on(redis_url, leader_key(uuid.uuid4().hex), 5, "me") as lease:
        scheduler = LeaderScheduler([ScanJob("replay", _every(60), scan)], clock=clock, lease=lease, fires=fires)
        await asyncio.wait_for(scheduler.run(stop), WAIT)
    assert fired == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    assert [row.fire_time for row in fires.fires("replay")] == fired


async def test_a_leader_that_cannot_read_its_fire_log_lets_go_of_the_lock(redis_url: str, redis: Redis) -> None:
    """The database unreachable (a port where nothing listens): it cannot know what was fired, so it
    fires nothing, releases the lock for a process that can lead, and campaigns again later."""
    from storage.db import make_engine

    key = leader_key(uuid.uuid4().hex)
    unreachable = make_engine("postgresql://postgres@127.0.0.1:1/tradeops")
    free_at_step_down: list[int] = []

    async def watch(rig: Rig, held: bool) -> None:
        if not held:
            free_at_step_down.append(await redis.exists(key))

    async with lease_on(redis_url, key, 3, "me") as lease:
        rig = Rig(
            "me",
            lambda r: [r.scan("job")],
            clock=RealClock(),
            lease=lease,
            fires=FireLog(unreachable),
            on_leadership=watch,
            poll_every=0.1,
        )
        rig.start()
        await rig.until(lambda: rig.leading == [True, False, True, False])
        await rig.shutdown()
    unreachable.dispose()
    assert free_at_step_down[:2] == [0, 0] and rig.ran == []
