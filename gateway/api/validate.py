"""Turning a JSON body into a ChatRequest, with errors that say exactly which field is wrong.

Wrong type or missing field: 400. Right type, value out of range: 422. Too big: 413.
"""

from __future__ import annotations

from typing import Any

from flask import request

from ..chat import ROLES, STRATEGIES, ChatRequest, Message
from ..config import Settings
from ..errors import BadRequest, InvalidParameter, PayloadTooLarge


def json_object() -> dict:
    """The request body as a JSON object, whatever the Content-Type (curl users forget it)."""
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raw = request.get_data(cache=True)
        what = "empty" if not raw.strip() else ("not valid JSON" if data is None else "not a JSON object")
        raise BadRequest(f"request body must be a JSON object; it is {what}")
    return data


def _typed(body: dict, name: str, types: type | tuple, label: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise BadRequest(f"'{name}' must be {label}")
    if not isinstance(value, types):
        raise BadRequest(f"'{name}' must be {label}")
    return value


def parse_messages(body: dict) -> tuple[Message, ...]:
    prompt, messages = body.get("prompt"), body.get("messages")
    if prompt is not None and messages is not None:
        raise BadRequest("give either 'prompt' or 'messages', not both")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise BadRequest("'prompt' must be a string")
        if not prompt.strip():
            raise BadRequest("'prompt' is empty")
        return (Message("user", prompt),)
    if messages is None:
        raise BadRequest("missing 'prompt' (or 'messages')")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise BadRequest(f"messages[{i}] must be an object with string 'role' and 'content'")
        if m["role"] not in ROLES:
            raise InvalidParameter(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {m['role']!r}")
        out.append(Message(m["role"], m["content"]))
    if not any(m.role == "user" and m.content.strip() for m in out):
        raise BadRequest("'messages' has no non-empty user message")
    return tuple(out)


def parse_chat(body: dict, settings: Settings, request_id: str, api_key_id: str | None) -> ChatRequest:
    messages = parse_messages(body)
    model = _typed(body, "model", str, "a string: 'auto', a tier or a model name") or "auto"
    strategy = _typed(body, "strategy", str, "a string")
    if strategy is not None and strategy not in STRATEGIES:
        raise InvalidParameter(f"'strategy' must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    system = _typed(body, "system", str, "a string")
    max_tokens = _typed(body, "max_tokens", int, "an integer")
    if max_tokens is not None and not 1 <= max_tokens <= settings.max_output_tokens:
        raise InvalidParameter(f"'max_tokens' must be between 1 and {settings.max_output_tokens}, got {max_tokens}")
    temperature = _typed(body, "temperature", (int, float), "a number")
    if temperature is not None and not 0 <= temperature <= 2:
        raise InvalidParameter(f"'temperature' must be between 0 and 2, got {temperature}")
    dry_run = _typed(body, "dry_run", bool, "true or false") or False
    stream = _typed(body, "stream", bool, "true or false") or False
    if stream:
        raise InvalidParameter("'stream' is not supported on /api/v1/chat yet; send stream: false")
    chars = sum(len(m.content) for m in messages) + len(system or "")
    if chars > settings.max_prompt_chars:
        raise PayloadTooLarge(f"prompt is {chars} characters; the limit is {settings.max_prompt_chars} "
                              "(MAX_PROMPT_CHARS)", error_type="prompt_too_large")
    return ChatRequest(messages=messages, model=model, strategy=strategy, system=system, max_tokens=max_tokens,
                       temperature=float(temperature) if temperature is not None else None,
                       dry_run=dry_run, request_id=request_id, api_key_id=api_key_id)
