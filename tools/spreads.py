"""A directional signal expressed as a defined-risk debit vertical spread, chosen from the live
option chain and sized by its max loss. Pure functions over chain quotes; money in USD, option
prices per share, 100 shares a contract (tools.options has the spread arithmetic).

The choice, for a BUY (bull call spread) or a SHORT (bear put spread) on the underlying:

- expiry: the first one on or after the day the plan's time stop ends, plus ``expiry_buffer_days``
  calendar days (an expiry inside the plan's life would force an early close);
- long leg: the strike whose delta is nearest 0.5 in size when every candidate has a delta, else the
  strike nearest the entry (at the money);
- short leg: the strike nearest TP1 beyond the long leg (above it for calls, below for puts);
- net debit: the long leg's ask less the short leg's bid (cautious: what crossing both spreads
  costs). A leg without a bid and an ask, or whose ask - bid exceeds ``max_leg_spread_pct`` of its
  mid, refuses the spread with the reason (SpreadError), as does a debit that is not below the width.

Sizing: whole contracts such that the max loss (net debit x 100 x contracts + the round trip's
fees, four leg fills a contract) stays within the risk budget (equity x risk per trade), capped by
the profile's maximum position value (the premium paid) and the cash. The exits are watched on the
underlying: the spread is closed by one closing multi-leg order when the underlying reaches the
stop or TP1, and at the latest on the last session before expiry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, Decimal

from storage.tables import TradePlan
from tools.models import Proposal, Signal
from tools.options import CENT, LEG_FILLS_PER_CONTRACT, SpreadError, SpreadPlan
from venues.options import CONTRACT_MULTIPLIER, OccSymbol, OptionQuote, OptionRight

ZERO = Decimal(0)


SPREAD_CLOSE_SUFFIX = "-xs"


def spread_close_order_id(entry_id: str) -> str:
    """The client order id of the multi-leg order that closes the spread opened by ``entry_id``."""
    return f"{entry_id}{SPREAD_CLOSE_SUFFIX}"


def is_spread_plan(plan: TradePlan) -> bool:
    """A trade plan of an option spread (its one exit is the closing multi-leg order)."""
    return plan.exit_orders == [spread_close_order_id(plan.signal_id)]


@dataclass(frozen=True, slots=True)
class SpreadRules:
    """How signals become spreads (``TRADEOPS_OPTIONS=spreads``); None in the agent config = off."""

    expiry_buffer_days: int = 2  # calendar days after the plan's time stop an expiry must leave
    max_leg_spread_pct: Decimal = Decimal("0.25")  # a leg's ask - bid, as a share of its mid
    # Alpaca charges no option commission; the regulatory and clearing fees per contract (ORF, OCC,
    # FINRA TAF on sells) add up to a few cents: assumed at this much per contract per leg fill.
    fee_per_contract: Decimal = Decimal("0.05")
    # The gate's minimum reward/risk for a spread (max gain / max loss, both after fees) in place of
    # the profile's, which measures a stock trade's targets against its stop: a debit spread bought
    # at the money with its short strike at TP1 pays about its width for half of it, near 1:1.
    min_reward_risk: float = 0.8


@dataclass(frozen=True, slots=True)
class ChosenLegs:
    long: OptionQuote
    short: OptionQuote
    net_debit: Decimal  # per share: long ask - short bid


def expiry_not_before(horizon_day: date, rules: SpreadRules) -> date:
    return date.fromordinal(horizon_day.toordinal() + rules.expiry_buffer_days)


def choose_legs(
    chain: list[OptionQuote],
    *,
    underlying: str,
    bullish: bool,
    entry: Decimal,
    target: Decimal,
    not_before: date,
    rules: SpreadRules,
) -> ChosenLegs:
    """The debit spread's legs from ``chain`` (see the module docstring); SpreadError says why none."""
    right = OptionRight.CALL if bullish else OptionRight.PUT
    kind = "bull call spread" if bullish else "bear put spread"
    mine = [q for q in chain if q.right is right and q.underlying == underlying]
    expiries = sorted({q.expiry for q in mine if q.expiry >= not_before})
    if not expiries:
        listed = ", ".join(sorted({q.expiry.isoformat() for q in mine})) or "none"
        raise SpreadError(
            f"no {underlying} {right.value} expiry on or after {not_before.isoformat()} for a {kind} "
            f"(expiries listed: {listed})"
        )
    expiry = expiries[0]
    strikes = sorted((q for q in mine if q.expiry == expiry), key=lambda q: q.strike)
    if all(q.delta is not None for q in strikes):
        long = min(strikes, key=lambda q: (abs(abs(q.delta or 0) - 0.5), abs(q.strike - entry)))
    else:
        long = min(strikes, key=lambda q: (abs(q.strike - entry), q.strike))
    beyond = [q for q in strikes if (q.strike > long.strike if bullish else q.strike < long.strike)]
    if not beyond:
        side = "above" if bullish else "below"
        raise SpreadError(
            f"no {underlying} {expiry.isoformat()} {right.value} strike {side} the long leg "
            f"{long.strike.normalize():f} to sell for a {kind}"
        )
    short = min(beyond, key=lambda q: (abs(q.strike - target), abs(q.strike - long.strike)))
    return _priced(long, short, kind, rules)


def named_legs(
    chain: list[OptionQuote],
    legs: tuple[str, ...],
    *,
    underlying: str,
    bullish: bool,
    not_before: date,
    rules: SpreadRules,
) -> ChosenLegs:
    """The debit spread a policy named (``[bought, sold]`` OCC symbols), checked like a chosen one:
    the underlying's, one expiry on or after ``not_before``, calls for a bullish spread and puts for
    a bearish one, bought nearer the money (a debit), both in ``chain`` with usable quotes."""
    kind = "bull call spread" if bullish else "bear put spread"
    right = OptionRight.CALL if bullish else OptionRight.PUT
    if len(legs) != 2:
        raise SpreadError(f"a {kind} names 2 contracts, [bought, sold]; got {len(legs)}")
    long_occ, short_occ = (OccSymbol.parse(leg) for leg in legs)
    for occ in (long_occ, short_occ):
        if occ.underlying != underlying or occ.right is not right:
            raise SpreadError(f"a {kind} on {underlying} trades {underlying} {right.value}s, not {occ.describe()}")
    if long_occ.expiry != short_occ.expiry:
        raise SpreadError(f"a {kind}'s legs share one expiry; got {long_occ.expiry} and {short_occ.expiry}")
    if long_occ.expiry < not_before:
        raise SpreadError(
            f"the expiry {long_occ.expiry.isoformat()} ends before the plan's time stop and buffer "
            f"({not_before.isoformat()})"
        )
    nearer = long_occ.strike < short_occ.strike if bullish else long_occ.strike > short_occ.strike
    if not nearer:
        raise SpreadError(
            f"a {kind} buys the {'lower' if bullish else 'higher'} strike and sells the other; "
            f"got buy {long_occ.strike.normalize():f}, sell {short_occ.strike.normalize():f}"
        )
    listed = {q.symbol: q for q in chain}
    missing = [occ.format() for occ in (long_occ, short_occ) if occ.format() not in listed]
    if missing:
        raise SpreadError(f"{', '.join(missing)} not in the {underlying} option chain")
    return _priced(listed[long_occ.format()], listed[short_occ.format()], kind, rules)


def _priced(long: OptionQuote, short: OptionQuote, kind: str, rules: SpreadRules) -> ChosenLegs:
    """The legs with their net debit (long ask - short bid), or SpreadError when a quote is
    missing or too wide, or the debit is not a debit below the width."""
    for leg in (long, short):
        _check_quote(leg, rules)
    assert long.ask is not None and short.bid is not None
    net = (Decimal(repr(long.ask)) - Decimal(repr(short.bid))).quantize(CENT)
    width = abs(long.strike - short.strike)
    if net <= 0:
        raise SpreadError(
            f"the {kind} {long.symbol} / {short.symbol} would not be a debit (ask {long.ask} - bid {short.bid}): "
            "the quotes are crossed or stale"
        )
    if net >= width:
        raise SpreadError(
            f"the {kind} {long.symbol} / {short.symbol} costs {net} a share, not below the strike width "
            f"{width.normalize():f}: it could not gain"
        )
    return ChosenLegs(long=long, short=short, net_debit=net)


def _check_quote(quote: OptionQuote, rules: SpreadRules) -> None:
    bid, ask = quote.bid, quote.ask
    if bid is None or ask is None or not bid > 0 or not ask > 0:
        shown = f"bid {bid if bid else '-'}, ask {ask if ask else '-'}"
        raise SpreadError(f"no two-sided quote for {quote.symbol} ({shown}): the leg cannot be priced")
    if ask < bid:
        raise SpreadError(f"the quote of {quote.symbol} is crossed (bid {bid} above ask {ask})")
    mid = (bid + ask) / 2
    width = (ask - bid) / mid
    if Decimal(repr(width)) > rules.max_leg_spread_pct:
        raise SpreadError(
            f"the quote of {quote.symbol} is too wide: bid {bid}, ask {ask} is {width:.0%} of the mid; "
            f"at most {rules.max_leg_spread_pct:.0%}"
        )


def contracts_for(
    net_debit: Decimal,
    *,
    equity: Decimal,
    cash: Decimal,
    risk_per_trade_pct: Decimal,
    max_position_pct: Decimal,
    rules: SpreadRules,
) -> tuple[int, list[str]]:
    """Whole contracts whose max loss fits the risk budget, whose premium fits the maximum position
    value and whose premium and fees fit the cash; with a note for each cap that bit."""
    per_contract_loss = net_debit * CONTRACT_MULTIPLIER + rules.fee_per_contract * LEG_FILLS_PER_CONTRACT
    premium = net_debit * CONTRACT_MULTIPLIER
    budget = equity * risk_per_trade_pct
    notes: list[str] = []
    contracts = _whole(budget / per_contract_loss)
    by_cap = _whole(equity * max_position_pct / premium)
    if by_cap < contracts:
        contracts = by_cap
        notes.append(f"capped at {by_cap} contracts by the maximum position value")
    by_cash = _whole(max(cash, ZERO) / per_contract_loss)
    if by_cash < contracts:
        contracts = by_cash
        notes.append(f"capped at {by_cash} contracts by the cash available {cash:.2f} USD")
    if contracts == 0 and not notes:
        notes.append(
            f"one contract's max loss {per_contract_loss:.2f} USD is above the risk budget {budget:.2f} USD "
            f"({risk_per_trade_pct:.2%} of equity)"
        )
    return contracts, notes


def _whole(amount: Decimal) -> int:
    return int(amount.to_integral_value(rounding=ROUND_FLOOR)) if amount > 0 else 0


def spread_proposal(
    signal: Signal, plan: SpreadPlan, *, venue: str, costs_on: date, notes: tuple[str, ...] = ()
) -> Proposal:
    """The risk gate's view of a spread: quantity = contracts, notional = the premium paid, loss at
    the stop = the max loss (a debit spread can lose no more, wherever the underlying goes), and
    the expected net profit = the max gain after fees (reached at expiry beyond the short strike;
    closed earlier at TP1 it is worth less: a note says so)."""
    loss = plan.max_loss
    gain = plan.max_gain
    return Proposal(
        venue=venue,
        symbol=plan.underlying,
        currency="USD",
        signal=signal,
        qty=Decimal(plan.contracts),
        notional=plan.premium,
        fees_round_trip=plan.fees_round_trip,
        loss_at_stop=loss,
        expected_net_profit=gain,
        reward_risk=float(gain / loss) if loss > 0 else 0.0,
        exit_weights=(Decimal(1),),
        exit_qtys=(Decimal(plan.contracts),),
        planned_exit_weights=(Decimal(1),),
        costs_on=costs_on,
        spread=plan,
        notes=(
            *notes,
            "max gain is at expiry with the underlying beyond the short strike; closed at TP1 before "
            "then the spread is worth less",
        ),
    )


def resized(proposal: Proposal, contracts: int, note: str) -> Proposal:
    """The spread proposal at ``contracts`` (the risk gate's shrink)."""
    assert proposal.spread is not None
    plan = proposal.spread.model_copy(update={"contracts": contracts})
    notes = tuple(n for n in proposal.notes if not n.startswith("max gain is at expiry"))
    return spread_proposal(
        proposal.signal, plan, venue=proposal.venue, costs_on=proposal.costs_on or plan.expiry, notes=(*notes, note)
    )
