"""Shadow labels: for a sampled answered request, the other side answers too, off the response path, and a
judge says whether the local answer was good enough.

A local answer gets the cloud model's answer beside it; a cloud answer gets the local model's (free). The
judge (gateway/calibration/judge.py) compares them exactly where it can, else asks the cloud model in both
orders. Every paid call (the cloud answer, each judgement) first reserves its worst case within
CALIBRATION_BUDGET_USD for the month (Redis, atomic across workers and replicas) and within the global budget,
then is charged what it cost: apart in the ledger (tag "calibration", no key's spend). A request whose
strategy is local-only never gets here (gateway/calibration/runtime.py checks): its prompt never leaves.

Jobs run on two threads per worker behind a queue of 16: a full queue drops the sample (a label is never
worth delaying anyone). The prompt lives only in the queued job's memory; the label keeps features.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from ..backends import BackendError
from ..billing import Meter, charged_usage
from ..catalog import ModelSpec
from ..chat import ChatRequest, Message
from ..errors import GatewayError
from ..state import StateUnavailable
from ..state.budget import month_of
from . import judge
from .labels import Label

log = logging.getLogger("gateway.calibration")
QUEUE = 16
JUDGE_TOKENS = 5


@dataclass(frozen=True)
class Job:
    request: ChatRequest       # held in memory until the job ends; never stored
    answer: str                # the answer the user got
    answered_paid: bool
    other: ModelSpec           # the model that answers in the shadow (the other side)
    judge_model: ModelSpec | None  # the cloud model that judges where the answers cannot be compared
    probability: float
    label: Label               # features, heuristic, cluster; local and cloud filled in by the judge


class ShadowRunner:
    """The dispatcher's breakers, budget reservation and failure accounting, for calls no user waits for."""

    def __init__(self, settings, dispatcher, telemetry, on_label: Callable[[str, Label], None]):
        self.settings, self.dispatcher, self.telemetry = settings, dispatcher, telemetry
        self.upstreams, self.state = dispatcher.upstreams, dispatcher.state
        self.on_label = on_label
        self._slots = threading.BoundedSemaphore(QUEUE)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shadow")

    def offer(self, job: Job) -> bool:
        """Queue a job; False (dropped) when the queue is full. Never blocks."""
        if not self._slots.acquire(blocking=False):
            self.telemetry.shadow("dropped", "queue_full")
            return False
        try:
            self._pool.submit(self._run, job)
        except RuntimeError:  # shutting down
            self._slots.release()
            return False
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: Job) -> None:
        try:
            self.run(job)
        except Exception:  # a label is never worth a worker: logged without prompt text
            log.exception("shadow label failed")
        finally:
            self._slots.release()

    def run(self, job: Job) -> None:
        request = replace(job.request, stream=False, dry_run=False, tools=(), tool_choice=None, forced_tool=None,
                          response_format=None, passthrough=None)
        other = self._answer(job.other, request, request.max_tokens)
        if other is None:
            return
        local, cloud = (other, job.answer) if job.answered_paid else (job.answer, other)
        qualities = judge.exact(request.prompt, local, cloud)
        how = "exact"
        if qualities is None:
            if job.judge_model is None:
                self.telemetry.shadow("skipped", "no_judge")
                return
            first = self._judge(job.judge_model, request.prompt, local, cloud)
            second = self._judge(job.judge_model, request.prompt, cloud, local) if first is not None else None
            if first is None or second is None:
                return
            qualities = judge.combine(first, second)  # the second was asked with the cloud's answer as A
            # a verdict that flips with the order: the share of these measures how noisy the judge is
            how = "pairwise" if judge.consistent(first, second) else "pairwise_split"
        label = replace(job.label, local=qualities[0], cloud=qualities[1], weight=1.0 / job.probability,
                        source="shadow", time=time.time(), meta={**job.label.meta, "judge": how,
                                                                 "other_model": job.other.name})
        self.on_label(f"sh:{job.request.api_key_id or '-'}:{job.request.request_id}", label)
        self.telemetry.shadow("labelled", how)

    def _judge(self, model: ModelSpec, prompt: str, first: str, second: str) -> str | None:
        ask = ChatRequest(messages=(Message("user", judge.pairwise_prompt(prompt, first, second)),),
                          system=judge.JUDGE_SYSTEM, max_tokens=JUDGE_TOKENS, temperature=0.0,
                          request_id="judge")
        reply = self._answer(model, ask, JUDGE_TOKENS)
        return None if reply is None else judge.verdict(reply)

    def _answer(self, model: ModelSpec, request: ChatRequest, max_tokens: int | None) -> str | None:
        """One call off the response path, paid ones within both budgets; None when skipped or failed."""
        backend = self.upstreams.backends.get(model.backend)
        if backend is None or not self.upstreams.breakers[model.backend].allow():
            self.telemetry.shadow("skipped", "unavailable")
            return None
        breaker = self.upstreams.breakers[model.backend]
        cap = max_tokens or self.settings.catalog.routing.default_max_tokens
        worst, month, reservation = 0.0, month_of(time.time()), None
        if model.paid:
            worst = model.worst_cost(request.input_tokens_bound, cap)
            why = self._reserve(model, month, worst)
            if isinstance(why, str):
                breaker.release()
                self.telemetry.shadow("skipped", why)
                return None
            reservation = why
        meter = Meter()
        try:
            completion = backend.complete(model, request, cap, meter=meter)
        except BackendError as exc:
            self.dispatcher.account_failure(exc, model.backend, model.name, meter)  # as for a user's call
            usage = charged_usage(meter, exc.billable, request.input_tokens_bound, cap) if model.paid else None
            self._charge(model, month, worst, usage and model.usage_cost(usage), reservation)
            self.telemetry.shadow("failed", exc.kind)
            return None
        breaker.record_success()
        self._charge(model, month, worst, model.usage_cost(completion.usage) if model.paid else None, reservation)
        return completion.text

    def _reserve(self, model: ModelSpec, month: str, worst: float):
        """The worst case held within CALIBRATION_BUDGET_USD, then within the monthly budget (the dispatcher's
        reservation, Redis-down policy included): the global reservation or None, else why it was refused."""
        try:
            if not self.state.calibration.reserve_spend(month, worst, self.settings.calibration_budget_usd):
                return "calibration_budget"
        except StateUnavailable:
            return "redis_down"
        try:
            return self.dispatcher.reserve(None, model, worst)
        except GatewayError as exc:  # 429 budget_exceeded, 503 budget_unguarded
            self.state.calibration.settle_spend(month, -worst)
            return "budget" if exc.type == "budget_exceeded" else exc.type

    def _charge(self, model: ModelSpec, month: str, worst: float, cost: float | None, reservation) -> None:
        if not model.paid:
            return
        self.state.calibration.settle_spend(month, (cost or 0.0) - worst)
        if cost:
            # no cloud-only counterpart: what the learning costs comes off the savings
            self.state.ledger.record(cost=cost, cloud_cost=0.0, model=model.name, backend=model.backend, key_id=None,
                                     reservation=reservation, tag="calibration")
            self.telemetry.shadow_cost(model.name, cost)
        elif reservation is not None:
            self.state.ledger.release(reservation)
