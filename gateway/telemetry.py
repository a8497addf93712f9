"""Prometheus metrics, defined once and recorded from the Outcome, correct under several gunicorn workers.

gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh directory before any worker imports
prometheus_client, so every worker writes its samples there and a scrape of any worker sums them all
(dead workers are marked by the child_exit hook). Without gunicorn the default registry is used.

Label values are bounded: models and tiers come from the catalog (anything else becomes "other"),
backends, statuses, strategies, reasons and causes from small fixed sets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import lru_cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from .chat import Outcome
from .procstat import Process
from .smart_router import Decision

# Up to the 180 s request deadline (REQUEST_DEADLINE_SECONDS), so a slow answer lands in a bucket, not +Inf.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TPOT_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
BACKENDS = ("ollama", "anthropic", "openai_compat")
NONE = "none"
OTHER = "other"
# What ended a request (the `result` label): answered; refused as the caller's fault or by policy (4xx); failed
# (5xx); a stream that failed part-way (sent as 200: the status alone hides it); the client left mid-stream.
RESULTS = ("ok", "rejected", "error", "interrupted", "abandoned")
# Why a fallback happened (`kind` on api_gateway_fallbacks_total): a deliberate choice is not a failure.
POLICY_CAUSES = frozenset({"cascade_review", "budget_exceeded", "budget_unguarded", "paid_fallback_refused"})
CAPACITY_CAUSES = frozenset({"concurrency_cap"})
_CAUSE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_")


class _Metrics:
    def __init__(self) -> None:
        # paid: the answering model is a paid one (models.yaml `paid`), the one definition of "local share"
        self.requests = Counter("api_gateway_requests_total", "Chat requests ended, by HTTP status sent and result",
                                ["model", "backend", "tier", "status", "surface", "stream", "paid", "result"])
        self.errors = Counter("api_gateway_request_errors_total", "Chat requests that did not end in a full answer, "
                              "by cause (the error type sent, or the upstream failure that cut a stream)",
                              ["surface", "stream", "result", "cause"])
        self.duration = Histogram("api_gateway_request_duration_seconds", "Chat request latency, whole request "
                                  "(generation included)", ["model", "backend", "stream"], buckets=DURATION_BUCKETS)
        self.upstream = Histogram("api_gateway_upstream_duration_seconds", "Latency of each upstream attempt",
                                  ["backend"], buckets=DURATION_BUCKETS)
        self.ttft = Histogram("api_gateway_time_to_first_token_seconds", "Time to the first streamed token",
                              ["model", "backend"], buckets=TTFT_BUCKETS)
        self.tpot = Histogram("api_gateway_time_per_output_token_seconds", "Streams: time per output token after "
                              "the first (1 / tokens per second)", ["model"], buckets=TPOT_BUCKETS)
        self.slot_wait = Histogram("api_gateway_slot_wait_seconds", "Time a request waited for a backend's "
                                   "concurrency slot (MAX_CONCURRENT_*), got or not", ["backend", "got"],
                                   buckets=WAIT_BUCKETS)
        self.cost = Counter("api_gateway_cost", "Spend in USD from real token counts", ["model"])
        self.savings = Counter("api_gateway_savings", "USD saved against sending everything to the cloud model")
        self.tokens = Counter("api_gateway_tokens", "Tokens by model and direction", ["model", "direction"])
        self.prompt_cache = Counter("api_gateway_prompt_cache_tokens", "Input tokens the provider read from or wrote "
                                    "to its prompt cache (part of the input tokens)", ["model", "kind"])
        self.lever_savings = Counter("api_gateway_lever_savings", "USD saved by a provider price lever, against the "
                                     "same model's list price (prompt_cache: negative on writes; batch)", ["lever"])
        self.cache = Counter("api_gateway_cache", "Response cache lookups", ["result"])
        self.decisions = Counter("api_gateway_routing_decisions", "Routing decisions",
                                 ["tier", "strategy", "reason"])
        self.score = Histogram("api_gateway_complexity_score", "Complexity score of routed prompts",
                               buckets=SCORE_BUCKETS)
        # kind: failure (the decided model failed), policy (cascade review, budget), capacity (no free slot)
        self.fallbacks = Counter("api_gateway_fallbacks", "Requests answered by another backend than decided",
                                 ["from_backend", "to_backend", "cause", "kind"])
        self.paid_fallback = Counter("api_gateway_paid_fallback_cost", "USD paid for answers a local model was "
                                     "decided for and could not give (PAID_FALLBACK=cloud)", ["model"])
        self.tool_calls = Counter("api_gateway_tool_calls", "Tool calls in answers sent, by the model that made them",
                                  ["model"])
        self.exclusions = Counter("api_gateway_capability_exclusions", "Routing decisions where models were left "
                                  "out for a capability the request needs (tools, vision, json_schema)",
                                  ["capability"])
        self.invalid_answers = Counter("api_gateway_invalid_answers", "Structured answers that failed the check "
                                       "(tool name, arguments, JSON schema) and were not sent", ["model"])
        self.budget_refusals = Counter("api_gateway_budget_refusals", "Paid calls the budget could not cover (their "
                                       "worst case reserved): refused, or moved to the next model", ["model"])
        self.in_flight = Gauge("api_gateway_in_flight_requests", "Chat requests being served now",
                               multiprocess_mode="livesum")
        self.slot_queue = Gauge("api_gateway_slot_waiting", "Requests waiting now for a capped backend's slot",
                                ["backend"], multiprocess_mode="livesum")
        self.cold_loads = Counter("api_gateway_ollama_cold_loads", "Calls sent to an Ollama host that did not have "
                                  "the model loaded (it loads it first): several hosts only", ["host"])
        self.shadow = Counter("api_gateway_shadow_labels", "Shadow labels for the learning router: labelled (by "
                              "judge), skipped, failed or dropped, with why", ["result", "reason"])
        self.calibration_cost = Counter("api_gateway_calibration_cost", "USD paid for shadow answers and "
                                        "judgements (also in api_gateway_cost)", ["model"])
        # Set by each worker when its breaker opens or closes; a scrape shows the most of the live workers', so
        # one worker's open circuit reads open whichever worker answers.
        self.circuit = Gauge("api_gateway_circuit_open", "1 while the backend's circuit breaker is open (or probing) "
                             "in any worker", ["backend"], multiprocess_mode="livemax")


@lru_cache(maxsize=1)
def metrics() -> _Metrics:
    """Created on first use (not at import), once per process."""
    return _Metrics()


class Telemetry:
    """Records outcomes; bounded labels; scrape-time gauges from a callback."""

    def __init__(self, models: Iterable[str], tiers: Iterable[str], paid: Iterable[str] = ()):
        self.models, self.tiers, self.paid = frozenset(models), frozenset(tiers), frozenset(paid)
        self.m = metrics()
        self._children: dict[tuple, object] = {}

    def _labels(self, metric, *values: str):
        """metric.labels(*values), remembered: prometheus_client validates and locks on every labels() call,
        and the label sets here are few and bounded."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _model(self, name: str | None) -> str:
        return name if name in self.models else (NONE if not name else OTHER)

    def _tier(self, name: str | None) -> str:
        return name if name in self.tiers else (NONE if not name else OTHER)

    @staticmethod
    def _backend(name: str | None) -> str:
        return name if name in BACKENDS else NONE

    @staticmethod
    def _cause(cause: str | None) -> str:
        """Error types are the code's own constants; anything else (never expected) is "other"."""
        if not cause:
            return NONE
        return cause if len(cause) <= 40 and _CAUSE_CHARS.issuperset(cause) else OTHER

    def request(self, outcome: Outcome | None, decision: Decision | None, status: int, seconds: float,
                surface: str = "native", stream: bool = False, result: str = "ok", cause: str | None = None,
                first_token: float | None = None, streamed_from: tuple[str, str] | None = None) -> None:
        """One per chat request, when its response is complete (streams: when the stream ends). result: one of
        RESULTS; cause: why it is not "ok"; first_token: a stream's time to its first token; streamed_from: the
        (model, backend) a stream came from, which an interrupted one has without an outcome."""
        model_name, backend_name = (outcome.model, outcome.backend) if outcome else streamed_from or (None, None)
        model, backend = self._model(model_name), self._backend(backend_name)
        tier = self._tier(outcome.tier if outcome else (decision.tier if decision else None))
        streamed = "true" if stream else "false"
        paid = "true" if model in self.paid else "false"
        self._labels(self.m.requests, model, backend, tier, str(status), surface, streamed, paid, result).inc()
        self._labels(self.m.duration, model, backend, streamed).observe(seconds)
        if result != "ok":
            self._labels(self.m.errors, surface, streamed, result, self._cause(cause)).inc()
        elif first_token is not None and outcome is not None and not outcome.cached:
            produced = outcome.completion.usage.output_tokens
            if produced > 1:
                self._labels(self.m.tpot, model).observe(max(0.0, outcome.latency_seconds - first_token)
                                                         / (produced - 1))

    def decision(self, decision: Decision) -> None:
        self._labels(self.m.decisions, self._tier(decision.tier), decision.strategy, decision.reason_code).inc()
        self.m.score.observe(decision.score)
        for capability in decision.exclusions:  # from CAPABILITIES: bounded
            self._labels(self.m.exclusions, capability).inc()

    def outcome(self, outcome: Outcome, cloud_cost: float) -> None:
        model = self._model(outcome.model)
        usage = outcome.completion.usage
        self.m.savings.inc(max(0.0, cloud_cost - outcome.cost))
        if outcome.cached:
            return  # no model worked for a cache hit: no tokens, no cost, no upstream time
        self._labels(self.m.cost, model).inc(outcome.cost)
        if outcome.paid_fallback:  # local models down: what that cost, for the PaidFallbackSpend alert
            self._labels(self.m.paid_fallback, model).inc(outcome.cost)
        self._labels(self.m.tokens, model, "input").inc(usage.input_tokens)
        self._labels(self.m.tokens, model, "output").inc(usage.output_tokens)
        if usage.cached:
            self._labels(self.m.prompt_cache, model, "read").inc(usage.cache_read_tokens)
            self._labels(self.m.prompt_cache, model, "write").inc(usage.cache_write_tokens
                                                                 + usage.cache_write_1h_tokens)
        if outcome.completion.tool_calls:
            self._labels(self.m.tool_calls, model).inc(len(outcome.completion.tool_calls))
        for attempt in outcome.attempts:
            if attempt.outcome != "skipped":
                self._labels(self.m.upstream, self._backend(attempt.backend)).observe(attempt.latency_seconds)
            if attempt.error_type == "invalid_answer":
                self._labels(self.m.invalid_answers, self._model(attempt.model)).inc()
        decided = outcome.decision
        if decided is not None and not outcome.cached and outcome.model != decided.model:
            cause = next((a.error_type for a in outcome.attempts if a.outcome != "ok" and a.error_type), "unknown")
            kind = "policy" if cause in POLICY_CAUSES else "capacity" if cause in CAPACITY_CAUSES else "failure"
            self._labels(self.m.fallbacks, self._backend(decided.backend), self._backend(outcome.backend),
                         self._cause(cause), kind).inc()

    def lever_saved(self, lever: str, usd: float) -> None:
        """lever: prompt_cache or batch (bounded). Counters only go up: a net loss (a cache write never read
        again) shows in the spend, not here."""
        if usd > 0:
            self._labels(self.m.lever_savings, lever).inc(usd)

    def charge(self, model: str, cost: float) -> None:
        """What a failed paid try was charged (gateway/billing.py): spend like any other."""
        self._labels(self.m.cost, self._model(model)).inc(cost)

    def shadow(self, result: str, reason: str) -> None:
        """result: labelled, skipped, failed, dropped; reason: the judge (exact, pairwise, pairwise_split: a
        verdict that flipped with the order, the judge's own noise), a BackendError kind or a fixed word."""
        self._labels(self.m.shadow, result, reason if reason.isidentifier() else OTHER).inc()

    def shadow_cost(self, model: str, cost: float) -> None:
        self.charge(model, cost)  # spend like any other, and apart
        self._labels(self.m.calibration_cost, self._model(model)).inc(cost)

    def first_token(self, model: str, backend: str, seconds: float) -> None:
        self._labels(self.m.ttft, self._model(model), self._backend(backend)).observe(seconds)

    def slot_queue(self, backend: str, delta: int) -> None:
        self._labels(self.m.slot_queue, self._backend(backend)).inc(delta)

    def cold_load(self, host: str) -> None:
        """host: one of OLLAMA_URLS (bounded by the configuration)."""
        self._labels(self.m.cold_loads, host).inc()

    def slot_wait(self, backend: str, seconds: float, got: bool) -> None:
        self._labels(self.m.slot_wait, self._backend(backend), "true" if got else "false").observe(seconds)

    def cache(self, result: str) -> None:
        self._labels(self.m.cache, result).inc()

    def in_flight(self, delta: int) -> None:
        self.m.in_flight.inc(delta)

    def budget_refusal(self, model: str) -> None:
        self._labels(self.m.budget_refusals, self._model(model)).inc()

    def circuit(self, backend: str, opened: bool) -> None:
        self._labels(self.m.circuit, self._backend(backend)).set(1.0 if opened else 0.0)


def gauges(backends: dict[str, bool], budget: tuple[float, float | None] | None,
           gpus: Iterable, redis_up: bool | None = None, key_spend: dict[str, float] | None = None,
           loaded: dict[tuple[str, str], bool] | None = None, processes: Iterable[Process] = (),
           hosts: dict[str, tuple[bool, int]] | None = None, calibration: dict | None = None) -> list:
    """The scrape-time gauges: backends {name: up}, budget (spent, limit, reserved), GPU samples, whether the
    shared-state Redis answers (absent without REDIS_URL), this month's spend per configured key, which local
    models are loaded {(model, backend): loaded}, the gunicorn processes' memory and CPU, and with several Ollama
    hosts each one's {url: (up, calls in flight)}. Circuits are a worker gauge (Telemetry.circuit)."""
    up = GaugeMetricFamily("api_gateway_backend_up", "1 when the backend answers its health check", labels=["backend"])
    for name, ok in sorted(backends.items()):
        up.add_metric([name], 1.0 if ok else 0.0)
    out = [up]
    if key_spend is not None:
        keys = GaugeMetricFamily("api_gateway_key_spend_dollars", "Spend this UTC month per API key (the key's "
                                 "id: a SHA-256 prefix, as in stats and logs)", labels=["key"])
        for key, usd in sorted(key_spend.items()):
            keys.add_metric([key], usd)
        out.append(keys)
    if loaded is not None:
        warm = GaugeMetricFamily("api_gateway_model_loaded", "1 while the installed local model is loaded in "
                                 "memory (Ollama /api/ps), 0 when it would load cold", labels=["model", "backend"])
        for (model, backend), is_loaded in sorted(loaded.items()):
            warm.add_metric([model, backend], 1.0 if is_loaded else 0.0)
        out.append(warm)
    if hosts:  # several Ollama hosts (OLLAMA_URLS: the configured list, a bounded label)
        host_up = GaugeMetricFamily("api_gateway_ollama_host_up", "1 when the Ollama host answered its last "
                                    "health check", labels=["host"])
        busy = GaugeMetricFamily("api_gateway_ollama_host_in_flight", "Calls in flight on the Ollama host, "
                                 "every worker and replica", labels=["host"])
        for url, (ok, in_flight) in sorted(hosts.items()):
            host_up.add_metric([url], 1.0 if ok else 0.0)
            busy.add_metric([url], float(in_flight))
        out += [host_up, busy]
    processes = list(processes)
    if processes:
        rss = GaugeMetricFamily("api_gateway_process_resident_memory_bytes", "Resident memory of each gunicorn "
                                "process (master and workers)", labels=["pid", "role"])
        cpu = CounterMetricFamily("api_gateway_process_cpu_seconds", "CPU time (user + system) of each gunicorn "
                                  "process", labels=["pid", "role"])
        for p in processes:
            rss.add_metric([str(p.pid), p.role], float(p.rss_bytes))
            cpu.add_metric([str(p.pid), p.role], p.cpu_seconds)
        out += [rss, cpu]
    if calibration is not None:
        out += _calibration_gauges(calibration)
    if redis_up is not None:
        out.append(GaugeMetricFamily("api_gateway_redis_up", "1 when the shared-state Redis answers a PING",
                                     value=1.0 if redis_up else 0.0))
    if budget is not None:
        spent, limit, reserved = budget
        out.append(GaugeMetricFamily("api_gateway_budget_spent_dollars", "Spend this UTC month (USD)", value=spent))
        out.append(GaugeMetricFamily("api_gateway_budget_limit_dollars", "Monthly budget (USD); 0 = no budget",
                                     value=limit or 0.0))
        # what paid calls in flight (and Message Batches) hold: the budget refuses on spent + reserved, so spend
        # alone can sit well under the limit while every paid call is refused
        out.append(GaugeMetricFamily("api_gateway_budget_reserved_dollars", "Worst cases reserved for paid calls "
                                     "in flight and batches this UTC month (USD)", value=reserved))
    families = {
        "memory_total_bytes": "GPU memory in total", "memory_used_bytes": "GPU memory in use",
        "utilization_ratio": "GPU busy share (0-1)", "temperature_celsius": "GPU temperature",
        "power_watts": "GPU power draw",
    }
    gpus = list(gpus)
    out.append(GaugeMetricFamily("api_gateway_gpu_count", "GPUs the gateway can see", value=len(gpus)))
    for field, help_text in families.items():
        fam = GaugeMetricFamily(f"api_gateway_gpu_{field}", help_text, labels=["gpu"])
        for g in gpus:
            value = getattr(g, field)
            if value is not None:
                fam.add_metric([f"{g.index}:{g.name}"], float(value))
        out.append(fam)
    return out


def _calibration_gauges(c: dict) -> list:
    """The learning router (gateway/calibration/runtime.py Calibrator.gauges())."""
    out = [GaugeMetricFamily("api_gateway_calibration_labels", "Labels kept for the learning router (feedback "
                             "and shadow)", value=float(c["labels"])),
           GaugeMetricFamily("api_gateway_calibration_target_quality", "routing.target_quality (0: not set)",
                             value=float(c["target"] or 0.0)),
           GaugeMetricFamily("api_gateway_calibration_spend_dollars", "Shadow answers and judgements this UTC "
                             "month (USD)", value=float(c["spent"])),
           GaugeMetricFamily("api_gateway_calibration_budget_dollars", "CALIBRATION_BUDGET_USD",
                             value=float(c["budget"])),
           GaugeMetricFamily("api_gateway_calibration_drifted", "1 when the newest labels fall short of the target "
                             "at the threshold in force", value=1.0 if c["drifted"] else 0.0)]
    used = GaugeMetricFamily("api_gateway_calibration_labels_used", "Labels the version in force learned from, "
                             "by source", labels=["source"])
    for source, n in sorted(c["used"].items()):
        used.add_metric([source if source.isidentifier() else OTHER], float(n))
    out.append(used)
    est = c["estimate"]
    if est:
        quality = GaugeMetricFamily("api_gateway_calibration_quality", "Estimated share of the cloud model's quality "
                                    "kept at the threshold in force, with its interval", labels=["bound"])
        share = GaugeMetricFamily("api_gateway_calibration_cloud_share", "Estimated share of requests sent to the "
                                  "cloud at the threshold in force, with its interval", labels=["bound"])
        for fam, key in ((quality, "quality"), (share, "cloud_share")):
            fam.add_metric(["estimate"], float(est[key]))
            fam.add_metric(["lower"], float(est[f"{key}_interval"][0]))
            fam.add_metric(["upper"], float(est[f"{key}_interval"][1]))
        out += [quality, share]
    if c["thresholds"]:
        th = GaugeMetricFamily("api_gateway_calibration_threshold", "Score at or above which a prompt goes to the "
                               "cloud, by task cluster (* : the rest)", labels=["cluster"])
        for cluster, value in sorted(c["thresholds"].items()):
            th.add_metric([cluster], float(value))
        out.append(th)
    return out


class _ScrapeTimeGauges:
    """Gauges computed when scraped (backend state, budget, GPU), so they are never stale."""

    def __init__(self, sample: Callable[[], list[GaugeMetricFamily]]):
        self.sample = sample

    def collect(self):
        yield from self.sample()


def render(sample: Callable[[], list[GaugeMetricFamily]]) -> bytes:
    """The /metrics body: every worker's counters (multiprocess) plus this scrape's gauges."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
        registry.register(_ScrapeTimeGauges(sample))
        return generate_latest(registry)
    from prometheus_client import REGISTRY

    metrics()  # make sure the process metrics exist even before the first request
    registry.register(_ScrapeTimeGauges(sample))
    return generate_latest(REGISTRY) + generate_latest(registry)
