"""The interfaces every venue adapter implements. The domain (tools, agent, scheduler) talks to
these and never imports an adapter module."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

import pandas as pd

from venues.errors import VenueError
from venues.models import Account, Fill, Instrument, Order, OrderRequest, OrderStatus, Position, Quote
from venues.timeframes import BarArrays


@runtime_checkable
class MarketData(Protocol):
    name: str

    async def instruments(self) -> list[Instrument]: ...

    async def instrument(self, symbol: str) -> Instrument:
        """The instrument, or UnknownSymbolError naming the valid symbols."""
        ...

    async def snapshot(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """Latest quote of many symbols in one batched call where the venue has one."""
        ...

    async def bars(
        self,
        symbol: str,
        timeframe: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Final bars (close_time <= now) of ``symbol`` in ``[start, end]`` by open time, the last
        ``limit`` of them when given. The frame layout is described in venues.timeframes."""
        ...


@dataclass(frozen=True, slots=True)
class BarsBatch:
    """The answer of a batch bars request: every symbol asked is in exactly one of ``bars`` (its
    final bars, the layout of venues.timeframes; possibly empty) and ``errors`` (why it has none:
    an unknown symbol, a timeframe the venue cannot serve, the venue not answering)."""

    bars: dict[str, pd.DataFrame] = field(default_factory=dict)
    errors: dict[str, VenueError] = field(default_factory=dict)


@runtime_checkable
class BatchMarketData(MarketData, Protocol):
    """A venue that serves bars of many symbols per request (Alpaca's multi-symbol bars). Optional:
    :func:`bars_many` loops over ``bars`` for a venue without it."""

    async def bars_many(
        self,
        symbols: Sequence[str],
        timeframe: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> BarsBatch:
        """``bars(symbol, timeframe, start=, end=, limit=)`` of each symbol, in as few requests as the
        venue allows; a symbol's failure is reported in ``errors``, never raised for the batch."""
        ...


async def bars_many(
    market: MarketData,
    symbols: Sequence[str],
    timeframe: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
    concurrency: int = 8,
) -> BarsBatch:
    """Bars of each of ``symbols`` (duplicates asked once), through the venue's own batch method
    when it has one, else ``market.bars`` per symbol, ``concurrency`` at a time. A VenueError of
    one symbol lands in ``errors``; any other exception propagates (the other requests cancelled)."""
    wanted = list(dict.fromkeys(symbols))
    if isinstance(market, BatchMarketData):
        return await market.bars_many(wanted, timeframe, start=start, end=end, limit=limit)
    gate = asyncio.Semaphore(concurrency)

    async def one(symbol: str) -> pd.DataFrame | VenueError:
        async with gate:
            try:
                return await market.bars(symbol, timeframe, start=start, end=end, limit=limit)
            except VenueError as exc:
                return exc

    tasks = [asyncio.ensure_future(one(symbol)) for symbol in wanted]
    try:
        answers = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    batch = BarsBatch()
    for symbol, answer in zip(wanted, answers, strict=True):
        if isinstance(answer, VenueError):
            batch.errors[symbol] = answer
        else:
            batch.bars[symbol] = answer
    return batch


async def bar_arrays(
    market: MarketData,
    symbol: str,
    timeframe: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> BarArrays:
    """``market.bars(...)`` as :class:`~venues.timeframes.BarArrays`: straight from the venue's
    own arrays when it keeps its bars as arrays (a recorded venue's ``bar_arrays``, no DataFrame
    built), else converted from the frame ``bars`` returns. Same bars, same cut at the clock."""
    own = getattr(market, "bar_arrays", None)
    if own is not None:
        arrays: BarArrays = await own(symbol, timeframe, start=start, end=end, limit=limit)
        return arrays
    return BarArrays.of(await market.bars(symbol, timeframe, start=start, end=end, limit=limit))


async def last_trades(market: MarketData, symbols: Sequence[str]) -> dict[str, float]:
    """``{symbol: quote.last}`` of ``market.snapshot(symbols)``: straight from a recorded venue's
    arrays when it has ``last_trades`` (no Quote built), else read from the snapshot. Same
    prices; symbols without a quote are left out."""
    own = getattr(market, "last_trades", None)
    if own is not None:
        prices: dict[str, float] = own(symbols)
        return prices
    return {symbol: quote.last for symbol, quote in (await market.snapshot(symbols)).items()}


@runtime_checkable
class Broker(Protocol):
    async def place(self, request: OrderRequest) -> Order:
        """Place an order. Idempotent by client_order_id: the same id twice places one order."""
        ...

    async def cancel(self, client_order_id: str) -> Order: ...

    async def amend(
        self,
        client_order_id: str,
        *,
        stop_price: Decimal | None = None,
        trail: Decimal | None = None,
        limit_price: Decimal | None = None,
    ) -> Order:
        """Move a pending stop order (``stop_price``), make it trail by ``trail``, or move a pending
        limit order (``limit_price``: a take-profit); VenueError for any other order or price."""
        ...

    async def process(self) -> list[Fill]:
        """Bring orders up to the clock's now (fills, expiries); returns the fills that happened."""
        ...

    async def orders(self, status: OrderStatus | None = None) -> list[Order]: ...

    async def order(self, client_order_id: str) -> Order | None:
        """The order with this client order id on this venue, if any."""
        ...

    async def fills(self, client_order_id: str | None = None) -> list[Fill]: ...

    async def positions(self, *, include_closed: bool = False) -> list[Position]:
        """Open positions; with ``include_closed`` also the closed ones, which carry realized P&L."""
        ...

    async def account(self, currency: str | None = None) -> Account:
        """Cash and positions in ``currency`` (default: the venue's main currency)."""
        ...


@runtime_checkable
class Venue(MarketData, Protocol):
    """Market data plus an order API served by a broker (the venue's paper API or PaperBroker)."""

    broker: Broker | None

    def broker_required(self) -> Broker:
        """The attached broker, or VenueError saying the venue cannot take orders."""
        ...

    async def place_order(self, request: OrderRequest) -> Order: ...

    async def cancel_order(self, client_order_id: str) -> Order: ...

    async def list_orders(self, status: OrderStatus | None = None) -> list[Order]: ...


class BrokeredVenue:
    """Mixin giving a market-data class the Venue order API by delegating to ``self.broker``, which
    the application attaches (the venue's own paper API, or a PaperBroker)."""

    name: str
    broker: Broker | None = None

    def broker_required(self) -> Broker:
        if self.broker is None:
            raise VenueError(f"venue {self.name!r} has no broker attached, so it cannot take orders")
        return self.broker

    async def place_order(self, request: OrderRequest) -> Order:
        return await self.broker_required().place(request)

    async def cancel_order(self, client_order_id: str) -> Order:
        return await self.broker_required().cancel(client_order_id)

    async def list_orders(self, status: OrderStatus | None = None) -> list[Order]:
        return await self.broker_required().orders(status)


@runtime_checkable
class LiveVenue(Venue, Protocol):
    """A real venue (venues/adapters): it holds network clients and can say what answered."""

    async def health(self) -> str:
        """One line for `tradeops doctor`: what answered (markets loaded, a quote, the paper/sandbox
        account where orders go to the venue). Raises VenueError worded with the fix; never shows a
        secret."""
        ...

    async def aclose(self) -> None:
        """Close the network clients (sessions, connection pools)."""
        ...
