"""Claude through the official anthropic SDK (Messages API, SSE streaming).

The SDK's own retries are off (max_retries=0): dispatch retries with a bounded backoff so every try
is recorded as an attempt and a long retry-after turns into a fallback instead of a wait.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx2  # the SDK's HTTP client; a stream cut mid-body surfaces as its error, unwrapped

from ..billing import Meter
from ..catalog import ModelSpec
from ..chat import ChatRequest, StreamDelta, Usage
from ..config import BackendSettings
from .base import Backend, BackendError, BackendHealth, retry_after_seconds, status_kind, upstream_error

DEFAULT_URL = "https://api.anthropic.com"
# Transport failures before the request went out: nothing was worked on, nothing billed.
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.ProxyError, httpx2.UnsupportedProtocol)
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
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

    def stream(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False,
               meter: Meter | None = None) -> Iterator[StreamDelta]:
        """Streamed for whole answers too (as Anthropic advises for long requests). The Messages API has no
        log-probabilities: `logprobs` is ignored."""
        meter = Meter() if meter is None else meter
        meter.streamed = True
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
                        # The exact input count comes first: a call cut after this is charged it.
                        meter.input_tokens = _tokens(event.message.usage.input_tokens)
                    elif kind == "content_block_delta" and event.delta.type == "text_delta":
                        meter.received(event.delta.text)
                        yield StreamDelta(event.delta.text)
                    elif kind == "message_delta":
                        # output_tokens here is cumulative, not an increment; a later event may repeat
                        # or omit it
                        reported = _tokens(getattr(event.usage, "output_tokens", None))
                        if reported is not None:
                            meter.output_tokens = max(reported, meter.output_tokens or 0)
                        finish = _FINISH.get(event.delta.stop_reason or "", finish)
                    elif kind == "message_stop":
                        usage = Usage(meter.input_tokens if meter.input_tokens is not None
                                      else request.input_tokens_estimate,
                                      meter.output_tokens if meter.output_tokens is not None
                                      else meter.output_received)
                        yield StreamDelta("", usage, finish)
                        return
            finally:
                events.close()
        raise BackendError("connection", "anthropic: stream ended before message_stop", billable=True)

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


def _tokens(value: object) -> int | None:
    """A token count the API reported, or None when it is absent or not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
