"""Position size, costs and expected outcome of a signal: the numbers on the card.

Sizing is risk-based: the loss at the stop (slippage and the carry paid over the time stop
included; fees, small next to it, are not) is a fixed share of equity, capped by the largest
position the profile allows and by the cash available, rounded down to what the venue accepts
(A-share lots of 100, crypto step sizes); a size under the venue's minimum quantity or value is
skipped with the minimum named. Exits follow a partial-exit plan (30/40/30 at
TP1/TP2/TP3 by default) reshaped so the venue takes every order of it (``exit_tranches``), and the
expected profit is computed on those real tranches. Costs are at the fee rates of the expected fill
date, which the caller passes (``on``).

A SHORT (sell-to-open) mirrors a BUY: it sells at the entry less slippage, its risk per unit is
the slipped stop (above) less the slipped entry, its targets below are bought back, and the cash
it needs is its margin (value x ``ShortTerms.initial_margin``).

Carry: a perpetual's funding is paid by longs when its rate is positive and by shorts when it is
negative (``FundingTerms``); a short stock pays a borrow fee. What the proposed side would pay over
the time stop, counted in bar time (``horizon_bars`` x the signal's timeframe: for exchange hours a
lower bound) at the instrument's rate, is a cost of the plan (``Proposal.carry_cost``: in the costs,
the expected profit and the loss at the stop); funding it would receive is counted as zero (rates
turn), and a note says so. Without a time stop the carry is not counted, and a note says so.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from tools.models import Action, Proposal, Signal
from venues.costs import fees, slipped_price
from venues.models import ZERO, Instrument, Side
from venues.timeframes import parse_timeframe

DEFAULT_EXIT_WEIGHTS = (Decimal("0.3"), Decimal("0.4"), Decimal("0.3"))


def round_down(qty: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return qty
    return (qty / step).to_integral_value(rounding=ROUND_FLOOR) * step


def round_up(qty: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return qty
    return (qty / step).to_integral_value(rounding=ROUND_CEILING) * step


def buy_increment(instrument: Instrument) -> Decimal:
    return max(instrument.lot_size, instrument.qty_step)


def min_exit_qty(instrument: Instrument, stop_fill: Decimal | None) -> Decimal:
    """The smallest sell the venue takes as one order of a position bought in whole increments:
    one lot (A-shares: 100; crypto: the step; futures: one contract), at least the venue's minimum
    quantity (``min_qty``, rounded up to whole increments), and worth at least the venue's minimum
    notional at ``stop_fill`` (the slipped stop price: the lowest price a planned exit is expected
    at). Without a stop price the notional does not count."""
    increment = buy_increment(instrument)
    floor = max(increment, round_up(instrument.min_qty, increment))
    if stop_fill is None or stop_fill <= 0 or instrument.min_notional <= 0:
        return floor
    return max(floor, round_up(instrument.min_notional / (stop_fill * instrument.multiplier), increment))


def exit_tranches(
    instrument: Instrument,
    qty: Decimal,
    weights: tuple[Decimal, ...],
    *,
    stop_fill: Decimal | None = None,
) -> list[Decimal]:
    """Quantities sold at each target, one per weight, summing to ``qty``.

    Each target sells what its cumulative weight reaches, rounded down to whole lots (what rounding
    leaves over rolls to the next target, the last takes the rest): 200 A-shares at 30/40/30 sell
    0 / 100 / 100 (cumulative 60 -> 0, 140 -> 100, 200). A tranche below ``min_exit_qty`` (a lot, and
    the minimum notional at ``stop_fill`` when given) is merged into the next target; a last one
    that is too small, into the previous non-empty one. So every non-zero tranche is an order the
    venue takes, unless the whole ``qty`` is below the minimum, which is then one tranche at the
    last target (the risk gate blocks such a size). Weights that are already the real tranches'
    shares of ``qty`` (a stored plan, ``Proposal.exit_weights``) give back those tranches exactly."""
    if not weights:
        return [qty]
    lot = buy_increment(instrument)
    bounds: list[Decimal] = []
    cumulative = ZERO
    for weight in weights[:-1]:
        cumulative += weight
        bounds.append(min(round_down(_settled(qty * cumulative, lot), lot), qty))
    bounds.append(qty)
    tranches = [bound - previous for bound, previous in zip(bounds, [ZERO, *bounds[:-1]], strict=True)]
    return _merge_small(tranches, min_exit_qty(instrument, stop_fill))


def _settled(amount: Decimal, lot: Decimal) -> Decimal:
    """``amount`` without the residue of Decimal division: a stored share of 100/300 times 300 is
    99.99...99, which must count as the 100 it stands for and not round down to nothing."""
    if lot <= 0:
        return amount
    return amount.quantize(lot.scaleb(-9), rounding=ROUND_HALF_UP)


def _merge_small(tranches: list[Decimal], floor: Decimal) -> list[Decimal]:
    merged: list[Decimal] = []
    carried = ZERO
    last = len(tranches) - 1
    for i, tranche in enumerate(tranches):
        tranche += carried
        carried = ZERO
        if i < last and ZERO < tranche < floor:
            carried, tranche = tranche, ZERO
        merged.append(tranche if tranche != 0 else ZERO)  # one zero, not 0.0000 and 0E+4
    if ZERO < merged[-1] < floor:
        for i in range(last - 1, -1, -1):
            if merged[i] > 0:
                merged[i] += merged[-1]
                merged[-1] = ZERO
                break
    return merged


def normalized_weights(weights: tuple[Decimal, ...], targets: int) -> tuple[Decimal, ...]:
    """The plan's weights for the targets a signal has: with two targets 30/40/30 becomes 30/70."""
    if targets <= 0:
        return ()
    used = list(weights[:targets])
    used[-1] += sum(weights[targets:], ZERO)
    return tuple(used)


def risk_based_qty(
    signal: Signal,
    instrument: Instrument,
    *,
    equity: Decimal,
    available_cash: Decimal,
    risk_per_trade_pct: Decimal,
    max_position_pct: Decimal,
    slippage_bps: Decimal,
) -> tuple[Decimal, list[str]]:
    """How much to buy (a BUY) or sell short (a SHORT), with a note for every cap that bit. The
    risk per unit is |slipped entry - slipped stop| plus the carry the side pays over the time stop
    (``carry_rate``); a SHORT on an instrument that cannot be sold short, or a size under the
    venue's minimum quantity (``Instrument.min_qty``) or value, sizes to zero with the reason."""
    assert signal.action.opens and signal.entry is not None and signal.stop is not None
    notes: list[str] = []
    entry_side, exit_side = _sides(signal)
    # The cash an entry ties up per unit of its value: a buy's whole price, a short's margin, a
    # futures contract's margin either way.
    cash_share = Decimal(1)
    if not signal.long:
        refusal = instrument.short_refusal()
        if refusal is not None or instrument.short is None:
            return ZERO, [refusal or f"{instrument.symbol} cannot be sold short"]
        cash_share = instrument.short.initial_margin
    if instrument.margin_rate is not None:
        cash_share = instrument.margin_rate
    # A futures contract is ``multiplier`` units of its underlying (the price is per unit).
    units = instrument.multiplier
    entry_fill = slipped_price(instrument, entry_side, signal.entry, slippage_bps)
    stop_fill = slipped_price(instrument, exit_side, signal.stop, slippage_bps)
    rate, _ = carry_rate(signal, instrument)
    per_unit_risk = (abs(entry_fill - stop_fill) + signal.entry * rate) * units
    by_risk = equity * risk_per_trade_pct / per_unit_risk
    # The cap is on the value at the entry (what the gate checks); a buy's fill is above it.
    by_value = equity * max_position_pct / (max(entry_fill, signal.entry) * units)
    # Leave room for the entry's own fees; 1% covers every schedule we know, minimums included.
    by_cash = max(available_cash, ZERO) / (entry_fill * units * (cash_share + Decimal("0.01")))
    qty = min(by_risk, by_value, by_cash)
    if qty == by_value and by_value < by_risk:
        notes.append(f"size capped at {max_position_pct:.0%} of equity")
    if qty == by_cash and by_cash < min(by_risk, by_value):
        notes.append("size capped by available cash")
    step = buy_increment(instrument)
    fits = qty
    qty = round_down(qty, step)
    if available_cash <= 0:
        notes.append("no cash available")
        return ZERO, notes
    minimum = max(step, instrument.min_qty)
    if qty < minimum:
        if instrument.lot_size > instrument.qty_step and minimum == step:
            notes.append(f"less than one lot ({step}) fits the risk budget")
        else:
            notes.append(
                f"{_short_number(fits)} {instrument.symbol} fits, below the venue's minimum order quantity of {minimum}"
            )
        return ZERO, notes
    if qty * entry_fill * units < instrument.min_notional:
        notes.append(f"order value below the venue minimum of {instrument.min_notional} {instrument.currency}")
        return ZERO, notes
    return qty, notes


def propose(
    signal: Signal,
    instrument: Instrument,
    qty: Decimal,
    *,
    slippage_bps: Decimal,
    on: date,
    exit_weights: tuple[Decimal, ...] = DEFAULT_EXIT_WEIGHTS,
    avg_cost: Decimal | None = None,
    notes: tuple[str, ...] = (),
) -> Proposal:
    """Costs and outcome of trading ``qty`` on ``signal``, in the instrument's currency, with the fee
    rates of trade date ``on`` (the expected fill day). For a SELL, ``avg_cost`` is the position's
    cost basis and the expected profit is what closing it at the entry price realises. For a BUY the
    exit plan ``exit_weights`` (30/40/30) is reshaped by ``exit_tranches`` at the slipped stop: the
    proposal's ``exit_qtys`` are the real tranches and its ``exit_weights`` their shares of ``qty``.
    A SHORT is costed the mirrored way (sold at the entry, bought back at the targets or the stop),
    plus its carry (funding or borrow over the time stop, ``Proposal.carry_cost``), which counts in
    the costs and against the expected profit."""
    venue, symbol, currency = instrument.venue, instrument.symbol, instrument.currency
    units = instrument.multiplier  # value and P&L per price point of one contract (1 but for futures)
    if signal.action is Action.SELL:
        price = signal.entry or ZERO
        fill = slipped_price(instrument, Side.SELL, price, slippage_bps)
        sell_fee = fees(instrument, Side.SELL, qty, fill, on=on) if qty > 0 else ZERO
        realised = (fill - (avg_cost or fill)) * qty * units - sell_fee
        return Proposal(
            venue=venue,
            symbol=symbol,
            currency=currency,
            signal=signal,
            qty=qty,
            notional=qty * price * units,
            fees_round_trip=sell_fee + (price - fill) * qty * units,
            loss_at_stop=ZERO,
            expected_net_profit=realised,
            reward_risk=0.0,
            avg_cost=avg_cost,
            costs_on=on,
            notes=notes,
        )
    assert signal.entry is not None and signal.stop is not None
    weights = normalized_weights(exit_weights, len(signal.take_profits))
    if qty <= 0:
        return Proposal(
            venue=venue,
            symbol=symbol,
            currency=currency,
            signal=signal,
            qty=ZERO,
            notional=ZERO,
            fees_round_trip=ZERO,
            loss_at_stop=ZERO,
            expected_net_profit=ZERO,
            reward_risk=0.0,
            exit_weights=weights,
            planned_exit_weights=weights,
            costs_on=on,
            notes=notes,
        )
    entry_side, exit_side = _sides(signal)
    sign = 1 if signal.long else -1  # a short earns what the price falls
    entry_fill = slipped_price(instrument, entry_side, signal.entry, slippage_bps)
    stop_fill = slipped_price(instrument, exit_side, signal.stop, slippage_bps)
    entry_fee = fees(instrument, entry_side, qty, entry_fill, on=on)
    # The lowest price an exit is expected at, where the venue's minimum notional bites: a long's
    # stop, a short's last target.
    lowest_exit = (
        stop_fill if signal.long else slipped_price(instrument, exit_side, signal.take_profits[-1], slippage_bps)
    )
    tranches = exit_tranches(instrument, qty, weights, stop_fill=lowest_exit)
    gross = ZERO
    exit_costs = ZERO
    for tranche, target in zip(tranches, signal.take_profits, strict=True):
        if tranche <= 0:
            continue
        exit_fill = slipped_price(instrument, exit_side, target, slippage_bps)
        gross += sign * (target - signal.entry) * tranche * units
        slip = sign * (target - exit_fill) * tranche * units
        exit_costs += fees(instrument, exit_side, tranche, exit_fill, on=on) + slip
    entry_costs = entry_fee + sign * (entry_fill - signal.entry) * qty * units
    carry, carry_note = carry_cost(signal, instrument, qty * signal.entry * units)
    if carry_note:
        notes = (*notes, carry_note)
    expected = gross - entry_costs - exit_costs - carry
    # Counted at the stop too: a stop may be hit late in the time stop, after paying most of it.
    loss = (
        sign * (entry_fill - stop_fill) * qty * units
        + entry_fee
        + fees(instrument, exit_side, qty, stop_fill, on=on)
        + carry
    )
    return Proposal(
        venue=venue,
        symbol=symbol,
        currency=currency,
        signal=signal,
        qty=qty,
        notional=qty * signal.entry * units,
        fees_round_trip=entry_costs + exit_costs + carry,
        carry_cost=carry,
        loss_at_stop=loss,
        expected_net_profit=expected,
        reward_risk=float(expected / loss) if loss > 0 else 0.0,
        exit_weights=tuple(t / qty if t != 0 else ZERO for t in tranches),
        exit_qtys=tuple(tranches),
        planned_exit_weights=weights,
        costs_on=on,
        notes=notes,
    )


def _sides(signal: Signal) -> tuple[Side, Side]:
    """(entry side, exit side) of an entry signal."""
    return (Side.BUY, Side.SELL) if signal.long else (Side.SELL, Side.BUY)


def _short_number(qty: Decimal) -> str:
    """A computed size in a note: 8 significant digits at most, no exponent."""
    return format(qty.quantize(Decimal("1e-8"), rounding=ROUND_FLOOR).normalize(), "f") if qty > 0 else "0"


def _horizon_hours(signal: Signal, instrument: Instrument) -> Decimal:
    bar = parse_timeframe(signal.timeframe or instrument.timeframe).delta
    return Decimal(int((bar * signal.horizon_bars).total_seconds())) / 3600


def carry_rate(signal: Signal, instrument: Instrument) -> tuple[Decimal, str]:
    """The share of an entry's value its side pays to carry it over the time stop, and a note saying
    how it was counted; (0, "") when nothing is paid or known.

    - Funding (perpetuals): the side's payment at the instrument's signed rate; funding the side
      would receive counts as zero (a rate can turn within hours), and the note says so.
    - Borrow (a SHORT of a stock): the fee over the time stop.
    Without a time stop nothing is counted, and the note says so."""
    if not signal.action.opens:
        return ZERO, ""
    side = "long" if signal.long else "short"
    funding = instrument.funding if instrument.funding is not None and instrument.funding.rate_8h != 0 else None
    borrow = instrument.short if not signal.long and instrument.short is not None else None
    if borrow is not None and borrow.borrow_rate_year == 0:
        borrow = None
    if funding is None and borrow is None:
        return ZERO, ""
    basis = "; ".join(t.basis for t in (funding, borrow) if t is not None and t.basis)
    kinds = " and ".join(k for k, t in (("funding", funding), ("borrow", borrow)) if t is not None)
    if signal.horizon_bars <= 0:
        return ZERO, f"{side} {kinds} not counted: no time stop to count it over ({basis})"
    hours = _horizon_hours(signal, instrument)
    paid = funding.paid(signal.long, Decimal(1), hours) if funding is not None else ZERO
    rate = max(paid, ZERO) + (borrow.borrow(Decimal(1), hours) if borrow is not None else ZERO)
    if paid < 0:
        how = f"{side} would receive funding of {-paid:.4%} over {hours:g} h, counted as zero"
        if borrow is not None:
            how += f"; borrow {rate:.4%}"
        return rate, f"{how} ({basis})"
    return rate, f"{side} pays {kinds} of {rate:.4%} over {hours:g} h ({basis})"


def carry_cost(signal: Signal, instrument: Instrument, value: Decimal) -> tuple[Decimal, str]:
    """What carrying an entry of ``value`` costs its side over the time stop (``carry_rate``), in
    the instrument's currency, and a note with the amount; (0, "") when nothing is paid."""
    rate, note = carry_rate(signal, instrument)
    if value <= 0 or not note:
        return ZERO, ""
    if rate == 0:
        return ZERO, note
    carry = value * rate
    return carry, f"{note}: {carry:.2f} {instrument.currency}"


def sized_entry(
    signal: Signal,
    instrument: Instrument,
    *,
    equity: Decimal,
    available_cash: Decimal,
    risk_per_trade_pct: Decimal,
    max_position_pct: Decimal,
    slippage_bps: Decimal,
    on: date,
    exit_weights: tuple[Decimal, ...] = DEFAULT_EXIT_WEIGHTS,
) -> Proposal:
    """An entry (a BUY, or a SHORT) sized by risk and costed at the fee rates of ``on``, the
    expected fill's trade date: what the risk gate judges (the graph) or previews (a tool)."""
    qty, notes = risk_based_qty(
        signal,
        instrument,
        equity=equity,
        available_cash=available_cash,
        risk_per_trade_pct=risk_per_trade_pct,
        max_position_pct=max_position_pct,
        slippage_bps=slippage_bps,
    )
    return propose(
        signal, instrument, qty, slippage_bps=slippage_bps, on=on, exit_weights=exit_weights, notes=tuple(notes)
    )


sized_buy = sized_entry  # its first name, from when every entry was a BUY
