"""Refit the learned router from labels, starting from the shipped model as the prior. Pure; never on the
request path (the refit job and scripts/replay_calibration.py call it).

The prior's weights plus, for each hashed word bucket, a smoothed log-count ratio (naive Bayes): how much
more often the bucket appears in prompts the cloud answered better than in the others. It learns from a
few dozen labels (a word seen in three hard prompts already counts) where gradient descent on the same
16,384 weights needs thousands, and it stays in the learned router's format (one weight per bucket), so
the decision costs what it did. STRENGTH scales the learned part against the prior, growing with the labels:
with few, the prior decides; with many, the traffic does.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import replace

from ..learned_router import LearnedRouter, quantile_knots
from .labels import Label

ALPHA = 3.0        # smoothing of the counts (3 beat 1 and 6 in the replay)
STRENGTH = 1.0     # the weight of the learned ratios at full strength
HALF_AT = 10       # labels at which they reach half of it
MAX_WEIGHT = 10.0  # importance weights above 10x the mean are capped


def refit(prior: LearnedRouter, labels: Sequence[Label], *, alpha: float = ALPHA, strength: float = STRENGTH,
          half_at: int = HALF_AT) -> LearnedRouter:
    """A new model from the prior and the labels (the prior itself when there are none). Deterministic."""
    if not labels:
        return prior
    buckets = prior.buckets
    mean_w = sum(lb.weight for lb in labels) / len(labels)
    pos: dict[int, float] = {}
    neg: dict[int, float] = {}
    total = [0.0, 0.0]
    for lb in labels:
        w = min(MAX_WEIGHT, lb.weight / mean_w)
        counts = pos if lb.cloud_better else neg
        total[lb.cloud_better] += w
        for i in lb.x:
            if i < buckets:
                counts[i] = counts.get(i, 0.0) + w
    beta = strength * len(labels) / (len(labels) + half_at)
    log_pos, log_neg = math.log(total[1] + 2 * alpha), math.log(total[0] + 2 * alpha)
    weights = dict(prior.weights)
    for i in pos.keys() | neg.keys():
        ratio = math.log(pos.get(i, 0.0) + alpha) - log_pos - math.log(neg.get(i, 0.0) + alpha) + log_neg
        value = round(weights.get(i, 0.0) + beta * ratio, 4)
        if abs(value) >= 5e-4:
            weights[i] = value
        else:
            weights.pop(i, None)
    model = replace(prior, weights=weights)
    if len(labels) >= 30:  # the probability -> score map, re-read from the labels (the tiers keep their shares)
        knots = quantile_knots([round(model.probability_of(lb.x), 6) for lb in labels],
                               [lb.heuristic for lb in labels], min_step=0.002)
        model = replace(model, calibration=tuple((p, round(s, 4)) for p, s in knots))
    positives = sum(lb.cloud_better for lb in labels)
    digest = hashlib.sha256(f"{prior.version}/{len(labels)}/{sorted(weights.items())}".encode()).hexdigest()
    trained_on = {"prior": prior.version, "labels": len(labels), "cloud_better": positives}
    return replace(model, version=f"{prior.version.split('+')[0]}+{len(labels)}-{digest[:8]}", trained_on=trained_on)

