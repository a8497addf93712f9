"""Executing a Decision: per-backend timeouts, bounded retries with backoff, the fallback chain and
the circuit breakers. Every try is recorded as an Attempt on the Outcome (or on the final error).

Deciding lives in smart_router; this module never changes the plan, it only walks it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator

from .backends import BackendError
from .catalog import ModelSpec
from .chat import Attempt, ChatRequest, Completion, Outcome, StreamDelta
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
        """One complete answer, from the first model in the plan that gives one."""
        start = self.clock()
        model, backend, attempts, completion = self._first_success(
            request, decision, lambda b, m: b.complete(m, request, self.max_tokens(request)))
        return _outcome(request, decision, model, backend, completion, attempts, self.clock() - start)

    def open_stream(self, request: ChatRequest, decision: Decision) -> LiveStream:
        """A stream from the first model in the plan that produces its first piece of text.

        Failures before that point fall back along the plan exactly like execute(): nothing has reached
        the client yet. Once the first piece exists the stream is committed to that model.
        """
        start = self.clock()

        def first_piece(backend, model):
            pieces = backend.stream(model, request, self.max_tokens(request))
            try:
                return next(pieces), pieces
            except StopIteration as exc:
                raise BackendError("malformed", f"{backend.name}: empty stream") from exc
            except BaseException:
                pieces.close()
                raise

        model, backend, attempts, (first, rest) = self._first_success(request, decision, first_piece)
        return LiveStream(self, request, decision, model, backend, attempts, first, rest, start)

    def _first_success(self, request: ChatRequest, decision: Decision, call: Callable):
        """Walk the plan with retries, breakers and the deadline; return the first success of `call`."""
        deadline = self.clock() + self.settings.request_deadline_seconds
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
                    result = call(backend, model)
                except BackendError as exc:
                    last = exc
                    attempts.append(Attempt(model.name, choice.backend, "error", exc.kind, exc.status,
                                            round(self.clock() - t0, 4), exc.message))
                    self.account_failure(exc, choice.backend, model.name)
                    delay = self._retry_delay(exc, retry, choice.backend, deadline)
                    if delay is None:
                        break
                    self.sleep(delay)
                    continue
                breaker.record_success()
                attempts.append(Attempt(model.name, choice.backend, "ok", latency_seconds=round(self.clock() - t0, 4)))
                return model, choice.backend, attempts, result
        raise self._final(last, attempts)

    def _retries(self, backend: str) -> int:
        return getattr(self.settings, backend).max_retries

    def account_failure(self, exc: BackendError, backend: str, model: str) -> None:
        breaker = self.upstreams.breakers[backend]
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


def _outcome(request: ChatRequest, decision: Decision, model: ModelSpec, backend: str, completion: Completion,
             attempts: list[Attempt], latency: float) -> Outcome:
    usage = completion.usage
    return Outcome(request_id=request.request_id, decision=decision, model=model.name, backend=backend,
                   tier=model.tier, completion=completion, cost=round(model.cost(usage.input_tokens,
                                                                                 usage.output_tokens), 8),
                   attempts=attempts, latency_seconds=round(latency, 4))


class StreamInterrupted(Exception):
    """The upstream failed after text had been sent: the stream must end with an explicit error."""

    def __init__(self, error: BackendError):
        super().__init__(error.message)
        self.error = error


class LiveStream:
    """A committed stream: iterate for StreamDeltas; `outcome` is set when the final delta arrives.

    A failure mid-way raises StreamInterrupted (recorded as an attempt, counted by the breaker).
    close() ends the upstream request: the API layer calls it when the client goes away.
    """

    def __init__(self, dispatcher: Dispatcher, request: ChatRequest, decision: Decision, model: ModelSpec,
                 backend: str, attempts: list[Attempt], first: StreamDelta, rest: Iterator[StreamDelta],
                 started: float):
        self.dispatcher, self.request, self.decision = dispatcher, request, decision
        self.model, self.backend, self.attempts = model, backend, attempts
        self._first, self._rest, self._started = first, rest, started
        self.outcome: Outcome | None = None
        self.error: BackendError | None = None
        self.first_token_seconds = round(dispatcher.clock() - started, 4)

    def __iter__(self) -> Iterator[StreamDelta]:
        text: list[str] = []
        delta = self._first
        clock = self.dispatcher.clock
        try:
            while True:
                text.append(delta.text)
                if delta.usage is not None:
                    completion = Completion("".join(text), delta.usage, delta.finish_reason or "stop")
                    self.outcome = _outcome(self.request, self.decision, self.model, self.backend, completion,
                                            self.attempts, clock() - self._started)
                    yield delta
                    return
                yield delta
                delta = next(self._rest)
        except BackendError as exc:
            self.error = exc
            self.attempts.append(Attempt(self.model.name, self.backend, "error", exc.kind, exc.status,
                                         round(clock() - self._started, 4), f"after text was sent: {exc.message}"))
            self.dispatcher.account_failure(exc, self.backend, self.model.name)
            raise StreamInterrupted(exc) from exc
        finally:
            self.close()

    def close(self) -> None:
        self._rest.close()  # closes the upstream response: no orphaned generation
