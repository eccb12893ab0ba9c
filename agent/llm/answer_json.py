"""The one JSON object in a model's answer, however it is wrapped.

Models that were asked for JSON still wrap it: a ``<think>...</think>`` block first (reasoning
models served without a reasoning parser), prose around a fenced ```json block, a remark after the
fence. The answer is accepted when it holds exactly one distinct JSON object; two different objects
are ambiguous and refused (the caller's repair prompt then asks again).
"""

from __future__ import annotations

import json
import re
from typing import Any

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_DECODER = json.JSONDecoder()


class AnswerJSONError(ValueError):
    """No JSON object, or more than one different one, in the answer."""


def extract_json_object(content: str) -> dict[str, Any]:
    """The JSON object in ``content``. Raises AnswerJSONError saying what was found instead."""
    text = _THINK.sub("", content).strip()
    if text.lower().startswith("<think>"):  # an unclosed thinking block: nothing after it is the answer
        raise AnswerJSONError("the answer is an unfinished <think> block with no JSON after it")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        return whole
    found: list[dict[str, Any]] = []
    position = 0
    while (start := text.find("{", position)) != -1:
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        if isinstance(value, dict) and value not in found:
            found.append(value)
        position = end
    if len(found) == 1:
        return found[0]
    if not found:
        shown = text[:80].replace("\n", " ")
        raise AnswerJSONError(f"no JSON object in the answer (it begins {shown!r})")
    raise AnswerJSONError(f"the answer holds {len(found)} different JSON objects; answer with exactly one")
