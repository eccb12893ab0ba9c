"""Session-aware triggers, the fast-forward driver and the live APScheduler wiring.

Fire lists are checked against known calendars: the 2021 China National Day holiday, the XSHG lunch
break, the 2021 US DST change and the 2021 day-after-Thanksgiving early close.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import pickle
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES

from scheduler.driver import FastForwardDriver, FireRecord, ScanJob, ScanTick, build_scheduler, misfire_grace
from scheduler.triggers import CandleCloseTrigger, FireGrid, SessionTrigger, fire_times, trigger_for
from venues.calendars import get_calendar, unregister_sessions
from venues.clock import SimulatedClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
M30 = timedelta(minutes=30)


def _local(moments: list[datetime], tz: ZoneInfo) -> list[str]:
    return [m.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") for m in moments]


def _day(day: str, times: list[str]) -> list[str]:
    return [f"{day} {t}" for t in times]


XSHG_30M = ["10:00:05", "10:30:05", "11:00:05", "11:30:05", "13:30:05", "14:00:05", "14:30:05", "15:00:05"]
XNYS_30M = [f"{h:02d}:{m:02d}:05" for h in range(10, 17) for m in (0, 30)][:-1]  # 10:00 ... 16:00


# --------------------------------------------------------------------------------------------------
# SessionTrigger


def test_xshg_30m_skips_the_national_day_holiday_and_the_lunch_break() -> None:
    trigger = SessionTrigger("XSHG", M30)
    fires = fire_times(trigger, datetime(2021, 9, 30, tzinfo=SHANGHAI), datetime(2021, 10, 9, tzinfo=SHANGHAI))
    # 2021-10-01..07 is the National Day holiday; 2021-10-09 (a Saturday make-up workday) is closed too.
    assert _local(fires, SHANGHAI) == _day("2021-09-30", XSHG_30M) + _day("2021-10-08", XSHG_30M)
    assert fires[0] == datetime(2021, 9, 30, 2, 0, 5, tzinfo=UTC)
    assert all(f.tzinfo is UTC for f in fires)


def test_xnys_30m_across_the_dst_change() -> None:
    trigger = SessionTrigger("XNYS", M30)
    fires = fire_times(trigger, datetime(2021, 11, 5, tzinfo=NEW_YORK), datetime(2021, 11, 10, tzinfo=NEW_YORK))
    expected = _day("2021-11-05", XNYS_30M) + _day("2021-11-08", XNYS_30M) + _day("2021-11-09", XNYS_30M)
    assert _local(fires, NEW_YORK) == expected
    # Same local times, one hour later in UTC once New York is back on EST (2021-11-07).
    assert fires[0] == datetime(2021, 11, 5, 14, 0, 5, tzinfo=UTC)
    assert fires[13] == datetime(2021, 11, 8, 15, 0, 5, tzinfo=UTC)


def test_xnys_thanksgiving_and_the_early_close() -> None:
    fires = fire_times(
        SessionTrigger("XNYS", M30), datetime(2021, 11, 24, tzinfo=NEW_YORK), datetime(2021, 11, 27, tzinfo=NEW_YORK)
    )
    early = ["10:00:05", "10:30:05", "11:00:05", "11:30:05", "12:00:05", "12:30:05", "13:00:05"]
    assert _local(fires, NEW_YORK) == _day("2021-11-24", XNYS_30M) + _day("2021-11-26", early)


def test_partial_last_bar_fires_at_the_close() -> None:
    hourly = SessionTrigger("XNYS", timedelta(hours=1), delay=timedelta(0))
    fires = fire_times(hourly, datetime(2021, 11, 24, tzinfo=NEW_YORK), datetime(2021, 11, 27, tzinfo=NEW_YORK))
    assert _local(fires, NEW_YORK) == _day(
        "2021-11-24", ["10:30:00", "11:30:00", "12:30:00", "13:30:00", "14:30:00", "15:30:00", "16:00:00"]
    ) + _day("2021-11-26", ["10:30:00", "11:30:00", "12:30:00", "13:00:00"])

    # A-share hourly bars restart after lunch: 10:30 11:30 | 14:00 15:00.
    cn = fire_times(
        SessionTrigger("XSHG", "1h"), datetime(2021, 9, 30, tzinfo=SHANGHAI), datetime(2021, 10, 1, tzinfo=SHANGHAI)
    )
    assert _local(cn, SHANGHAI) == _day("2021-09-30", ["10:30:05", "11:30:05", "14:00:05", "15:00:05"])


def test_a_bar_as_long_as_the_session_fires_once_at_the_close() -> None:
    daily = SessionTrigger("XSHG", timedelta(days=1))
    fires = fire_times(daily, datetime(2021, 9, 27, tzinfo=SHANGHAI), datetime(2021, 10, 9, tzinfo=SHANGHAI))
    assert _local(fires, SHANGHAI) == [f"2021-09-{d} 15:00:05" for d in (27, 28, 29, 30)] + ["2021-10-08 15:00:05"]


def test_next_fire_time_contract() -> None:
    trigger = SessionTrigger("XSHG", M30)
    fire = datetime(2021, 9, 30, 2, 0, 5, tzinfo=UTC)  # 10:00:05 Shanghai
    # Without a previous fire: the first at or after now (inclusive), from any time zone.
    assert trigger.get_next_fire_time(None, fire) == fire
    assert trigger.get_next_fire_time(None, fire.astimezone(SHANGHAI) - timedelta(minutes=10)) == fire
    # With one: strictly after it, even when that is before now (APScheduler then coalesces).
    assert trigger.get_next_fire_time(fire, fire) == fire + M30
    assert trigger.get_next_fire_time(fire, fire + timedelta(days=3)) == fire + M30
    # Lunch: the 11:30 bar, then 13:30; after the close, the next trading day (past the holiday).
    assert trigger.get_next_fire_time(None, datetime(2021, 9, 30, 3, 31, tzinfo=UTC)) == datetime(
        2021, 9, 30, 5, 30, 5, tzinfo=UTC
    )
    assert trigger.get_next_fire_time(None, datetime(2021, 9, 30, 7, 1, tzinfo=UTC)) == datetime(
        2021, 10, 8, 2, 0, 5, tzinfo=UTC
    )
    assert trigger.bar_close(fire) == datetime(2021, 9, 30, 2, 0, tzinfo=UTC)


def test_past_the_calendar_horizon_fires_go_on_at_weekday_sessions() -> None:
    trigger = SessionTrigger("XSHG", M30)
    assert trigger.last_session == get_calendar("XSHG").last_session.date() == date(2026, 12, 31)
    # Sunday 2027-01-03 with no trade calendar registered: the next weekday is taken as a session
    # at XSHG's hours; its first 30-minute bar closes at 10:00 Shanghai (02:00 UTC).
    unregister_sessions("XSHG")
    sunday = datetime(2027, 1, 3, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, sunday) == datetime(2027, 1, 4, 2, 0, 5, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# CandleCloseTrigger


def test_crypto_candles_align_to_the_utc_grid() -> None:
    hourly = CandleCloseTrigger(timedelta(hours=1))
    start = datetime(2021, 3, 1, 10, 20, tzinfo=UTC)
    assert _local(fire_times(hourly, start, start + timedelta(hours=3)), ZoneInfo("UTC")) == [
        "2021-03-01 11:00:05",
        "2021-03-01 12:00:05",
        "2021-03-01 13:00:05",
    ]
    quarter = CandleCloseTrigger("15m")
    assert _local(
        fire_times(quarter, datetime(2021, 3, 1, 10, 7, tzinfo=UTC), start + timedelta(minutes=41)), ZoneInfo("UTC")
    ) == [
        "2021-03-01 10:15:05",
        "2021-03-01 10:30:05",
        "2021-03-01 10:45:05",
        "2021-03-01 11:00:05",
    ]
    # The bar that closed at 10:00 is still due at 10:00:03 (its data arrives at 10:00:05).
    assert quarter.get_next_fire_time(None, datetime(2021, 3, 1, 10, 0, 3, tzinfo=UTC)) == datetime(
        2021, 3, 1, 10, 0, 5, tzinfo=UTC
    )
    four = CandleCloseTrigger(timedelta(hours=4), delay=timedelta(0))
    assert [f.hour for f in fire_times(four, start, start + timedelta(days=1))] == [12, 16, 20, 0, 4, 8]
    fast = CandleCloseTrigger(timedelta(milliseconds=200), delay=timedelta(0))
    now = datetime(2021, 3, 1, 10, 0, 0, 123_456, tzinfo=UTC)
    assert fast.get_next_fire_time(None, now) == datetime(2021, 3, 1, 10, 0, 0, 200_000, tzinfo=UTC)
    assert quarter.bar_close(datetime(2021, 3, 1, 10, 15, 5, tzinfo=UTC)) == datetime(2021, 3, 1, 10, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("every", "delay"),
    [(timedelta(hours=1), timedelta(seconds=5)), ("15m", timedelta(0)), (timedelta(hours=4), timedelta(minutes=7))],
)
def test_candle_fires_listed_at_once_are_the_ones_found_one_by_one(every: timedelta | str, delay: timedelta) -> None:
    # The backtest's event horizon passes over fires with fire_times_before; it must list exactly
    # the fires get_next_fire_time walks through, whatever the previous fire and the stop moment.
    trigger = CandleCloseTrigger(every, delay=delay)
    previous = trigger.get_next_fire_time(None, datetime(2021, 3, 1, 10, 7, 13, tzinfo=UTC))
    assert previous is not None
    for hours in (0, 0.01, 1, 5.5, 30, 24 * 9 + 0.3):
        moment = previous + timedelta(hours=hours)
        walked: list[datetime] = []
        fire = trigger.get_next_fire_time(previous, previous)
        while fire is not None and fire < moment:
            walked.append(fire)
            fire = trigger.get_next_fire_time(fire, fire)
        listed = trigger.fire_times_before(previous, moment)
        assert listed == walked
        assert listed.first + listed.size * listed.every == fire  # the grid's next point: the next fire
    assert trigger.fire_times_before(previous, previous - timedelta(days=1)) == []


def test_driver_skip_before_passes_over_the_same_fires_as_stepping() -> None:
    hourly = CandleCloseTrigger(timedelta(hours=1))

    async def nothing(_tick: ScanTick) -> None:
        return None

    start = datetime(2021, 3, 1, 10, 20, tzinfo=UTC)
    stepped = FastForwardDriver(SimulatedClock(start), [ScanJob("a", hourly, nothing)])
    skipping = FastForwardDriver(SimulatedClock(start), [ScanJob("a", hourly, nothing)])
    target = start + timedelta(hours=30, minutes=1)
    walked = []
    while (upcoming := stepped.next_fire()) is not None and upcoming[1] < target:
        walked.append(upcoming[1])
        asyncio.run(stepped.step())
    assert skipping.skip_before(target) == walked
    assert skipping.next_fire() == stepped.next_fire()


def test_driver_skip_before_passes_over_every_jobs_fires_as_stepping() -> None:
    # Several jobs, one of them on sessions (no fire_times_before: walked fire by fire): the fires
    # passed over are all of theirs in time order, and each job's next fire is where stepping is.
    def jobs() -> list[ScanJob]:
        async def nothing(_tick: ScanTick) -> None:
            return None

        return [
            ScanJob("hourly", CandleCloseTrigger(timedelta(hours=1)), nothing),
            ScanJob("us", SessionTrigger("XNYS", M30), nothing),
            ScanJob("quarter", CandleCloseTrigger("15m", delay=timedelta(0)), nothing),
        ]

    start = datetime(2021, 7, 1, 10, 20, tzinfo=UTC)
    stepped = FastForwardDriver(SimulatedClock(start), jobs())
    skipping = FastForwardDriver(SimulatedClock(start), jobs())
    target = start + timedelta(days=3, minutes=1)
    walked = []
    while (upcoming := stepped.next_fire()) is not None and upcoming[1] < target:
        walked.append(upcoming[1])
        asyncio.run(stepped.step())
    assert skipping.skip_before(target) == walked
    for job in stepped.jobs:  # every job, not only the next to fire, resumes where stepping is
        assert skipping._next_time(job) == stepped._next_time(job) is not None
    assert skipping.skip_before(target) == []


def test_trigger_for_picks_by_calendar() -> None:
    assert trigger_for("24/7", "1h") == CandleCloseTrigger(timedelta(hours=1))
    assert trigger_for("XSHG", M30, delay=timedelta(seconds=10)) == SessionTrigger("XSHG", M30, timedelta(seconds=10))


def test_triggers_pickle_and_read_well() -> None:
    session = SessionTrigger("XSHG", M30)
    candle = CandleCloseTrigger("15m", delay=timedelta(seconds=2))
    for trigger in (session, candle):
        copy = pickle.loads(pickle.dumps(trigger))
        assert copy == trigger
        now = datetime(2021, 9, 30, 2, 1, tzinfo=UTC)
        assert copy.get_next_fire_time(None, now) == trigger.get_next_fire_time(None, now)
    assert str(session) == "session[XSHG every 30m +5s]"
    assert repr(session) == "<SessionTrigger (calendar='XSHG', every='30m', delay='5s')>"
    assert str(candle) == "candle[every 15m UTC +2s]"
    assert repr(CandleCloseTrigger(timedelta(milliseconds=200), timedelta(0))) == (
        "<CandleCloseTrigger (every='200ms', delay='0s')>"
    )


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: SessionTrigger("XSHG", timedelta(0)), ValueError, "every must be positive, got 0s"),
        (lambda: SessionTrigger("XSHG", timedelta(minutes=-5)), ValueError, "every must be positive, got -5m"),
        (lambda: SessionTrigger("XSHG", timedelta(days=2)), ValueError, "every must be at most one day, got 2d"),
        (lambda: SessionTrigger("XSHG", 1800), TypeError, "every must be a datetime.timedelta"),  # type: ignore[arg-type]
        (lambda: SessionTrigger("NOPE", M30), ValueError, r"unknown market calendar 'NOPE'; e\.g\. XSHG, XNYS, 24/7"),
        (lambda: SessionTrigger("XSHG", "7m"), ValueError, "unknown timeframe '7m'"),
        (lambda: SessionTrigger("XSHG", M30, timedelta(seconds=-1)), ValueError, "delay must not be negative"),
        (lambda: CandleCloseTrigger(timedelta(hours=7)), ValueError, "every must divide one day evenly"),
        (lambda: CandleCloseTrigger("1w"), ValueError, "every must be at most one day, got 7d"),
        (lambda: trigger_for("XXXX", M30), ValueError, "unknown market calendar 'XXXX'"),
    ],
)
def test_bad_arguments_are_refused_clearly(make, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make()


# --------------------------------------------------------------------------------------------------
# FastForwardDriver


def _recording_job(job_id: str, trigger, clock: SimulatedClock, log: list[tuple[str, ScanTick, datetime]]) -> ScanJob:
    async def scan(tick: ScanTick) -> str:
        log.append((job_id, tick, clock.now()))
        return f"{job_id}@{tick.fire_time:%H:%M}"

    return ScanJob(job_id, trigger, scan)


async def test_driver_fires_exactly_the_trigger_times_on_three_calendars() -> None:
    start, end = datetime(2021, 11, 5, tzinfo=UTC), datetime(2021, 11, 10, tzinfo=UTC)
    clock = SimulatedClock(start)
    log: list[tuple[str, ScanTick, datetime]] = []
    triggers = {
        "cn": trigger_for("XSHG", M30),
        "us": trigger_for("XNYS", M30),
        "crypto": trigger_for("24/7", "1h"),
    }
    jobs = [_recording_job(job_id, trigger, clock, log) for job_id, trigger in triggers.items()]
    driver = FastForwardDriver(clock, jobs)

    records = await driver.run_until(end)

    for job_id, trigger in triggers.items():
        expected = fire_times(trigger, start, end)
        assert [r.fire_time for r in records if r.job_id == job_id] == expected
        assert [tick.fire_time for jid, tick, _ in log if jid == job_id] == expected
    assert len(records) == 3 * 8 + 3 * 13 + 5 * 24
    assert all(r.ok and not r.coalesced and r.started_at == r.fire_time for r in records)
    assert all(
        now == tick.fire_time and tick.bar_close == tick.fire_time - timedelta(seconds=5) for _, tick, now in log
    )
    seen = [now for _, _, now in log]
    assert seen == sorted(seen), "the clock never goes backwards"
    order = list(triggers)
    for before, after in itertools.pairwise(records):
        assert (before.fire_time, order.index(before.job_id)) < (after.fire_time, order.index(after.job_id))
    # 10:00:05 Shanghai is 02:00:05 UTC: the A-share scan and the hourly crypto scan tie; first registered first.
    tie = [r.job_id for r in records if r.fire_time == datetime(2021, 11, 5, 2, 0, 5, tzinfo=UTC)]
    assert tie == ["cn", "crypto"]
    assert clock.now() == end
    assert driver.records == records


async def test_a_failing_job_is_recorded_and_the_run_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock = SimulatedClock(datetime(2021, 3, 1, tzinfo=UTC))
    calls: list[datetime] = []

    async def flaky(tick: ScanTick) -> None:
        calls.append(tick.fire_time)
        if len(calls) == 2:
            raise RuntimeError("venue down")

    log: list[tuple[str, ScanTick, datetime]] = []
    driver = FastForwardDriver(
        clock,
        [
            ScanJob("flaky", CandleCloseTrigger("1h"), flaky),
            _recording_job("ok", trigger_for("24/7", "1h"), clock, log),
        ],
    )
    with caplog.at_level(logging.ERROR, logger="scheduler.driver"):
        records = await driver.run_until(datetime(2021, 3, 1, 5, tzinfo=UTC))
    flaky_records = [r for r in records if r.job_id == "flaky"]
    assert len(flaky_records) == len(calls) == 5  # 00:00:05 ... 04:00:05
    assert [r.ok for r in flaky_records] == [True, False, True, True, True]
    assert isinstance(flaky_records[1].error, RuntimeError)
    assert len(log) == 5
    assert "scan job flaky failed at 2021-03-01T01:00:05+00:00" in caplog.text
    assert "venue down" in caplog.text


async def test_step_and_next_fire_drive_one_tick_at_a_time() -> None:
    start = datetime(2021, 9, 30, 1, 1, tzinfo=UTC)  # 09:01 Shanghai
    clock = SimulatedClock(start)
    log: list[tuple[str, ScanTick, datetime]] = []
    driver = FastForwardDriver(
        clock,
        [
            _recording_job("crypto", CandleCloseTrigger("15m"), clock, log),
            _recording_job("cn", SessionTrigger("XSHG", M30), clock, log),
        ],
    )
    upcoming = driver.next_fire()
    assert upcoming is not None and upcoming[0].id == "crypto"
    assert upcoming[1] == datetime(2021, 9, 30, 1, 15, 5, tzinfo=UTC)
    assert clock.now() == start, "next_fire only looks"

    # Stop right after the first A-share scan.
    record = await driver.step()
    while record is not None and record.job_id != "cn":
        record = await driver.step()
    assert record is not None and record.fire_time == datetime(2021, 9, 30, 2, 0, 5, tzinfo=UTC)
    assert clock.now() == record.fire_time
    # 02:00:05 UTC is a tie; "crypto" was registered first so it ran first.
    assert [jid for jid, _, _ in log] == ["crypto", "crypto", "crypto", "crypto", "cn"]
    nxt = driver.next_fire()
    assert nxt is not None and nxt[0].id == "crypto" and nxt[1] == datetime(2021, 9, 30, 2, 15, 5, tzinfo=UTC)

    assert await FastForwardDriver(clock, []).step() is None


async def test_run_until_in_pieces_equals_one_run() -> None:
    start, end = datetime(2021, 11, 24, tzinfo=UTC), datetime(2021, 11, 27, tzinfo=UTC)
    middle = datetime(2021, 11, 24, 15, 0, 5, tzinfo=UTC)  # exactly a fire: end is inclusive

    async def collect(windows: list[datetime]) -> list[FireRecord]:
        clock = SimulatedClock(start)
        driver = FastForwardDriver(clock, [_recording_job("us", SessionTrigger("XNYS", M30), clock, [])])
        seen: list[FireRecord] = []

        async def on_fire(record: FireRecord) -> None:
            seen.append(record)

        out: list[FireRecord] = []
        for window_end in windows:
            out += await driver.run_until(window_end, on_fire=on_fire)
            assert clock.now() == window_end
        assert seen == out
        return out

    whole = await collect([end])
    pieces = await collect([middle, middle, end])
    assert [r.fire_time for r in pieces] == [r.fire_time for r in whole]
    assert middle in [r.fire_time for r in whole]
    assert len(whole) == 13 + 7

    clock = SimulatedClock(end)
    with pytest.raises(ValueError, match="cannot run until"):
        await FastForwardDriver(clock, []).run_until(start)


@pytest.mark.parametrize(("grace", "missed"), [(None, True), (timedelta(minutes=15), False)])
async def test_overdue_fires_are_coalesced_as_live(grace: timedelta | None, missed: bool) -> None:
    """A job that moves the clock makes the other job late: its due fires fold into one run for the
    latest, which is dropped when later than the grace (default half a bar: 7.5 min for 15m)."""
    clock = SimulatedClock(datetime(2021, 3, 1, tzinfo=UTC))

    async def slow(tick: ScanTick) -> None:
        clock.advance(timedelta(minutes=40))

    ran: list[ScanTick] = []

    async def quick(tick: ScanTick) -> None:
        ran.append(tick)

    driver = FastForwardDriver(
        clock,
        [
            ScanJob("slow", CandleCloseTrigger("1h"), slow),
            ScanJob("quick", CandleCloseTrigger("15m"), quick, misfire_grace_time=grace),
        ],
    )
    await driver.step()
    record = await driver.step()
    assert record is not None and record.job_id == "quick"
    assert record.started_at == datetime(2021, 3, 1, 0, 40, 5, tzinfo=UTC)
    assert record.fire_time == datetime(2021, 3, 1, 0, 30, 5, tzinfo=UTC)
    assert record.coalesced == (datetime(2021, 3, 1, 0, 0, 5, tzinfo=UTC), datetime(2021, 3, 1, 0, 15, 5, tzinfo=UTC))
    assert record.missed is missed
    assert len(ran) == (0 if missed else 1)
    nxt = driver.next_fire()
    assert nxt is not None and nxt[1] == datetime(2021, 3, 1, 0, 45, 5, tzinfo=UTC)


def test_duplicate_ids_and_sync_functions_are_refused() -> None:
    async def scan(tick: ScanTick) -> None: ...

    def sync_scan(tick: ScanTick) -> None: ...

    trigger = CandleCloseTrigger("1h")
    with pytest.raises(ValueError, match="duplicate scan job id 'a'"):
        FastForwardDriver(SimulatedClock(datetime(2021, 1, 1, tzinfo=UTC)), [ScanJob("a", trigger, scan)] * 2)
    with pytest.raises(ValueError, match="duplicate scan job id 'a'"):
        build_scheduler([ScanJob("a", trigger, scan)] * 2)
    with pytest.raises(TypeError, match="must be an 'async def' function"):
        ScanJob("a", trigger, sync_scan)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# live AsyncIOScheduler, same triggers


async def stored_scan(tick: ScanTick) -> None:
    """Module level so a job store can keep a reference to it."""


async def test_build_scheduler_job_options_and_storable_jobs() -> None:
    trigger = CandleCloseTrigger(M30)  # not a session trigger: independent of today's date
    scheduler = build_scheduler([ScanJob("cn", trigger, stored_scan)])
    scheduler.start(paused=True)
    job = scheduler.get_job("cn")
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0)
    assert (job.max_instances, job.coalesce, job.misfire_grace_time, job.executor) == (1, True, 900, "scan")
    assert job.trigger is trigger
    assert misfire_grace(ScanJob("x", CandleCloseTrigger(timedelta(milliseconds=200)), stored_scan)) == timedelta(
        seconds=1
    )
    state = pickle.loads(pickle.dumps(job.__getstate__()))
    assert state["trigger"] == trigger and state["func"] == "tests.test_scheduler_triggers:stored_scan"


async def test_live_scheduler_runs_one_scan_at_a_time_and_drops_overlapping_fires() -> None:
    every, runtime = 0.2, 0.45
    trigger = CandleCloseTrigger(timedelta(seconds=every), delay=timedelta(0))
    running, most = 0, 0
    ticks: list[ScanTick] = []

    async def scan(tick: ScanTick) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        ticks.append(tick)
        try:
            await asyncio.sleep(runtime)
        finally:
            running -= 1

    skipped: list[object] = []
    scheduler = build_scheduler([ScanJob("w", trigger, scan)])
    scheduler.add_listener(skipped.append, EVENT_JOB_MAX_INSTANCES)
    started = time.perf_counter()
    scheduler.start()
    try:
        await asyncio.sleep(1.2)
        elapsed = time.perf_counter() - started
        scheduler.remove_job("w")
        for _ in range(100):  # let the run in flight finish
            if not running:
                break
            await asyncio.sleep(0.01)
    finally:
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)

    assert most == 1, "two scans of one job overlapped"
    assert 2 <= len(ticks) <= 1 + elapsed / runtime
    assert len(ticks) < elapsed / every / 2, "fires due during a run are dropped, not piled up"
    assert skipped, "a fire during a run is reported as EVENT_JOB_MAX_INSTANCES"
    fires = [t.fire_time for t in ticks]
    assert fires == sorted(fires)
    assert all(later - earlier >= timedelta(seconds=0.4) for earlier, later in itertools.pairwise(fires))
    assert all(t.bar_close == t.fire_time and t.fire_time.microsecond % 200_000 == 0 for t in ticks)


async def test_live_scheduler_coalesces_fires_missed_while_the_loop_was_blocked() -> None:
    trigger = CandleCloseTrigger(timedelta(milliseconds=200), delay=timedelta(0))
    ticks: list[ScanTick] = []

    async def scan(tick: ScanTick) -> None:
        ticks.append(tick)

    scheduler = build_scheduler([ScanJob("w", trigger, scan)])
    scheduler.start()
    try:
        first_due = scheduler.get_job("w").next_run_time
        time.sleep(0.7)  # noqa: ASYNC251 -- deliberately block the event loop: 3+ fires come due meanwhile
        for _ in range(50):
            if ticks:
                break
            await asyncio.sleep(0.005)
    finally:
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)
    assert ticks, "the overdue job ran once the loop was free"
    # One run, for the latest due fire: the two or more before it were folded in.
    assert ticks[0].fire_time >= first_due + timedelta(milliseconds=400)


def test_same_dates_as_the_calendar_library() -> None:
    """The trigger's trading days are exactly the calendar's sessions (no table of our own)."""
    trigger = SessionTrigger("XSHG", timedelta(days=1), delay=timedelta(0))
    fires = fire_times(trigger, datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 12, 31, 23, tzinfo=UTC))
    sessions = get_calendar("XSHG").sessions_in_range("2021-01-01", "2021-12-31")
    assert [f.astimezone(SHANGHAI).date() for f in fires] == [s.date() for s in sessions]
    assert date(2021, 10, 1) not in {f.date() for f in fires}


@pytest.mark.parametrize(("since_minutes", "first_fire"), [(None, "00:15"), (-1, "00:00")])
def test_fires_due_while_a_run_started_still_run_when_counted_from_its_start(
    since_minutes: int | None, first_fire: str
) -> None:
    """`tradeops run` passes the moment it started (23:59): the 00:00 fire that came due while its
    transports started (the clock is at 00:00:30 now) runs late, within its grace, instead of being
    skipped for the next one."""
    from apscheduler.triggers.interval import IntervalTrigger

    start = datetime(2021, 7, 6, tzinfo=UTC)
    clock = SimulatedClock(start + timedelta(seconds=30))
    ran: list[ScanTick] = []

    async def scan(tick: ScanTick) -> None:
        ran.append(tick)

    job = ScanJob(id="w", trigger=IntervalTrigger(minutes=15, start_date=start), func=scan)
    since = None if since_minutes is None else start + timedelta(minutes=since_minutes)
    driver = FastForwardDriver(clock, [job], since=since)
    asyncio.run(driver.step())
    assert [t.fire_time.strftime("%H:%M") for t in ran] == [first_fire]


def test_a_fire_grid_reads_as_the_list_of_its_fires() -> None:
    first, hour = datetime(2021, 3, 1, 10, 0, 5, tzinfo=UTC), timedelta(hours=1)
    grid = FireGrid(first, hour, 30)
    listed = [first + i * hour for i in range(30)]
    assert list(grid) == listed and grid == listed and listed == grid and len(grid) == 30
    assert grid[0] == first and grid[-1] == listed[-1] and grid[7] == listed[7]
    assert grid[3:9] == listed[3:9] and isinstance(grid[3:9], FireGrid) and grid[::2] == listed[::2]
    assert grid[40:] == [] and grid[-5:] == listed[-5:] and bisect.bisect_left(grid, listed[12]) == 12
    assert grid != listed[:-1] and FireGrid(first, hour, 0) == FireGrid(listed[3], hour * 2, 0) == []
    assert FireGrid(first, hour, 1) == FireGrid(first, hour * 3, 1) != FireGrid(first, hour, 2)
    for moment in (first - hour, first, first + timedelta(microseconds=1), listed[12], listed[-1], first + hour * 31):
        assert grid.bisect_left(moment) == bisect.bisect_left(listed, moment)
    with pytest.raises(IndexError):
        grid[30]
    with pytest.raises(ValueError, match="zero or more"):
        FireGrid(first, hour, -1)
