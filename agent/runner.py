"""Drives signal threads through the graph: starts a walk for a candidate, stores the pending card
when the graph pauses for approval, and resumes it with a decision exactly once.

Exactly once, however many answers arrive at the same time:
1. ``SignalStore.decide`` records the decision in the approvals table, one row per signal, in one
   transaction: the first answer wins, every later one is told what was already decided;
2. the winner resumes the thread under a per-thread lock (an asyncio lock in this process, a
   PostgreSQL advisory lock across processes) and only if the thread has not finished: it is
   still waiting at ``approve``, or an earlier resume stopped part-way after it (resuming a
   finished thread would be a silent no-op in LangGraph);
3. the order's client_order_id is the signal id, so even a second execute could not order twice.
A decision recorded but not yet resumed, or whose resume stopped part-way (the process stopped in
between), is resumed by ``recover``; a walk that stopped before its approval (an error in a node)
is walked on by the next ``start`` of the same signal id.
An answer that arrives after the approval window, before any expiry sweep ran, expires the signal:
expired means rejected, whoever answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from agent.deps import AgentDeps
from agent.graph import SignalGraph
from storage.locks import thread_lock
from storage.signals import DecisionOutcome, SignalStatus
from storage.tables import SignalRow
from tools.models import Candidate

log = logging.getLogger("tradeops.agent")

CardHook = Callable[[dict[str, Any]], Awaitable[None]]
EXPIRY_ACTOR = "expiry"
EXPIRY_REASON = "no answer before the approval expired"


@dataclass(frozen=True)
class WalkResult:
    signal_id: str
    status: str
    reason: str = ""
    card: dict[str, Any] | None = None
    created: bool = True
    notices: tuple[str, ...] = ()  # for the chat, e.g. the LLM budget ran out


@dataclass(frozen=True)
class DecideResult:
    signal_id: str
    outcome: DecisionOutcome
    status: str  # the signal's status after this call
    reason: str = ""


class SignalRunner:
    def __init__(
        self,
        deps: AgentDeps,
        graph: SignalGraph,
        *,
        on_card: CardHook | None = None,
    ) -> None:
        self.deps = deps
        self.graph = graph
        self.on_card = on_card
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @staticmethod
    def _config(signal_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": signal_id}}

    async def start(
        self,
        *,
        signal_id: str,
        venue: str,
        symbol: str,
        timeframe: str,
        candidate: Candidate | None = None,
        watchlist: str | None = None,
        notes: tuple[str, ...] = (),
    ) -> WalkResult:
        """Walk a new signal up to the approval (or to its end). A signal id seen before returns
        what became of it: a scan run twice at the same bar decides once."""
        existing = self.deps.signals.get(signal_id)
        if existing is not None:
            return self._seen(existing)
        started = time.perf_counter()
        async with self._locks[signal_id], thread_lock(self.deps.signals.engine, signal_id):
            # Again under the lock: a concurrent start of the same id may have walked it meanwhile.
            existing = self.deps.signals.get(signal_id)
            if existing is not None:
                return self._seen(existing)
            config = self._config(signal_id)
            snapshot = await self.graph.aget_state(config)
            if snapshot.next == ("approve",):  # paused earlier, but the pending row was never written
                values, card = dict(snapshot.values), dict(snapshot.interrupts[0].value)
            else:
                if not snapshot.values:
                    values = await self.graph.ainvoke(
                        {
                            "signal_id": signal_id,
                            "venue": venue,
                            "symbol": symbol,
                            "timeframe": timeframe,
                            "watchlist": watchlist or "",
                            "candidate": candidate.model_dump(mode="json") if candidate else None,
                            "notes": list(notes),
                            "timings": {},
                        },
                        config,
                        durability="sync",
                    )
                elif snapshot.next:
                    # A walk that stopped part-way (a node raised, the process died) goes on from its
                    # last checkpoint: handing back its partial state would end it with no status.
                    values = await self.graph.ainvoke(None, config, durability="sync")
                else:
                    values = dict(snapshot.values)
                interrupts = values.get("__interrupt__")
                card = dict(interrupts[0].value) if interrupts else {}
            created = await self._store_pending(values, card) if card else False
        self._log_done(values, started)
        notices = tuple(values.get("notices") or ())
        if not card:
            return WalkResult(
                signal_id,
                str(values.get("outcome", "")),
                str(values.get("reason", "")),
                values.get("card"),
                notices=notices,
            )
        # Outside the thread's lock: an auto-approval resumes the thread, which takes the lock again.
        auto = self.deps.config.auto_approve
        equity = Decimal(str(values.get("facts", {}).get("equity", "0")))
        if created and auto.approves(float(card.get("confidence") or 0), Decimal(card.get("notional") or 0), equity):
            result = await self.decide(signal_id, "approved", actor=f"auto:{auto.mode}", reason="auto-approve rule")
            return WalkResult(signal_id, result.status, result.reason, card, notices=notices)
        stored = self.deps.signals.get(signal_id)
        status = stored.status if stored else SignalStatus.PENDING.value
        return WalkResult(signal_id, status, card=card, created=created, notices=notices)

    async def _store_pending(self, values: dict[str, Any], card: dict[str, Any]) -> bool:
        """The pending signal row, written once the graph has paused; the card goes out then."""
        now = self.deps.clock.now()
        signal = values.get("signal", {})
        row = SignalRow(
            id=card["signal_id"],
            venue=card["venue"],
            symbol=card["symbol"],
            side=card["side"].lower(),
            status=SignalStatus.PENDING.value,
            policy=str(card.get("policy", "")),
            entry=_dec(card.get("entry")),
            stop=_dec(card.get("stop")),
            take_profits=list(card.get("take_profits", [])),
            qty=_dec(card.get("qty")),
            confidence=card.get("confidence"),
            horizon=f"{signal.get('horizon_bars', 0)} bars" if signal.get("horizon_bars") else "",
            reasons=list(card.get("reasons", [])),
            card=card,
            watchlist=values.get("watchlist") or None,
            created_at=now,
            expires_at=datetime.fromisoformat(card["expires_at"]),
            updated_at=now,
        )
        _, created = self.deps.signals.create(row, reason="awaiting approval")
        if created:
            self.deps.signals.audit("graph", "signal_pending", at=now, target=row.id, detail={"symbol": row.symbol})
            if self.on_card is not None:
                await self.on_card(card)
        return created

    @staticmethod
    def _seen(row: SignalRow) -> WalkResult:
        return WalkResult(row.id, row.status, card=row.card or None, created=False)

    async def decide(self, signal_id: str, decision: str, *, actor: str, reason: str = "") -> DecideResult:
        """Approve, reject or expire a pending signal. The first answer wins; the rest are told."""
        now = self.deps.clock.now()
        if decision != "expired":
            row = self.deps.signals.get(signal_id)
            if (
                row is not None
                and row.status == SignalStatus.PENDING.value
                and row.expires_at is not None
                and row.expires_at <= now
            ):
                # The window closed before this answer: expire it first (as the next sweep would),
                # so this answer is told it came too late instead of placing an order.
                await self.decide(signal_id, "expired", actor=EXPIRY_ACTOR, reason=EXPIRY_REASON)
        outcome = self.deps.signals.decide(signal_id, decision, actor=actor, at=now, reason=reason)
        if not outcome.won:
            row = self.deps.signals.get(signal_id)
            return DecideResult(signal_id, outcome, row.status if row else "", "already decided")
        self.deps.signals.audit(actor, f"signal_{decision}", at=now, target=signal_id, detail={"reason": reason})
        await self._resume(signal_id, {"decision": decision, "actor": actor, "reason": reason, "at": now.isoformat()})
        row = self.deps.signals.get(signal_id)
        status = row.status if row else ""
        return DecideResult(signal_id, outcome, status, self._last_reason(signal_id))

    async def _resume(self, signal_id: str, value: dict[str, Any]) -> bool:
        """Run the rest of the thread with the decision; False when there was nothing left to run."""
        config = self._config(signal_id)
        async with self._locks[signal_id], thread_lock(self.deps.signals.engine, signal_id):
            snapshot = await self.graph.aget_state(config)
            if snapshot.next == ("approve",):
                await self.graph.ainvoke(Command(resume=value), config, durability="sync")
                return True
            if snapshot.next and snapshot.values.get("decision"):
                # Resumed before, and stopped part-way (the process died in execute or record): go
                # on from the last checkpoint; execute finds an order it already placed by its id.
                await self.graph.ainvoke(None, config, durability="sync")
                return True
            return False  # finished (resumed by someone else): nothing may run twice

    async def expire_due(self) -> list[str]:
        """Pending signals whose approval window (open-market time) has passed become rejected."""
        expired = []
        for row in self.deps.signals.due_for_expiry(self.deps.clock.now()):
            result = await self.decide(row.id, "expired", actor=EXPIRY_ACTOR, reason=EXPIRY_REASON)
            if result.outcome.won:
                expired.append(row.id)
        return expired

    async def recover(self) -> list[str]:
        """Resume threads whose decision was recorded but whose walk never ended. One thread that
        fails again is logged and left for the next recover: it must not keep the rest waiting."""
        resumed = []
        for row in self.deps.signals.awaiting_resume():
            approval = self.deps.signals.approval(row.id)
            if approval is None:
                continue
            value = {
                "decision": approval.decision,
                "actor": approval.actor,
                "reason": approval.reason,
                "at": approval.decided_at.isoformat(),
            }
            try:
                if await self._resume(row.id, value):
                    resumed.append(row.id)
            except Exception:
                log.exception("could not resume signal %s; it stays %s", row.id, row.status)
        return resumed

    def _last_reason(self, signal_id: str) -> str:
        history = self.deps.signals.history(signal_id)
        return history[-1].reason if history else ""

    @staticmethod
    def _log_done(values: dict[str, Any], started: float) -> None:
        signal = values.get("signal") or {}
        facts = values.get("facts") or {}
        timings = values.get("timings") or {}
        log.info(
            "signal_done | id=%s symbol=%s action=%s conf=%.2f bars=%s ms_policy=%.0f ms_total=%.0f",
            values.get("signal_id"),
            values.get("symbol"),
            signal.get("action", "?"),
            float(signal.get("confidence") or 0),
            facts.get("bars", 0),
            timings.get("policy", 0.0),
            (time.perf_counter() - started) * 1000,
        )


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
