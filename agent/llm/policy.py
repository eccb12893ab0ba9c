"""LLMPolicy: one OpenAI-compatible model decides, with data tools for what the context lacks.

The walk of one decision:
1. The context (agent/llm/prompts.py) carries the facts the graph gathered, compact and fee-aware:
   price and recent closes, indicators over the timeframes, the screen's reasons, position and cash,
   today's own trades, venue rules, costs and the risk budget left. Most decisions need one call.
2. The model may call the data tools (agent/llm/tools.py) for up to ``max_rounds`` rounds; a bad
   or unknown tool call comes back to it as a tool error. The last round offers no tools; a model
   still calling tools then abstains (naming the unknown tools it asked for, if any).
3. The answer must be one JSON object of the ``LLMAnswer`` schema. Malformed JSON gets one repair
   attempt; a wrong schema does not.
4. Prices are checked against the data: an entry within 0.5% of the last price stands, one within
   5% is corrected to the last price (with a note on the card), one further off is rejected; a stop
   or targets on the wrong side, or absurdly far, are rejected.
Any failure (timeout, 429, 5xx, connection, empty answer, bad JSON, wrong schema, rounds used up,
absurd values, cache miss in read-only mode) is an ABSTAIN with the reason: never a silent HOLD,
never an order. When the day's token budget is spent, the rule policy decides instead (or the
policy abstains, as configured), and the chat is told once a day.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from agent.deps import AgentDeps
from agent.llm.answer_json import AnswerJSONError, extract_json_object
from agent.llm.config import LLMConfig
from agent.llm.prompts import OPTIONS_NOTE, REPAIR, SYSTEM, LLMAnswer, answer_schema, context
from agent.llm.tools import Toolbox
from agent.llm.types import CallRecord, ChatClient, LLMFailure
from agent.policies import HORIZON_BARS, DecisionInput, PolicyOutcome, RulePolicy
from tools.models import Action, Signal
from venues.costs import round_to_tick
from venues.options import OptionsData, is_occ_symbol

ENTRY_KEEP = Decimal("0.005")  # within 0.5% of the last price: the model's entry stands
ENTRY_CORRECT = Decimal("0.05")  # within 5%: corrected to the last price; beyond: rejected
MAX_STOP_DISTANCE = Decimal("0.30")
MAX_TARGET_MULTIPLE = Decimal(3)
PLAUSIBLE_SIGMAS = 3.0  # targets and stops within 3 random-walk deviations of the horizon
MIN_REACH_ATR = 3.0  # ... and never a bound tighter than 3 ATRs (short horizons)
BUDGET_NOTICE_KEY = "notice:llm_budget:{day}"


@dataclass
class _Walk:
    calls: list[CallRecord]
    notes: list[str]
    spreads: bool = False  # option spreads are on for this venue: the answer may name the legs


class LLMPolicy:
    def __init__(
        self,
        client: ChatClient,
        deps: AgentDeps,
        config: LLMConfig,
        *,
        fallback: RulePolicy | None = None,
    ) -> None:
        self.client = client
        # The deps will hold this policy (deps.policy = LLMPolicy(client, deps, ...)): tools need them.
        self.deps = deps
        self.config = config
        self.fallback = fallback or RulePolicy()
        self.name = f"llm:{client.model}"

    async def decide(self, facts: DecisionInput) -> PolicyOutcome:
        walk = _Walk(calls=[], notes=[])
        try:
            signal = await self._decide(facts, walk)
        except LLMFailure as failure:
            walk.calls.extend(r for r in failure.records if r not in walk.calls)
            if failure.kind == "budget_exhausted":
                return await self._over_budget(facts, walk, failure)
            return PolicyOutcome(_abstain(facts, self.name, str(failure), walk.notes), tuple(walk.calls))
        return PolicyOutcome(signal, tuple(walk.calls))

    async def _decide(self, facts: DecisionInput, walk: _Walk) -> Signal:
        deps = self.deps
        toolbox = Toolbox(deps, facts.venue, facts.symbol, facts.timeframe)
        walk.spreads = deps.config.options is not None and isinstance(deps.venue(facts.venue), OptionsData)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": f"{SYSTEM}\n{OPTIONS_NOTE}" if walk.spreads else SYSTEM},
            {"role": "user", "content": context(facts, self._extra(deps, facts))},
        ]
        tools = toolbox.specs() if self.client.supports_tools else None
        repaired = False
        rounds = 0
        while True:
            rounds += 1
            last_round = rounds >= self.config.max_rounds
            result = await self.client.chat(
                messages, tools=None if last_round else tools, json_schema=answer_schema(walk.spreads), max_tokens=600
            )
            walk.calls.append(result.record)
            message = result.message
            tool_calls = message.get("tool_calls") or []
            if tool_calls:
                if last_round:
                    raise _rounds_ran_out(toolbox, tool_calls, rounds)
                messages.append(message)
                for call in tool_calls:
                    function = call.get("function", {})
                    output = await toolbox.call(str(function.get("name")), function.get("arguments"))
                    messages.append(
                        {"role": "tool", "tool_call_id": call.get("id", ""), "content": json.dumps(output, default=str)}
                    )
                continue
            content = str(message.get("content") or "")
            try:
                data = extract_json_object(content)
            except AnswerJSONError as exc:
                if repaired:
                    raise LLMFailure("malformed_json", f"not JSON after one repair attempt: {exc}") from None
                repaired = True
                messages += [
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": REPAIR.format(error=str(exc)[:120])},
                ]
                continue
            if toolbox.unknown_calls:
                walk.notes.append("the model called unknown tools: " + ", ".join(sorted(set(toolbox.unknown_calls))))
            return self._with_legs(self._signal(facts, data, walk), data, walk)

    @staticmethod
    def _with_legs(signal: Signal, data: Any, walk: _Walk) -> Signal:
        """The option legs the answer named, on a BUY or SHORT where spreads are on (the spread
        step checks them against the chain); elsewhere they are ignored with a note."""
        legs = LLMAnswer.model_validate(data).option_legs or []
        if not legs:
            return signal
        if not walk.spreads or not signal.action.opens:
            why = "option spreads are off here" if not walk.spreads else f"a {signal.action.value} trades no spread"
            return signal.model_copy(update={"risk_notes": (*signal.risk_notes, f"option_legs ignored: {why}")})
        if len(legs) != 2 or not all(isinstance(leg, str) and is_occ_symbol(leg) for leg in legs):
            raise LLMFailure(
                "wrong_schema", f"option_legs must be [bought, sold] OCC symbols like SPY251121C00550000, got {legs}"
            )
        return Signal.model_validate({**signal.model_dump(), "option_legs": tuple(leg.strip().upper() for leg in legs)})

    def _extra(self, deps: AgentDeps, facts: DecisionInput) -> dict[str, Any]:
        profile = deps.config.risk_for(facts.venue)
        return {
            "costs": {
                "slippage_bps_each_side": str(deps.config.slippage_bps),
                "fees": "see venue_rules; round-trip costs are subtracted from the expected profit",
            },
            "risk_budget": {
                "profile": profile.name,
                "min_confidence": profile.min_confidence,
                "min_reward_risk_after_costs": profile.min_reward_risk,
                "min_net_profit_pct_of_value": str(profile.min_net_profit_pct),
                "risk_per_trade_pct_of_equity": str(profile.risk_per_trade_pct),
                "max_position_pct_of_equity": str(profile.max_position_pct),
            },
            "exit_plan": "30/40/30% at TP1/TP2/TP3; stop to break-even then trailing after TP1; time stop",
        }

    def _signal(self, facts: DecisionInput, data: Any, walk: _Walk) -> Signal:
        try:
            answer = LLMAnswer.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()[:4]
            )
            raise LLMFailure("wrong_schema", problems) from None
        reasons = (f"{self.name}: {answer.reason}",)
        notes = tuple(walk.notes) + tuple(answer.risk_notes)
        if answer.action == "HOLD":
            return Signal(
                action=Action.HOLD,
                symbol=facts.symbol,
                timeframe=facts.timeframe,
                confidence=answer.confidence,
                reasons=reasons,
                risk_notes=notes,
                policy=self.name,
            )
        tick = facts.tick_size
        last = Decimal(repr(facts.last_price))
        if not last > 0:
            raise LLMFailure("absurd_values", "there is no last price to check the answer against")
        if answer.action == "SELL":
            if facts.position_qty <= 0:
                return Signal(
                    action=Action.HOLD,
                    symbol=facts.symbol,
                    timeframe=facts.timeframe,
                    reasons=(*reasons, f"SELL ignored: no {facts.symbol} position is held"),
                    risk_notes=notes,
                    policy=self.name,
                )
            return Signal(
                action=Action.SELL,
                symbol=facts.symbol,
                entry=round_to_tick(last, tick),
                timeframe=facts.timeframe,
                confidence=answer.confidence,
                reasons=reasons,
                risk_notes=notes,
                policy=self.name,
            )
        entry, entry_note = self._entry(answer.entry, last, tick)
        if entry_note:
            notes = (*notes, entry_note)
        if answer.stop is None or not answer.take_profits:
            raise LLMFailure("wrong_schema", f"a {answer.action} needs a stop and at least one take-profit")
        if answer.action == "SHORT":
            # Whether the venue may short it is the risk gate's to say, with the reason on the card.
            return self._short(facts, answer, entry, tick, reasons, notes)
        stop = round_to_tick(Decimal(repr(answer.stop)), tick, up=False)
        targets = tuple(round_to_tick(Decimal(repr(t)), tick, up=True) for t in answer.take_profits)
        if not (entry * (1 - MAX_STOP_DISTANCE) <= stop < entry):
            raise LLMFailure(
                "absurd_values", f"stop {answer.stop} is not below the entry {entry} within {MAX_STOP_DISTANCE:.0%}"
            )
        if any(t <= entry or t > entry * MAX_TARGET_MULTIPLE for t in targets) or list(targets) != sorted(set(targets)):
            raise LLMFailure(
                "absurd_values",
                f"take-profits {answer.take_profits} must rise above the entry {entry}, "
                f"at most {MAX_TARGET_MULTIPLE}x it",
            )
        targets, notes = self._plausible(facts, answer, entry, stop, targets, notes)
        return self._entry_signal(Action.BUY, facts, answer, entry, stop, targets, reasons, notes)

    def _short(
        self,
        facts: DecisionInput,
        answer: LLMAnswer,
        entry: Decimal,
        tick: Decimal,
        reasons: tuple[str, ...],
        notes: tuple[str, ...],
    ) -> Signal:
        """A SHORT's prices checked like a BUY's, mirrored: the stop above the entry (within
        MAX_STOP_DISTANCE), the targets below it and descending (down to 1/MAX_TARGET_MULTIPLE)."""
        assert answer.stop is not None
        stop = round_to_tick(Decimal(repr(answer.stop)), tick, up=True)
        targets = tuple(round_to_tick(Decimal(repr(t)), tick, up=False) for t in answer.take_profits)
        if not (entry < stop <= entry * (1 + MAX_STOP_DISTANCE)):
            raise LLMFailure(
                "absurd_values", f"stop {answer.stop} is not above the entry {entry} within {MAX_STOP_DISTANCE:.0%}"
            )
        floor = entry / MAX_TARGET_MULTIPLE
        if any(t >= entry or t < floor or t <= 0 for t in targets) or list(targets) != sorted(
            set(targets), reverse=True
        ):
            raise LLMFailure(
                "absurd_values",
                f"take-profits {answer.take_profits} of a SHORT must fall below the entry {entry}, "
                f"at least 1/{MAX_TARGET_MULTIPLE} of it",
            )
        targets, notes = self._plausible(facts, answer, entry, stop, targets, notes)
        return self._entry_signal(Action.SHORT, facts, answer, entry, stop, targets, reasons, notes)

    @staticmethod
    def _plausible(
        facts: DecisionInput,
        answer: LLMAnswer,
        entry: Decimal,
        stop: Decimal,
        targets: tuple[Decimal, ...],
        notes: tuple[str, ...],
    ) -> tuple[tuple[Decimal, ...], tuple[str, ...]]:
        """Bound the prices by what the horizon makes plausible: a move of about ATR x sqrt(bars)
        is one standard deviation of a random walk over the time stop, so a target or a stop
        beyond PLAUSIBLE_SIGMAS of it (at least MIN_REACH_ATR ATRs) is not a plan for this trade.
        Targets beyond it are dropped with a note (the card shows it); a stop beyond it, or no
        target left, rejects the answer. Without an ATR the fixed bounds above stand alone."""
        atr = facts.indicators.get(f"ATRr_14_{facts.timeframe}")
        if atr is None or not atr > 0:
            return targets, notes
        bars = answer.horizon_bars or HORIZON_BARS
        reach = Decimal(repr(max(PLAUSIBLE_SIGMAS * atr * math.sqrt(bars), MIN_REACH_ATR * atr)))
        what = f"{PLAUSIBLE_SIGMAS:g} x ATR {atr:.4g} x sqrt({bars} bars) = {reach:.4g}"
        if abs(stop - entry) > reach:
            raise LLMFailure(
                "absurd_values", f"stop {stop} is {abs(stop - entry):.4g} from the entry {entry}, beyond {what}"
            )
        kept = tuple(t for t in targets if abs(t - entry) <= reach)
        if not kept:
            shown = ", ".join(str(t) for t in targets)
            raise LLMFailure(
                "absurd_values", f"every take-profit ({shown}) is further from the entry {entry} than {what}"
            )
        dropped = [str(t) for t in targets if t not in kept]
        if dropped:
            notes = (*notes, f"take-profit {', '.join(dropped)} dropped: further from the entry than {what}")
        return kept, notes

    def _entry_signal(
        self,
        action: Action,
        facts: DecisionInput,
        answer: LLMAnswer,
        entry: Decimal,
        stop: Decimal,
        targets: tuple[Decimal, ...],
        reasons: tuple[str, ...],
        notes: tuple[str, ...],
    ) -> Signal:
        """The Signal of a BUY or a SHORT whose prices were checked, on the tick grid."""
        return Signal(
            action=action,
            symbol=facts.symbol,
            entry=entry,
            stop=stop,
            take_profits=targets,
            horizon_bars=answer.horizon_bars,
            timeframe=facts.timeframe,
            confidence=answer.confidence,
            reasons=reasons,
            risk_notes=notes,
            policy=self.name,
        )

    @staticmethod
    def _entry(stated: float | None, last: Decimal, tick: Decimal) -> tuple[Decimal, str]:
        at_last = round_to_tick(last, tick)
        if stated is None:
            return at_last, "entry set to the last price"
        entry = Decimal(repr(stated))
        if not entry > 0:
            raise LLMFailure("absurd_values", f"entry {stated} is not a price")
        gap = abs(entry - last) / last
        if gap <= ENTRY_KEEP:
            return round_to_tick(entry, tick), ""
        if gap <= ENTRY_CORRECT:
            return at_last, f"the model's entry {stated} was {gap:.1%} from the last price {last}; corrected to it"
        raise LLMFailure("absurd_values", f"entry {stated} is {gap:.0%} away from the last price {last}")

    async def _over_budget(self, facts: DecisionInput, walk: _Walk, failure: LLMFailure) -> PolicyOutcome:
        deps = self.deps
        day = facts.now.date().isoformat()
        first = not deps.signals.get_value(BUDGET_NOTICE_KEY.format(day=day))
        notices: tuple[str, ...] = ()
        if first:
            deps.signals.set_value(BUDGET_NOTICE_KEY.format(day=day), {"at": facts.now.isoformat()}, at=facts.now)
            then = "the rule policy decides" if self.config.budget_fallback == "rules" else "decisions abstain"
            notices = (
                f"The LLM daily token budget ({self.config.daily_token_budget}) is spent: {then} until tomorrow.",
            )
        if self.config.budget_fallback == "abstain":
            return PolicyOutcome(_abstain(facts, self.name, str(failure), walk.notes), tuple(walk.calls), notices)
        decided = await self.fallback.decide(facts)
        signal = decided.signal if isinstance(decided, PolicyOutcome) else decided
        signal = signal.model_copy(
            update={"reasons": (*signal.reasons, "the LLM's daily token budget is spent: decided by the rule policy")}
        )
        return PolicyOutcome(signal, tuple(walk.calls), notices)


def _rounds_ran_out(toolbox: Toolbox, tool_calls: list[dict[str, Any]], rounds: int) -> LLMFailure:
    """Still calling tools when no round is left. Tools that do not exist are named: a model that
    keeps asking for one (an order tool, say) is the likelier story than one that needs more data."""
    asked = (str(call.get("function", {}).get("name")) for call in tool_calls)
    unknown = sorted({*toolbox.unknown_calls, *(name for name in asked if name not in toolbox.tools)})
    if unknown:
        return LLMFailure(
            "unknown_tool",
            f"still calling tools after {rounds} rounds, including tools that do not exist: {', '.join(unknown)}",
        )
    return LLMFailure("too_many_rounds", f"still calling tools after {rounds} rounds")


def _abstain(facts: DecisionInput, policy: str, why: str, notes: list[str]) -> Signal:
    return Signal(
        action=Action.ABSTAIN,
        symbol=facts.symbol,
        timeframe=facts.timeframe,
        reasons=(why,),
        risk_notes=tuple(notes),
        policy=policy,
    )
