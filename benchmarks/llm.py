"""LLM policy cost per decision, with a scripted model: round trips and prompt tokens.

The endpoint is mocked with respx (no network), and answers like a careful model would: it reads
the context the policy sends, calls `preview_trade` first on every third decision (so tool rounds
are exercised), and then answers with a BUY (entry at the last price, stop two ATRs below, targets
at 1.5R/2.5R/3.5R) or a HOLD when the context has no ATR. The decisions are the real candidates of
the replay data over several days (the demo's watchlists), walked through the real graph with the
real OpenAI SDK, on SQLite.

Prompt tokens are estimated from the request, since no tokenizer ships offline: characters / 3,
a conservative reading for JSON full of numbers (GPT-style tokenizers average about 4 characters
per token on English, fewer on digits and punctuation); the chars/4 figure is printed too. The
scripted server reports the estimate as the usage, so the policy records it like a real one.
Targets: <= 2 round trips and <= 4,000 prompt tokens per decision on average.

Run from the repo root: `.venv/bin/python benchmarks/llm.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import respx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.services import DEFAULT_WATCHLISTS, open_services  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402

BASE_URL = "http://scripted-llm.test/v1"
START = datetime(2021, 7, 6, tzinfo=UTC)
DAYS = 5


def estimate_tokens(payload: Any, chars_per_token: int = 3) -> int:
    return max(1, len(json.dumps(payload, ensure_ascii=False)) // chars_per_token)


class ScriptedModel:
    def __init__(self) -> None:
        self.decisions = itertools.count()
        self.first_calls = 0  # one per decision: a request with no tool result in it
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        messages = body["messages"]
        context = json.loads(next(m["content"] for m in messages if m["role"] == "user"))
        has_tool_result = any(m["role"] == "tool" for m in messages)
        first_call = not has_tool_result
        decision = next(self.decisions) if first_call else None
        self.first_calls += first_call
        if first_call and decision is not None and decision % 3 == 0 and body.get("tools"):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{decision}",
                        "type": "function",
                        "function": {"name": "preview_trade", "arguments": json.dumps(self._prices(context))},
                    }
                ],
            }
        else:
            message = {"role": "assistant", "content": json.dumps(self._answer(context))}
        usage = {"prompt_tokens": estimate_tokens(body), "completion_tokens": estimate_tokens(message)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage,
            },
        )

    @staticmethod
    def _prices(context: dict[str, Any]) -> dict[str, Any]:
        last = float(context["last_price"])
        atr = next((v for k, v in context["indicators"].items() if k.startswith("ATRr_14")), last * 0.01)
        risk = 2 * atr
        return {"entry": last, "stop": last - risk, "take_profits": [last + risk * r for r in (1.5, 2.5, 3.5)]}

    def _answer(self, context: dict[str, Any]) -> dict[str, Any]:
        if not any(k.startswith("ATRr_14") for k in context["indicators"]):
            return {
                "action": "HOLD",
                "confidence": 0.3,
                "entry": None,
                "stop": None,
                "take_profits": [],
                "horizon_bars": 0,
                "reason": "no ATR to place a stop",
                "risk_notes": [],
            }
        prices = self._prices(context)
        return {
            "action": "BUY",
            "confidence": 0.72,
            **prices,
            "horizon_bars": 48,
            "reason": f"trend with the screen's reasons; stop 2 ATR below {prices['entry']:.4g}",
            "risk_notes": [],
        }


async def main() -> None:
    model = ScriptedModel()
    with tempfile.TemporaryDirectory() as tmp, respx.mock(base_url=BASE_URL, assert_all_called=False) as mock:
        mock.post("/chat/completions").mock(side_effect=model)
        settings = load_settings(
            data_dir=Path(tmp),
            policy="llm",
            llm_base_url=BASE_URL,
            llm_api_key="bench",
            llm_model="gpt-4o-mini",
            llm_cache="off",
        )
        clock = SimulatedClock(START)
        async with open_services(settings, clock=clock) as services:
            for spec in DEFAULT_WATCHLISTS:
                services.watchlists.ensure(spec, at=clock.now())
            for hour in range(DAYS * 24):
                clock.advance_to(START + timedelta(hours=hour, seconds=5))
                for spec in DEFAULT_WATCHLISTS:
                    await services.scanner.scan(spec)
        calls = len(model.requests)
        prompt = [estimate_tokens(r) for r in model.requests]
        optimistic = sum(estimate_tokens(r, 4) for r in model.requests)
    walks = model.first_calls
    per_decision_tokens = sum(prompt) / walks if walks else 0
    print(
        f"llm: {walks} decisions, {calls} calls on the scripted model: "
        f"{calls / walks if walks else 0:.2f} round trips per decision (target <= 2), "
        f"{per_decision_tokens:,.0f} prompt tokens per decision (chars/3; {optimistic / max(walks, 1):,.0f} at "
        "chars/4; target <= 4,000), "
        f"largest request {max(prompt, default=0):,} tokens, median {statistics.median(prompt) if prompt else 0:,.0f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
