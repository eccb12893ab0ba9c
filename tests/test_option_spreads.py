"""TRADEOPS_OPTIONS=spreads: a BUY (SHORT) on an optionable US stock of the alpaca venue becomes a
bull call (bear put) debit spread chosen from the live chain, sized by its max loss, judged by the
risk gate, shown on the card, ordered as one multi-leg paper order and closed on the underlying's
stop, TP1 or the last session before expiry. Hand-checked numbers on a hand-written chain, then the
whole walk against the local fake Alpaca (tests/fake_alpaca.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from agent.llm.policy import LLMPolicy
from agent.llm.prompts import ANSWER_SCHEMA, OPTIONS_NOTE
from agent.llm.types import CallRecord, ChatResult
from agent.policies import DecisionInput
from agent.spread import choose_spread
from bot.core import Caller, CommandCore
from bot.render import card_text
from bot.services import Services, open_services
from bot.settings import load_settings
from storage.users import Role
from storage.watchlists import WatchlistSpec
from tests.fake_alpaca import FakeAlpaca, alpaca_settings, recorded
from tools import risk as risk_gate
from tools.models import Action, Signal
from tools.options import SpreadError, SpreadPlan
from tools.risk import RiskContext, profile
from tools.spreads import (
    SpreadRules,
    choose_legs,
    contracts_for,
    named_legs,
    spread_close_order_id,
    spread_proposal,
)
from venues.adapters.alpaca.parse import instrument_from_asset
from venues.clock import SimulatedClock
from venues.options import OccSymbol, OptionQuote, OptionRight

pytestmark = pytest.mark.usefixtures("hermetic")

RULES = SpreadRules()
EXPIRY = date(2021, 7, 30)


def quote(strike: int, right: str = "C", *, bid: float | None, ask: float | None, delta: float | None = None,
          expiry: date = EXPIRY) -> OptionQuote:  # fmt: skip
    occ = OccSymbol("SPY", expiry, OptionRight.CALL if right == "C" else OptionRight.PUT, Decimal(strike))
    return OptionQuote(
        symbol=occ.format(), underlying="SPY", expiry=expiry, right=occ.right, strike=occ.strike,
        bid=bid, ask=ask, delta=delta,
    )  # fmt: skip


# An earlier expiry (inside the plan's life) that must be passed over, then 2021-07-30's calls.
CALLS = [
    quote(430, bid=9.00, ask=9.10, delta=0.52, expiry=date(2021, 7, 23)),
    quote(428, bid=4.20, ask=4.30, delta=0.62),
    quote(429, bid=3.60, ask=3.70, delta=0.57),
    quote(430, bid=3.00, ask=3.10, delta=0.51),
    quote(431, bid=2.50, ask=2.60, delta=0.45),
    quote(433, bid=1.60, ask=1.70, delta=0.33),
    quote(434, bid=1.20, ask=1.30, delta=0.28),
    quote(436, bid=0.70, ask=0.80, delta=0.18),
]


def choose(chain: list[OptionQuote], *, bullish: bool = True, entry: str = "430.10", target: str = "434.20"):  # type: ignore[no-untyped-def]
    return choose_legs(
        chain,
        underlying="SPY",
        bullish=bullish,
        entry=Decimal(entry),
        target=Decimal(target),
        not_before=date(2021, 7, 26),
        rules=RULES,
    )


def plan_of(chosen, contracts: int) -> SpreadPlan:  # type: ignore[no-untyped-def]
    return SpreadPlan(
        name="bull call spread",
        underlying="SPY",
        expiry=chosen.long.expiry,
        long_leg=chosen.long.symbol,
        short_leg=chosen.short.symbol,
        long_bid=Decimal(repr(chosen.long.bid)),
        long_ask=Decimal(repr(chosen.long.ask)),
        short_bid=Decimal(repr(chosen.short.bid)),
        short_ask=Decimal(repr(chosen.short.ask)),
        long_delta=chosen.long.delta,
        net_debit=chosen.net_debit,
        contracts=contracts,
        fee_per_contract=RULES.fee_per_contract,
        close_by=date(2021, 7, 29),
        stop=Decimal("428.00"),
        target=Decimal("434.20"),
    )


def test_a_bull_call_spread_from_the_chain_with_hand_checked_numbers() -> None:
    chosen = choose(CALLS)
    # The 07-23 expiry is before the plan's end; the 430 call has the delta nearest 0.5; the short
    # leg is the strike nearest TP1 434.20 above it; net = 3.10 ask - 1.20 bid.
    assert (chosen.long.symbol, chosen.short.symbol, chosen.net_debit) == (
        "SPY210730C00430000",
        "SPY210730C00434000",
        Decimal("1.90"),
    )
    # Risk budget 1% of 100,000 = 1,000 USD; one contract loses at most 190 + 4 x 0.05 fees = 190.20.
    contracts, notes = contracts_for(
        chosen.net_debit,
        equity=Decimal(100_000),
        cash=Decimal(50_000),
        risk_per_trade_pct=Decimal("0.01"),
        max_position_pct=Decimal("0.20"),
        rules=RULES,
    )
    assert (contracts, notes) == (5, [])
    plan = plan_of(chosen, contracts)
    assert (plan.premium, plan.fees_round_trip, plan.max_loss, plan.max_gain, plan.breakeven) == (
        Decimal("950.00"),
        Decimal("1.00"),
        Decimal("951.00"),  # 5 x 190 + 1.00
        Decimal("1049.00"),  # 5 x (4 - 1.90) x 100 - 1.00
        Decimal("431.90"),  # 430 + 1.90
    )
    assert plan.card_lines() == [
        "bull call spread SPY 2021-07-30, 5 contracts",
        "  buy  SPY210730C00430000  (430 call)",
        "  sell SPY210730C00434000  (434 call)",
        "  = buy SPY 2021-07-30 430 call, sell SPY 2021-07-30 434 call",
        "  net debit 1.90 a share = 950.00 USD",
        "  max loss 950.00 USD, max gain 1,050.00 USD, breakeven 431.90",
        "  quotes: long bid/ask 3.00/3.10, short bid/ask 1.20/1.30, long delta 0.51",
        "  with fees 1.00 USD (round trip): max loss 951.00 USD, max gain 1,049.00 USD; expiry 2021-07-30",
        "exit: one closing order for both legs when SPY trades at or below the stop 428 or at or above TP1 "
        "434.2, else on 2021-07-29 (the last session before expiry)",
    ]
    assert [(leg.contract.format(), leg.buy) for leg in plan.legs(closing=True)] == [
        ("SPY210730C00430000", False),
        ("SPY210730C00434000", True),
    ]


def test_without_greeks_the_long_leg_is_the_strike_nearest_the_entry() -> None:
    no_delta = [q.model_copy(update={"delta": None}) for q in CALLS]
    chosen = choose(no_delta, entry="430.60", target="433.40")
    assert (chosen.long.strike, chosen.short.strike, chosen.net_debit) == (Decimal(431), Decimal(433), Decimal("1.00"))


def test_a_bear_put_spread_sells_the_strike_nearest_tp1_below() -> None:
    puts = [
        quote(426, "P", bid=1.10, ask=1.20, delta=-0.25),
        quote(427, "P", bid=1.50, ask=1.60, delta=-0.31),
        quote(429, "P", bid=2.40, ask=2.50, delta=-0.44),
        quote(430, "P", bid=2.90, ask=3.00, delta=-0.49),
        quote(431, "P", bid=3.50, ask=3.60, delta=-0.56),
    ]
    chosen = choose(puts, bullish=False, entry="430.10", target="426.40")
    assert (chosen.long.symbol, chosen.short.symbol, chosen.net_debit) == (
        "SPY210730P00430000",
        "SPY210730P00426000",
        Decimal("1.90"),  # 3.00 ask - 1.10 bid
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"SPY210730C00430000": {"bid": None}}, "no two-sided quote for SPY210730C00430000 (bid -, ask 3.1)"),
        ({"SPY210730C00434000": {"bid": 0.0, "ask": 0.0}}, "no two-sided quote for SPY210730C00434000"),
        (
            {"SPY210730C00434000": {"bid": 0.60, "ask": 1.30}},
            "too wide: bid 0.6, ask 1.3 is 74% of the mid; at most 25%",
        ),
    ],
)
def test_a_leg_without_a_usable_quote_refuses_the_spread(
    change: dict[str, dict[str, float | None]], problem: str
) -> None:
    chain = [q.model_copy(update=change.get(q.symbol, {})) if q.expiry == EXPIRY else q for q in CALLS]
    with pytest.raises(SpreadError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        choose(chain)


def test_no_expiry_late_enough_is_a_refusal_that_lists_the_expiries() -> None:
    with pytest.raises(SpreadError, match=r"no SPY call expiry on or after 2021-07-26 .*expiries listed: 2021-07-23\)"):
        choose(CALLS[:1])


# --- the risk gate ---

EQUITY = Decimal(100_000)
INSTRUMENT = instrument_from_asset(recorded("trading", "get_asset") | {"symbol": "SPY"}, "alpaca")
BUY = Signal(
    action=Action.BUY,
    symbol="SPY",
    entry=Decimal("430.10"),
    stop=Decimal("428.00"),
    take_profits=(Decimal("434.20"),),
    horizon_bars=48,
    timeframe="15m",
    confidence=0.8,
)


def gate(contracts: int, signal: Signal = BUY, **context: object):  # type: ignore[no-untyped-def]
    plan = plan_of(choose(CALLS), contracts)
    proposal = spread_proposal(signal, plan, venue="alpaca", costs_on=date(2021, 7, 20))
    facts = RiskContext(now=datetime(2021, 7, 20, 15, tzinfo=UTC), equity=EQUITY, day_start_equity=EQUITY, **context)  # type: ignore[arg-type]
    return risk_gate.check(
        proposal, facts, profile("medium"), INSTRUMENT, slippage_bps=Decimal(5), spread_min_reward_risk=0.8
    )


def test_the_gate_allows_a_spread_whose_max_loss_fits_the_budget() -> None:
    verdict, proposal = gate(5)
    assert verdict.decision == "allow" and verdict.qty == 5, verdict.reasons
    detail = {c.rule: c.detail for c in verdict.checks}
    assert detail["max_loss"] == (
        "max loss 951.00 USD (5 contracts, fees included) within the risk budget 1000.00 USD (1.00% of equity)"
    )
    assert (proposal.loss_at_stop, proposal.expected_net_profit) == (Decimal("951.00"), Decimal("1049.00"))


def test_the_gate_refuses_a_spread_whose_max_loss_exceeds_the_budget() -> None:
    verdict, _ = gate(6)  # 6 x 190.20 = 1,141.20 > 1,000
    assert verdict.decision == "block" and verdict.qty == 0
    assert verdict.reasons == [
        "max loss 1141.20 USD (6 contracts, fees included) above the risk budget 1000.00 USD (1.00% of equity)"
    ]


def test_the_gate_shrinks_a_premium_above_the_position_cap_and_keeps_every_entry_rule() -> None:
    verdict, proposal = gate(5, killed=True, kill_reason="lunch")
    assert verdict.decision == "block" and verdict.reasons == ["trading is paused: lunch"]
    verdict, proposal = gate(200)  # 200 x 190 = 38,000 premium > the 20,000 cap: shrunk to 105, then over budget
    assert proposal.spread is not None and proposal.spread.contracts == 105
    assert verdict.decision == "block"
    assert "premium 38000.00 above the cap 20000.00 USD: shrunk to 105 contracts" in [c.detail for c in verdict.checks]


def test_a_bear_put_spread_needs_no_short_sale() -> None:
    short = Signal(
        action=Action.SHORT, symbol="SPY", entry=Decimal("430.10"), stop=Decimal("432.00"),
        take_profits=(Decimal("426.40"),), confidence=0.8,
    )  # fmt: skip
    hard_to_borrow = INSTRUMENT.model_copy(update={"short": None, "no_short_reason": "hard to borrow"})
    plan = plan_of(choose(CALLS), 5)  # the numbers only matter for the size rules here
    proposal = spread_proposal(short, plan, venue="alpaca", costs_on=date(2021, 7, 20))
    facts = RiskContext(now=datetime(2021, 7, 20, 15, tzinfo=UTC), equity=EQUITY, day_start_equity=EQUITY)
    verdict, _ = risk_gate.check(proposal, facts, profile("medium"), hard_to_borrow, slippage_bps=Decimal(5))
    assert "short_allowed" not in {c.rule for c in verdict.checks}


# --- the whole walk on the fake Alpaca ---

AT = datetime(2021, 7, 20, 15, 15, 5, tzinfo=UTC)  # SPY's rule policy proposes a BUY here
TRADER = Caller("telegram", 1002, "tom")
ORDER_ROUTE = "POST /v2/orders"


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(AT)


@pytest.fixture
def fake(clock: SimulatedClock) -> Iterator[FakeAlpaca]:
    with FakeAlpaca(now=clock.now).serving() as served:
        yield served


async def services_for(
    tmp_path: Path, fake: FakeAlpaca, clock: SimulatedClock, options: str
) -> AsyncIterator[Services]:
    settings = alpaca_settings(fake, tmp_path / "data", risk_profile="high", options=options)
    async with open_services(settings, clock=clock) as services:
        services.users.grant(TRADER.platform, TRADER.user_id, Role.TRADER, at=clock.now(), display_name="tom")
        services.watchlists.create(SPEC, at=clock.now())
        yield services


SPEC = WatchlistSpec(name="us", venue="alpaca", symbols=("SPY",), timeframe="15m", min_score=0.5)


@pytest.fixture
async def spreads_on(tmp_path: Path, fake: FakeAlpaca, clock: SimulatedClock) -> AsyncIterator[Services]:
    async for services in services_for(tmp_path, fake, clock, "spreads"):
        yield services


async def test_a_buy_on_spy_becomes_a_bull_call_spread_ordered_once_and_closed_at_tp1(
    spreads_on: Services, fake: FakeAlpaca, clock: SimulatedClock
) -> None:
    core = CommandCore(spreads_on)
    report = await spreads_on.scanner.scan(SPEC, trigger="manual")
    assert len(report.pending) == 1, report.walks
    walk = report.pending[0]
    card = walk.card
    assert card is not None
    spread = card["spread"]
    # The fake's chain (Black-Scholes at 20% vol, quotes +-0.05 around it) at SPY 430.39: the
    # first expiry at least 2 days after the 48 x 15m time stop (07-22) is 07-30; the 431 call has
    # the delta nearest 0.5 (0.49); TP1 433.05 is nearest the 433 strike.
    assert (spread["long_leg"], spread["short_leg"], spread["expiry"], spread["close_by"]) == (
        "SPY210730C00431000",
        "SPY210730C00433000",
        "2021-07-30",
        "2021-07-29",
    )
    # net debit = long ask 5.49 - short bid 4.49 = 1.00; high profile: 2% of 103,820.56 equity =
    # 2,076.41 USD of risk; one contract loses at most 100 + 0.20 fees, so 20 contracts.
    assert (spread["long_ask"], spread["short_bid"], spread["net_debit"], card["qty"]) == ("5.49", "4.49", "1.00", "20")
    assert (card["loss_at_stop"], card["expected_net_profit"], card["costs"]) == ("2004.00", "1996.00", "4.00")
    text = card_text(card)
    for line in (
        "BUY SPY on alpaca as a bull call spread [15m]",
        "SPY: entry 430.39  stop 428.62  TP1 433.05 (the stop or TP1 closes the spread)",
        "  buy  SPY210730C00431000  (431 call)",
        "  = buy SPY 2021-07-30 431 call, sell SPY 2021-07-30 433 call",
        "  net debit 1.00 a share = 2,000.00 USD",
        "  max loss 2,000.00 USD, max gain 2,000.00 USD, breakeven 432.00",
        "  with fees 4.00 USD (round trip): max loss 2,004.00 USD, max gain 1,996.00 USD; expiry 2021-07-30",
        "else on 2021-07-29 (the last session before expiry)",
        "size 20 contracts (premium 2,000.00 USD)",
        "risk: allow (all checks passed)",
    ):
        assert line in text, text

    # Approve: the POST reaches Alpaca and its answer is a 429; the retry finds it by client order id.
    fake.fail(ORDER_ROUTE, 429, retry_after="0", after_work=True)
    approved = await core.handle(TRADER, f"/approve {walk.signal_id}")
    assert approved.ok and f"approved by telegram:1002: spread order {walk.signal_id} filled" in approved.text, (
        approved.text
    )
    assert not fake.faults[ORDER_ROUTE], "the 429 was answered"
    assert fake.hits[ORDER_ROUTE] == 1 and list(fake.orders) == [walk.signal_id]
    sent = fake.orders[walk.signal_id]
    assert (sent["order_class"], sent["type"], sent["limit_price"], Decimal(sent["qty"])) == ("mleg", "limit", 1.0, 20)
    assert [(leg["symbol"], leg["side"]) for leg in sent["legs"]] == [
        ("SPY210730C00431000", "buy"),
        ("SPY210730C00433000", "sell"),
    ]
    again = await core.handle(TRADER, f"/approve {walk.signal_id}")
    assert "already" in again.text and list(fake.orders) == [walk.signal_id], again.text
    row = spreads_on.signals.get(walk.signal_id)
    assert row is not None and row.status == "executed"
    assert row.card["execution"]["legs_order"]["legs"] == ["buy 1 SPY210730C00431000", "sell 1 SPY210730C00433000"]

    orders = await core.handle(TRADER, "/orders")
    assert "buy 1 SPY210730C00431000 / sell 1 SPY210730C00433000  20   mleg limit 1.00  filled" in orders.text, (
        orders.text
    )
    positions = await core.handle(TRADER, "/positions")
    assert "SPY210730C00431000 (SPY 2021-07-30 431 call)  20.00" in positions.text, positions.text
    assert "SPY210730C00433000 (SPY 2021-07-30 433 call)  -20.00" in positions.text, positions.text
    assert "stop 428.62 TPs 433.05 hit 0" in positions.text, positions.text  # the spread's plan, on its legs

    # While the spread is open, another BUY on SPY is not a second spread (as a stock held is not added to).
    second = await core.handle(TRADER, "/signal alpaca:SPY")
    assert f"the spread of signal {walk.signal_id} is open; its plan closes it" in second.text, second.text
    assert len(fake.orders) == 1

    manager = spreads_on.scanner.manager
    opened = await manager.tick("alpaca")
    assert [e.kind for e in opened] == ["opened"]
    events = []
    while not any(e.kind == "closed" for e in events) and clock.now() < AT + timedelta(days=3):
        clock.advance(timedelta(minutes=30))
        events.extend(await manager.tick("alpaca"))
    exit_, closed = events
    assert exit_.text == "closing the bull call spread (20 contracts) at market: SPY 433.07 reached TP1 433.05"
    close = fake.orders[spread_close_order_id(walk.signal_id)]
    assert (close["type"], [(leg["symbol"], leg["side"]) for leg in close["legs"]]) == (
        "market",
        [("SPY210730C00431000", "sell"), ("SPY210730C00433000", "buy")],
    )
    assert closed.kind == "closed" and "P&L" in closed.text
    assert "no open positions" in (await core.handle(TRADER, "/positions")).text
    plan = spreads_on.plans.get(walk.signal_id)
    assert plan is not None and plan.status == "closed"


async def test_the_last_session_before_expiry_closes_the_spread(
    spreads_on: Services, fake: FakeAlpaca, clock: SimulatedClock
) -> None:
    report = await spreads_on.scanner.scan(SPEC, trigger="manual")
    signal_id = report.pending[0].signal_id
    assert (await CommandCore(spreads_on).handle(TRADER, f"/approve {signal_id}")).ok
    manager = spreads_on.scanner.manager
    await manager.tick("alpaca")
    plan = spreads_on.plans.get(signal_id)
    assert plan is not None and plan.time_stop_at == datetime(2021, 7, 29, 13, 30, tzinfo=UTC)  # 09:30 New York
    # Keep SPY between the stop and TP1 (the plan's levels, which the manager watches), then reach 07-29.
    spreads_on.plans.set_levels(signal_id, stop=Decimal(1), take_profits=["9999"], trailing_stop=None, at=clock.now())
    clock.advance_to(datetime(2021, 7, 29, 13, 45, tzinfo=UTC))
    events = await manager.tick("alpaca")
    assert [e.text for e in events] == [
        "closing the bull call spread (20 contracts) at market: the last session before expiry (2021-07-29)"
    ]


async def test_a_leg_without_a_quote_blocks_the_signal_with_the_reason(spreads_on: Services, fake: FakeAlpaca) -> None:
    fake.option_quotes["SPY210730C00431000"] = None
    report = await spreads_on.scanner.scan(SPEC, trigger="manual")
    (walk,) = report.walks
    assert walk.status == "blocked"
    assert walk.reason.startswith(
        "no bull call spread for SPY: no two-sided quote for SPY210730C00431000 (bid -, ask -): "
        "the leg cannot be priced"
    ), walk.reason
    assert not fake.orders


async def test_with_options_off_the_buy_stays_a_stock_trade(
    tmp_path: Path, fake: FakeAlpaca, clock: SimulatedClock
) -> None:
    async for services in services_for(tmp_path, fake, clock, "off"):
        report = await services.scanner.scan(SPEC, trigger="manual")
        (walk,) = report.pending
        assert walk.card is not None and walk.card["spread"] is None and walk.card["spread_lines"] == []
        assert "as a bull call spread" not in card_text(walk.card)
        assert not any(p.startswith("/v1beta1/options") for _, p, _ in fake.requests)  # no chain read
        assert (await CommandCore(services).handle(TRADER, f"/approve {walk.signal_id}")).ok
        assert [o["symbol"] for o in fake.orders.values()] == ["SPY"]
        assert fake.orders[walk.signal_id]["order_class"] == "simple"


def test_the_setting_names_its_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="options"):
        load_settings(data_dir=tmp_path, options="straddles")
    assert load_settings(data_dir=tmp_path).spread_rules is None
    assert load_settings(
        data_dir=tmp_path, options="spreads", options_expiry_buffer_days=5
    ).spread_rules == SpreadRules(expiry_buffer_days=5)


class ShortPolicy:
    """A bearish decision at the last price: stop 2 above, TP1 3 below."""

    name = "short-stub"

    async def decide(self, facts: DecisionInput) -> Signal:
        entry = Decimal(repr(facts.last_price)).quantize(Decimal("0.01"))
        return Signal(
            action=Action.SHORT,
            symbol=facts.symbol,
            entry=entry,
            stop=entry + 2,
            take_profits=(entry - 3,),
            horizon_bars=48,
            timeframe=facts.timeframe,
            confidence=0.8,
            policy=self.name,
        )


async def test_a_short_becomes_a_bear_put_spread_closed_at_its_stop(
    spreads_on: Services, fake: FakeAlpaca, clock: SimulatedClock
) -> None:
    spreads_on.deps.policy = ShortPolicy()
    core = CommandCore(spreads_on)
    reply = await core.handle(TRADER, "/signal alpaca:SPY")
    assert reply.ok, reply.text
    (card,) = reply.data["cards"]
    spread = card["spread"]
    # SPY 430.39: stop 432.39, TP1 427.39; the 431 put has the delta nearest -0.5 (-0.51; the 430
    # put's is -0.48), 427 is the strike nearest TP1.
    assert (spread["name"], spread["long_leg"], spread["short_leg"]) == (
        "bear put spread",
        "SPY210730P00431000",
        "SPY210730P00427000",
    )
    assert Decimal(spread["net_debit"]) == Decimal(spread["long_ask"]) - Decimal(spread["short_bid"])
    text = card_text(card)
    assert "SHORT SPY on alpaca as a bear put spread" in text and "SHORT: sells to open" not in text, text
    assert "when SPY trades at or above the stop 432.39 or at or below TP1 427.39" in text, text
    assert (await core.handle(TRADER, f"/approve {card['signal_id']}")).ok
    sent = fake.orders[card["signal_id"]]
    assert [(leg["symbol"], leg["side"]) for leg in sent["legs"]] == [
        ("SPY210730P00431000", "buy"),
        ("SPY210730P00427000", "sell"),
    ]
    events = []
    while not any(e.kind == "closed" for e in events) and clock.now() < AT + timedelta(days=3):
        clock.advance(timedelta(minutes=30))
        events.extend(await spreads_on.scanner.manager.tick("alpaca"))
    assert [e.kind for e in events] == ["opened", "exit", "closed"], events
    assert "reached the stop 432.39" in events[1].text
    close = fake.orders[spread_close_order_id(card["signal_id"])]
    assert [(leg["symbol"], leg["side"]) for leg in close["legs"]] == [
        ("SPY210730P00431000", "sell"),
        ("SPY210730P00427000", "buy"),
    ]


async def test_with_spreads_on_a_venue_without_option_chains_trades_the_stock(tmp_path: Path) -> None:
    """The replay venue serves no chains: the spread step passes the decision on unchanged."""
    settings = load_settings(data_dir=tmp_path / "data", market_data="replay", options="spreads")
    clock = SimulatedClock(datetime(2021, 7, 20, 15, 15, 5, tzinfo=UTC))
    async with open_services(settings, clock=clock) as services:
        plan = await choose_spread(
            services.deps,
            venue_name="replay-us",
            symbol="SPY",
            timeframe="15m",
            signal=BUY,
        )
        assert plan == {}


def test_legs_a_policy_names_are_checked_like_chosen_ones() -> None:
    def named(*legs: str, bullish: bool = True):  # type: ignore[no-untyped-def]
        return named_legs(CALLS, legs, underlying="SPY", bullish=bullish, not_before=date(2021, 7, 26), rules=RULES)

    chosen = named("SPY210730C00429000", "SPY210730C00433000")
    assert (chosen.long.strike, chosen.short.strike, chosen.net_debit) == (429, 433, Decimal("2.10"))  # 3.70 - 1.60
    for legs, problem in [
        (("SPY210730C00433000", "SPY210730C00429000"), "buys the lower strike and sells the other"),
        (("SPY210723C00430000", "SPY210730C00434000"), "share one expiry"),
        (("SPY210723C00430000", "SPY210723C00434000"), "ends before the plan's time stop"),
        (("SPY210730C00430000", "SPY210730C00432000"), "SPY210730C00432000 not in the SPY option chain"),
        (("SPY210730P00430000", "SPY210730P00426000"), "trades SPY calls, not SPY 2021-07-30 430 put"),
        (("SPY210730C00430000",), "names 2 contracts"),
    ]:
        with pytest.raises(SpreadError, match=problem):
            named(*legs)


class ScriptedModel:
    """A ChatClient that answers every decision with one JSON object, and keeps what it was asked."""

    model, provider, supports_tools = "stub", "generic", False

    def __init__(self, answer: dict[str, object]) -> None:
        self.answer = answer
        self.asked: list[tuple[list[dict[str, object]], dict[str, object] | None]] = []

    async def chat(self, messages, *, tools=None, json_schema=None, max_tokens=None) -> ChatResult:  # type: ignore[no-untyped-def]
        self.asked.append((messages, json_schema))
        record = CallRecord(
            model="stub", provider="generic", latency_ms=1.0, prompt_tokens=1, completion_tokens=1,
            cost_usd=Decimal(0), cached=False, request_hash="h", attempts=1, outcome="ok",
        )  # fmt: skip
        return ChatResult({"role": "assistant", "content": json.dumps(self.answer)}, "stop", record)


def llm_buy(legs: list[str] | None) -> dict[str, object]:
    return {
        "action": "BUY", "confidence": 0.8, "entry": 430.39, "stop": 428.5, "take_profits": [433.5],
        "horizon_bars": 48, "reason": "trend", "risk_notes": [], "option_legs": legs,
    }  # fmt: skip


async def test_the_llm_may_name_the_spread_legs(spreads_on: Services, fake: FakeAlpaca, clock: SimulatedClock) -> None:
    model = ScriptedModel(llm_buy(["SPY210730C00430000", "SPY210730C00434000"]))
    spreads_on.deps.policy = LLMPolicy(model, spreads_on.deps, spreads_on.settings.llm_config)
    core = CommandCore(spreads_on)
    reply = await core.handle(TRADER, "/signal alpaca:SPY")
    (card,) = reply.data["cards"]
    (messages, schema), *_ = model.asked
    assert OPTIONS_NOTE in str(messages[0]["content"]) and schema is not None
    assert "option_legs" in schema["schema"]["required"]  # type: ignore[index]
    spread = card["spread"]
    assert (spread["long_leg"], spread["short_leg"], spread["chosen_by"]) == (
        "SPY210730C00430000",
        "SPY210730C00434000",
        "llm:stub",
    )
    assert "legs named by llm:stub" in card_text(card)

    # Legs that do not make the spread block the signal with the reason; no others are swapped in.
    assert (await core.handle(TRADER, f"/reject {card['signal_id']}")).ok
    clock.advance(timedelta(minutes=15))  # the next bar: a new signal
    model.answer = llm_buy(["SPY210730P00430000", "SPY210730P00426000"])
    blocked = await core.handle(TRADER, "/signal alpaca:SPY")
    assert blocked.data["status"] == "blocked", blocked.text
    row = spreads_on.signals.get(blocked.data["signal_id"])
    assert row is not None
    card = row.card
    assert (
        "no bull call spread for SPY with the legs llm:stub named: a bull call spread on SPY trades SPY calls, "
        "not SPY 2021-07-30 430 put"
    ) in card_text(card)
    assert not fake.orders


async def test_without_spreads_the_llm_is_not_asked_for_legs(
    tmp_path: Path, fake: FakeAlpaca, clock: SimulatedClock
) -> None:
    async for services in services_for(tmp_path, fake, clock, "off"):
        model = ScriptedModel(llm_buy(["SPY210730C00430000", "SPY210730C00434000"]))
        services.deps.policy = LLMPolicy(model, services.deps, services.settings.llm_config)
        reply = await CommandCore(services).handle(TRADER, "/signal alpaca:SPY")
        row = services.signals.get(reply.data["signal_id"])
        assert row is not None
        card = row.card
        (messages, schema), *_ = model.asked
        assert OPTIONS_NOTE not in str(messages[0]["content"]) and schema == ANSWER_SCHEMA
        assert card["spread"] is None and "option_legs ignored: option spreads are off here" in card_text(card)
