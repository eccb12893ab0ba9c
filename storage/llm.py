"""The LLM response cache and the day's LLM usage (read back from the decision traces)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, case, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.db import transaction
from storage.tables import DecisionTrace, LLMCacheEntry

LLM_NODE_PREFIX = "llm"  # decision traces of LLM calls are stored under nodes "llm", "llm:2", ...
CACHED_SUFFIX = " (cached)"  # appended to the trace outcome of an answer served from the cache
# Trace outcomes of calls stopped before any HTTP request: traced, but not calls to the endpoint.
NOT_SENT = ("budget_exhausted", "cache_miss")


def trace_outcome(outcome: str, *, cached: bool) -> str:
    """The outcome column of an LLM call's trace row."""
    return (outcome + (CACHED_SUFFIX if cached else ""))[:500]


@dataclass(frozen=True)
class Usage:
    calls: int  # requests that reached the endpoint: cache hits and calls stopped before HTTP are not
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LLMCache:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, request_hash: str, *, at: datetime) -> dict[str, Any] | None:
        with transaction(self.engine) as session:
            entry = session.get(LLMCacheEntry, request_hash)
            if entry is None:
                return None
            entry.hits += 1
            entry.last_hit_at = at
            session.add(entry)
            return dict(entry.response)

    def put(
        self, request_hash: str, *, model: str, request: dict[str, Any], response: dict[str, Any], at: datetime
    ) -> None:
        try:
            with transaction(self.engine) as session:
                session.add(
                    LLMCacheEntry(
                        request_hash=request_hash, model=model, request=request, response=response, created_at=at
                    )
                )
        except IntegrityError:
            pass  # the same request answered twice at once: the first answer stays

    def size(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.count()).select_from(LLMCacheEntry)).one())


def usage_since(engine: Engine, since: datetime) -> Usage:
    """LLM use recorded in decision traces since ``since``: the requests that reached the endpoint,
    and the tokens and money they cost (cached answers cost nothing)."""
    sent = case(
        (col(DecisionTrace.outcome).in_(NOT_SENT) | col(DecisionTrace.outcome).endswith(CACHED_SUFFIX), 0), else_=1
    )
    query = select(
        func.coalesce(func.sum(sent), 0),
        func.coalesce(func.sum(DecisionTrace.prompt_tokens), 0),
        func.coalesce(func.sum(DecisionTrace.completion_tokens), 0),
    ).where(col(DecisionTrace.node).startswith(LLM_NODE_PREFIX), col(DecisionTrace.created_at) >= since)
    costs = select(col(DecisionTrace.cost_usd)).where(
        col(DecisionTrace.node).startswith(LLM_NODE_PREFIX), col(DecisionTrace.created_at) >= since
    )
    with Session(engine) as session:
        calls, prompt, completion = session.exec(query).one()
        # Money is summed in Python: SQLite would sum the decimal text as floats.
        cost = sum((c for c in session.exec(costs).all()), Decimal(0))
    return Usage(int(calls), int(prompt), int(completion), cost)


@dataclass(frozen=True)
class CallCounts:
    """What a run's LLM calls came to, from its decision traces (a backtest's throwaway database)."""

    sent: int  # requests that reached the endpoint
    cached: int  # answers served from the response cache
    cache_misses: int  # read-only cache and never answered: no request, the decision abstained
    missed_signals: int  # decisions that abstained on a cache miss
    usage: Usage


def call_counts(engine: Engine, since: datetime) -> CallCounts:
    llm = col(DecisionTrace.node).startswith(LLM_NODE_PREFIX) & (col(DecisionTrace.created_at) >= since)
    cached = select(func.count()).where(llm, col(DecisionTrace.outcome).endswith(CACHED_SUFFIX))
    misses = select(func.count(), func.count(func.distinct(DecisionTrace.signal_id))).where(
        llm, DecisionTrace.outcome == "cache_miss"
    )
    usage = usage_since(engine, since)
    with Session(engine) as session:
        hits = int(session.exec(cached).one())
        missed, signals = session.exec(misses).one()
    return CallCounts(usage.calls, hits, int(missed), int(signals), usage)
