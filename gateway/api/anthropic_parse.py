"""An Anthropic Messages request (POST /v1/messages) into the internal shape (gateway/chat.py).

Blocks become parts: text, image (base64 or url), tool_use (a call: its object input becomes the arguments'
JSON text), tool_result (a tool message, matched to its call; text and images inside it are kept as text
only). `system` as a string or text blocks; `tools` ({name, description, input_schema}); `tool_choice`
auto / any / tool / none with `disable_parallel_tool_use`; `stop_sequences`; `output_config.format` (a JSON
schema). What only Claude uses (`thinking`, `metadata`, `context_management`, `output_config.effort`,
`service_tier`, thinking blocks in the history) rides along in `passthrough` for the Anthropic backend and
is dropped for the others, which the response says (X-Gateway-Dropped). `cache_control` marks go to Claude
where they were (on a message's last block when the client marked an earlier one of it; see cache_ttl) and
are dropped for the others.

Errors name the field in Anthropic's dotted style (`messages.0.content.1.source`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from ..chat import Image, Message, ResponseFormat, Tool, ToolCall
from ..errors import BadRequest, InvalidParameter
from .structured import IMAGE_TYPES, checked_schema, image

# Fields only Claude understands: passed to Anthropic as they are, dropped (and reported) for other backends.
CLAUDE_ONLY = ("thinking", "metadata", "context_management", "service_tier", "container", "mcp_servers",
               "top_k", "top_p")


def cache_ttl(blocks: Any, where: str) -> str:
    """The client's prompt-cache mark among these blocks ("5m" or "1h"; "" none). The gateway keeps one mark
    per message, system prompt or tool list, at its end: a mark on an earlier block of a message moves to its
    last (a longer prefix, cached the same way when the message does not change)."""
    ttl = ""
    for i, b in enumerate(blocks if isinstance(blocks, list) else ()):
        mark = b.get("cache_control") if isinstance(b, dict) else None
        if mark is None:
            continue
        if not isinstance(mark, dict) or mark.get("type") != "ephemeral" or mark.get("ttl", "5m") not in ("5m", "1h"):
            raise BadRequest(f"{where}.{i}.cache_control: Input should be {{type: ephemeral, ttl?: 5m | 1h}}",
                             param=f"{where}.{i}.cache_control")
        ttl = "1h" if "1h" in (ttl, mark.get("ttl")) else "5m"
    return ttl


def text_blocks(value: Any, where: str) -> str:
    """`system` or a tool result's content: a string or a list of blocks, of which text is kept."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise BadRequest(f"{where}: Input should be a valid string or list of blocks", param=where)
    out = []
    for i, b in enumerate(value):
        if not isinstance(b, dict) or not isinstance(b.get("type"), str):
            raise BadRequest(f"{where}.{i}: each block needs a string 'type'", param=f"{where}.{i}")
        if b["type"] == "text":
            if not isinstance(b.get("text"), str):
                raise BadRequest(f"{where}.{i}.text: Input should be a valid string", param=f"{where}.{i}.text")
            out.append(b["text"])
    return "\n\n".join(out) if where == "system" else "".join(out)


def _image(block: dict, where: str, max_bytes: int) -> Image:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
        raise BadRequest(f"{where}.source: should be {{type: base64, media_type, data}} or {{type: url, url}}",
                         param=f"{where}.source")
    if source["type"] == "url":
        return image({"url": source.get("url")}, f"{where}.source", max_bytes)
    media = source.get("media_type")
    if media not in IMAGE_TYPES:
        raise InvalidParameter(f"{where}.source.media_type: Input should be one of {', '.join(IMAGE_TYPES)}",
                               param=f"{where}.source.media_type")
    if not isinstance(source.get("data"), str):
        raise BadRequest(f"{where}.source.data: Input should be a valid string", param=f"{where}.source.data")
    return image({"url": f"data:{media};base64,{source['data']}"}, f"{where}.source", max_bytes)


def messages(value: Any, max_image_bytes: int) -> tuple[tuple[Message, ...], bool]:
    """(messages, whether the history holds thinking blocks)."""
    if not isinstance(value, list) or not value:
        raise BadRequest("messages: Field required (a non-empty list)", param="messages")
    out: list[Message] = []
    calls: dict[str, ToolCall] = {}
    thinking = False
    for i, m in enumerate(value):
        where = f"messages.{i}"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise InvalidParameter(f"{where}.role: Input should be 'user' or 'assistant'", param=f"{where}.role")
        role, content = m["role"], m.get("content")
        if isinstance(content, str):
            out.append(Message(role, content))
            continue
        if not isinstance(content, list):
            raise BadRequest(f"{where}.content: Input should be a valid string or list of blocks",
                             param=f"{where}.content")
        text: list[str] = []
        images: list[Image] = []
        made: list[ToolCall] = []
        kept: list[dict] = []
        for j, b in enumerate(content):
            at = f"{where}.content.{j}"
            kind = b.get("type") if isinstance(b, dict) else None
            if kind == "text":
                if not isinstance(b.get("text"), str):
                    raise BadRequest(f"{at}.text: Input should be a valid string", param=f"{at}.text")
                text.append(b["text"])
            elif kind == "image" and role == "user":
                images.append(_image(b, at, max_image_bytes))
            elif kind == "tool_use" and role == "assistant":
                if not isinstance(b.get("id"), str) or not isinstance(b.get("name"), str) or not isinstance(
                        b.get("input", {}), dict):
                    raise BadRequest(f"{at}: tool_use needs a string id and name and an object input", param=at)
                call = ToolCall(b["id"], b["name"], json.dumps(b.get("input") or {}, ensure_ascii=False))
                made.append(call)
                calls[call.id] = call
            elif kind == "tool_result" and role == "user":
                call = calls.get(b.get("tool_use_id")) if isinstance(b.get("tool_use_id"), str) else None
                if call is None:
                    raise InvalidParameter(f"{at}.tool_use_id: unexpected `tool_use_id` found in `tool_result` "
                                           "blocks: it matches no tool_use of an earlier assistant turn",
                                           param=f"{at}.tool_use_id")
                result = text_blocks(b.get("content") if b.get("content") is not None else "", f"{at}.content")
                out.append(Message("tool", result, tool_call_id=call.id, name=call.name,
                                   is_error=b.get("is_error") is True))
            elif kind in ("thinking", "redacted_thinking") and role == "assistant":
                kept.append(b)  # Claude needs its own thinking back before a tool_use it made
                thinking = True
            elif isinstance(kind, str) and kind in ("document", "search_result", "server_tool_use",
                                                    "web_search_tool_result", "container_upload"):
                raise InvalidParameter(f"{at}: content blocks of type {kind!r} are not supported by this gateway",
                                       param=at)
            else:
                raise BadRequest(f"{at}: a {role} message cannot hold a block of type {str(kind)[:32]!r}", param=at)
        ttl = cache_ttl(content, f"{where}.content")
        if ttl and out and out[-1].role == "tool" and not (text or images or made or kept):
            out[-1] = replace(out[-1], cache=ttl)  # a turn of tool results: the mark goes on the last one
        elif text or images or made or kept or role == "assistant":
            out.append(Message(role, "".join(text), tuple(images), tuple(made), thinking=tuple(kept), cache=ttl))
    if not any(m.role == "user" and (m.content.strip() or m.images) for m in out) and not any(
            m.role == "tool" for m in out):
        raise BadRequest("messages: no user message with content", param="messages")
    return tuple(out), thinking


def tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadRequest("tools: Input should be a valid list", param="tools")
    out = []
    for i, t in enumerate(value):
        where = f"tools.{i}"
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise BadRequest(f"{where}.name: Field required", param=f"{where}.name")
        if t.get("type") not in (None, "custom"):
            raise InvalidParameter(f"{where}: server tools ({str(t['type'])[:40]}) are not supported by this gateway",
                                   param=f"{where}.type")
        schema = t.get("input_schema")
        if not isinstance(schema, dict):
            raise BadRequest(f"{where}.input_schema: Field required (a JSON Schema object)",
                             param=f"{where}.input_schema")
        description = t.get("description") or ""
        if not isinstance(description, str):
            raise BadRequest(f"{where}.description: Input should be a valid string", param=f"{where}.description")
        out.append(Tool(t["name"][:128], description, checked_schema(schema, f"{where}.input_schema")))
    return tuple(out)


def tool_choice(value: Any, offered: tuple[Tool, ...]) -> tuple[str | None, str | None, bool | None]:
    """(tool_choice, forced tool, parallel_tool_calls) from Anthropic's tool_choice."""
    if value is None:
        return None, None, None
    if not isinstance(value, dict) or value.get("type") not in ("auto", "any", "tool", "none"):
        raise InvalidParameter("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
                               param="tool_choice")
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise BadRequest("tool_choice.disable_parallel_tool_use: Input should be a valid boolean",
                         param="tool_choice.disable_parallel_tool_use")
    parallel = False if disable else None
    kind = value["type"]
    if kind == "tool":
        if value.get("name") not in {t.name for t in offered}:
            raise InvalidParameter("tool_choice.name: names no tool of `tools`", param="tool_choice.name")
        return "required", value["name"], parallel
    return {"any": "required"}.get(kind, kind), None, parallel


def response_format(value: Any) -> ResponseFormat | None:
    """output_config.format ({type: json_schema, schema}), or the earlier top-level output_format."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") != "json_schema" or not isinstance(value.get("schema"), dict):
        raise InvalidParameter("output_config.format: Input should be {type: json_schema, schema: {...}}",
                               param="output_config.format")
    return ResponseFormat("json_schema", "output", checked_schema(value["schema"], "output_config.format.schema"))
