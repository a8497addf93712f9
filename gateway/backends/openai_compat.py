"""A generic OpenAI-compatible upstream: vLLM, llama.cpp server, LM Studio, OpenAI itself.

OPENAI_COMPAT_URL is the base URL including the version prefix (e.g. http://vllm:8000/v1), as for the
openai SDK's base_url.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import fastjson
from ..catalog import ModelSpec
from ..chat import ChatRequest, Completion, StreamDelta, Usage
from ..config import BackendSettings
from .base import Backend, BackendError, BackendHealth, ModelState, http_error, token_logprobs
from .http_pool import HttpPool, Reply


class OpenAICompatBackend(Backend):
    name = "openai_compat"

    def __init__(self, settings: BackendSettings):
        self.settings = settings
        self.url = settings.url
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.http = HttpPool(self.name, self.url, connect_timeout=settings.connect_timeout,
                             read_timeout=settings.timeout, headers=headers)

    def _post(self, model: ModelSpec, request: ChatRequest, max_tokens: int, stream: bool,
              logprobs: bool = False) -> Reply:
        messages = ([{"role": "system", "content": request.system}] if request.system else []) + [
            {"role": m.role, "content": m.content} for m in request.messages
        ]
        body: dict = {"model": model.id, "messages": messages, "max_tokens": max_tokens, "stream": stream}
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

    def complete(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False) -> Completion:
        data = self._post(model, request, max_tokens, stream=False, logprobs=logprobs).json(
            total_timeout=self.settings.timeout)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError("malformed", "openai_compat: response has no choices[0].message") from exc
        scored = choice.get("logprobs")  # {"content": [{"token", "logprob", "bytes", "top_logprobs"}, ...]} or null
        found = token_logprobs(scored.get("content")) if logprobs and isinstance(scored, dict) else None
        return Completion(text, _usage(data.get("usage"), request), choice.get("finish_reason") or "stop", found)

    def stream(self, model: ModelSpec, request: ChatRequest, max_tokens: int) -> Iterator[StreamDelta]:
        lines = self._post(model, request, max_tokens, stream=True).lines()
        usage: Usage | None = None
        finish = None
        try:
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    yield StreamDelta("", usage or _usage(None, request), finish or "stop")
                    return
                try:
                    chunk = fastjson.loads(payload)
                except ValueError as exc:
                    raise BackendError("malformed", "openai_compat: stream chunk is not JSON") from exc
                if "error" in chunk:
                    raise BackendError("server_error", f"openai_compat: {str(chunk['error'])[:300]}")
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"], request)
                for choice in chunk.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield StreamDelta(text)
            raise BackendError("connection", "openai_compat: stream ended before [DONE]")
        finally:
            lines.close()

    def health(self) -> BackendHealth:
        try:
            reply = self.http.request("GET", "/models", read_timeout=2.0)
            if not reply.ok:
                reply.close()
                return BackendHealth(False, f"HTTP {reply.status} from /models")
            data = reply.json(total_timeout=2.0).get("data") or []
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


def _usage(usage: dict | None, request: ChatRequest) -> Usage:
    if not isinstance(usage, dict):
        return Usage(request.input_tokens_estimate, 0)
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
