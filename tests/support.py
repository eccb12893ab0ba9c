"""Test doubles that stand where a user's real component would be only when the test needs numbers
it can compute by hand: a market serving a few hand-written bars under a simulated clock."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from storage.tables import OrderRow
from venues.errors import UnknownSymbolError
from venues.models import Instrument, Quote
from venues.timeframes import BAR_COLUMNS, parse_timeframe, resample


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
def hermetic_env(directory: Path) -> Iterator[None]:
    """No TRADEOPS_* variable (but the test database's) or ./.env steers the block: run in
    ``directory``; the CLI's log handlers are put back afterwards."""
    import os

    import pytest

    with restored_logging(), pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("TRADEOPS_") and name != "TRADEOPS_TEST_POSTGRES_URL":
                patch.delenv(name)
        patch.chdir(directory)
        yield


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
