"""The LLM settings the agent needs, handed down from bot/settings.py (nothing here reads the
environment)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

CacheMode = Literal["off", "read-write", "read-only"]

# USD per million tokens (prompt, completion), list prices when this was written; override or extend
# with TRADEOPS_LLM_PRICES. A model missing here is recorded with cost 0 and flagged as unpriced.
DEFAULT_PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4.1": (Decimal("2.00"), Decimal("8.00")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("1.60")),
    "gpt-4.1-nano": (Decimal("0.10"), Decimal("0.40")),
    "deepseek-chat": (Decimal("0.27"), Decimal("1.10")),
    "deepseek-reasoner": (Decimal("0.55"), Decimal("2.19")),
    "qwen-turbo": (Decimal("0.05"), Decimal("0.20")),
    "qwen-plus": (Decimal("0.40"), Decimal("1.20")),
    "qwen-max": (Decimal("1.60"), Decimal("6.40")),
}


@dataclass(frozen=True)
class LLMConfig:
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log
    model: str | None = None
    provider: str = "auto"  # auto | openai | deepseek | qwen | vllm | ollama | generic
    tools: bool | None = None  # None: as the provider's profile says; True/False forces tool calls on/off
    timeout_s: float = 30.0
    concurrency: int = 4
    max_rounds: int = 3
    max_retries: int = 3
    daily_token_budget: int = 0  # 0 = no budget
    budget_fallback: Literal["rules", "abstain"] = "rules"
    cache: CacheMode = "read-write"
    prices: Mapping[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    training_cutoff: date | None = None  # overrides agent/llm/cutoff.py's table for this model

    @property
    def configured(self) -> bool:
        return bool(self.model and (self.base_url or self.api_key))

    def price(self, model: str) -> tuple[Decimal, Decimal] | None:
        table = {**DEFAULT_PRICES, **self.prices}
        if model in table:
            return table[model]
        # Dated snapshots ("gpt-4o-2024-08-06") cost what their family costs.
        family = max((name for name in table if model.startswith(name)), key=len, default=None)
        return table[family] if family else None
