"""The one error type every backend raises, and what each of its kinds means to dispatch.

Its own module so that the HTTP pool (http_pool.py) and the backend interface (base.py) both import it
without importing each other.
"""

from __future__ import annotations

# kind -> (retry on the same backend?, counts against its circuit breaker?, may the upstream have billed?)
# The last is the default: a connection cut after the request went out, or an error inside a 200 stream,
# says billable=True where it is raised (gateway/billing.py charges it).
KINDS = {
    "connection": (True, True, False),       # refused, reset, DNS failure
    "connect_timeout": (True, True, False),
    "timeout": (False, True, True),          # no answer within the read timeout: retrying doubles the wait
    "rate_limited": (True, False, False),    # 429: the upstream is fine, we are asking too often
    "overloaded": (True, True, False),       # 529 / 503
    "server_error": (True, True, False),     # other 5xx, or an error reported inside a 200 stream
    "malformed": (False, True, True),        # a body that is not the protocol
    "auth": (False, True, False),            # 401/403: our key is wrong, every request will fail
    "model_not_found": (False, False, False),  # e.g. Ollama model not pulled
    "bad_request": (False, False, False),    # 400/413/422: this request's fault, not the backend's
}


class BackendError(Exception):
    def __init__(self, kind: str, message: str, *, status: int | None = None, retry_after: float | None = None,
                 billable: bool | None = None, upstream_message: str | None = None):
        assert kind in KINDS, kind
        super().__init__(message)
        self.kind, self.message, self.status, self.retry_after = kind, message, status, retry_after
        self.billable = KINDS[kind][2] if billable is None else billable
        # What the upstream said, for the operator's debug log only: never sent to a client.
        self.upstream_message = upstream_message

    @property
    def retryable(self) -> bool:
        return KINDS[self.kind][0]

    @property
    def counts_for_breaker(self) -> bool:
        return KINDS[self.kind][1]
