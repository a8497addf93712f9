"""Executing a Decision: per-backend timeouts, bounded retries with backoff, the fallback chain and
the circuit breakers. Every try is recorded as an Attempt on the Outcome (or on the final error).

Deciding lives in smart_router; this module never changes the plan, it only walks it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from .backends import BackendError
from .chat import Attempt, ChatRequest, Outcome
from .config import Settings
from .errors import GatewayError, ServiceUnavailable, UpstreamError, UpstreamTimeout
from .smart_router import Decision
from .upstreams import Upstreams

log = logging.getLogger("gateway.dispatch")

# The final status when every attempt failed, by the kind of the last failure.
_FINAL = {
    "timeout": (UpstreamTimeout, "upstream_timeout"),
    "connect_timeout": (UpstreamTimeout, "upstream_timeout"),
    "rate_limited": (ServiceUnavailable, "upstream_rate_limited"),
    "overloaded": (ServiceUnavailable, "upstream_overloaded"),
    "model_not_found": (ServiceUnavailable, "model_not_installed"),
    "connection": (UpstreamError, "upstream_unreachable"),
    "server_error": (UpstreamError, "upstream_error"),
    "malformed": (UpstreamError, "upstream_malformed_response"),
    "auth": (UpstreamError, "upstream_auth_failed"),
    "bad_request": (UpstreamError, "upstream_rejected_request"),
}


class Dispatcher:
    def __init__(self, settings: Settings, upstreams: Upstreams,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.settings, self.upstreams, self.sleep, self.clock = settings, upstreams, sleep, clock
        self.catalog = settings.catalog

    def max_tokens(self, request: ChatRequest) -> int:
        return request.max_tokens or self.catalog.routing.default_max_tokens

    def execute(self, request: ChatRequest, decision: Decision) -> Outcome:
        start = self.clock()
        deadline = start + self.settings.request_deadline_seconds
        attempts: list[Attempt] = []
        last: BackendError | None = None
        for choice in decision.plan:
            model = self.catalog.model(choice.model)
            backend = self.upstreams.backends.get(choice.backend)
            breaker = self.upstreams.breakers.get(choice.backend)
            if model is None or backend is None or breaker is None:
                continue
            for retry in range(self._retries(choice.backend) + 1):
                if self.clock() >= deadline:
                    raise self._final(BackendError("timeout", "request deadline reached"), attempts)
                if not breaker.allow():
                    attempts.append(Attempt(model.name, choice.backend, "skipped", "circuit_open",
                                            detail=f"retry in {breaker.retry_in():.0f}s"))
                    break
                t0 = self.clock()
                try:
                    completion = backend.complete(model, request, self.max_tokens(request))
                except BackendError as exc:
                    last = exc
                    attempts.append(Attempt(model.name, choice.backend, "error", exc.kind, exc.status,
                                            round(self.clock() - t0, 4), exc.message))
                    self._account_failure(exc, breaker, model.name)
                    delay = self._retry_delay(exc, retry, choice.backend, deadline)
                    if delay is None:
                        break
                    self.sleep(delay)
                    continue
                breaker.record_success()
                attempts.append(Attempt(model.name, choice.backend, "ok", latency_seconds=round(self.clock() - t0, 4)))
                return Outcome(
                    request_id=request.request_id, decision=decision, model=model.name, backend=choice.backend,
                    tier=model.tier, completion=completion,
                    cost=round(model.cost(completion.usage.input_tokens, completion.usage.output_tokens), 8),
                    attempts=attempts, latency_seconds=round(self.clock() - start, 4),
                )
        raise self._final(last, attempts)

    def _retries(self, backend: str) -> int:
        return getattr(self.settings, backend).max_retries

    def _account_failure(self, exc: BackendError, breaker, model: str) -> None:
        if exc.kind == "model_not_found":
            self.upstreams.mark_missing(model)
        if exc.counts_for_breaker:
            breaker.record_failure()
        else:
            breaker.release()

    def _retry_delay(self, exc: BackendError, retry: int, backend: str, deadline: float) -> float | None:
        """Seconds to wait before trying the same backend again, or None to move on down the chain."""
        if not exc.retryable or retry >= self._retries(backend):
            return None
        if exc.retry_after is not None:
            if exc.retry_after > self.settings.retry_after_max_seconds:
                return None  # a long wait is worse than the next model in the chain
            delay = exc.retry_after
        else:
            delay = self.settings.retry_backoff_seconds * (2 ** retry) * random.uniform(0.5, 1.0)
        return delay if self.clock() + delay < deadline else None

    def _final(self, last: BackendError | None, attempts: list[Attempt]) -> GatewayError:
        listed = [a.as_dict() for a in attempts]
        if last is None:
            skipped = [a for a in attempts if a.error_type == "circuit_open"]
            retry = max((self.upstreams.breakers[a.backend].retry_in() for a in skipped), default=0)
            headers = {"Retry-After": str(max(1, round(retry)))} if skipped else {}
            return ServiceUnavailable("every candidate backend has its circuit open; try again shortly"
                                      if skipped else "no backend could take the request",
                                      headers=headers, attempts=listed, error_type="circuit_open")
        cls, error_type = _FINAL[last.kind]
        headers = {}
        if last.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(last.retry_after)))
        err = cls(f"all {len(attempts)} attempts failed; last: {last.message}", headers=headers,
                  attempts=listed, error_type=error_type)
        return err
