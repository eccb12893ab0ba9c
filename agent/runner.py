"""Drives signal threads through the graph: starts a walk for a candidate, stores the pending card
when the graph pauses for approval, and resumes it with a decision exactly once.

Exactly once, however many answers and processes arrive at the same time:
1. every step on a thread (its walk, an answer and the resume that follows it, a recovery) runs
   under the thread's lock: an asyncio lock in this process and a cross-process lock
   (``storage.locks``: a PostgreSQL advisory lock, or a file lock beside the SQLite database) that
   the operating system or the server drops when the holder dies;
2. ``SignalStore.decide`` records the decision in the approvals table, one row per signal, in one
   transaction: the first answer wins, every later one is told what was already decided; the winner
   resumes the thread without letting go of the lock in between, so no other process can see the
   decision and resume the thread first;
3. a thread is resumed only if it has not finished: it waits at ``approve``, or an earlier resume
   stopped part-way after it (resuming a finished thread would be a silent no-op in LangGraph).
   "Finished" is read from the snapshot's tasks, not its ``next``: a process killed after a
   step's writes were saved but before the next checkpoint leaves a thread whose ``next`` is empty
   while it still has its next step to run;
4. the order's client_order_id is the signal id, so even a second execute could not order twice.
A decision recorded but not yet resumed, or whose resume stopped part-way (the process died in
between), is resumed by ``recover`` in the next process that starts: it only takes threads whose
lock is free (a held one is being resumed by a live process). A walk that stopped before its
approval (an error in a node) is walked on by the next ``start`` of the same signal id.
An answer that arrives after the approval window, before any expiry sweep ran, expires the signal:
expired means rejected, whoever answers.
A venue and symbol have at most one pending signal at a time (see ``start``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, StateSnapshot

from agent.deps import AgentDeps
from agent.graph import SignalGraph
from storage.locks import process_lock, setup_lock_name, thread_lock_name
from storage.signals import DecisionOutcome, SignalStatus
from storage.tables import SignalRow
from tools.models import Candidate
from venues.metrics import metrics

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


DecisionHook = Callable[[DecideResult], Awaitable[None]]


class SignalRunner:
    def __init__(
        self,
        deps: AgentDeps,
        graph: SignalGraph | None,
        *,
        on_card: CardHook | None = None,
        on_decision: DecisionHook | None = None,
    ) -> None:
        self.deps = deps
        self._graph = graph
        self.on_card = on_card
        # Told of every decision this process makes (an answer, an auto-approval's resume, an
        # expiry), after its walk ran: `tradeops run` shows it in every transport, not only the one
        # whose button was pressed.
        self.on_decision = on_decision
        # Signals this process is deciding right now (an answer's walk may take a while): their
        # decision reaches on_decision when the walk ends, so nobody else should announce it first.
        self.deciding: Counter[str] = Counter()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def graph(self) -> SignalGraph:
        """The agent graph; RuntimeError for a runner built without one (a backtest of a policy
        that decides outside the graph, bot.services.open_services(with_graph=False))."""
        if self._graph is None:
            raise RuntimeError("this runner has no agent graph (open_services(with_graph=False))")
        return self._graph

    @staticmethod
    def _config(signal_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": signal_id}}

    @asynccontextmanager
    async def _holding(self, name: str, *, wait: bool = True) -> AsyncIterator[bool]:
        """The in-process and the cross-process lock called ``name``; yields whether both are held
        (with ``wait=False``, False at once when either is taken)."""
        local = self._locks[name]
        if not wait and local.locked():
            yield False
            return
        async with local, process_lock(self.deps.signals.engine, name, wait=wait) as held:
            yield held

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
        what became of it: a scan run twice at the same bar decides once.

        One pending signal per venue and symbol: while one waits for its answer, a new walk on the
        same venue and symbol is not started and the result names the pending one (its id, status
        ``pending``, ``created`` False and the reason). The rule is per venue and symbol, not per
        side, because the side is only known once the policy has decided, and checking first wastes
        no policy (LLM) call; a BUY and a SELL waiting at once on one symbol would contradict each
        other anyway. The check and the walk run under the venue and symbol's cross-process lock,
        so two processes cannot both create one."""
        existing = self.deps.signals.get(signal_id)
        if existing is not None:
            return self._seen(existing)
        started = time.perf_counter()
        async with self._holding(setup_lock_name(venue, symbol)), self._holding(thread_lock_name(signal_id)):
            # Again under the locks: a concurrent start may have walked it, or another signal on the
            # same symbol may have become pending, meanwhile.
            existing = self.deps.signals.get(signal_id)
            if existing is not None:
                return self._seen(existing)
            waiting = self.deps.signals.pending_for(venue, symbol, now=self.deps.clock.now())
            if waiting is not None:
                return self._already_pending(waiting)
            config = self._config(signal_id)
            snapshot = await self.graph.aget_state(config)
            if _waits_for_decision(snapshot):  # paused earlier, but the pending row was never written
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
                elif snapshot.tasks:
                    # A walk that stopped part-way (a node raised, the process died) goes on from its
                    # last checkpoint: handing back its partial state would end it with no status.
                    values = await self.graph.ainvoke(None, config, durability="sync")
                else:
                    values = dict(snapshot.values)
                interrupts = values.get("__interrupt__")
                card = dict(interrupts[0].value) if interrupts else {}
            created = await self._store_pending(values, card) if card else False
        self._log_done(values, started)
        if not card or created:  # a card stored before (this walk found it) was counted then
            metrics().observe_walk(venue, "pending" if card else str(values.get("outcome") or ""))
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

    @staticmethod
    def _already_pending(row: SignalRow) -> WalkResult:
        expires = f" (expires {row.expires_at.isoformat()})" if row.expires_at else ""
        reason = (
            f"{row.symbol} already has a pending {row.side.upper()} signal {row.id}{expires}; answer it first: "
            f"/approve {row.id} or /reject {row.id}"
        )
        return WalkResult(row.id, row.status, reason, card=row.card or None, created=False)

    async def decide(self, signal_id: str, decision: str, *, actor: str, reason: str = "") -> DecideResult:
        """Approve, reject or expire a pending signal. The first answer wins; the rest are told.
        Waits while another process (or task) holds the thread: an answer that loses is told the
        outcome of the winner's execution, not a state half-way through it."""
        self.deciding[signal_id] += 1
        try:
            async with self._holding(thread_lock_name(signal_id)):
                return await self._decide_holding(signal_id, decision, actor=actor, reason=reason)
        finally:
            self.deciding[signal_id] -= 1
            if self.deciding[signal_id] <= 0:
                del self.deciding[signal_id]

    async def _decide_holding(self, signal_id: str, decision: str, *, actor: str, reason: str) -> DecideResult:
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
                await self._decide_holding(signal_id, "expired", actor=EXPIRY_ACTOR, reason=EXPIRY_REASON)
        outcome = self.deps.signals.decide(signal_id, decision, actor=actor, at=now, reason=reason)
        if not outcome.won:
            row = self.deps.signals.get(signal_id)
            return DecideResult(signal_id, outcome, row.status if row else "", "already decided")
        self.deps.signals.audit(actor, f"signal_{decision}", at=now, target=signal_id, detail={"reason": reason})
        await self._resume_holding(
            signal_id, {"decision": decision, "actor": actor, "reason": reason, "at": now.isoformat()}
        )
        row = self.deps.signals.get(signal_id)
        status = row.status if row else ""
        waited = (now - row.created_at).total_seconds() if row is not None else None
        metrics().observe_decision(decision, status, waited)
        result = DecideResult(signal_id, outcome, status, self._last_reason(signal_id))
        if self.on_decision is not None:
            await self.on_decision(result)
        return result

    async def _resume_holding(self, signal_id: str, value: dict[str, Any]) -> bool:
        """Run the rest of the thread with the decision, the thread's lock held by the caller;
        False when there was nothing left to run."""
        config = self._config(signal_id)
        snapshot = await self.graph.aget_state(config)
        if _waits_for_decision(snapshot):
            await self.graph.ainvoke(Command(resume=value), config, durability="sync")
            return True
        if snapshot.tasks and snapshot.values.get("decision"):
            # Resumed before, and stopped part-way (the process died in execute or record, or
            # between a step's writes and the next checkpoint): go on from the last checkpoint;
            # execute finds an order it already placed by its client order id.
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
        """Resume threads whose decision was recorded but whose walk never ended, and return their
        ids. A thread whose lock another live process holds is skipped, without waiting: that
        process is answering or resuming it. One whose holder died (the lock is free again) is
        finished here. One that fails again is logged and left for the next recover: it must not
        keep the rest waiting."""
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
                async with self._holding(thread_lock_name(row.id), wait=False) as held:
                    if held and await self._resume_holding(row.id, value):
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
        fields = {
            "id": values.get("signal_id"),
            "symbol": values.get("symbol"),
            "action": signal.get("action", "?"),
            "conf": round(float(signal.get("confidence") or 0), 2),
            "bars": facts.get("bars", 0),
            "ms_policy": round(float(timings.get("policy", 0.0))),
            "ms_total": round((time.perf_counter() - started) * 1000),
        }
        # The same fields ride on the record, so a JSON log line (bot/logs.py) carries them as keys.
        log.info(
            "signal_done | id=%s symbol=%s action=%s conf=%.2f bars=%s ms_policy=%.0f ms_total=%.0f",
            *fields.values(),
            extra={"event": "signal_done", "fields": fields},
        )


def _waits_for_decision(snapshot: StateSnapshot) -> bool:
    """The thread is paused in ``approve``'s interrupt and no answer has been written to it."""
    return any(task.name == "approve" and task.interrupts and task.result is None for task in snapshot.tasks)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
