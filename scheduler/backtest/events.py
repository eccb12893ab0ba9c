"""Event to event: a backtest's clock jumps over the fires at which nothing can happen.

A fire can change something only when a candidate bar has just closed (the policy may act), when
an order is pending (it may fill), or when an open position accrues a carry (a short's funding or
borrow). Between such fires the ledger stands still, and each passed-over fire's equity point is
the held positions marked to that fire's last price, the very value the fire's tick would have
snapshot (:func:`venues.paper.position_value`, on :meth:`RecordedBarsVenue.last_prices`). So the
engine's cost grows with events, not with bars, through the same clock, venue, broker and ledger.

Point in time: :func:`bars_ahead` is the one read past the clock's now. It feeds only *when* the
next candidate bar closes (from causal indicators computed once over the window), never a price,
a size or a decision: the policy still acts at that fire on what the venue serves, cut at now, and
the passed-over fires' prices are read only once the clock has passed them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
import pandas as pd

from storage.plans import PlanStore
from venues.clock import Clock, ensure_utc
from venues.models import Account, OrderStatus
from venues.paper import PaperBroker, position_value
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


@dataclass(frozen=True)
class HeldSpan:
    """Fires passed over while the account held still: their equity points, written once the
    clock has passed them."""

    fires: list[datetime]
    account: Account


class EventHorizon:
    """Where the next event of a backtest lies, and the equity of the fires passed over on the way."""

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

    async def next_event(self, until: datetime) -> datetime:
        """The earliest moment after now at which a fire may change something; ``until`` when
        nothing can before it. Now itself while an order is pending or a carry (funding, borrow) accrues."""
        now = self.clock.now()
        if await self.broker.orders(OrderStatus.PENDING):
            return now
        for position in await self.broker.positions():
            if position.qty != 0:
                funding, borrow = self._carry(position.symbol)
                if funding or (borrow and position.qty < 0):
                    return now
        candidate = self.next_candidate(now)
        return until if candidate is None else min(candidate, until)

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

    async def hold(self, fires: list[datetime]) -> HeldSpan | None:
        """The account as it stands for the passed-over ``fires`` (nothing changes it until the next event)."""
        if not fires:
            return None
        self.passed_over += len(fires)
        return HeldSpan(fires, await self.broker.account(self.currency))

    async def record(self, span: HeldSpan) -> None:
        """Write the equity point of each passed-over fire: cash + the held positions at that
        fire's last price (the entry cost when none is known), as the fire's own tick would."""
        account = span.account
        fires = span.fires
        cash = account.cash
        equity: list[Decimal] | None = None
        for position in account.positions:
            instrument = self.venue.instrument_of(position.symbol)
            # Plain floats: numpy scalars cost more per point than the sum itself.
            marks = self.venue.last_prices(position.symbol, fires).tolist()
            if equity is None and instrument.margin_rate is None and not any(map(math.isnan, marks)):
                # The usual case, a first position unmargined with every mark known: qty x mark inlined.
                qty = position.qty
                equity = [cash + qty * Decimal(text) for text in map(repr, marks)]
                continue
            if equity is None:
                equity = [cash] * len(fires)
            for i, mark in enumerate(marks):
                price = position.avg_cost if math.isnan(mark) else Decimal(repr(mark))
                equity[i] += position_value(position, instrument, price)
        if equity is None:
            equity = [cash] * len(fires)
        self.plans.snapshot_equity_many(
            self.venue_name, self.currency, [(at, cash, value) for at, value in zip(fires, equity, strict=True)]
        )
