"""The OpenAI-compatible surface, /v1/*: any OpenAI SDK, LangChain or n8n AI node works by changing only
its base URL. A second skin over the same ChatRequest -> Outcome path as the native API.

`model` is "auto" (smart routing), a tier or a configured model name; the response's `model` is the one
that really answered. Routing metadata travels in X-Gateway-* headers, never in the body.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import Blueprint, current_app, g, jsonify

from ..chat import Completion, Outcome, StreamDelta
from ..dispatch import LiveStream, StreamInterrupted
from ..errors import InvalidParameter, UnknownModel
from ..service import GatewayService
from .render import gateway_headers, openai_usage
from .sse import event, start_stream
from .structured import structured_fields
from .validate import build_request, cache_policy, json_object, message_list, stop_sequences, typed

bp = Blueprint("openai", __name__, url_prefix="/v1")
OWNER = "hybrid-ai-gateway"


def _service() -> GatewayService:
    return current_app.extensions["gateway"]


def _parse(body: dict, svc: GatewayService):
    if body.get("n") not in (None, 1):
        raise InvalidParameter("only n=1 is supported", param="n")
    typed(body, "user", str, "a string")
    options = typed(body, "stream_options", dict, "an object") or {}
    include_usage = typed(options, "include_usage", bool, "true or false") or False
    max_completion = typed(body, "max_completion_tokens", int, "an integer")
    max_tokens = max_completion if max_completion is not None else typed(body, "max_tokens", int, "an integer")
    req = build_request(
        svc.settings, message_list(body.get("messages"), svc.settings),
        model=typed(body, "model", str, "a string: 'auto', a tier or a model name"),
        strategy=typed(body, "strategy", str, "a string"),  # an extension: routing strategy per request
        system=None,
        max_tokens=max_tokens,
        max_tokens_name="max_completion_tokens" if max_completion is not None else "max_tokens",
        temperature=typed(body, "temperature", (int, float), "a number"),
        stop=stop_sequences(body),
        dry_run=False,
        stream=typed(body, "stream", bool, "true or false") or False,
        request_id=g.request_id, api_key_id=g.api_key_id, structured_fields=structured_fields(body),
    )
    return req, include_usage, body.get("functions") is not None


@bp.post("/chat/completions")
def chat_completions():
    svc = _service()
    req, include_usage, legacy = _parse(json_object(), svc)
    decision = g.decision = svc.decide(req)
    svc.admit(req)
    policy = cache_policy()
    completion_id = f"chatcmpl-{req.request_id}"
    if req.stream:
        return start_stream(svc, req, decision, policy, OpenAIFramer(completion_id, include_usage, legacy))
    outcome: Outcome = svc.complete(req, decision, policy)
    g.outcome = outcome
    resp = jsonify(completion_body(completion_id, outcome, legacy))
    resp.headers.extend(gateway_headers(decision, outcome.model, outcome.backend, outcome.tier,
                                        len(outcome.attempts), outcome.cost, outcome.cached, outcome.reason))
    return resp


def completion_body(completion_id: str, outcome: Outcome, legacy: bool = False) -> dict:
    """A chat.completion object (an answer, or a batch's output line's body)."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": outcome.model,
        "choices": [{"index": 0, "message": assistant_message(outcome.completion, legacy),
                     "finish_reason": finish_reason(outcome.completion, legacy), "logprobs": None}],
        "usage": openai_usage(outcome.completion.usage),
        "system_fingerprint": None,
    }


def assistant_message(completion: Completion, legacy: bool = False) -> dict:
    """The answer as OpenAI's assistant message: content null when there are only tool calls (as OpenAI
    sends it); `function_call` for a request that used the legacy `functions`."""
    message: dict = {"role": "assistant", "content": completion.text or (None if completion.tool_calls else "")}
    if completion.tool_calls and legacy:
        call = completion.tool_calls[0]
        message["function_call"] = {"name": call.name, "arguments": call.arguments}
    elif completion.tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name,
                                                                              "arguments": c.arguments}}
                                 for c in completion.tool_calls]
    return message


def finish_reason(completion: Completion, legacy: bool = False) -> str:
    return "function_call" if legacy and completion.finish_reason == "tool_calls" else completion.finish_reason


class OpenAIFramer:
    """chat.completion.chunk events: role first, content pieces and tool-call pieces (indexed; id, type and
    name on a call's first), finish_reason, usage if asked, [DONE]."""

    def __init__(self, completion_id: str, include_usage: bool, legacy: bool = False):
        self.id, self.include_usage, self.created = completion_id, include_usage, int(time.time())
        self.legacy = legacy

    def _chunk(self, live: LiveStream, delta: dict, finish: str | None = None) -> str:
        data = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": live.model.name,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            data["usage"] = None
        return event(data)

    def start(self, live: LiveStream) -> str:
        # A checked answer of tool calls only starts as OpenAI's do: content null, not "".
        known = live.outcome.completion if live.outcome is not None else None
        calls_only = known is not None and known.tool_calls and not known.text
        return self._chunk(live, {"role": "assistant", "content": None if calls_only else ""})

    def delta(self, live: LiveStream, delta: StreamDelta) -> str:
        if not delta.tool_calls:
            return self._chunk(live, {"content": delta.text})
        out = self._chunk(live, {"content": delta.text}) if delta.text else ""
        if self.legacy:
            piece = delta.tool_calls[0]
            fn = {"arguments": piece.arguments} | ({"name": piece.name} if piece.name else {})
            return out + self._chunk(live, {"function_call": fn})
        calls = []
        for piece in delta.tool_calls:
            call: dict = {"index": piece.index}
            if piece.id:
                call |= {"id": piece.id, "type": "function"}
            call["function"] = ({"name": piece.name} if piece.name else {}) | {"arguments": piece.arguments}
            calls.append(call)
        return out + self._chunk(live, {"tool_calls": calls})

    def done(self, live: LiveStream, outcome: Outcome) -> str:
        out = self._chunk(live, {}, finish_reason(outcome.completion, self.legacy))
        if self.include_usage:
            out += event({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                          "model": live.model.name, "system_fingerprint": None, "choices": [],
                          "usage": openai_usage(outcome.completion.usage)})
        return out + event("[DONE]")

    def error(self, live: LiveStream, exc: StreamInterrupted) -> str:
        # No [DONE] after this: OpenAI SDKs raise on an `error` chunk, so the truncation cannot go unnoticed.
        return event({"error": {"message": f"the upstream failed mid-answer ({exc.error.kind}); the text so far "
                                           "is incomplete", "type": "server_error", "param": None,
                                "code": "stream_interrupted"}})


def _created(svc: GatewayService) -> int:
    """A stable `created` for every listed model: the catalog's price date (the models' config date)."""
    try:
        return int(datetime.fromisoformat(svc.settings.catalog.prices_as_of).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return 0


def _model_list(svc: GatewayService) -> list[dict]:
    created = _created(svc)
    catalog = svc.settings.catalog
    entries = [{"id": "auto", "object": "model", "created": created, "owned_by": OWNER}]
    entries += [{"id": t.name, "object": "model", "created": created, "owned_by": OWNER} for t in catalog.tiers]
    entries += [{"id": m.name, "object": "model", "created": created, "owned_by": m.backend} for m in catalog.models]
    entries += [{"id": m.name, "object": "model", "created": created, "owned_by": m.backend, "kind": "embedding"}
                for m in catalog.embedding_models]
    return entries


@bp.get("/models")
def list_models():
    return jsonify({"object": "list", "data": _model_list(_service())})


@bp.get("/models/<path:model_id>")
def get_model(model_id: str):
    for entry in _model_list(_service()):
        if entry["id"] == model_id:
            return jsonify(entry)
    raise UnknownModel(f"The model '{model_id}' does not exist", param="model")
