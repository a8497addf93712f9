"""The threshold that keeps a quality target at the lowest cloud share, with a confidence bound. Pure.

Quality is the share of the cloud model's quality kept: sum(quality of the answer routing gives) / sum(the
cloud answer's quality), over labels weighted by 1 / their sampling probability. A threshold t sends a
prompt whose score is at or above t to the cloud. `choose` picks the lowest cloud share from which on every
larger share's quality has a one-sided lower bound (z = 1.96: 97.5 %) that meets the target: the condition
mean(q - target * c) >= z * its standard error, which is the ratio's bound without dividing by a noisy sum.
No threshold can be had from fewer than MIN_LABELS labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MIN_LABELS = 30
Z = 1.96  # one-sided 97.5 %: with 95 % the replay fell short in 20 % of GSM8K orders (judge noise)
NEVER = 1.01  # a threshold above every score: nothing goes to the cloud


@dataclass(frozen=True)
class Point:
    score: float
    local: float
    cloud: float
    weight: float = 1.0


@dataclass(frozen=True)
class Estimate:
    threshold: float
    labels: int
    quality: float
    quality_interval: tuple[float, float]
    cloud_share: float
    cloud_share_interval: tuple[float, float]
    met: bool  # the lower bound meets the target (else everything goes to the cloud)

    def as_dict(self) -> dict:
        return {"threshold": round(self.threshold, 4), "labels": self.labels, "quality": round(self.quality, 4),
                "quality_interval": [round(v, 4) for v in self.quality_interval],
                "cloud_share": round(self.cloud_share, 4),
                "cloud_share_interval": [round(v, 4) for v in self.cloud_share_interval], "target_met": self.met}


def choose(points: Sequence[Point], target: float, z: float = Z, noise: float = 0.0) -> Estimate | None:
    """`noise`: the share of labels assumed wrong (a judge's error swaps which side was better). Swapped labels
    shrink the gap seen between the models by (1 - 2 noise), so the quality lost must be that much smaller
    as seen: the bound must meet 1 - (1 - target) * (1 - 2 noise)."""
    if len(points) < MIN_LABELS:
        return None
    target = 1.0 - (1.0 - target) * (1.0 - 2.0 * min(noise, 0.45))
    ordered = sorted(points, key=lambda p: -p.score)
    w_sum = sum(p.weight for p in ordered)
    # d_i = routed quality - target * cloud quality; start with everything local, then move the highest
    # scores to the cloud one by one, noting at each threshold (between distinct scores) whether it holds
    d = [p.local - target * p.cloud for p in ordered]
    s1 = sum(p.weight * di for p, di in zip(ordered, d, strict=True))
    s2 = sum(p.weight ** 2 * di * di for p, di in zip(ordered, d, strict=True))
    sw2d = sum(p.weight ** 2 * di for p, di in zip(ordered, d, strict=True))
    w2 = sum(p.weight ** 2 for p in ordered)
    holds: list[tuple[int, bool]] = []
    for k in range(len(ordered) + 1):
        if k == 0 or k == len(ordered) or ordered[k].score < ordered[k - 1].score:
            mean = s1 / w_sum
            var = max(0.0, s2 - 2 * mean * sw2d + mean * mean * w2) / (w_sum * w_sum)
            holds.append((k, mean - z * math.sqrt(var) >= 0))
        if k < len(ordered):
            p = ordered[k]
            old, new = d[k], p.cloud - target * p.cloud
            s1 += p.weight * (new - old)
            s2 += p.weight ** 2 * (new * new - old * old)
            sw2d += p.weight ** 2 * (new - old)
    # The lowest cloud share from which every larger share holds too: the first share where the bound is met
    # by chance (a walk over many thresholds crosses early) would promise more than it keeps.
    k, met = holds[-1]
    for kk, ok in reversed(holds):
        if not ok:
            break
        k = kk
    threshold = NEVER if k == 0 else ordered[k - 1].score
    return _estimate(points, threshold, target, z, met=met)


def _estimate(points: Sequence[Point], threshold: float, target: float, z: float, met: bool) -> Estimate:
    quality, q_se, share, s_se = evaluate(points, threshold)
    return Estimate(threshold, len(points), quality, (max(0.0, quality - z * q_se), min(1.5, quality + z * q_se)),
                    share, (max(0.0, share - z * s_se), min(1.0, share + z * s_se)), met)


def evaluate(points: Sequence[Point], threshold: float) -> tuple[float, float, float, float]:
    """(quality, its standard error, cloud share, its standard error) at a threshold, weighted."""
    w_sum = sum(p.weight for p in points)
    routed = [(p.cloud if p.score >= threshold else p.local) for p in points]
    c_sum = sum(p.weight * p.cloud for p in points) or 1e-9
    quality = sum(p.weight * q for p, q in zip(points, routed, strict=True)) / c_sum
    q_se = math.sqrt(sum((p.weight * (q - quality * p.cloud)) ** 2
                         for p, q in zip(points, routed, strict=True))) / c_sum
    share = sum(p.weight for p in points if p.score >= threshold) / w_sum
    s_se = math.sqrt(sum((p.weight * ((p.score >= threshold) - share)) ** 2 for p in points)) / w_sum
    return quality, q_se, share, s_se
