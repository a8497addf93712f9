"""The interface every upstream implements, and the helpers that turn an upstream's errors into ours.

A backend knows its wire protocol and nothing else: no routing, budgets or Flask. It raises
BackendError (errors.py) with a `kind` that dispatch uses to decide between retry, fallback and the final
status.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ..billing import Meter
from ..catalog import ModelSpec
from ..chat import ChatRequest, Completion, StreamDelta, ToolCallBuilder, new_call_id
from .errors import BackendError

if TYPE_CHECKING:
    from .http_pool import Reply


@dataclass(frozen=True)
class ModelState:
    available: bool            # installed / listed by the upstream
    warm: bool | None = None   # loaded in memory now (Ollama only); None where unknown
    capabilities: frozenset[str] | None = None  # what the upstream says the model can do; None: not said
    digest: str = ""           # the model version (Ollama), to cache what /api/show said about it


@dataclass(frozen=True)
class BackendHealth:
    ok: bool
    detail: str
    models: dict[str, ModelState] = field(default_factory=dict)  # by upstream model id


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    input_tokens: int


class Backend(ABC):
    name: ClassVar[str]
    timeout: float  # seconds a whole answer may take (the backend's *_TIMEOUT)

    def complete(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False,
                 meter: Meter | None = None) -> Completion:
        """One answer, with usage from the upstream's own token counts; with `logprobs`, the sampled tokens'
        log-probabilities too where the upstream reports them for every piece (else Completion.logprobs is
        None).

        This default reads the stream: an upstream that never stops is cut at the timeout, and progress
        stays visible, so a paid call that fails is charged what arrived (gateway/billing.py) and a call
        that times out while tokens were arriving is told apart from one whose upstream never answered
        (dispatch). Backends override it for free models with one JSON answer, which costs a fraction of
        the CPU (a stream is parsed token by token)."""
        meter = Meter() if meter is None else meter
        deadline = time.monotonic() + self.timeout
        pieces = self.stream(model, request, max_tokens, logprobs=logprobs, meter=meter)
        text: list[str] = []
        scored: list[float] | None = [] if logprobs else None
        calls = ToolCallBuilder()
        try:
            for delta in pieces:
                text.append(delta.text)
                if delta.tool_calls:
                    for piece in delta.tool_calls:
                        calls.add(piece)
                if scored is not None and delta.text:
                    scored = None if delta.logprobs is None else scored + list(delta.logprobs)
                if delta.usage is not None:
                    found = tuple(scored) if scored else None
                    return Completion("".join(text), delta.usage, delta.finish_reason or "stop", found,
                                      calls.calls(new_call_id))
                if time.monotonic() > deadline:
                    raise BackendError("timeout", f"{self.name}: answer still arriving after {self.timeout:g} s")
        finally:
            pieces.close()
        raise BackendError("connection", f"{self.name}: stream ended before its final event", billable=True)

    @abstractmethod
    def stream(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False,
               meter: Meter | None = None) -> Iterator[StreamDelta]:
        """Text pieces as they come; the last delta carries usage and finish_reason. Every piece of text goes
        through `meter.received`, and counts the upstream reports into the meter as they arrive."""

    @abstractmethod
    def health(self) -> BackendHealth:
        """Cheap reachability check with a short timeout; never raises."""

    def model_state(self, health: BackendHealth, model: ModelSpec) -> ModelState:
        return health.models.get(model.id, ModelState(available=health.ok))

    def embed(self, model: ModelSpec, inputs: list[str], dimensions: int | None) -> Embeddings:
        """One vector per input, in order, with the input tokens the upstream counted."""
        raise BackendError("bad_request", f"{self.name}: no embeddings")

    def capabilities(self, health: BackendHealth, model: ModelSpec) -> frozenset[str] | None:
        """What the upstream reports the model can do (None: it does not say; configs/models.yaml stands)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def status_kind(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status in (503, 529):
        return "overloaded"
    if status >= 500:
        return "server_error"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "model_not_found"
    return "bad_request"


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds; None for an HTTP date (rare from LLM APIs) or anything that is not a finite
    number ("1e999", "nan"): no hint."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def token_logprobs(entries: object) -> tuple[float, ...] | None:
    """The `logprob` of every entry of a per-token list (Ollama's top-level `logprobs`, OpenAI's
    `choices[0].logprobs.content`). None when it is absent, empty or not that shape: the answer stands,
    only unscored."""
    if not isinstance(entries, list) or not entries:
        return None
    values = tuple(e.get("logprob") if isinstance(e, dict) else None for e in entries)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and v <= 0 for v in values):
        return None
    return values


def http_error(backend: str, reply: Reply) -> BackendError:
    """Map a non-2xx reply of a JSON HTTP upstream to a BackendError. The message names the status and the
    upstream's error type, never its text: that can hold internal paths or parts of the request, and the
    message reaches clients (attempts) and logs."""
    body = reply.text()
    return upstream_error(backend, status_kind(reply.status), reply.status, _error_type(body),
                          retry_after_seconds(reply.headers.get("retry-after")), upstream_message=body[:300])


def upstream_error(backend: str, kind: str, status: int, error_type: str | None = None,
                   retry_after: float | None = None, billable: bool | None = None,
                   upstream_message: str | None = None) -> BackendError:
    """The one shape of an error an upstream reported: "anthropic HTTP 529 (overloaded_error)"."""
    detail = f" ({error_type})" if error_type else ""
    return BackendError(kind, f"{backend} HTTP {status}{detail}", status=status, retry_after=retry_after,
                        billable=billable, upstream_message=upstream_message)


_ERROR_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _error_type(body: str) -> str | None:
    """The machine-readable error type or code of an error body ({"error": {"type"|"code"}}), if it has one
    that looks like an identifier."""
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            for field_ in ("type", "code"):
                value = err.get(field_)
                if isinstance(value, str) and 0 < len(value) <= 64 and set(value) <= _ERROR_TYPE_CHARS:
                    return value
    return None
