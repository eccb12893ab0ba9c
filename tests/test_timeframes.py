"""Timeframes and resampling: buckets, close times and the session-aware daily bar."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from tests.support import bars_frame
from venues.clock import SimulatedClock
from venues.errors import UnknownTimeframeError
from venues.replay import ReplayVenue
from venues.timeframes import parse_timeframe, resample


def test_unknown_timeframe_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownTimeframeError, match=r"unknown timeframe '7m'; valid timeframes: 1m, 5m, 15m"):
        parse_timeframe("7m")


def test_hourly_buckets_and_partial_bucket_dropped() -> None:
    bars = bars_frame(
        [
            ("2021-07-05T10:00Z", 10, 12, 9, 11, 1),
            ("2021-07-05T10:30Z", 11, 13, 10, 12, 2),
            ("2021-07-05T11:00Z", 12, 12, 8, 9, 3),
        ],
        "30m",
    )
    hourly = resample(bars, "1h")
    assert list(hourly.index) == [pd.Timestamp("2021-07-05T10:00Z"), pd.Timestamp("2021-07-05T11:00Z")]
    first = hourly.iloc[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (10, 13, 9, 12, 3)
    assert hourly["close_time"].iloc[1] == pd.Timestamp("2021-07-05T12:00Z")
    # At 11:30 the 11:00 bucket holds one of its two bars: it is not final, so it is not returned.
    assert len(resample(bars, "1h", complete_at=pd.Timestamp("2021-07-05T11:30Z"))) == 1


def test_resample_needs_close_times() -> None:
    frame = bars_frame([("2021-07-05T10:00Z", 1, 1, 1, 1, 1)], "1h").drop(columns="close_time")
    with pytest.raises(ValueError, match="close_time"):
        resample(frame, "4h")


async def test_a_share_daily_bar_is_the_session_final_at_15_00_shanghai() -> None:
    clock = SimulatedClock(datetime(2021, 7, 6, 6, 59, tzinfo=UTC))
    venue = ReplayVenue("cn", clock)
    before_close = await venue.bars("510300.SH", "1d", limit=1)
    assert before_close.index[-1] == pd.Timestamp("2021-07-05T01:30Z")  # today's bar is still forming
    clock.advance_to(datetime(2021, 7, 6, 7, 0, tzinfo=UTC))
    daily = await venue.bars("510300.SH", "1d", limit=1)
    five_min = await venue.bars("510300.SH", "5m", start=datetime(2021, 7, 6, tzinfo=UTC))
    assert daily.index[-1] == pd.Timestamp("2021-07-06T01:30Z")
    assert daily["close_time"].iloc[-1] == pd.Timestamp("2021-07-06T07:00Z")
    assert len(five_min) == 48  # the whole day, morning and afternoon sessions
    assert daily["open"].iloc[-1] == five_min["open"].iloc[0]
    assert daily["close"].iloc[-1] == five_min["close"].iloc[-1]
    assert daily["volume"].iloc[-1] == pytest.approx(five_min["volume"].sum())


async def test_us_daily_bar_ignores_pre_and_post_market() -> None:
    venue = ReplayVenue("us", SimulatedClock(datetime(2021, 7, 7, tzinfo=UTC)))
    hourly = await venue.bars("AMZN", "1h", start=datetime(2021, 7, 6, tzinfo=UTC))
    daily = await venue.bars("AMZN", "1d", limit=1)
    regular = hourly[
        (hourly["close_time"] > pd.Timestamp("2021-07-06T13:30Z")) & (hourly.index < pd.Timestamp("2021-07-06T20:00Z"))
    ]
    assert hourly.index[0] < pd.Timestamp("2021-07-06T13:00Z")  # the data has pre-market bars
    assert daily.index[-1] == pd.Timestamp("2021-07-06T13:30Z")
    assert daily["close_time"].iloc[-1] == pd.Timestamp("2021-07-06T20:00Z")
    assert daily["high"].iloc[-1] == regular["high"].max()
    assert daily["volume"].iloc[-1] == pytest.approx(regular["volume"].sum())


async def test_weekly_bar_is_final_at_the_weeks_last_close() -> None:
    clock = SimulatedClock(datetime(2021, 7, 9, 6, 59, tzinfo=UTC))  # Friday, a minute before the close
    venue = ReplayVenue("cn", clock)
    assert (await venue.bars("600519.SH", "1w", limit=1)).index[-1] == pd.Timestamp("2021-06-28T01:30Z")
    clock.advance_to(datetime(2021, 7, 9, 7, 0, tzinfo=UTC))
    week = await venue.bars("600519.SH", "1w", limit=1)
    days = await venue.bars("600519.SH", "1d", start=datetime(2021, 7, 5, tzinfo=UTC))
    assert week.index[-1] == pd.Timestamp("2021-07-05T01:30Z")  # Monday's session open
    assert week["close_time"].iloc[-1] == pd.Timestamp("2021-07-09T07:00Z")
    assert len(days) == 5
    assert week["high"].iloc[-1] == days["high"].max() and week["close"].iloc[-1] == days["close"].iloc[-1]


async def test_us_hourly_bars_start_at_the_open_and_skip_extended_hours() -> None:
    venue = ReplayVenue("us", SimulatedClock(datetime(2021, 7, 8, tzinfo=UTC)))
    hourly = await venue.bars("SPY", "1h", start=datetime(2021, 7, 7, tzinfo=UTC))
    minutes = await venue.bars("SPY", "1m", start=datetime(2021, 7, 7, tzinfo=UTC))
    assert [t.strftime("%H:%M") for t in hourly.index] == [
        "13:30",
        "14:30",
        "15:30",
        "16:30",
        "17:30",
        "18:30",
        "19:30",
    ]
    assert hourly["close_time"].iloc[-1] == pd.Timestamp("2021-07-07T20:00Z")  # a half hour cut at the close
    regular = minutes[
        (minutes.index >= pd.Timestamp("2021-07-07T13:30Z")) & (minutes.index < pd.Timestamp("2021-07-07T20:00Z"))
    ]
    assert minutes.index[0] < pd.Timestamp("2021-07-07T13:30Z")  # the file has pre-market minutes
    assert hourly["volume"].sum() == pytest.approx(regular["volume"].sum())
