"""The learned router: logistic regression on hashed word n-grams and a few shape features. Pure Python.

`LearnedRouter.load(path)` reads a weights file written by scripts/routing/train_router.py (configs/router/);
`probability(prompt)` is the model's estimate that the cloud model answers better than the local one,
`score(prompt)` maps it onto the heuristic's complexity scale (so the tiers' `max_score` thresholds keep
their meaning). Features are cheap: the prompt's first 3 KB and last 1 KB (the window the heuristic
scans), lower-cased, split at anything but letters and digits, numbers folded to one token, each word
and word pair hashed with crc32 into a fixed number of buckets; plus log counts of characters, numbers,
lines, capitalised words and punctuation.

`train()` lives here too, so the gateway and the training script cannot disagree on the features.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .prompt_window import scan_window

FORMAT = "hybrid-ai-stack/learned-router/1"
FEATURES = 2  # bumped whenever features() changes: weights trained on other features are refused


def _table(rule) -> bytes:
    return bytes(rule(b) for b in range(256))


# Byte tables, so the per-byte work runs in C (bytes.translate): a 32 KB prompt scores in well under a
# millisecond. _FOLD lower-cases ASCII letters, turns every digit into "0" and every other ASCII byte
# into a space; bytes of non-ASCII characters stay, so words in any script remain tokens.
_FOLD = _table(lambda b: b + 32 if 65 <= b <= 90 else 48 if 48 <= b <= 57 else b if 97 <= b <= 122 or b >= 128
               else 32)
# _SHAPE: whitespace -> " ", capitals -> "A", anything else -> "x"; " A" then counts capitalised words.
_SHAPE = _table(lambda b: 32 if b in b" \t\n\r\f\v" else 65 if 65 <= b <= 90 else 120)
_ZEROS = re.compile(rb"0+")  # a run of digits is one number, one token
DENSE = ("log_chars", "log_numbers", "log_lines", "log_capitalised", "log_punctuation")


def features(prompt: str, buckets: int) -> dict[int, float]:
    """Sparse vector: hashed unigrams and bigrams (presence, L2-normalised), then the DENSE features at
    indices buckets .. buckets + len(DENSE) - 1. `buckets` is a power of two. Numbers fold to one
    token "0"; punctuation separates words and counts only in the dense features."""
    raw = scan_window(prompt).encode()
    folded, numbers = _ZEROS.subn(b"0", raw.translate(_FOLD))
    tokens = folded.split()
    grams = set(tokens)
    grams.update(map(b" ".join, itertools.pairwise(tokens)))
    mask = buckets - 1
    out: dict[int, float] = {}
    if grams:
        out = dict.fromkeys([h & mask for h in map(zlib.crc32, grams)], 1.0 / math.sqrt(len(grams)))
    punctuation = sum(map(raw.count, (b",", b";", b":", b"(", b")")))
    capitalised = (b" " + raw).translate(_SHAPE).count(b" A")
    dense = (math.log1p(len(prompt)) / 8, math.log1p(numbers) / 3, math.log1p(raw.count(b"\n")) / 3,
             math.log1p(capitalised) / 4, math.log1p(punctuation) / 4)
    for i, v in enumerate(dense):
        out[buckets + i] = v
    return out


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


@dataclass(frozen=True, eq=False)
class LearnedRouter:
    buckets: int
    weights: dict[int, float]
    bias: float = 0.0
    # (probability, score) knots, both increasing: maps probabilities onto the heuristic's scale
    calibration: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1.0, 1.0))
    hybrid_weight: float = 0.5  # hybrid score = w * learned + (1 - w) * heuristic
    version: str = ""
    trained_on: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> LearnedRouter:
        """Read a weights file; ValueError says what is wrong with it."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{path}: not a learned-router weights file ({type(exc).__name__}: {exc})") from None
        return cls.from_json(text, str(path))

    @classmethod
    def from_json(cls, text: str, where: str = "weights") -> LearnedRouter:
        """A weights file's text (from disk, or a refit version kept in Redis); ValueError if it is not one."""
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            if data.get("features") != FEATURES:
                raise ValueError(f"trained on features version {data.get('features')!r}, this gateway computes "
                                 f"version {FEATURES}: retrain with scripts/routing/train_router.py")
            buckets = int(data["buckets"])
            if buckets <= 0 or buckets & (buckets - 1):
                raise ValueError("buckets must be a power of two")
            knots = tuple((float(p), float(s)) for p, s in data["calibration"])
            if len(knots) < 2 or any(b[0] <= a[0] or b[1] < a[1] for a, b in itertools.pairwise(knots)):
                raise ValueError("calibration must be at least two increasing (probability, score) knots")
            return cls(buckets, {int(k): float(v) for k, v in data["weights"].items()}, float(data["bias"]),
                       knots, float(data.get("hybrid_weight", 0.5)), str(data["version"]),
                       dict(data.get("trained_on", {})))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{where}: not a learned-router weights file ({type(exc).__name__}: {exc})") from None
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def probability(self, prompt: str) -> float:
        return self.probability_of(features(prompt, self.buckets))

    def probability_of(self, x: dict[int, float]) -> float:
        """The probability for features already computed (a calibration label keeps them, not the prompt)."""
        w = self.weights
        return _sigmoid(self.bias + sum(w.get(i, 0.0) * v for i, v in x.items()))

    def score(self, prompt: str) -> float:
        """The probability mapped through the calibration knots (linear in between), in [0, 1]."""
        return self.score_of(features(prompt, self.buckets))

    def score_of(self, x: dict[int, float]) -> float:
        return round(_calibrate(self.probability_of(x), self.calibration), 4)

    def to_json(self) -> str:
        """The weights file: readable header, then the weights on one line (they are most of the file)."""
        head = json.dumps({
            "format": FORMAT, "features": FEATURES, "version": self.version, "trained_on": self.trained_on,
            "buckets": self.buckets, "hybrid_weight": self.hybrid_weight, "bias": self.bias,
            "calibration": [list(knot) for knot in self.calibration]}, indent=1)
        weights = json.dumps({str(k): v for k, v in sorted(self.weights.items())}, separators=(",", ":"))
        return head[:-2] + ',\n "weights": ' + weights + "\n}\n"


def _probability(knot: tuple[float, float]) -> float:
    return knot[0]


def _calibrate(p: float, knots: Sequence[tuple[float, float]]) -> float:
    i = bisect.bisect_right(knots, p, key=_probability)
    if i == 0:
        return knots[0][1]
    if i == len(knots):
        return knots[-1][1]
    (x0, y0), (x1, y1) = knots[i - 1], knots[i]
    return y0 + (y1 - y0) * (p - x0) / (x1 - x0)


def quantile_knots(probabilities: Sequence[float], scores: Sequence[float], points: int = 21,
                   min_step: float = 0.0) -> tuple[tuple[float, float], ...]:
    """Knots that map the q-quantile of the probabilities to the q-quantile of the heuristic's scores:
    on the training prompts the learned router then sends the same share to each tier as the heuristic.
    min_step > 0: scores rise by at least that from knot to knot and stay under 1, so two prompts with different
    probabilities never tie and a calibrated threshold can fall between any two (a refit, gateway/calibration/)."""
    ps, ss = sorted(probabilities), sorted(scores)
    knots: list[tuple[float, float]] = [(0.0, 0.0)]
    for k in range(points):
        q = k / (points - 1)
        p = ps[round(q * (len(ps) - 1))]
        s = ss[round(q * (len(ss) - 1))]
        if min_step:
            s = max(s, knots[-1][1] + min_step)
        if p > knots[-1][0] and s >= knots[-1][1] and (not min_step or s < 1.0):
            knots.append((p, s))
    if knots[-1][0] < 1.0:
        knots.append((1.0, 1.0))
    return tuple(knots)


def train(groups: Sequence[Sequence[tuple[str, int]]], *, buckets: int = 2**14, epochs: int = 4,
          l2: float = 1e-4, rate: float = 0.2, seed: int = 0) -> tuple[dict[int, float], float]:
    """Logistic regression by AdaGrad SGD on (prompt, label) pairs, label 1 where the cloud model won.

    Each group (a benchmark, a traffic source) gets its own intercept during training, dropped after it,
    and equal total weight with its classes balanced: the model learns what makes a prompt hard within a
    source, not which source is harder on average (thresholds are set per deployment anyway).
    Deterministic for a given seed and input order. Returns (weights, bias)."""
    rows: list[tuple[dict[int, float], int, int, float]] = []
    for g, pairs in enumerate(groups):
        positives = sum(label for _, label in pairs)
        for prompt, label in pairs:
            share = positives if label else len(pairs) - positives
            rows.append((features(prompt, buckets), label, g, 1000.0 / (len(groups) * 2 * max(1, share))))
    w: dict[int, float] = {}
    g2: dict[int, float] = {}
    intercept, intercept_g2 = [0.0] * len(groups), [1e-8] * len(groups)
    order = list(range(len(rows)))
    rnd = random.Random(seed)
    for _ in range(epochs):
        rnd.shuffle(order)
        for n in order:
            x, y, g, weight = rows[n]
            err = (_sigmoid(intercept[g] + sum(w.get(i, 0.0) * v for i, v in x.items())) - y) * weight
            for i, v in x.items():
                grad = err * v + l2 * w.get(i, 0.0)
                g2[i] = g2.get(i, 1e-8) + grad * grad
                w[i] = w.get(i, 0.0) - rate * grad / math.sqrt(g2[i])
            intercept_g2[g] += err * err
            intercept[g] -= rate * err / math.sqrt(intercept_g2[g])
    return w, sum(intercept) / len(intercept)
