"""The signal graph: gather -> decide -> risk -> approve -> execute -> record, one thread per signal
(thread_id = signal id), checkpointed in the project database. With option spreads on
(``AgentConfig.options``), an entry passes ``spread`` between decide and risk: it reads the chain and
picks the debit spread (agent.spread), which risk then sizes and gates and execute orders as one
multi-leg order.

Node rules that keep it safe:
- ``approve`` calls ``interrupt()`` and does nothing else: a node re-runs from its first line when
  resumed, so nothing with a side effect may come before the interrupt. Sending the card and
  storing the pending signal happen in the runner, after the graph has paused.
- ``execute`` is idempotent: it first looks for an order with client_order_id = signal id, and
  places one only if there is none (the broker refuses a second order with the same id anyway);
  either way it makes sure the entry's trade plan is stored, once.
- ``record`` only writes final states that are the same however often it runs.
"""

from __future__ import annotations

import logging
import operator
import time
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import interrupt

from agent.deps import AgentDeps
from agent.gather import decision_input, risk_context
from agent.llm.types import CallRecord
from agent.policies import DecisionInput, PolicyOutcome
from agent.spread import choose_spread, place_spread, placed_spread, spread_result, store_spread_plan
from storage.llm import LLM_NODE_PREFIX
from storage.signals import RISK_TRACE_NODE, SignalStatus
from storage.tables import DecisionTrace, SignalRow, TradePlan
from tools import risk as risk_gate
from tools.exits import bracket
from tools.models import Action, Candidate, Proposal, RiskCheck, RiskVerdict, Signal
from tools.options import SpreadPlan
from tools.risk import RiskContext
from tools.sizing import propose, sized_entry
from tools.spreads import SpreadRules, contracts_for, spread_proposal
from venues import calendars
from venues.costs import round_to_tick, slipped_price
from venues.errors import VenueError
from venues.models import Instrument, Order, OrderRequest, OrderStatus, OrderType, Side
from venues.options import LegsOrder

log = logging.getLogger("tradeops.agent")


class SignalState(TypedDict, total=False):
    signal_id: str
    venue: str
    symbol: str
    timeframe: str
    watchlist: str
    candidate: dict[str, Any] | None
    notes: list[str]
    facts: dict[str, Any]
    signal: dict[str, Any]
    option_spread: dict[str, Any]  # TRADEOPS_OPTIONS=spreads: {"plan": ...} or {"refused": reason}
    proposal: dict[str, Any]
    verdict: dict[str, Any]
    card: dict[str, Any]
    decision: dict[str, Any]
    execution: dict[str, Any]
    outcome: str
    reason: str
    notices: list[str]
    timings: Annotated[dict[str, float], operator.or_]


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def build_card(
    state: SignalState,
    proposal: Proposal,
    verdict: RiskVerdict,
    *,
    expires_at: str,
    opens_at: str | None = None,
    max_drift_bps: Decimal = Decimal(50),
    settles_next_day: bool = False,
    zone: str = "UTC",
) -> dict[str, Any]:
    """The card's data (every transport renders it its own way). ``opens_at``: the market is closed
    and opens then; the entry fills at that open, only within ``max_drift_bps`` of the card's entry.
    ``settles_next_day``: T+1, so the loss at the stop can be larger than the card's figure.
    ``zone``: the exchange's IANA time zone, in which the card shows its times (UTC beside them)."""
    signal = proposal.signal
    spread = proposal.spread
    notes = list(signal.risk_notes) + list(proposal.notes)
    if settles_next_day:
        notes.insert(0, "T+1: a stop crossed on the buy day sells at the next session's open, maybe below the stop")
    if signal.action is Action.SHORT and spread is None:
        notes.insert(0, "SHORT: sells to open; the stop above buys it back, the targets below take the profit")
    if opens_at is not None:
        opens = calendars.local_text(datetime.fromisoformat(opens_at), zone)
        notes.insert(
            0, f"market closed: fills at the next open ({opens}), only within {max_drift_bps} bps of the entry"
        )
    return {
        "signal_id": state["signal_id"],
        "venue": proposal.venue,
        "symbol": proposal.symbol,
        "side": signal.action.value,
        "timeframe": state.get("timeframe", ""),
        "currency": proposal.currency,
        "entry": _dec(signal.entry),
        "stop": _dec(signal.stop),
        "take_profits": [_dec(tp) for tp in signal.take_profits],
        "qty": _dec(verdict.qty),
        "notional": _dec(proposal.notional),
        "confidence": signal.confidence,
        "reward_risk": round(proposal.reward_risk, 2),
        "expected_net_profit": _dec(proposal.expected_net_profit.quantize(Decimal("0.01"))),
        "costs": _dec(proposal.fees_round_trip.quantize(Decimal("0.01"))),
        "carry": _dec(proposal.carry_cost.quantize(Decimal("0.01"))) if proposal.carry_cost else None,
        "loss_at_stop": _dec(proposal.loss_at_stop.quantize(Decimal("0.01"))),
        "exit_plan": [_dec(w) for w in proposal.exit_weights],
        "horizon_bars": signal.horizon_bars,
        "reasons": list(signal.reasons),
        "risk_notes": notes,
        "fills_at": (
            f"limit at the net debit {spread.net_debit}"
            if spread is not None
            else f"next open {opens_at}"
            if opens_at is not None
            else "market"
        ),
        "spread": spread.model_dump(mode="json") if spread is not None else None,
        "spread_lines": spread.card_lines() if spread is not None else [],
        "risk": [c.model_dump() for c in verdict.checks],
        "risk_decision": verdict.decision,
        "policy": signal.policy,
        "expires_at": expires_at,
        "exchange_tz": zone,  # IANA zone the card's times are shown in (the exchange's)
    }


SignalGraph = CompiledStateGraph[Any, Any, Any, Any]


def build_graph(deps: AgentDeps, checkpointer: BaseCheckpointSaver[str] | None) -> SignalGraph:
    config = deps.config
    spread_min_rr = config.options.min_reward_risk if config.options is not None else None

    async def _risk_context(state: SignalState) -> RiskContext:
        return await risk_context(deps, venue_name=state["venue"], symbol=state["symbol"], timeframe=state["timeframe"])

    async def gather(state: SignalState) -> dict[str, Any]:
        started = time.perf_counter()
        candidate = Candidate.model_validate(state["candidate"]) if state.get("candidate") else None
        facts = await decision_input(
            deps,
            signal_id=state["signal_id"],
            venue_name=state["venue"],
            symbol=state["symbol"],
            timeframe=state["timeframe"],
            candidate=candidate,
            notes=tuple(state.get("notes") or ()),
        )
        return {"facts": facts.model_dump(mode="json"), "timings": {"gather": _ms(started)}}

    async def decide(state: SignalState) -> dict[str, Any]:
        started = time.perf_counter()
        facts = DecisionInput.model_validate(state["facts"])
        try:
            decided = await deps.policy.decide(facts)
            outcome = decided if isinstance(decided, PolicyOutcome) else PolicyOutcome(decided)
        except Exception as exc:  # a failing policy abstains, with the reason: never a silent HOLD
            log.exception("policy %s failed on %s", deps.policy.name, facts.symbol)
            outcome = PolicyOutcome(
                Signal(
                    action=Action.ABSTAIN,
                    symbol=facts.symbol,
                    timeframe=facts.timeframe,
                    reasons=(f"policy {deps.policy.name} failed: {type(exc).__name__}: {exc}",),
                    policy=deps.policy.name,
                )
            )
        signal = outcome.signal
        if signal.symbol != facts.symbol:
            signal = Signal(
                action=Action.ABSTAIN,
                symbol=facts.symbol,
                reasons=(f"policy answered for {signal.symbol!r}, not {facts.symbol!r}",),
                policy=deps.policy.name,
            )
        # Written now, not at the end of the walk: what the model was asked, answered and cost is
        # part of the audit while the card waits, and counts against today's token budget at once.
        _write_calls(state["signal_id"], outcome.calls)
        return {
            "signal": signal.model_dump(mode="json"),
            "notices": list(outcome.notices),
            "timings": {"policy": _ms(started)},
        }

    def _write_calls(signal_id: str, calls: tuple[CallRecord, ...]) -> None:
        if not calls:
            return
        written = {t.node for t in deps.signals.traces(signal_id)}
        now = deps.clock.now()
        for i, call in enumerate(calls, 1):
            node = f"{LLM_NODE_PREFIX}:{i}"
            if node in written:
                continue  # the decide step ran again after a crash: its calls are recorded
            deps.signals.add_trace(call.trace(signal_id=signal_id, node=node, policy=deps.policy.name, at=now))

    async def spread(state: SignalState) -> dict[str, Any]:
        started = time.perf_counter()
        chosen = await choose_spread(
            deps,
            venue_name=state["venue"],
            symbol=state["symbol"],
            timeframe=state["timeframe"],
            signal=Signal.model_validate(state["signal"]),
        )
        return {"option_spread": chosen, "timings": {"spread": _ms(started)}}

    async def assess(state: SignalState) -> dict[str, Any]:
        started = time.perf_counter()
        signal = Signal.model_validate(state["signal"])
        venue = deps.venue(state["venue"])
        instrument = await venue.instrument(state["symbol"])
        profile = config.risk_for(state["venue"])
        context = await risk_context(
            deps, venue_name=state["venue"], symbol=state["symbol"], timeframe=state["timeframe"]
        )
        facts = DecisionInput.model_validate(state["facts"])
        # Costs at the fee rates of the expected fill's trade day: this session, or the next one.
        fill_day = calendars.trading_day(instrument.calendar, deps.clock.now())
        chosen = state.get("option_spread") or {}
        if signal.action.opens and chosen.get("plan"):  # a debit spread, sized by its max loss
            plan = SpreadPlan.model_validate(chosen["plan"])
            contracts, sizing_notes = contracts_for(
                plan.net_debit,
                equity=context.equity,
                cash=facts.cash,
                risk_per_trade_pct=profile.risk_per_trade_pct,
                max_position_pct=profile.max_position_pct,
                rules=config.options or SpreadRules(),
            )
            proposal = spread_proposal(
                signal,
                plan.model_copy(update={"contracts": contracts}),
                venue=state["venue"],
                costs_on=fill_day,
                notes=tuple(sizing_notes),
            )
        elif signal.action.opens:  # a BUY or a SHORT: sized by risk, with its bracket
            proposal = sized_entry(
                signal,
                instrument,
                equity=context.equity,
                available_cash=facts.cash,
                risk_per_trade_pct=profile.risk_per_trade_pct,
                max_position_pct=profile.max_position_pct,
                slippage_bps=config.slippage_bps,
                on=fill_day,
                exit_weights=config.exit_weights,
            )
        else:
            if signal.entry is None:
                signal = signal.model_copy(update={"entry": Decimal(repr(facts.last_price))})
            proposal = propose(
                signal,
                instrument,
                facts.position_qty,
                slippage_bps=config.slippage_bps,
                on=fill_day,
                avg_cost=facts.position_avg_cost,
            )
        verdict, proposal = risk_gate.check(
            proposal,
            context,
            profile,
            instrument,
            slippage_bps=config.slippage_bps,
            spread_min_reward_risk=spread_min_rr,
        )
        if chosen.get("refused"):  # the spread could not be built: refused with the reason, no stock trade instead
            refusal = RiskCheck(rule="option_spread", passed=False, detail=str(chosen["refused"]))
            verdict = RiskVerdict(decision="block", qty=Decimal(0), checks=(refusal, *verdict.checks))
        now = deps.clock.now()
        expires_at = calendars.add_trading_time(instrument.calendar, now, config.approval_timeout)
        opens_at = calendars.next_open(instrument.calendar, now)
        card = build_card(
            state,
            proposal,
            verdict,
            expires_at=expires_at.isoformat(),
            opens_at=opens_at.isoformat() if opens_at else None,
            max_drift_bps=config.max_drift_bps,
            settles_next_day=instrument.settlement_days > 0 and signal.action is Action.BUY,
            zone=calendars.zone_name(instrument.calendar),
        )
        return {
            "proposal": proposal.model_dump(mode="json"),
            "verdict": verdict.model_dump(mode="json"),
            "card": card,
            "timings": {"risk": _ms(started)},
        }

    async def approve(state: SignalState) -> dict[str, Any]:
        # Nothing before this line: the node re-runs from here when resumed.
        decision = interrupt(state["card"])
        return {"decision": dict(decision)}

    async def execute(state: SignalState) -> dict[str, Any]:
        started = time.perf_counter()
        execution = await _execute(state)
        return {"execution": execution, "timings": {"execute": _ms(started)}}

    async def _execute(state: SignalState) -> dict[str, Any]:
        signal_id = state["signal_id"]
        venue = deps.venue(state["venue"])
        broker = venue.broker_required()
        proposal = Proposal.model_validate(state["proposal"])
        signal = proposal.signal
        instrument = await venue.instrument(state["symbol"])
        if proposal.spread is not None:
            placed = await placed_spread(deps, signal_id=signal_id, venue_name=state["venue"])
            if placed is not None:  # an earlier or concurrent resume placed it: finish its plan, order nothing
                _store_spread_plan(state, proposal.spread, instrument, placed)
                return spread_result(placed, proposal.spread)
        existing = await broker.order(signal_id)
        if existing is not None:
            # A concurrent or earlier resume placed it, and may have stopped before its exits or the
            # plan were stored: finish that work (each is stored once by its id), order nothing new.
            await _place_exits(state, proposal, instrument, existing)
            return _order_result(existing)
        assert signal.entry is not None
        side = Side.BUY if signal.action is Action.BUY else Side.SELL  # a SHORT sells to open
        now = deps.clock.now()
        if calendars.is_open(instrument.calendar, now):
            # The price this order will fill at: the last trade now (in the replay, the open of the
            # bar that began when the decision's bar closed), moved by the slippage it will pay.
            quote = (await venue.snapshot([state["symbol"]])).get(state["symbol"])
            if quote is None:
                return {"status": SignalStatus.ABORTED.value, "reason": "no price to check the drift against"}
            fill_price = slipped_price(instrument, side, Decimal(repr(quote.last)), config.slippage_bps)
            drift_bps = abs(fill_price - signal.entry) / signal.entry * 10_000
            if drift_bps > config.max_drift_bps:
                return {
                    "status": SignalStatus.ABORTED.value,
                    "reason": f"the order would fill near {fill_price}, {drift_bps:.0f} bps from the entry "
                    f"{signal.entry}; the limit is {config.max_drift_bps} bps",
                }
        # Re-check and order under the venue's lock: two approvals executing at once must not both
        # pass a limit (trades per day, positions, cooldown) that only one of them fits in.
        async with deps.venue_lock(state["venue"]):
            context = await risk_context(
                deps, venue_name=state["venue"], symbol=state["symbol"], timeframe=state["timeframe"]
            )
            # The proposal carries the size the first check allowed; judge it again on today's facts.
            recheck, _ = risk_gate.check(
                proposal,
                context,
                config.risk_for(state["venue"]),
                instrument,
                slippage_bps=config.slippage_bps,
                spread_min_reward_risk=spread_min_rr,
            )
            if recheck.decision == "block":
                reason = "risk re-check: " + "; ".join(recheck.reasons)
                return {"status": SignalStatus.ABORTED.value, "reason": reason}
            if proposal.spread is not None:
                try:
                    placed = await place_spread(
                        deps,
                        signal_id=signal_id,
                        venue_name=state["venue"],
                        plan=proposal.spread,
                        contracts=int(recheck.qty),
                    )
                except VenueError as exc:
                    return {"status": SignalStatus.FAILED.value, "reason": str(exc)}
                _store_spread_plan(state, proposal.spread, instrument, placed)
                return spread_result(placed, proposal.spread)
            collar = drift_collar(signal.entry, config.max_drift_bps, instrument.tick_size)
            try:
                order = await venue.place_order(
                    OrderRequest(
                        client_order_id=signal_id,
                        symbol=state["symbol"],
                        side=side,
                        qty=recheck.qty,
                        type=OrderType.MARKET,
                        # The drift guard again at the fill: a market closed now opens who knows where.
                        collar_low=collar[0],
                        collar_high=collar[1],
                        signal_id=signal_id,
                    )
                )
            except VenueError as exc:
                return {"status": SignalStatus.FAILED.value, "reason": str(exc)}
        await _place_exits(state, proposal, instrument, order)
        return _order_result(order)

    def _store_spread_plan(state: SignalState, plan: SpreadPlan, instrument: Instrument, order: LegsOrder) -> None:
        store_spread_plan(
            deps,
            signal_id=state["signal_id"],
            venue_name=state["venue"],
            timeframe=state["timeframe"],
            calendar=instrument.calendar,
            plan=plan,
            order=order,
        )

    async def _place_exits(state: SignalState, proposal: Proposal, instrument: Instrument, order: Order) -> None:
        """The bracket (stop and targets, resting from the entry's fill) and the trade plan of an
        entry the broker took; each is stored once by its id, so a second call changes nothing."""
        signal = proposal.signal
        if not signal.action.opens or order.status is OrderStatus.REJECTED:
            return
        assert signal.stop is not None
        children = bracket(
            state["signal_id"],
            instrument,
            entry_side=order.side,
            qty=order.qty,
            stop=signal.stop,
            take_profits=signal.take_profits,
            exit_weights=proposal.exit_weights,
        )
        venue = deps.venue(state["venue"])
        # An entry already cancelled (its open gapped out of the collar) gets no exits; its plan is
        # still stored, so the chat is told what became of it.
        for child in children if order.status.is_open or order.status is OrderStatus.FILLED else []:
            placed = await venue.place_order(child)
            if placed.status is OrderStatus.REJECTED:
                log.warning("exit %s of %s refused: %s", child.client_order_id, state["symbol"], placed.reason)
        deps.plans.create(
            TradePlan(
                signal_id=state["signal_id"],
                venue=state["venue"],
                symbol=state["symbol"],
                timeframe=state["timeframe"],
                status="entry_pending",
                qty_entry=order.qty,
                qty_open=order.qty,
                stop=signal.stop,
                take_profits=[format(tp, "f") for tp in signal.take_profits],
                exit_weights=[format(w, "f") for w in proposal.exit_weights],
                exit_orders=[c.client_order_id for c in children],
                time_stop_at=None,
                updated_at=deps.clock.now(),
            )
        )

    async def record(state: SignalState) -> dict[str, Any]:
        outcome, reason = _outcome(state)
        now = deps.clock.now()
        row = deps.signals.get(state["signal_id"])
        if row is None:  # the walk ended before an approval: hold, abstain, blocked
            deps.signals.create(_signal_row(state, outcome, now), reason=reason)
        else:
            execution = state.get("execution") or {}
            deps.signals.set_status(
                state["signal_id"],
                outcome,
                at=now,
                actor="graph",
                reason=reason,
                updates={"card": {**row.card, "execution": execution}} if execution else None,
            )
        _write_traces(state, outcome, reason)
        return {"outcome": outcome.value, "reason": reason}

    def _write_traces(state: SignalState, outcome: SignalStatus, reason: str) -> None:
        existing = {t.node for t in deps.signals.traces(state["signal_id"])}
        now = deps.clock.now()
        timings = state.get("timings", {})
        rows = []
        if "decide" not in existing and state.get("signal"):
            rows.append(
                DecisionTrace(
                    signal_id=state["signal_id"],
                    node="decide",
                    policy=deps.policy.name,
                    request=state.get("facts", {}),
                    response=state["signal"],
                    latency_ms=timings.get("policy", 0.0),
                    outcome=str(state["signal"].get("action", "")),
                    created_at=now,
                )
            )
        # SignalStore.awaiting_resume reads this trace as "the walk ended": keep it last-step only.
        if RISK_TRACE_NODE not in existing and state.get("verdict"):
            rows.append(
                DecisionTrace(
                    signal_id=state["signal_id"],
                    node=RISK_TRACE_NODE,
                    request=state.get("proposal", {}),
                    response=state["verdict"],
                    latency_ms=timings.get("risk", 0.0),
                    outcome=str(state["verdict"].get("decision", "")),
                    created_at=now,
                )
            )
        if "execute" not in existing and state.get("execution"):
            rows.append(
                DecisionTrace(
                    signal_id=state["signal_id"],
                    node="execute",
                    request=state.get("decision", {}),
                    response=state["execution"],
                    latency_ms=timings.get("execute", 0.0),
                    outcome=f"{outcome.value}: {reason}"[:500],
                    created_at=now,
                )
            )
        for trace in rows:
            deps.signals.add_trace(trace)

    def _signal_row(state: SignalState, outcome: SignalStatus, now: Any) -> SignalRow:
        signal = state.get("signal") or {}
        verdict = state.get("verdict") or {}
        return SignalRow(
            id=state["signal_id"],
            venue=state["venue"],
            symbol=state["symbol"],
            side=str(signal.get("action", "")).lower() or "hold",
            status=outcome.value,
            policy=str(signal.get("policy", "")),
            entry=_to_dec(signal.get("entry")),
            stop=_to_dec(signal.get("stop")),
            take_profits=[str(x) for x in signal.get("take_profits", [])],
            qty=_to_dec(verdict.get("qty")),
            confidence=signal.get("confidence"),
            horizon=f"{signal.get('horizon_bars', 0)} bars" if signal.get("horizon_bars") else "",
            reasons=[str(r) for r in signal.get("reasons", [])],
            card=state.get("card") or {},
            watchlist=state.get("watchlist"),
            created_at=now,
            updated_at=now,
        )

    graph = StateGraph(SignalState)
    graph.add_node("gather", gather)
    graph.add_node("decide", decide)
    graph.add_node("spread", spread)
    graph.add_node("risk", assess)
    graph.add_node("approve", approve)
    graph.add_node("execute", execute)
    graph.add_node("record", record)
    graph.add_edge(START, "gather")
    graph.add_edge("gather", "decide")
    # With TRADEOPS_OPTIONS=spreads an entry first looks for its spread; otherwise straight to risk.
    after_decide = _after_decide if config.options is None else _after_decide_spreads
    graph.add_conditional_edges("decide", after_decide, ["spread", "risk", "record"])
    graph.add_edge("spread", "risk")
    graph.add_conditional_edges("risk", _after_risk, ["approve", "record"])
    graph.add_conditional_edges("approve", _after_approve, ["execute", "record"])
    graph.add_edge("execute", "record")
    graph.add_edge("record", END)
    return graph.compile(checkpointer=checkpointer)


def _after_decide(state: SignalState) -> Literal["risk", "record"]:
    return "risk" if Action(state["signal"]["action"]).trades else "record"


def _after_decide_spreads(state: SignalState) -> Literal["spread", "risk", "record"]:
    return "spread" if Action(state["signal"]["action"]).opens else _after_decide(state)


def _after_risk(state: SignalState) -> Literal["approve", "record"]:
    return "record" if state["verdict"]["decision"] == "block" else "approve"


def _after_approve(state: SignalState) -> Literal["execute", "record"]:
    return "execute" if state.get("decision", {}).get("decision") == "approved" else "record"


def _outcome(state: SignalState) -> tuple[SignalStatus, str]:
    signal = state.get("signal") or {}
    action = Action(signal.get("action", Action.ABSTAIN.value))
    reasons = "; ".join(str(r) for r in signal.get("reasons", []))
    if action is Action.HOLD:
        return SignalStatus.HOLD, reasons
    if action is Action.ABSTAIN:
        return SignalStatus.ABSTAINED, reasons
    verdict = state.get("verdict") or {}
    if verdict.get("decision") == "block":
        failed = [c["detail"] for c in verdict.get("checks", []) if not c["passed"]]
        return SignalStatus.BLOCKED, "; ".join(failed)
    decision = state.get("decision") or {}
    kind = decision.get("decision")
    if kind in ("rejected", "expired"):
        return SignalStatus(kind), str(decision.get("reason", ""))
    execution = state.get("execution") or {}
    return SignalStatus(execution.get("status", SignalStatus.FAILED.value)), str(execution.get("reason", ""))


def drift_collar(entry: Decimal, max_drift_bps: Decimal, tick: Decimal) -> tuple[Decimal, Decimal]:
    """The fills the drift guard allows: within ``max_drift_bps`` of the entry either way (a gap in
    the trader's favour can put the entry beyond its own stop or target), on the tick grid inside
    the allowance."""
    move = entry * max_drift_bps / 10_000
    return round_to_tick(entry - move, tick, up=True), round_to_tick(entry + move, tick, up=False)


def _order_result(order: Any) -> dict[str, Any]:
    """The execution's status and the words for it: what happened to the order, not "executed"
    for an order that has not filled yet."""
    placed = order.status is not OrderStatus.REJECTED
    oid = order.client_order_id
    if order.status is OrderStatus.FILLED and order.avg_fill_price is not None:
        words = f"order {oid} filled at {order.avg_fill_price.normalize():f}"
    elif order.status is OrderStatus.PENDING and order.type is OrderType.LIMIT and order.limit_price is not None:
        words = f"order {oid} placed; fills at {order.limit_price.normalize():f} or better"
    elif order.status is OrderStatus.PENDING:
        words = f"order {oid} placed; fills at the next bar's open"
    else:
        words = f"order {oid} {order.status.value}" + (f": {order.reason}" if order.reason else "")
    return {
        "status": SignalStatus.EXECUTED.value if placed else SignalStatus.FAILED.value,
        "reason": words,
        "order": order.model_dump(mode="json"),
    }


def _to_dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
