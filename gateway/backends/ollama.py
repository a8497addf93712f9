"""Ollama's native API: /api/chat (NDJSON streaming), /api/tags (installed) and /api/ps (warm)."""

from __future__ import annotations

from collections.abc import Iterator

from .. import fastjson
from ..billing import Meter
from ..catalog import ModelSpec
from ..chat import ChatRequest, Completion, StreamDelta, Usage
from ..config import BackendSettings
from .base import Backend, BackendError, BackendHealth, ModelState, http_error, token_logprobs
from .http_pool import HttpPool, Reply

_FINISH = {"stop": "stop", "length": "length"}


class OllamaBackend(Backend):
    name = "ollama"

    def __init__(self, settings: BackendSettings, keep_alive: str = "30m"):
        self.url = settings.url
        self.settings = settings
        self.timeout = settings.timeout
        self.keep_alive = keep_alive
        self.http = HttpPool(self.name, self.url, connect_timeout=settings.connect_timeout,
                             read_timeout=settings.timeout)

    def complete(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False,
                 meter: Meter | None = None) -> Completion:
        """Free (local) models answer in one JSON body: cheap to read. A model priced in the catalog is read
        as a stream, metered token by token (Backend.complete)."""
        if model.paid:
            return super().complete(model, request, max_tokens, logprobs, meter)
        meter = Meter() if meter is None else meter
        reply = self._post(model, self._body(model, request, max_tokens, logprobs, stream=False))
        data = reply.json(total_timeout=self.timeout)
        if "error" in data:
            raise BackendError("server_error", "ollama: error reported in the answer", status=reply.status,
                               billable=True, upstream_message=str(data["error"])[:300])
        message = data.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise BackendError("malformed", "ollama: response has no message.content", status=reply.status)
        meter.received(message["content"])
        usage = _usage(data, request, meter)
        return Completion(message["content"], usage, _FINISH.get(data.get("done_reason"), "stop"),
                          token_logprobs(data.get("logprobs")) if logprobs else None)

    def _body(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool,
              stream: bool = True) -> dict:
        messages = ([{"role": "system", "content": request.system}] if request.system else []) + [
            {"role": m.role, "content": m.content} for m in request.messages
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
        return body

    def _post(self, model: ModelSpec, body: dict) -> Reply:
        reply = self.http.request("POST", "/api/chat", body)
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
        reply = self._post(model, self._body(model, request, max_tokens, logprobs))
        lines = reply.lines()
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
                meter.received(text)
                scored = token_logprobs(data.get("logprobs")) if logprobs and text else None
                if done:
                    usage = _usage(data, request, meter)
                    meter.input_tokens, meter.output_tokens = usage.input_tokens, usage.output_tokens
                    yield StreamDelta(text, usage, _FINISH.get(data.get("done_reason"), "stop"), scored)
                    return
                if text:
                    yield StreamDelta(text, None, None, scored)
            raise BackendError("connection", "ollama: stream ended before its final line", billable=True)
        finally:
            lines.close()

    def health(self) -> BackendHealth:
        wait = min(2.0, self.timeout)  # a health check never waits longer than a chat call would
        try:
            tags = self.http.request("GET", "/api/tags", read_timeout=wait)
            if not tags.ok:
                tags.close()
                return BackendHealth(False, f"HTTP {tags.status} from /api/tags")
            installed = tags.json(total_timeout=wait).get("models") or []
            ps = self.http.request("GET", "/api/ps", read_timeout=wait)
            loaded = (ps.json(total_timeout=wait).get("models") or []) if ps.ok else []
            ps.close()
        except BackendError as exc:
            return BackendHealth(False, exc.message)
        warm = {_base(m.get("name", "")) for m in loaded if isinstance(m, dict)}
        models = {}
        for m in installed:
            if isinstance(m, dict) and m.get("name"):
                models[_base(m["name"])] = ModelState(True, _base(m["name"]) in warm)
        return BackendHealth(True, f"{len(models)} models installed, {len(warm)} loaded", models)

    def close(self) -> None:
        self.http.close()

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
