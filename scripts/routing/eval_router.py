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
labelled k-fold; MMLU's folds by subject), cascade (strategy "cascade" as shipped: the prompts whose local
answer the gateway's review rejects go to the cloud; one operating point, no curve; where the data has
those answers: GSM8K, scored on its odd rows, and MT-Bench's judge prompts, which quote them).
Trained and tuned routers are never scored on a benchmark they saw (leave-one-benchmark-out). MT-Bench's
figures get 95 % bootstrap intervals, its trained routers their CPT(50 %) for seeds 0-4.
"saved at PGR 0.5" = 100 % - CPT(50 %) with local calls free; the share of the cloud model's quality PGR
0.5 stands for is printed per benchmark.
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
    """strategy "cascade" as the gateway ships it: every prompt is answered locally first (cost 0), and the
    answers the gateway's review (gateway/cascade.py) rejects go to the cloud; the rest stay local. A yes/no
    decision, so one operating point rather than a curve: 1.0 escalated, 0.0 kept. Needs the weak model's
    answers."""
    from gateway.cascade import review

    return [1.0 if review(i.prompt, i.weak_answer) else 0.0 for i in items]


# A router that decides yes/no has one operating point: its cloud share and the PGR there, no curve.
POINT_ROUTERS = {"cascade"}
# The cascade's checks were written looking at GSM8K's even rows: there it is scored on the odd rows only.
CASCADE_TUNED_ON = {"gsm8k"}


def point(decisions: Sequence[float], items: Sequence[Item]) -> dict[str, float | None]:
    """The one operating point of a yes/no router: the share sent to the cloud and the PGR it reaches;
    CPT(x) is that share where the PGR reaches x, else None (not reachable by this router)."""
    n = len(items)
    r_weak = sum(i.weak for i in items) / n
    r_strong = sum(i.strong for i in items) / n
    share = sum(1 for d in decisions if d) / n
    quality = sum(i.strong if d else i.weak for i, d in zip(items, decisions, strict=True)) / n
    pgr = (quality - r_weak) / (r_strong - r_weak) if r_strong != r_weak else 0.0
    return {"cloud_share": 100 * share, "PGR": pgr, "APGR": None,
            "CPT50": 100 * share if pgr >= 0.5 else None, "CPT80": 100 * share if pgr >= 0.8 else None}


def pgr_at(points: Sequence[tuple[float, float]], share: float) -> float:
    """The PGR a curve reaches at this cloud share (linear between its points)."""
    for (c1, p1), (c2, p2) in itertools.pairwise(points):
        if c1 <= share <= c2:
            return p1 + (p2 - p1) * (share - c1) / (c2 - c1) if c2 != c1 else max(p1, p2)
    return points[-1][1]


def quality_at(items: Sequence[Item], pgr: float = 0.5) -> float:
    """The share of the cloud model's quality a PGR means on this benchmark, in %: PGR 0.5 is not the same
    quality everywhere (it depends on how far apart the two models are)."""
    r_weak = sum(i.weak for i in items) / len(items)
    r_strong = sum(i.strong for i in items) / len(items)
    return 100 * (r_weak + pgr * (r_strong - r_weak)) / r_strong


# ---- routers trained or tuned on benchmark data: never on the benchmark they are scored on


def _lobo_groups(held_out: str, data: dict[str, list[Item]]) -> dict[str, list[tuple[str, int]]]:
    """Training data for scoring `held_out`: every other benchmark (leave-one-benchmark-out)."""
    return {b: [(i.prompt, int(i.strong > i.weak)) for i in items] for b, items in data.items() if b != held_out}


def _learned_model(held_out: str, data: dict[str, list[Item]], seed: int = 0):
    from scripts.routing import train_router  # the same build() that writes configs/router/learned.json

    # Keyed by the training data itself (learned and hybrid share one model per held-out benchmark and seed).
    key = (held_out, seed, tuple((b, tuple((i.prompt, i.weak, i.strong) for i in items))
                                 for b, items in sorted(data.items()) if b != held_out))
    if key not in _MODELS:
        _MODELS[key] = train_router.build(_lobo_groups(held_out, data), seed=seed)
    return _MODELS[key]


_MODELS: dict = {}


def learned(bench: str, data: dict[str, list[Item]], seed: int = 0) -> list[float]:
    model = _learned_model(bench, data, seed)
    return [model.score(i.prompt) for i in data[bench]]


def hybrid(bench: str, data: dict[str, list[Item]], seed: int = 0) -> list[float]:
    from gateway.catalog import load_catalog
    from gateway.smart_router import score_prompt

    routing = load_catalog(ROOT / "configs" / "models.yaml").routing
    model = _learned_model(bench, data, seed)
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
    folds = _folds(items, k)
    scores = [0.0] * len(items)
    for fold in range(k):
        rows = [(i.prompt, int(i.strong > i.weak)) for i, f in zip(items, folds, strict=True) if f != fold]
        model = train_router.build({bench: rows})
        for n, f in enumerate(folds):
            if f == fold:
                scores[n] = model.score(items[n].prompt)
    return scores


def _folds(items: Sequence[Item], k: int) -> list[int]:
    """Each item's fold: by group where the data has groups (MMLU's subjects: a subject is never in both
    train and test, as RouteLLM never trained on MMLU's questions), else by position."""
    groups = sorted({i.group for i in items})
    if len(groups) >= k:
        fold_of = {g: n % k for n, g in enumerate(groups)}
        return [fold_of[i.group] for i in items]
    return [n % k for n in range(len(items))]


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
            if name in POINT_ROUTERS:  # one operating point, drawn as one
                ax.plot([100 * c for c, _ in pts], [p for _, p in pts], "*", markersize=12,
                        label=f"{name} (one point, as shipped)")
                continue
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
             scores: Sequence[float] | None = None) -> dict[str, float | str | None]:
    """The figures for one router on one benchmark; `scores` when the caller has them already."""
    items = data[bench]
    if name == "random":
        runs = [summarize(_random(seed)(items), items) for seed in range(10)]
        result: dict[str, float | str | None] = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
    elif name in POINT_ROUTERS:
        if bench in CASCADE_TUNED_ON:  # only the rows nobody looked at while writing its checks
            items = items[1::2]
            scores = None if scores is None else scores[1::2]
        result = dict(point(scores if scores is not None else ROUTERS[name](items), items))
    else:
        result = dict(summarize(scores if scores is not None else scores_of(name, bench, data), items))
    result["protocol"] = protocol(name, bench, data[bench])
    return result


def protocol(name: str, bench: str, items: Sequence[Item]) -> str:
    """What the router saw of this benchmark before being scored on it ("none": nothing)."""
    if name in POINT_ROUTERS and bench in CASCADE_TUNED_ON:
        return "split-half, in-benchmark (scored on the odd rows)"
    if name == "learned_kfold" and len({i.group for i in items}) > 1:
        return "k-fold by subject"
    return PROTOCOL.get(name, "none")


# The benchmark small enough for its figures to need intervals, and the comparisons the docs draw there.
BOOTSTRAP = {"mt_bench"}
COMPARED = (("hybrid", "heuristic"), ("heuristic", "length"), ("learned", "heuristic"), ("hybrid", "length"))
SEEDS = range(5)


def bootstrap(scores: dict[str, Sequence[float]], items: Sequence[Item], draws: int = 1000,
              seed: int = 0) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, float | list[float]]]]:
    """Percentile 95 % intervals over `draws` resamples of the prompts (the same resample for every router,
    so differences are paired): per router APGR, CPT(50 %) and CPT(80 %), and CPT(50 %) differences of
    COMPARED."""
    rnd = random.Random(seed)
    samples: dict[str, dict[str, list[float]]] = {name: {"APGR": [], "CPT50": [], "CPT80": []} for name in scores}
    for _ in range(draws):
        idx = [rnd.randrange(len(items)) for _ in items]
        sub = [items[k] for k in idx]
        if sum(i.strong for i in sub) == sum(i.weak for i in sub):
            continue  # no quality gap in this resample: PGR is undefined
        for name, s in scores.items():
            r = summarize([s[k] for k in idx], sub)
            for metric in ("APGR", "CPT50", "CPT80"):
                samples[name][metric].append(r[metric])
    intervals = {name: {m: _interval(v) for m, v in d.items()} for name, d in samples.items()}
    differences = {}
    for a, b in COMPARED:
        if a in samples and b in samples:
            full = summarize(scores[a], items)["CPT50"] - summarize(scores[b], items)["CPT50"]
            diff = [x - y for x, y in zip(samples[a]["CPT50"], samples[b]["CPT50"], strict=True)]
            differences[f"{a} - {b}"] = {"CPT50": full, "ci": _interval(diff)}
    return intervals, differences


def _interval(values: Sequence[float]) -> list[float]:
    ordered = sorted(values)
    return [_quantile(ordered, 0.025), _quantile(ordered, 0.975)]


def by_seed(name: str, bench: str, data: dict[str, list[Item]]) -> list[float]:
    """CPT(50 %) of a trained router with each of SEEDS: how much of a figure is the seed's."""
    fn = {"learned": learned, "hybrid": hybrid}[name]
    return [summarize(fn(bench, data, seed), data[bench])["CPT50"] for seed in SEEDS]


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


def _print_table(bench: str, results: dict, quality: float, prompts: int, quick: bool) -> None:
    def pct(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.1f}%"

    print(f"\n{bench} ({prompts} prompts{', every 10th' if quick and bench == 'mmlu' else ''}; "
          f"PGR 0.5 = {quality:.1f}% of the cloud model's quality here)")
    print(f"{'router':<15}{'APGR':>7}{'CPT(50%)':>13}{'CPT(80%)':>13}{'saved at PGR 0.5':>18}   protocol")
    for name, r in results.items():
        apgr = "-" if r["APGR"] is None else f"{r['APGR']:.3f}"
        saved = "-" if r["CPT50"] is None else f"{100 - r['CPT50']:.1f}%"
        line = f"{name:<15}{apgr:>7}{pct(r['CPT50']):>13}{pct(r['CPT80']):>13}{saved:>18}   {r['protocol']}"
        if "CPT50_ci" in r:
            line += f"; CPT(50%) 95% interval [{r['CPT50_ci'][0]:.1f}, {r['CPT50_ci'][1]:.1f}]"
        if "CPT50_by_seed" in r:
            line += "; seeds 0-4: " + ", ".join(f"{v:.1f}" for v in r["CPT50_by_seed"])
        if name in POINT_ROUTERS:
            line += f"; one point: {r['cloud_share']:.1f}% to the cloud at PGR {r['PGR']:.3f}" + "".join(
                f", {other} there {v:.3f}" for other, v in r.get("same_share_PGR", {}).items())
        print(line)


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
    report: dict[str, dict] = {"routers": {}, "benchmarks": {}, "differences": {}}
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for bench in args.benchmark or BENCHMARKS:
        items = data[bench]
        answered = all(i.weak_answer for i in items)  # the cascade needs the local model's answers
        names = [name for name in routers if answered or name not in NEEDS_ANSWERS]
        # Each router scores a benchmark once (training and tuning are the slow part); table and plot share it.
        scores = {name: scores_of(name, bench, data) for name in names}
        results = {name: evaluate(name, bench, data, scores[name]) for name in names}
        for name in POINT_ROUTERS & set(names):  # prompt-only routers at the same cloud share, same prompts
            rows = slice(1, None, 2) if bench in CASCADE_TUNED_ON else slice(None)
            results[name]["same_share_PGR"] = {
                other: pgr_at(curve(scores[other][rows], items[rows]), results[name]["cloud_share"] / 100)
                for other in ("heuristic", "length") if other in scores}
        quality = quality_at(items)
        report["benchmarks"][bench] = {"prompts": len(items), "quality_at_pgr50": quality}
        if bench in BOOTSTRAP:
            curved = {n: scores[n] for n in names if n not in POINT_ROUTERS and n != "random"}
            intervals, report["differences"][bench] = bootstrap(curved, items, 200 if args.quick else 1000)
            for name, ci in intervals.items():
                for metric, interval in ci.items():
                    results[name][f"{metric}_ci"] = interval
            for name in ("learned", "hybrid"):
                if name in names:
                    results[name]["CPT50_by_seed"] = by_seed(name, bench, data)
        report["routers"][bench] = results
        if args.plot:
            curves[bench] = {name: ([(results[name]["cloud_share"] / 100, results[name]["PGR"])]
                                    if name in POINT_ROUTERS else curve(scores[name], items))
                             for name in names if name != "learned_kfold"}
        _print_table(bench, results, quality, len(items), args.quick)
        for pair, d in report["differences"].get(bench, {}).items():
            print(f"  CPT(50%) {pair}: {d['CPT50']:+.1f} points, 95% interval [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}]")
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
