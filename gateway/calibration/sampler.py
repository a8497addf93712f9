"""Which requests get a shadow label: a uniform floor plus more near the threshold in force. Pure.

p(score) = rate * (FLOOR + NEAR * max(0, 1 - |score - threshold| / WIDTH)), at most 1: half the rate anywhere
(so estimates cover every score), up to 2.5x the rate at the threshold (where a label changes the decision).
A rate of 1 labels every request. Each label keeps its p; estimates weight it 1/p.
"""

from __future__ import annotations

FLOOR, NEAR, WIDTH = 0.5, 2.0, 0.15


def probability(score: float, threshold: float | None, rate: float) -> float:
    if rate <= 0:
        return 0.0
    if rate >= 1:
        return 1.0  # every request
    near = 0.0 if threshold is None else max(0.0, 1.0 - abs(score - threshold) / WIDTH)
    return min(1.0, rate * (FLOOR + NEAR * near))
