"""The signal graph and its runner, end to end: real recorded bars (the replay venue), real paper
broker and ledger, a real database (SQLite, and PostgreSQL when TRADEOPS_TEST_POSTGRES_URL is set)
and LangGraph's own checkpointers on it. Each test states a guarantee of agent/graph.py or
agent/runner.py and checks it where it lands: the signal row and its history, the approvals, the
orders table, the trade plans, the decision traces, the checkpointed thread.

Real setups used (times UTC):
- ETH/USDT at 2021-07-06 06:00:05: the 1h screen finds a long setup and the rule policy proposes a
  BUY at 2318.91, the close of the bar that closed at 06:00. The next bars close at 07:00 at
  2318.09 (4 bps away) and at 08:00 at 2336.18 (74 bps away, beyond the default 50 bps limit).
- 510300.SH (XSHG: 01:30-03:30 and 05:00-07:00 UTC, i.e. 09:30-11:30 and 13:00-15:00 Shanghai) at
  2021-07-22 03:25 = 11:25 Shanghai, with a test policy that buys whatever it is asked about.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from agent.deps import AgentConfig, AgentDeps, AutoApprove
from agent.gather import risk_context
from agent.graph import SignalGraph, build_graph
from agent.policies import DecisionInput, Policy, RulePolicy
from agent.runner import SignalRunner, WalkResult
from scheduler.manage import PositionManager
from scheduler.scan import Scanner, signal_id_for
from storage.checkpoints import open_checkpointer
from storage.db import make_engine
from storage.paper_ledger import SqlPaperLedger
from storage.plans import PlanStore
from storage.signals import KILL_SWITCH_KEY, SignalStatus, SignalStore
from storage.tables import Approval, OrderRow, TradePlan
from storage.watchlists import WatchlistSpec
from tests.support import approval_rows, entry_orders, plan_rows
from tools import risk as risk_gate
from tools.models import Action, Signal
from tools.risk import RiskContext
from tools.screen import screen
from tools.sizing import propose, risk_based_qty
from venues.base import Venue
from venues.clock import SimulatedClock
from venues.costs import round_to_tick
from venues.models import Account, Order, OrderRequest, OrderType, Side
from venues.paper import PaperBroker, PaperBrokerConfig
from venues.replay import ReplayVenue

D = Decimal
CRYPTO, CN = "replay-crypto", "replay-cn"
ETH, ETF = "ETH/USDT", "510300.SH"
ETH_SETUP = datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC)
ETH_ENTRY = D("2318.91")
ETF_1125_SHANGHAI = datetime(2021, 7, 22, 3, 25, tzinfo=UTC)
STARTING_CASH = {
    "crypto": {"USD": D(100_000), "USDT": D(100_000)},
    "cn": {"CNY": D(1_000_000)},
    "us": {"USD": D(100_000)},
}
# ETH's replay bars are hourly: a price can only have moved once an answer is an hour late, so the
# drift tests give the approval that long (the default window is 15 minutes).
HOURS_TO_ANSWER = AgentConfig(approval_timeout=timedelta(hours=3))
ETH_WATCHLIST = WatchlistSpec(name="crypto", venue=CRYPTO, symbols=(ETH,), timeframe="1h")


# --- policies a test needs where the rule policy's own decision is not the point ---


class FixedBuy:
    """Buys whatever it is asked about at the last price, stop 1% below, targets at 3R/4R/5R: a
    setup every risk rule of the medium profile allows, on any symbol at any time."""

    name = "fixed-buy"

    async def decide(self, facts: DecisionInput) -> Signal:
        tick = facts.tick_size
        entry = round_to_tick(D(repr(facts.last_price)), tick)
        risk = entry / 100
        return Signal(
            action=Action.BUY,
            symbol=facts.symbol,
            entry=entry,
            stop=round_to_tick(entry - risk, tick, up=False),
            take_profits=tuple(round_to_tick(entry + risk * r, tick, up=True) for r in (3, 4, 5)),
            timeframe=facts.timeframe,
            horizon_bars=10,
            confidence=0.8,
            reasons=("test setup",),
            policy=self.name,
        )


class FixedShort:
    """Sells short whatever it is asked about at the last price, stop 1% above, targets at 3R/4R/5R
    below: the mirror of FixedBuy, for the venues that may and may not short."""

    name = "fixed-short"

    async def decide(self, facts: DecisionInput) -> Signal:
        tick = facts.tick_size
        entry = round_to_tick(D(repr(facts.last_price)), tick)
        risk = entry / 100
        return Signal(
            action=Action.SHORT,
            symbol=facts.symbol,
            entry=entry,
            stop=round_to_tick(entry + risk, tick, up=True),
            take_profits=tuple(round_to_tick(entry - risk * r, tick, up=False) for r in (3, 4, 5)),
            timeframe=facts.timeframe,
            horizon_bars=10,
            confidence=0.8,
            reasons=("test short setup",),
            policy=self.name,
        )


class Broken:
    """A policy whose model endpoint is down."""

    name = "broken"

    async def decide(self, facts: DecisionInput) -> Signal:
        raise RuntimeError("endpoint down (HTTP 503)")


# --- the application wired by hand, as bot/services.py does, on a given database and clock ---


@dataclass
class Rig:
    url: str
    engine: Engine
    clock: SimulatedClock
    venues: dict[str, Venue]
    deps: AgentDeps
    graph: SignalGraph
    runner: SignalRunner
    scanner: Scanner = field(init=False)

    def __post_init__(self) -> None:
        manager = PositionManager(dict(self.venues), self.deps.plans, self.deps.signals, self.clock)
        self.scanner = Scanner(self.runner, manager)

    @property
    def signals(self) -> SignalStore:
        return self.deps.signals

    def orders(self, signal_id: str) -> list[OrderRow]:
        """Every entry order stored for the signal, whoever placed it (any runner, any process);
        its bracket of exits is left out (``exits``)."""
        return entry_orders(self.engine, signal_id)

    def exits(self, signal_id: str) -> list[OrderRow]:
        with Session(self.engine) as session:
            return list(session.exec(select(OrderRow).where(OrderRow.parent == signal_id)).all())

    def plans(self, signal_id: str) -> list[TradePlan]:
        return plan_rows(self.engine, signal_id)

    def approvals(self, signal_id: str) -> list[Approval]:
        return approval_rows(self.engine, signal_id)

    def status(self, signal_id: str) -> str:
        row = self.signals.get(signal_id)
        assert row is not None, f"no signal {signal_id}"
        return row.status

    def trace_nodes(self, signal_id: str) -> list[str]:
        return [t.node for t in self.signals.traces(signal_id)]

    async def next_nodes(self, signal_id: str) -> tuple[str, ...]:
        snapshot = await self.graph.aget_state({"configurable": {"thread_id": signal_id}})
        return tuple(snapshot.next)

    def pause(self, reason: str) -> None:
        now = self.clock.now()
        self.signals.set_value(KILL_SWITCH_KEY, {"paused": True, "by": "admin", "reason": reason}, at=now)


@asynccontextmanager
async def rig(
    db_url: str,
    clock: SimulatedClock,
    *,
    policy: Policy | None = None,
    config: AgentConfig | None = None,
) -> AsyncIterator[Rig]:
    """One application instance on the (already migrated) database: its own engine, venues, paper
    brokers, checkpointer and graph. Two of these on one database are two processes in all but
    the process: nothing in memory is shared."""
    engine = make_engine(db_url)
    ledger = SqlPaperLedger(engine)
    venues: dict[str, Venue] = {}
    for market, cash in STARTING_CASH.items():
        venue = ReplayVenue(market, clock)
        venue.broker = PaperBroker(venue.name, venue, clock, ledger, PaperBrokerConfig(starting_cash=cash))
        venues[venue.name] = venue
    deps = AgentDeps(
        venues=venues,
        clock=clock,
        signals=SignalStore(engine),
        plans=PlanStore(engine),
        policy=policy or RulePolicy(),
        config=config or AgentConfig(),
    )
    try:
        async with open_checkpointer(db_url) as saver:
            graph = build_graph(deps, saver)
            yield Rig(db_url, engine, clock, venues, deps, graph, SignalRunner(deps, graph))
    finally:
        engine.dispose()


async def eth_pending(app: Rig) -> WalkResult:
    """Scan the ETH watchlist at the known setup: one candidate, one pending BUY."""
    report = await app.scanner.scan(ETH_WATCHLIST)
    assert not report.error, report.error
    assert [c.symbol for c in report.candidates] == [ETH]
    (walk,) = report.walks
    assert walk.status == SignalStatus.PENDING.value, walk
    return walk


async def etf_pending(app: Rig, signal_id: str = "etf1125") -> WalkResult:
    walk = await app.runner.start(signal_id=signal_id, venue=CN, symbol=ETF, timeframe="15m")
    assert walk.status == SignalStatus.PENDING.value, walk
    return walk


def eth_clock() -> SimulatedClock:
    return SimulatedClock(ETH_SETUP)


# --- the walk ---


async def test_rule_policy_walk_reaches_pending_with_a_card_computed_by_the_tools(engine: Engine, db_url: str) -> None:
    async with rig(db_url, eth_clock()) as app:
        walk = await eth_pending(app)
        card = walk.card
        assert card is not None
        row = app.signals.get(walk.signal_id)
        assert row is not None and row.status == "pending" and row.card == card and row.side == "buy"
        assert card["policy"] == "rules" and card["side"] == "BUY" and D(card["entry"]) == ETH_ENTRY
        assert app.orders(walk.signal_id) == [] and app.plans(walk.signal_id) == []
        # The thread waits at the approval, nothing after it has run.
        assert await app.next_nodes(walk.signal_id) == ("approve",)

        # What the policy said carries no size, cost or outcome: a Signal has no such fields.
        state = (await app.graph.aget_state({"configurable": {"thread_id": walk.signal_id}})).values
        signal = Signal.model_validate(state["signal"])
        assert set(state["signal"]) == set(Signal.model_fields)
        assert not {"qty", "notional", "costs", "expected_net_profit", "reward_risk"} & set(Signal.model_fields)
        facts = DecisionInput.model_validate(state["facts"])
        assert facts.equity == 100_000

        # The tools, run again on the policy's signal and the account, give the card's numbers.
        venue = app.venues[CRYPTO]
        instrument = await venue.instrument(ETH)
        profile = app.deps.config.risk_for(CRYPTO)
        slippage = app.deps.config.slippage_bps
        qty, _ = risk_based_qty(
            signal,
            instrument,
            equity=facts.equity,
            available_cash=facts.cash,
            risk_per_trade_pct=profile.risk_per_trade_pct,
            max_position_pct=profile.max_position_pct,
            slippage_bps=slippage,
        )
        fill_day = app.clock.now().date()  # crypto fees do not change with the date
        proposal = propose(
            signal, instrument, qty, slippage_bps=slippage, on=fill_day, exit_weights=app.deps.config.exit_weights
        )
        context = RiskContext(now=app.clock.now(), equity=facts.equity, day_start_equity=facts.equity)
        verdict, allowed = risk_gate.check(proposal, context, profile, instrument, slippage_bps=slippage)
        assert verdict.decision == card["risk_decision"] != "block"
        assert D(card["qty"]) == verdict.qty == allowed.qty > 0
        assert D(card["notional"]) == allowed.notional == allowed.qty * ETH_ENTRY
        assert D(card["expected_net_profit"]) == allowed.expected_net_profit.quantize(D("0.01"))
        assert D(card["costs"]) == allowed.fees_round_trip.quantize(D("0.01")) > 0
        assert D(card["loss_at_stop"]) == allowed.loss_at_stop.quantize(D("0.01"))
        assert card["reward_risk"] == round(allowed.reward_risk, 2) >= profile.min_reward_risk
        # And they mean what they say: 1% of the 100,000 USDT equity is lost at the stop, no more.
        assert D(card["loss_at_stop"]) <= facts.equity * profile.risk_per_trade_pct
        assert card["reward_risk"] == round(float(D(card["expected_net_profit"]) / D(card["loss_at_stop"])), 2)
        assert qty % instrument.qty_step == 0


async def test_rule_policy_walk_on_an_a_share_sizes_in_lots_under_the_position_cap(engine: Engine, db_url: str) -> None:
    # 510300.SH's 15m setup at 10:00 Shanghai: a BUY at 5.223, stop 5.192. The 1% risk budget of the
    # 1,000,000 CNY account would buy about 300,000 shares; the 20% position cap allows 200,000 CNY,
    # 38,27x shares at the slipped 5.226, rounded down to lots of 100: 38,200.
    clock = SimulatedClock(datetime(2021, 7, 22, 2, 0, tzinfo=UTC))
    watchlist = WatchlistSpec(name="cn-etf", venue=CN, symbols=(ETF,), timeframe="15m")
    async with rig(db_url, clock) as app:
        (walk,) = (await app.scanner.scan(watchlist)).walks
        assert walk.status == "pending" and walk.card is not None
        card = walk.card
        assert (card["entry"], card["stop"], card["qty"]) == ("5.223", "5.192", "38200")
        assert "size capped at 20% of equity" in card["risk_notes"]
        assert card["expires_at"] == "2021-07-22T02:15:00+00:00"
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert result.status == "executed"
        (order,) = app.orders(walk.signal_id)
        assert order.qty == 38_200 and order.client_order_id == walk.signal_id


async def test_approve_places_one_order_with_the_signal_id_and_creates_the_plan(engine: Engine, db_url: str) -> None:
    async with rig(db_url, eth_clock()) as app:
        walk = await eth_pending(app)
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert result.outcome.won and result.status == "executed"
        (order,) = app.orders(walk.signal_id)
        assert order.client_order_id == walk.signal_id
        assert order.side == "buy" and order.symbol == ETH and order.venue == CRYPTO
        assert walk.card is not None and order.qty == D(walk.card["qty"])
        (plan,) = app.plans(walk.signal_id)
        assert plan.status == "entry_pending" and plan.qty_entry == order.qty
        assert plan.stop == D(walk.card["stop"]) and plan.take_profits == walk.card["take_profits"]
        assert [(h.from_status, h.to_status) for h in app.signals.history(walk.signal_id)] == [
            (None, "pending"),
            ("pending", "approved"),
            ("approved", "executed"),
        ]
        assert app.approvals(walk.signal_id)[0].actor == "telegram:1"
        assert await app.next_nodes(walk.signal_id) == ()
        row = app.signals.get(walk.signal_id)
        assert row is not None and row.card["execution"]["order"]["client_order_id"] == walk.signal_id


async def test_reject_places_no_order(engine: Engine, db_url: str) -> None:
    async with rig(db_url, eth_clock()) as app:
        walk = await eth_pending(app)
        result = await app.runner.decide(walk.signal_id, "rejected", actor="telegram:1", reason="too late in the day")
        assert result.outcome.won and result.status == "rejected"
        assert app.orders(walk.signal_id) == [] and app.plans(walk.signal_id) == []
        assert app.signals.history(walk.signal_id)[-1].reason == "too late in the day"
        assert await app.next_nodes(walk.signal_id) == ()  # the thread ran to its end, not left at approve


async def test_auto_approve_rule_executes_without_a_human(engine: Engine, db_url: str) -> None:
    config = AgentConfig(auto_approve=AutoApprove(mode="all"))
    async with rig(db_url, eth_clock(), config=config) as app:
        report = await app.scanner.scan(ETH_WATCHLIST)
        (walk,) = report.walks
        assert walk.status == "executed"
        assert len(app.orders(walk.signal_id)) == 1
        assert app.approvals(walk.signal_id)[0].actor == "auto:all"


# --- expiry: open-market time, and an expired signal never orders ---


async def test_expiry_counts_open_market_time_and_orders_nothing(engine: Engine, db_url: str) -> None:
    clock = SimulatedClock(ETF_1125_SHANGHAI)
    async with rig(db_url, clock, policy=FixedBuy()) as app:
        walk = await etf_pending(app)
        # 11:25 + 5 minutes to the 11:30 lunch break + 10 minutes from 13:00 = 13:10 Shanghai.
        expires = datetime(2021, 7, 22, 5, 10, tzinfo=UTC)
        assert walk.card is not None and datetime.fromisoformat(walk.card["expires_at"]) == expires
        row = app.signals.get(walk.signal_id)
        assert row is not None and row.expires_at == expires

        clock.advance_to(datetime(2021, 7, 22, 3, 40, tzinfo=UTC))  # 11:40: 15 wall minutes, 5 open ones
        assert await app.runner.expire_due() == []
        clock.advance_to(expires - timedelta(seconds=1))
        assert await app.runner.expire_due() == []
        assert app.status(walk.signal_id) == "pending"

        clock.advance_to(expires)
        assert await app.runner.expire_due() == [walk.signal_id]
        assert app.status(walk.signal_id) == "expired"
        assert app.orders(walk.signal_id) == []
        (approval,) = app.approvals(walk.signal_id)
        assert (approval.decision, approval.actor) == ("expired", "expiry")
        assert await app.next_nodes(walk.signal_id) == ()
        # A press after the expiry is told, and orders nothing.
        late = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert not late.outcome.won and late.outcome.decision == "expired" and late.reason == "already decided"
        assert await app.runner.expire_due() == []
        assert app.orders(walk.signal_id) == []


async def test_an_answer_after_the_window_counts_as_expired_even_before_the_expiry_sweep(
    engine: Engine, db_url: str
) -> None:
    """Expired means rejected, whoever answers first: the approval does not wait for a sweep."""
    clock = SimulatedClock(ETF_1125_SHANGHAI)
    async with rig(db_url, clock, policy=FixedBuy()) as app:
        walk = await etf_pending(app)
        clock.advance_to(datetime(2021, 7, 22, 5, 10, tzinfo=UTC))
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert not result.outcome.won and result.outcome.decision == "expired"
        assert result.status == "expired"
        assert app.orders(walk.signal_id) == []
        assert app.approvals(walk.signal_id)[0].actor == "expiry"
        assert await app.next_nodes(walk.signal_id) == ()


async def test_a_signal_made_while_the_market_is_closed_says_so_and_fills_at_the_open_only_within_the_drift_limit(
    engine: Engine, db_url: str
) -> None:
    # 06:00 UTC: New York is closed. The entry is the last (after-hours) trade; SPY opened at 13:30
    # at 428.73, 1.3% under it, so the order is cancelled at that open instead of filled there.
    clock = SimulatedClock(datetime(2021, 7, 8, 6, 0, tzinfo=UTC))
    async with rig(db_url, clock, policy=FixedBuy(), config=HOURS_TO_ANSWER) as app:
        walk = await app.runner.start(signal_id="spy0600", venue="replay-us", symbol="SPY", timeframe="15m")
        card = walk.card
        assert walk.status == SignalStatus.PENDING.value and card is not None
        assert card["fills_at"] == "next open 2021-07-08T13:30:00+00:00"
        assert card["risk_notes"][0] == (
            "market closed: fills at the next open (2021-07-08 09:30 EDT (13:30 UTC)), only within 50 bps of the entry"
        )
        result = await app.runner.decide("spy0600", "approved", actor="telegram:1")
        assert result.status == "executed"  # placed; the drift is judged at the open
        clock.advance_to(datetime(2021, 7, 8, 13, 35, tzinfo=UTC))
        events = await app.scanner.tick(["replay-us"])
        (entry,) = app.orders("spy0600")
        assert entry.status == "cancelled"
        assert entry.reason.startswith("drift guard: it would fill at 428.95 at the 2021-07-08T13:30:00+00:00 open")
        (plan,) = app.plans("spy0600")
        assert plan.status == "cancelled" and plan.close_reason.startswith("entry cancelled: drift guard")
        assert [e.kind for e in events] == ["cancelled"]
        assert all(o.status == "cancelled" for o in app.exits("spy0600"))


async def test_approval_inside_the_window_across_the_lunch_break_executes(engine: Engine, db_url: str) -> None:
    clock = SimulatedClock(ETF_1125_SHANGHAI)
    async with rig(db_url, clock, policy=FixedBuy()) as app:
        walk = await etf_pending(app)
        clock.advance_to(datetime(2021, 7, 22, 3, 40, tzinfo=UTC))  # 11:40, past 15 wall minutes
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert result.outcome.won and result.status == "executed"
        (order,) = app.orders(walk.signal_id)
        assert order.qty % 100 == 0  # A-share lots


# --- execution re-checks: drift and the kill switch ---


async def test_price_drift_beyond_the_limit_aborts_without_an_order(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock, config=HOURS_TO_ANSWER) as app:
        walk = await eth_pending(app)
        # 08:00:05: the 08:00 bar opened at 2336.18; a buy fills there plus 5 bps of slippage.
        clock.advance_to(datetime(2021, 7, 6, 8, 0, 5, tzinfo=UTC))
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert result.outcome.won and result.status == "aborted"
        assert result.reason == (
            "the order would fill near 2337.35, 80 bps from the entry 2318.91; the limit is 50 bps"
        )
        assert app.signals.history(walk.signal_id)[-1].reason == result.reason
        assert app.orders(walk.signal_id) == [] and app.plans(walk.signal_id) == []


async def test_price_drift_within_the_limit_executes(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock, config=HOURS_TO_ANSWER) as app:
        walk = await eth_pending(app)
        clock.advance_to(datetime(2021, 7, 6, 7, 0, 5, tzinfo=UTC))  # fills near 2319.26: 1.5 bps
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert result.status == "executed"
        assert len(app.orders(walk.signal_id)) == 1


async def test_a_tight_drift_limit_aborts_a_small_move(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock, config=replace(HOURS_TO_ANSWER, max_drift_bps=D(1))) as app:
        walk = await eth_pending(app)
        # The 07:00 open 2318.10 plus slippage is 2319.26: 1.5 bps from the entry 2318.91.
        clock.advance_to(datetime(2021, 7, 6, 7, 0, 5, tzinfo=UTC))
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert result.status == "aborted" and "near 2319.26, 2 bps" in result.reason
        assert "the limit is 1 bps" in result.reason
        assert app.orders(walk.signal_id) == []


async def test_kill_switch_blocks_at_risk_with_the_reason(engine: Engine, db_url: str) -> None:
    async with rig(db_url, eth_clock()) as app:
        app.signals.set_value(KILL_SWITCH_KEY, {"paused": True}, at=app.clock.now())
        report = await app.scanner.scan(ETH_WATCHLIST)
        (walk,) = report.walks
        assert walk.status == "blocked"
        assert "trading is paused: kill switch on" in walk.reason
        assert app.status(walk.signal_id) == "blocked"
        assert app.orders(walk.signal_id) == [] and app.approvals(walk.signal_id) == []
        risk_trace = next(t for t in app.signals.traces(walk.signal_id) if t.node == "risk")
        assert risk_trace.outcome == "block"
        # Nobody can approve what never went out.
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert not result.outcome.won and result.status == "blocked"
        assert app.orders(walk.signal_id) == []


async def test_kill_switch_after_the_card_aborts_at_execution(engine: Engine, db_url: str) -> None:
    async with rig(db_url, eth_clock()) as app:
        walk = await eth_pending(app)
        app.pause("drawdown review")
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert result.outcome.won and result.status == "aborted"
        assert result.reason.startswith("risk re-check: ") and "trading is paused: drawdown review" in result.reason
        assert app.orders(walk.signal_id) == [] and app.plans(walk.signal_id) == []
        execute_trace = next(t for t in app.signals.traces(walk.signal_id) if t.node == "execute")
        assert execute_trace.outcome.startswith("aborted: risk re-check")


# --- exactly once ---


async def test_resuming_a_finished_thread_is_a_no_op(engine: Engine, db_url: str) -> None:
    async with rig(db_url, eth_clock()) as app:
        walk = await eth_pending(app)
        first = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert first.status == "executed"
        history = len(app.signals.history(walk.signal_id))
        again = await app.runner.decide(walk.signal_id, "approved", actor="telegram:2")
        assert not again.outcome.won and again.reason == "already decided" and again.status == "executed"
        assert (again.outcome.decision, again.outcome.actor) == ("approved", "telegram:1")
        reject = await app.runner.decide(walk.signal_id, "rejected", actor="telegram:2")
        assert not reject.outcome.won and reject.status == "executed"
        # Even a resume that got past the approvals table finds nothing left to run.
        value = {"decision": "approved", "actor": "x", "reason": "", "at": ""}
        assert await app.runner._resume_holding(walk.signal_id, value) is False
        assert await app.runner.recover() == []
        assert len(app.orders(walk.signal_id)) == 1 and len(app.plans(walk.signal_id)) == 1
        assert len(app.signals.history(walk.signal_id)) == history
        assert sorted(app.trace_nodes(walk.signal_id)) == ["decide", "execute", "risk"]


async def test_twenty_concurrent_approvals_place_exactly_one_order(engine: Engine, db_url: str) -> None:
    async with rig(db_url, eth_clock()) as app:
        walk = await eth_pending(app)
        results = await asyncio.gather(
            *(app.runner.decide(walk.signal_id, "approved", actor=f"telegram:{i}") for i in range(20))
        )
        winners = [r for r in results if r.outcome.won]
        assert len(winners) == 1 and winners[0].status == "executed"
        assert all(r.reason == "already decided" for r in results if not r.outcome.won)
        assert {r.outcome.actor for r in results} == {winners[0].outcome.actor}
        assert len(app.orders(walk.signal_id)) == 1
        assert len(app.plans(walk.signal_id)) == 1
        assert len(app.approvals(walk.signal_id)) == 1
        assert [h.to_status for h in app.signals.history(walk.signal_id)] == ["pending", "approved", "executed"]
        assert sorted(app.trace_nodes(walk.signal_id)) == ["decide", "execute", "risk"]


async def test_twenty_concurrent_resumes_of_one_thread_run_it_once(engine: Engine, db_url: str) -> None:
    """Past the approvals table (the decision is recorded): twenty resumes at once, as twenty
    recovering workers would, still run the rest of the thread once (the per-thread lock)."""
    clock = eth_clock()
    async with rig(db_url, clock) as app:
        walk = await eth_pending(app)
        app.signals.decide(walk.signal_id, "approved", actor="telegram:1", at=clock.now())
        recovered = await asyncio.gather(*(app.runner.recover() for _ in range(20)))
        assert sorted(recovered, key=len) == [[]] * 19 + [[walk.signal_id]]
        assert len(app.orders(walk.signal_id)) == 1 and len(app.plans(walk.signal_id)) == 1
        assert [h.to_status for h in app.signals.history(walk.signal_id)] == ["pending", "approved", "executed"]
        assert sorted(app.trace_nodes(walk.signal_id)) == ["decide", "execute", "risk"]


async def test_answers_to_twenty_cards_at_once_all_complete(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty resumes of different threads at once in one process, each holding its thread's lock
    for the whole resume: none may starve the others of the database connections they need."""
    async with rig(db_url, SimulatedClock(ETF_1125_SHANGHAI), policy=FixedBuy()) as app:
        # Twenty cards on one symbol, as a database written before the one-pending-per-symbol rule
        # may hold: the rule is not what this test is about.
        monkeypatch.setattr(app.signals, "pending_for", lambda *_args, **_kwargs: None)
        ids = [f"card{i:02d}" for i in range(20)]
        for signal_id in ids:
            await etf_pending(app, signal_id)
        results = await asyncio.gather(*(app.runner.decide(i, "approved", actor="telegram:1") for i in ids))
        assert all(r.outcome.won for r in results)
        # One 510300.SH entry goes out; the cooldown per symbol, re-checked at execution, stops the rest.
        assert sorted(r.status for r in results) == ["aborted"] * 19 + ["executed"]
        assert all("cooldown" in r.reason for r in results if r.status == "aborted")
        assert sum(len(app.orders(i)) for i in ids) == 1


async def test_two_runners_on_one_database_racing_place_one_order(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock) as first, rig(db_url, clock) as second:
        walk = await eth_pending(first)
        results = await asyncio.gather(
            *(
                (first if i % 2 else second).runner.decide(walk.signal_id, "approved", actor=f"telegram:{i}")
                for i in range(20)
            )
        )
        assert sum(r.outcome.won for r in results) == 1
        assert len(first.orders(walk.signal_id)) == 1
        assert len(first.plans(walk.signal_id)) == 1
        assert first.status(walk.signal_id) == "executed"
        assert await first.next_nodes(walk.signal_id) == await second.next_nodes(walk.signal_id) == ()


async def test_two_runners_starting_signals_on_one_symbol_create_one_pending(engine: Engine, db_url: str) -> None:
    """Two instances (own engines, own in-process locks: only the cross-process lock is shared)
    start different signals on the same venue and symbol at once: one card; the other start is
    refused before its walk and names the pending signal."""
    clock = SimulatedClock(ETF_1125_SHANGHAI)
    async with rig(db_url, clock, policy=FixedBuy()) as a, rig(db_url, clock, policy=FixedBuy()) as b:
        first, second = await asyncio.gather(
            a.runner.start(signal_id="etfa", venue=CN, symbol=ETF, timeframe="15m"),
            b.runner.start(signal_id="etfb", venue=CN, symbol=ETF, timeframe="15m"),
        )
        created = [w for w in (first, second) if w.created]
        refused = [w for w in (first, second) if not w.created]
        assert len(created) == 1 and len(refused) == 1, (first, second)
        (winner,), (loser,) = created, refused
        assert winner.status == loser.status == "pending" and loser.signal_id == winner.signal_id
        assert f"{ETF} already has a pending BUY signal {winner.signal_id}" in loser.reason
        assert [r.id for r in a.signals.recent()] == [winner.signal_id]
        # The refused one never walked: no thread, no policy call.
        other = "etfb" if winner.signal_id == "etfa" else "etfa"
        assert await a.next_nodes(other) == () and a.signals.traces(other) == []
        # Another symbol is not held up by it.
        stocks = await b.runner.start(signal_id="moutai", venue=CN, symbol="600519.SH", timeframe="1d")
        assert stocks.created and stocks.status == "pending"


async def test_two_runners_recovering_the_same_thread_place_one_order(engine: Engine, db_url: str) -> None:
    """Two instances starting at once both find the approved thread: the per-thread lock (or, where
    there is none, the client order id) still lets one order through."""
    clock = eth_clock()
    async with rig(db_url, clock) as first:
        walk = await eth_pending(first)
        first.signals.decide(walk.signal_id, "approved", actor="telegram:1", at=clock.now())
    async with rig(db_url, clock) as a, rig(db_url, clock) as b:
        recovered = await asyncio.gather(a.runner.recover(), b.runner.recover())
        assert walk.signal_id in recovered[0] + recovered[1]
        assert len(a.orders(walk.signal_id)) == 1
        assert len(a.plans(walk.signal_id)) == 1
        assert a.status(walk.signal_id) == "executed"
        assert sorted(a.trace_nodes(walk.signal_id)) == ["decide", "execute", "risk"]


async def test_restart_between_interrupt_and_resume(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock) as before:
        walk = await eth_pending(before)
    # A new engine, checkpointer, graph and runner on the same database: the card is still answerable.
    async with rig(db_url, clock) as after:
        assert await after.next_nodes(walk.signal_id) == ("approve",)
        result = await after.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert result.outcome.won and result.status == "executed"
        (order,) = after.orders(walk.signal_id)
        assert order.client_order_id == walk.signal_id
        assert len(after.plans(walk.signal_id)) == 1


async def test_recover_resumes_a_decision_recorded_before_a_stop(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock) as before:
        walk = await eth_pending(before)
        # The process stops right after the approvals row is written, before the resume.
        before.signals.decide(walk.signal_id, "approved", actor="telegram:1", at=clock.now())
        assert before.status(walk.signal_id) == "approved"
    async with rig(db_url, clock) as after:
        assert await after.runner.recover() == [walk.signal_id]
        assert after.status(walk.signal_id) == "executed"
        assert len(after.orders(walk.signal_id)) == 1
        assert await after.runner.recover() == []
        assert len(after.orders(walk.signal_id)) == 1


async def test_recover_finishes_a_rejection_recorded_before_a_stop(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock) as before:
        walk = await eth_pending(before)
        before.signals.decide(walk.signal_id, "rejected", actor="telegram:1", at=clock.now(), reason="no")
    async with rig(db_url, clock) as after:
        assert await after.runner.recover() == [walk.signal_id]
        assert after.status(walk.signal_id) == "rejected"
        assert await after.next_nodes(walk.signal_id) == ()
        assert sorted(after.trace_nodes(walk.signal_id)) == ["decide", "risk"]
        assert after.orders(walk.signal_id) == []
        assert await after.runner.recover() == []


async def test_an_order_placed_by_another_resume_is_not_placed_again(engine: Engine, db_url: str) -> None:
    """Another resume of the thread (a process with no lock shared with this one) placed the order
    and stopped: this thread, still at the approval, finds the order by its client order id, places
    none, and stores the plan the other one never got to."""
    clock = eth_clock()
    async with rig(db_url, clock) as before:
        walk = await eth_pending(before)
        before.signals.decide(walk.signal_id, "approved", actor="telegram:1", at=clock.now())
        assert walk.card is not None
        await before.venues[CRYPTO].place_order(
            OrderRequest(
                client_order_id=walk.signal_id,
                symbol=ETH,
                side=Side.BUY,
                qty=D(walk.card["qty"]),
                type=OrderType.MARKET,
                signal_id=walk.signal_id,
            )
        )
        assert before.plans(walk.signal_id) == []
    async with rig(db_url, clock) as after:
        assert await after.runner.recover() == [walk.signal_id]
        assert after.status(walk.signal_id) == "executed"
        assert len(after.orders(walk.signal_id)) == 1 and len(after.plans(walk.signal_id)) == 1


async def test_a_crash_after_the_order_went_out_is_recovered_without_a_second_order(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies inside execute, right after the broker took the order: the thread is
    checkpointed past the approval (next: execute) and the signal is still 'approved'. The next
    instance's recover resumes it from execute, which finds the order by its client order id and
    stores the plan that was never stored."""
    clock = eth_clock()
    async with rig(db_url, clock) as before:
        walk = await eth_pending(before)
        broker = before.venues[CRYPTO].broker_required()
        place = broker.place

        async def place_then_die(request: OrderRequest) -> Order:
            await place(request)
            raise RuntimeError("process killed")

        monkeypatch.setattr(broker, "place", place_then_die)
        with pytest.raises(RuntimeError, match="process killed"):
            await before.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert before.status(walk.signal_id) == "approved"
        assert await before.next_nodes(walk.signal_id) == ("execute",)
    async with rig(db_url, clock) as after:
        assert await after.runner.recover() == [walk.signal_id]
        assert after.status(walk.signal_id) == "executed"
        assert await after.next_nodes(walk.signal_id) == ()
        assert len(after.orders(walk.signal_id)) == 1 and len(after.plans(walk.signal_id)) == 1
        assert await after.runner.recover() == []


# --- failures, re-runs, traces, logs ---


async def test_a_failing_policy_abstains_with_the_reason_and_never_orders(engine: Engine, db_url: str) -> None:
    async with rig(db_url, eth_clock(), policy=Broken()) as app:
        report = await app.scanner.scan(ETH_WATCHLIST)
        (walk,) = report.walks
        assert walk.status == "abstained"
        assert walk.reason == "policy broken failed: RuntimeError: endpoint down (HTTP 503)"
        row = app.signals.get(walk.signal_id)
        assert row is not None and row.status == "abstained" and row.side == "abstain"
        assert app.orders(walk.signal_id) == [] and app.approvals(walk.signal_id) == []
        (trace,) = app.signals.traces(walk.signal_id)
        assert (trace.node, trace.outcome, trace.policy) == ("decide", "ABSTAIN", "broken")
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert not result.outcome.won and app.orders(walk.signal_id) == []


async def test_a_scan_rerun_at_the_same_bar_creates_no_second_signal(
    engine: Engine, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tradeops.agent")
    clock = eth_clock()
    async with rig(db_url, clock) as app:
        first = await eth_pending(app)
        again = await app.scanner.scan(ETH_WATCHLIST)
        clock.advance_to(datetime(2021, 7, 6, 6, 40, tzinfo=UTC))  # the 06:00 bar has not closed yet
        later = await app.scanner.scan(ETH_WATCHLIST)
        for report in (again, later):
            (walk,) = report.walks
            assert (walk.signal_id, walk.status, walk.created) == (first.signal_id, "pending", False)
        assert [r.id for r in app.signals.recent()] == [first.signal_id]
        assert [s.signals for s in app.signals.scans()] == [0, 0, 1]
        assert len(_done_lines(caplog, first.signal_id)) == 1


async def test_concurrent_starts_of_one_signal_walk_it_once(
    engine: Engine, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two walks of the same candidate racing (a scheduled and a manual scan of one bar): one
    decision, one pending row, one card sent, one log line."""
    caplog.set_level(logging.INFO, logger="tradeops.agent")
    cards: list[str] = []

    async def on_card(card: dict[str, Any]) -> None:
        cards.append(str(card["signal_id"]))

    async with rig(db_url, eth_clock()) as app:
        app.runner.on_card = on_card
        found = await screen(app.venues[CRYPTO], [ETH], app.scanner.screen_config(ETH_WATCHLIST), now=app.clock.now())
        (candidate,) = found.candidates
        signal_id = signal_id_for(ETH_WATCHLIST.name, ETH, candidate.bar_close)
        walks = await asyncio.gather(
            *(
                app.runner.start(signal_id=signal_id, venue=CRYPTO, symbol=ETH, timeframe="1h", candidate=candidate)
                for _ in range(2)
            )
        )
        assert [w.status for w in walks] == ["pending", "pending"]
        assert sorted(w.created for w in walks) == [False, True]
        assert walks[0].card == walks[1].card
        assert cards == [signal_id]
        assert len(_done_lines(caplog, signal_id)) == 1
        assert len(app.signals.history(signal_id)) == 1


async def test_a_walk_that_failed_part_way_is_walked_again_by_the_next_scan(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venue error inside gather fails the scan; the thread it leaves behind must not swallow the
    same bar's next scan."""
    async with rig(db_url, eth_clock()) as app:
        broker = app.venues[CRYPTO].broker_required()
        account = broker.account

        async def unreachable(currency: str | None = None) -> Account:
            raise ConnectionError("exchange unreachable")

        monkeypatch.setattr(broker, "account", unreachable)
        failed = await app.scanner.scan(ETH_WATCHLIST)
        assert "exchange unreachable" in failed.error
        monkeypatch.setattr(broker, "account", account)
        walk = await eth_pending(app)
        assert walk.created and walk.card is not None and D(walk.card["qty"]) > 0
        result = await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        assert result.status == "executed" and len(app.orders(walk.signal_id)) == 1


def _done_lines(caplog: pytest.LogCaptureFixture, signal_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"signal_done | id={signal_id} ")]


async def test_traces_and_the_done_log_line_once_per_decision(
    engine: Engine, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tradeops.agent")
    clock = eth_clock()
    async with rig(db_url, clock) as app:
        walk = await eth_pending(app)
        assert len(_done_lines(caplog, walk.signal_id)) == 1
        await app.runner.decide(walk.signal_id, "approved", actor="telegram:1")
        await app.runner.decide(walk.signal_id, "approved", actor="telegram:2")
        assert len(_done_lines(caplog, walk.signal_id)) == 1
        traces = {t.node: t for t in app.signals.traces(walk.signal_id)}
        assert sorted(traces) == ["decide", "execute", "risk"]
        assert traces["decide"].policy == "rules" and traces["decide"].outcome == "BUY"
        assert traces["decide"].request["symbol"] == ETH and traces["decide"].response["action"] == "BUY"
        assert walk.card is not None and traces["risk"].outcome == walk.card["risk_decision"]
        assert traces["execute"].outcome.startswith("executed: order ")

    # A walk that ends at the policy (HOLD: ETH is now held) traces its decision too, and logs once.
    clock.advance_to(datetime(2021, 7, 6, 8, 0, 5, tzinfo=UTC))
    async with rig(db_url, clock) as app:
        report = await app.scanner.scan(ETH_WATCHLIST)
        (hold,) = report.walks
        assert hold.status == "hold"
        assert app.trace_nodes(hold.signal_id) == ["decide"]
        assert len(_done_lines(caplog, hold.signal_id)) == 1


# --- shorts: SELL-to-open where the venue may short, blocked with the reason where it may not ---


async def test_a_short_on_the_perpetual_is_placed_with_its_bracket_and_followed_as_a_short(
    engine: Engine, db_url: str
) -> None:
    async with rig(db_url, eth_clock(), policy=FixedShort()) as app:
        walk = await app.runner.start(signal_id="ethshort", venue=CRYPTO, symbol=ETH, timeframe="1h")
        assert walk.status == SignalStatus.PENDING.value and walk.card is not None, walk
        card = walk.card
        assert card["side"] == "SHORT" and D(card["stop"]) > D(card["entry"]) > D(card["take_profits"][0])
        assert card["risk_decision"] == "allow" and card["carry"] is None
        # The assumed +0.01% per 8 h is paid by longs to this short: said, and counted as zero.
        assert any("short would receive funding" in n and "counted as zero" in n for n in card["risk_notes"])
        assert card["risk_notes"][0].startswith("SHORT: sells to open")
        row = app.signals.get("ethshort")
        assert row is not None and row.side == "short"
        result = await app.runner.decide("ethshort", "approved", actor="telegram:1")
        assert result.status == "executed", result
        (order,) = app.orders("ethshort")
        assert (order.side, order.qty) == ("sell", D(card["qty"]))
        # the drift collar: 50 bps either side of the entry, inside the allowance on the tick grid
        assert order.collar_low == round_to_tick(ETH_ENTRY * (1 - D("0.005")), D("0.01"), up=True)
        assert order.collar_high == round_to_tick(ETH_ENTRY * (1 + D("0.005")), D("0.01"), up=False)
        exits = app.exits("ethshort")
        assert {(o.side, o.type) for o in exits} == {("buy", "stop"), ("buy", "limit")}
        (plan,) = app.plans("ethshort")
        assert plan.stop == D(card["stop"])

        # The 07:00 bar's open fills it; the manager announces the short.
        app.clock.advance_to(ETH_SETUP + timedelta(hours=1))
        manager = PositionManager(dict(app.venues), app.deps.plans, app.signals, app.clock)
        events = await manager.tick(CRYPTO)
        assert [e.kind for e in events] == ["opened"]
        assert events[0].text.startswith(f"sold short {order.qty} ETH/USDT at ")
        (position,) = await app.venues[CRYPTO].broker_required().positions()
        assert position.qty == -order.qty
        # The gate's view: the short is a position held (both sides count) and today's one entry;
        # its bracket's buy exits are not entries.
        context = await risk_context(app.deps, venue_name=CRYPTO, symbol=ETH, timeframe="1h")
        assert (context.open_symbols, context.held_qty, context.trades_today) == ((ETH,), -order.qty, 1)


@pytest.mark.parametrize(
    ("venue", "symbol", "timeframe", "reason"),
    [
        (CRYPTO, "BTC/USD", "1h", "BTC/USD cannot be sold short: spot crypto is never sold short here"),
        (CN, "600519.SH", "1d", "600519.SH cannot be sold short: A-shares and A-share ETFs are long-only"),
        (CN, ETF, "15m", "510300.SH cannot be sold short: A-shares and A-share ETFs are long-only"),
    ],
)
async def test_a_short_where_the_venue_cannot_short_is_blocked_with_the_reason_on_the_card(
    engine: Engine, db_url: str, venue: str, symbol: str, timeframe: str, reason: str
) -> None:
    clock = eth_clock() if venue == CRYPTO else SimulatedClock(ETF_1125_SHANGHAI)
    async with rig(db_url, clock, policy=FixedShort()) as app:
        walk = await app.runner.start(signal_id="noshort", venue=venue, symbol=symbol, timeframe=timeframe)
        assert walk.status == SignalStatus.BLOCKED.value, walk
        assert reason in walk.reason
        row = app.signals.get("noshort")
        assert row is not None
        (failed,) = [c for c in row.card["risk"] if not c["passed"] and c["rule"] == "short_allowed"]
        assert reason in failed["detail"]
        assert app.orders("noshort") == []
