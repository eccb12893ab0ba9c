"""The LLM client against mocked endpoints: the real openai SDK and a real httpx client, with respx
answering instead of the internet. Sleeps are recorded, not slept."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import Engine

from agent.llm.client import OpenAICompatClient, probe, request_hash
from agent.llm.config import LLMConfig
from agent.llm.providers import PROFILES, detect
from agent.llm.types import LLMFailure
from storage.llm import LLMCache
from tests.support import Sleeps
from venues.clock import SimulatedClock

BASE = "https://llm.test.example/v1"
KEY = "sk-test-SECRET0123456789abcdef"
NOW = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SCHEMA: dict[str, Any] = {
    "name": "trade_decision",
    "schema": {
        "type": "object",
        "additionalProperties": False,
        "required": ["action"],
        "properties": {"action": {"type": "string", "enum": ["BUY", "SELL", "HOLD"]}},
    },
}
TOOL = {
    "type": "function",
    "function": {"name": "get_bars", "description": "Bars.", "parameters": {"type": "object", "properties": {}}},
}
OTHER_TOOL = {
    "type": "function",
    "function": {"name": "get_account", "description": "Cash.", "parameters": {"type": "object", "properties": {}}},
}
QUESTION: list[dict[str, Any]] = [{"role": "system", "content": "You decide."}, {"role": "user", "content": "AAPL?"}]


def completion(
    content: str | None = "HOLD",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    reasoning: str | None = None,
    usage: tuple[int, int] | None = (1000, 500),
    finish: str = "stop",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1767623400,
        "model": "whatever",
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return body


def ok(body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body or completion(), headers=headers)


def error(status: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "test"}}, headers=headers)


def sent(route: respx.Route, index: int = -1) -> dict[str, Any]:
    return dict(json.loads(route.calls[index].request.content))


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


Factory = Callable[..., OpenAICompatClient]


@pytest.fixture
async def make(sleeps: Sleeps) -> AsyncIterator[Factory]:
    """Clients on the SimulatedClock with recorded sleeps and no jitter (rng 1.0: the full backoff)."""
    clients: list[OpenAICompatClient] = []

    def build(
        *,
        store: LLMCache | None = None,
        usage: Callable[[], int] | None = None,
        rng: Callable[[], float] = lambda: 1.0,
        **overrides: Any,
    ) -> OpenAICompatClient:
        settings: dict[str, Any] = {
            "base_url": BASE,
            "api_key": KEY,
            "model": "gpt-4o-mini",
            "provider": "openai",
            "cache": "off",
            **overrides,
        }
        client = OpenAICompatClient(
            LLMConfig(**settings), clock=SimulatedClock(NOW), cache=store, usage=usage, sleep=sleeps, rng=rng
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


# ---------------------------------------------------------------------------------------- success


async def test_success_records_tokens_cost_and_latency(api: respx.MockRouter, make: Factory) -> None:
    route = api.post("/chat/completions").mock(return_value=ok())
    result = await make().chat(QUESTION, max_tokens=300)

    assert result.message == {"role": "assistant", "content": "HOLD"}
    assert result.finish_reason == "stop"
    record = result.record
    assert (record.prompt_tokens, record.completion_tokens) == (1000, 500)
    # gpt-4o-mini: 0.15 and 0.60 USD per million tokens.
    assert record.cost_usd == Decimal("0.00015") + Decimal("0.0003")
    assert record.latency_ms > 0 and record.attempts == 1 and record.outcome == "ok" and not record.cached
    assert record.provider == "openai" and record.model == "gpt-4o-mini"
    body = sent(route)
    assert body["temperature"] == 0 and body["max_completion_tokens"] == 300 and "max_tokens" not in body
    assert body["messages"] == QUESTION
    assert record.request == body  # the record keeps exactly what was sent
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert "_meta" not in record.response


async def test_unpriced_model_costs_zero_and_says_so(api: respx.MockRouter, make: Factory) -> None:
    api.post("/chat/completions").mock(return_value=ok())
    record = (await make(model="my-finetune", provider="generic").chat(QUESTION)).record
    assert record.cost_usd == Decimal(0) and record.prompt_tokens == 1000
    assert "my-finetune" in record.response["_meta"]["unpriced"]


async def test_missing_usage_is_noted(api: respx.MockRouter, make: Factory) -> None:
    api.post("/chat/completions").mock(return_value=ok(completion(usage=None)))
    record = (await make().chat(QUESTION)).record
    assert record.prompt_tokens == 0 and "no token usage" in record.response["_meta"]["usage"]


# ---------------------------------------------------------------------------------------- failures


async def test_timeout_fails_without_retry(api: respx.MockRouter, make: Factory, sleeps: Sleeps) -> None:
    route = api.post("/chat/completions").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(LLMFailure) as caught:
        await make().chat(QUESTION)
    assert caught.value.kind == "timeout" and "not retried" in caught.value.detail
    assert route.call_count == 1 and sleeps.waits == []
    assert caught.value.records[0].outcome == "timeout" and caught.value.records[0].attempts == 1


async def test_a_server_that_never_finishes_hits_the_deadline(api: respx.MockRouter, make: Factory) -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return ok()

    api.post("/chat/completions").mock(side_effect=stall)
    with pytest.raises(LLMFailure) as caught:
        await make(timeout_s=0.05).chat(QUESTION)
    assert caught.value.kind == "timeout" and "0.05 s" in caught.value.detail


async def test_429_honours_retry_after_seconds(api: respx.MockRouter, make: Factory, sleeps: Sleeps) -> None:
    route = api.post("/chat/completions").mock(side_effect=[error(429, "slow down", **{"Retry-After": "7"}), ok()])
    result = await make().chat(QUESTION)
    assert sleeps.waits == [7.0] and route.call_count == 2 and result.record.attempts == 2


async def test_429_honours_retry_after_http_date(api: respx.MockRouter, make: Factory, sleeps: Sleeps) -> None:
    # Measured against the server's Date header, not our (simulated) clock.
    headers = {"Retry-After": "Wed, 21 Oct 2026 07:28:12 GMT", "Date": "Wed, 21 Oct 2026 07:28:00 GMT"}
    api.post("/chat/completions").mock(side_effect=[error(429, "slow down", **headers), ok()])
    await make().chat(QUESTION)
    assert sleeps.waits == [12.0]


async def test_429_asking_longer_than_the_cap_fails_at_once(
    api: respx.MockRouter, make: Factory, sleeps: Sleeps
) -> None:
    route = api.post("/chat/completions").mock(return_value=error(429, "quota", **{"Retry-After": "120"}))
    with pytest.raises(LLMFailure) as caught:
        await make().chat(QUESTION)
    assert caught.value.kind == "rate_limited" and "120 s" in caught.value.detail
    assert route.call_count == 1 and sleeps.waits == []


async def test_429_until_retries_run_out(api: respx.MockRouter, make: Factory, sleeps: Sleeps) -> None:
    route = api.post("/chat/completions").mock(return_value=error(429, "busy", **{"Retry-After": "1"}))
    with pytest.raises(LLMFailure) as caught:
        await make(max_retries=2).chat(QUESTION)
    assert caught.value.kind == "rate_limited" and "3 attempts" in caught.value.detail
    assert route.call_count == 3 and sleeps.waits == [1.0, 1.0]


async def test_5xx_is_retried_with_exponential_backoff(api: respx.MockRouter, make: Factory, sleeps: Sleeps) -> None:
    route = api.post("/chat/completions").mock(side_effect=[error(503, "overloaded"), error(502, "bad gw"), ok()])
    result = await make().chat(QUESTION)
    assert result.message["content"] == "HOLD" and route.call_count == 3
    assert sleeps.waits == [0.5, 1.0] and result.record.attempts == 3


async def test_backoff_has_jitter(api: respx.MockRouter, make: Factory, sleeps: Sleeps) -> None:
    api.post("/chat/completions").mock(side_effect=[error(500, "x"), error(500, "x"), ok()])
    await make(rng=lambda: 0.0).chat(QUESTION)
    assert sleeps.waits == [0.25, 0.5]  # half of each ceiling is fixed, half random


async def test_5xx_until_retries_run_out(api: respx.MockRouter, make: Factory, sleeps: Sleeps) -> None:
    route = api.post("/chat/completions").mock(return_value=error(500, "internal"))
    with pytest.raises(LLMFailure) as caught:
        await make().chat(QUESTION)
    failure = caught.value
    assert failure.kind == "server_error" and "HTTP 500" in failure.detail and "internal" in failure.detail
    assert route.call_count == 4 and sleeps.waits == [0.5, 1.0, 2.0]
    assert failure.records[0].attempts == 4 and failure.records[0].response["status"] == 500


async def test_connection_errors_are_retried(api: respx.MockRouter, make: Factory, sleeps: Sleeps) -> None:
    api.post("/chat/completions").mock(side_effect=[httpx.ConnectError("refused"), ok()])
    assert (await make().chat(QUESTION)).record.attempts == 2
    assert sleeps.waits == [0.5]


async def test_connection_failure(api: respx.MockRouter, make: Factory) -> None:
    route = api.post("/chat/completions").mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(LLMFailure) as caught:
        await make(max_retries=1).chat(QUESTION)
    assert caught.value.kind == "connection" and "connection refused" in caught.value.detail
    assert "llm.test.example" in caught.value.detail and route.call_count == 2


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, f"Incorrect API key provided: {KEY}. You can find your API key at platform."),
        (400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."),
    ],
)
async def test_4xx_is_an_http_error_with_the_providers_words_and_no_key(
    api: respx.MockRouter, make: Factory, sleeps: Sleeps, status: int, message: str
) -> None:
    route = api.post("/chat/completions").mock(return_value=error(status, message))
    with pytest.raises(LLMFailure) as caught:
        await make().chat(QUESTION)
    failure = caught.value
    assert failure.kind == "http_error" and f"HTTP {status}" in failure.detail
    assert message.split(":")[0] in failure.detail
    assert KEY not in str(failure) and KEY not in json.dumps(failure.records[0].response)
    assert "SECRET" not in str(failure)
    assert route.call_count == 1 and sleeps.waits == []


async def test_a_200_that_is_not_a_completion(api: respx.MockRouter, make: Factory) -> None:
    api.post("/chat/completions").mock(return_value=httpx.Response(200, text="<html>captive portal</html>"))
    with pytest.raises(LLMFailure) as caught:
        await make().chat(QUESTION)
    assert caught.value.kind == "http_error" and "captive portal" in caught.value.detail


@pytest.mark.parametrize("content", [None, "", "   \n "])
async def test_empty_content(api: respx.MockRouter, make: Factory, content: str | None) -> None:
    api.post("/chat/completions").mock(return_value=ok(completion(content)))
    with pytest.raises(LLMFailure) as caught:
        await make().chat(QUESTION)
    assert caught.value.kind == "empty_content"
    record = caught.value.records[0]
    assert record.prompt_tokens == 1000 and record.cost_usd > 0  # paid for, and counted


# ---------------------------------------------------------------------------------------- quirks


async def test_deepseek_gets_json_object_and_the_word_json(make: Factory) -> None:
    base = "https://api.deepseek.com"
    caller = copy.deepcopy(QUESTION)
    with respx.mock(base_url=base) as router:
        route = router.post("/chat/completions").mock(return_value=ok(completion('{"action": "HOLD"}')))
        client = make(base_url=base, provider="auto", model="deepseek-chat")
        await client.chat(caller, json_schema=SCHEMA)
    body = sent(route)
    assert client.provider == "deepseek"
    assert body["response_format"] == {"type": "json_object"}
    assert "json" in body["messages"][0]["content"] and body["messages"][0]["role"] == "system"
    assert len(body["messages"]) == 2
    assert caller == QUESTION  # the caller's messages are untouched


async def test_qwen_gets_json_object_and_the_word_JSON(make: Factory) -> None:
    base = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    with respx.mock(base_url=base) as router:
        route = router.post("/chat/completions").mock(return_value=ok(completion('{"action": "HOLD"}')))
        client = make(base_url=base, provider="auto", model="qwen-turbo")
        await client.chat([{"role": "user", "content": "AAPL?"}], json_schema=SCHEMA)
    body = sent(route)
    assert client.provider == "qwen" and body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": "Answer with one JSON object."}
    assert body["messages"][1] == {"role": "user", "content": "AAPL?"}


async def test_qwen_plus_gets_strict_json_schema_and_no_extra_line(make: Factory) -> None:
    base = "https://dashscope.aliyuncs.com/compatible-mode/v1"
    with respx.mock(base_url=base) as router:
        route = router.post("/chat/completions").mock(return_value=ok(completion('{"action": "HOLD"}')))
        await make(base_url=base, provider="auto", model="qwen-plus").chat(QUESTION, json_schema=SCHEMA)
    body = sent(route)
    assert body["response_format"]["type"] == "json_schema" and body["messages"] == QUESTION


async def test_keyword_already_there_adds_nothing(api: respx.MockRouter, make: Factory) -> None:
    route = api.post("/chat/completions").mock(return_value=ok(completion('{"action": "HOLD"}')))
    asked = [{"role": "system", "content": "Answer in json."}, {"role": "user", "content": "AAPL?"}]
    await make(provider="deepseek", model="deepseek-chat").chat(asked, json_schema=SCHEMA)
    assert sent(route)["messages"] == asked


async def test_openai_gets_strict_json_schema(api: respx.MockRouter, make: Factory) -> None:
    route = api.post("/chat/completions").mock(return_value=ok(completion('{"action": "HOLD"}')))
    await make().chat(QUESTION, json_schema=SCHEMA)
    body = sent(route)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "trade_decision", "strict": True, "schema": SCHEMA["schema"]},
    }
    assert body["messages"] == QUESTION


async def test_a_bare_schema_is_wrapped(api: respx.MockRouter, make: Factory) -> None:
    route = api.post("/chat/completions").mock(return_value=ok(completion('{"action": "HOLD"}')))
    await make().chat(QUESTION, json_schema={"title": "my answer!", **SCHEMA["schema"]})
    assert sent(route)["response_format"]["json_schema"]["name"] == "my_answer_"


async def test_openai_reasoning_models_get_no_temperature(api: respx.MockRouter, make: Factory) -> None:
    route = api.post("/chat/completions").mock(return_value=ok())
    await make(model="o3-mini").chat(QUESTION)
    assert "temperature" not in sent(route)


async def test_tools_are_dropped_where_the_profile_has_none(api: respx.MockRouter, make: Factory) -> None:
    route = api.post("/chat/completions").mock(return_value=ok())
    client = make(provider="vllm", model="Qwen/Qwen2.5-7B-Instruct")
    assert not client.supports_tools
    await client.chat(QUESTION, tools=[TOOL], tool_choice="auto", max_tokens=50)
    body = sent(route)
    assert "tools" not in body and "tool_choice" not in body and body["max_tokens"] == 50


async def test_tools_and_tool_choice_are_sent_where_supported(api: respx.MockRouter, make: Factory) -> None:
    route = api.post("/chat/completions").mock(return_value=ok())
    choice = {"type": "function", "function": {"name": "get_bars"}}
    await make().chat(QUESTION, tools=[TOOL, OTHER_TOOL], tool_choice=choice)
    body = sent(route)
    assert body["tools"] == [TOOL, OTHER_TOOL] and body["tool_choice"] == choice


async def test_reasoner_keeps_reasoning_content_and_never_gets_object_tool_choice(make: Factory) -> None:
    base = "https://api.deepseek.com"
    call = {"id": "call_1", "type": "function", "function": {"name": "get_bars", "arguments": "{}"}}
    history: list[dict[str, Any]] = [
        *QUESTION,
        {"role": "assistant", "content": "", "reasoning_content": "need bars", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{}"},
    ]
    with respx.mock(base_url=base) as router:
        route = router.post("/chat/completions").mock(
            return_value=ok(completion("", tool_calls=[call], reasoning="still thinking"))
        )
        client = make(base_url=base, provider="deepseek", model="deepseek-reasoner")
        result = await client.chat(
            history, tools=[TOOL, OTHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_bars"}}
        )
    assert client.provider == "deepseek-reasoner"
    assert result.message["reasoning_content"] == "still thinking"
    assert result.message["tool_calls"] == [call]
    body = sent(route)
    assert body["messages"][2]["reasoning_content"] == "need bars"  # passed back, as the API demands
    assert "tool_choice" not in body and body["tools"] == [TOOL]  # forced by offering only that tool


async def test_other_providers_neither_send_nor_return_reasoning_content(api: respx.MockRouter, make: Factory) -> None:
    route = api.post("/chat/completions").mock(return_value=ok(completion("HOLD", reasoning="hmm")))
    history: list[dict[str, Any]] = [
        *QUESTION,
        {"role": "assistant", "content": "x", "reasoning_content": "old"},
        QUESTION[1],
    ]
    result = await make().chat(history)
    assert "reasoning_content" not in result.message
    assert all("reasoning_content" not in m for m in sent(route)["messages"])
    assert history[2]["reasoning_content"] == "old"
    assert result.record.response["choices"][0]["message"]["reasoning_content"] == "hmm"  # kept as received


# ---------------------------------------------------------------------------------------- cache and budget


async def test_cache_answers_an_identical_request_without_http(
    api: respx.MockRouter, make: Factory, engine: Engine
) -> None:
    route = api.post("/chat/completions").mock(return_value=ok())
    cache = LLMCache(engine)
    client = make(cache="read-write", store=cache)
    first = await client.chat(QUESTION, json_schema=SCHEMA)
    second = await client.chat(copy.deepcopy(QUESTION), json_schema=SCHEMA)
    assert route.call_count == 1 and cache.size() == 1
    assert second.message == first.message and second.record.cached and not first.record.cached
    assert (second.record.prompt_tokens, second.record.completion_tokens, second.record.cost_usd) == (0, 0, 0)
    assert second.record.attempts == 0 and second.record.request_hash == first.record.request_hash
    # A different request is a different entry.
    await client.chat([*QUESTION, {"role": "user", "content": "and MSFT?"}])
    assert route.call_count == 2 and cache.size() == 2


async def test_read_only_cache_miss_makes_no_http(api: respx.MockRouter, make: Factory, engine: Engine) -> None:
    route = api.post("/chat/completions").mock(return_value=ok())
    with pytest.raises(LLMFailure) as caught:
        await make(cache="read-only", store=LLMCache(engine)).chat(QUESTION)
    assert caught.value.kind == "cache_miss" and route.call_count == 0
    with pytest.raises(LLMFailure, match="no cache database"):
        await make(cache="read-only").chat(QUESTION)
    assert route.call_count == 0


async def test_read_only_cache_serves_what_read_write_stored(
    api: respx.MockRouter, make: Factory, engine: Engine
) -> None:
    route = api.post("/chat/completions").mock(return_value=ok())
    await make(cache="read-write", store=LLMCache(engine)).chat(QUESTION)
    replay = await make(cache="read-only", store=LLMCache(engine)).chat(QUESTION)
    assert replay.record.cached and route.call_count == 1


async def test_cache_off_never_reads_or_stores(api: respx.MockRouter, make: Factory, engine: Engine) -> None:
    route = api.post("/chat/completions").mock(return_value=ok())
    cache = LLMCache(engine)
    client = make(cache="off", store=cache)
    await client.chat(QUESTION)
    await client.chat(QUESTION)
    assert route.call_count == 2 and cache.size() == 0


async def test_failures_are_not_cached(api: respx.MockRouter, make: Factory, engine: Engine) -> None:
    api.post("/chat/completions").mock(return_value=ok(completion("")))
    cache = LLMCache(engine)
    with pytest.raises(LLMFailure):
        await make(cache="read-write", store=cache).chat(QUESTION)
    assert cache.size() == 0


async def test_spent_budget_stops_before_http(api: respx.MockRouter, make: Factory) -> None:
    route = api.post("/chat/completions").mock(return_value=ok())
    client = make(daily_token_budget=10_000, usage=lambda: 10_000)
    with pytest.raises(LLMFailure) as caught:
        await client.chat(QUESTION)
    assert caught.value.kind == "budget_exhausted" and "10,000" in caught.value.detail
    assert route.call_count == 0
    assert (await make(daily_token_budget=10_000, usage=lambda: 9_999).chat(QUESTION)).record.outcome == "ok"


async def test_spent_budget_still_serves_the_cache(api: respx.MockRouter, make: Factory, engine: Engine) -> None:
    route = api.post("/chat/completions").mock(return_value=ok())
    await make(cache="read-write", store=LLMCache(engine)).chat(QUESTION)
    broke = make(cache="read-write", daily_token_budget=1, usage=lambda: 5, store=LLMCache(engine))
    assert (await broke.chat(QUESTION)).record.cached and route.call_count == 1


def test_request_hash_is_canonical_and_knows_the_server() -> None:
    request = {"model": "m", "messages": QUESTION, "temperature": 0}
    same = {"temperature": 0, "messages": copy.deepcopy(QUESTION), "model": "m"}
    assert request_hash(BASE, request) == request_hash(BASE + "/", same)
    assert request_hash(BASE, request) != request_hash("http://localhost:8000/v1", request)
    assert request_hash(BASE, request) != request_hash(BASE, {**request, "max_tokens": 5})


# ---------------------------------------------------------------------------------------- concurrency


async def test_concurrency_bound(api: respx.MockRouter, make: Factory) -> None:
    in_flight = peak = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return ok()

    route = api.post("/chat/completions").mock(side_effect=answer)
    client = make(concurrency=2)
    results = await asyncio.gather(*(client.chat([{"role": "user", "content": f"#{i}"}]) for i in range(7)))
    assert len(results) == 7 and route.call_count == 7 and peak == 2


# ---------------------------------------------------------------------------------------- detect


@pytest.mark.parametrize(
    ("base_url", "model", "override", "expected"),
    [
        ("https://api.openai.com/v1", "gpt-4o", "auto", "openai"),
        (None, "gpt-4o-mini", None, "openai"),  # no base URL: the SDK's default, OpenAI
        ("https://api.deepseek.com", "deepseek-chat", "auto", "deepseek"),
        ("https://api.deepseek.com/v1", "deepseek-reasoner", "auto", "deepseek-reasoner"),
        ("https://dashscope.aliyuncs.com/compatible-mode/v1", "qwen-plus", "auto", "qwen"),
        ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "qwen-max", "auto", "qwen"),
        ("https://ws1.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1", "qwen3-max", "auto", "qwen"),
        ("http://localhost:11434/v1", "llama3.1:8b", "auto", "ollama"),
        ("http://gpu-box:11434/v1", "qwen2.5:7b", "auto", "ollama"),
        ("http://localhost:8000/v1", "Qwen/Qwen2.5-7B-Instruct", "auto", "vllm"),
        ("http://127.0.0.1:8000/v1", "meta-llama/Llama-3.1-8B-Instruct", "auto", "vllm"),
        ("http://127.0.0.1:8080/v1", "qwen3-8b", "auto", "generic"),  # a local server: never hosted Qwen
        ("http://localhost:1234/v1", "deepseek-r1", "auto", "generic"),
        ("http://192.168.1.20:8080/v1", "qwen2.5-7b-instruct", "auto", "generic"),  # a private address
        ("http://10.0.0.5:8000/v1", "gpt-oss-20b", "auto", "generic"),
        ("http://gpu-box:8080/v1", "qwen3-8b", "auto", "generic"),  # a single-label (LAN) host name
        ("http://llm.internal/v1", "qwen-plus", "auto", "generic"),
        ("https://gateway.example/v1", "deepseek-chat", "auto", "deepseek"),  # a public gateway: the model decides
        ("https://gateway.example/v1", "gpt-4.1", "auto", "openai"),
        ("https://gateway.example/v1", "o3-mini", "auto", "openai"),
        ("https://gateway.example/v1", "qwen-turbo", "auto", "qwen"),
        ("https://gateway.example/v1", "Qwen/Qwen3-8B", "auto", "generic"),  # hub id: self-hosted, unknown
        ("https://gateway.example:8000/v1", "mistral-small", "auto", "generic"),
        ("https://gateway.example/v1", "gpt-4o", "vllm", "vllm"),  # the override wins
        ("https://gateway.example/v1", "deepseek-reasoner", "deepseek", "deepseek-reasoner"),
        ("https://api.deepseek.com", "deepseek-chat", "GENERIC", "generic"),
    ],
)
def test_detect(base_url: str | None, model: str, override: str | None, expected: str) -> None:
    assert detect(base_url, model, override).name == expected


def test_detect_refuses_an_unknown_provider_and_can_switch_tools_on() -> None:
    with pytest.raises(ValueError, match="unknown LLM provider 'anthropic'"):
        detect(BASE, "x", "anthropic")
    assert detect("http://localhost:8000/v1", "m", tools=True).tools
    assert not PROFILES["vllm"].tools


def test_qwen_json_schema_allowlist() -> None:
    qwen = PROFILES["qwen"]
    assert qwen.structured_for("qwen-plus") == "json_schema"
    assert qwen.structured_for("qwen-plus-latest") == "json_schema"
    assert qwen.structured_for("qwen3-max-2025-09-23") == "json_schema"
    assert qwen.structured_for("qwen-plus-2024-12-20") == "json_object"  # snapshot before schema support
    assert qwen.structured_for("qwen-turbo") == "json_object"
    assert qwen.structured_for("qwen-max") == "json_object"


async def test_unknown_provider_is_a_config_failure() -> None:
    with pytest.raises(LLMFailure) as caught:
        OpenAICompatClient(LLMConfig(base_url=BASE, model="m", provider="nope"), clock=SimulatedClock(NOW))
    assert caught.value.kind == "config"
    with pytest.raises(LLMFailure):
        OpenAICompatClient(LLMConfig(base_url=BASE), clock=SimulatedClock(NOW))


# ---------------------------------------------------------------------------------------- probe


def _probe_answer(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if "tools" in body:
        call = {"id": "c1", "type": "function", "function": {"name": "ping", "arguments": "{}"}}
        return ok(completion(None, tool_calls=[call], finish="tool_calls"))
    if "response_format" in body:
        return ok(completion('{"ok": true}'))
    return ok(completion("ok", usage=(12, 1)))


async def test_probe_reports_each_step(api: respx.MockRouter, sleeps: Sleeps) -> None:
    api.get("/models").mock(return_value=httpx.Response(200, json={"data": [{"id": "gpt-4o-mini"}, {"id": "x"}]}))
    chat = api.post("/chat/completions").mock(side_effect=_probe_answer)
    lines = await probe(
        LLMConfig(base_url=BASE, api_key=KEY, model="gpt-4o-mini"), clock=SimulatedClock(NOW), sleep=sleeps
    )
    assert [name for name, _, _ in lines] == ["LLM endpoint", "LLM chat", "LLM JSON answers", "LLM tool calls"]
    assert all(ok for _, ok, _ in lines), lines
    assert "2 models" in lines[0][2] and "12+1 tokens" in lines[1][2] and "strict json_schema" in lines[2][2]
    assert chat.call_count == 3


async def test_probe_says_how_to_fix_a_refused_key(api: respx.MockRouter) -> None:
    api.get("/models").mock(return_value=error(401, f"Incorrect API key provided: {KEY}"))
    lines = await probe(LLMConfig(base_url=BASE, api_key=KEY, model="gpt-4o-mini"), clock=SimulatedClock(NOW))
    assert len(lines) == 1 and not lines[0][1]
    assert "401: the API key was refused; set TRADEOPS_LLM_API_KEY" in lines[0][2] and KEY not in lines[0][2]


async def test_probe_without_models_endpoint_and_tools_off(sleeps: Sleeps) -> None:
    base = "http://localhost:11434/v1"
    with respx.mock(base_url=base) as router:
        router.get("/models").mock(return_value=httpx.Response(404, json={"error": "not found"}))
        router.post("/chat/completions").mock(side_effect=_probe_answer)
        lines = await probe(LLMConfig(base_url=base, model="llama3.1"), clock=SimulatedClock(NOW), sleep=sleeps)
    assert [ok for _, ok, _ in lines] == [True, True, True, True], lines
    assert "no /models" in lines[0][2] and "json_object" in lines[2][2]
    assert "off for ollama; this model can call tools" in lines[3][2]


async def test_probe_flags_an_unknown_model_and_a_dead_endpoint(api: respx.MockRouter) -> None:
    api.get("/models").mock(return_value=httpx.Response(200, json={"data": [{"id": "gpt-4o"}]}))
    api.post("/chat/completions").mock(side_effect=_probe_answer)
    lines = await probe(LLMConfig(base_url=BASE, api_key=KEY, model="gpt-4o-mnii"), clock=SimulatedClock(NOW))
    assert not lines[0][1] and "'gpt-4o-mnii' is not among" in lines[0][2]

    with respx.mock(base_url="http://localhost:8000/v1") as router:
        router.get("/models").mock(side_effect=httpx.ConnectError("refused"))
        dead = await probe(LLMConfig(base_url="http://localhost:8000/v1", model="m"), clock=SimulatedClock(NOW))
    assert len(dead) == 1 and not dead[0][1] and "is the server running" in dead[0][2]


async def test_probe_without_settings() -> None:
    lines = await probe(LLMConfig(), clock=SimulatedClock(NOW))
    assert len(lines) == 1 and not lines[0][1] and "TRADEOPS_LLM_MODEL" in lines[0][2]


def test_the_tools_setting_reaches_the_profile() -> None:
    clock = SimulatedClock(datetime(2021, 7, 6, tzinfo=UTC))
    local = LLMConfig(base_url="http://localhost:8000/v1", model="qwen2.5-7b-instruct", provider="vllm")
    assert not OpenAICompatClient(local, clock=clock).supports_tools  # vLLM without a tool parser: off
    on = OpenAICompatClient(LLMConfig(**{**local.__dict__, "tools": True}), clock=clock)
    assert on.supports_tools
    off = OpenAICompatClient(LLMConfig(base_url=None, api_key="k", model="gpt-4o-mini", tools=False), clock=clock)
    assert not off.supports_tools
