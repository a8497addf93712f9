"""The path every surface shares below parsing: admit, route, cache, execute, record.

api/native.py and api/openai.py turn HTTP into a ChatRequest and render the Outcome (or frame the
stream); everything in between happens here, once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from functools import partial

from .backends import BackendError, build_backends
from .billing import charged_usage
from .calibration.runtime import Calibrator
from .catalog import EMBEDDING, ModelSpec
from .chat import Attempt, ChatRequest, Completion, EmbedOutcome, EmbedRequest, Outcome, ToolCall, Usage
from .config import Settings
from .dispatch import Dispatcher, LiveStream
from .errors import ServiceUnavailable, TooManyRequests, UnknownModel
from .gpu import GpuMonitor
from .smart_router import Decision, RoutingContext, decide
from .state import State, StateUnavailable, build_state
from .state.budget import UNGUARDED, Reservation, budget_left, budget_status, month_of
from .state.cache import CachedAnswer, cache_key
from .state.stats import snapshot
from .telemetry import Telemetry
from .upstreams import Upstreams

log = logging.getLogger("gateway.service")
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class CachePolicy:
    """What the client allows: Cache-Control no-cache skips reading, no-store skips writing; force
    caches even above CACHE_MAX_TEMPERATURE."""
    read: bool = True
    write: bool = True
    force: bool = False


class GatewayService:
    def __init__(self, settings: Settings, upstreams: Upstreams | None = None, state: State | None = None):
        self.settings = settings
        self.state = state or build_state(settings)
        self.upstreams = upstreams or Upstreams(settings, build_backends(settings))
        catalog = settings.catalog
        self.telemetry = Telemetry((m.name for m in (*catalog.models, *catalog.embedding_models)),
                                   (*(t.name for t in catalog.tiers), EMBEDDING),
                                   (m.name for m in (*catalog.models, *catalog.embedding_models) if m.paid))
        self.dispatcher = Dispatcher(settings, self.upstreams, self.state, charge=self.charge,
                                     refused=self.telemetry.budget_refusal, waited=self.telemetry.slot_wait,
                                     queued=self.telemetry.slot_queue)
        self.stats = self.state.stats
        self.cloud_reference = _reference_cloud_model(settings)
        self.gpu = GpuMonitor(settings.gpu_sample_seconds)
        for name, breaker in self.upstreams.breakers.items():  # the circuit gauge, from each state change
            breaker.on_change = partial(self.telemetry.circuit, name)
            self.telemetry.circuit(name, breaker.state != "closed")
        ollama = self.upstreams.backends.get("ollama")
        if ollama is not None and hasattr(ollama, "pool"):  # several hosts: calls in flight counted in Redis
            ollama.pool.leases = self.state.hosts
            ollama.pool.on_cold = self.telemetry.cold_load
        self.closers: list = []  # what else stops with the service (the batch runner)
        self.calibrator = Calibrator(settings, self.state, self.dispatcher, self.telemetry)
        self.closers.append(self.calibrator.close)

    # ------------------------------------------------------------------ admission and routing
    def admit(self, request: ChatRequest) -> None:
        """Per-key requests and tokens per minute (429 with Retry-After)."""
        if self.settings.rate_limit_rpm or self.settings.rate_limit_tpm:
            self.admit_tokens(request.api_key_id, request.input_tokens_estimate)

    def admit_tokens(self, key_id: str | None, estimate: int) -> None:
        if not (self.settings.rate_limit_rpm or self.settings.rate_limit_tpm):
            return
        tokens = estimate if self.settings.rate_limit_tpm else 0
        verdict = self.state.rate_limiter.admit(key_id or ANONYMOUS, tokens)
        if verdict:
            retry = 60 - int(time.time()) % 60
            what = "requests" if verdict == "rpm" else "tokens"
            if verdict == "tpm" and tokens > self.settings.rate_limit_tpm:
                raise TooManyRequests(f"this request alone (~{tokens} input tokens) is more than this key may send in "
                                      f"a minute (RATE_LIMIT_TPM={self.settings.rate_limit_tpm})",
                                      error_type="rate_limited_tpm")
            raise TooManyRequests(f"rate limit reached: {what} per minute for this key; retry in {retry} s",
                                  headers={"Retry-After": str(retry)}, error_type=f"rate_limited_{verdict}")

    def context(self, request: ChatRequest | None = None) -> RoutingContext:
        """What the router may know right now: upstream state from memory, budget from the ledger."""
        used = remaining = block = None
        limits = self.state.limits
        if limits.monthly_usd is not None or limits.per_key_monthly_usd is not None:
            try:
                totals = self.state.ledger.month_totals()
                used, remaining = budget_left(totals, limits, request.api_key_id if request else None)
            except StateUnavailable:
                if self.settings.redis_failure_policy == "local-only":
                    block = UNGUARDED
        in_force = self.calibrator.current
        return RoutingContext(
            catalog=self.settings.catalog,
            configured_backends=frozenset(self.upstreams.backends),
            deployment_tier=self.settings.deployment_tier,
            default_strategy=self.settings.routing_strategy,
            open_circuits=self.upstreams.open_circuits(),
            missing_models=self.upstreams.missing_models(),
            budget_used_fraction=used, budget_remaining_usd=remaining, paid_block_reason=block,
            gpu_free_mb=self._gpu_free_mb(),
            router=self.settings.router, learned=in_force.model,
            thresholds=in_force.thresholds, router_version=in_force.version,
            paid_fallback=self.settings.paid_fallback,
            capabilities=self.upstreams.capabilities() if request is not None and (
                request.needs or request.image_urls) else {},
        )

    def _gpu_free_mb(self) -> int | None:
        if not self.settings.catalog.routing.gpu_upgrades:
            return None
        self.gpu.report(wait=0)  # starts the sampler on first use; never waits on the request path
        free = self.gpu.free_memory_bytes()
        return None if free is None else free // 2**20

    def decide(self, request: ChatRequest) -> Decision:
        # KEY_STRATEGIES: the key's strategy where the request names none; local-only whatever it names (the
        # key's prompts never leave)
        own = self.settings.key_strategies.get(request.api_key_id) if self.settings.key_strategies else None
        if own and request.strategy != own and (own == "local-only" or request.strategy is None):
            request = replace(request, strategy=own)
        return decide(request, self.context(request))

    def count_input_tokens(self, request: ChatRequest, decision: Decision) -> int | None:
        """Anthropic's own count when the request would go to Claude; None (estimate it) otherwise or when the
        count cannot be had."""
        model = self.settings.catalog.model(decision.model)
        backend = self.upstreams.backends.get(decision.backend)
        if model is None or decision.backend != "anthropic" or backend is None:
            return None
        try:
            return backend.count_tokens(model, request)
        except BackendError:
            return None

    # ------------------------------------------------------------------ cache
    def _cache_key(self, request: ChatRequest, decision: Decision, policy: CachePolicy,
                   model: str | None = None) -> str | None:
        """The key of this request's answer from `model` (default: the decided one), or None when the cache
        must not be used: off, asked not to, or an answer sampled above CACHE_MAX_TEMPERATURE. A request
        without a temperature gets the model's default, which samples (Ollama 0.8, the cloud APIs 1.0)."""
        if self.settings.cache_ttl_seconds <= 0 or not (policy.read or policy.write):
            return None
        name = model or decision.model
        if not policy.force:
            spec = self.settings.catalog.model(name)
            temperature = request.temperature if request.temperature is not None else (
                spec.default_temperature if spec is not None else 1.0)
            if temperature > self.settings.cache_max_temperature:
                return None
        partition = "" if self.settings.cache_shared_across_keys else (request.api_key_id or "")
        return cache_key(request, name, decision.strategy, partition)

    def cached(self, request: ChatRequest, decision: Decision, policy: CachePolicy) -> Outcome | None:
        """A stored answer for this exact request, as a free Outcome; None on a miss or bypass."""
        key = self._cache_key(request, decision, policy)
        if key is None or not policy.read:
            if self.settings.cache_ttl_seconds > 0:
                self._count_cache("bypass", request.api_key_id)
            return None
        hit = self.state.cache.get(key)
        self._count_cache("hit" if hit else "miss", request.api_key_id)
        if hit is None:
            return None
        calls = tuple(ToolCall(*c) for c in hit.tool_calls)
        outcome = Outcome(request.request_id, decision, hit.model, hit.backend, hit.tier,
                          Completion(hit.text, Usage(hit.input_tokens, hit.output_tokens), hit.finish_reason,
                                     tool_calls=calls), cost=0.0, cached=True)
        self.record(outcome, request)
        return outcome

    def _count_cache(self, result: str, key_id: str | None) -> None:
        self.stats.record_cache(result, key_id)
        self.telemetry.cache(result)

    def _store(self, request: ChatRequest, outcome: Outcome, policy: CachePolicy) -> None:
        """Keep a complete answer under the model that gave it. Never one the cascade's review rejected (sent
        only because the cloud failed too)."""
        if not policy.write or outcome.cached or any(
                a.outcome == "rejected" and a.model == outcome.model for a in outcome.attempts):
            return
        key = self._cache_key(request, outcome.decision, policy, outcome.model)
        if key is None:
            return
        c = outcome.completion
        self.state.cache.put(key, CachedAnswer(outcome.model, outcome.backend, outcome.tier, c.text,
                                               c.finish_reason, c.usage.input_tokens, c.usage.output_tokens,
                                               [[t.id, t.name, t.arguments] for t in c.tool_calls]),
                             self.settings.cache_ttl_seconds)

    # ------------------------------------------------------------------ execution
    def begin(self, decision: Decision) -> None:
        """A chat request is about to be answered along this decision (not dry runs, not /complexity)."""
        self.telemetry.decision(decision)

    def complete(self, request: ChatRequest, decision: Decision, policy: CachePolicy = CachePolicy()) -> Outcome:
        self.begin(decision)
        with self.state.batch():  # every write of this request in one round trip, sent before the answer
            hit = self.cached(request, decision, policy)
            if hit is not None:
                return hit
            try:
                outcome = self.dispatcher.execute(request, decision)
            except Exception as exc:
                self._log_decision(request, decision, None, error=getattr(exc, "type", type(exc).__name__))
                raise
            self.record(outcome, request)
            self._store(request, outcome, policy)
            return outcome

    def open_stream(self, request: ChatRequest, decision: Decision) -> LiveStream:
        """Fails (GatewayError) before the first token like complete(); finish_stream() records the end."""
        try:
            live = self.dispatcher.open_stream(request, decision)
            self.telemetry.first_token(live.model.name, live.backend, live.first_token_seconds)
            return live
        except Exception as exc:
            self._log_decision(request, decision, None, error=getattr(exc, "type", type(exc).__name__))
            raise

    def finish_stream(self, live: LiveStream, policy: CachePolicy) -> None:
        """The stream ended: record the whole answer, or what an interrupted one probably cost."""
        with self.state.batch():
            self._finish_stream(live, policy)

    def _finish_stream(self, live: LiveStream, policy: CachePolicy) -> None:
        live.close()
        if live.recorded:
            return  # a replayed answer (a cache hit, a checked structured one), recorded when it was made
        if live.outcome is not None:
            self.record(live.outcome, live.request)
            self._store(live.request, live.outcome, policy)
            return
        # Interrupted or abandoned: the upstream still bills what it generated. The input count it reported
        # at the start (Anthropic) and the output that arrived (gateway/billing.py).
        meter = live.meter
        usage = charged_usage(meter, True, live.request.input_tokens_bound,
                              self.dispatcher.max_tokens(live.request, live.model)) or Usage()
        partial = Outcome(live.request.request_id, live.decision, live.model.name, live.backend, live.model.tier,
                          Completion("".join(live.text), usage, "interrupted"),
                          cost=round(live.model.usage_cost(usage), 8),
                          attempts=live.attempts, reservation=live.reservation)
        self._record_spend(partial, live.request)
        self._log_decision(live.request, live.decision, partial,
                           error="stream_interrupted" if live.error else "client_disconnected")

    def embed(self, request: EmbedRequest) -> EmbedOutcome:
        """Vectors for the inputs from an embedding model (`auto`: the first configured one), with the same
        key limits, breaker, spend and stats as chat."""
        model = self._embedding_model(request.model)
        backend, breaker = self.upstreams.backends[model.backend], self.upstreams.breakers[model.backend]
        self.admit_tokens(request.api_key_id, request.tokens_estimate)
        if not breaker.allow():
            raise ServiceUnavailable(f"{model.backend}'s circuit is open; try again shortly",
                                     headers={"Retry-After": str(max(1, round(breaker.retry_in())))},
                                     error_type="circuit_open")
        try:  # the worst case held against the budget, atomically, as for chat
            reservation = self.dispatcher.reserve(request.api_key_id, model, model.cost(request.tokens_bound, 0))
        except BaseException:
            breaker.release()
            raise
        started = time.perf_counter()
        try:
            found = backend.embed(model, list(request.inputs), request.dimensions)
        except BackendError as exc:
            if reservation is not None:
                self.state.ledger.release(reservation)
            self.dispatcher.account_failure(exc, model.backend, model.name)
            attempt = Attempt(model.name, model.backend, "error", exc.kind, exc.status,
                              round(time.perf_counter() - started, 4), exc.message)
            raise self.dispatcher.final_error(exc, [attempt]) from exc
        breaker.record_success()
        outcome = Outcome(request.request_id, None, model.name, model.backend, EMBEDDING,
                          Completion("", Usage(found.input_tokens, 0)), round(model.cost(found.input_tokens, 0), 8),
                          latency_seconds=round(time.perf_counter() - started, 4))
        self.stats.record(outcome, local=not model.paid, key_id=request.api_key_id)
        self.telemetry.outcome(outcome, 0.0)
        self.state.ledger.record(cost=outcome.cost, cloud_cost=outcome.cost, model=model.name, backend=model.backend,
                                 key_id=request.api_key_id, reservation=reservation)
        if self.settings.rate_limit_tpm:  # the estimate was counted on admission: the real count replaces it
            self.state.rate_limiter.add_tokens(request.api_key_id or ANONYMOUS,
                                               found.input_tokens - request.tokens_estimate)
        return EmbedOutcome(outcome, found.vectors)

    def _embedding_model(self, name: str) -> ModelSpec:
        catalog, configured = self.settings.catalog, self.upstreams.backends
        if name in ("auto", ""):
            usable = [m for m in catalog.embedding_models if m.backend in configured]
            if not usable:
                raise ServiceUnavailable("no embedding model has a configured backend (embedding_models in "
                                         "configs/models.yaml)", error_type="no_embedding_model")
            return usable[0]
        model = catalog.embedding_model(name)
        if model is None:
            known = ", ".join(["auto", *(m.name for m in catalog.embedding_models)])
            raise UnknownModel(f"{name[:100]!r} is not an embedding model; known: {known}", param="model")
        if model.backend not in configured:
            raise ServiceUnavailable(f"embedding model {model.name!r} needs its {model.backend} backend configured")
        return model

    # ------------------------------------------------------------------ recording
    def record(self, outcome: Outcome, request: ChatRequest) -> None:
        model = self.settings.catalog.model(outcome.model)
        self.stats.record(outcome, local=model is not None and not model.paid, key_id=request.api_key_id)
        self._record_spend(outcome, request)
        if outcome.decision is not None:
            self.calibrator.observe(request, outcome, outcome.decision.router_version)
        if self.settings.rate_limit_tpm:  # the input estimate was counted on admission
            usage = outcome.completion.usage
            self.state.rate_limiter.add_tokens(request.api_key_id or ANONYMOUS, usage.input_tokens
                                               + usage.output_tokens - request.input_tokens_estimate)
        self._log_decision(request, outcome.decision, outcome)

    def _record_spend(self, outcome: Outcome, request: ChatRequest) -> None:
        usage = outcome.completion.usage
        ref = self.cloud_reference
        cloud_cost = ref.cost(usage.input_tokens, usage.output_tokens) if ref else 0.0
        self.telemetry.outcome(outcome, cloud_cost)
        # A cache hit costs nothing but would have cost the cloud price: it counts as savings too. With Redis
        # down the write is lost and logged; the reservation, if any, expires on its own.
        levers = self._levers(outcome)
        for lever, usd in (levers or {}).items():
            self.telemetry.lever_saved(lever, usd)
        self.state.ledger.record(cost=outcome.cost, cloud_cost=cloud_cost, model=outcome.model,
                                 backend=outcome.backend, key_id=request.api_key_id, reservation=outcome.reservation,
                                 tag="paid_fallback" if outcome.paid_fallback and not outcome.cached else "",
                                 saved=levers)

    def _levers(self, outcome: Outcome) -> dict[str, float] | None:
        """What prompt caching (negative when it only wrote: a write costs more than plain input) and the batch
        discount saved on a paid answer, each against the same model's list price: apart from what routing
        it locally would have saved."""
        usage = outcome.completion.usage
        if outcome.cached or not (usage.cached or outcome.batch):
            return None
        model = self.settings.catalog.model(outcome.model)
        if model is None:
            return None
        listed, cached = model.cost(usage.input_tokens, usage.output_tokens), model.usage_cost(usage)
        return {"prompt_cache": round(listed - cached, 8), "batch": round(cached - outcome.cost, 8)}

    def charge(self, request: ChatRequest, model: ModelSpec, backend: str, usage: Usage, cost: float,
               reservation: Reservation | None) -> None:
        """A paid try that failed, charged what the upstream may have billed (Dispatcher calls it)."""
        ref = self.cloud_reference
        cloud_cost = ref.cost(usage.input_tokens, usage.output_tokens) if ref else cost
        self.telemetry.charge(model.name, cost)
        self.state.ledger.record(cost=cost, cloud_cost=cloud_cost, model=model.name, backend=backend,
                                 key_id=request.api_key_id, reservation=reservation)

    def record_error(self, kind: str, key_id: str | None = None) -> None:
        self.stats.record_error(kind, key_id)

    def _log_decision(self, request: ChatRequest, decision: Decision, outcome: Outcome | None,
                      error: str | None = None) -> None:
        # Typed (numbers as numbers, flags as booleans) and with the reason the client was given: why it went
        # where it went, fallbacks included, without the request's own log line.
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "request_id": request.request_id,
                 "key_id": request.api_key_id or "", "strategy": decision.strategy, "score": round(decision.score, 4),
                 "router_version": decision.router_version,
                 "decided_tier": decision.tier, "decided_model": decision.model,
                 "reason": (outcome.reason if outcome is not None and outcome.reason else decision.reason)}
        if request.needs:
            entry["needs"] = sorted(request.needs)
        if decision.exclusions:
            entry["excluded_for"] = list(decision.exclusions)
        if outcome is not None and outcome.completion.tool_calls:
            entry["tool_calls"] = len(outcome.completion.tool_calls)
        if outcome is not None and outcome.batch:
            entry["batch"] = True  # answered through the provider's batch API, at its price
        if outcome is not None and outcome.completion.usage.cached:
            usage = outcome.completion.usage
            entry.update(cache_read_tokens=usage.cache_read_tokens,
                         cache_write_tokens=usage.cache_write_tokens + usage.cache_write_1h_tokens)
        if outcome is not None:
            entry.update(tier=outcome.tier, model=outcome.model, backend=outcome.backend, cost=round(outcome.cost, 8),
                         latency_seconds=round(outcome.latency_seconds, 4), cached=outcome.cached,
                         fallback=outcome.model != decision.model, attempts=len(outcome.attempts))
            # cascade: how sure the local model was, so operators can tune routing.cascade.min_mean_logprob
            confidence = next((a.mean_logprob for a in outcome.attempts if a.mean_logprob is not None), None)
            if confidence is not None:
                entry["local_mean_logprob"] = round(confidence, 4)
        if error:
            entry["error"] = error
        self.state.decisions.append(entry)

    # ------------------------------------------------------------------ reports
    # Every report takes the caller's key: None for an admin key (or a gateway without keys), which sees
    # every key's data; a key id for any other key, which sees only its own.
    def budget(self, key_id: str | None = None) -> dict:
        month = month_of(time.time())
        return budget_status(self.state.ledger.month_totals(month), self.state.limits, month, key_id)

    def stats_report(self, key_id: str | None = None) -> dict:
        totals = self.state.ledger.month_totals()
        month = month_of(time.time())
        if key_id is not None:
            body = snapshot(self.stats.counters(key_id), "key")
            body["key"] = key_id
            body.pop("by_key", None)
            spent, cloud_only = totals.get(f"key:{key_id}", 0.0), totals.get(f"key_cloud_only:{key_id}", 0.0)
            body["spend_this_month"] = {
                "month": month, "spent_usd": round(spent, 8), "cloud_only_usd": round(cloud_only, 8),
                "savings_usd": round(cloud_only - spent, 8),
                "savings_share": round(1 - spent / cloud_only, 4) if cloud_only else 0.0,
                "saved_by": _saved_by(totals, cloud_only - spent, f":{key_id}")}
            body["budget"] = budget_status(totals, self.state.limits, month, key_id)
            return body
        body = snapshot(self.stats.counters(), self.stats.scope)
        spent, cloud_only = totals.get("total", 0.0), totals.get("cloud_only", 0.0)
        body["cost_usd"] = round(spent, 8)
        body["spend_this_month"] = {
            "month": month, "spent_usd": round(spent, 8), "cloud_only_usd": round(cloud_only, 8),
            "savings_usd": round(cloud_only - spent, 8),
            "savings_share": round(1 - spent / cloud_only, 4) if cloud_only else 0.0,
            "saved_by": _saved_by(totals, cloud_only - spent, ""),
            "by_model": _group(totals, "model:"), "by_backend": _group(totals, "backend:"),
            "by_key": _group(totals, "key:"),
            # paid answers to prompts decided for a local model whose call failed (PAID_FALLBACK=cloud)
            "paid_fallback_usd": round(totals.get("tag:paid_fallback", 0.0), 8),
            # shadow answers and judgements for the learning router (CALIBRATION_BUDGET_USD), in spent_usd too
            "calibration_usd": round(totals.get("tag:calibration", 0.0), 8),
            # reservations still open at the end of their lifetime, charged their worst case
            "expired_reservations_usd": round(totals.get("expired", 0.0), 8),
            "cloud_reference_model": self.cloud_reference.name if self.cloud_reference else None,
        }
        body["budget"] = budget_status(totals, self.state.limits, month)
        return body

    def decisions(self, limit: int, key_id: str | None = None) -> list[dict]:
        return self.state.decisions.recent(limit, key_id)

    def close(self) -> None:
        for close in self.closers:
            close()
        self.upstreams.close()
        self.state.close()


def _saved_by(totals: dict[str, float], savings: float, suffix: str) -> dict[str, float]:
    """The savings split by lever: prompt caching and the batch discount (each against the same model's list
    price), and local routing and answer caching (against the cloud reference: the rest)."""
    levers = {name: round(totals.get(f"saved:{name}{suffix}", 0.0), 8) for name in ("prompt_cache", "batch")}
    return {"local_routing": round(savings - sum(levers.values()), 8), **levers}


def _group(totals: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix):]: round(v, 8) for k, v in sorted(totals.items()) if k.startswith(prefix)}


def _reference_cloud_model(settings: Settings) -> ModelSpec | None:
    """The model the 'cloud-only' counterfactual prices every request at: the first paid model of the
    most capable tier that has one."""
    for tier in reversed(settings.catalog.tiers):
        for m in settings.catalog.models_in(tier.name):
            if m.paid:
                return m
    return None
