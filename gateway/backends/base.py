"""The interface every upstream implements, and the one error type they raise.

A backend knows its wire protocol and nothing else: no routing, budgets or Flask. It raises
BackendError with a `kind` that dispatch uses to decide between retry, fallback and the final status.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ..catalog import ModelSpec
from ..chat import ChatRequest, Completion, StreamDelta

if TYPE_CHECKING:
    from .http_pool import Reply

# kind -> (retry on the same backend?, counts against its circuit breaker?)
KINDS = {
    "connection": (True, True),       # refused, reset, DNS failure
    "connect_timeout": (True, True),
    "timeout": (False, True),         # no answer within the read timeout: retrying doubles the wait
    "rate_limited": (True, False),    # 429: the upstream is fine, we are asking too often
    "overloaded": (True, True),       # 529 / 503
    "server_error": (True, True),     # other 5xx, or an error reported inside a 200 stream
    "malformed": (False, True),       # a body that is not the protocol
    "auth": (False, True),            # 401/403: our key is wrong, every request will fail
    "model_not_found": (False, False),  # e.g. Ollama model not pulled
    "bad_request": (False, False),    # 400/413/422: this request's fault, not the backend's
}


class BackendError(Exception):
    def __init__(self, kind: str, message: str, *, status: int | None = None, retry_after: float | None = None):
        assert kind in KINDS, kind
        super().__init__(message)
        self.kind, self.message, self.status, self.retry_after = kind, message, status, retry_after

    @property
    def retryable(self) -> bool:
        return KINDS[self.kind][0]

    @property
    def counts_for_breaker(self) -> bool:
        return KINDS[self.kind][1]


@dataclass(frozen=True)
class ModelState:
    available: bool            # installed / listed by the upstream
    warm: bool | None = None   # loaded in memory now (Ollama only); None where unknown


@dataclass(frozen=True)
class BackendHealth:
    ok: bool
    detail: str
    models: dict[str, ModelState] = field(default_factory=dict)  # by upstream model id


class Backend(ABC):
    name: ClassVar[str]

    @abstractmethod
    def complete(self, model: ModelSpec, request: ChatRequest, max_tokens: int, logprobs: bool = False) -> Completion:
        """One answer, with usage from the upstream's own token counts; with `logprobs`, the sampled tokens'
        log-probabilities too where the upstream reports them (Completion.logprobs stays None otherwise)."""

    @abstractmethod
    def stream(self, model: ModelSpec, request: ChatRequest, max_tokens: int) -> Iterator[StreamDelta]:
        """Text pieces as they come; the last delta carries usage and finish_reason."""

    @abstractmethod
    def health(self) -> BackendHealth:
        """Cheap reachability check with a short timeout; never raises."""

    def model_state(self, health: BackendHealth, model: ModelSpec) -> ModelState:
        return health.models.get(model.id, ModelState(available=health.ok))

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
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs, treated as "no hint"


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
    """Map a non-2xx reply of a JSON HTTP upstream to a BackendError, keeping its message short."""
    message = _error_message(reply.text())
    return BackendError(status_kind(reply.status), f"{backend} HTTP {reply.status}: {message}",
                        status=reply.status, retry_after=retry_after_seconds(reply.headers.get("retry-after")))


def _error_message(body: str) -> str:
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            err = err.get("message")
        if isinstance(err, str):
            return err[:300]
    return (body or "no body")[:200]
