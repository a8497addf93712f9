"""The interface every upstream implements, and the one error type they raise.

A backend knows its wire protocol and nothing else: no routing, budgets or Flask. It raises
BackendError with a `kind` that dispatch uses to decide between retry, fallback and the final status.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import requests

from ..catalog import ModelSpec
from ..chat import ChatRequest, Completion, StreamDelta

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
    def complete(self, model: ModelSpec, request: ChatRequest, max_tokens: int) -> Completion:
        """One answer, with usage from the upstream's own token counts."""

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


def http_error(backend: str, resp: requests.Response) -> BackendError:
    """Map a non-2xx response of a JSON HTTP upstream to a BackendError, keeping its message short."""
    message = _error_message(resp.text)
    return BackendError(status_kind(resp.status_code), f"{backend} HTTP {resp.status_code}: {message}",
                        status=resp.status_code, retry_after=retry_after_seconds(resp.headers.get("retry-after")))


def _error_message(body: str) -> str:
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            err = err.get("message")
        if isinstance(err, str):
            return err[:300]
    return (body or "no body")[:200]


@contextlib.contextmanager
def translate_requests_errors(backend: str):
    """Turn requests' exceptions into BackendError kinds."""
    try:
        yield
    except requests.exceptions.ConnectTimeout as exc:
        raise BackendError("connect_timeout", f"{backend}: connect timeout") from exc
    except requests.exceptions.ReadTimeout as exc:
        raise BackendError("timeout", f"{backend}: no answer within the read timeout") from exc
    except requests.exceptions.ConnectionError as exc:
        # Covers refused connections, DNS failures and resets, including a cut mid-body.
        raise BackendError("connection", f"{backend}: connection failed ({type(exc).__name__})") from exc
    except requests.exceptions.ChunkedEncodingError as exc:
        raise BackendError("connection", f"{backend}: connection cut mid-response") from exc
    except requests.exceptions.RequestException as exc:
        raise BackendError("connection", f"{backend}: request failed ({type(exc).__name__})") from exc


MAX_BODY_BYTES = 32 * 2**20  # an answer larger than this is not an answer


def json_body(backend: str, resp: requests.Response, total_timeout: float | None = None) -> dict:
    """The response's JSON object. With `total_timeout` (a response opened with stream=True) the body is
    read in pieces against that many seconds and MAX_BODY_BYTES: an upstream that never stops sending
    cannot hold the request past its timeout."""
    if "json" not in resp.headers.get("content-type", ""):
        resp.close()
        raise BackendError("malformed", f"{backend}: expected JSON, got {resp.headers.get('content-type')!r}",
                           status=resp.status_code)
    if total_timeout is not None:
        _read_bounded(backend, resp, total_timeout)
    try:
        data = resp.json()
    except ValueError as exc:
        raise BackendError("malformed", f"{backend}: response is not valid JSON", status=resp.status_code) from exc
    if not isinstance(data, dict):
        raise BackendError("malformed", f"{backend}: response is not a JSON object", status=resp.status_code)
    return data


def _read_bounded(backend: str, resp: requests.Response, seconds: float) -> None:
    deadline, size, parts = time.monotonic() + seconds, 0, []
    with translate_requests_errors(backend):
        try:
            for part in resp.iter_content(65536):
                parts.append(part)
                size += len(part)
                if size > MAX_BODY_BYTES:
                    raise BackendError("malformed", f"{backend}: response larger than {MAX_BODY_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise BackendError("timeout", f"{backend}: response still arriving after {seconds:.0f} s")
        finally:
            resp.close()
    resp._content = b"".join(parts)  # requests' own cache of the body, so resp.json() reads it


def new_session(base_url: str, pool_size: int = 128) -> requests.Session:
    """A pooled session: gthread workers share it, one connection per concurrent call.

    Proxy and CA settings are read from the environment once, here: requests would otherwise re-read the
    environment (proxies, NO_PROXY, netrc) on every call, about a third of the gateway's own CPU per request."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(base_url)
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
