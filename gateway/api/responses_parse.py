"""An OpenAI Responses request (POST /v1/responses) into the internal shape (gateway/chat.py): the subset the
openai SDK, LangChain (`use_responses_api`) and n8n's OpenAI Chat Model node send.

`input` is a string or items: messages (user, system, developer, assistant; `type` may be left out) with
input_text / input_image / output_text parts, `function_call` (consecutive ones, and one right after an
assistant message, join that assistant turn), `function_call_output` (a tool result, matched to its call by
call_id), `reasoning` (replayed by clients: skipped). Replayed ids (`msg_`, `fc_`) and `status` are ignored.
`instructions` is the system prompt; tools are flat ({type: function, name, parameters}); `text.format` is
the response format. Responses are not stored, so `previous_response_id` and `conversation` are refused
(400 previous_response_not_found) rather than silently ignored.
"""

from __future__ import annotations

import json
from typing import Any

from ..chat import Image, Message, Tool, ToolCall
from ..errors import BadRequest, InvalidParameter
from .structured import image, parallel_tool_calls, response_format, tool_choice, tools

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


class PreviousResponseNotFound(BadRequest):
    def __init__(self, name: str, value: str):
        super().__init__(f"Previous response with id '{value[:64]}' not found: this gateway does not store responses "
                         f"(send the whole conversation in `input`)", param=name,
                         error_type="previous_response_not_found")


def _parts(content: Any, where: str, role: str, max_image_bytes: int) -> tuple[str, tuple[Image, ...]]:
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise BadRequest(f"{where} must be a string or a list of parts", param=where)
    text: list[str] = []
    images: list[Image] = []
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise BadRequest(f"{at}.text must be a string", param=f"{at}.text")
            text.append(part["text"])
        elif kind == "input_image" and role == "user":
            if part.get("file_id") is not None and part.get("image_url") is None:
                raise InvalidParameter(f"{at}: images by file_id are not supported (no file storage): send "
                                       "image_url", param=at)
            images.append(image({"url": part.get("image_url")}, at, max_image_bytes))
        elif kind == "refusal":
            text.append(str(part.get("refusal") or ""))
        elif kind == "input_file":
            raise InvalidParameter(f"{at}: input_file is not supported by this gateway", param=at)
        else:
            raise BadRequest(f"{at}: a part of type {str(kind)[:40]!r} is not one of input_text, input_image, "
                             "output_text", param=at)
    return "".join(text), tuple(images)


def _output_text(output: Any, where: str) -> str:
    """A function_call_output's output: a string, or parts of which the text is kept."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(p.get("text", "") for p in output if isinstance(p, dict) and isinstance(p.get("text"), str))
    raise BadRequest(f"{where}.output must be a string or a list of parts", param=f"{where}.output")


def messages(body: dict, max_image_bytes: int) -> tuple[Message, ...]:
    raw = body.get("input")
    if isinstance(raw, str):
        if not raw.strip():
            raise BadRequest("'input' is empty", param="input")
        return (Message("user", raw),)
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'input' must be a string or a non-empty list of items", param="input")
    out: list[Message] = []
    calls: dict[str, ToolCall] = {}
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object", param=where)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
            if role is None:
                raise InvalidParameter(f"{where}.role must be one of user, system, developer, assistant",
                                       param=f"{where}.role")
            text, images = _parts(item.get("content"), f"{where}.content", role, max_image_bytes)
            out.append(Message(role, text, images))
        elif kind == "function_call":
            if not all(isinstance(item.get(k), str) for k in ("call_id", "name")):
                raise BadRequest(f"{where}: a function_call needs string call_id and name", param=where)
            args = item.get("arguments", "{}")
            if not isinstance(args, str):
                raise BadRequest(f"{where}.arguments must be a JSON string", param=f"{where}.arguments")
            call = ToolCall(item["call_id"], item["name"], args or "{}")
            calls[call.id] = call
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":  # join the assistant turn it belongs to
                out[-1] = Message("assistant", last.content, tool_calls=(*last.tool_calls, call))
            else:
                out.append(Message("assistant", "", tool_calls=(call,)))
        elif kind == "function_call_output":
            call = calls.get(item.get("call_id")) if isinstance(item.get("call_id"), str) else None
            if call is None:
                raise InvalidParameter(f"{where}.call_id matches no function_call earlier in `input`",
                                       param=f"{where}.call_id")
            out.append(Message("tool", _output_text(item.get("output"), where), tool_call_id=call.id, name=call.name))
        elif kind == "reasoning":
            continue  # a replayed reasoning item: nothing a chat model takes
        else:
            raise InvalidParameter(f"{where}: items of type {str(kind)[:40]!r} are not supported (message, "
                                   "function_call, function_call_output)", param=f"{where}.type")
    if not any(m.role == "user" and (m.content.strip() or m.images) for m in out):
        raise BadRequest("'input' has no non-empty user message", param="input")
    return tuple(out)


def structured_fields(body: dict) -> dict:
    """tools (flat in this API; only functions), tool_choice, parallel_tool_calls and text.format, in the
    chat shape the shared parser reads."""
    offered = body.get("tools")
    chat: dict = {}
    if offered is not None:
        if not isinstance(offered, list):
            raise BadRequest("'tools' must be a list", param="tools")
        nested = []
        for i, t in enumerate(offered):
            if not isinstance(t, dict) or t.get("type", "function") != "function":
                kind = t.get("type") if isinstance(t, dict) else None
                raise InvalidParameter(f"tools[{i}]: only function tools are supported, not {str(kind)[:40]!r}",
                                       param=f"tools[{i}].type")
            nested.append({"type": "function", "function": {k: t[k] for k in (
                "name", "description", "parameters", "strict") if k in t}})
        chat["tools"] = nested
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        chat["tool_choice"] = choice
    if body.get("parallel_tool_calls") is not None:
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    text = body.get("text")
    if text is not None and not isinstance(text, dict):
        raise BadRequest("'text' must be an object", param="text")
    fmt = (text or {}).get("format")
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise BadRequest("'text.format' must be an object", param="text.format")
        if fmt.get("type") == "json_schema":  # flat here, nested under json_schema in chat
            fmt = {"type": "json_schema", "json_schema": {k: fmt[k] for k in (
                "name", "schema", "strict", "description") if k in fmt}}
        chat["response_format"] = fmt
    found: list[Tool] = list(tools(chat))
    picked, forced = tool_choice(chat, tuple(found))
    return {"tools": tuple(found), "tool_choice": picked, "forced_tool": forced,
            "parallel_tool_calls": parallel_tool_calls(chat), "response_format": response_format(chat)}


def refuse_stored(body: dict) -> None:
    for name in ("previous_response_id", "conversation"):
        value = body.get(name)
        if value is not None:
            raise PreviousResponseNotFound(name, value if isinstance(value, str) else json.dumps(value))
