"""The OpenAI Responses surface, POST /v1/responses: n8n's OpenAI Chat Model node (its default from node
version 1.3), the openai SDK's `responses.create` / `responses.stream` / `responses.parse`, LangChain's
`use_responses_api`. A fourth skin over the same ChatRequest -> Outcome path.

The response carries every field the SDK's models mark as required (and `annotations: []`, without which
LangChain-JS throws). Streamed, events come in the order the SDK's stream helper needs, each with `type`
and a `sequence_number`: response.created, response.in_progress, then per output item output_item.added,
content_part.added / output_text.delta... / output_text.done / content_part.done (a message), or
function_call_arguments.delta / .done (a call, `arguments: ""` when added), output_item.done; then
response.completed (or response.incomplete at max_output_tokens). A failure mid-answer sends an `error`
event (with a top-level `error`, on which every client raises) and response.failed.
"""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g, jsonify

from ..chat import ChatRequest, Completion, Outcome, StreamDelta
from ..dispatch import LiveStream, StreamInterrupted
from ..service import GatewayService
from . import responses_parse as parse
from .render import gateway_headers
from .sse import event, start_stream
from .validate import build_request, cache_policy, json_object, typed

bp = Blueprint("responses", __name__, url_prefix="/v1")


def _service() -> GatewayService:
    return current_app.extensions["gateway"]


def _parse(body: dict, svc: GatewayService) -> ChatRequest:
    parse.refuse_stored(body)
    instructions = typed(body, "instructions", str, "a string")
    typed(body, "store", bool, "true or false")  # accepted; nothing is stored either way
    return build_request(
        svc.settings, parse.messages(body, svc.settings.max_image_bytes),
        model=typed(body, "model", str, "a string: 'auto', a tier or a model name"),
        strategy=typed(body, "strategy", str, "a string"), system=instructions,
        max_tokens=typed(body, "max_output_tokens", int, "an integer"), max_tokens_name="max_output_tokens",
        temperature=typed(body, "temperature", (int, float), "a number"), stop=(), dry_run=False,
        stream=typed(body, "stream", bool, "true or false") or False,
        request_id=g.request_id, api_key_id=g.api_key_id, structured_fields=parse.structured_fields(body))


@bp.post("/responses")
def responses():
    svc = _service()
    body = json_object()
    req = _parse(body, svc)
    decision = g.decision = svc.decide(req)
    svc.admit(req)
    policy = cache_policy()
    shell = Shell(req, body)
    if req.stream:
        return start_stream(svc, req, decision, policy, ResponsesFramer(shell))
    outcome: Outcome = svc.complete(req, decision, policy)
    g.outcome = outcome
    resp = jsonify(shell.response(outcome.model, outcome.completion, shell.output(outcome.completion)))
    resp.headers.extend(gateway_headers(decision, outcome.model, outcome.backend, outcome.tier,
                                        len(outcome.attempts), outcome.cost, outcome.cached, outcome.reason))
    return resp


class Shell:
    """The response object around the output: the request's settings echoed, ids from the request id."""

    def __init__(self, req: ChatRequest, body: dict):
        self.id, self.created = f"resp_{req.request_id}", int(time.time())
        self.body, self.req = body, req

    def output(self, completion: Completion) -> list[dict]:
        items: list[dict] = []
        if completion.text or not completion.tool_calls:
            items.append(self.message_item(completion.text, "completed"))
        items += [self.call_item(n, c.id, c.name, c.arguments, "completed")
                  for n, c in enumerate(completion.tool_calls)]
        return items

    def message_item(self, text: str, status: str) -> dict:
        return {"id": f"msg_{self.req.request_id}", "type": "message", "role": "assistant", "status": status,
                "content": [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []}

    def call_item(self, n: int, call_id: str, name: str, arguments: str, status: str) -> dict:
        return {"id": f"fc_{self.req.request_id}_{n}", "type": "function_call", "call_id": call_id, "name": name,
                "arguments": arguments, "status": status}

    def response(self, model: str, completion: Completion | None, output: list[dict], status: str | None = None,
                 error: dict | None = None) -> dict:
        b = self.body
        incomplete = completion is not None and completion.finish_reason == "length"
        status = status or ("incomplete" if incomplete else "completed")
        usage = None
        if completion is not None:
            u = completion.usage
            usage = {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                     "total_tokens": u.input_tokens + u.output_tokens,
                     "input_tokens_details": {"cached_tokens": u.cache_read_tokens,
                                              "cache_write_tokens": u.cache_write_tokens + u.cache_write_1h_tokens},
                     "output_tokens_details": {"reasoning_tokens": 0}}
        fmt = (b.get("text") or {}).get("format") if isinstance(b.get("text"), dict) else None
        return {"id": self.id, "object": "response", "created_at": self.created, "model": model, "status": status,
                "error": error, "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
                "instructions": b.get("instructions"), "max_output_tokens": b.get("max_output_tokens"),
                "output": output, "parallel_tool_calls": self.req.parallel_tool_calls is not False,
                "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools") or [],
                "text": {"format": fmt or {"type": "text"}}, "temperature": b.get("temperature"),
                "top_p": b.get("top_p"), "truncation": "disabled", "previous_response_id": None,
                "reasoning": None, "store": False, "metadata": b.get("metadata") or {}, "usage": usage}


class ResponsesFramer:
    """The Responses API's typed events, numbered; a message item and function_call items as they come."""

    def __init__(self, shell: Shell):
        self.shell = shell
        self.seq = 0
        self.items: list[dict] = []        # output items so far (done ones complete)
        self.open: dict | None = None      # the item being streamed
        self.text: list[str] = []
        self.args: list[str] = []

    def _send(self, name: str, data: dict) -> str:
        out = event({"type": name, "sequence_number": self.seq, **data}, name)
        self.seq += 1
        return out

    def start(self, live: LiveStream) -> str:
        shell = self.shell.response(live.model.name, None, [], "in_progress")
        return self._send("response.created", {"response": shell}) + self._send("response.in_progress",
                                                                                {"response": shell})

    def _close(self) -> str:
        item = self.open
        if item is None:
            return ""
        self.open = None
        index = len(self.items)
        if item["type"] == "message":
            text = "".join(self.text)
            part = {"type": "output_text", "text": text, "annotations": []}
            done = {**item, "status": "completed", "content": [part]}
            out = self._send("response.output_text.done", {"item_id": item["id"], "output_index": index,
                                                            "content_index": 0, "text": text, "logprobs": []})
            out += self._send("response.content_part.done", {"item_id": item["id"], "output_index": index,
                                                              "content_index": 0, "part": part})
        else:
            done = {**item, "status": "completed", "arguments": "".join(self.args)}
            out = self._send("response.function_call_arguments.done", {
                "item_id": item["id"], "output_index": index, "name": item["name"], "arguments": done["arguments"]})
        self.items.append(done)
        return out + self._send("response.output_item.done", {"output_index": index, "item": done})

    def delta(self, live: LiveStream, delta: StreamDelta) -> str:
        out = ""
        if delta.text:
            if self.open is None or self.open["type"] != "message":
                out += self._close()
                self.open, self.text = self.shell.message_item("", "in_progress"), []
                index = len(self.items)
                out += self._send("response.output_item.added", {"output_index": index, "item": self.open})
                out += self._send("response.content_part.added", {
                    "item_id": self.open["id"], "output_index": index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}})
            self.text.append(delta.text)
            out += self._send("response.output_text.delta", {"item_id": self.open["id"], "output_index": len(
                self.items), "content_index": 0, "delta": delta.text, "logprobs": []})
        for piece in delta.tool_calls or ():
            if piece.id:
                out += self._close()
                self.open = self.shell.call_item(len(self.items), piece.id, piece.name or "", "", "in_progress")
                self.args = []
                out += self._send("response.output_item.added", {"output_index": len(self.items), "item": self.open})
            if piece.arguments and self.open is not None:
                self.args.append(piece.arguments)
                out += self._send("response.function_call_arguments.delta", {
                    "item_id": self.open["id"], "output_index": len(self.items), "delta": piece.arguments})
        return out

    def done(self, live: LiveStream, outcome: Outcome) -> str:
        out = self._close()
        if not self.items:  # nothing streamed: an empty answer is still a message item
            empty = self.shell.message_item("", "completed")
            out += self._send("response.output_item.added", {"output_index": 0, "item": {
                **empty, "status": "in_progress", "content": []}})
            out += self._send("response.output_item.done", {"output_index": 0, "item": empty})
            self.items.append(empty)
        final = self.shell.response(outcome.model, outcome.completion, self.items)
        name = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return out + self._send(name, {"response": final})

    def error(self, live: LiveStream, exc: StreamInterrupted) -> str:
        message = f"the upstream failed mid-answer ({exc.error.kind}); the output so far is incomplete"
        error = {"type": "server_error", "code": "stream_interrupted", "message": message}
        failed = self.shell.response(live.model.name, None, self.items, "failed",
                                     {"code": "stream_interrupted", "message": message})
        return self._send("error", {"code": "stream_interrupted", "message": message, "param": None, "error": error}) \
            + self._send("response.failed", {"response": failed})
