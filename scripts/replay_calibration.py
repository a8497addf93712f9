#!/usr/bin/env python3
"""Replay a routing benchmark through the gateway's own learning and calibration code and measure it.

    python scripts/replay_calibration.py [--data DIR | --jsonl FILE ...] [--labels 0,50,100,200,400,800,1500]
                                         [--noise 0.15] [--orders 20] [--target 0.95] [--router learned]
                                         [--json F] [--quick]

For each benchmark: a prior trained without it (leave-one-benchmark-out, scripts/routing/train_router.py's
build()), a fixed held-out half, and the other half streamed in --orders random orders. The gateway's sampler
(gateway/calibration/sampler.py) picks which streamed prompts get a label, a label is the two models' results
(with --noise, that share of revealed labels swapped: the judge got it wrong), and at each label budget the
gateway's calibration run (gateway/calibration/calibrate.py: refit from the prior, thresholds for the target)
produces the model and threshold that are scored on the held-out half: CPT(50 %), CPT(80 %), APGR of its
scores, and the quality its threshold reaches against the target (the share of the cloud model's quality
kept) and how often that fell short. Each figure is the mean over orders. A small benchmark may run out of
prompts before a budget: `labels_reached` says how many it had. Each run is reported with and without noise
(without: key "labels"; with: "labels_noisy").

JSONL input: one benchmark per file, {"prompt", "weak", "strong"} per line (results 0..1); the prior is trained
on the other files, or is the shipped weights (configs/router/learned.json) for a file alone.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.calibration import calibrate, sampler  # noqa: E402
from gateway.calibration.labels import Label, cluster_of  # noqa: E402
from gateway.catalog import load_catalog  # noqa: E402
from gateway.learned_router import LearnedRouter, features  # noqa: E402
from gateway.smart_router import estimate_complexity  # noqa: E402
from scripts.routing import bench_data, train_router  # noqa: E402
from scripts.routing.eval_router import apgr, cpt, curve  # noqa: E402

SPLIT_SEED = 20261202  # the held-out half is the same for every order and budget


def load(args) -> dict[str, list[bench_data.Item]]:
    if args.jsonl:
        out = {}
        for path in args.jsonl:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            out[path.stem] = [bench_data.Item(str(r["prompt"]), float(r["weak"]), float(r["strong"])) for r in rows]
        return out
    return {b: bench_data.LOADERS[b](args.data) for b in bench_data.BENCHMARKS}


def grade(items):
    """Results normalised to 0..1 (MT-Bench grades are 1-10)."""
    top = max(max(i.weak, i.strong) for i in items)
    scale = 10.0 if top > 1 else 1.0
    return [(i.weak / scale, i.strong / scale) for i in items]


class Bench:
    """One benchmark prepared once: features, heuristic scores, clusters; the prior; the split."""

    def __init__(self, name: str, items, prior, quick: bool):
        routing = load_catalog(ROOT / "configs" / "models.yaml").routing
        self.name, self.prior = name, prior
        idx = list(range(len(items)))
        random.Random(SPLIT_SEED).shuffle(idx)
        half = len(idx) // 2
        held, pool = idx[:half], idx[half:]
        if quick:
            held, pool = held[:300], pool[:400]
        results = grade(items)
        self.rows = {i: (features(items[i].prompt, prior.buckets), estimate_complexity(items[i].prompt, routing)[0],
                         cluster_of(items[i].prompt), *results[i], len(items[i].prompt)) for i in held + pool}
        self.held, self.pool = held, pool

    def label(self, i: int, weight: float, flip: bool) -> Label:
        x, h, cluster, weak, strong, _ = self.rows[i]
        if flip:
            weak, strong = strong, weak
        return Label(x, h, weak, strong, weight, "replay", cluster)

    def held_items(self):
        return [bench_data.Item("", self.rows[i][3], self.rows[i][4]) for i in self.held]

    def scores(self, router: str, model) -> list[float]:
        score = calibrate.scorer(router, model)
        return [score(self.label(i, 1.0, False)) for i in self.held]


def metrics(scores, items) -> dict:
    pts = curve(scores, items)
    return {"CPT50": round(100 * cpt(pts, 0.5), 2), "CPT80": round(100 * cpt(pts, 0.8), 2), "APGR": round(apgr(pts), 4)}


def reached(bench: Bench, cal: calibrate.Calibration, scores) -> tuple[float | None, float | None]:
    """(quality kept, cloud share) on the held-out half at the calibrated thresholds; None before there are any."""
    if not cal.thresholds:
        return None, None
    strong = sum(bench.rows[i][4] for i in bench.held)
    got, sent = 0.0, 0
    for i, s in zip(bench.held, scores, strict=True):
        cloud = s >= cal.threshold_for(bench.rows[i][2])
        got += bench.rows[i][4] if cloud else bench.rows[i][3]
        sent += cloud
    return got / strong, sent / len(bench.held)


def one_order(bench: Bench, order: int, budgets: list[int], noise: float, target: float, router: str) -> dict:
    rnd = random.Random(order)
    stream = list(bench.pool)
    rnd.shuffle(stream)
    rate = min(0.8, 1.6 * max(budgets) / len(stream))  # below 1: some traffic stays unlabelled, as in use
    cal = calibrate.Calibration(bench.prior)
    labels: list[Label] = []
    out: dict[int, dict] = {}
    pending = sorted(b for b in budgets if b > 0)
    if 0 in budgets:
        out[0] = _score(bench, cal, router, target, 0)
    score = calibrate.scorer(router, cal.model)
    seen: list[Label] = []  # the unlabelled traffic so far (the gateway keeps its newest TRAFFIC requests)
    for i in stream:
        if not pending:
            break
        s = score(bench.label(i, 1.0, False))
        p = sampler.probability(s, cal.threshold_for(bench.rows[i][2]), rate)
        if rnd.random() >= p:
            seen.append(bench.label(i, 1.0 / (1.0 - p), False))  # weighted back: the sampler thinned it
            continue
        labels.append(bench.label(i, 1.0 / p, rnd.random() < noise))
        if len(labels) == pending[0]:
            cal = calibrate.run(bench.prior, labels, router=router, target=target, in_force=cal,
                                traffic=seen[-calibrate.TRAFFIC:])
            score = calibrate.scorer(router, cal.model)
            out[pending.pop(0)] = _score(bench, cal, router, target, len(labels))
    for b in pending:  # the stream ran out first: the labels it had
        cal = calibrate.run(bench.prior, labels, router=router, target=target, traffic=seen[-calibrate.TRAFFIC:])
        out[b] = _score(bench, cal, router, target, len(labels))
    return out


def _score(bench: Bench, cal, router: str, target: float, n: int) -> dict:
    scores = bench.scores(router, cal.model)
    row = metrics(scores, bench.held_items())
    row["quality"], row["cloud_share"] = reached(bench, cal, scores)
    row["labels_reached"] = n
    return row


def summarize(runs: list[dict], budgets: list[int], target: float) -> dict:
    table = {}
    for b in budgets:
        rows = [r[b] for r in runs]
        qualities = [r["quality"] for r in rows if r["quality"] is not None]
        entry = {k: round(statistics.fmean(r[k] for r in rows), 4) for k in ("CPT50", "CPT80", "APGR")}
        entry["quality_vs_target"] = round(statistics.fmean(qualities) / target, 4) if qualities else None
        entry["shortfall_rate"] = round(sum(q < target for q in qualities) / len(qualities), 4) if qualities else None
        shares = [r["cloud_share"] for r in rows if r["cloud_share"] is not None]
        entry["cloud_share_at_target"] = round(100 * statistics.fmean(shares), 2) if shares else None
        entry["labels_reached"] = min(r["labels_reached"] for r in rows)
        table[str(b)] = entry
    return table


def run_bench(name: str, items, all_items, args) -> dict:
    groups = {n: [(i.prompt, int(i.strong > i.weak)) for i in its] for n, its in all_items.items() if n != name}
    # a JSONL benchmark alone: the shipped weights (trained on the public benchmarks, never on it) are its prior
    prior = train_router.build(groups) if groups else LearnedRouter.load(ROOT / "configs" / "router" / "learned.json")
    bench = Bench(name, items, prior, args.quick)
    held = bench.held_items()
    randoms = [metrics([rnd.random() for _ in held], held) for rnd in map(random.Random, range(10))]
    baselines = {"random": {k: round(statistics.fmean(r[k] for r in randoms), 4) for k in randoms[0]},
                 "length": metrics([float(bench.rows[i][5]) for i in bench.held], held)}
    result = {"baselines": baselines, "held_out": len(bench.held), "streamed": len(bench.pool),
              "prior": prior.version, "router": args.router, "target_quality": args.target}
    for key, noise in (("labels", 0.0), ("labels_noisy", args.noise)):
        runs = [one_order(bench, o, args.labels, noise, args.target, args.router) for o in range(args.orders)]
        result[key] = summarize(runs, args.labels, args.target)
    result["noise"] = args.noise
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=bench_data.DEFAULT_DATA)
    parser.add_argument("--jsonl", type=Path, action="append", default=[])
    parser.add_argument("--labels", default="0,50,100,200,400,800,1500")
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--router", default="learned", choices=("learned", "hybrid"))
    parser.add_argument("--bench", action="append", default=[], help="only this benchmark (repeatable)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 400 streamed, 300 held out, 2 orders")
    args = parser.parse_args()
    args.labels = sorted({int(v) for v in args.labels.split(",")})
    if args.quick:
        args.orders = min(args.orders, 2)
    if not args.jsonl and not args.data.exists():
        raise SystemExit(f"error: no benchmark data at {args.data} (--data DIR or --jsonl FILE)")
    data = load(args)
    names = [n for n in data if not args.bench or n in args.bench]
    with ProcessPoolExecutor(max_workers=min(len(names), 3)) as pool:
        futures = {n: pool.submit(run_bench, n, data[n], data, args) for n in names}
        report = {n: f.result() for n, f in futures.items()}
    for name, r in report.items():
        print(f"\n{name}: held out {r['held_out']}, streamed {r['streamed']}, router {r['router']}, target "
              f"{r['target_quality']}")
        b = r["baselines"]
        print(f"  random CPT50 {b['random']['CPT50']:.1f} %   length CPT50 {b['length']['CPT50']:.1f} % "
              f"CPT80 {b['length']['CPT80']:.1f} % APGR {b['length']['APGR']:.3f}")
        print("  labels  reached  CPT50   CPT80   APGR   quality/target shortfall cloud % | noisy: CPT50  "
              "quality/target shortfall cloud %")
        for n in map(str, args.labels):
            c, z = r["labels"][n], r["labels_noisy"][n]
            print(f"  {n:>6} {c['labels_reached']:>7}  {c['CPT50']:5.1f} % {c['CPT80']:5.1f} % {c['APGR']:.3f}  "
                  f"{_fmt(c['quality_vs_target'])}  {_fmt(c['shortfall_rate'])}  {_fmt(c['cloud_share_at_target'])}"
                  f" | {z['CPT50']:5.1f} %  {_fmt(z['quality_vs_target'])}  {_fmt(z['shortfall_rate'])}  "
                  f"{_fmt(z['cloud_share_at_target'])}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def _fmt(v) -> str:
    return "   -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.3f}"


if __name__ == "__main__":
    sys.exit(main())
