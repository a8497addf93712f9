"""The Anthropic Messages surface: POST /v1/messages and /v1/messages/count_tokens, for Claude Code
(ANTHROPIC_BASE_URL) and the anthropic SDK. A third skin over the same ChatRequest -> Outcome path.

`model` is a Claude name the client was configured with, answered by the target `claude_names` in
configs/models.yaml gives it (haiku-class names are routed, so a coding agent's quick calls can stay local;
sonnet and opus go to Claude), or `auto`, a tier or a model as on the other surfaces. The response names the
model that answered. The gateway key comes as `x-api-key` or `Authorization: Bearer`; the query string
(`?beta=true`) is ignored; `anthropic-version` and `anthropic-beta` go on to Anthropic.

Streamed, the events come in Anthropic's order: message_start (usage.input_tokens, an estimate until the
upstream reports it), ping, per block content_block_start / _delta (text_delta, input_json_delta) / _stop,
message_delta (stop_reason, cumulative output_tokens), message_stop; an `error` event when the upstream fails
mid-answer. Errors are Anthropic's shape: {"type": "error", "error": {"type", "message"}, "request_id"}.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from ..chat import Completion, Outcome, StreamDelta, Usage
from ..dispatch import LiveStream, StreamInterrupted
from ..errors import BadRequest
from ..service import GatewayService
from . import anthropic_parse as parse
from .render import gateway_headers, header_safe
from .sse import event, start_stream
from .validate import build_request, cache_policy, json_object, typed

bp = Blueprint("anthropic", __name__, url_prefix="/v1")
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "interrupted": "end_turn"}
# What the error event says for each kind of mid-stream failure (Anthropic's error types).
_STREAM_ERRORS = {"overloaded": "overloaded_error", "rate_limited": "rate_limit_error", "timeout": "api_error"}


def _service() -> GatewayService:
    return current_app.extensions["gateway"]


def _parse(body: dict, svc: GatewayService, counting: bool = False):
    name = typed(body, "model", str, "a string")
    if not name:
        raise BadRequest("model: Field required", param="model")
    max_tokens = typed(body, "max_tokens", int, "an integer")
    if max_tokens is None and not counting:
        raise BadRequest("max_tokens: Field required", param="max_tokens")
    # Claude Code asks for 32,000 and more: the gateway's own ceiling (MAX_OUTPUT_TOKENS) applies instead
    if max_tokens is not None and max_tokens > svc.settings.max_output_tokens:
        max_tokens = svc.settings.max_output_tokens
    messages, thinking = parse.messages(body.get("messages"), svc.settings.max_image_bytes)
    offered = parse.tools(body.get("tools"))
    choice, forced, parallel = parse.tool_choice(body.get("tool_choice"), offered)
    config = typed(body, "output_config", dict, "an object") or {}
    fmt = parse.response_format(config.get("format") if config.get("format") is not None
                                else body.get("output_format"))
    stop = body.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("stop_sequences: Input should be a list of strings", param="stop_sequences")
    extra = {k: body[k] for k in parse.CLAUDE_ONLY if body.get(k) is not None}
    if {k: v for k, v in config.items() if k != "format"}:
        extra["output_config"] = {k: v for k, v in config.items() if k != "format"}
    headers = {h: request.headers[h] for h in ("anthropic-version", "anthropic-beta") if request.headers.get(h)}
    tools_ttl = parse.cache_ttl(body.get("tools"), "tools")
    system_ttl = parse.cache_ttl(body.get("system"), "system")
    dropped = sorted(extra) + (["thinking blocks"] if thinking else []) + (
        ["cache_control"] if tools_ttl or system_ttl or any(m.cache for m in messages) else [])
    req = build_request(
        svc.settings, messages, model=svc.settings.catalog.claude_target(name), strategy=None,
        system=parse.text_blocks(body["system"], "system") if body.get("system") is not None else None,
        max_tokens=max_tokens, max_tokens_name="max_tokens",
        temperature=typed(body, "temperature", (int, float), "a number"),
        stop=tuple(stop or ())[:4], dry_run=False, stream=typed(body, "stream", bool, "true or false") or False,
        request_id=g.request_id, api_key_id=g.api_key_id,
        structured_fields={"tools": offered, "tool_choice": choice, "forced_tool": forced,
                           "parallel_tool_calls": parallel, "response_format": fmt,
                           "passthrough": {"body": extra, "headers": headers} if extra or headers else None,
                           "cache_system": system_ttl, "cache_tools": tools_ttl})
    return req, name, dropped


def _dropped(outcome_backend: str, dropped: list[str]) -> str:
    """What the answering backend did not get: Claude-only fields and cache marks, for any other backend."""
    return "" if outcome_backend == "anthropic" else ", ".join(dropped)


@bp.post("/messages")
def messages():
    svc = _service()
    req, asked, dropped = _parse(json_object(), svc)
    decision = g.decision = svc.decide(req)
    svc.admit(req)
    policy = cache_policy()
    if req.stream:
        resp = start_stream(svc, req, decision, policy, MessagesFramer(req.request_id, req.input_tokens_estimate))
        backend = resp.headers.get("X-Gateway-Backend", "")
    else:
        outcome: Outcome = svc.complete(req, decision, policy)
        g.outcome = outcome
        resp = jsonify(message_body(req.request_id, outcome.model, outcome.completion))
        resp.headers.extend(gateway_headers(decision, outcome.model, outcome.backend, outcome.tier,
                                            len(outcome.attempts), outcome.cost, outcome.cached, outcome.reason))
        backend = outcome.backend
    told = _dropped(backend, dropped)
    if told:
        resp.headers["X-Gateway-Dropped"] = told
    resp.headers["X-Gateway-Requested-Model"] = header_safe(asked, 100)  # the client's text: never raw
    return resp


@bp.post("/messages/count_tokens")
def count_tokens():
    svc = _service()
    req, _, _ = _parse(json_object(), svc, counting=True)
    decision = g.decision = svc.decide(req)
    counted = svc.count_input_tokens(req, decision)
    resp = jsonify({"input_tokens": counted if counted is not None else req.input_tokens_estimate})
    resp.headers["X-Gateway-Count"] = "anthropic" if counted is not None else "estimate"
    resp.headers["X-Gateway-Model"] = decision.model
    return resp


def message_body(request_id: str, model: str, completion: Completion) -> dict:
    content: list[dict] = [{"type": "text", "text": completion.text}] if completion.text else []
    content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.parsed or {}}
                for c in completion.tool_calls]
    return {"id": f"msg_{request_id}", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": _STOP.get(completion.finish_reason, "end_turn"), "stop_sequence": None,
            "usage": {**_input_usage(completion.usage), "output_tokens": completion.usage.output_tokens}}


def _input_usage(usage: Usage) -> dict:
    """Anthropic's input counts: input_tokens is the uncached part, cache writes and reads apart."""
    written = usage.cache_write_tokens + usage.cache_write_1h_tokens
    return {"input_tokens": usage.input_tokens - written - usage.cache_read_tokens,
            "cache_creation_input_tokens": written, "cache_read_input_tokens": usage.cache_read_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write_tokens,
                               "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens}}


class MessagesFramer:
    """Anthropic's named SSE events; content blocks opened and closed as text and tool calls arrive."""

    def __init__(self, request_id: str, input_estimate: int):
        self.id, self.estimate = f"msg_{request_id}", input_estimate
        self.index = -1          # the open block's index
        self.open: str | None = None   # "text", "tool_use" or None

    def _send(self, name: str, data: dict) -> str:
        return event({"type": name, **data}, name)

    def start(self, live: LiveStream) -> str:
        known = live.outcome.completion.usage.input_tokens if live.outcome is not None else self.estimate
        message = {"id": self.id, "type": "message", "role": "assistant", "model": live.model.name, "content": [],
                   "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": known, "output_tokens": 1}}
        return self._send("message_start", {"message": message}) + self._send("ping", {})

    def _close(self) -> str:
        if self.open is None:
            return ""
        self.open = None
        return self._send("content_block_stop", {"index": self.index})

    def _open(self, block: dict) -> str:
        out = self._close()
        self.index += 1
        self.open = block["type"]
        return out + self._send("content_block_start", {"index": self.index, "content_block": block})

    def delta(self, live: LiveStream, delta: StreamDelta) -> str:
        out = ""
        if delta.text:
            if self.open != "text":
                out += self._open({"type": "text", "text": ""})
            out += self._send("content_block_delta", {"index": self.index,
                                                      "delta": {"type": "text_delta", "text": delta.text}})
        for piece in delta.tool_calls or ():
            if piece.id:
                out += self._open({"type": "tool_use", "id": piece.id, "name": piece.name, "input": {}})
            if piece.arguments:
                out += self._send("content_block_delta", {"index": self.index, "delta": {
                    "type": "input_json_delta", "partial_json": piece.arguments}})
        return out

    def done(self, live: LiveStream, outcome: Outcome) -> str:
        completion = outcome.completion
        return self._close() + self._send("message_delta", {
            "delta": {"stop_reason": _STOP.get(completion.finish_reason, "end_turn"), "stop_sequence": None},
            # the input counts again, now known (the cache's part only the upstream's answer tells)
            "usage": {**_input_usage(completion.usage), "output_tokens": completion.usage.output_tokens}}
        ) + self._send("message_stop", {})

    def error(self, live: LiveStream, exc: StreamInterrupted) -> str:
        kind = _STREAM_ERRORS.get(exc.error.kind, "api_error")
        return self._send("error", {"error": {"type": kind, "message": f"the upstream failed mid-answer "
                                                                      f"({exc.error.kind}); the text so far is "
                                                                      "incomplete"}})

