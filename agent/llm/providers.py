"""What each OpenAI-compatible endpoint accepts: the one capability table the client reads.

Sources checked when this was written (via the docs search; re-check when a provider misbehaves):

- DeepSeek JSON Output, https://api-docs.deepseek.com/guides/json_mode.md : ``response_format``
  ``{"type": "json_object"}`` only; the system or user prompt must include the word "json"; when the
  output cannot be recognised as JSON the API blanks it to spaces, so ``content`` can look empty even
  with ``finish_reason`` "stop" ("handle blank content in your code").
- DeepSeek Thinking Mode, https://api-docs.deepseek.com/guides/thinking_mode.md (and the zh-cn page):
  in the thinking model, ``reasoning_content`` of an assistant turn that made tool calls must be sent
  back in every later request, else HTTP 400 ("Missing reasoning_content field in the assistant
  message"). The older deepseek-reasoner guide (https://api-docs.deepseek.com/zh-cn/guides/reasoning_model)
  said the opposite (400 when reasoning_content is sent, no function calling); the thinking-mode page is
  the newer one, so the table follows it. Object-form ``tool_choice`` for the reasoner is the brief's
  report, not found in the docs: we never send it there (forcing one tool is done by offering only it).
- Qwen / DashScope structured output, https://www.alibabacloud.com/help/en/model-studio/json-mode and
  https://help.aliyun.com/zh/model-studio/json-mode : ``json_object`` needs "JSON" (case-insensitive) in
  a system or user message, else 400 "'messages' must contain the word 'json'"; ``json_schema`` with
  ``strict`` only on some models: the qwen3-max, qwen-plus and qwen-flash series (snapshots from
  2025-07-28 on; the Chinese page says "only some qwen-plus models"). Thinking-mode models do not
  support structured output at all. So the allowlist below is docs-based but narrow on purpose; the
  brief's guess "qwen-max" and "qwen3" (open-source) are NOT on it.
- Ollama OpenAI compatibility, https://docs.ollama.com/api/openai-compatibility : JSON mode
  (``response_format``) and tools are supported fields; whether a model calls tools depends on the model.
- vLLM tool calling, https://docs.vllm.ai/en/latest/features/tool_calling/ : tools only work when the
  server was started with ``--enable-auto-tool-choice --tool-call-parser <model-specific>``, named
  (object-form) ``tool_choice`` is supported.

Local servers (vLLM, Ollama) get ``json_object`` rather than ``json_schema``: json_object has been
accepted for longer (Ollama since its first OpenAI layer, json_schema only from 0.5; vLLM's schema
enforcement depends on the guided-decoding backend and version), the answer is validated by pydantic
anyway, and a wrong guess here costs a 400 on every call. Tools are off for them unless told
(``detect(..., tools=True)``): a server started without a tool parser answers 400 to every tool call.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

Structured = Literal["json_schema", "json_object", "none"]

OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class ProviderProfile:
    name: str
    structured: Structured  # how a JSON answer is asked for
    json_keyword: str | None  # a word the messages must contain when asking for JSON without a schema
    tools: bool  # tool calls are sent at all
    tool_choice_object: bool  # {"type": "function", "function": {"name": ...}} is accepted
    reasoning_content: bool  # assistant reasoning_content must be passed back in the tool loop
    empty_content_possible: bool  # the provider documents blank answers in JSON mode
    # Models that get strict json_schema although the provider's default is json_object (prefix,
    # optionally followed by "-latest" or a dated snapshot no older than json_schema_since).
    json_schema_models: tuple[str, ...] = ()
    json_schema_since: str = ""  # "YYYY-MM-DD": older dated snapshots of the allowlist do not have it
    # Models that refuse any temperature but the default (OpenAI's reasoning models answer 400).
    fixed_temperature_models: tuple[str, ...] = ()
    # OpenAI deprecated max_tokens for max_completion_tokens (its reasoning models refuse max_tokens);
    # the compatible servers still read max_tokens.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"

    def structured_for(self, model: str) -> Structured:
        if self.structured == "json_object" and any(
            _family_match(model, p, self.json_schema_since) for p in self.json_schema_models
        ):
            return "json_schema"
        return self.structured

    def fixed_temperature(self, model: str) -> bool:
        return any(model.startswith(prefix) for prefix in self.fixed_temperature_models)


_DATED = re.compile(r"^-(\d{4}-\d{2}-\d{2})$")


def _family_match(model: str, family: str, since: str) -> bool:
    if model == family or model == f"{family}-latest":
        return True
    if not model.startswith(family):
        return False
    dated = _DATED.match(model[len(family) :])
    return bool(dated and (not since or dated.group(1) >= since))


PROFILES: dict[str, ProviderProfile] = {
    profile.name: profile
    for profile in (
        ProviderProfile(
            "openai",
            structured="json_schema",
            json_keyword=None,
            tools=True,
            tool_choice_object=True,
            reasoning_content=False,
            empty_content_possible=False,
            fixed_temperature_models=("o1", "o3", "o4", "gpt-5"),
            max_tokens_field="max_completion_tokens",
        ),
        ProviderProfile(
            "deepseek",
            structured="json_object",
            json_keyword="json",
            tools=True,
            tool_choice_object=True,
            reasoning_content=False,
            empty_content_possible=True,
        ),
        ProviderProfile(
            "deepseek-reasoner",
            structured="json_object",
            json_keyword="json",
            tools=True,
            tool_choice_object=False,
            reasoning_content=True,
            empty_content_possible=True,
        ),
        ProviderProfile(
            "qwen",
            structured="json_object",
            json_keyword="JSON",
            tools=True,
            tool_choice_object=True,  # DashScope documents forcing one function this way (from memory)
            reasoning_content=False,
            empty_content_possible=False,
            json_schema_models=("qwen3-max", "qwen-plus", "qwen-flash"),
            json_schema_since="2025-07-28",
        ),
        # Not required by vLLM/Ollama, but json_object with no instruction lets a small model emit
        # whitespace until max_tokens (why OpenAI's own API insists on the word): we add one line.
        ProviderProfile(
            "vllm",
            structured="json_object",
            json_keyword="JSON",
            tools=False,
            tool_choice_object=True,
            reasoning_content=False,
            empty_content_possible=True,
        ),
        ProviderProfile(
            "ollama",
            structured="json_object",
            json_keyword="JSON",
            tools=False,
            tool_choice_object=False,
            reasoning_content=False,
            empty_content_possible=True,
        ),
        # An endpoint we know nothing about: ask for JSON in words only (a response_format it does not
        # know is a 400 on every call) and send no tools. The policy validates and repairs the answer.
        ProviderProfile(
            "generic",
            structured="none",
            json_keyword="JSON",
            tools=False,
            tool_choice_object=False,
            reasoning_content=False,
            empty_content_possible=True,
        ),
    )
}

PROVIDER_NAMES = ("auto", *PROFILES)

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


def _by_host(base_url: str) -> str | None:
    parts = urlsplit(base_url if "//" in base_url else f"http://{base_url}")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if host == "api.openai.com":
        return "openai"
    if host == "api.deepseek.com" or host.endswith(".deepseek.com"):
        return "deepseek"
    # dashscope.aliyuncs.com, dashscope-intl., dashscope-us., cn-hongkong.dashscope., and the
    # workspace endpoints {id}.<region>.maas.aliyuncs.com.
    if host.endswith(".aliyuncs.com") and ("dashscope" in host or ".maas." in host):
        return "qwen"
    if port == 11434:  # Ollama's default port, whatever the host
        return "ollama"
    if port == 8000 and host in _LOOPBACK:  # vLLM's default; 8000 elsewhere is too common to guess
        return "vllm"
    return None


def _self_hosted(base_url: str) -> bool:
    """A loopback, private, link-local or single-label host (localhost, 10.x, 192.168.x, gpu-box,
    nas.local): a server someone runs themselves, never a hosted provider."""
    host = (urlsplit(base_url if "//" in base_url else f"http://{base_url}").hostname or "").lower()
    if host in _LOOPBACK or host.endswith((".local", ".lan", ".internal", ".localhost")) or "." not in host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _by_model(model: str) -> str | None:
    # Only hosted API model names: "org/model" (hub ids) and "model:tag" (Ollama tags) are self-hosted
    # models whose server quirks the name says nothing about.
    if "/" in model or ":" in model:
        return None
    name = model.lower()
    if name.startswith(("gpt-", "chatgpt-")) or re.match(r"^o\d", name):
        return "openai"
    if name.startswith("deepseek"):
        return "deepseek"
    if name.startswith(("qwen", "qwq")):
        return "qwen"
    return None


def _refine(provider: str, model: str) -> str:
    # DeepSeek's thinking model has its own quirks behind the same host.
    if provider == "deepseek" and model.lower().startswith("deepseek-reasoner"):
        return "deepseek-reasoner"
    return provider


def detect(
    base_url: str | None, model: str | None, override: str | None = None, *, tools: bool | None = None
) -> ProviderProfile:
    """The profile for an endpoint: the override if given (not "auto"), else the base URL's host,
    else the model name, else "generic". ``tools`` forces tool calls on or off (a local server
    started with a tool parser). Raises ValueError for an unknown override."""
    model = model or ""
    chosen = (override or "auto").strip().lower()
    if chosen != "auto":
        if chosen not in PROFILES:
            raise ValueError(f"unknown LLM provider {override!r}; choose one of {', '.join(PROVIDER_NAMES)}")
        name = _refine(chosen, model)
    else:
        # No base URL means the SDK's default, which is OpenAI. The host decides first; the model
        # name only for a public host (a gateway relaying to that provider): a server on this
        # machine or a private network runs its own copy of an open model, whatever its name.
        url = base_url or OPENAI_BASE_URL
        by_model = None if _self_hosted(url) else _by_model(model)
        name = _refine(_by_host(url) or by_model or "generic", model)
    profile = PROFILES[name]
    return profile if tools is None else replace(profile, tools=tools)
