"""Claude through the official anthropic SDK (Messages API, SSE streaming).

The SDK's own retries are off (max_retries=0): dispatch retries with a bounded backoff so every try
is recorded as an attempt and a long retry-after turns into a fallback instead of a wait.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx2  # the SDK's HTTP client; a stream cut mid-body surfaces as its error, unwrapped

from ..catalog import ModelSpec
from ..chat import ChatRequest, Completion, StreamDelta, Usage
from ..config import BackendSettings
from .base import Backend, BackendError, BackendHealth, retry_after_seconds, status_kind

DEFAULT_URL = "https://api.anthropic.com"
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
_ERROR_TYPES = {"overloaded_error": "overloaded", "rate_limit_error": "rate_limited", "api_error": "server_error",
                "authentication_error": "auth", "permission_error": "auth", "not_found_error": "model_not_found",
                "invalid_request_error": "bad_request", "request_too_large": "bad_request"}


class AnthropicBackend(Backend):
    name = "anthropic"

    def __init__(self, settings: BackendSettings):
        self.settings = settings
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
            "max_tokens": min(max_tokens, model.max_output_tokens or max_tokens),
            "messages": [{"role": m.role, "content": m.content} for m in request.messages if m.role != "system"],
        }
        if system:
            params["system"] = "\n\n".join(system)
        if request.temperature is not None and model.sampling_params:
            # SDK 2.x dropped the argument (Claude 5 models reject sampling parameters); older models
            # still take it in the body.
            params["extra_body"] = {"temperature": request.temperature}
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        return params

    def complete(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False) -> Completion:
        """Streamed underneath (as Anthropic advises for long requests), so the whole answer is bounded by
        the timeout even if the upstream never stops sending. The Messages API has no log-probabilities."""
        deadline = time.monotonic() + self.settings.timeout
        pieces = self.stream(model, request, max_tokens)
        text: list[str] = []
        try:
            for delta in pieces:
                text.append(delta.text)
                if delta.usage is not None:
                    return Completion("".join(text), delta.usage, delta.finish_reason or "stop")
                if time.monotonic() > deadline:
                    raise BackendError("timeout",
                                       f"anthropic: answer still arriving after {self.settings.timeout:.0f} s")
        finally:
            pieces.close()
        raise BackendError("connection", "anthropic: stream ended before message_stop")

    def stream(self, model: ModelSpec, request: ChatRequest, max_tokens: int) -> Iterator[StreamDelta]:
        input_tokens = output_tokens = 0
        finish = "stop"
        with _translate():
            events = self.client.messages.create(**self._params(model, request, max_tokens), stream=True)
            if "event-stream" not in events.response.headers.get("content-type", ""):
                events.close()
                raise BackendError("malformed", "anthropic: expected an event stream, got "
                                   f"{events.response.headers.get('content-type')!r}")
            try:
                for event in events:
                    kind = event.type
                    if kind == "message_start":
                        input_tokens = int(event.message.usage.input_tokens or 0)
                    elif kind == "content_block_delta" and event.delta.type == "text_delta":
                        yield StreamDelta(event.delta.text)
                    elif kind == "message_delta":
                        # output_tokens here is cumulative, not an increment
                        output_tokens = int(event.usage.output_tokens or output_tokens)
                        finish = _FINISH.get(event.delta.stop_reason or "", finish)
                    elif kind == "message_stop":
                        yield StreamDelta("", Usage(input_tokens, output_tokens), finish)
                        return
            finally:
                events.close()
        raise BackendError("connection", "anthropic: stream ended before message_stop")

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
            raise BackendError("connection", "anthropic: connection failed") from exc
        if isinstance(exc, anthropic.APIResponseValidationError):
            raise BackendError("malformed", "anthropic: response does not match the API schema",
                               status=exc.status_code) from exc
        if isinstance(exc, anthropic.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            err = body.get("error") if isinstance(body.get("error"), dict) else {}
            status = exc.status_code
            # An `error` event inside a 200 stream carries its type in the body, not the status.
            kind = _ERROR_TYPES.get(err.get("type", "")) or (status_kind(status) if status >= 400 else "server_error")
            message = str(err.get("message") or "")[:300] or f"HTTP {status}"
            raise BackendError(kind, f"anthropic HTTP {status}: {message}", status=status,
                               retry_after=retry_after_seconds(exc.response.headers.get("retry-after"))) from exc
        if isinstance(exc, anthropic.APIError | ValueError | KeyError | AttributeError):
            raise BackendError("malformed", f"anthropic: unreadable response ({type(exc).__name__})") from exc
        return False
