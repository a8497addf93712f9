"""The learning router at run time: what the request path asks of it, and the background work behind it.

On the request path (cheap, no extra round trip): `current` is the model, thresholds and version the decision
uses, read from memory; `observe()` keeps the answered request's features for feedback (batched with the
request's other writes) and, for a sampled share, queues a shadow label (gateway/calibration/shadow.py).

In the background, one thread per worker: every few seconds it looks up the version in force in Redis (one
GET) and loads a new one when it changed, so every worker and replica routes with the same version; every
CALIBRATION_REFIT_SECONDS one worker of the fleet (a Redis lock) refits from the labels
(gateway/calibration/calibrate.py) and publishes the result as a new version, unless nothing new was
labelled or refits are held after a rollback.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time

from ..catalog import ModelSpec
from ..chat import ChatRequest, Outcome
from ..learned_router import LearnedRouter, features
from ..smart_router import Decision, estimate_complexity
from ..state import StateUnavailable
from ..state.budget import month_of
from . import calibrate, sampler
from .labels import Label, cluster_of, decode_features, encode_features, feedback_label, same_space
from .shadow import Job, ShadowRunner

log = logging.getLogger("gateway.calibration")
REFRESH_SECONDS = 5.0
BUCKETS = 2**14  # the feature space when no learned model is loaded (ROUTER=heuristic)
SHIPPED = "shipped"  # the version name of the weights the gateway started with


class Calibrator:
    def __init__(self, settings, state, dispatcher=None, telemetry=None):
        """dispatcher None (the CLI): no shadow labels, only the versions in Redis."""
        self.settings, self.state, self.store = settings, state, state.calibration
        self.prior: LearnedRouter | None = settings.learned
        self.target = settings.catalog.routing.target_quality
        self.buckets = self.prior.buckets if self.prior else BUCKETS
        self.current = self._shipped()  # the model, thresholds and version every decision uses
        self._loaded: str | None = None
        self.published: dict = {}  # the version in force's figures (not its weights)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refit_due = time.monotonic() + settings.calibration_refit_seconds
        self._paid = {m.name for m in settings.catalog.models if m.paid}
        self.shadow = ShadowRunner(settings, dispatcher, telemetry, self.add_label) \
            if dispatcher is not None and settings.calibration_rate > 0 else None
        self._cloud = self._cloud_model()
        self._boundary = self._cloud_boundary()

    @property
    def learns(self) -> bool:
        """Something learns from labels: a learned router to refit, a target to calibrate, or shadow labels to
        gather. Otherwise (the default: ROUTER=heuristic, no target) nothing is kept per request, so plain chat
        pays nothing for a router that is not learning."""
        return self.refits or self.shadow is not None

    @property
    def refits(self) -> bool:
        """A learned router to refit, or a target to calibrate: the background job has work."""
        return self.settings.router != "heuristic" or self.target is not None

    @property
    def remembers(self) -> bool:
        return self.learns and (self.settings.feedback_ttl_seconds > 0 or self.shadow is not None
                                or self.target is not None)

    # ------------------------------------------------------------------ background
    def start(self) -> None:
        """The background job, where it has work (`refits`); nothing otherwise."""
        if self._thread is None and self.refits:
            self.refresh()
            self._thread = threading.Thread(target=self._loop, name="calibration", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self.shadow is not None:
            self.shadow.close()

    def _loop(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            try:
                self.refresh()
                if time.monotonic() >= self._refit_due:
                    self._refit_due = time.monotonic() + self.settings.calibration_refit_seconds
                    self.refit()
            except StateUnavailable:
                pass  # Redis away: keep routing with the version in force
            except Exception:  # never take the worker down; the log has no prompt text
                log.exception("calibration job failed")

    def refresh(self) -> None:
        """Load the version in force if it changed (one GET when it did not)."""
        try:
            version = self.store.current()
        except StateUnavailable:
            return
        if version == self._loaded:
            return
        if version is None:
            self.current = self._shipped()
            self.published = {}
        else:
            payload = self.store.payload(version)
            if payload is None:
                return
            model = LearnedRouter.from_json(payload["model"], f"calibration {version}") if payload.get("model") \
                else self.prior
            self.current = calibrate.Calibration(model, dict(payload.get("thresholds") or {}), version=version,
                                                 time=float(payload.get("time", 0.0)))
            self.published = {k: v for k, v in payload.items() if k != "model"}
        self._loaded = version
        log.info("routing with calibration version %s", self.current.version)

    def _shipped(self) -> calibrate.Calibration:
        return calibrate.Calibration(self.prior, version=self.prior.version if self.prior else SHIPPED)

    def refit(self, force: bool = False) -> dict | None:
        """Refit and publish a new version from the labels; None when there was nothing to do (no new
        labels, refits held after a rollback, or another worker is at it)."""
        if self.store.held() and not force:
            return None
        if not self.store.lock(300):
            return None
        try:
            rows = [r for r in self.store.labels(self.settings.calibration_max_labels)
                    if same_space(r["x"], self.buckets)]
            if not rows:
                return None
            newest = max(r.get("t", 0.0) for r in rows)
            last = self.store.history(1)
            if not force and last and last[0].get("labels") == len(rows) and last[0].get("newest") == newest \
                    and last[0].get("event") == "refit":
                return None
            labels = sorted((Label.from_dict(r) for r in rows), key=lambda lb: lb.time)
            traffic = self._traffic()
            started = time.perf_counter()
            cal = calibrate.run(self.prior, labels, router=self.settings.router, target=self.target,
                                traffic=traffic, in_force=self.current)
            seconds = round(time.perf_counter() - started, 3)
            learns = self.prior is not None and self.settings.router != "heuristic"
            digest = hashlib.sha256(repr(sorted(cal.thresholds.items())).encode()).hexdigest()[:6]
            version = (cal.model.version if learns and cal.model is not None else f"{SHIPPED}+{len(labels)}") \
                + f".{digest}"
            by_source: dict[str, int] = {}
            for lb in labels:
                by_source[lb.source] = by_source.get(lb.source, 0) + 1
            summary = {"event": "refit", "version": version, "time": _now(), "labels": len(rows), "newest": newest,
                       "by_source": by_source, "threshold": cal.thresholds.get("*"), "seconds": seconds,
                       **({"quality": cal.estimate.quality, "cloud_share": cal.estimate.cloud_share}
                          if cal.estimate else {})}
            payload = {"version": version, "time": summary["time"], "router": self.settings.router,
                       "target_quality": self.target, "model": cal.model.to_json() if learns and cal.model else None,
                       "thresholds": cal.thresholds, "estimate": cal.estimate.as_dict() if cal.estimate else None,
                       "by_cluster": {k: v.as_dict() for k, v in cal.by_cluster.items()}, "drift": cal.drift,
                       "labels": len(rows), "by_source": by_source, "traffic": len(traffic), "seconds": seconds}
            self.store.publish(version, payload, summary)
            self.store.trim(self.settings.calibration_max_labels)
            self.refresh()
            log.info("calibration refit: version %s from %d labels in %.2f s", version, len(rows), seconds)
            return payload
        finally:
            self.store.unlock()

    def _traffic(self) -> list[Label]:
        out = []
        for r in self.store.recent(calibrate.TRAFFIC):
            p = float(r.get("p", 0.0))
            if p < 1.0 and not r.get("l") and same_space(r["x"], self.buckets):  # unlabelled, weighted back
                out.append(Label(decode_features(r["x"]), float(r["h"]), 0.0, 0.0, 1.0 / (1.0 - p), "traffic",
                                 str(r.get("c", "general"))))
        return out

    def rollback(self, to: str | None = None) -> dict:
        """Put back the version before the one in force (or `to`: a version in the history, or "shipped"),
        and hold refits until resume(): the labels that made a bad refit would make it again."""
        current = self.store.current()
        history = [h for h in self.store.history() if h.get("event") == "refit"]
        if to is None:
            if current is None:
                raise ValueError("the shipped weights are in force: nothing before them (--to VERSION picks one "
                                 "from the history)")
            idx = next((i for i, h in enumerate(history) if h["version"] == current), None)
            to = history[idx + 1]["version"] if idx is not None and idx + 1 < len(history) else SHIPPED
        if to != SHIPPED and self.store.payload(to) is None:
            raise ValueError(f"version {to!r} is not kept (the history keeps the last 50)")
        self.store.set_current(None if to == SHIPPED else to, {"event": "rollback", "version": to, "from": current,
                                                                "time": _now()}, hold=True)
        self.refresh()
        return {"version": to, "from": current, "refits_held": True}

    def resume(self) -> dict:
        current = self.store.current()
        self.store.set_current(current, {"event": "resume", "version": current or SHIPPED, "time": _now()},
                               hold=False)
        return {"version": current or SHIPPED, "refits_held": False}

    # ------------------------------------------------------------------ request path
    def observe(self, request: ChatRequest, outcome: Outcome, version: str) -> None:
        """An answered request: keep its features for feedback and maybe queue a shadow label."""
        if not self.remembers or not request.request_id:
            return
        decision = outcome.decision
        if decision is None:
            return
        paid = outcome.model in self._paid
        prompt = request.prompt
        x = features(prompt, self.buckets)
        heuristic = decision.factors.get("heuristic", decision.score) if self.settings.router != "learned" \
            else estimate_complexity(prompt, self.settings.catalog.routing)[0]
        cluster = cluster_of(prompt)
        job_model, judge_model = None, None
        p = 0.0
        if self.shadow is not None and not outcome.cached and not decision.explicit and _plain(request) \
                and decision.strategy != "local-only" and outcome.completion.finish_reason in ("stop", "length"):
            job_model, judge_model = self._shadow_models(decision, paid)
            if job_model is not None:
                threshold = self.current.threshold_for(cluster)
                if threshold is None:
                    threshold = self._boundary
                p = sampler.probability(decision.score, threshold, self.settings.calibration_rate)
        record = {"k": request.api_key_id or "", "m": outcome.model, "paid": paid, "x": encode_features(x),
                  "h": heuristic, "c": cluster, "s": decision.score, "v": version, "p": round(p, 6), "t": _now()}
        if self.settings.calibration_keep_prompts:
            record["prompt"] = prompt[:8192]
        sampled = p > 0 and random.random() < p
        # the traffic sample matters only to a calibration (the share a threshold sends to the cloud)
        recent = {"x": record["x"], "h": heuristic, "c": cluster, "p": round(p, 6), "l": sampled} \
            if self.target is not None else None
        self.store.remember(_scoped(request.api_key_id, request.request_id), record,
                            self.settings.feedback_ttl_seconds, recent)
        if sampled:
            label = Label(x, heuristic, 0.0, 0.0, 1.0 / p, "shadow", cluster,
                          meta={"version": version, "answered_by": outcome.model})
            assert self.shadow is not None and job_model is not None
            self.shadow.offer(Job(request, outcome.completion.text, paid, job_model, judge_model, p, label))

    def _cloud_model(self) -> ModelSpec | None:
        """The model that answers and judges in the shadow of a local answer: the most capable tier's first paid
        model with a configured backend, when there is a calibration budget to pay it from."""
        if self.shadow is None or self.settings.calibration_budget_usd <= 0:
            return None
        catalog, configured = self.settings.catalog, self.shadow.upstreams.backends
        return next((m for t in reversed(catalog.tiers) for m in catalog.models_in(t.name)
                     if m.paid and m.backend in configured), None)

    def _shadow_models(self, decision: Decision, paid: bool) -> tuple[ModelSpec | None, ModelSpec | None]:
        """(the model that answers in the shadow, the judge): the cloud model for a local answer, the first
        local model of the plan for a cloud one (free); the judge is the cloud model."""
        if not paid:
            return self._cloud, self._cloud
        configured = self.shadow.upstreams.backends if self.shadow is not None else {}
        local = next((self.settings.catalog.model(c.model) for c in decision.plan
                      if c.model not in self._paid and c.backend in configured), None)
        return local, self._cloud

    def _cloud_boundary(self) -> float:
        """Without a calibrated threshold: the score at which the tiers send a prompt to the cloud."""
        tiers = [t for t in self.settings.catalog.tiers if t.min_deployment_tier <= self.settings.deployment_tier]
        local = [t for t in tiers if not all(m.paid for m in self.settings.catalog.models_in(t.name))]
        return local[-1].max_score if local else 0.0

    def add_label(self, label_id: str, label: Label) -> None:
        self.store.put_label(label_id, label.as_dict(), label.time or time.time())

    # ------------------------------------------------------------------ feedback and report
    def feedback(self, request_id: str, caller: str | None, given: dict) -> dict | None:
        """Store a user's feedback on an answered request; None when the request is unknown to this caller
        (expired, never answered, or another key's). Idempotent: the request's one label is replaced."""
        scoped = _scoped(caller, request_id)  # a request id is the client's to choose: keys never share one
        record = self.store.request(scoped)
        if record is None:
            return None
        qualities = feedback_label(bool(record.get("paid")), score=given.get("score"), label=given.get("label"),
                                   preferred=given.get("preferred"))
        first = self.store.put_feedback(scoped, {**given, "time": _now()},
                                        max(self.settings.feedback_ttl_seconds, 3600))
        if qualities is not None:
            meta = {"version": record.get("v"), "answered_by": record.get("m")}
            if self.settings.calibration_keep_prompts and record.get("prompt"):
                meta["prompt"] = record["prompt"]
            label = Label(decode_features(record["x"]), float(record["h"]), qualities[0], qualities[1], 1.0,
                          "feedback", str(record.get("c", "general")), time.time(), meta)
            self.add_label(f"fb:{scoped}", label)
        return {"request_id": request_id, "accepted": True, "replaced": not first,
                "learned_from": qualities is not None, "answered_by": record.get("m"),
                **({"label": {"local": qualities[0], "cloud": qualities[1]}} if qualities else
                   {"note": "a rating of a cloud answer says nothing about local routing: kept, not learned from; "
                            "'preferred' says which side should have answered"})}

    def report(self) -> dict:
        """GET /api/v1/calibration: labels so far, the estimate and threshold in force, the history."""
        month = month_of(time.time())
        pub = self.published
        counts: dict[str, int] = {}
        for label_id in self.store.label_ids():  # ids only: "fb:" feedback, "sh:" shadow
            source = _SOURCES.get(label_id[:3], "other")
            counts[source] = counts.get(source, 0) + 1
        return {
            "router": self.settings.router, "target_quality": self.target, "version": self.current.version,
            "refits_held": self.store.held(), "refit_every_seconds": self.settings.calibration_refit_seconds,
            "labels": {"total": sum(counts.values()), "by_source": counts, "in_force_from": pub.get("labels", 0)},
            "threshold": {"in_force": self.current.thresholds or None,
                          "tiers_boundary": None if self.current.thresholds else self._boundary},
            "estimate": pub.get("estimate"), "by_cluster": pub.get("by_cluster", {}), "drift": pub.get("drift"),
            "history": self.store.history(),
            "shadow": {"rate": self.settings.calibration_rate, "budget_usd": self.settings.calibration_budget_usd,
                       "spent_this_month_usd": round(self.store.spend(month), 6), "month": month},
            "feedback_ttl_seconds": self.settings.feedback_ttl_seconds,
        }

    def gauges(self) -> dict | None:
        """What /metrics shows of it (scrape time): one ZCARD and one GET, the rest from memory; None (no
        round trip, no series) where nothing learns."""
        if not self.learns:
            return None
        pub = self.published
        est = pub.get("estimate") or {}
        return {"labels": self.store.label_count(), "used": pub.get("by_source", {}), "target": self.target,
                "estimate": est, "thresholds": self.current.thresholds,
                "drifted": bool((pub.get("drift") or {}).get("drifted")),
                "spent": self.store.spend(month_of(time.time())), "budget": self.settings.calibration_budget_usd}


_SOURCES = {"fb:": "feedback", "sh:": "shadow"}


def _scoped(key_id: str | None, request_id: str) -> str:
    """The request as stored: under its key (X-Request-ID is the client's: two keys may send the same id)."""
    return f"{key_id or '-'}:{request_id}"


def _plain(request: ChatRequest) -> bool:
    """Text in, text out: the judge compares text (tool calls, schemas and images are checked otherwise)."""
    return not request.tools and request.response_format is None and not request.needs and not request.image_urls


def _now() -> float:
    return round(time.time(), 3)
