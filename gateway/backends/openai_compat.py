"""A generic OpenAI-compatible upstream: vLLM, llama.cpp server, LM Studio, OpenAI itself.

OPENAI_COMPAT_URL is the base URL including the version prefix (e.g. http://vllm:8000/v1), as for the
openai SDK's base_url. The output limit goes in the field the model takes (`max_tokens_param` in
configs/models.yaml): `max_tokens` by default, `max_completion_tokens` for OpenAI's reasoning models,
which refuse the older name.

Tools, JSON and images pass through in OpenAI's own shapes: tools, tool_choice, parallel_tool_calls,
response_format, image_url parts, assistant tool_calls and tool results; streamed tool-call deltas (indexed,
id and name on a call's first piece, parallel calls interleaved) are read as they come.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import fastjson
from ..billing import Meter
from ..catalog import ModelSpec
from ..chat import (
    ChatRequest,
    Completion,
    Message,
    StreamDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    new_call_id,
    object_schema,
)
from ..config import BackendSettings
from .base import Backend, BackendError, BackendHealth, Embeddings, ModelState, http_error, token_logprobs
from .http_pool import HttpPool, Reply


class OpenAICompatBackend(Backend):
    name = "openai_compat"

    def __init__(self, settings: BackendSettings):
        self.settings = settings
        self.timeout = settings.timeout
        self.url = settings.url
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.http = HttpPool(self.name, self.url, connect_timeout=settings.connect_timeout,
                             read_timeout=settings.timeout, headers=headers)

    def complete(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False,
                 meter: Meter | None = None) -> Completion:
        """A free model (a local vLLM, llama.cpp) answers in one JSON body: cheap to read. A paid one (OpenAI)
        is read as a stream, metered token by token (Backend.complete)."""
        if model.paid:
            return super().complete(model, request, max_tokens, logprobs, meter)
        meter = Meter() if meter is None else meter
        data = self._post(model, request, max_tokens, logprobs, stream=False).json(total_timeout=self.timeout)
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            calls = _calls(choice["message"].get("tool_calls"))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError("malformed", "openai_compat: response has no choices[0].message") from exc
        if not isinstance(text, str):
            raise BackendError("malformed", "openai_compat: choices[0].message.content is not text")
        meter.received(text + "".join(c.arguments for c in calls))
        usage = _usage(data["usage"], request, meter) if isinstance(data.get("usage"), dict) else Usage(
            request.input_tokens_estimate, meter.output_received)
        scored = choice.get("logprobs")  # {"content": [{"token", "logprob", "bytes", "top_logprobs"}, ...]} or null
        found = token_logprobs(scored.get("content")) if logprobs and isinstance(scored, dict) else None
        finish = choice.get("finish_reason") or "stop"
        return Completion(text, usage, "tool_calls" if calls or finish == "function_call" else finish, found, calls)

    def _post(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool,
              stream: bool = True) -> Reply:
        messages = ([{"role": "system", "content": request.system}] if request.system else []) + [
            _message(m) for m in request.messages
        ]
        body: dict = {"model": model.id, "messages": messages, model.max_tokens_param: max_tokens, "stream": stream}
        _structured(body, request)
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.temperature is not None and model.sampling_params:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop"] = list(request.stop)
        if logprobs:
            body["logprobs"] = True
        reply = self.http.request("POST", "/chat/completions", body)
        if not reply.ok:
            raise http_error(self.name, reply)
        return reply

    def stream(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False,
               meter: Meter | None = None) -> Iterator[StreamDelta]:
        meter = Meter() if meter is None else meter
        meter.streamed = True
        lines = self._post(model, request, max_tokens, logprobs).lines()
        usage: Usage | None = None
        finish = None
        try:
            for raw in lines:
                if not raw.startswith(b"data:"):
                    continue
                payload = raw[5:].strip()
                if payload == b"[DONE]":
                    # A server that ignores stream_options sends no usage: the prompt's estimate and the
                    # text received stand in, never zero.
                    yield StreamDelta("", usage or Usage(request.input_tokens_estimate, meter.output_received),
                                      "tool_calls" if finish == "function_call" else finish or "stop")
                    return
                try:
                    chunk = fastjson.loads(payload)
                except ValueError as exc:
                    raise BackendError("malformed", "openai_compat: stream chunk is not JSON") from exc
                if not isinstance(chunk, dict):
                    raise BackendError("malformed", "openai_compat: stream chunk is not a JSON object")
                if "error" in chunk:
                    raise BackendError("server_error", "openai_compat: error reported mid-stream", billable=True,
                                       upstream_message=str(chunk["error"])[:300])
                if isinstance(chunk.get("usage"), dict):
                    usage = _usage(chunk["usage"], request, meter)
                    meter.input_tokens, meter.output_tokens = usage.input_tokens, usage.output_tokens
                for choice in chunk.get("choices") or []:
                    if not isinstance(choice, dict):
                        continue
                    finish = choice.get("finish_reason") or finish
                    delta = choice.get("delta") or {}
                    if delta.get("tool_calls"):
                        pieces = _call_pieces(delta["tool_calls"])
                        meter.received("".join(p.arguments for p in pieces))
                        yield StreamDelta(tool_calls=pieces)
                    text = delta.get("content")
                    if isinstance(text, str) and text:
                        meter.received(text)
                        found = choice.get("logprobs")
                        scored = token_logprobs(found.get("content")) if logprobs and isinstance(found, dict) else None
                        yield StreamDelta(text, logprobs=scored)
            raise BackendError("connection", "openai_compat: stream ended before [DONE]", billable=True)
        finally:
            lines.close()

    def embed(self, model: ModelSpec, inputs: list[str], dimensions: int | None) -> Embeddings:
        """/embeddings, asking for floats (the gateway encodes base64 itself when its client asks)."""
        body: dict = {"model": model.id, "input": inputs, "encoding_format": "float"}
        if dimensions:
            body["dimensions"] = dimensions
        reply = self.http.request("POST", "/embeddings", body)
        if not reply.ok:
            raise http_error(self.name, reply)
        data = reply.json(total_timeout=self.timeout)
        try:
            rows = sorted(data["data"], key=lambda r: r["index"])
            vectors = [r["embedding"] for r in rows]
        except (KeyError, TypeError) as exc:
            raise BackendError("malformed", "openai_compat: /embeddings answered no data[].embedding") from exc
        if len(vectors) != len(inputs) or not all(isinstance(v, list) and v for v in vectors):
            raise BackendError("malformed", "openai_compat: /embeddings answered no vector per input")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        counted = usage.get("prompt_tokens")
        return Embeddings(vectors, counted if _count(counted) else sum(len(t) // 4 + 1 for t in inputs))

    def health(self) -> BackendHealth:
        try:
            wait = min(2.0, self.timeout)  # a health check never waits longer than a chat call would
            reply = self.http.request("GET", "/models", read_timeout=wait)
            if not reply.ok:
                reply.close()
                return BackendHealth(False, f"HTTP {reply.status} from /models")
            data = reply.json(total_timeout=wait).get("data") or []
        except BackendError as exc:
            return BackendHealth(False, exc.message)
        models = {m["id"]: ModelState(True) for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)}
        return BackendHealth(True, f"{len(models)} models listed", models)

    def model_state(self, health: BackendHealth, model: ModelSpec) -> ModelState:
        if not health.ok:
            return ModelState(False)
        return health.models.get(model.id, ModelState(not health.models))

    def close(self) -> None:
        self.http.close()


def _message(m: Message) -> dict:
    out: dict = {"role": m.role, "content": m.content}
    if m.images:
        out["content"] = ([{"type": "text", "text": m.content}] if m.content else []) + [
            {"type": "image_url", "image_url": {"url": i.url or f"data:{i.media_type};base64,{i.data}"}}
            for i in m.images]
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                             for c in m.tool_calls]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
    return out


def _structured(body: dict, request: ChatRequest) -> None:
    if request.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description,
            "parameters": object_schema(t.parameters),
            **({"strict": True} if t.strict else {})}} for t in request.tools]
        if request.forced_tool:
            body["tool_choice"] = {"type": "function", "function": {"name": request.forced_tool}}
        elif request.tool_choice:
            body["tool_choice"] = request.tool_choice
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        spec = {"name": fmt.name, "schema": fmt.schema, "strict": fmt.strict}
        body["response_format"] = {"type": "json_schema", "json_schema": spec | (
            {"description": fmt.description} if fmt.description else {})}
    elif fmt is not None:
        body["response_format"] = {"type": fmt.type}


def _calls(raw: object) -> tuple[ToolCall, ...]:
    if not raw:
        return ()
    if not isinstance(raw, list):
        raise BackendError("malformed", "openai_compat: tool_calls is not a list")
    out = []
    for c in raw:
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BackendError("malformed", "openai_compat: a tool call without a function name")
        args = fn.get("arguments")
        out.append(ToolCall(c.get("id") or new_call_id(), fn["name"], args if isinstance(args, str) else "{}"))
    return tuple(out)


def _call_pieces(raw: object) -> tuple[ToolCallDelta, ...]:
    if not isinstance(raw, list):
        raise BackendError("malformed", "openai_compat: delta.tool_calls is not a list")
    out = []
    for n, c in enumerate(raw):
        if not isinstance(c, dict):
            raise BackendError("malformed", "openai_compat: a tool-call delta is not an object")
        fn = c.get("function") if isinstance(c.get("function"), dict) else {}
        index = c.get("index") if isinstance(c.get("index"), int) else n
        args = fn.get("arguments")
        out.append(ToolCallDelta(index, c.get("id") or None, fn.get("name") or None,
                                 args if isinstance(args, str) else ""))
    return tuple(out)


def _usage(usage: dict, request: ChatRequest, meter: Meter) -> Usage:
    """The counts, with the cached part of the prompt where the server says (prompt_tokens_details)."""
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    prompt = prompt if _count(prompt) else request.input_tokens_estimate
    return Usage(prompt, completion if _count(completion) else meter.output_received,
                 min(cached, prompt) if _count(cached) else 0)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
