"""A calibration label: what the router may learn from one request, without the request's text.

A label keeps the learned router's features of the prompt (hashed word and word-pair buckets, five shape
counts: gateway/learned_router.py), the heuristic's score, the prompt's task cluster, and how good the local
and the cloud answer were (0..1; the cloud's is 1 where only the local answer was judged). `weight` is 1 / the
probability the sampler picked the request, so estimates over sampled labels stay unbiased.
"""

from __future__ import annotations

import base64
import re
from array import array
from dataclasses import dataclass, field

from ..learned_router import DENSE, FEATURES

SOURCES = ("feedback", "shadow", "replay")
CLUSTERS = ("code", "choice", "math", "general")

_CHOICES = re.compile(r"(?m)^\s*\(?[A-Da-d][.)]\s")
_CODE = re.compile(r"```|\bdef |\bclass |\bfunction\b|;\s*$|\{\s*$|#include|\bSELECT\b", re.MULTILINE)
_CODE_HINTS = ("```", "def ", "class ", "function", ";", "{", "#include", "SELECT")  # none: no regex pass


def cluster_of(prompt: str) -> str:
    """The prompt's task cluster, cheap and stable: thresholds are calibrated per cluster where it has labels."""
    head = prompt[:4096]
    if any(h in head for h in _CODE_HINTS) and _CODE.search(head):
        return "code"
    if "\n" in head and len(_CHOICES.findall(head)) >= 3:
        return "choice"
    if sum(map(head.count, "0123456789")) >= 2:
        return "math"
    return "general"


@dataclass(frozen=True)
class Label:
    x: dict[int, float]          # the learned router's features (never the prompt)
    heuristic: float             # the heuristic's score of the prompt
    local: float                 # quality of the local model's answer, 0..1
    cloud: float                 # quality of the cloud model's answer, 0..1
    weight: float = 1.0          # 1 / the probability this request was sampled
    source: str = "shadow"
    cluster: str = "general"
    time: float = 0.0
    meta: dict = field(default_factory=dict, compare=False)  # who judged, which models: shown, not learned

    @property
    def cloud_better(self) -> int:
        return 1 if self.cloud > self.local else 0

    def as_dict(self) -> dict:
        return {"x": encode_features(self.x), "h": self.heuristic, "l": self.local, "c": self.cloud,
                "w": round(self.weight, 6), "s": self.source, "k": self.cluster, "t": round(self.time, 3),
                "m": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> Label:
        return cls(decode_features(d["x"]), float(d["h"]), float(d["l"]), float(d["c"]), float(d.get("w", 1.0)),
                   str(d.get("s", "shadow")), str(d.get("k", "general")), float(d.get("t", 0.0)), dict(d.get("m", {})))


def encode_features(x: dict[int, float]) -> dict:
    """Compact: the word buckets all carry the same value (1/sqrt(n)), so the indices (base64 of uint32) and
    that value, then the dense counts. About 3 bytes a word."""
    keys = sorted(x)  # the dense counts have the highest indices (buckets .. buckets + 4)
    dense_from = keys[-len(DENSE)] if len(keys) >= len(DENSE) else 0
    grams = array("I", keys[:-len(DENSE)])
    value = x[grams[0]] if grams else 0.0
    return {"b": dense_from, "f": FEATURES, "g": base64.b64encode(grams.tobytes()).decode(), "v": round(value, 6),
            "d": [round(x.get(dense_from + i, 0.0), 6) for i in range(len(DENSE))]}


def same_space(encoded: dict, buckets: int) -> bool:
    """Features computed the way the model in use computes them (a retrained model with other buckets or
    feature code cannot learn from older labels)."""
    return encoded.get("b") == buckets and encoded.get("f") == FEATURES


def decode_features(d: dict) -> dict[int, float]:
    grams = array("I")
    grams.frombytes(base64.b64decode(d["g"]))
    x = dict.fromkeys(grams, float(d["v"]))
    base = int(d["b"])
    for i, v in enumerate(d["d"]):
        x[base + i] = float(v)
    return x


def feedback_label(answered_paid: bool, *, score: float | None = None, label: str | None = None,
                   preferred: str | None = None) -> tuple[float, float] | None:
    """(local quality, cloud quality) a user's feedback says, or None where it says nothing about routing:
    good/bad, or a score (0.5 and up: good), on a local answer rates the local model (the cloud taken as
    good); on a cloud answer only a preference speaks to routing."""
    if preferred is not None:
        return (1.0, 1.0) if preferred == "local" else (0.0, 1.0)
    if answered_paid:
        return None
    if label is not None:
        return (1.0, 1.0) if label == "good" else (0.0, 1.0)
    return (1.0 if (score or 0.0) >= 0.5 else 0.0), 1.0
