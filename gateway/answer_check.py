"""The check of a structured answer (tool calls, JSON) before it is sent: local first, checked.

Every answer to a request with tools or a JSON response format goes through `check(request, completion)`,
whichever model gave it: a tool call must name a tool that was offered and carry arguments that parse and
validate against that tool's schema; `tool_choice` required or named must be obeyed; a json_object answer
must parse, a json_schema one validate too (a real JSON Schema validator: jsonschema). A small model that
wrote its call as JSON text instead of a call is repaired into the call when the text is unambiguously one
call (or a list of calls) of offered tools and nothing else; a JSON answer in a Markdown fence is unwrapped.
A failed check sends the request on to the next capable model (dispatch), its reason in routing.attempts.

Reasons name tools, fields and schema keywords, never argument values: they reach responses and logs.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from jsonschema.exceptions import best_match

from .chat import ChatRequest, Completion, ToolCall, new_call_id
from .schemas import validator

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


def structured(request: ChatRequest) -> bool:
    """The request's answer is checked (and, streamed, buffered to be checked before it is sent)."""
    return bool(request.tools) or (request.response_format is not None
                                   and request.response_format.type != "text") or "tools" in request.needs


def check(request: ChatRequest, completion: Completion) -> tuple[Completion, str | None]:
    """The answer (repaired where that is safe) and None, or why it cannot be sent."""
    calling = bool(request.tools) and request.tool_choice != "none"
    if calling and not completion.tool_calls:
        completion = _repaired(request, completion)
    if completion.tool_calls:
        if not calling:
            return completion, "the model called a tool where none may be called"
        if request.parallel_tool_calls is False and len(completion.tool_calls) > 1:
            completion = replace(completion, tool_calls=completion.tool_calls[:1])  # the first call only
        for call in completion.tool_calls:
            why = _call_problem(request, call)
            if why:
                return completion, why
        return completion, None
    if calling and request.tool_choice == "required":
        wanted = f"tool {request.forced_tool!r}" if request.forced_tool else "a tool"
        return completion, f"tool_choice asks for {wanted} and the model called none"
    fmt = request.response_format
    if fmt is None or fmt.type == "text" or completion.finish_reason == "length":
        return completion, None
    text = _unfenced(completion.text)
    try:
        value = json.loads(text)
    except ValueError:
        return completion, "the answer is not valid JSON"
    if fmt.type == "json_object" and not isinstance(value, dict):
        return completion, "the answer is JSON but not an object"
    if fmt.type == "json_schema":
        why = _schema_problem(fmt.schema or {}, value, "the answer")
        if why:
            return completion, why
    return (replace(completion, text=text) if text != completion.text else completion), None


def _call_problem(request: ChatRequest, call: ToolCall) -> str | None:
    tool = next((t for t in request.tools if t.name == call.name), None)
    if tool is None:
        return f"the model called {call.name[:64]!r}, a tool that was not offered"
    if request.forced_tool and call.name != request.forced_tool:
        return f"tool_choice names {request.forced_tool!r} and the model called {call.name!r}"
    args = call.parsed
    if args is None:
        return f"the arguments of {call.name} are not a JSON object"
    if tool.parameters:
        return _schema_problem(tool.parameters, args, f"the arguments of {call.name}")
    return None


def _schema_problem(schema: dict, value: object, what: str) -> str | None:
    try:
        error = best_match(validator(schema).iter_errors(value))
    except Exception:  # noqa: BLE001 - a schema the validator cannot evaluate (an unresolvable $ref, a
        return None    # pathological pattern): the upstream had it too; the answer goes unchecked
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return f"{what} do not match the schema at {where} ({error.validator} failed)"


def _unfenced(text: str) -> str:
    stripped = text.strip()
    match = _FENCE.match(stripped)
    return match.group(1).strip() if match else stripped


def _repaired(request: ChatRequest, completion: Completion) -> Completion:
    """A call written as JSON text ({"name", "arguments"|"parameters"}, or a list of them) becomes a call
    when every item names an offered tool and the text holds nothing else."""
    try:
        value = json.loads(_unfenced(completion.text))
    except ValueError:
        return completion
    items = value if isinstance(value, list) else [value]
    offered = {t.name for t in request.tools}
    calls = []
    for item in items:
        if not isinstance(item, dict) or item.get("name") not in offered or not set(item) <= {
                "name", "arguments", "parameters", "type"}:
            return completion
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                return completion
        if not isinstance(args, dict):
            return completion
        calls.append(ToolCall(new_call_id(), item["name"], json.dumps(args, ensure_ascii=False)))
    if not calls:
        return completion
    return replace(completion, text="", tool_calls=tuple(calls), finish_reason="tool_calls")
