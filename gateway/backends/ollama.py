"""Ollama's native API: /api/chat (NDJSON streaming), /api/tags (installed), /api/ps (warm) and /api/show
(what a model can do).

Tools, JSON and images: `tools` as given (Ollama has no tool_choice: a named tool is the only one sent, and
"none" sends none); tool calls come back with object arguments, whole (one NDJSON line each when streamed),
with ids from 0.12.10 on and generated (call_...) before; a tool result goes back as role "tool" with the
`tool_name` of its call; `format` is "json" or the schema, whose keywords Ollama keeps only in part (type,
properties, required, items, enum, anyOf, description, $defs: `additionalProperties`, `format`, `minimum`,
`oneOf`, `default` are dropped, which is why the gateway validates the answer itself); images as raw base64.
`done_reason` stays "stop" after tool calls: it becomes tool_calls here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from .. import fastjson
from ..billing import Meter
from ..breaker import CircuitBreaker
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
from .ollama_hosts import Hold, Host, HostPool

_FINISH = {"stop": "stop", "length": "length"}
# Ollama's capability names (/api/show) and the gateway's; any model takes a JSON schema (`format`).
_CAPABILITIES = {"tools": "tools", "vision": "vision"}


class OllamaBackend(Backend):
    name = "ollama"

    def __init__(self, settings: BackendSettings, keep_alive: str = "30m", urls: tuple[str, ...] = (),
                 breaker: tuple[int, float] = (5, 30.0), health_max_age: float = 10.0, host_policy: str = "smart"):
        """urls: several hosts (OLLAMA_URLS); none: settings.url alone. breaker: each host's (failures,
        cool-down) when there are several (gateway/backends/ollama_hosts.py)."""
        self.url = settings.url
        self.settings = settings
        self.timeout = settings.timeout
        self.keep_alive = keep_alive
        self.pool = HostPool([Host(url, HttpPool(self.name, url, connect_timeout=settings.connect_timeout,
                                                 read_timeout=settings.timeout), CircuitBreaker(*breaker))
                              for url in (urls or (settings.url,))], self._host_health, health_max_age, host_policy)
        self.http = self.pool.hosts[0].http
        self._shown: dict[tuple[str, str], frozenset[str] | None] = {}  # (model, digest) -> /api/show capabilities

    def complete(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False,
                 meter: Meter | None = None) -> Completion:
        """Free (local) models answer in one JSON body: cheap to read. A model priced in the catalog is read
        as a stream, metered token by token (Backend.complete)."""
        if model.paid:
            return super().complete(model, request, max_tokens, logprobs, meter)
        meter = Meter() if meter is None else meter
        hold = Hold(self.pool, _base(model.id))
        try:
            reply = self._post(model, self._body(model, request, max_tokens, logprobs, stream=False), hold)
            data = reply.json(total_timeout=self.timeout)
        finally:
            hold.release()
        if "error" in data:
            raise BackendError("server_error", "ollama: error reported in the answer", status=reply.status,
                               billable=True, upstream_message=str(data["error"])[:300])
        message = data.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise BackendError("malformed", "ollama: response has no message.content", status=reply.status)
        calls = tuple(ToolCall(d.id or new_call_id(), d.name or "", d.arguments)
                      for d in _tool_calls(message["tool_calls"], 0)) if message.get("tool_calls") else ()
        meter.received(message["content"] + "".join(c.arguments for c in calls) if calls else message["content"])
        usage = _usage(data, request, meter)
        finish = "tool_calls" if calls else _FINISH.get(data.get("done_reason"), "stop")
        return Completion(message["content"], usage, finish,
                          token_logprobs(data.get("logprobs")) if logprobs else None, calls)

    def _body(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool,
              stream: bool = True) -> dict:
        messages = ([{"role": "system", "content": request.system}] if request.system else []) + [
            _message(m) for m in request.messages
        ]
        options: dict = {"num_predict": max_tokens}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.stop:
            options["stop"] = list(request.stop)
        body = {"model": model.id, "messages": messages, "stream": stream, "options": options,
                "keep_alive": self.keep_alive}
        if logprobs:
            body["logprobs"] = True  # Ollama 0.12.11+; older versions ignore the field
        tools = [t for t in request.tools if request.forced_tool in (None, t.name)]
        if tools and request.tool_choice != "none":
            body["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description,
                "parameters": object_schema(t.parameters)}} for t in tools]
        fmt = request.response_format
        if fmt is not None:
            body["format"] = fmt.schema if fmt.type == "json_schema" else "json"
        return body

    def _post(self, model: ModelSpec, body: dict, hold: Hold, path: str = "/api/chat") -> Reply:
        reply = self.pool.send(hold, "POST", path, body)
        if reply.status == 404:
            reply.close()
            raise BackendError("model_not_found", f"model {model.id!r} is not installed on Ollama "
                               f"(run: ollama pull {model.id})", status=404)
        if not reply.ok:
            raise http_error(self.name, reply)
        return reply

    def stream(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False,
               meter: Meter | None = None) -> Iterator[StreamDelta]:
        meter = Meter() if meter is None else meter
        meter.streamed = True
        hold = Hold(self.pool, _base(model.id))  # its host's lease lasts as long as the stream
        try:
            reply = self._post(model, self._body(model, request, max_tokens, logprobs), hold)
        except BaseException:
            hold.release()
            raise
        lines = reply.lines()
        calls = 0
        try:
            for line in lines:  # one per token: kept lean
                if not line:
                    continue
                try:
                    data = fastjson.loads(line)
                    done = data["done"]  # every line of /api/chat says whether it is the last
                    text = data["message"]["content"]
                except (ValueError, KeyError, TypeError) as exc:
                    data, done, text = _odd_line(line, exc)
                if type(text) is not str:
                    text = ""
                said = data.get("message") if b"tool_calls" in line else None  # a token line has none: skip
                found = _tool_calls(said.get("tool_calls"), calls) if isinstance(said, dict) else None
                if found:
                    calls += len(found)
                    meter.received("".join(d.arguments for d in found))
                meter.received(text)
                scored = token_logprobs(data.get("logprobs")) if logprobs and text else None
                if done:
                    usage = _usage(data, request, meter)
                    meter.input_tokens, meter.output_tokens = usage.input_tokens, usage.output_tokens
                    finish = "tool_calls" if calls else _FINISH.get(data.get("done_reason"), "stop")
                    yield StreamDelta(text, usage, finish, scored, found)
                    return
                if text or found:
                    yield StreamDelta(text, None, None, scored, found)
            raise BackendError("connection", "ollama: stream ended before its final line", billable=True)
        finally:
            lines.close()
            hold.release()

    def health(self) -> BackendHealth:
        """Every host's; several: up while one is, a model installed (loaded) where any host has it (loaded)."""
        if self.pool.single:
            return self._host_health(self.pool.hosts[0])
        self.pool.refresh(force=True)
        up = [h for h in self.pool.hosts if h.health.ok]
        models: dict[str, ModelState] = {}
        for h in up:
            for name, state in h.health.models.items():
                seen = models.get(name)
                models[name] = state if seen is None or (state.warm and not seen.warm) else seen
        detail = "; ".join(f"{h.url}: {h.health.detail}" for h in self.pool.hosts)
        return BackendHealth(bool(up), f"{len(up)} of {len(self.pool.hosts)} hosts up ({detail})", models)

    def _host_health(self, host: Host) -> BackendHealth:
        wait = min(2.0, self.timeout)  # a health check never waits longer than a chat call would
        try:
            tags = host.http.request("GET", "/api/tags", read_timeout=wait)
            if not tags.ok:
                tags.close()
                return BackendHealth(False, f"HTTP {tags.status} from /api/tags")
            installed = tags.json(total_timeout=wait).get("models") or []
            ps = host.http.request("GET", "/api/ps", read_timeout=wait)
            loaded = (ps.json(total_timeout=wait).get("models") or []) if ps.ok else []
            ps.close()
        except BackendError as exc:
            return BackendHealth(False, exc.message)
        warm = {_base(m.get("name", "")) for m in loaded if isinstance(m, dict)}
        models = {}
        for m in installed:
            if isinstance(m, dict) and m.get("name"):
                reported = m.get("capabilities")  # on /api/tags in recent versions; else /api/show per model
                models[_base(m["name"])] = ModelState(True, _base(m["name"]) in warm, _capabilities(reported),
                                                      str(m.get("digest") or ""))
        return BackendHealth(True, f"{len(models)} models installed, {len(warm)} loaded", models)

    def embed(self, model: ModelSpec, inputs: list[str], dimensions: int | None) -> Embeddings:
        """/api/embed (Ollama 0.2.6+; `dimensions` 0.11.11+): L2-normalised vectors, an input longer than the
        model's context is truncated by Ollama."""
        body: dict = {"model": model.id, "input": inputs, "keep_alive": self.keep_alive}
        if dimensions:
            body["dimensions"] = dimensions
        hold = Hold(self.pool, _base(model.id))
        try:
            data = self._post(model, body, hold, "/api/embed").json(total_timeout=self.timeout)
        finally:
            hold.release()
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list) or len(vectors) != len(inputs) or not all(
                isinstance(v, list) and v for v in vectors):
            raise BackendError("malformed", "ollama: /api/embed answered no vector per input")
        counted = data.get("prompt_eval_count")
        return Embeddings(vectors, counted if _count(counted) else sum(len(t) // 4 + 1 for t in inputs))

    def capabilities(self, health: BackendHealth, model: ModelSpec) -> frozenset[str] | None:
        """What the pulled model can do as Ollama reports it (None: not pulled, or not reported), asked of
        /api/show once per model version."""
        state = health.models.get(_base(model.id)) if health.ok else None
        if state is None:
            return None
        if state.capabilities is not None:
            return state.capabilities
        key = (model.id, state.digest)
        if key not in self._shown:
            try:
                having = next((h for h in self.pool.hosts if _base(model.id) in h.models()), self.pool.hosts[0])
                reply = having.http.request("POST", "/api/show", {"model": model.id},
                                            read_timeout=min(2.0, self.timeout))
                shown = reply.json(total_timeout=2.0) if reply.ok else {}
                if not reply.ok:
                    reply.close()
            except BackendError:
                return None  # asked again at the next health check
            self._shown[key] = _capabilities(shown.get("capabilities") if isinstance(shown, dict) else None)
        return self._shown[key]

    def close(self) -> None:
        self.pool.close()

    def model_state(self, health: BackendHealth, model: ModelSpec) -> ModelState:
        if not health.ok:
            return ModelState(False, None)
        return health.models.get(_base(model.id), ModelState(False, False))


def _odd_line(line: bytes, exc: Exception) -> tuple[dict, bool, str]:
    """A stream line off the common shape: a line without text (data, done, ""), or the error it is: one
    Ollama reported after the 200 status, or not the protocol."""
    try:
        data = fastjson.loads(line)
    except ValueError:
        raise BackendError("malformed", "ollama: stream line is not JSON") from exc
    if isinstance(data, dict) and "error" in data:
        raise BackendError("server_error", "ollama: error reported mid-stream", billable=True,
                           upstream_message=str(data["error"])[:300]) from exc
    if isinstance(data, dict) and "done" in data:  # a line without a message (text)
        return data, bool(data["done"]), ""
    raise BackendError("malformed", "ollama: stream line without 'done'") from exc


def _message(m: Message) -> dict:
    out: dict = {"role": m.role, "content": m.content}
    if m.images:
        out["images"] = [i.data for i in m.images]  # raw base64; URLs never reach Ollama (routing)
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "function": {"name": c.name, "arguments": c.parsed or {}}}
                             for c in m.tool_calls]
    if m.role == "tool":
        out["tool_name"] = m.name           # 0.9.6+
        out["tool_call_id"] = m.tool_call_id  # 0.12.10+; older versions ignore it
    return out


def _tool_calls(raw: object, first: int) -> tuple[ToolCallDelta, ...]:
    """Ollama's whole tool calls ({id?, function: {name, arguments: {...}}}) as call pieces, numbered from
    `first` in the order they came (Ollama's own `function.index` depends on the model's parser)."""
    if not isinstance(raw, list):
        return ()
    out = []
    for call in raw:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BackendError("malformed", "ollama: a tool call without a function name")
        args = fn.get("arguments")
        text = args if isinstance(args, str) else json.dumps(args if args is not None else {}, ensure_ascii=False)
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        out.append(ToolCallDelta(first + len(out), call_id or new_call_id(), fn["name"], text))
    return tuple(out)


def _capabilities(reported: object) -> frozenset[str] | None:
    if not isinstance(reported, list):
        return None  # not reported (older Ollama): unknown, not "none"
    return frozenset(_CAPABILITIES[c] for c in reported if c in _CAPABILITIES) | {"json_schema"}


def _base(tag: str) -> str:
    """'tinyllama:latest' and 'tinyllama' name the same model."""
    return tag[: -len(":latest")] if tag.endswith(":latest") else tag


def _usage(data: dict, request: ChatRequest, meter: Meter) -> Usage:
    # Ollama leaves prompt_eval_count out when the whole prompt came from its cache, and a server may
    # leave eval_count out: the prompt's estimate and the text received stand in, never zero.
    prompt, evals = data.get("prompt_eval_count"), data.get("eval_count")
    return Usage(prompt if _count(prompt) else request.input_tokens_estimate,
                 evals if _count(evals) else meter.output_received)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
