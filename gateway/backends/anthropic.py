"""Claude through the official anthropic SDK (Messages API, SSE streaming).

The SDK's own retries are off (max_retries=0): dispatch retries with a bounded backoff so every try
is recorded as an attempt and a long retry-after turns into a fallback instead of a wait.

Tools, JSON and images: tools as `input_schema`; tool_choice auto/any/tool/none with
`disable_parallel_tool_use` for parallel_tool_calls=false; assistant calls as `tool_use` blocks (object
input), tool results merged into the next user message, results first in call order, any text after them;
no empty text blocks; images as base64 or url blocks. A JSON schema goes in `output_config.format` on models
that take it (`structured_output: true` in configs/models.yaml), else through one forced tool whose input is
the answer, returned as the text (json_object: the same with an open object schema). Streamed
`input_json_delta` fragments become tool-call pieces (id and name on the first).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import anthropic
import httpx2  # the SDK's HTTP client; a stream cut mid-body surfaces as its error, unwrapped

from ..billing import Meter
from ..catalog import ModelSpec
from ..chat import ChatRequest, Completion, Message, StreamDelta, ToolCall, ToolCallDelta, Usage, object_schema
from ..config import BackendSettings
from .base import Backend, BackendError, BackendHealth, retry_after_seconds, status_kind, upstream_error
from .prompt_cache import control, mark

DEFAULT_URL = "https://api.anthropic.com"
# Transport failures before the request went out: nothing was worked on, nothing billed.
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.ProxyError, httpx2.UnsupportedProtocol)
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")  # what Anthropic takes in a tool_use id
_OPEN_OBJECT = {"type": "object", "additionalProperties": True}
_ERROR_TYPES = {"overloaded_error": "overloaded", "rate_limit_error": "rate_limited", "api_error": "server_error",
                "authentication_error": "auth", "permission_error": "auth", "not_found_error": "model_not_found",
                "invalid_request_error": "bad_request", "request_too_large": "bad_request"}


class AnthropicBackend(Backend):
    name = "anthropic"

    def __init__(self, settings: BackendSettings):
        self.settings = settings
        self.timeout = settings.timeout
        self.client = anthropic.Anthropic(
            api_key=settings.api_key,
            base_url=settings.url or DEFAULT_URL,
            timeout=anthropic.Timeout(settings.timeout, connect=settings.connect_timeout),
            max_retries=0,
        )

    def _params(self, model: ModelSpec, request: ChatRequest, max_tokens: int) -> dict:
        # Anthropic takes the system prompt apart and only user/assistant turns in messages.
        system = [request.system] if request.system else []
        system += [m.content for m in request.messages if m.role == "system"]
        params: dict = {
            "model": model.id,
            "max_tokens": max_tokens,
            "messages": _turns(request.messages),
        }
        if system:
            params["system"] = "\n\n".join(system)
        _structured(params, model, request)
        mark(params, model, request, self.settings.prompt_caching)
        if request.passthrough:  # the Messages surface's Claude-only fields and anthropic-* headers, as they came
            params["extra_body"] = {**params.get("extra_body", {}), **request.passthrough.get("body", {})}
            if request.passthrough.get("headers"):
                params["extra_headers"] = dict(request.passthrough["headers"])
        if request.temperature is not None and model.sampling_params:
            # SDK 2.x dropped the argument (Claude 5 models reject sampling parameters); older models
            # still take it in the body.
            params["extra_body"] = {"temperature": request.temperature}
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        return params

    def stream(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False,
               meter: Meter | None = None) -> Iterator[StreamDelta]:
        """Streamed for whole answers too (as Anthropic advises for long requests). The Messages API has no
        log-probabilities: `logprobs` is ignored."""
        meter = Meter() if meter is None else meter
        meter.streamed = True
        finish = "stop"
        params = self._params(model, request, max_tokens)
        answer_tool = params.pop("answer_tool", None)  # the forced tool whose input is the JSON answer
        blocks: dict[int, int | None] = {}  # content block index -> tool-call index (None: the answer tool)
        with _translate():
            events = self.client.messages.create(**params, stream=True)
            if "event-stream" not in events.response.headers.get("content-type", ""):
                events.close()
                raise BackendError("malformed", "anthropic: expected an event stream, got "
                                   f"{events.response.headers.get('content-type')!r}")
            try:
                for event in events:
                    kind = event.type
                    if kind == "message_start":
                        # The exact input count comes first: a call cut after this is charged it.
                        _input_usage(meter, event.message.usage)
                    elif kind == "content_block_delta" and event.delta.type == "text_delta":
                        meter.received(event.delta.text)
                        yield StreamDelta(event.delta.text)
                    elif kind == "content_block_start" and event.content_block.type == "tool_use":
                        block = event.content_block
                        if block.name == answer_tool:
                            blocks[event.index] = None
                            continue
                        blocks[event.index] = n = sum(1 for v in blocks.values() if v is not None)
                        yield StreamDelta(tool_calls=(ToolCallDelta(n, block.id, block.name, ""),))
                    elif kind == "content_block_delta" and event.delta.type == "input_json_delta":
                        piece = event.delta.partial_json
                        meter.received(piece)
                        n = blocks.get(event.index)
                        if n is None:  # the answer tool's input is the answer's text
                            yield StreamDelta(piece)
                        elif piece:
                            yield StreamDelta(tool_calls=(ToolCallDelta(n, arguments=piece),))
                    elif kind == "message_delta":
                        # output_tokens here is cumulative, not an increment; a later event may repeat
                        # or omit it
                        reported = _tokens(getattr(event.usage, "output_tokens", None))
                        if reported is not None:
                            meter.output_tokens = max(reported, meter.output_tokens or 0)
                        finish = _FINISH.get(event.delta.stop_reason or "", finish)
                        if finish == "tool_calls" and not any(v is not None for v in blocks.values()):
                            finish = "stop"  # only the answer tool was called: a JSON answer
                    elif kind == "message_stop":
                        usage = Usage(meter.input_tokens if meter.input_tokens is not None
                                      else request.input_tokens_estimate,
                                      meter.output_tokens if meter.output_tokens is not None
                                      else meter.output_received, *meter.cache)
                        yield StreamDelta("", usage, finish)
                        return
            finally:
                events.close()
        raise BackendError("connection", "anthropic: stream ended before message_stop", billable=True)

    def count_tokens(self, model: ModelSpec, request: ChatRequest) -> int:
        """Anthropic's own count of the request's input tokens (POST /v1/messages/count_tokens)."""
        params = self._params(model, request, 1)
        params.pop("answer_tool", None)
        for unused in ("max_tokens", "stop_sequences", "extra_body"):
            params.pop(unused, None)
        with _translate():
            counted = self.client.messages.count_tokens(**params)
        return int(counted.input_tokens)

    # ------------------------------------------------------------------ Message Batches (half price)
    def batch_request(self, custom_id: str, model: ModelSpec, request: ChatRequest, max_tokens: int
                      ) -> tuple[dict, str | None]:
        """One request of a Message Batch, and the forced answer tool's name (a JSON answer) if any. What the
        SDK sends as extra body goes in the params; per-request headers have no place in a batch."""
        params = self._params(model, request, max_tokens)
        answer_tool = params.pop("answer_tool", None)
        params.update(params.pop("extra_body", {}))
        params.pop("extra_headers", None)
        return {"custom_id": custom_id, "params": params}, answer_tool

    def submit_batch(self, requests: list[dict]) -> str:
        with _translate():
            return self.client.messages.batches.create(requests=requests).id

    def batch_ended(self, batch_id: str) -> bool:
        with _translate():
            return self.client.messages.batches.retrieve(batch_id).processing_status == "ended"

    def cancel_batch(self, batch_id: str) -> None:
        with _translate():
            self.client.messages.batches.cancel(batch_id)

    def batch_results(self, batch_id: str, answer_tools: dict[str, str]) -> Iterator[tuple[str, object]]:
        """(custom_id, a Completion, or a BackendError for a request that errored, was canceled or expired)."""
        with _translate():
            for item in self.client.messages.batches.results(batch_id):
                result = item.result
                if result.type == "succeeded":
                    yield item.custom_id, _completion(result.message, answer_tools.get(item.custom_id))
                    continue
                error = getattr(getattr(result, "error", None), "error", None)
                kind = _ERROR_TYPES.get(getattr(error, "type", ""), "server_error")  # canceled, expired: none
                yield item.custom_id, BackendError(kind, f"anthropic batch: request {result.type}" + (
                    f": {str(getattr(error, 'message', ''))[:200]}" if error is not None else ""), billable=False)

    def health(self) -> BackendHealth:
        # Readiness must not spend quota or depend on the internet: a configured key is what we check.
        if not self.settings.api_key:
            return BackendHealth(False, "ANTHROPIC_API_KEY not set")
        return BackendHealth(True, "API key configured (not called by health checks)")

    def close(self) -> None:
        self.client.close()


class _translate:
    """Context manager mapping the SDK's exceptions to BackendError kinds."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, BackendError | GeneratorExit):
            return False
        if isinstance(exc, anthropic.APITimeoutError):
            connect = "Connect" in type(exc.__cause__).__name__
            raise BackendError("connect_timeout" if connect else "timeout", "anthropic: timeout") from exc
        if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
            # Refused or unreachable: nothing was sent. Cut later: the request may have been worked on.
            cause = exc if isinstance(exc, httpx2.TransportError) else exc.__cause__
            connect = isinstance(cause, _NOT_SENT)
            raise BackendError("connection", "anthropic: connection failed", billable=not connect) from exc
        if isinstance(exc, anthropic.APIResponseValidationError):
            raise BackendError("malformed", "anthropic: response does not match the API schema",
                               status=exc.status_code) from exc
        if isinstance(exc, anthropic.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            err = body.get("error") if isinstance(body.get("error"), dict) else {}
            status = exc.status_code
            error_type = err.get("type") if isinstance(err.get("type"), str) else None
            # An `error` event inside a 200 stream carries its type in the body, not the status; the upstream
            # had been generating, so it may bill.
            kind = _ERROR_TYPES.get(error_type or "") or (status_kind(status) if status >= 400 else "server_error")
            raise upstream_error("anthropic", kind, status, error_type if error_type in _ERROR_TYPES else None,
                                 retry_after_seconds(exc.response.headers.get("retry-after")),
                                 billable=status < 400,
                                 upstream_message=str(err.get("message") or "")[:300] or None) from exc
        if isinstance(exc, anthropic.APIError | ValueError | KeyError | AttributeError | TypeError):
            raise BackendError("malformed", f"anthropic: unreadable response ({type(exc).__name__})") from exc
        return False


def _id(call_id: str | None) -> str:
    """A tool call id as Anthropic takes it (letters, digits, _ and -): ids from other upstreams mapped the
    same way in the call and in its result."""
    return _ID_CHARS.sub("_", call_id or "call")[:64]


def _image(image) -> dict:
    if image.url:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    return {"type": "image", "source": {"type": "base64", "media_type": image.media_type, "data": image.data}}


def _turns(messages: tuple[Message, ...]) -> list[dict]:
    """user/assistant turns: tool results go in the user turn after the calls, first and in call order;
    consecutive turns of one role are merged (Anthropic requires alternation); no empty text blocks."""
    turns: list[dict] = []
    order: dict[str, int] = {}  # tool call id -> its place in the assistant turn that made it
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": _id(m.tool_call_id), "content": m.content}
            if m.is_error:
                block["is_error"] = True
            if m.cache:
                block["cache_control"] = control(m.cache)
            if turns and turns[-1]["role"] == "user" and turns[-1].get("_results"):
                turns[-1]["content"].insert(turns[-1]["_results"], block)
                turns[-1]["_results"] += 1
                results = turns[-1]["content"][:turns[-1]["_results"]]
                results.sort(key=lambda b: order.get(b["tool_use_id"], 0))
                turns[-1]["content"][:len(results)] = results
            else:
                turns.append({"role": "user", "content": [block], "_results": 1})
            continue
        blocks: list[dict] = [*m.thinking]  # Claude's own thinking, first, as it gave it
        if m.role == "user":
            blocks += [_image(i) for i in m.images]
        if m.content:
            blocks.append({"type": "text", "text": m.content})
        for n, c in enumerate(m.tool_calls):
            order[_id(c.id)] = n
            blocks.append({"type": "tool_use", "id": _id(c.id), "name": c.name, "input": c.parsed or {}})
        if not blocks:
            continue  # an empty turn: Anthropic refuses empty text; its neighbours merge if they share a role
        if m.cache:
            blocks[-1] = {**blocks[-1], "cache_control": control(m.cache)}
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": m.role, "content": blocks})
    for turn in turns:
        turn.pop("_results", None)
        if len(turn["content"]) == 1 and turn["content"][0]["type"] == "text" and \
                "cache_control" not in turn["content"][0]:
            turn["content"] = turn["content"][0]["text"]  # plain text stays a string, as before
    return turns


def _structured(params: dict, model: ModelSpec, request: ChatRequest) -> None:
    """tools, tool_choice and the JSON answer in Anthropic's shape."""
    tools = [{"name": t.name, "description": t.description,
              "input_schema": object_schema(t.parameters)} for t in request.tools]
    choice: dict | None = None
    if request.tools:
        kind = {"required": "any", "none": "none"}.get(request.tool_choice or "auto", "auto")
        choice = {"type": "tool", "name": request.forced_tool} if request.forced_tool else {"type": kind}
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema" and model.structured_output:
        params["extra_body"] = {**params.get("extra_body", {}),
                                "output_config": {"format": {"type": "json_schema", "schema": fmt.schema}}}
    elif fmt is not None:
        # The forced-tool method: one tool whose input is the answer.
        name = fmt.name or "json_response"
        while any(t["name"] == name for t in tools):
            name = "answer_" + name
        tools.append({"name": name, "description": fmt.description or "Give the answer as this JSON object.",
                      "input_schema": fmt.schema if fmt.type == "json_schema" else _OPEN_OBJECT})
        params["answer_tool"] = name
        keep = choice is not None and choice["type"] not in ("auto", "none")
        choice = {"type": "any"} if keep else {"type": "tool", "name": name}
    if tools:
        params["tools"] = tools
    if choice is not None:
        if request.parallel_tool_calls is False and choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
        params["tool_choice"] = choice


def _completion(message, answer_tool: str | None) -> Completion:
    """A whole Message (a batch result) in the internal shape, as stream() would have built it."""
    text, calls = [], []
    for block in message.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use" and block.name == answer_tool:
            text.append(json.dumps(block.input, ensure_ascii=False))
        elif block.type == "tool_use":
            calls.append(ToolCall(block.id, block.name, json.dumps(block.input, ensure_ascii=False)))
    finish = _FINISH.get(message.stop_reason or "", "stop")
    if finish == "tool_calls" and not calls:
        finish = "stop"
    meter = Meter()
    _input_usage(meter, message.usage)
    return Completion("".join(text), Usage(meter.input_tokens or 0, _tokens(message.usage.output_tokens) or 0,
                                           *meter.cache), finish, tool_calls=tuple(calls))


def _input_usage(meter: Meter, usage) -> None:
    """message_start's usage: input_tokens counts only the uncached input; the cache reads and writes (by
    lifetime where the API breaks them down) are the rest of the prompt."""
    uncached = _tokens(usage.input_tokens)
    read = _tokens(getattr(usage, "cache_read_input_tokens", None)) or 0
    written = _tokens(getattr(usage, "cache_creation_input_tokens", None)) or 0
    by_ttl = getattr(usage, "cache_creation", None)
    hour = min(written, _tokens(getattr(by_ttl, "ephemeral_1h_input_tokens", None)) or 0)
    meter.input_tokens = None if uncached is None else uncached + read + written
    meter.cache = (read, written - hour, hour)


def _tokens(value: object) -> int | None:
    """A token count the API reported, or None when it is absent or not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
