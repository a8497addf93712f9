"""Where Anthropic prompt-cache marks (`cache_control`) go on a Messages request.

Anthropic caches the prefix of a request up to a marked block (tools, then system, then messages, in that
order) and bills a later read of it at a tenth of the input price, a write at 1.25x (configs/models.yaml).
A client that marks its own blocks (the Messages surface passes them on) keeps its marks and gets none added:
it manages its cache. Otherwise, unless the request or the config turns it off, the gateway marks what
agents and chat apps resend every turn: the tool definitions, the system prompt and the last earlier turn,
each only when the prefix up to it reaches the model's minimum cacheable length (a shorter one is never
cached, so a mark there would only cost the write price next time it is long enough).

The length is estimated from the text (four characters a token, images not counted): an underestimate
for every tokenizer we price, so a mark is never put on a prefix too short to be cached.
"""

from __future__ import annotations

import json

from ..catalog import ModelSpec
from ..chat import ChatRequest

MAX_BREAKPOINTS = 4  # Anthropic refuses a request with more


def control(ttl: str) -> dict:
    return {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}


def may_write(model: ModelSpec, request: ChatRequest, auto: bool) -> str:
    """The longest cache lifetime a call may write at ("1h", "5m", "" none): what its budget reservation must
    cover, since a write costs more than plain input."""
    marks = {request.cache_system, request.cache_tools, *(m.cache for m in request.messages)} - {""}
    if marks:
        return "1h" if "1h" in marks else "5m"
    # the bound, not the estimate mark() uses: never less than it, so a call that gets marked was reserved for
    if auto and request.prompt_cache and model.min_cache_tokens > 0 \
            and request.input_tokens_bound >= model.min_cache_tokens:
        return "5m"
    return ""


def mark(params: dict, model: ModelSpec, request: ChatRequest, auto: bool) -> None:
    """Put the client's marks on the system prompt and tools (message marks are placed with their blocks),
    else, when `auto` and the request allows, the gateway's own."""
    tools, turns = params.get("tools") or [], params["messages"]
    if request.cache_tools and tools:
        tools[-1]["cache_control"] = control(request.cache_tools)
    if request.cache_system and params.get("system"):
        _mark_system(params, request.cache_system)
    if (request.cache_system or request.cache_tools or any(m.cache for m in request.messages)
            or not auto or not request.prompt_cache or model.min_cache_tokens <= 0):
        return
    least = model.min_cache_tokens
    size = sum(len(json.dumps(t, ensure_ascii=False)) for t in tools) // 4
    if tools and size >= least:
        tools[-1]["cache_control"] = control("")
    size += len(params.get("system") or "") // 4
    if params.get("system") and size >= least:
        _mark_system(params, "")
    if len(turns) >= 2:
        size += sum(_chars(t) for t in turns[:-1]) // 4
        if size >= least:
            _mark_turn(turns[-2])


def _mark_system(params: dict, ttl: str) -> None:
    params["system"] = [{"type": "text", "text": params["system"], "cache_control": control(ttl)}]


def _mark_turn(turn: dict) -> None:
    if isinstance(turn["content"], str):
        turn["content"] = [{"type": "text", "text": turn["content"]}]
    last = turn["content"][-1]
    if last.get("type") not in ("thinking", "redacted_thinking"):  # thinking blocks take no mark
        last["cache_control"] = control("")


def _chars(turn: dict) -> int:
    content = turn["content"]
    if isinstance(content, str):
        return len(content)
    total = 0
    for b in content:
        kind = b.get("type")
        if kind == "text":
            total += len(b["text"])
        elif kind == "tool_use":
            total += len(json.dumps(b["input"], ensure_ascii=False))
        elif kind == "tool_result":
            total += len(b["content"]) if isinstance(b["content"], str) else 0
    return total
