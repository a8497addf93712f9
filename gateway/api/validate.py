"""Turning a JSON body into a ChatRequest, with errors that say exactly which field is wrong.

Wrong type or missing field: 400. Right type, value out of range: 422. Too big: 413. Each error
carries `param` (the field), which the OpenAI-compatible surface puts in its error shape.
"""

from __future__ import annotations

from typing import Any

from flask import request

from ..chat import STRATEGIES, ChatRequest, Message
from ..config import Settings
from ..errors import BadRequest, InvalidParameter, PayloadTooLarge
from ..service import CachePolicy
from . import structured

# X-Priority: high spills to the next model soonest, low waits longest for a local slot.
PRIORITIES = ("high", "normal", "low")

def json_object() -> dict:
    """The request body as a JSON object, whatever the Content-Type (curl users forget it)."""
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raw = request.get_data(cache=True)
        what = "empty" if not raw.strip() else ("not valid JSON" if data is None else "not a JSON object")
        raise BadRequest(f"request body must be a JSON object; it is {what}")
    return data


def typed(body: dict, name: str, types: type | tuple, label: str) -> Any:
    """body[name] if it has the right type, None if absent; 400 otherwise (bool is never a number)."""
    value = body.get(name)
    if value is None:
        return None
    allowed = types if isinstance(types, tuple) else (types,)
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise BadRequest(f"'{name}' must be {label}", param=name)
    return value


def message_list(messages: Any, settings: Settings) -> tuple[Message, ...]:
    return structured.messages(messages, settings.max_image_bytes)


def native_messages(body: dict, settings: Settings) -> tuple[Message, ...]:
    prompt, messages = body.get("prompt"), body.get("messages")
    if prompt is not None and messages is not None:
        raise BadRequest("give either 'prompt' or 'messages', not both", param="prompt")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise BadRequest("'prompt' must be a string", param="prompt")
        if not prompt.strip():
            raise BadRequest("'prompt' is empty", param="prompt")
        return (Message("user", prompt),)
    if messages is None:
        raise BadRequest("missing 'prompt' (or 'messages')", param="prompt")
    return message_list(messages, settings)


def build_request(settings: Settings, messages: tuple[Message, ...], *, model: Any, strategy: Any, system: Any,
                  max_tokens: Any, max_tokens_name: str, temperature: Any, stop: tuple[str, ...], dry_run: bool,
                  stream: bool, request_id: str, api_key_id: str | None, structured_fields: dict) -> ChatRequest:
    """Range checks shared by both surfaces, then the ChatRequest."""
    if strategy is not None and strategy not in STRATEGIES:
        raise InvalidParameter(f"'strategy' must be one of {', '.join(STRATEGIES)}, got {strategy!r}",
                               param="strategy")
    if max_tokens is not None and not 1 <= max_tokens <= settings.max_output_tokens:
        raise InvalidParameter(f"'{max_tokens_name}' must be between 1 and {settings.max_output_tokens}, "
                               f"got {max_tokens}", param=max_tokens_name)
    if temperature is not None and not 0 <= temperature <= 2:
        raise InvalidParameter(f"'temperature' must be between 0 and 2, got {temperature}", param="temperature")
    chars = sum(len(m.content) for m in messages) + len(system or "")
    if chars > settings.max_prompt_chars:
        raise PayloadTooLarge(f"prompt is {chars} characters; the limit is {settings.max_prompt_chars} "
                              "(MAX_PROMPT_CHARS)", error_type="prompt_too_large", param="messages")
    # Prompt caching off for this request: the header on every surface (X-Gateway-Prompt-Cache: off), or the
    # native body's prompt_cache: false
    header = request.headers.get("X-Gateway-Prompt-Cache", "").strip().lower()
    if header in ("off", "false", "0", "no"):
        structured_fields = {**structured_fields, "prompt_cache": False}
    # the header, else the key's own (KEY_PRIORITIES), else normal
    priority = request.headers.get("X-Priority", "").strip().lower() or settings.key_priorities.get(
        api_key_id or "", "normal")
    if priority not in PRIORITIES:
        raise InvalidParameter(f"header X-Priority must be one of {', '.join(PRIORITIES)}, got {priority[:20]!r}",
                               param="X-Priority")
    if priority != "normal":
        structured_fields = {**structured_fields, "priority": priority}
    return ChatRequest(messages=messages, model=model or "auto", strategy=strategy, system=system,
                       max_tokens=max_tokens, temperature=float(temperature) if temperature is not None else None,
                       stop=stop, dry_run=dry_run, stream=stream, request_id=request_id, api_key_id=api_key_id,
                       **structured_fields)


def parse_chat(body: dict, settings: Settings, request_id: str, api_key_id: str | None) -> ChatRequest:
    """The native /api/v1/chat and /api/v1/complexity body."""
    return build_request(
        settings, native_messages(body, settings),
        model=typed(body, "model", str, "a string: 'auto', a tier or a model name"),
        strategy=typed(body, "strategy", str, "a string"),
        system=typed(body, "system", str, "a string"),
        max_tokens=typed(body, "max_tokens", int, "an integer"), max_tokens_name="max_tokens",
        temperature=typed(body, "temperature", (int, float), "a number"),
        stop=stop_sequences(body),
        dry_run=typed(body, "dry_run", bool, "true or false") or False,
        stream=typed(body, "stream", bool, "true or false") or False,
        request_id=request_id, api_key_id=api_key_id,
        structured_fields={**structured.structured_fields(body),
                           "prompt_cache": typed(body, "prompt_cache", bool, "true or false") is not False},
    )


def stop_sequences(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if len(stop) > 4:
            raise InvalidParameter("'stop' takes at most 4 sequences", param="stop")
        return tuple(stop)
    raise BadRequest("'stop' must be a string or a list of strings", param="stop")


def cache_policy() -> CachePolicy:
    """Cache-Control: no-cache (do not read the cache), no-store (do not write it); X-Gateway-Cache: force
    (cache even above CACHE_MAX_TEMPERATURE)."""
    directives = {d.strip().lower() for d in request.headers.get("Cache-Control", "").split(",")}
    return CachePolicy(read="no-cache" not in directives, write="no-store" not in directives,
                       force=request.headers.get("X-Gateway-Cache", "").lower() == "force")
