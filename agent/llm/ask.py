"""`/ask`: a read-only conversation with the model over the data tools. No order tool exists in
this toolbox, and the answer is text for the chat, so nothing it says can place or change an order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.deps import AgentDeps
from agent.llm.prompts import ASK_SYSTEM
from agent.llm.tools import Toolbox
from agent.llm.types import CallRecord, ChatClient, LLMFailure

MAX_QUESTION = 500


@dataclass(frozen=True)
class Answer:
    text: str
    calls: tuple[CallRecord, ...]
    tools_used: tuple[str, ...]
    ok: bool = True


async def ask(client: ChatClient, deps: AgentDeps, question: str, *, max_rounds: int) -> Answer:
    question = question.strip()
    if not question:
        raise ValueError("ask a question, e.g. /ask how far is BTC/USD from its 20-day EMA?")
    if len(question) > MAX_QUESTION:
        raise ValueError(f"the question is {len(question)} characters; at most {MAX_QUESTION}")
    toolbox = Toolbox(deps)
    now = deps.clock.now().strftime("%Y-%m-%d %H:%M UTC")
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": f"{ASK_SYSTEM}\nThe time now is {now}."},
        {"role": "user", "content": question},
    ]
    calls: list[CallRecord] = []
    used: list[str] = []
    tools = toolbox.specs() if client.supports_tools else None
    try:
        # As for decisions: at most ``max_rounds`` calls, the last one offered no tools.
        for round_ in range(1, max_rounds + 1):
            last = round_ == max_rounds
            result = await client.chat(messages, tools=None if last else tools, max_tokens=500)
            calls.append(result.record)
            tool_calls = result.message.get("tool_calls") or []
            if not tool_calls:
                text = str(result.message.get("content") or "").strip()
                if not text:
                    raise LLMFailure("empty_content", "the model answered nothing")
                return Answer(text, tuple(calls), tuple(used))
            messages.append(result.message)
            for call in tool_calls:
                function = call.get("function", {})
                name = str(function.get("name"))
                used.append(name)
                output = await toolbox.call(name, function.get("arguments"))
                messages.append(
                    {"role": "tool", "tool_call_id": call.get("id", ""), "content": json.dumps(output, default=str)}
                )
        raise LLMFailure("too_many_rounds", f"still calling tools after {max_rounds} rounds")
    except LLMFailure as failure:
        calls.extend(r for r in failure.records if r not in calls)
        return Answer(f"no answer: {failure}", tuple(calls), tuple(used), ok=False)
