#!/usr/bin/env python3
"""Routing quality on public per-prompt results: APGR, CPT(50 %), CPT(80 %) per benchmark and router.

Reads ../shared/routing-bench/routellm (MT-Bench, MMLU, GSM8K: a weak and a strong model's result per
prompt, contaminated prompts dropped) and scores every prompt with each router, then sweeps the
threshold over the 11 decile edges of the scores as the data's README defines. Deterministic.

    python scripts/routing/eval_router.py [--data DIR] [--router NAME ...] [--json FILE] [--plot FILE.png] [--kfold]
                                  [--quick]

Routers: random (mean of 10 seeds), oracle, length (prompt characters), heuristic (the gateway's
shipped estimate_complexity with configs/models.yaml), tuned (the heuristic's factors reweighted by grid
search on the other two benchmarks), learned and hybrid (ROUTER=learned|hybrid: scripts/routing/train_router.py's
model trained on the other two benchmarks), learned_kfold (--kfold: trained on 4/5 of the same benchmark,
labelled k-fold), cascade (strategy "cascade": the gateway's review of the local model's real answer, then
the heuristic; where the data has those answers: GSM8K, and MT-Bench's judge prompts, which quote them).
Trained and tuned routers are never scored on a benchmark they saw (leave-one-benchmark-out).
"cost saved at ~95 % quality" = 100 % - CPT(50 %) with local calls free.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.routing.bench_data import (  # noqa: E402
    BENCHMARKS,
    DEFAULT_DATA,
    LOADERS,
    Item,
)

# --------------------------------------------------------------------------- metrics


def curve(scores: Sequence[float], items: Sequence[Item]) -> list[tuple[float, float]]:
    """(strong share, PGR) at each of the 11 decile edges of the scores; a score at or above the
    threshold goes to the strong model. Sorted by cost, with the all-weak (0, 0) end included."""
    n = len(items)
    r_weak = sum(i.weak for i in items) / n
    r_strong = sum(i.strong for i in items) / n
    gap = r_strong - r_weak
    ordered = sorted(scores)
    points = {(0.0, 0.0)}
    for k in range(11):
        threshold = _quantile(ordered, k / 10)
        strong = [s >= threshold for s in scores]
        cost = sum(strong) / n
        quality = sum(i.strong if st else i.weak for i, st in zip(items, strong, strict=True)) / n
        points.add((cost, (quality - r_weak) / gap if gap else 0.0))
    return sorted(points)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), without numpy."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def apgr(points: Sequence[tuple[float, float]]) -> float:
    """Area under PGR(cost) over cost 0..1 (trapezoids; the curve is extended flat to cost 1)."""
    pts = list(points)
    if pts[-1][0] < 1.0:
        pts.append((1.0, pts[-1][1]))
    return sum((c2 - c1) * (p1 + p2) / 2 for (c1, p1), (c2, p2) in itertools.pairwise(pts))


def cpt(points: Sequence[tuple[float, float]], target: float) -> float:
    """The smallest strong share at which PGR reaches `target` (linear interpolation), in [0, 1]."""
    prev_c, prev_p = points[0]
    if prev_p >= target:
        return prev_c
    for c, p in points[1:]:
        if p >= target:
            return prev_c + (c - prev_c) * (target - prev_p) / (p - prev_p) if p != prev_p else c
        prev_c, prev_p = c, p
    return 1.0


def summarize(scores: Sequence[float], items: Sequence[Item]) -> dict[str, float]:
    pts = curve(scores, items)
    return {"APGR": apgr(pts), "CPT50": 100 * cpt(pts, 0.5), "CPT80": 100 * cpt(pts, 0.8)}


# --------------------------------------------------------------------------- routers


def _random(seed: int) -> Callable[[list[Item]], list[float]]:
    def score(items: list[Item]) -> list[float]:
        rnd = random.Random(seed)
        return [rnd.random() for _ in items]
    return score


def oracle(items: list[Item]) -> list[float]:
    """The best a router could do: strong exactly where it beats weak, by how much."""
    return [i.strong - i.weak for i in items]


def length(items: list[Item]) -> list[float]:
    return [float(len(i.prompt)) for i in items]


def heuristic(items: list[Item]) -> list[float]:
    from gateway.catalog import load_catalog
    from gateway.smart_router import estimate_complexity

    routing = load_catalog(ROOT / "configs" / "models.yaml").routing
    return [estimate_complexity(i.prompt, routing)[0] for i in items]


def cascade(items: list[Item]) -> list[float]:
    """strategy "cascade": every prompt is answered locally first (cost 0); the gateway's review of that
    answer (gateway/cascade.py) escalates it to the cloud. A rejected answer ranks above every accepted
    one; within each group the heuristic's score orders them, so the curve's cheap end is the review alone
    and its dear end adds the prompts the heuristic finds hardest. Needs the weak model's answers."""
    from gateway.cascade import review

    scores = heuristic(items)
    return [(10.0 if review(i.prompt, i.weak_answer) else 0.0) + s for i, s in zip(items, scores, strict=True)]


# ---- routers trained or tuned on benchmark data: never on the benchmark they are scored on


def _lobo_groups(held_out: str, data: dict[str, list[Item]]) -> dict[str, list[tuple[str, int]]]:
    """Training data for scoring `held_out`: every other benchmark (leave-one-benchmark-out)."""
    return {b: [(i.prompt, int(i.strong > i.weak)) for i in items] for b, items in data.items() if b != held_out}


def _learned_model(held_out: str, data: dict[str, list[Item]]):
    from scripts.routing import train_router  # the same build() that writes configs/router/learned.json

    # Keyed by the training data itself (learned and hybrid share one model per held-out benchmark).
    key = (held_out, tuple((b, tuple((i.prompt, i.weak, i.strong) for i in items)) for b, items in sorted(data.items())
                           if b != held_out))
    if key not in _MODELS:
        _MODELS[key] = train_router.build(_lobo_groups(held_out, data))
    return _MODELS[key]


_MODELS: dict = {}


def learned(bench: str, data: dict[str, list[Item]]) -> list[float]:
    model = _learned_model(bench, data)
    return [model.score(i.prompt) for i in data[bench]]


def hybrid(bench: str, data: dict[str, list[Item]]) -> list[float]:
    from gateway.catalog import load_catalog
    from gateway.smart_router import score_prompt

    routing = load_catalog(ROOT / "configs" / "models.yaml").routing
    model = _learned_model(bench, data)
    return [score_prompt(i.prompt, routing, "hybrid", model)[0] for i in data[bench]]


TUNING_GRID = (0.0, 0.5, 1.0)


def tuned(bench: str, data: dict[str, list[Item]]) -> list[float]:
    """The heuristic's five factors with weights chosen by grid search for the best mean APGR on the
    other two benchmarks, then scored on this one."""
    weights = tune_weights({b: items for b, items in data.items() if b != bench})
    return [sum(w * f[k] for k, w in weights.items()) for f in _factors(data[bench])]


def tune_weights(train: dict[str, list[Item]]) -> dict[str, float]:
    factors = {b: _factors(items) for b, items in train.items()}
    names = list(next(iter(factors.values()))[0])
    best, best_apgr = {}, -1.0
    for combo in itertools.product(TUNING_GRID, repeat=len(names)):
        if not any(combo):
            continue
        w = dict(zip(names, combo, strict=True))
        mean = statistics.fmean(summarize([sum(w[k] * f[k] for k in names) for f in factors[b]], items)["APGR"]
                                for b, items in train.items())
        if mean > best_apgr + 1e-12:
            best, best_apgr = w, mean
    return best


def _factors(items: list[Item]) -> list[dict[str, float]]:
    from gateway.catalog import load_catalog
    from gateway.smart_router import estimate_complexity

    routing = load_catalog(ROOT / "configs" / "models.yaml").routing
    return [estimate_complexity(i.prompt, routing)[1] for i in items]


def learned_kfold(bench: str, data: dict[str, list[Item]], k: int = 5) -> list[float]:
    """In-benchmark k-fold: each prompt scored by a model trained on the other folds of the same benchmark
    (what the learned router reaches when trained on traffic like the one it routes)."""
    from scripts.routing import train_router

    items = data[bench]
    scores = [0.0] * len(items)
    for fold in range(k):
        rows = [(i.prompt, int(i.strong > i.weak)) for n, i in enumerate(items) if n % k != fold]
        model = train_router.build({bench: rows})
        for n in range(fold, len(items), k):
            scores[n] = model.score(items[n].prompt)
    return scores


ROUTERS: dict[str, Callable[[list[Item]], list[float]]] = {"oracle": oracle, "length": length, "heuristic": heuristic,
                                                           "cascade": cascade}
TRAINED: dict[str, Callable[[str, dict[str, list[Item]]], list[float]]] = {
    "tuned": tuned, "learned": learned, "hybrid": hybrid, "learned_kfold": learned_kfold}
PROTOCOL = {"tuned": "leave-one-benchmark-out", "learned": "leave-one-benchmark-out",
            "hybrid": "leave-one-benchmark-out", "learned_kfold": "k-fold"}
NEEDS_ANSWERS = {"cascade"}
DEFAULT_ROUTERS = ["random", "oracle", "length", "heuristic", "tuned", "learned", "hybrid", "cascade"]


def scores_of(name: str, bench: str, data: dict[str, list[Item]]) -> list[float]:
    if name == "random":
        return _random(0)(data[bench])
    return TRAINED[name](bench, data) if name in TRAINED else ROUTERS[name](data[bench])


def plot(path: Path, curves: dict[str, dict[str, list[tuple[float, float]]]]) -> None:
    """Cost-quality curves, one panel per benchmark (matplotlib: a dev dependency, imported only here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4.2), squeeze=False)
    for ax, (bench, by_router) in zip(axes[0], curves.items(), strict=True):
        for name, pts in by_router.items():
            style = {"random": ":", "oracle": "--"}.get(name, "-")
            ax.plot([100 * c for c, _ in pts], [p for _, p in pts], style, marker="o", markersize=3, label=name)
        ax.axhline(0.5, color="grey", linewidth=0.6)
        ax.set(title=bench, xlabel="calls sent to the cloud model (%)", ylabel="PGR (share of the quality gap)",
               xlim=(0, 100), ylim=(-0.1, 1.3))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(name: str, bench: str, data: dict[str, list[Item]],
             scores: Sequence[float] | None = None) -> dict[str, float | str]:
    """The figures for one router on one benchmark; `scores` when the caller has them already."""
    items = data[bench]
    if name == "random":
        runs = [summarize(_random(seed)(items), items) for seed in range(10)]
        result: dict[str, float | str] = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
    else:
        result = dict(summarize(scores if scores is not None else scores_of(name, bench, data), items))
    result["protocol"] = PROTOCOL.get(name, "none")  # "none": not trained or tuned on any benchmark
    return result


def decision_times(path: Path, iterations: int) -> None:
    """The shipped learned router's decision time (features + score) on 100 B, 1 KB and 32 KB prompts."""
    from gateway.learned_router import LearnedRouter
    from scripts.bench.bench_router import prompt_of, timed

    model = LearnedRouter.load(path)
    print(f"\nlearned router decision time ({path.name}, version {model.version}), microseconds:")
    for size in (100, 1024, 32768):
        text = prompt_of(size)
        us = timed(lambda t=text: model.score(t), iterations)
        p99 = statistics.quantiles(us, n=100)[98]
        print(f"  {size:>6} B prompt: median {statistics.median(us):7.1f}   p99 {p99:7.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--router", action="append", choices=["random", *ROUTERS, *TRAINED], help="default: all "
                        "but learned_kfold")
    parser.add_argument("--benchmark", action="append", choices=BENCHMARKS, help="default: all three")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--plot", type=Path, help="draw the cost-quality curves into this PNG (needs matplotlib)")
    parser.add_argument("--kfold", action="store_true", help="add learned_kfold: 5-fold inside each benchmark")
    parser.add_argument("--weights", type=Path, default=ROOT / "configs" / "router" / "learned.json",
                        help="the learned router whose decision time is printed")
    parser.add_argument("--quick", action="store_true", help="MMLU subsampled to every 10th prompt (tests)")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"error: no benchmark data at {args.data} (--data DIR)")
    routers = args.router or DEFAULT_ROUTERS + (["learned_kfold"] if args.kfold else [])
    # Every benchmark is loaded: the trained routers learn from the ones not being scored.
    data = {b: LOADERS[b](args.data) for b in BENCHMARKS}
    if args.quick:
        data["mmlu"] = data["mmlu"][::10]
    report: dict[str, dict] = {}
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for bench in args.benchmark or BENCHMARKS:
        items = data[bench]
        answered = all(i.weak_answer for i in items)  # the cascade needs the local model's answers
        names = [name for name in routers if answered or name not in NEEDS_ANSWERS]
        # Each router scores a benchmark once (training and tuning are the slow part); table and plot share it.
        scores = {name: scores_of(name, bench, data) for name in names}
        report[bench] = {name: evaluate(name, bench, data, scores[name]) for name in names}
        if args.plot:
            curves[bench] = {name: curve(scores[name], items) for name in names if name != "learned_kfold"}
        print(f"\n{bench} ({len(items)} prompts{', every 10th' if args.quick and bench == 'mmlu' else ''})")
        print(f"{'router':<15}{'APGR':>7}{'CPT(50%)':>10}{'CPT(80%)':>10}{'saved at ~95% quality':>24}   protocol")
        for name, r in report[bench].items():
            print(f"{name:<15}{r['APGR']:>7.3f}{r['CPT50']:>9.1f}%{r['CPT80']:>9.1f}%{100 - r['CPT50']:>23.1f}%   "
                  f"{r['protocol']}")
    if args.weights.exists():
        decision_times(args.weights, 300 if args.quick else 3000)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(args.plot, curves)
        print(f"\ncurves: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
