"""One client for every OpenAI-compatible endpoint (OpenAI, DeepSeek, Qwen/DashScope, vLLM, Ollama).

The openai SDK does the HTTP; this module owns what the SDK leaves to taste and what trading needs:
a short per-call deadline, a bound on calls in flight, retries we can explain, provider quirks from
the capability table (providers.py), a cache keyed by the exact request, a daily token budget, and
a CallRecord for every call so the decision trace shows time, tokens and money.

Failure kinds (LLMFailure.kind):
- timeout: no answer within ``timeout_s`` (also HTTP 408); not retried by default: a slow model stays
  slow, and retrying turns one 30 s stall into two while a scan waits.
- rate_limited: HTTP 429 after the retries Retry-After allowed, or at once when the server asks for
  more than ``retry_after_cap_s`` (waiting minutes would stall the scan; the step abstains instead).
- server_error: HTTP 5xx after ``max_retries`` retries with exponential backoff and jitter.
- connection: nothing answered (DNS, refused, reset) after the same retries as a 5xx.
- http_error: any other 4xx (bad key, unknown model, refused parameter), or a 200 that is not a chat
  completion; not retried, the same request would be refused again.
- empty_content: no text (blank or whitespace) and no tool call.
- cache_miss: cache "read-only" and this exact request was never answered; no HTTP is made.
- budget_exhausted: today's tokens reached ``daily_token_budget``; no HTTP is made (cache hits are
  still served: they cost nothing).
- config: no model configured, or an unknown provider name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import httpx
import openai

from agent.llm.config import LLMConfig
from agent.llm.providers import OPENAI_BASE_URL, ProviderProfile, detect
from agent.llm.types import CallRecord, ChatResult, FailureKind, LLMFailure
from storage.llm import LLMCache
from venues.clock import Clock, RealClock, ensure_utc
from venues.metrics import metrics

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

RETRY_AFTER_CAP_S = 30.0  # longer asks fail as rate_limited: a scan must not stall on one symbol
BACKOFF_BASE_S = 0.5  # first retry after ~0.5 s, then 1, 2, 4 ... capped below
BACKOFF_MAX_S = 8.0
DETAIL_CHARS = 300  # provider messages are quoted, not pasted whole, on the card
MILLION = Decimal(1_000_000)

# Anything that looks like a credential in a provider message ("Incorrect API key provided: sk-...").
_SECRET = re.compile(r"\b(sk-|Bearer\s+|key[=:]\s*)[A-Za-z0-9._\-*]{4,}", re.IGNORECASE)


class _Failed(Exception):
    """One send gave up; chat()/list_models() turn it into an LLMFailure with the call's record."""

    def __init__(self, kind: FailureKind, detail: str, attempts: int, status: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.attempts = attempts
        self.status = status

    def response(self) -> dict[str, Any]:
        return {"error": self.detail, **({"status": self.status} if self.status else {})}


def request_hash(base_url: str, request: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of exactly what is sent, plus where it is sent (the same model
    name on two servers is two models)."""
    canonical = json.dumps(
        {"base_url": base_url.rstrip("/"), **request}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _with_keyword(messages: list[dict[str, Any]], keyword: str) -> list[dict[str, Any]]:
    """Make sure a system or user message contains ``keyword`` (DeepSeek and DashScope refuse
    json_object otherwise). Case-sensitive on purpose: DeepSeek documents the lowercase word, and an
    extra line costs a few tokens while a 400 costs the decision. ``messages`` is already our copy."""
    if any(
        m.get("role") in ("system", "developer", "user") and keyword in _text_of(m.get("content")) for m in messages
    ):
        return messages
    line = f"Answer with one {keyword} object."
    # Extend the first system message rather than add one at the end: some servers (DashScope among
    # them) want the system message first and only once.
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return [{**messages[0], "content": f"{messages[0]['content']}\n{line}"}, *messages[1:]]
    return [{"role": "system", "content": line}, *messages]


def _schema_format(json_schema: dict[str, Any]) -> dict[str, Any]:
    # Accept both the bare JSON schema and OpenAI's {"name": ..., "schema": {...}} wrapper (prompts.py
    # keeps the wrapper form).
    if isinstance(json_schema.get("schema"), dict) and "name" in json_schema:
        name, schema = str(json_schema["name"]), json_schema["schema"]
    else:
        name, schema = str(json_schema.get("title") or "answer"), json_schema
    name = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "answer"
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def _redact(text: str, api_key: str | None) -> str:
    if api_key:
        text = text.replace(api_key, "***")
    return _SECRET.sub(lambda m: f"{m.group(1)}***", text)


def _provider_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body.get("detail") or json.dumps(body)
    elif body is not None:
        message = str(body)
    else:
        message = exc.message
    text = " ".join(str(message).split())
    return text if len(text) <= DETAIL_CHARS else f"{text[: DETAIL_CHARS - 1]}…"


def _retry_after(headers: httpx.Headers | Any, now: datetime) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms`` (OpenAI), ``Retry-After`` in seconds
    or as an HTTP date. A date is measured against the response's own Date header when there is one,
    so a simulated clock (backtests) or a skewed local clock cannot turn it into years."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = ensure_utc(parsedate_to_datetime(value))
        server_now = headers.get("date")
        reference = ensure_utc(parsedate_to_datetime(server_now)) if server_now else now
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, (moment - reference).total_seconds())


class OpenAICompatClient:
    """``ChatClient`` over ``openai.AsyncOpenAI``. Build one per endpoint and share it: the bound on
    calls in flight is per client (see ``_semaphore``)."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        clock: Clock,
        cache: LLMCache | None = None,
        usage: Callable[[], int] | None = None,
        http_client: httpx.AsyncClient | None = None,
        profile: ProviderProfile | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        temperature: float = 0.0,
        retry_timeouts: bool = False,
        retry_after_cap_s: float = RETRY_AFTER_CAP_S,
    ) -> None:
        if not config.model:
            raise LLMFailure("config", "no LLM model configured; set TRADEOPS_LLM_MODEL")
        try:
            self.profile = profile or detect(config.base_url, config.model, config.provider, tools=config.tools)
        except ValueError as exc:
            raise LLMFailure("config", str(exc)) from exc
        self.config = config
        self.model: str = config.model
        self.provider: str = self.profile.name
        # Passed explicitly: with base_url=None the SDK would read OPENAI_BASE_URL from the environment,
        # and only bot/ reads the environment.
        self.base_url = (config.base_url or OPENAI_BASE_URL).rstrip("/")
        parts = urlsplit(self.base_url)
        # Where, for messages: never the userinfo part of a URL (it can hold a password).
        self.host = parts.hostname or self.base_url
        self.where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        self.clock = clock
        self.cache = cache
        self._usage = usage
        self._sleep = sleep
        self._rng = rng
        self.temperature = temperature
        self.retry_timeouts = retry_timeouts
        self.retry_after_cap_s = retry_after_cap_s
        # Per client, not module-wide: the limit belongs to one endpoint and key (rate limits are per
        # key), two endpoints should not queue behind each other, and an asyncio primitive shared at
        # module level would outlive the event loop it first waited on (tests, `tradeops doctor`).
        self._semaphore = asyncio.Semaphore(max(1, config.concurrency))
        self._owns_http = http_client is None
        # A legacy httpx client is what respx sees; the SDK's default (httpx2) would bypass test mocks.
        self._http = http_client or httpx.AsyncClient(timeout=httpx.Timeout(config.timeout_s))
        self._sdk = openai.AsyncOpenAI(
            base_url=self.base_url,
            # Local servers need no key but the SDK refuses none (and would read OPENAI_API_KEY).
            api_key=config.api_key or "unused",
            timeout=config.timeout_s,  # the SDK's own default is 10 minutes
            max_retries=0,  # retries are ours: the SDK's ignore our cap on Retry-After
            http_client=cast(Any, self._http),
        )

    @property
    def supports_tools(self) -> bool:
        return self.profile.tools

    async def aclose(self) -> None:
        # A client handed in (tests, shared pools) belongs to whoever made it.
        if self._owns_http:
            await self._sdk.close()

    # ------------------------------------------------------------------ request

    def build_request(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Exactly what will be sent, quirks applied. The caller's list and dicts are never changed:
        a JSON round trip copies them (and proves they serialise, which the cache needs)."""
        profile = self.profile
        sent: list[dict[str, Any]] = json.loads(json.dumps(messages))
        if not profile.reasoning_content:
            # Only the providers that want reasoning_content back get it; OpenAI refuses unknown fields.
            for message in sent:
                message.pop("reasoning_content", None)
        request: dict[str, Any] = {"model": self.model}
        if not profile.fixed_temperature(self.model):
            request["temperature"] = self.temperature  # 0: the same facts give the same answer
        if max_tokens is not None:
            request[profile.max_tokens_field] = max_tokens
        if tools and profile.tools:
            offered: list[dict[str, Any]] = json.loads(json.dumps(tools))
            if isinstance(tool_choice, dict) and not profile.tool_choice_object:
                # Object-form tool_choice is refused here: force the tool by offering only it.
                name = (tool_choice.get("function") or {}).get("name")
                offered = [t for t in offered if (t.get("function") or {}).get("name") == name] or offered
                tool_choice = None
            request["tools"] = offered
            if tool_choice is not None:
                request["tool_choice"] = tool_choice
        if json_schema is not None:
            mode = profile.structured_for(self.model)
            if mode == "json_schema":
                request["response_format"] = _schema_format(json_schema)
            else:
                if mode == "json_object":
                    request["response_format"] = {"type": "json_object"}
                # json_object needs the word on DeepSeek/DashScope; with "none" the words are all we have.
                if profile.json_keyword:
                    sent = _with_keyword(sent, profile.json_keyword)
        request["messages"] = sent
        return request

    # ------------------------------------------------------------------ calls

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> ChatResult:
        request = self.build_request(
            messages, tools=tools, json_schema=json_schema, max_tokens=max_tokens, tool_choice=tool_choice
        )
        key = request_hash(self.base_url, request)
        started = time.perf_counter()

        def record(
            outcome: str,
            *,
            response: dict[str, Any] | None = None,
            attempts: int = 0,
            cached: bool = False,
            prompt: int = 0,
            completion: int = 0,
            cost: Decimal = Decimal(0),
        ) -> CallRecord:
            # Made once per call, on every way out: where the call is counted for /metrics too.
            seconds = time.perf_counter() - started
            metrics().observe_llm_call(
                self.model,
                outcome,
                cached=cached,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_usd=cost,
                seconds=seconds,
            )
            return CallRecord(
                model=self.model,
                provider=self.provider,
                latency_ms=seconds * 1000,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_usd=cost,
                cached=cached,
                request_hash=key,
                attempts=attempts,
                outcome=outcome,
                request=request,
                response=response or {},
            )

        mode = self.config.cache
        if mode != "off" and self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get, key, at=self.clock.now())
            if hit is not None:
                message, finish = self._message(hit)  # only answers that passed are stored
                return ChatResult(message, finish, record("ok", response=hit, cached=True))
        if mode == "read-only":
            # Read-only means "replay what was answered": a new question is an error, never an HTTP call.
            raise LLMFailure(
                "cache_miss",
                f"cache is read-only and this request ({key[:12]}) was never answered"
                + ("" if self.cache is not None else " (no cache database)"),
                records=(record("cache_miss"),),
            )

        budget = self.config.daily_token_budget
        if budget > 0 and self._usage is not None:
            spent = await asyncio.to_thread(self._usage)  # a database read: keep it off the event loop
            if spent >= budget:
                raise LLMFailure(
                    "budget_exhausted",
                    f"{spent:,} tokens used today, the daily budget is {budget:,}",
                    records=(record("budget_exhausted"),),
                )

        try:
            raw, attempts = await self._send(
                lambda: self._sdk.chat.completions.with_raw_response.create(**request, timeout=self.config.timeout_s)
            )
        except _Failed as failed:
            raise LLMFailure(
                failed.kind,
                failed.detail,
                records=(record(failed.kind, response=failed.response(), attempts=failed.attempts),),
            ) from None

        data = self._json_body(raw.http_response)
        if data is None or not isinstance(data.get("choices"), list):
            excerpt = _redact(raw.http_response.text[:DETAIL_CHARS], self.config.api_key)
            detail = f"{self.host} answered HTTP {raw.http_response.status_code} without a chat completion: {excerpt}"
            raise LLMFailure("http_error", detail, records=(record("http_error", attempts=attempts),))

        reported = data.get("usage")
        usage: dict[str, Any] = reported if isinstance(reported, dict) else {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        cost, notes = self._cost(prompt, completion, has_usage=bool(usage))
        response = {**data, "_meta": notes} if notes else data
        try:
            message, finish = self._message(data)
        except LLMFailure as failure:
            # The tokens of an empty answer were paid for: the record keeps them for the budget.
            raise LLMFailure(
                failure.kind,
                failure.detail,
                records=(
                    record(
                        failure.kind,
                        response=response,
                        attempts=attempts,
                        prompt=prompt,
                        completion=completion,
                        cost=cost,
                    ),
                ),
            ) from None

        if mode == "read-write" and self.cache is not None:
            try:
                await asyncio.to_thread(
                    self.cache.put, key, model=self.model, request=request, response=data, at=self.clock.now()
                )
            except Exception as exc:  # the answer is paid for; a lost cache entry only costs a re-ask
                response = {**response, "_meta": {**notes, "cache_write_failed": f"{type(exc).__name__}: {exc}"}}
        return ChatResult(
            message,
            finish,
            record("ok", response=response, attempts=attempts, prompt=prompt, completion=completion, cost=cost),
        )

    async def list_models(self) -> list[str]:
        """GET /models (not every compatible server has it: HTTP 404/405 come back as http_error)."""
        try:
            raw, _ = await self._send(lambda: self._sdk.models.with_raw_response.list(timeout=self.config.timeout_s))
        except _Failed as failed:
            record = CallRecord(
                model=self.model,
                provider=self.provider,
                latency_ms=0.0,
                prompt_tokens=0,
                completion_tokens=0,
                cost_usd=Decimal(0),
                cached=False,
                request_hash="",
                attempts=failed.attempts,
                outcome=failed.kind,
                request={"method": "GET", "path": "/models"},
                response=failed.response(),
            )
            raise LLMFailure(failed.kind, failed.detail, records=(record,)) from None
        data = self._json_body(raw.http_response) or {}
        return [str(m.get("id")) for m in data.get("data") or [] if isinstance(m, dict) and m.get("id")]

    # ------------------------------------------------------------------ internals

    async def _send(self, call: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """One logical call with our retry policy. The semaphore is held per attempt, not across a
        backoff: it bounds requests in flight, which is what the endpoint counts."""
        attempt = 0
        while True:
            attempt += 1
            delay: float
            try:
                async with self._semaphore:
                    # End-to-end deadline per attempt: httpx's timeouts are per read, so a server that
                    # trickles bytes could outlast them. Waiting for a slot is not counted.
                    async with asyncio.timeout(self.config.timeout_s):
                        return await call(), attempt
            except (TimeoutError, openai.APITimeoutError):
                kind: FailureKind = "timeout"
                status: int | None = None
                detail = f"no answer from {self.host} within {self.config.timeout_s:g} s"
                if not self.retry_timeouts:
                    raise _Failed(kind, f"{detail} (not retried: a slow model stays slow)", attempt) from None
                delay = self._backoff(attempt)
            except openai.APIStatusError as exc:
                status = exc.status_code
                message = _redact(_provider_message(exc), self.config.api_key)
                detail = f"HTTP {status} from {self.host}: {message}"
                if status == 429:
                    kind = "rate_limited"
                    wait = _retry_after(exc.response.headers, self.clock.now())
                    if wait is not None and wait > self.retry_after_cap_s:
                        raise _Failed(
                            kind,
                            f"{detail} (the server asks to wait {wait:.0f} s, more than the "
                            f"{self.retry_after_cap_s:.0f} s a scan can spare)",
                            attempt,
                            status,
                        ) from None
                    delay = wait if wait is not None else self._backoff(attempt)
                elif status >= 500 and status != 501:  # 501 Not Implemented will not change on retry
                    kind = "server_error"
                    delay = self._backoff(attempt)
                elif status == 408:
                    raise _Failed("timeout", detail, attempt, status) from None
                else:
                    raise _Failed("http_error", detail, attempt, status) from None
            except openai.APIConnectionError as exc:
                kind, status = "connection", None
                cause = exc.__cause__ or exc
                detail = f"cannot reach {self.where}: {type(cause).__name__}: {_redact(str(cause), None)}"
                delay = self._backoff(attempt)
            except openai.APIError as exc:  # e.g. a body the SDK could not read: not worth repeating
                raise _Failed("http_error", f"{self.host}: {_redact(str(exc), self.config.api_key)}", attempt) from None
            if attempt > self.config.max_retries:
                raise _Failed(kind, f"{detail} (gave up after {attempt} attempts)", attempt, status)
            await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        # Exponential with "equal jitter": half fixed, half random, so callers that failed together do
        # not come back together.
        ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
        return ceiling / 2 + ceiling / 2 * self._rng()

    @staticmethod
    def _json_body(response: Any) -> dict[str, Any] | None:
        # An httpx.Response at run time (we hand the SDK a legacy client); the SDK types it as httpx2's.
        try:
            body = response.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _cost(self, prompt: int, completion: int, *, has_usage: bool) -> tuple[Decimal, dict[str, Any]]:
        notes: dict[str, Any] = {}
        if not has_usage:
            notes["usage"] = "the endpoint reported no token usage; recorded as 0 tokens"
        price = self.config.price(self.model)
        if price is None:
            notes["unpriced"] = f"no price for model {self.model!r}: cost recorded as 0 (add it to TRADEOPS_LLM_PRICES)"
            return Decimal(0), notes
        prompt_price, completion_price = price
        # List prices: a provider's prompt-cache discount (DeepSeek, OpenAI) makes this an upper bound.
        return (Decimal(prompt) * prompt_price + Decimal(completion) * completion_price) / MILLION, notes

    def _message(self, data: dict[str, Any]) -> tuple[dict[str, Any], str]:
        choices = data.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        received = choice.get("message") or {}
        finish = str(choice.get("finish_reason") or "")
        content = received.get("content")
        if isinstance(content, list):
            content = _text_of(content)
        tool_calls = [
            {
                "id": call.get("id"),
                "type": call.get("type") or "function",
                "function": {
                    "name": (call.get("function") or {}).get("name"),
                    "arguments": (call.get("function") or {}).get("arguments"),
                },
            }
            for call in received.get("tool_calls") or []
            if isinstance(call, dict)
        ]
        if not tool_calls and not (isinstance(content, str) and content.strip()):
            why = f"finish_reason {finish!r}" if finish else "no choices" if not choices else "no finish_reason"
            hint = (
                "; this provider is known to answer blank (its JSON mode blanks output it cannot parse)"
                if self.profile.empty_content_possible
                else ""
            )
            raise LLMFailure("empty_content", f"{self.host} returned no text and no tool call ({why}){hint}")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if self.profile.reasoning_content and received.get("reasoning_content") is not None:
            # Sent back with the tool results; DeepSeek's thinking mode answers 400 without it.
            message["reasoning_content"] = received["reasoning_content"]
        return message, finish


# ---------------------------------------------------------------------- doctor

ProbeLine = tuple[str, bool, str]  # (what was tried, worked, what happened and the fix)

_PROBE_SCHEMA = {
    "name": "probe",
    "schema": {
        "type": "object",
        "additionalProperties": False,
        "required": ["ok"],
        "properties": {"ok": {"type": "boolean"}},
    },
}
_PING_TOOL = {
    "type": "function",
    "function": {
        "name": "ping",
        "description": "Answers pong. Call it when asked to.",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}


def _fix(failure: LLMFailure, config: LLMConfig) -> str:
    status = next((r.response.get("status") for r in reversed(failure.records) if r.response.get("status")), None)
    if failure.kind == "http_error":
        if status == 401:
            return "401: the API key was refused; set TRADEOPS_LLM_API_KEY"
        if status == 403:
            return "403: this key may not use this model or endpoint; check the account and TRADEOPS_LLM_MODEL"
        if status == 404:
            return (
                "404: the endpoint or the model does not exist; check TRADEOPS_LLM_BASE_URL (it usually ends "
                "in /v1) and TRADEOPS_LLM_MODEL"
            )
        if status in (400, 422):
            return "the request was refused; if the message names a parameter, set TRADEOPS_LLM_PROVIDER to match"
        return "the endpoint refused the request; read the message above"
    return {
        "timeout": f"no answer within {config.timeout_s:g} s; raise TRADEOPS_LLM_TIMEOUT or use a faster model",
        "rate_limited": "the endpoint is rate-limiting this key; lower TRADEOPS_LLM_CONCURRENCY or try later",
        "server_error": "the provider is failing (5xx); try again later",
        "connection": "nothing answers there; is the server running, and is TRADEOPS_LLM_BASE_URL right?",
        "empty_content": "the model answered nothing; try another model",
        "config": "set TRADEOPS_LLM_MODEL and TRADEOPS_LLM_BASE_URL or TRADEOPS_LLM_API_KEY",
    }.get(failure.kind, "see the message above")


async def probe(
    config: LLMConfig,
    *,
    clock: Clock | None = None,
    http_client: httpx.AsyncClient | None = None,
    profile: ProviderProfile | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[ProbeLine]:
    """What `tradeops doctor` prints about the LLM: does the endpoint answer, does JSON mode work,
    do tool calls work. Cache and budget are off and nothing is retried: a doctor reports, it does
    not insist."""
    if not config.configured:
        fix = _fix(LLMFailure("config", "not configured"), config)
        return [("LLM settings", False, f"no LLM configured, the rule policy decides; to use one, {fix}")]
    config = replace(config, cache="off", daily_token_budget=0, max_retries=0)
    try:
        client = OpenAICompatClient(
            config, clock=clock or RealClock(), http_client=http_client, profile=profile, sleep=sleep
        )
    except LLMFailure as failure:
        return [("LLM settings", False, f"{failure.detail}; set TRADEOPS_LLM_PROVIDER to one of the known names")]
    lines: list[ProbeLine] = []
    where = f"{client.where} as {client.provider}, model {client.model}"
    try:
        # 1. Does anything answer, and does it know the model? /models costs no tokens.
        listed: list[str] | None
        try:
            listed = await client.list_models()
        except LLMFailure as failure:
            status = next((r.response.get("status") for r in failure.records), None)
            if failure.kind == "http_error" and status in (404, 405):
                listed = None  # no /models here; the chat below tells
            else:
                return [
                    ("LLM endpoint", False, f"GET /models at {where}: {failure.detail}. Fix: {_fix(failure, config)}")
                ]
        if listed is None:
            lines.append(("LLM endpoint", True, f"{client.where} has no /models; trying a chat"))
        elif listed and client.model not in listed and f"{client.model}:latest" not in listed:
            sample = ", ".join(sorted(listed)[:8])
            lines.append(
                (
                    "LLM endpoint",
                    False,
                    f"GET /models at {client.where} answered, but {client.model!r} is not among its "
                    f"{len(listed)} models ({sample}{', ...' if len(listed) > 8 else ''}); check TRADEOPS_LLM_MODEL",
                )
            )
        else:
            lines.append(("LLM endpoint", True, f"GET /models at {client.where} answered ({len(listed)} models)"))

        # 2. A tiny chat: the key, the model and the price in one go.
        try:
            result = await client.chat([{"role": "user", "content": "Reply with the single word: ok"}], max_tokens=5)
            r = result.record
            lines.append(
                (
                    "LLM chat",
                    True,
                    f"{where} answered in {r.latency_ms:.0f} ms, {r.prompt_tokens}+{r.completion_tokens} tokens"
                    + (
                        " (no price known for this model: costs show as 0)"
                        if "unpriced" in r.response.get("_meta", {})
                        else ""
                    ),
                )
            )
        except LLMFailure as failure:
            lines.append(("LLM chat", False, f"{where}: {failure.detail}. Fix: {_fix(failure, config)}"))
            return lines

        # 3. JSON the way the policy will ask for it.
        how = {
            "json_schema": "strict json_schema",
            "json_object": "json_object",
            "none": "no response_format (instructions only)",
        }[client.profile.structured_for(client.model)]
        try:
            result = await client.chat(
                [{"role": "user", "content": 'Answer {"ok": true} as JSON.'}], json_schema=_PROBE_SCHEMA, max_tokens=20
            )
            content = result.message.get("content") or ""
            try:
                parsed = json.loads(content)
                ok = isinstance(parsed, dict)
            except ValueError:
                ok = False
            lines.append(
                (
                    "LLM JSON answers",
                    ok,
                    f"{how}: "
                    + (
                        f"got {content.strip()[:60]}"
                        if ok
                        else f"the answer was not a JSON object ({content.strip()[:60]!r}); the policy will "
                        "repair once and otherwise abstain; a larger model may do better"
                    ),
                )
            )
        except LLMFailure as failure:
            lines.append(("LLM JSON answers", False, f"{how}: {failure.detail}. Fix: {_fix(failure, config)}"))

        # 4. Tool calls, also where the profile has them off (to tell the user they could be on).
        enabled = client.profile.tools
        if not enabled:
            client.profile = replace(client.profile, tools=True)
        choice: str | dict[str, Any] = {"type": "function", "function": {"name": "ping"}}
        try:
            result = await client.chat(
                [{"role": "user", "content": "Call the ping tool."}],
                tools=[_PING_TOOL],
                tool_choice=choice,
                max_tokens=50,
            )
            called = [c["function"]["name"] for c in result.message.get("tool_calls", [])]
            works = called == ["ping"] or "ping" in called
            if enabled:
                lines.append(
                    (
                        "LLM tool calls",
                        works,
                        "the model called ping"
                        if works
                        else "the model answered without calling the tool; the policy will decide from the "
                        "facts it is given (no tool lookups)",
                    )
                )
            else:
                lines.append(
                    (
                        "LLM tool calls",
                        True,
                        f"off for {client.provider}"
                        + (
                            "; this model can call tools (they stay off unless enabled)"
                            if works
                            else "; this model did not call the tool either"
                        ),
                    )
                )
        except LLMFailure as failure:
            if enabled:
                lines.append(("LLM tool calls", False, f"{failure.detail}. Fix: {_fix(failure, config)}"))
            else:
                lines.append(
                    (
                        "LLM tool calls",
                        True,
                        f"off for {client.provider} (the server refused them too: {failure.detail})",
                    )
                )
    finally:
        await client.aclose()
    return lines
