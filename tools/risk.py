"""The deterministic risk gate. It sees a sized proposal and the account's situation and may allow,
shrink or block it, with a reason for every rule that bit. No policy, and no LLM, can bypass it:
the graph runs it after every decision and again just before the order.

Rules for a BUY, in order (each one's outcome is listed on the card):
  kill switch, daily loss limit, trades per day, cooldown per symbol, concurrent positions,
  minimum confidence, correlation cap with positions held on the same venue, maximum position
  value (shrinks to the cap; a symbol already held counts against it), the venue's minimum order
  quantity (``Instrument.min_qty``, also after a shrink), the exit plan (the whole
  position sold at the slipped stop must clear the venue's minimum notional, also after a shrink;
  smaller tranches are merged by tools.sizing.exit_tranches, so this is the one exit that can fail),
  minimum expected net profit after all costs, minimum reward/risk.
A debit option spread (``Proposal.spread``) passes the same rules up to the correlation cap, then
its own size rules: its max loss (premium + fees) within the risk budget, its premium under the
maximum position value (shrunk in whole contracts), expected net profit, reward/risk.
A SHORT (sell-to-open) is an entry like a BUY and passes the same rules, after two of its own:
``short_allowed`` (the instrument may be sold short on this account, else blocked with the reason:
spot crypto, A-shares) and ``position_side`` (no short against a long held, no BUY against a short
held: a position is closed by its plan, not flipped). Exposure counts both sides: a short's value
counts against the maximum position value like a long's, and a short is a concurrent position.
A SELL reduces risk, so only the position itself is checked (T+1, quantity held; shrinks to what can
be sold now): the kill switch stops new entries, never exits.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from pydantic import BaseModel, ConfigDict, Field

from tools import spreads
from tools.models import Action, Proposal, RiskCheck, RiskVerdict
from tools.sizing import buy_increment, propose, round_down
from venues.costs import slipped_price
from venues.models import ZERO, Instrument, Side


class RiskProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    max_trades_per_day: int = Field(ge=0)
    cooldown: timedelta
    max_position_pct: Decimal = Field(gt=0, le=1)  # of equity
    risk_per_trade_pct: Decimal = Field(gt=0, le=Decimal("0.1"))  # equity lost if the stop is hit
    min_confidence: float = Field(ge=0, le=1)
    min_reward_risk: float = Field(ge=0)
    min_net_profit_pct: Decimal = Field(ge=0)  # expected net profit after costs, share of notional
    max_concurrent_positions: int = Field(ge=1)
    max_correlation: float = Field(gt=0, le=1)
    daily_loss_limit_pct: Decimal = Field(gt=0, le=1)


PROFILES: dict[str, RiskProfile] = {
    p.name: p
    for p in (
        RiskProfile(
            name="low",
            max_trades_per_day=2,
            cooldown=timedelta(hours=4),
            max_position_pct=Decimal("0.10"),
            risk_per_trade_pct=Decimal("0.005"),
            min_confidence=0.7,
            min_reward_risk=2.0,
            min_net_profit_pct=Decimal("0.01"),
            max_concurrent_positions=3,
            max_correlation=0.7,
            daily_loss_limit_pct=Decimal("0.01"),
        ),
        RiskProfile(
            name="medium",
            max_trades_per_day=5,
            cooldown=timedelta(hours=2),
            max_position_pct=Decimal("0.20"),
            risk_per_trade_pct=Decimal("0.01"),
            min_confidence=0.6,
            min_reward_risk=1.5,
            min_net_profit_pct=Decimal("0.005"),
            max_concurrent_positions=5,
            max_correlation=0.8,
            daily_loss_limit_pct=Decimal("0.02"),
        ),
        RiskProfile(
            name="high",
            max_trades_per_day=10,
            cooldown=timedelta(minutes=30),
            max_position_pct=Decimal("0.35"),
            risk_per_trade_pct=Decimal("0.02"),
            min_confidence=0.5,
            min_reward_risk=1.2,
            min_net_profit_pct=Decimal("0.002"),
            max_concurrent_positions=8,
            max_correlation=0.9,
            daily_loss_limit_pct=Decimal("0.04"),
        ),
    )
}


def profile(name: str) -> RiskProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown risk profile {name!r}; valid: {', '.join(PROFILES)}") from None


class RiskContext(BaseModel):
    """The account's situation when a proposal is judged; gathered by the graph, not by the gate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    now: datetime
    equity: Decimal
    day_start_equity: Decimal
    trades_today: int = 0  # entries ordered today on this venue
    last_trade_at: datetime | None = None  # last entry order in this symbol
    open_symbols: tuple[str, ...] = ()  # symbols held on this venue, long or short
    held_qty: Decimal = ZERO  # negative: a short
    sellable_qty: Decimal = ZERO
    killed: bool = False
    kill_reason: str = ""
    correlations: dict[str, float] = Field(default_factory=dict)  # candidate vs each held symbol


def check(
    proposal: Proposal,
    context: RiskContext,
    risk: RiskProfile,
    instrument: Instrument,
    *,
    slippage_bps: Decimal,
    on: date | None = None,
    spread_min_reward_risk: float | None = None,
) -> tuple[RiskVerdict, Proposal]:
    """Judge a proposal; returns the verdict and the proposal at the allowed size. A proposal the gate
    resizes is costed again at the fee rates of ``on``; by default the date it was costed for
    (``Proposal.costs_on``), or the UTC day of ``context.now`` for a proposal stored without one.
    ``spread_min_reward_risk``: a spread's minimum reward/risk (default: the profile's)."""
    costs_on = on or proposal.costs_on or context.now.date()
    if proposal.signal.action is Action.SELL:
        verdict = _check_sell(proposal, context)
        if verdict.decision == "shrink":
            proposal = _resize_sell(proposal, verdict.qty, instrument, slippage_bps, costs_on)
        return verdict, proposal
    if not proposal.signal.action.opens:
        block = RiskCheck(rule="action", passed=False, detail=f"{proposal.signal.action.value} places no order")
        return RiskVerdict(decision="block", qty=ZERO, checks=(block,)), proposal

    checks: list[RiskCheck] = []

    def rule(name: str, passed: bool, detail: str) -> bool:
        checks.append(RiskCheck(rule=name, passed=passed, detail=detail))
        return passed

    symbol = proposal.symbol
    long = proposal.signal.long
    if not long and proposal.spread is None:  # a bear put spread sells nothing short
        refusal = instrument.short_refusal()
        rule("short_allowed", refusal is None, refusal or f"{symbol} may be sold short on this account")
    # Held on the proposal's side (what the cap adds to) and against it (what it would flip).
    held_same = max(context.held_qty if long else -context.held_qty, ZERO)
    held_against = max(-context.held_qty if long else context.held_qty, ZERO)
    if held_against > 0:
        side = "short" if long else "long"
        rule(
            "position_side",
            False,
            f"a {side} of {held_against} {symbol} is held: it is closed by its own plan, not by a "
            f"{proposal.signal.action.value}",
        )
    rule(
        "kill_switch",
        not context.killed,
        f"trading is paused: {context.kill_reason or 'kill switch on'}" if context.killed else "trading is on",
    )
    loss_pct = (
        (context.day_start_equity - context.equity) / context.day_start_equity if context.day_start_equity > 0 else ZERO
    )
    rule(
        "daily_loss_limit",
        loss_pct < risk.daily_loss_limit_pct,
        f"today's loss {loss_pct:.2%} vs the limit {risk.daily_loss_limit_pct:.2%}",
    )
    rule(
        "max_trades_per_day",
        context.trades_today < risk.max_trades_per_day,
        f"{context.trades_today} trades today, limit {risk.max_trades_per_day}",
    )
    if context.last_trade_at is not None:
        since = context.now - context.last_trade_at
        rule(
            "cooldown",
            since >= risk.cooldown,
            f"last {symbol} trade {_minutes(since)} ago, cooldown {_minutes(risk.cooldown)}",
        )
    held = [s for s in context.open_symbols if s != symbol]
    rule(
        "max_concurrent_positions",
        symbol in context.open_symbols or len(held) < risk.max_concurrent_positions,
        f"{len(context.open_symbols)} positions open, limit {risk.max_concurrent_positions}",
    )
    rule(
        "min_confidence",
        proposal.signal.confidence >= risk.min_confidence,
        f"confidence {proposal.signal.confidence:.2f}, minimum {risk.min_confidence:.2f}",
    )
    worst = max(context.correlations.items(), key=lambda kv: abs(kv[1]), default=None)
    if worst is not None:
        rule(
            "correlation",
            abs(worst[1]) <= risk.max_correlation,
            f"correlation {worst[1]:+.2f} with {worst[0]} held, cap {risk.max_correlation:.2f}",
        )

    if proposal.spread is not None:
        minimum = risk.min_reward_risk if spread_min_reward_risk is None else spread_min_reward_risk
        return _spread_rules(proposal, context, risk, checks, minimum)

    cap_value = context.equity * risk.max_position_pct
    assert proposal.signal.entry is not None
    # The cap is on the position, long or short: adding to a symbol already held leaves only the
    # room above it.
    held_value = held_same * proposal.signal.entry
    room = cap_value - held_value
    held_note = f" ({held_value:.2f} already held)" if held_value > 0 else ""
    shrunk = False
    if proposal.notional <= room:
        rule("max_position_value", True, f"value {proposal.notional:.2f} within the cap {cap_value:.2f}{held_note}")
    else:
        qty = round_down(max(room, ZERO) / proposal.signal.entry, buy_increment(instrument))
        shrunk = qty > 0
        over = f"value {proposal.notional:.2f} above the cap {cap_value:.2f} {proposal.currency}{held_note}"
        rule("max_position_value", shrunk, f"{over}: shrunk to {qty}" if shrunk else f"{over}: not one lot fits")
        if shrunk:
            proposal = propose(
                proposal.signal,
                instrument,
                qty,
                slippage_bps=slippage_bps,
                on=costs_on,
                exit_weights=proposal.planned_exit_weights or proposal.exit_weights,
                notes=(*proposal.notes, f"shrunk by risk to {qty} (max position value)"),
            )

    if proposal.qty <= 0:
        rule("size", False, "size is zero: " + ("; ".join(proposal.notes) or "nothing fits"))
    elif proposal.qty < instrument.min_qty:
        rule(
            "min_qty",
            False,
            f"{'shrunk ' if shrunk else ''}size {proposal.qty} {symbol} is below the venue's minimum order "
            f"quantity of {instrument.min_qty}",
        )
    elif shrunk and proposal.notional < instrument.min_notional:
        rule(
            "min_notional",
            False,
            f"shrunk order value {proposal.notional:.2f} is below the venue minimum "
            f"{instrument.min_notional} {proposal.currency}",
        )
    else:
        # A venue with a minimum notional must take the whole position at the stop; tranches are
        # merged until each clears it (tools.sizing.exit_tranches), so the stop exit is the test.
        exitable = instrument.min_notional <= 0 or rule("exit_plan", *_stop_exit(proposal, instrument, slippage_bps))
        if exitable:
            floor = proposal.notional * risk.min_net_profit_pct
            rule(
                "min_expected_net_profit",
                proposal.expected_net_profit > 0 and proposal.expected_net_profit >= floor,
                f"net if all targets hit {proposal.expected_net_profit:.2f} {proposal.currency} after costs "
                f"{proposal.fees_round_trip:.2f}, minimum {floor:.2f} ({risk.min_net_profit_pct:.2%} of value)",
            )
            rule(
                "min_reward_risk",
                proposal.reward_risk >= risk.min_reward_risk,
                f"reward/risk {_floor2(proposal.reward_risk)} after costs, minimum {risk.min_reward_risk:.2f}",
            )
    blocked = any(not c.passed for c in checks)
    decision = "block" if blocked else ("shrink" if shrunk else "allow")
    return RiskVerdict(decision=decision, qty=ZERO if blocked else proposal.qty, checks=tuple(checks)), proposal


def _spread_rules(
    proposal: Proposal, context: RiskContext, risk: RiskProfile, checks: list[RiskCheck], min_reward_risk: float
) -> tuple[RiskVerdict, Proposal]:
    """The size rules of a debit spread: its max loss (premium and fees: all it can lose) is the
    trade's risk and must fit the risk budget; its premium is the position's value under the cap
    (shrunk in whole contracts); then the expected net profit and reward/risk, as for any entry."""
    spread = proposal.spread
    assert spread is not None

    def rule(name: str, passed: bool, detail: str) -> None:
        checks.append(RiskCheck(rule=name, passed=passed, detail=detail))

    shrunk = False
    cap_value = context.equity * risk.max_position_pct
    if proposal.notional > cap_value and spread.contracts > 0:
        per_contract = proposal.notional / spread.contracts
        contracts = int((cap_value / per_contract).to_integral_value(rounding=ROUND_DOWN))
        over = f"premium {proposal.notional:.2f} above the cap {cap_value:.2f} USD"
        shrunk = contracts > 0
        rule("max_position_value", shrunk, f"{over}: shrunk to {contracts} contracts" if shrunk else over)
        if shrunk:
            proposal = spreads.resized(proposal, contracts, f"shrunk by risk to {contracts} contracts")
    else:
        rule("max_position_value", True, f"premium {proposal.notional:.2f} within the cap {cap_value:.2f} USD")
    spread = proposal.spread
    assert spread is not None
    budget = context.equity * risk.risk_per_trade_pct
    if spread.contracts <= 0:
        rule("size", False, "size is zero: " + ("; ".join(proposal.notes) or "no contract fits"))
    else:
        rule(
            "max_loss",
            spread.max_loss <= budget,
            f"max loss {spread.max_loss:.2f} USD ({spread.contracts} contracts, fees included) "
            f"{'within' if spread.max_loss <= budget else 'above'} the risk budget {budget:.2f} USD "
            f"({risk.risk_per_trade_pct:.2%} of equity)",
        )
        floor = proposal.notional * risk.min_net_profit_pct
        rule(
            "min_expected_net_profit",
            proposal.expected_net_profit > 0 and proposal.expected_net_profit >= floor,
            f"max gain {proposal.expected_net_profit:.2f} USD after fees {proposal.fees_round_trip:.2f}, "
            f"minimum {floor:.2f} ({risk.min_net_profit_pct:.2%} of the premium)",
        )
        rule(
            "min_reward_risk",
            proposal.reward_risk >= min_reward_risk,
            f"reward/risk {_floor2(proposal.reward_risk)} (max gain / max loss), minimum {min_reward_risk:.2f}",
        )
    blocked = any(not c.passed for c in checks)
    decision = "block" if blocked else ("shrink" if shrunk else "allow")
    qty = ZERO if blocked else Decimal(spread.contracts)
    return RiskVerdict(decision=decision, qty=qty, checks=tuple(checks)), proposal


def _check_sell(proposal: Proposal, context: RiskContext) -> RiskVerdict:
    if context.held_qty <= 0:
        detail, ok, qty = f"no {proposal.symbol} position to sell", False, ZERO
    elif proposal.qty <= 0:
        detail, ok, qty = f"the proposal sells nothing ({proposal.qty} {proposal.symbol})", False, ZERO
    elif context.sellable_qty <= 0:
        detail, ok, qty = f"{proposal.symbol} bought today cannot be sold before the next session (T+1)", False, ZERO
    else:
        qty = min(proposal.qty, context.sellable_qty)
        ok = True
        detail = f"selling {qty} of {context.held_qty} held"
    check_ = RiskCheck(rule="position", passed=ok, detail=detail)
    decision = "block" if not ok else ("shrink" if qty < proposal.qty else "allow")
    return RiskVerdict(decision=decision, qty=qty, checks=(check_,))


def _stop_exit(proposal: Proposal, instrument: Instrument, slippage_bps: Decimal) -> tuple[bool, str]:
    """Whether the whole position, sold (a short: bought back) at the stop after slippage, is an
    order the venue takes."""
    assert proposal.signal.stop is not None
    stop = proposal.signal.stop
    fill = slipped_price(instrument, Side.SELL if proposal.signal.long else Side.BUY, stop, slippage_bps)
    value = proposal.qty * fill * instrument.multiplier
    minimum, currency = instrument.min_notional, proposal.currency
    at = f"{fill}" if fill == stop else f"{fill} (the stop {stop} after {slippage_bps} bps slippage)"
    exit_ = f"the stop exit of {proposal.qty} {proposal.symbol} at {at}"
    if value < minimum:
        # Rounded down: 9.996 against a minimum of 10 must not read "10.00".
        shown = value.quantize(Decimal("0.01"), rounding=ROUND_DOWN)
        return False, f"{exit_} is {shown} {currency}, below the venue minimum of {minimum} {currency}"
    tranches = " / ".join(format(q, "f") for q in proposal.exit_qtys)
    plan = f"; exits {tranches} at the targets" if tranches else ""
    return True, f"{exit_} is {value:.2f} {currency}, at least the venue minimum of {minimum} {currency}{plan}"


def _resize_sell(proposal: Proposal, qty: Decimal, instrument: Instrument, slippage_bps: Decimal, on: date) -> Proposal:
    """The SELL proposal re-costed at ``qty``, against the same cost basis."""
    return propose(
        proposal.signal,
        instrument,
        qty,
        slippage_bps=slippage_bps,
        on=on,
        avg_cost=proposal.avg_cost,
        notes=(*proposal.notes, f"shrunk to the {qty} sellable now"),
    )


def _floor2(value: float) -> str:
    """Two decimals rounded down: 1.498 against a minimum of 1.50 must not read "1.50"."""
    return f"{math.floor(value * 100) / 100:.2f}"


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
