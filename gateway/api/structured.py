"""Parsing what goes beyond plain text into the internal shape (gateway/chat.py): content parts with images,
assistant tool calls, tool results, `tools`, `tool_choice`, `parallel_tool_calls`, `response_format`, and the
legacy `functions` / `function_call`. OpenAI's Chat Completions shapes; the native API takes the same fields.

Every error names the field (`param`): a wrong type is a 400, a wrong value a 422, an image over the size
limit a 413. Nothing here logs, so no content reaches a log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from ..chat import RESPONSE_FORMATS, ROLES, TOOL_CHOICES, Image, Message, ResponseFormat, Tool, ToolCall
from ..errors import BadRequest, InvalidParameter, PayloadTooLarge
from ..schemas import schema_problem

# OpenAI's newer name for the system role; `function` is the legacy role of a function's result.
_ROLE_ALIASES = {"developer": "system"}
_PLAIN_ROLES = frozenset({"system", "user", "assistant"})
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The image types every backend takes (Anthropic's list; Ollama and OpenAI take these too).
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_DATA_URL = re.compile(r"^data:([\w/+.-]*)(;[\w=.-]+)*?;base64,", re.IGNORECASE)


def content(value: Any, where: str, max_image_bytes: int, images_allowed: bool = True
            ) -> tuple[str, tuple[Image, ...]]:
    """A message's content: a string, or a list of parts (text, image_url): its text and its images."""
    if isinstance(value, str):
        return value, ()
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        raise BadRequest(f"{where} must be a string or a list of content parts", param=where)
    text, images = [], []
    for i, part in enumerate(value):
        kind = part.get("type")
        at = f"{where}[{i}]"
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise BadRequest(f"{at}.text must be a string", param=at)
            text.append(part["text"])
        elif kind == "image_url" and images_allowed:
            images.append(image(part.get("image_url"), f"{at}.image_url", max_image_bytes))
        elif not isinstance(kind, str):
            raise BadRequest(f"{at} needs a string 'type'", param=at)
        else:
            allowed = "text or image_url" if images_allowed else "text"
            raise InvalidParameter(f"{at}: content parts of type {kind!r} are not supported here ({allowed})",
                                   param=at)
    return "".join(text), tuple(images)


def image(value: Any, where: str, max_bytes: int) -> Image:
    """An image_url part: a data: URL (base64) of a supported type within the size limit, or an http(s) URL."""
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.url must be a string: a data: URL or an http(s) URL", param=where)
    if url.startswith(("http://", "https://")):
        if len(url) > 8192:
            raise InvalidParameter(f"{where}.url is longer than 8192 characters", param=where)
        return Image(url=url)
    match = _DATA_URL.match(url)
    if not match:
        raise InvalidParameter(f"{where}.url must be a data:<type>;base64,... URL or an http(s) URL", param=where)
    media_type = match.group(1).lower().replace("image/jpg", "image/jpeg")
    if media_type not in IMAGE_TYPES:
        raise InvalidParameter(f"{where}: image type {media_type or 'missing'!r} is not supported; use one of "
                               f"{', '.join(IMAGE_TYPES)}", param=where)
    data = url[match.end():]
    if len(data) * 3 // 4 > max_bytes:
        raise PayloadTooLarge(f"{where}: the image is over {max_bytes} bytes (MAX_IMAGE_BYTES)",
                              error_type="image_too_large", param=where)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidParameter(f"{where}: the image data is not valid base64", param=where) from exc
    return Image(media_type=media_type, data=data)


def _arguments(fn: dict, where: str) -> str:
    """A call's arguments as JSON text: OpenAI sends a string, some clients an object; absent: none."""
    if "arguments" not in fn:
        return "{}"
    value = fn["arguments"]
    if isinstance(value, str):
        return value or "{}"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    raise BadRequest(f"{where} must be a JSON string (or an object)", param=where)


def _assistant_calls(m: dict, where: str) -> tuple[ToolCall, ...]:
    calls = m.get("tool_calls")
    out: list[ToolCall] = []
    if calls is not None:
        if not isinstance(calls, list):
            raise BadRequest(f"{where}.tool_calls must be a list", param=f"{where}.tool_calls")
        for j, c in enumerate(calls):
            at = f"{where}.tool_calls[{j}]"
            fn = c.get("function") if isinstance(c, dict) else None
            if not isinstance(fn, dict) or not isinstance(c.get("id"), str) or not isinstance(fn.get("name"), str) \
                    or c.get("type", "function") != "function":
                raise BadRequest(f"{at} must be {{id, type: function, function: {{name, arguments}}}}", param=at)
            out.append(ToolCall(c["id"], fn["name"], _arguments(fn, f"{at}.function.arguments")))
    legacy = m.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
        # The legacy shape has no ids: the result (role function) is matched by name.
        out.append(ToolCall(f"call_legacy_{len(out)}_{legacy['name']}", legacy["name"],
                            _arguments(legacy, f"{where}.function_call.arguments")))
    return tuple(out)


_FIELDS = frozenset({"tools", "functions", "tool_choice", "function_call", "parallel_tool_calls", "response_format"})
_NONE: dict = {}


def structured_fields(body: dict) -> dict:
    """The ChatRequest fields beyond messages: tools, tool_choice, parallel_tool_calls, response_format."""
    if _FIELDS.isdisjoint(body):
        return _NONE  # plain chat: nothing to parse
    offered = tools(body)
    choice, forced = tool_choice(body, offered)
    return {"tools": offered, "tool_choice": choice, "forced_tool": forced,
            "parallel_tool_calls": parallel_tool_calls(body), "response_format": response_format(body)}


def messages(value: Any, max_image_bytes: int) -> tuple[Message, ...]:
    """OpenAI-shaped messages into Messages; tool results are matched to an earlier call (their name is
    looked up from it: Ollama wants it)."""
    if not isinstance(value, list) or not value:
        raise BadRequest("'messages' must be a non-empty list of {role, content}", param="messages")
    out: list[Message] = []
    calls: dict[str, ToolCall] = {}
    for i, m in enumerate(value):
        if type(m) is dict and len(m) == 2 and type(m.get("content")) is str and m.get("role") in _PLAIN_ROLES:
            out.append(Message(m["role"], m["content"]))  # plain text, the common case: no more checks
            continue
        where = f"messages[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"{where} must be an object with a string 'role'", param=where)
        role = _ROLE_ALIASES.get(m["role"], m["role"])
        for key in ("tool_call_id", "name"):
            if key in m and not isinstance(m[key], str):
                raise BadRequest(f"{where}.{key} must be a string", param=f"{where}.{key}")
        if "tool_calls" in m and role != "assistant":
            raise InvalidParameter(f"{where}: only assistant messages carry tool_calls", param=f"{where}.tool_calls")
        if role == "function":
            out.append(_legacy_result(m, where, calls))
            continue
        if role not in ROLES:
            raise InvalidParameter(f"{where}.role must be one of {', '.join(ROLES)}, got {m['role']!r}",
                                   param=f"{where}.role")
        tool_calls = _assistant_calls(m, where) if role == "assistant" else ()
        if "content" not in m and not tool_calls:
            raise BadRequest(f"{where} must have a 'content'", param=where)
        raw = m.get("content")
        text, images = ("", ()) if raw is None and (tool_calls or role == "assistant") else content(
            raw, f"{where}.content", max_image_bytes, images_allowed=role == "user")
        if role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                raise BadRequest(f"{where}.tool_call_id must be a string", param=f"{where}.tool_call_id")
            call = calls.get(call_id)
            if call is None:
                raise InvalidParameter(f"{where}.tool_call_id {call_id[:64]!r} matches no tool call of an earlier "
                                       "assistant message", param=f"{where}.tool_call_id")
            out.append(Message("tool", text, tool_call_id=call_id, name=call.name,
                               is_error=m.get("is_error") is True))
            continue
        for c in tool_calls:
            calls[c.id] = c
        out.append(Message(role, text, images, tool_calls))
    if not any(m.role == "user" and (m.content.strip() or m.images) for m in out):
        raise BadRequest("'messages' has no non-empty user message", param="messages")
    return tuple(out)


def _legacy_result(m: dict, where: str, calls: dict[str, ToolCall]) -> Message:
    name = m.get("name")
    call = next((c for c in reversed(calls.values()) if c.name == name), None)
    if call is None:
        raise InvalidParameter(f"{where}: a function result for {str(name)[:64]!r} matches no earlier function_call",
                               param=f"{where}.name")
    text, _ = content(m.get("content") or "", f"{where}.content", 0, images_allowed=False)
    return Message("tool", text, tool_call_id=call.id, name=call.name)


def _schema(value: Any, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON Schema object", param=where)
    if "type" in value and value["type"] != "object" and value["type"] != ["object"]:
        raise InvalidParameter(f"{where}: a tool's parameters must be a schema of type 'object'", param=where)
    return checked_schema(value, where)


def checked_schema(value: dict, where: str) -> dict:
    """A JSON Schema the validator accepts (the answer check validates against it), else 422."""
    problem = schema_problem(value)
    if problem:
        raise InvalidParameter(f"{where} is not a valid JSON Schema: {problem}", param=where)
    return value


def _tool_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _TOOL_NAME.match(value):
        raise InvalidParameter(f"{where} must be 1-64 letters, digits, '_' or '-'", param=where)
    return value


def tools(body: dict) -> tuple[Tool, ...]:
    """`tools` ([{type: function, function: {name, description, parameters, strict}}]) or the legacy
    `functions` ([{name, description, parameters}])."""
    raw, legacy = body.get("tools"), body.get("functions")
    if raw is None and legacy is None:
        return ()
    if raw is not None and legacy is not None:
        raise BadRequest("give either 'tools' or the legacy 'functions', not both", param="tools")
    name = "tools" if raw is not None else "functions"
    items = raw if raw is not None else legacy
    if not isinstance(items, list):
        raise BadRequest(f"'{name}' must be a list", param=name)
    if len(items) > 128:
        raise InvalidParameter(f"'{name}' takes at most 128 tools", param=name)
    out: list[Tool] = []
    for i, t in enumerate(items):
        where = f"{name}[{i}]"
        if raw is not None:
            if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(
                    t.get("function"), dict):
                raise BadRequest(f"{where} must be {{type: function, function: {{name, description, parameters}}}}",
                                 param=where)
            fn, where = t["function"], f"{where}.function"
        else:
            if not isinstance(t, dict):
                raise BadRequest(f"{where} must be {{name, description, parameters}}", param=where)
            fn = t
        description = fn.get("description") or ""
        if not isinstance(description, str):
            raise BadRequest(f"{where}.description must be a string", param=f"{where}.description")
        out.append(Tool(_tool_name(fn.get("name"), f"{where}.name"), description,
                        _schema(fn.get("parameters"), f"{where}.parameters"), _flag(fn, "strict", where)))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise InvalidParameter(f"'{name}' has two tools of the same name", param=name)
    return tuple(out)


def tool_choice(body: dict, offered: tuple[Tool, ...]) -> tuple[str | None, str | None]:
    """(tool_choice, forced tool name) from `tool_choice` or the legacy `function_call`."""
    raw = body.get("tool_choice")
    name = "tool_choice"
    if raw is None and body.get("function_call") is not None:
        raw, name = body["function_call"], "function_call"
        if isinstance(raw, dict):
            raw = {"type": "function", "function": raw}
    if raw is None:
        return None, None
    if isinstance(raw, str):
        if raw not in TOOL_CHOICES:
            raise InvalidParameter(f"'{name}' must be one of {', '.join(TOOL_CHOICES)} or a named tool, got {raw!r}",
                                   param=name)
        if raw == "required" and not offered:
            raise InvalidParameter(f"'{name}' is 'required' but no tools are given", param=name)
        return raw, None
    fn = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or raw.get("type", "function") != "function":
        raise BadRequest(f"'{name}' must be a string or {{type: function, function: {{name}}}}", param=name)
    if fn["name"] not in {t.name for t in offered}:
        raise InvalidParameter(f"'{name}' names {fn['name'][:64]!r}, which is not among the tools given", param=name)
    return "required", fn["name"]


def response_format(body: dict) -> ResponseFormat | None:
    raw = body.get("response_format")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise BadRequest("'response_format' must be {type: text | json_object | json_schema}", param="response_format")
    kind = raw["type"]
    if kind not in RESPONSE_FORMATS:
        raise InvalidParameter(f"'response_format.type' must be one of {', '.join(RESPONSE_FORMATS)}, got "
                               f"{kind[:32]!r}", param="response_format.type")
    if kind != "json_schema":
        return None if kind == "text" else ResponseFormat(kind)
    spec = raw.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise BadRequest("'response_format.json_schema' must be {name, schema: {...}, strict?}",
                         param="response_format.json_schema")
    name = spec.get("name") or "response"
    _tool_name(name, "response_format.json_schema.name")
    description = spec.get("description") or ""
    if not isinstance(description, str):
        raise BadRequest("'response_format.json_schema.description' must be a string",
                         param="response_format.json_schema.description")
    schema = checked_schema(spec["schema"], "response_format.json_schema.schema")
    return ResponseFormat("json_schema", name, schema, _flag(spec, "strict", "response_format.json_schema"),
                          description)


def _flag(obj: dict, name: str, where: str) -> bool:
    value = obj.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{where}.{name} must be true or false", param=f"{where}.{name}")
    return value is True


def parallel_tool_calls(body: dict) -> bool | None:
    value = body.get("parallel_tool_calls")
    if value is not None and not isinstance(value, bool):
        raise BadRequest("'parallel_tool_calls' must be true or false", param="parallel_tool_calls")
    return value
