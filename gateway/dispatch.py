"""Executing a Decision: per-backend timeouts, bounded retries with backoff, the fallback chain and
the circuit breakers. Every try is recorded as an Attempt on the Outcome (or on the final error).

Deciding lives in smart_router; this module never changes the plan, it only walks it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .answer_check import check, structured
from .backends import BackendError
from .backends.prompt_cache import may_write
from .billing import Meter, charged_usage
from .cascade import mean_logprob, review
from .catalog import ModelSpec
from .chat import Attempt, ChatRequest, Completion, Outcome, StreamDelta, Usage
from .config import Settings
from .errors import (
    BudgetExceeded,
    GatewayError,
    InvalidParameter,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from .smart_router import Decision
from .state import State, StateUnavailable
from .state.budget import UNGUARDED, Reservation
from .upstreams import Upstreams

log = logging.getLogger("gateway.dispatch")

# The final status when every attempt failed, by the kind of the last failure.
_PRIORITY_WAIT = {"high": 0.25, "normal": 1.0, "low": 3.0}
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


@dataclass
class _Success:
    model: ModelSpec
    backend: str
    attempts: list[Attempt]
    result: object
    reservation: Reservation | None
    lease: str
    meter: Meter


# charge(request, model, backend, usage, cost, reservation): record what a failed paid try cost, settling its
# reservation (the service records spend and metrics; see GatewayService.charge).
Charge = Callable[[ChatRequest, ModelSpec, str, Usage, float, Reservation | None], None]


class _Skip(Exception):
    """This model cannot be tried now (budget, paused paid calls); move on down the plan."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class Dispatcher:
    def __init__(self, settings: Settings, upstreams: Upstreams, state: State, charge: Charge | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 refused: Callable[[str], None] | None = None,
                 waited: Callable[[str, float, bool], None] | None = None,
                 queued: Callable[[str, int], None] | None = None):
        self.settings, self.upstreams, self.state = settings, upstreams, state
        self.charge = charge or self._record_charge
        self.refused = refused or (lambda model: None)  # a reservation the budget refused (the metric)
        self.waited = waited or (lambda backend, seconds, got: None)  # a capped backend's slot wait (the metric)
        self.queued = queued or (lambda backend, delta: None)  # requests waiting for a slot now (the metric)
        self.sleep, self.clock = sleep, clock
        self.catalog = settings.catalog
        # PAID_FALLBACK=refuse matters only where a paid model could be called at all
        self._paid_reachable = any(m.paid and m.backend in upstreams.backends for m in self.catalog.models)

    def max_tokens(self, request: ChatRequest, model: ModelSpec) -> int:
        """What a call to `model` is sent with and reserved at: one figure for every backend."""
        return model.output_limit(request.max_tokens or self.catalog.routing.default_max_tokens)

    def execute(self, request: ChatRequest, decision: Decision) -> Outcome:
        """One complete answer, from the first model in the plan that gives one (with the cascade strategy,
        the first local answer that passes the review, else the cloud's)."""
        start = self.clock()
        cascade = decision.strategy == "cascade"
        # A structured answer (tool calls, JSON) is checked whichever model gave it; that check is the
        # cascade's review of it too (the text review reads prose).
        checked = structured(request)
        review = _cascade_review(request, self.catalog.routing.cascade_min_mean_logprob) \
            if cascade and not checked else None
        # The cascade asks local models for their tokens' log-probabilities: its confidence check reads them.
        won = self._first_success(request, decision, lambda b, m, meter: b.complete(
            m, request, self.max_tokens(request, m), logprobs=cascade and not m.paid and not checked, meter=meter),
            review, (lambda c: check(request, c)) if checked else None)
        self.state.concurrency.release(won.backend, won.lease)
        outcome = _outcome(request, decision, won.model, won.backend, won.result, won.attempts, self.clock() - start,
                           self._paid(decision.model))
        outcome.reservation = won.reservation
        return outcome

    def open_stream(self, request: ChatRequest, decision: Decision) -> LiveStream:
        """A stream from the first model in the plan that produces its first piece of text.

        Failures before that point fall back along the plan exactly like execute(): nothing has reached
        the client yet. Once the first piece exists the stream is committed to that model.
        """
        if decision.strategy == "cascade":
            raise InvalidParameter("strategy 'cascade' reviews the whole local answer before sending it: "
                                   "use it without streaming", param="strategy")
        start = self.clock()

        def first_piece(backend, model, meter):
            pieces = backend.stream(model, request, self.max_tokens(request, model), meter=meter)
            try:
                return next(pieces), pieces
            except StopIteration as exc:
                raise BackendError("malformed", f"{backend.name}: empty stream", billable=False) from exc
            except BaseException:
                pieces.close()
                raise

        won = self._first_success(request, decision, first_piece)
        first, rest = won.result
        return LiveStream(self, request, decision, won, first, rest, start,
                          deadline=start + self.settings.request_deadline_seconds)

    def _first_success(self, request: ChatRequest, decision: Decision, call: Callable,
                       review: Callable[[object], tuple[str | None, float | None]] | None = None,
                       checker: Callable[[Completion], tuple[Completion, str | None]] | None = None) -> _Success:
        """Walk the plan with budget, concurrency cap, retries, breakers and the deadline; return the
        first success of `call(backend, model, meter)`. With `review`, a local result it rejects sends the
        rest of the walk to the paid models only; if they all fail, that local result is returned after all.

        With `checker`, an answer it rejects (a structured answer that is not valid) is charged and the walk
        goes on to the next model; the answer a checker passes may be a repaired one.

        Each try reserves its own worst case and is charged what it cost even when it fails
        (gateway/billing.py), so retries and fallbacks cannot spend past the budget."""
        deadline = self.clock() + self.settings.request_deadline_seconds
        attempts: list[Attempt] = []
        last: BackendError | None = None
        invalid: str | None = None         # why the last answer failed the checker, when that was the last failure
        held: _Success | None = None       # a local answer the review rejected: better than nothing
        # PAID_FALLBACK=refuse: a prompt decided for a local model reaches a paid one only to review a local
        # answer (cascade), never because the local call failed (the router already left paid models out
        # of other plans; see smart_router._keep_local).
        refuse = (self._paid_reachable and self.settings.paid_fallback == "refuse" and not decision.explicit
                  and decision.strategy != "local-only" and not self._paid(decision.model))
        for n, choice in enumerate(decision.plan):
            model = self.catalog.model(choice.model)
            backend = self.upstreams.backends.get(choice.backend)
            breaker = self.upstreams.breakers.get(choice.backend)
            if model is None or backend is None or breaker is None or (held is not None and not model.paid):
                continue
            if refuse and model.paid and held is None:
                attempts.append(Attempt(model.name, choice.backend, "skipped", "paid_fallback_refused",
                                        detail="PAID_FALLBACK=refuse: a failed local call is not sent to a paid model"))
                continue
            for retry in range(self._retries(choice.backend) + 1):
                if self.clock() >= deadline:
                    raise self._final(BackendError("timeout", "request deadline reached"), attempts)
                if not breaker.allow():
                    attempts.append(Attempt(model.name, choice.backend, "skipped", "circuit_open",
                                            detail=f"retry in {breaker.retry_in():.0f}s"))
                    break
                try:
                    reservation = self._reserve(request, model)
                except _Skip as skip:
                    breaker.release()
                    attempts.append(Attempt(model.name, choice.backend, "skipped", skip.kind, detail=skip.detail))
                    break
                except BaseException:
                    breaker.release()
                    raise
                t0 = self.clock()
                lease: str | None = ""  # an uncapped backend: no slot to wait for (nothing asked on its path)
                if self.state.concurrency.caps.get(choice.backend, 0) > 0:
                    self.queued(choice.backend, 1)
                    try:
                        lease = self.state.concurrency.acquire(
                            choice.backend, min(self._slot_wait(request, decision), max(0.0, deadline - t0)),
                            request.api_key_id or "")
                    finally:
                        self.queued(choice.backend, -1)
                    self.waited(choice.backend, self.clock() - t0, lease is not None)
                if lease is None:
                    breaker.release()
                    self._release(reservation)
                    waited = self.clock() - t0
                    busy = (f"all {self.state.concurrency.caps.get(choice.backend, 0)} {choice.backend} slots "
                            f"busy for {waited:.1f} s")
                    last = BackendError("overloaded", busy,
                                        retry_after=max(1.0, self.settings.concurrency_wait_seconds))
                    attempts.append(Attempt(model.name, choice.backend, "skipped", "concurrency_cap",
                                            latency_seconds=round(waited, 4), detail=busy))
                    break
                meter = Meter()
                try:
                    result = call(backend, model, meter)
                except BackendError as exc:
                    self.state.concurrency.release(choice.backend, lease)
                    cost = self._charge_failed(request, model, choice.backend, meter, exc.billable, reservation)
                    last = exc
                    attempts.append(Attempt(model.name, choice.backend, "error", exc.kind, exc.status,
                                            round(self.clock() - t0, 4), exc.message, cost=cost or None))
                    if exc.upstream_message:
                        log.debug("upstream said: %s", exc.upstream_message,
                                  extra={"request_id": request.request_id})
                    self.account_failure(exc, choice.backend, model.name, meter)
                    delay = self._retry_delay(exc, retry, choice.backend, deadline)
                    if delay is None:
                        break
                    self.sleep(delay)
                    continue
                except BaseException:
                    # Not the upstream's fault (a bug, the worker stopping): free what the try held, give
                    # the breaker's probe back, and charge what the upstream may have done.
                    self.state.concurrency.release(choice.backend, lease)
                    breaker.release()
                    self._charge_failed(request, model, choice.backend, meter, True, reservation)
                    raise
                breaker.record_success()
                latency = round(self.clock() - t0, 4)
                if checker is not None:
                    result, invalid = checker(result)
                    if invalid:
                        self.state.concurrency.release(choice.backend, lease)
                        cost = self._charge_answer(request, model, choice.backend, result, reservation)
                        attempts.append(Attempt(model.name, choice.backend, "rejected", "invalid_answer",
                                                latency_seconds=latency, detail=invalid, cost=cost or None))
                        last = None
                        break
                why, confidence = review(result) if review is not None and not model.paid else (None, None)
                if why and any(self._paid(c.model) for c in decision.plan[n + 1:]):
                    self.state.concurrency.release(choice.backend, lease)
                    attempts.append(Attempt(model.name, choice.backend, "rejected", "cascade_review",
                                            latency_seconds=latency, detail=why, mean_logprob=confidence))
                    held = _Success(model, choice.backend, attempts, result, reservation, "", meter)
                    break
                attempts.append(Attempt(model.name, choice.backend, "ok", latency_seconds=latency,
                                        mean_logprob=confidence))
                return _Success(model, choice.backend, attempts, result, reservation, lease, meter)
        if held is not None:
            return held
        if invalid and last is None:
            raise UpstreamError(f"no model gave a valid answer ({len(attempts)} attempts); last: {invalid}",
                                attempts=[a.as_dict() for a in attempts], error_type="invalid_answer")
        raise self._final(last, attempts, local_refused=refuse)

    def _charge_answer(self, request: ChatRequest, model: ModelSpec, backend: str, completion: Completion,
                       reservation: Reservation | None) -> float:
        """A complete answer that is not sent (it failed the check) still cost what the upstream billed."""
        if not model.paid:
            self._release(reservation)
            return 0.0
        usage = completion.usage
        cost = round(model.usage_cost(usage), 8)
        self.charge(request, model, backend, usage, cost, reservation)
        return cost

    def _charge_failed(self, request: ChatRequest, model: ModelSpec, backend: str, meter: Meter, billable: bool,
                       reservation: Reservation | None) -> float:
        """Charge a try that ended without an answer for what the upstream may have billed (0: nothing),
        settling its reservation either way."""
        usage = charged_usage(meter, billable, request.input_tokens_bound, self.max_tokens(request, model))
        if usage is None or not model.paid:
            self._release(reservation)
            return 0.0
        cost = round(model.usage_cost(usage), 8)
        self.charge(request, model, backend, usage, cost, reservation)
        return cost

    def _record_charge(self, request: ChatRequest, model: ModelSpec, backend: str, usage: Usage, cost: float,
                       reservation: Reservation | None) -> None:
        self.state.ledger.record(cost=cost, cloud_cost=cost, model=model.name, backend=backend,
                                 key_id=request.api_key_id, reservation=reservation)

    def _release(self, reservation: Reservation | None) -> None:
        if reservation is not None:
            self.state.ledger.release(reservation)

    def _paid(self, name: str) -> bool:
        model = self.catalog.model(name)
        return model is not None and model.paid

    def _reserve(self, request: ChatRequest, model: ModelSpec) -> Reservation | None:
        """Reserve the worst-case cost of a paid call against the budget (None: nothing to reserve).

        A request that named a model or tier gets 429 (or 503 with Redis down) instead of a silent
        switch; an auto-routed one moves on to the next model in its plan.
        """
        caching = model.backend == "anthropic" and self.settings.anthropic.prompt_caching
        write = may_write(model, request, caching) if model.backend == "anthropic" else ""
        return self.reserve(request.api_key_id, model, model.worst_cost(request.input_tokens_bound,
                                                                        self.max_tokens(request, model), write),
                            insisted=request.model not in ("auto", ""))

    def reserve(self, key_id: str | None, model: ModelSpec, amount: float, insisted: bool = True,
                ttl: float | None = None) -> Reservation | None:
        """Reserve `amount` for a call to `model` (embeddings and batches use it too; a batch holds it for as
        long as the provider may take, `ttl`): None when there is nothing to guard; refused: 429 (503 with
        Redis down) if `insisted`, else _Skip to the next model of a plan."""
        limits = self.state.limits
        if not model.paid or (limits.monthly_usd is None and limits.per_key_monthly_usd is None):
            return None
        try:
            reservation = self.state.ledger.reserve(key_id, amount, ttl or self.settings.longest_call_seconds,
                                                    model=model.name, backend=model.backend)
        except StateUnavailable as exc:
            if self.settings.redis_failure_policy == "allow":
                return None
            if insisted:
                raise ServiceUnavailable(UNGUARDED, error_type="budget_unguarded") from exc
            raise _Skip("budget_unguarded", UNGUARDED) from exc
        if reservation is None:
            self.refused(model.name)
            message = f"the monthly budget cannot cover this call's worst case (${amount:.4f})"
            if insisted:
                raise BudgetExceeded(message, param="model")
            raise _Skip("budget_exceeded", message)
        return reservation

    def _retries(self, backend: str) -> int:
        return getattr(self.settings, backend).max_retries

    def account_failure(self, exc: BackendError, backend: str, model: str, meter: Meter | None = None) -> None:
        """Tell the breaker. A timeout the request's own size explains (a client asked for more than the
        timeout allows) is not the backend's health and does not count, so no client can open a circuit for
        everyone: on a stream, tokens were arriving; on a one-piece answer, which shows no progress, the
        backend answers a fresh health check right after."""
        breaker = self.upstreams.breakers[backend]
        if exc.kind == "model_not_found":
            self.upstreams.mark_missing(model)
        explained = exc.kind == "timeout" and meter is not None and (
            meter.pieces > 0 or (not meter.streamed and self.upstreams.answers(backend)))
        if exc.counts_for_breaker and not explained:
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

    def final_error(self, last: BackendError, attempts: list[Attempt]) -> GatewayError:
        """The client's error when every attempt failed, the last with `last` (embeddings use it too)."""
        return self._final(last, attempts)

    def _slot_wait(self, request: ChatRequest, decision: Decision) -> float:
        """How long a call waits for a capped backend's slot before the next model is tried: local-only has
        nowhere else to go (it waits to the deadline), cost-aware would rather wait than pay (twice as long);
        X-Priority high spills soonest (a quarter), low waits longest (three times)."""
        if decision.strategy == "local-only":
            return self.settings.request_deadline_seconds
        base = self.settings.concurrency_wait_seconds * (2.0 if decision.strategy == "cost-aware" else 1.0)
        return base * _PRIORITY_WAIT.get(request.priority, 1.0)

    def _final(self, last: BackendError | None, attempts: list[Attempt], local_refused: bool = False) -> GatewayError:
        listed = [a.as_dict() for a in attempts]
        skipped = [a for a in attempts if a.error_type == "circuit_open"]
        retry = max((self.upstreams.breakers[a.backend].retry_in() for a in skipped), default=0)
        if local_refused and (skipped or last is not None):
            # The local models this prompt was routed to are down: say so, and that no paid model was tried.
            why = "their circuit is open" if last is None else f"last: {last.message}"
            busy = last is not None and last.kind == "overloaded" and last.retry_after  # slots full, not down
            return ServiceUnavailable(f"the local models this prompt was routed to failed ({why}); PAID_FALLBACK="
                                      "refuse keeps it off paid models: try again shortly, or ask for a cloud "
                                      "model or tier to pay for it", headers={"Retry-After": str(max(1, round(
                                          busy or retry or self.settings.breaker_cooldown_seconds)))},
                                      attempts=listed, error_type="local_unavailable")
        if last is None:
            headers = {"Retry-After": str(max(1, round(retry)))} if skipped else {}
            return ServiceUnavailable("every candidate backend has its circuit open; try again shortly"
                                      if skipped else "no backend could take the request",
                                      headers=headers, attempts=listed, error_type="circuit_open")
        cls, error_type = _FINAL[last.kind]
        headers = {}
        if last.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(last.retry_after)))
        return cls(f"all {len(attempts)} attempts failed; last: {last.message}", headers=headers,
                   attempts=listed, error_type=error_type)


def _outcome(request: ChatRequest, decision: Decision, model: ModelSpec, backend: str, completion: Completion,
             attempts: list[Attempt], latency: float, decided_paid: bool) -> Outcome:
    usage = completion.usage
    return Outcome(request_id=request.request_id, decision=decision, model=model.name, backend=backend,
                   tier=model.tier, completion=completion, cost=round(model.usage_cost(usage), 8),
                   attempts=attempts, latency_seconds=round(latency, 4),
                   reason=answered_reason(decision, model, attempts, decided_paid),
                   paid_fallback=_paid_fallback(decision, model, attempts, decided_paid))


def _paid_fallback(decision: Decision, model: ModelSpec, attempts: list[Attempt], decided_paid: bool) -> bool:
    """A paid model answered a prompt decided for a local one because the local call failed (not because the
    cascade's review sent it on)."""
    return model.paid and not decided_paid and not any(a.outcome == "rejected" for a in attempts)


def answered_reason(decision: Decision, model: ModelSpec, attempts: list[Attempt], decided_paid: bool) -> str:
    """The decision's reason, and when another model answered, which one did and why: "...; tinyllama failed
    (connection): answered by claude-sonnet, a paid fallback (PAID_FALLBACK=cloud)"."""
    if model.name == decision.model:
        return decision.reason
    first = next((a for a in attempts if a.model == decision.model and a.outcome != "ok"), None)
    if first is None:
        what = "was not tried"
    elif first.outcome == "rejected":
        what = "was rejected by the review"
    else:
        what = f"failed ({first.error_type})" if first.outcome == "error" else f"was skipped ({first.error_type})"
    paid = ", a paid fallback (PAID_FALLBACK=cloud)" if _paid_fallback(decision, model, attempts, decided_paid) else ""
    if first is not None and first.error_type == "concurrency_cap":  # "all 3 ollama slots busy for 2.1 s"
        return f"{decision.reason}; {first.detail}: spilled to {model.name}{paid}"
    return f"{decision.reason}; {decision.model} {what}: answered by {model.name}{paid}"


class StreamInterrupted(Exception):
    """The upstream failed after text had been sent: the stream must end with an explicit error."""

    def __init__(self, error: BackendError):
        super().__init__(error.message)
        self.error = error


class LiveStream:
    """A committed stream: iterate for StreamDeltas; `outcome` is set when the final delta arrives.

    A failure mid-way raises StreamInterrupted (recorded as an attempt, counted by the breaker).
    close() ends the upstream request and frees the concurrency slot: the API layer calls it when the
    stream ends or the client goes away.
    """

    def __init__(self, dispatcher: Dispatcher, request: ChatRequest, decision: Decision, won: _Success,
                 first: StreamDelta, rest: Iterator[StreamDelta], started: float, deadline: float):
        self.dispatcher, self.request, self.decision = dispatcher, request, decision
        self.model, self.backend, self.attempts = won.model, won.backend, won.attempts
        self.reservation, self._lease, self.meter = won.reservation, won.lease, won.meter
        self._first, self._rest, self._started, self._deadline = first, rest, started, deadline
        self.text: list[str] = []
        self.outcome: Outcome | None = None
        self.error: BackendError | None = None
        self.recorded = False  # a live stream is recorded when it ends (ReplayStream: when it was made)
        self.first_token_seconds = round(dispatcher.clock() - started, 4)
        self._decided_paid = dispatcher._paid(decision.model)
        self.reason = answered_reason(decision, self.model, self.attempts, self._decided_paid)

    def __iter__(self) -> Iterator[StreamDelta]:
        delta = self._first
        clock = self.dispatcher.clock
        try:
            while True:
                self.text.append(delta.text)
                if delta.usage is not None:
                    completion = Completion("".join(self.text), delta.usage, delta.finish_reason or "stop")
                    self.outcome = _outcome(self.request, self.decision, self.model, self.backend, completion,
                                            self.attempts, clock() - self._started, self._decided_paid)
                    self.outcome.reservation = self.reservation
                    yield delta
                    return
                yield delta
                if clock() > self._deadline:  # an upstream that never stops is cut at the request deadline
                    raise BackendError("timeout", "request deadline reached mid-stream")
                delta = next(self._rest)
        except BackendError as exc:
            self.error = exc
            self.attempts.append(Attempt(self.model.name, self.backend, "error", exc.kind, exc.status,
                                         round(clock() - self._started, 4), f"after text was sent: {exc.message}"))
            self.dispatcher.account_failure(exc, self.backend, self.model.name, self.meter)
            raise StreamInterrupted(exc) from exc
        finally:
            self.close()

    def close(self) -> None:
        self._rest.close()  # closes the upstream response: no orphaned generation
        if self._lease is not None:
            self.dispatcher.state.concurrency.release(self.backend, self._lease)
            self._lease = None


def _cascade_review(request: ChatRequest, min_mean_logprob: float | None
                    ) -> Callable[[Completion], tuple[str | None, float | None]]:
    """The review of a local answer: why it goes to the cloud (None: it is sent), and the confidence it read."""
    prompt = request.prompt

    def check(completion: Completion) -> tuple[str | None, float | None]:
        confidence = mean_logprob(completion.logprobs)
        return review(prompt, completion.text, completion.finish_reason, confidence, min_mean_logprob), confidence
    return check
