"""Event to event: a backtest's clock jumps over the fires at which nothing can happen.

A fire can change something only when a candidate bar has just closed (the policy may act), when
an order is pending (it may fill), or when an open position accrues a carry (a short's funding or
borrow). Between such fires the ledger stands still, and each passed-over fire's equity point is
the held positions marked to that fire's last price, the very value the fire's tick would have
snapshot (:func:`venues.paper.position_value`, on :meth:`RecordedBarsVenue.last_prices`). So the
engine's cost grows with events, not with bars, through the same clock, venue, broker and ledger.

One pending order is not worth a stop of its own: a lone market entry that fills at a bar's open.
The broker matches every bar since an order's placement, so the next stop fills it on the same bar
at the same price and time; the fires passed over meanwhile hold the account without it up to the
close of its fill bar (where a stop would have booked it) and with it from there on.

Point in time: :func:`bars_ahead` is the one read past the clock's now. It feeds only *when* the
next candidate bar closes (from causal indicators computed once over the window), never a price,
a size or a decision: the policy still acts at that fire on what the venue serves, cut at now, and
the passed-over fires' prices are read only once the clock has passed them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import chain, repeat
from typing import NamedTuple

import numpy as np
import pandas as pd

from scheduler.triggers import FireGrid
from storage.plans import PlanStore
from venues.clock import Clock, ensure_utc, epoch_us
from venues.models import Account, AssetClass, Order, OrderStatus, OrderType, Position, Side
from venues.paper import PaperBroker
from venues.paper_config import FillAt
from venues.recorded import RecordedBarsVenue
from venues.timeframes import parse_timeframe

NextCandidate = Callable[[datetime], datetime | None]
"""The close of the first candidate bar closing after a moment, or None when none is left."""


def bars_ahead(venue: RecordedBarsVenue, symbol: str, timeframe: str, end: datetime) -> pd.DataFrame:
    """Every bar of ``symbol`` on ``timeframe`` closing by ``end`` (the window's end), whatever the
    clock says: for causal indicators computed once, to find candidate bars. Nothing else may use it."""
    frame = venue.series(symbol).frame(parse_timeframe(timeframe))
    stop = int(np.searchsorted(frame.close_us, int(pd.Timestamp(ensure_utc(end)).value // 1000), side="right"))
    return frame.bars.iloc[:stop]


class EquityColumns(NamedTuple):
    """Equity points as columns, in time order: a year of hours is thousands of points.
    ``times_us``: int64 microseconds since the epoch (UTC); ``values``: float64 equity; ``cash``:
    the ledger's cash at each point (empty unless asked for: only a kept database stores it)."""

    times_us: np.ndarray
    values: np.ndarray
    cash: list[Decimal]

    @classmethod
    def empty(cls) -> EquityColumns:
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64), [])


_ONE_US = timedelta(microseconds=1)


def fire_epochs(parts: Sequence[Sequence[datetime]]) -> np.ndarray:
    """The fire times of ``parts`` (each in time order, one after the other) as one int64 array of
    microseconds since the epoch: a :class:`FireGrid` becomes a range without a datetime per fire."""
    starts: list[int] = []
    steps: list[int] = []
    lengths: list[int] = []
    for fires in parts:
        if isinstance(fires, FireGrid):
            if fires.size:
                starts.append(epoch_us(fires.first))
                steps.append(fires.every // _ONE_US)
                lengths.append(fires.size)
        else:
            starts.extend(map(epoch_us, fires))
            steps.extend(repeat(0, len(fires)))
            lengths.extend(repeat(1, len(fires)))
    if not lengths:
        return np.empty(0, dtype=np.int64)
    counts = np.array(lengths, dtype=np.int64)
    offsets = np.cumsum(counts) - counts  # where each part begins in the result
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(offsets, counts)
    first, step = np.array(starts, dtype=np.int64), np.array(steps, dtype=np.int64)
    return np.repeat(first, counts) + within * np.repeat(step, counts)


@dataclass(frozen=True)
class HeldSpan:
    """Fires passed over after a stop: the account as that stop left it and, when a market entry
    was pending there, its id: the entry fills inside the span (at the next bar's open), so the
    fires from the close of its fill bar on hold the account as the next stop finds it."""

    fires: Sequence[datetime]
    account: Account
    awaiting_fill: str | None = None


class EventHorizon:
    """Where the next event of a backtest lies, and the equity of the fires passed over on the way.

    The engine calls :meth:`stopped` after every fire it stops at (and after the last tick), then
    :meth:`next_event` and, when that lies beyond the next fire, :meth:`hold` with the fires it
    passes over. A pending market entry is not an event by itself when it is the only pending
    order, fills at a bar's open (not at a quote), never expires (a 24/7 instrument) and opens a
    position with no carry: the next stop's matching fills it on the same bar, at the same price
    and time, as a stop at its fill fire would."""

    def __init__(
        self,
        *,
        clock: Clock,
        venue: RecordedBarsVenue,
        broker: PaperBroker,
        plans: PlanStore,
        venue_name: str,
        currency: str,
        next_candidate: NextCandidate,
    ) -> None:
        self.clock = clock
        self.venue = venue
        self.broker = broker
        self.plans = plans
        self.venue_name = venue_name
        self.currency = currency
        self.next_candidate = next_candidate
        self.passed_over = 0
        self._carries: dict[str, tuple[bool, bool]] = {}  # symbol -> (funding accrues, a short pays borrow)
        self._account: Account | None = None  # as the last stop left it
        self._awaiting_fill: str | None = None  # the market entry next_event found pending, if any
        self._span: HeldSpan | None = None  # passed over since the last stop
        self._held: list[tuple[Sequence[datetime], Account]] = []  # fires passed over and the account each holds

    async def stopped(
        self, at: datetime | None = None, tick: Account | None = None, *, tick_current: bool = False
    ) -> None:
        """After a stop: note the account as it stands, and the account each fire passed over since
        the stop before held (the clock has passed them: their prices are known). ``at`` and
        ``tick``: the stop's fire and the account its tick read (after its fills, before its
        orders), whose equity point :meth:`equity` values with the others; ``tick_current``: that
        account still holds the cash and positions after the fire's orders (none filled), so it
        need not be read again."""
        self._account = tick if tick is not None and tick_current else await self.broker.account(self.currency)
        span, self._span = self._span, None
        if span is not None:
            await self._record(span, self._account)
        if at is not None and tick is not None:
            self._held.append(([at], tick))

    async def next_event(self, until: datetime) -> datetime:
        """The earliest moment after now at which a fire may change something; ``until`` when
        nothing can before it. Now itself while an order that is not a lone market entry is
        pending, or a carry (funding, borrow) accrues."""
        now = self.clock.now()
        self._awaiting_fill = None
        pending = await self.broker.orders(OrderStatus.PENDING)
        if pending:
            if len(pending) > 1 or not self._fills_at_next_open(pending[0]):
                return now
            self._awaiting_fill = pending[0].client_order_id
        positions = self._account.positions if self._account is not None else await self.broker.positions()
        for position in positions:
            if position.qty != 0:
                funding, borrow = self._carry(position.symbol)
                if funding or (borrow and position.qty < 0):
                    return now
        candidate = self.next_candidate(now)
        return until if candidate is None else min(candidate, until)

    def _fills_at_next_open(self, order: Order) -> bool:
        """A market entry on a 24/7 instrument, filled at a bar's open, whose position accrues no carry."""
        if order.type is not OrderType.MARKET or order.parent is not None:
            return False
        if self.broker.config.fill_at is not FillAt.NEXT_OPEN:
            return False
        if self.venue.instrument_of(order.symbol).asset_class is not AssetClass.CRYPTO:
            return False  # an exchange's day order may expire at its session's close
        funding, borrow = self._carry(order.symbol)
        return not funding and not (borrow and order.side is Side.SELL)

    def _carry(self, symbol: str) -> tuple[bool, bool]:
        """Whether a position in ``symbol`` accrues funding (either side) and whether a short pays
        borrow: the instrument's terms, which a run does not change."""
        carry = self._carries.get(symbol)
        if carry is None:
            instrument = self.venue.instrument_of(symbol)
            terms = instrument.short
            carry = self._carries[symbol] = (
                instrument.funding is not None and instrument.funding.rate_8h != 0,
                terms is not None and terms.borrow_rate_year > 0,
            )
        return carry

    def hold(self, fires: Sequence[datetime]) -> None:
        """Pass over ``fires`` (after :meth:`next_event`): nothing but the pending market entry, if
        any, changes the account until the next stop."""
        if not fires:
            return
        assert self._account is not None, "stopped() comes first"
        self.passed_over += len(fires)
        self._span = HeldSpan(fires, self._account, self._awaiting_fill)

    async def _record(self, span: HeldSpan, now: Account) -> None:
        """Note the account each passed-over fire holds: with a market entry awaiting its fill, the
        fires from its fill bar's close on (where a stop would have booked it) hold the account
        ``now``, the others the account before. :meth:`equity` values them."""
        fires = span.fires
        split = len(fires)
        if span.awaiting_fill is not None:
            order = await self.broker.order(span.awaiting_fill)
            if order is not None and order.filled_at is not None:
                # A market entry fills at its bar's open; a 24/7 bar closes one bar length later.
                bar_length = parse_timeframe(self.venue.instrument_of(order.symbol).timeframe).delta
                filled_bar_close = order.filled_at + bar_length
                if isinstance(fires, FireGrid):
                    split = fires.bisect_left(filled_bar_close)
                else:
                    split = bisect_left(fires, filled_bar_close)
        if split:
            self._held.append((fires if split == len(fires) else fires[:split], span.account))
        if split < len(fires):
            self._held.append((fires[split:] if split else fires, now))

    def equity(self, *, with_cash: bool = False) -> EquityColumns:
        """The fire, equity (and with ``with_cash`` the cash) of every fire noted so far (after the
        last :meth:`stopped`): those passed over and the stops given with their tick's account, in
        time order. Cash + the held positions at that fire's last price (the entry cost when none
        is known), as the paper account values them (:func:`venues.paper.position_value`), in
        floats, as the equity curve is reported: a year of hours is thousands of points, and a
        Decimal per point cost more than the rest of the run's bookkeeping. One price lookup per
        symbol for the whole run; no datetime made per fire."""
        held, self._held = self._held, []
        lengths = [len(fires) for fires, _ in held]
        times_us = fire_epochs([fires for fires, _ in held])
        values = np.repeat([float(account.cash) for _, account in held], lengths)
        # Per symbol: the parts holding it, its quantity and entry cost there, one price lookup.
        by_symbol: dict[str, list[tuple[int, Position]]] = {}
        for i, (_, account) in enumerate(held):
            for position in account.positions:
                by_symbol.setdefault(position.symbol, []).append((i, position))
        for symbol, holding in by_symbol.items():
            instrument = self.venue.instrument_of(symbol)
            mask = np.repeat(np.isin(np.arange(len(held)), [i for i, _ in holding]), lengths)
            counts = [lengths[i] for i, _ in holding]
            qty = np.repeat([float(p.qty) for _, p in holding], counts)
            cost = np.repeat([float(p.avg_cost) for _, p in holding], counts)
            prices = self.venue.last_prices_us(symbol, times_us[mask])
            prices = np.where(np.isnan(prices), cost, prices)
            if instrument.margin_rate is not None:  # a margined future: its unrealised P&L
                values[mask] += qty * (prices - cost) * float(instrument.multiplier)
            else:
                values[mask] += qty * prices
        cash = []
        if with_cash:
            cash = list(chain.from_iterable(repeat(account.cash, len(fires)) for fires, account in held))
        return EquityColumns(times_us, values.astype(np.float64), cash)
