"""XSHG sessions past exchange-calendars' horizon (2026-12-31 in the installed release): trading
days registered from akshare's trade calendar (stored in the database), else weekdays with a
warning in the chat once a day and in `tradeops doctor`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import responses
from sqlalchemy import Engine

from bot.trading_days import assumption_warning, load_trading_days
from storage.trading_days import TradingDayStore
from tests.sina_calendar import SINA_CALENDAR_URL, sina_calendar_file
from tests.support import bars_frame
from venues import calendars
from venues.adapters.akshare import AkshareConfig, AkshareVenue
from venues.clock import SimulatedClock
from venues.timeframes import resample

HORIZON = date(2026, 12, 31)
# The first trading days of 2027 as an exchange calendar would publish them: New Year's Day on
# Friday the 1st, and (for the test) Thursday the 7th closed too.
JANUARY = [date(2027, 1, 4), date(2027, 1, 5), date(2027, 1, 6), date(2027, 1, 8)]
SINA_CALENDAR = SINA_CALENDAR_URL


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    calendars.unregister_sessions("XSHG")
    yield
    calendars.unregister_sessions("XSHG")


def shanghai(day: date, hour: int, minute: int = 0) -> datetime:
    return pd.Timestamp(datetime(day.year, day.month, day.day, hour, minute), tz="Asia/Shanghai").to_pydatetime()


def test_the_library_ends_where_the_issue_says() -> None:
    assert calendars.library_last_session("XSHG") == HORIZON


def test_sessions_past_the_horizon_come_from_the_registered_days() -> None:
    assert calendars.register_sessions("XSHG", [date(2026, 12, 30), *JANUARY], source="akshare trade calendar") == 4
    assert calendars.known_until("XSHG") == (date(2027, 1, 8), "akshare trade calendar")
    monday = calendars.session("XSHG", date(2027, 1, 4))
    assert monday is not None
    # XSHG's hours, as on its last known session: 09:30-11:30 and 13:00-15:00 Shanghai.
    assert (monday.open, monday.break_start, monday.break_end, monday.close) == (
        shanghai(date(2027, 1, 4), 9, 30),
        shanghai(date(2027, 1, 4), 11, 30),
        shanghai(date(2027, 1, 4), 13),
        shanghai(date(2027, 1, 4), 15),
    )
    assert calendars.session("XSHG", date(2027, 1, 7)) is None  # a weekday the calendar closes
    assert calendars.next_session_day("XSHG", HORIZON) == date(2027, 1, 4)
    assert calendars.next_session_day("XSHG", date(2027, 1, 6)) == date(2027, 1, 8)
    previous = calendars.previous_session("XSHG", date(2027, 1, 4))
    assert previous is not None and previous.day == HORIZON
    # After Wednesday's close the next session is Friday's; Thursday is no trading day.
    assert calendars.trading_day("XSHG", shanghai(date(2027, 1, 6), 15, 1)) == date(2027, 1, 8)
    assert calendars.trading_day("XSHG", shanghai(HORIZON, 15, 1)) == date(2027, 1, 4)
    assert calendars.is_open("XSHG", shanghai(date(2027, 1, 5), 10))
    assert not calendars.is_open("XSHG", shanghai(date(2027, 1, 5), 12))  # lunch
    assert not calendars.is_open("XSHG", shanghai(date(2027, 1, 7), 10))
    assert calendars.next_open("XSHG", shanghai(date(2027, 1, 7), 10)) == shanghai(date(2027, 1, 8), 9, 30)
    assert [s.day for s in calendars.sessions_between("XSHG", date(2026, 12, 30), date(2027, 1, 8))] == [
        date(2026, 12, 30),
        HORIZON,
        *JANUARY,
    ]
    # 15 minutes of trading time from 14:50 on the last library day: 10 then, 5 from 09:30 on the 4th.
    start = shanghai(HORIZON, 14, 50)
    assert calendars.add_trading_time("XSHG", start, timedelta(minutes=15)) == shanghai(date(2027, 1, 4), 9, 35)
    assert calendars.assumed_weekdays("XSHG") == []
    # Past the registered days: weekdays, and they are listed as assumed.
    assert calendars.session("XSHG", date(2027, 1, 11)) is not None
    assert calendars.session("XSHG", date(2027, 1, 9)) is None  # a Saturday
    assert date(2027, 1, 11) in calendars.assumed_weekdays("XSHG")


def test_daily_and_hourly_bars_resample_on_the_registered_sessions() -> None:
    calendars.register_sessions("XSHG", JANUARY, source="akshare trade calendar")
    # Hourly A-share bars (open times UTC) on Wednesday the 6th and Friday the 8th.
    hourly = bars_frame(
        [
            ("2027-01-06T01:30Z", 10.0, 10.2, 9.9, 10.1, 100),
            ("2027-01-06T02:30Z", 10.1, 10.3, 10.0, 10.2, 100),
            ("2027-01-06T05:00Z", 10.2, 10.4, 10.1, 10.3, 100),
            ("2027-01-06T06:00Z", 10.3, 10.5, 10.2, 10.4, 100),
            ("2027-01-08T01:30Z", 10.4, 10.6, 10.3, 10.5, 100),
        ],
        "1h",
    )
    daily = resample(hourly, "1d", calendar="XSHG")
    assert list(daily.index) == [pd.Timestamp("2027-01-06T01:30Z"), pd.Timestamp("2027-01-08T01:30Z")]
    assert daily["close_time"].iloc[0] == pd.Timestamp("2027-01-06T07:00Z")
    assert (daily["high"].iloc[0], daily["close"].iloc[0]) == (10.5, 10.4)
    four = resample(hourly, "4h", calendar="XSHG")
    # 4h buckets are the morning and the afternoon session.
    assert list(four.index[:2]) == [pd.Timestamp("2027-01-06T01:30Z"), pd.Timestamp("2027-01-06T05:00Z")]


async def test_stored_days_are_registered_at_start(engine: Engine) -> None:
    at = datetime(2026, 11, 30, tzinfo=UTC)
    TradingDayStore(engine).replace("XSHG", [HORIZON, *JANUARY], source="akshare trade calendar", at=at)
    # No venue publishes a calendar in this process: what is stored is used as it stands.
    line = await load_trading_days(engine, {}, at + timedelta(days=1))
    assert line == "XSHG: sessions to 2027-01-08 (4 days past 2026-12-31 from akshare trade calendar)"
    assert calendars.session("XSHG", date(2027, 1, 7)) is None
    assert TradingDayStore(engine).days("XSHG") == [HORIZON, *JANUARY]


async def test_a_failed_fetch_falls_back_to_weekdays_with_a_warning(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime(2026, 11, 30, 9, tzinfo=UTC)  # 31 days before the horizon: the refresh is due
    clock = SimulatedClock(now)
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    venue = AkshareVenue(AkshareConfig(rate_per_second=1000), clock, sleep=no_wait)
    with responses.RequestsMock() as mock, caplog.at_level(logging.WARNING):
        mock.add(responses.GET, SINA_CALENDAR, status=503)
        line = await load_trading_days(engine, {"akshare": venue}, now)
        # akshare reads the body without looking at the status: a 503 is an unreadable calendar.
        assert len(mock.calls) == 1
    assert line == "XSHG: sessions to 2026-12-31 (exchange-calendars); weekdays assumed after it"
    assert "could not load XSHG trading days from akshare: akshare: the trade calendar could not be read" in (
        caplog.text
    )
    assert TradingDayStore(engine).days("XSHG") == []
    # Asked about January, the calendar answers with weekdays and says it assumed them.
    assert calendars.session("XSHG", date(2027, 1, 1)) is not None  # a holiday, traded on: hence the warning
    assert calendars.assumed_weekdays("XSHG") == [date(2027, 1, 1)]
    assert "every weekday is taken as a session" in assumption_warning()


def sina_days() -> list[date]:
    """The list Sina's file holds in these tests: exchange-calendars' XSHG sessions of 2026 (a
    known list), then January 2027 as above (New Year's Day and Thursday the 7th closed)."""
    return [s.day for s in calendars.sessions_between("XSHG", date(2026, 1, 1), HORIZON)] + JANUARY


async def test_akshare_trade_calendar_takes_over_past_the_horizon_and_is_kept_in_the_database(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # The whole path runs: the venue calls akshare's tool_trade_date_hist_sina, which fetches Sina's
    # file (served here by `responses`, encoded by tests/sina_calendar.py) and decodes it with
    # Sina's own JavaScript, as it does live.
    now = datetime(2026, 11, 30, 9, tzinfo=UTC)  # 31 days before the horizon: the fetch is due
    venue = AkshareVenue(AkshareConfig(rate_per_second=1000), SimulatedClock(now))
    days = sina_days()
    # Before: past the horizon every weekday is taken as a session, holidays included.
    assert calendars.session("XSHG", date(2027, 1, 7)) is not None
    assert calendars.assumed_weekdays("XSHG") == [date(2027, 1, 7)]

    with responses.RequestsMock() as mock:
        mock.add(responses.GET, SINA_CALENDAR, body=sina_calendar_file(days))
        line = await load_trading_days(engine, {"akshare": venue}, now)
        assert len(mock.calls) == 1
        expected = "XSHG: sessions to 2027-01-08 (4 days past 2026-12-31 from akshare trade calendar)"
        assert line == expected
        # Listed days are sessions; weekdays the list leaves out are holidays; nothing is assumed.
        assert [s.day for s in calendars.sessions_between("XSHG", date(2026, 12, 30), date(2027, 1, 8))] == [
            date(2026, 12, 30),
            HORIZON,
            *JANUARY,
        ]
        assert calendars.session("XSHG", date(2027, 1, 1)) is None  # New Year's Day, a Friday
        assert calendars.session("XSHG", date(2027, 1, 7)) is None
        assert calendars.session("XSHG", date(2027, 1, 8)) is not None
        assert calendars.next_session_day("XSHG", date(2027, 1, 6)) == date(2027, 1, 8)
        assert calendars.assumed_weekdays("XSHG") == []
        # Stored: every day of the answer (akshare adds 1992-05-04, a trading day Sina's file lacks).
        store = TradingDayStore(engine)
        assert store.days("XSHG") == [date(1992, 5, 4), *days]
        found = store.source("XSHG")
        assert found is not None and found[0] == "akshare trade calendar"

        # The next start, a day later: the stored days are registered and Sina is not asked again.
        calendars.unregister_sessions("XSHG")
        assert await load_trading_days(engine, {"akshare": venue}, now + timedelta(days=1)) == expected
        assert len(mock.calls) == 1
        assert calendars.session("XSHG", date(2027, 1, 7)) is None

    # A week on the refresh is due; Sina fails: the stored days stay in force, with a warning logged.
    with responses.RequestsMock() as mock, caplog.at_level(logging.WARNING):
        mock.add(responses.GET, SINA_CALENDAR, status=503)
        assert await load_trading_days(engine, {"akshare": venue}, now + timedelta(days=8)) == expected
        assert len(mock.calls) == 1
    assert "could not load XSHG trading days from akshare" in caplog.text
    assert calendars.session("XSHG", date(2027, 1, 7)) is None and calendars.assumed_weekdays("XSHG") == []
    assert TradingDayStore(engine).days("XSHG") == [date(1992, 5, 4), *days]


async def test_a_garbled_calendar_keeps_the_weekday_fallback(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    now = datetime(2026, 11, 30, 9, tzinfo=UTC)
    venue = AkshareVenue(AkshareConfig(rate_per_second=1000), SimulatedClock(now))
    valid = sina_calendar_file(sina_days())
    with responses.RequestsMock() as mock, caplog.at_level(logging.WARNING):
        mock.add(responses.GET, SINA_CALENDAR, body=valid.replace('="', '="!!'))  # not Sina's alphabet
        line = await load_trading_days(engine, {"akshare": venue}, now)
        assert len(mock.calls) == 1  # a decoding failure is not retried
    assert line == "XSHG: sessions to 2026-12-31 (exchange-calendars); weekdays assumed after it"
    assert "could not load XSHG trading days from akshare: akshare: the trade calendar could not be read" in (
        caplog.text
    )
    assert TradingDayStore(engine).days("XSHG") == []
    assert calendars.session("XSHG", date(2027, 1, 7)) is not None  # a weekday, assumed
    assert calendars.assumed_weekdays("XSHG") == [date(2027, 1, 7)]
    assert "every weekday is taken as a session" in assumption_warning()


async def test_the_chat_warns_once_a_day_when_weekdays_are_assumed(tmp_path: Path) -> None:
    from bot.core import Caller, CommandCore
    from bot.services import open_services
    from bot.settings import load_settings
    from storage.users import Role

    trader = Caller("telegram", 1002, "tom")
    clock = SimulatedClock(shanghai(date(2027, 1, 4), 10))
    settings = load_settings(data_dir=tmp_path / "data", market_data="replay")
    async with open_services(settings, clock=clock) as services:
        services.users.grant(trader.platform, trader.user_id, Role.TRADER, at=clock.now(), display_name="tom")
        core = CommandCore(services)
        first = await core.handle(trader, "/signal 600519.SH")
        assert "every weekday is taken as a session" in first.text, first.text
        again = await core.handle(trader, "/signal 600519.SH")
        assert "every weekday is taken as a session" not in again.text
        clock.advance(timedelta(days=1))
        next_day = await core.handle(trader, "/signal 600519.SH")
        assert "every weekday is taken as a session" in next_day.text
