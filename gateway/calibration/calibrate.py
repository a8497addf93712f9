"""One calibration run: refit the learned router from the labels and pick the thresholds that keep
`routing.target_quality`, globally and per task cluster with enough labels. Pure: the refit job
(gateway/calibration/runtime.py) and scripts/replay_calibration.py both run it.

The model learns from every label kept (CALIBRATION_MAX_LABELS). The thresholds are chosen on out-of-fold
scores (two halves, each scored by a model refit on the other), so the labels that trained the model do not
flatter it, and on the newest WINDOW labels only (a sliding window: traffic drifts); drift is flagged when
the labels that came after the version in force fall short of the target at its thresholds, beyond the
bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..learned_router import LearnedRouter
from . import threshold as th
from .labels import CLUSTERS, Label
from .learn import refit

WINDOW = 4000
CLUSTER_MIN = 150  # labels a cluster needs for its own threshold
NOISE = 0.15       # the share of labels assumed wrong (routing.label_noise): judges err
TRAFFIC = 2000     # recent unlabelled requests whose scores turn a cloud share into a threshold


@dataclass(frozen=True)
class Calibration:
    """One run's result; in force (gateway/calibration/runtime.py), with its version and publication time."""
    model: LearnedRouter | None                       # the refit model (None: the router learns nothing)
    thresholds: dict[str, float] = field(default_factory=dict)  # "*" and clusters -> score threshold
    estimate: th.Estimate | None = None
    by_cluster: dict[str, th.Estimate] = field(default_factory=dict)
    drift: dict | None = None
    labels: int = 0
    version: str = ""
    time: float = 0.0

    def threshold_for(self, cluster: str) -> float | None:
        return self.thresholds.get(cluster, self.thresholds.get("*"))


def scorer(router: str, model: LearnedRouter | None) -> Callable[[Label], float]:
    """The score the router gives a labelled prompt, from its features (the label has no text)."""
    if router == "heuristic" or model is None:
        return lambda lb: lb.heuristic
    if router == "learned":
        return lambda lb: model.score_of(lb.x)
    w = model.hybrid_weight
    return lambda lb: round(w * model.score_of(lb.x) + (1 - w) * lb.heuristic, 4)


def run(prior: LearnedRouter | None, labels: Sequence[Label], *, router: str, target: float | None,
        traffic: Sequence[Label] = (), noise: float = NOISE, window: int = WINDOW, cluster_min: int = CLUSTER_MIN,
        in_force: Calibration | None = None, **fit: float) -> Calibration:
    """Labels oldest first; `traffic`: recent unlabelled requests' features, each weighted 1 / (1 - the
    probability it had of being sampled) (the share of traffic a threshold sends to the cloud is read there:
    the full model has learned the labels and scores them apart). Without a prior (ROUTER=heuristic) only the
    thresholds are calibrated."""
    labels = list(labels)
    learns = prior is not None and router != "heuristic"
    model = refit(prior, labels, **fit) if learns else prior  # learns from every label kept
    recent = labels[-window:]  # the thresholds: from the newest only (traffic drifts)
    # A model scored on the labels it learned from looks better than it is: with learning, thresholds come
    # from out-of-fold scores only, which needs two halves of MIN_LABELS each.
    if target is None or len(recent) < th.MIN_LABELS * (2 if learns else 1):
        return Calibration(model, labels=len(labels))
    if learns:
        start = len(labels) - len(recent)
        halves = labels[0::2], labels[1::2]
        score_a, score_b = (scorer(router, refit(prior, h, **fit)) for h in halves)
        scored = [(lb, (score_b if (start + i) % 2 == 0 else score_a)(lb)) for i, lb in enumerate(recent)]
    else:
        score = scorer(router, model)
        scored = [(lb, score(lb)) for lb in recent]
    points = [(lb, th.Point(s, lb.local, lb.cloud, lb.weight)) for lb, s in scored]
    # Out-of-fold scores are on the half models' scales: what carries over to the full model is the cloud
    # share, turned into a threshold on the full model's scores of recent unlabelled traffic.
    final = scorer(router, model)
    seen = list(traffic)
    overall = th.choose([p for _, p in points], target, noise=noise)
    thresholds: dict[str, float] = {"*": _carry(overall, seen, final)} if overall else {}
    by_cluster = {}
    for cluster in CLUSTERS:
        mine = [p for lb, p in points if lb.cluster == cluster]
        if len(mine) >= cluster_min:
            est = th.choose(mine, target, noise=noise)
            if est is not None:
                by_cluster[cluster] = est
                thresholds[cluster] = _carry(est, [lb for lb in seen if lb.cluster == cluster], final)
    drift = _drift(recent, in_force, router, target) if in_force is not None else None
    return Calibration(model, thresholds, overall, by_cluster, drift, len(labels))


def _carry(est: th.Estimate, labels: Sequence[Label], score: Callable[[Label], float]) -> float:
    """The threshold on `score` that sends the estimate's cloud share of this traffic to the cloud; without
    traffic (every request labelled), the out-of-fold threshold itself (the half models score on nearly the
    full model's scale; the full model's scores of its own labels would not do: it has learned them)."""
    if est.threshold >= th.NEVER or not labels:
        return est.threshold
    ranked = sorted(((score(lb), lb.weight) for lb in labels), reverse=True)
    total, taken = sum(w for _, w in ranked), 0.0
    for s, w in ranked:
        taken += w
        if taken >= est.cloud_share * total - 1e-9:
            return s
    return ranked[-1][0]


def _drift(labels: Sequence[Label], in_force: Calibration, router: str, target: float) -> dict | None:
    """How the version in force does on the labels that came after it (it never learned from them), scored by
    its own model at its own thresholds: drifted when even the upper bound of that quality misses the target."""
    fresh = [lb for lb in labels if lb.time > in_force.time]
    if not in_force.thresholds or len(fresh) < th.MIN_LABELS:
        return None
    score = scorer(router, in_force.model)
    sent = []
    for lb in fresh:
        t = in_force.threshold_for(lb.cluster)
        sent.append(th.Point(1.0 if t is not None and score(lb) >= t else 0.0, lb.local, lb.cloud, lb.weight))
    quality, se, share, _ = th.evaluate(sent, 0.5)
    return {"labels": len(fresh), "quality": round(quality, 4), "upper": round(quality + th.Z * se, 4),
            "cloud_share": round(share, 4), "drifted": quality + th.Z * se < target}
