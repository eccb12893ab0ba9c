"""Test doubles that stand where a user's real component would be only when the test needs numbers
it can compute by hand: a market serving a few hand-written bars under a simulated clock."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from bot.command_types import Caller
from storage.roles import Role
from storage.tables import Approval, OrderRow, TradePlan
from venues.errors import UnknownSymbolError
from venues.models import Instrument, Quote
from venues.timeframes import BAR_COLUMNS, parse_timeframe, resample

# The first moment of the shipped data at which ETH/USDT proposes a BUY that passes the risk gate
# (the demo's first signal): its approval window runs to 06:15:05, so it stays pending here.
SIGNAL_AT = datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC)

# The command core's callers (the conftest ``services`` fixture grants them their roles).
VIEWER = Caller("telegram", 1001, "vera")
TRADER = Caller("telegram", 1002, "tom")
ADMIN = Caller("discord", 1003, "ada")
STRANGER = Caller("telegram", 4242, "eve")
CALLERS = {Role.VIEWER: VIEWER, Role.TRADER: TRADER, Role.ADMIN: ADMIN}


def bars_frame(rows: Sequence[tuple[str, float, float, float, float, float]], timeframe: str) -> pd.DataFrame:
    """Rows of (open time ISO, open, high, low, close, volume)."""
    index = pd.DatetimeIndex([pd.Timestamp(r[0]) for r in rows], name="ts").tz_convert("UTC")
    frame = pd.DataFrame([r[1:] for r in rows], index=index, columns=["open", "high", "low", "close", "volume"])
    frame["close_time"] = frame.index + parse_timeframe(timeframe).delta
    return frame[BAR_COLUMNS]


@asynccontextmanager
async def local_http_server(app: Any) -> AsyncIterator[int]:
    """An aiohttp ``web.Application`` served on 127.0.0.1 at a free port (yielded), for a fake of a
    chat platform's API; stopped on exit."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


STEERING = ("TRADEOPS_", "OPENAI_", "APCA_")  # the prefixes of the variables the settings read
CHILD_TIMEOUT = 60  # seconds a test waits for a child process's next line or its end


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child process, without a TRADEOPS_* or OPENAI_* variable
    that could steer it, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STEERING)}
    env.update(extra)
    return env


async def release_together(children: Sequence[asyncio.subprocess.Process]) -> None:
    """Wait until every child has printed "ready" (wired and waiting), then write "go" to them all,
    so that what they do next races, not their start-ups."""
    for child in children:
        assert child.stdout is not None
        ready = await asyncio.wait_for(child.stdout.readline(), CHILD_TIMEOUT)
        assert ready.strip() == b"ready", ready
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
    await asyncio.gather(*(c.stdin.drain() for c in children if c.stdin is not None))


async def wait_for_go() -> None:
    """The child's side of :func:`release_together`."""
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)


async def child_answer(process: asyncio.subprocess.Process, *, allowed: Sequence[int] = (0,)) -> tuple[int, Any]:
    """Wait for a child: (its exit status, the JSON of the last line it printed, or {} when it
    exited otherwise than with 0). An exit status outside ``allowed``, or a 0 without a line, fails
    with the end of its stderr."""
    out, err = await asyncio.wait_for(process.communicate(), CHILD_TIMEOUT)
    lines = out.decode().strip().splitlines()
    assert process.returncode is not None
    if process.returncode not in allowed or (process.returncode == 0 and not lines):
        raise AssertionError(f"child failed ({process.returncode}):\n{err.decode()[-3000:]}")
    return process.returncode, json.loads(lines[-1]) if lines and process.returncode == 0 else {}


class Sleeps:
    """A stand-in for ``asyncio.sleep`` (a guard's or a client's): records each wait in ``waits``
    and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server that must be told its port before it starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def entry_orders(engine: Engine, signal_id: str) -> list[OrderRow]:
    """The entry orders of a signal (its bracket of exits left out)."""
    with Session(engine) as session:
        query = select(OrderRow).where(OrderRow.signal_id == signal_id, col(OrderRow.parent).is_(None))
        return list(session.exec(query).all())


def plan_rows(engine: Engine, signal_id: str) -> list[TradePlan]:
    """Every trade plan stored for a signal (there should be one at most)."""
    with Session(engine) as session:
        return list(session.exec(select(TradePlan).where(TradePlan.signal_id == signal_id)).all())


def approval_rows(engine: Engine, signal_id: str) -> list[Approval]:
    """Every approval row stored for a signal (the first answer's, and only it)."""
    with Session(engine) as session:
        return list(session.exec(select(Approval).where(Approval.signal_id == signal_id)).all())


class FrameMarket:
    """MarketData over in-memory bar frames, honouring the clock like the replay venue does."""

    def __init__(self, name: str, clock, instruments: Sequence[Instrument], frames: dict[str, pd.DataFrame]) -> None:
        self.name = name
        self._clock = clock
        self._instruments = {i.symbol: i for i in instruments}
        self._frames = frames

    async def instruments(self) -> list[Instrument]:
        return list(self._instruments.values())

    async def instrument(self, symbol: str) -> Instrument:
        try:
            return self._instruments[symbol]
        except KeyError:
            raise UnknownSymbolError(symbol, self.name, self._instruments) from None

    async def snapshot(self, symbols: Sequence[str]) -> dict[str, Quote]:
        out = {}
        for symbol in symbols:
            bars = await self.bars(symbol, self._instruments[symbol].timeframe, limit=1)
            if not bars.empty:
                out[symbol] = Quote(symbol=symbol, ts=bars["close_time"].iloc[-1], last=float(bars["close"].iloc[-1]))
        return out

    async def bars(
        self,
        symbol: str,
        timeframe: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        instrument = await self.instrument(symbol)
        now = pd.Timestamp(self._clock.now())
        frame = self._frames[symbol]
        frame = frame[frame["close_time"] <= now]
        if timeframe != instrument.timeframe:
            frame = resample(frame, timeframe, complete_at=now)
        if start is not None:
            frame = frame[frame.index >= pd.Timestamp(start)]
        if end is not None:
            frame = frame[frame.index <= pd.Timestamp(end)]
        return frame.iloc[-limit:] if limit else frame


def replay_instrument(symbol: str, **changes: Any) -> Instrument:
    """The shipped replay catalog's instrument for ``symbol`` (its real lot, tick, fees, calendar
    and rules), with ``changes`` applied: the one definition tests share."""
    from venues.replay import MARKETS

    for market in MARKETS.values():
        for series in market.series:
            if series.instrument.symbol == symbol:
                return series.instrument.model_copy(update=changes)
    raise KeyError(f"{symbol} is not in the replay catalog")


@contextmanager
def restored_logging() -> Iterator[None]:
    """The CLI replaces the root logger's handlers (one writes into the data dir): put them back,
    closing the ones it opened."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
