"""The contract between the LLM client and its users (the policy, /ask, doctor)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from storage.llm import trace_outcome
from storage.tables import DecisionTrace

FailureKind = Literal[
    "config",  # no endpoint, key or model configured
    "timeout",
    "rate_limited",  # 429 after the retries the Retry-After allowed
    "server_error",  # 5xx after bounded retries
    "connection",
    "http_error",  # another 4xx: the request itself was refused
    "empty_content",
    "malformed_json",  # not JSON, even after one repair attempt
    "wrong_schema",  # JSON, but not the decision's schema
    "unknown_tool",
    "bad_tool_arguments",
    "too_many_rounds",
    "absurd_values",  # prices or numbers that cannot be right
    "budget_exhausted",  # the daily token budget is spent
    "cache_miss",  # read-only cache mode and the request was never answered before
]


class LLMFailure(Exception):
    """Why an LLM step produced no usable answer. The message goes on the card and in the trace."""

    def __init__(self, kind: FailureKind, detail: str, *, records: tuple[CallRecord, ...] = ()) -> None:
        self.kind = kind
        self.detail = detail
        self.records = records
        super().__init__(f"LLM {kind.replace('_', ' ')}: {detail}")


@dataclass(frozen=True)
class CallRecord:
    """One request to the endpoint (or to the cache): what the decision trace keeps of it."""

    model: str
    provider: str
    latency_ms: float
    prompt_tokens: int  # tokens paid for: 0 when the answer came from the cache
    completion_tokens: int
    cost_usd: Decimal
    cached: bool
    request_hash: str
    attempts: int  # HTTP attempts, retries included
    outcome: str  # "ok" or the failure kind
    request: dict[str, Any] = field(default_factory=dict)  # the messages and parameters sent
    response: dict[str, Any] = field(default_factory=dict)  # the completion as received

    def trace(self, *, signal_id: str | None, node: str, policy: str, at: datetime) -> DecisionTrace:
        """The decision-trace row that keeps this call: what was asked, answered, and what it cost."""
        return DecisionTrace(
            signal_id=signal_id,
            node=node,
            policy=policy,
            model=self.model,
            request=self.request,
            response=self.response,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=self.cost_usd,
            latency_ms=self.latency_ms,
            outcome=trace_outcome(self.outcome, cached=self.cached),
            created_at=at,
        )


@dataclass(frozen=True)
class ChatResult:
    message: dict[str, Any]  # role, content, tool_calls, and reasoning_content where the provider has it
    finish_reason: str
    record: CallRecord


class ChatClient(Protocol):
    model: str
    provider: str

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> ChatResult:
        """One completion. ``tools`` are OpenAI tool specs (dropped for providers without tools);
        ``json_schema`` asks for a JSON answer of that schema (strict json_schema where the
        provider has it, json_object otherwise). Raises LLMFailure; never returns a half answer."""
        ...

    @property
    def supports_tools(self) -> bool: ...
