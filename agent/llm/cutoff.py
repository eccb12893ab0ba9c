"""Training cut-offs: a backtest of an LLM over a period the model may have read about is not a test.

A model trained on text up to its cut-off may know how the prices of that period went (news,
price tables, retrospectives), so its "decisions" there can be recall, not judgement. A backtest
whose window starts before the model's cut-off is flagged "possibly leaked"; one that starts after
it is not (the model cannot have read about it). A model with no known cut-off is flagged too: the
safe assumption is that it has seen the period.

The built-in table holds the knowledge cut-offs the vendors publish on their model pages (OpenAI's
https://platform.openai.com/docs/models/<model>, "Knowledge cutoff", as published when this was
written); a dated snapshot ("gpt-4o-2024-08-06") takes its family's. A family whose snapshots have
different cut-offs (the original gpt-4) is left out rather than guessed. DeepSeek and Qwen publish
none, so they are absent: set TRADEOPS_LLM_TRAINING_CUTOFF for them (or to override an entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

OPENAI_MODELS = "https://platform.openai.com/docs/models/"

# model family -> (knowledge cut-off, where it is published)
TRAINING_CUTOFFS: dict[str, tuple[date, str]] = {
    "gpt-3.5-turbo": (date(2021, 9, 1), OPENAI_MODELS + "gpt-3.5-turbo"),
    "gpt-4-turbo": (date(2023, 12, 1), OPENAI_MODELS + "gpt-4-turbo"),
    "gpt-4o": (date(2023, 10, 1), OPENAI_MODELS + "gpt-4o"),
    "gpt-4o-mini": (date(2023, 10, 1), OPENAI_MODELS + "gpt-4o-mini"),
    "gpt-4.1": (date(2024, 6, 1), OPENAI_MODELS + "gpt-4.1"),
    "gpt-4.1-mini": (date(2024, 6, 1), OPENAI_MODELS + "gpt-4.1-mini"),
    "gpt-4.1-nano": (date(2024, 6, 1), OPENAI_MODELS + "gpt-4.1-nano"),
    "o1": (date(2023, 10, 1), OPENAI_MODELS + "o1"),
    "o3-mini": (date(2023, 10, 1), OPENAI_MODELS + "o3-mini"),
    "o3": (date(2024, 6, 1), OPENAI_MODELS + "o3"),
    "o4-mini": (date(2024, 6, 1), OPENAI_MODELS + "o4-mini"),
    "gpt-5": (date(2024, 9, 30), OPENAI_MODELS + "gpt-5"),
    "gpt-5-mini": (date(2024, 5, 31), OPENAI_MODELS + "gpt-5-mini"),
    "gpt-5-nano": (date(2024, 5, 31), OPENAI_MODELS + "gpt-5-nano"),
}
SETTING = "TRADEOPS_LLM_TRAINING_CUTOFF"


def training_cutoff(model: str, override: date | None = None) -> tuple[date, str] | None:
    """(the cut-off, its source) of ``model``: ``override`` (the setting) first, then the table by
    exact name, then by the longest family name the model starts with ("gpt-4o-mini-2024-07-18" is
    gpt-4o-mini, not gpt-4o); None when unknown."""
    if override is not None:
        return override, SETTING
    name = model.strip().lower()
    if name in TRAINING_CUTOFFS:
        return TRAINING_CUTOFFS[name]
    family = max((f for f in TRAINING_CUTOFFS if name.startswith(f + "-")), key=len, default=None)
    return TRAINING_CUTOFFS[family] if family else None


@dataclass(frozen=True)
class LeakCheck:
    """Whether a backtest window may be inside what the model was trained on."""

    model: str
    cutoff: date | None  # None: not known
    source: str  # where the cut-off comes from: a URL, the setting's name, or "" when unknown
    possible_leak: bool
    reason: str  # one sentence for the summary and the report; "" when not flagged

    def to_json(self) -> dict[str, str | bool | None]:
        return {
            "model": self.model,
            "training_cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "training_cutoff_source": self.source or None,
            "possible_leak": self.possible_leak,
            "possible_leak_reason": self.reason or None,
        }


def leak_check(model: str, start: datetime, end: datetime, override: date | None = None) -> LeakCheck:
    """Flag a backtest window [start, end) that lies, wholly or partly, before the model's training
    cut-off (the cut-off day counts as seen), or any window when the cut-off is unknown."""
    found = training_cutoff(model, override)
    if found is None:
        return LeakCheck(
            model,
            None,
            "",
            True,
            f"possibly leaked: the model may have seen this period (the training cut-off of {model} is not "
            f"known; set {SETTING}=YYYY-MM-DD to say it)",
        )
    cutoff, source = found
    unseen_from = datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC) + timedelta(days=1)
    if start.astimezone(UTC) >= unseen_from:
        return LeakCheck(model, cutoff, source, False, "")
    part = "the whole window" if end.astimezone(UTC) <= unseen_from else "part of the window"
    return LeakCheck(
        model,
        cutoff,
        source,
        True,
        f"possibly leaked: the model may have seen this period ({model} was trained on data up to "
        f"{cutoff.isoformat()}, {part} {start:%Y-%m-%d} -> {end:%Y-%m-%d} lies before it)",
    )
