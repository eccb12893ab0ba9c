"""`tradeops run`: the replay clock's arithmetic, and the whole bot on the replay data at a high speed
with a recording transport (a test double of the Transport protocol): scheduled scans push cards, a
decision made through the runner reaches every transport, unanswered signals expire, fills reach
push_event; a second run on the same database is refused by a real second process; SIGTERM stops it
cleanly with pending approvals untouched; the CLI's refusals exit 2."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.run import EXIT_TRANSPORT_STOPPED, TRANSPORT_CLASSES, Fanout, RunRefused, run_bot, transports_for
from bot.services import REPLAY_START, Services
from bot.settings import Settings
from bot.transport import RequestStop, StopRequest
from storage.signals import SignalStatus, SignalStore
from storage.tables import SignalRow
from venues.clock import ScaledClock

TRADEOPS = Path(sys.executable).parent / "tradeops"
SPEED = 7200.0  # two simulated hours per real second
WAIT_SECONDS = 120.0  # upper bound on how long a run is given to show what a test waits for


# --------------------------------------------------------------------------------------------------
# the replay clock


class FakeTime:
    """A monotonic source and a sleep that advances it (and records what was asked)."""

    def __init__(self) -> None:
        self.seconds = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.seconds

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.seconds += delay


def test_scaled_clock_runs_speed_times_real_time_and_sleeps_the_scaled_delay() -> None:
    fake = FakeTime()
    start = datetime(2021, 7, 6, tzinfo=UTC)
    clock = ScaledClock(start, 60, monotonic=fake.monotonic, sleep=fake.sleep)
    assert clock.now() == start
    fake.seconds += 1.5
    assert clock.now() == start + timedelta(seconds=90)

    asyncio.run(clock.sleep_until(start + timedelta(hours=1, seconds=90)))
    assert fake.slept == [60.0]  # one simulated hour at 60x is one real minute
    assert clock.now() == start + timedelta(hours=1, seconds=90)

    asyncio.run(clock.sleep_until(start))  # the past: no sleep, no going back
    assert fake.slept == [60.0]
    assert clock.now() == start + timedelta(hours=1, seconds=90)


def test_scaled_clock_sleeps_again_when_woken_early_and_refuses_bad_input() -> None:
    fake = FakeTime()
    start = datetime(2021, 7, 6, tzinfo=UTC)

    async def early(delay: float) -> None:  # wakes after half the time asked for
        fake.slept.append(delay)
        fake.seconds += delay / 2

    clock = ScaledClock(start, 3600, monotonic=fake.monotonic, sleep=early)
    asyncio.run(clock.sleep_until(start + timedelta(hours=2)))
    assert fake.slept[:2] == [2.0, 1.0]
    assert clock.now() >= start + timedelta(hours=2) - timedelta(milliseconds=1)
    for speed in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="speed must be a positive number"):
            ScaledClock(start, speed)
    with pytest.raises(ValueError, match="naive datetime"):
        ScaledClock(datetime(2021, 7, 6), 60)


def test_scaled_clock_on_the_real_monotonic_clock_moves_forward() -> None:
    clock = ScaledClock(REPLAY_START, 3600)
    asyncio.run(clock.sleep_until(REPLAY_START + timedelta(seconds=36)))  # 10 ms of real time
    assert clock.now() >= REPLAY_START + timedelta(seconds=36)


# --------------------------------------------------------------------------------------------------
# the bot


class RecordingTransport:
    """Records every push; approves the first card it is shown through the runner, as a chat user
    pressing Approve would, and leaves the rest unanswered (they expire)."""

    name = "recording"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.started = False
        self.stopped = False
        self.cards: list[dict[str, Any]] = []
        self.decisions: list[tuple[str, str, str]] = []
        self.events: list[tuple[str, str]] = []
        self.approved: str | None = None
        self.request_stop: RequestStop | None = None
        self.changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, request_stop: RequestStop | None = None) -> None:
        self.started = True
        self.request_stop = request_stop

    async def stop(self) -> None:
        await asyncio.gather(*self._tasks)
        self.stopped = True

    async def push_card(self, card: dict[str, Any]) -> None:
        self.cards.append(card)
        if self.approved is None:
            self.approved = card["signal_id"]
            # Not inline: the walk that pushes the card still holds its locks.
            task = asyncio.create_task(self.services.runner.decide(card["signal_id"], "approved", actor="test:1"))
            self._tasks.add(task)
        self.changed.set()

    async def push_decision(self, signal_id: str, status: str, text: str) -> None:
        self.decisions.append((signal_id, status, text))
        self.changed.set()

    async def push_event(self, text: str, *, kind: str) -> None:
        self.events.append((kind, text))
        self.changed.set()


def _settings(tmp_path: Path, db_url: str) -> Settings:
    # The transport approves a card as soon as it is pushed, but at SPEED a real second of a busy
    # machine is two simulated hours: the price may have moved past the 50 bps drift guard by then
    # (the guard has its own tests in test_graph). These tests are about what reaches the chats.
    return Settings(data_dir=tmp_path / "var", database_url=db_url, max_drift_bps=2000, _env_file=None)  # type: ignore[call-arg]


class Bot:
    """run_bot in a task with one RecordingTransport, stopped by its event."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.transports: list[RecordingTransport] = []
        self.task: asyncio.Task[int] | None = None

    def _make(self, settings: Settings, services: Services) -> list[RecordingTransport]:
        self.transports.append(RecordingTransport(services))
        return self.transports

    def start(self) -> None:
        self.task = asyncio.create_task(run_bot(self.settings, self._make, speed=SPEED, stop=self.stop))

    @property
    def transport(self) -> RecordingTransport:
        return self.transports[0]

    async def until(self, condition: Callable[[RecordingTransport], bool]) -> None:
        async def wait() -> None:
            while not (self.transports and condition(self.transport)):
                assert self.task is not None
                if self.task.done():
                    self.task.result()  # raises what the run raised
                    raise AssertionError("the run ended before the condition held")
                if self.transports:
                    self.transport.changed.clear()
                    with contextlib.suppress(TimeoutError):  # re-check the run's state now and then
                        await asyncio.wait_for(self.transport.changed.wait(), 0.5)
                else:
                    await asyncio.sleep(0.05)

        try:
            await asyncio.wait_for(wait(), WAIT_SECONDS)
        except TimeoutError:
            seen = self.transport if self.transports else None
            raise AssertionError(
                f"not seen within {WAIT_SECONDS} s: "
                + (f"decisions {seen.decisions}, events {seen.events[-5:]}" if seen else "no transport yet")
            ) from None


def _statuses(db_url: str) -> dict[str, str]:
    from storage.db import make_engine

    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            return {row.id: row.status for row in session.exec(select(SignalRow)).all()}
    finally:
        engine.dispose()


async def test_run_pushes_cards_decisions_expiries_and_fills_then_stops_cleanly(
    hermetic: None, tmp_path: Path, db_url: str
) -> None:
    bot = Bot(_settings(tmp_path, db_url))
    bot.start()

    def everything_seen(t: RecordingTransport) -> bool:
        kinds = {status for _, status, _ in t.decisions}
        return (
            t.approved is not None
            and any(s == t.approved and status != "pending" for s, status, _ in t.decisions)
            and "expired" in kinds
            and any(kind == "fill" for kind, _ in t.events)
        )

    await bot.until(everything_seen)
    # The second process: the same database is refused with a clear message naming our pid.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    env |= {"TRADEOPS_DATABASE_URL": db_url, "TRADEOPS_TELEGRAM_TOKEN": "123:abc"}
    second = await asyncio.to_thread(
        subprocess.run,
        [str(TRADEOPS), "run", "--replay", "--data-dir", str(tmp_path / "var")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert second.returncode == 2, second.stderr
    assert "another tradeops run is using" in second.stderr
    assert f"(pid {os.getpid()})" in second.stderr
    assert "stop it first" in second.stderr
    assert "123:abc" not in second.stderr

    bot.stop.set()
    assert await asyncio.wait_for(bot.task, 30) == 0  # type: ignore[arg-type]
    transport = bot.transport
    assert transport.started and transport.stopped
    assert all(card["symbol"] and card["signal_id"] for card in transport.cards)
    statuses = _statuses(db_url)
    assert {card["signal_id"] for card in transport.cards} <= set(statuses)
    approved = [(status, text) for s, status, text in transport.decisions if s == transport.approved]
    assert approved and "APPROVED by test:1" in approved[0][1]
    expired = [s for s, status, _ in transport.decisions if status == "expired"]
    assert all(statuses[s] == "expired" for s in expired)
    # Pending approvals at the stop are left pending: nothing decides them on shutdown.
    decided = {s for s, _, _ in transport.decisions}
    undecided = [c["signal_id"] for c in transport.cards if c["signal_id"] not in decided]
    assert all(statuses[s] == SignalStatus.PENDING.value for s in undecided)

    # The data dir remembers where the replay clock stopped; a restart carries on from there.
    restarted = Bot(_settings(tmp_path, db_url))
    restarted.start()
    await restarted.until(lambda t: t.started)
    clock = restarted.transport.services.clock
    assert clock.now() > REPLAY_START + timedelta(hours=6)
    restarted.stop.set()
    assert await asyncio.wait_for(restarted.task, 30) == 0  # type: ignore[arg-type]


async def test_sigterm_stops_the_run_and_leaves_pending_signals_pending(hermetic: None, tmp_path: Path) -> None:
    from storage.db import sqlite_url

    db_url = sqlite_url(tmp_path / "var" / "tradeops.db")
    bot = Bot(_settings(tmp_path, db_url))
    bot.start()
    await bot.until(lambda t: len(t.cards) >= 2)  # cards come from the scheduled scans: handlers are set
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(bot.task, 30) == 0  # type: ignore[arg-type]
    assert bot.transport.stopped
    assert bot.stop.is_set()  # SIGTERM set the run's stop event
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is removed again
    decided = {s for s, _, _ in bot.transport.decisions}
    statuses = _statuses(db_url)
    undecided = [c["signal_id"] for c in bot.transport.cards if c["signal_id"] not in decided]
    assert undecided and all(statuses[s] == SignalStatus.PENDING.value for s in undecided)


async def test_a_transport_asking_to_stop_stops_the_run_like_sigterm_with_exit_status_4(
    hermetic: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from storage.db import sqlite_url

    caplog.set_level(logging.INFO, logger="tradeops.run")
    db_url = sqlite_url(tmp_path / "var" / "tradeops.db")
    bot = Bot(_settings(tmp_path, db_url))
    bot.start()
    await bot.until(lambda t: len(t.cards) >= 2)
    transport = bot.transport
    assert transport.request_stop is not None  # the run handed its callback to start()
    transport.request_stop(StopRequest("recording", "the platform took the token back; get a new one"))
    transport.request_stop(StopRequest("recording", "a second reason"))  # while stopping: only logged
    assert await asyncio.wait_for(bot.task, 30) == EXIT_TRANSPORT_STOPPED == 4  # type: ignore[arg-type]
    assert transport.stopped and bot.stop.is_set()
    errors = [r.getMessage() for r in caplog.records if r.name == "tradeops.run" and r.levelno == logging.ERROR]
    assert errors[0] == "stopping: transport recording asked to: the platform took the token back; get a new one"
    assert "stopped; pending approvals stay pending until the next start" in caplog.text
    decided = {s for s, _, _ in transport.decisions}
    statuses = _statuses(db_url)
    undecided = [c["signal_id"] for c in transport.cards if c["signal_id"] not in decided]
    assert undecided and all(statuses[s] == SignalStatus.PENDING.value for s in undecided)


def test_a_token_for_a_transport_not_built_yet_is_refused(
    hermetic: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(TRANSPORT_CLASSES, "discord", ("bot.no_such_transport", "Missing"))  # as before issue 8
    settings = Settings(data_dir=tmp_path, discord_token="xyz", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(RunRefused, match="the discord transport is not built yet"):
        transports_for(settings, None)  # type: ignore[arg-type]
    with pytest.raises(RunRefused, match="TRADEOPS_TELEGRAM_TOKEN or TRADEOPS_DISCORD_TOKEN"):
        transports_for(Settings(data_dir=tmp_path, discord_token="  ", _env_file=None), None)  # type: ignore[arg-type,call-arg]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["run", "--replay"], {}, "set TRADEOPS_TELEGRAM_TOKEN or TRADEOPS_DISCORD_TOKEN"),
        (["run"], {"TRADEOPS_TELEGRAM_TOKEN": "1:x"}, "no live venue is configured"),
    ],
)
def test_cli_refusals_exit_2(
    hermetic: None, tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    result = subprocess.run(
        [str(TRADEOPS), *args, "--data-dir", str(tmp_path / "var")],
        capture_output=True,
        text=True,
        env=clean | env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr
    if "TOKEN" in message:
        assert "tradeops chat" in result.stderr and "tradeops demo" in result.stderr
    assert not (tmp_path / "var" / "tradeops.db").exists()  # refused before touching the database


async def test_a_card_answered_by_another_process_is_edited_at_the_next_scan(engine: Engine) -> None:
    """`tradeops chat -c "/approve ID"` in another process while the bot runs: the bot's transports
    learn it at the next scan (the cards it pushed that are no longer pending), once."""
    signals = SignalStore(engine)
    at = datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC)
    for signal_id in ("outside1", "stillpen"):
        signals.create(
            SignalRow(
                id=signal_id,
                venue="replay-crypto",
                symbol="ETH/USDT",
                side="buy",
                status="pending",
                created_at=at,
                updated_at=at,
            )
        )
    transport = RecordingTransport(None)  # type: ignore[arg-type]
    transport.approved = "someone else"  # it only records here
    fanout = Fanout()
    fanout.transports.append(transport)
    for signal_id in ("outside1", "stillpen"):
        await fanout.push_card({"signal_id": signal_id})
    signals.decide("outside1", "approved", actor="console:0", at=at)
    await fanout.push_outside_decisions(signals)
    assert transport.decisions == [
        ("outside1", "approved", "APPROVED by console:0 at 2021-07-06 06:00 UTC: placing the order")
    ]
    await fanout.push_outside_decisions(signals)  # told once
    assert len(transport.decisions) == 1 and fanout.watched == {"stillpen"}


async def test_a_scan_tells_its_walks_notices_once_each_and_its_failure(engine: Engine) -> None:
    from types import SimpleNamespace

    from agent.runner import WalkResult
    from bot.run import _on_scan
    from scheduler.driver import ScanTick
    from scheduler.scan import ScanReport
    from storage.watchlists import WatchlistSpec

    transport = RecordingTransport(None)  # type: ignore[arg-type]
    fanout = Fanout()
    fanout.transports.append(transport)
    on_scan = _on_scan(fanout, SimpleNamespace(signals=SignalStore(engine), runner=SimpleNamespace(deciding=())))  # type: ignore[arg-type]
    at = datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC)
    spent = "LLM daily token budget spent: the rule policy decides until 00:00 UTC"
    walks = (WalkResult("a", "hold", notices=(spent,)), WalkResult("b", "hold", notices=(spent,)))
    report = ScanReport("crypto", "replay-crypto", at, 2, 2, (), {}, walks, error="venue down")
    watchlist = WatchlistSpec(name="crypto", venue="replay-crypto", symbols=("ETH/USDT",), timeframe="1h")
    await on_scan(watchlist, ScanTick("crypto", at, at), [], report)
    assert transport.events == [("error", "scan of crypto failed: venue down"), ("notice", spent)]


# --------------------------------------------------------------------------------------------------
# live: the real clock and APScheduler


async def test_schedule_live_fires_on_the_real_clock_and_lets_a_scan_in_flight_finish() -> None:
    from apscheduler.triggers.interval import IntervalTrigger

    from bot.run import schedule_live
    from scheduler.driver import ScanJob, ScanTick

    stop = asyncio.Event()
    ticks: list[ScanTick] = []
    finished: list[ScanTick] = []

    async def scan(tick: ScanTick) -> None:
        ticks.append(tick)
        stop.set()  # stop arrives while this scan is still running
        await asyncio.sleep(0.3)
        finished.append(tick)

    job = ScanJob(id="every-second", trigger=IntervalTrigger(seconds=1), func=scan)
    await asyncio.wait_for(schedule_live([job], stop), 10)
    assert len(ticks) == 1 and finished == ticks  # awaited, not abandoned
    assert ticks[0].job_id == "every-second" and ticks[0].fire_time.tzinfo is not None


def _live_builder(tmp_path: Path) -> Any:
    """A LiveVenueBuilder of one 24/7 market whose minute bars end at the real now."""
    import pandas as pd

    from bot.venues import LiveVenueBuilder
    from tests.support import FrameMarket, replay_instrument
    from venues.base import BrokeredVenue
    from venues.paper import PaperBroker, PaperBrokerConfig

    class LiveFrames(BrokeredVenue, FrameMarket):
        calendar = "24/7"

    def build(settings: Settings, clock: Any, ledger: Any) -> Any:
        now = pd.Timestamp(clock.now()).floor("1min")
        index = pd.date_range(end=now - pd.Timedelta(minutes=1), periods=600, freq="1min", tz="UTC", name="ts")
        close = [100 + (i % 17) * 0.1 for i in range(len(index))]
        frame = pd.DataFrame(
            {
                "open": close,
                "high": [c + 0.2 for c in close],
                "low": [c - 0.2 for c in close],
                "close": close,
                "volume": [10.0] * len(index),
                "close_time": index + pd.Timedelta(minutes=1),
            },
            index=index,
        )
        instrument = replay_instrument("ETH/USDT", venue="fakex", timeframe="1m")
        venue = LiveFrames("fakex", clock, [instrument], {"ETH/USDT": frame})
        venue.broker = PaperBroker("fakex", venue, clock, ledger, PaperBrokerConfig(starting_cash={"USDT": 1000}))
        return venue

    return LiveVenueBuilder(kind="fakex", variables="TEST_ONLY", configured=lambda s: True, build=build)


def test_a_live_run_schedules_its_venues_watchlists_on_the_real_clock(
    hermetic: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import bot.venues
    from storage.watchlists import WatchlistSpec, WatchlistStore

    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'live.db'}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bot.venues, "LIVE_BUILDERS", (_live_builder(tmp_path),))

        async def main() -> int:
            from bot.wiring import open_database

            engine = open_database(settings)
            now = datetime.now(UTC)
            store = WatchlistStore(engine)
            store.ensure(WatchlistSpec(name="majors", venue="fakex", symbols=("ETH/USDT",), timeframe="1m"), at=now)
            store.ensure(WatchlistSpec(name="old", venue="replay-us", symbols=("SPY",), timeframe="15m"), at=now)
            engine.dispose()
            bot = Bot(settings)
            bot.task = asyncio.create_task(run_bot(settings, bot._make, replay=False, stop=bot.stop))
            await bot.until(lambda t: t.started)
            bot.stop.set()
            return await bot.task

        with caplog.at_level(logging.INFO, logger="tradeops"):
            assert asyncio.run(main()) == 0
    text = caplog.text
    assert "live on fakex, real clock" in text
    assert "watchlist majors scheduled, next scan at" in text
    assert "watchlists on replay-us not scheduled: this run trades on fakex" in text


async def test_a_decision_this_process_is_making_is_not_announced_by_the_outside_check() -> None:
    """A scan that fires while a press's walk is still executing sees the row decided; the walk's own
    decision hook will edit the card, so the outside check must not edit it first (one edit per card)."""

    class Row:
        status = SignalStatus.APPROVED.value

    class Signals:
        def get(self, signal_id: str) -> Row:
            return Row()

        def approval(self, signal_id: str) -> None:
            return None

        def history(self, signal_id: str) -> list[Any]:
            return []

    fanout = Fanout()
    transport = RecordingTransport(None)  # type: ignore[arg-type]
    fanout.transports.append(transport)  # type: ignore[arg-type]
    fanout.watched.add("abcd1234")
    await fanout.push_outside_decisions(Signals(), {"abcd1234"})  # type: ignore[arg-type]
    assert transport.decisions == [] and "abcd1234" in fanout.watched
    await fanout.push_outside_decisions(Signals())  # type: ignore[arg-type]  # decided elsewhere: edited
    assert transport.decisions == [("abcd1234", "approved", "APPROVED: placing the order")]
