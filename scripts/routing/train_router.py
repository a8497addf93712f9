#!/usr/bin/env python3
"""Train the learned router (ROUTER=learned|hybrid) and write its weights file. Reproducible.

    python scripts/routing/train_router.py [--data DIR] [--exclude BENCH ...] [--jsonl FILE ...]
                                   [--out configs/router/learned.json] [--seed 0] [--epochs 4]

Training data: the routing benchmark's per-prompt results (../shared/routing-bench, contaminated prompts
dropped; label 1 where the cloud model scored higher than the local one), and/or your own JSONL files of
{"prompt": ..., "label": 0|1} (or "weak"/"strong" scores), one group per file. Each group gets equal
weight. Same data, seed and options: the same file, byte for byte; its `version` is a digest of them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.catalog import load_catalog
from gateway.learned_router import FEATURES, LearnedRouter, quantile_knots, train
from gateway.smart_router import estimate_complexity
from scripts.routing import bench_data as ev

SOURCE = "routing-bench: RouteLLM evaluation data (lm-sys/RouteLLM 0b64fdaf), weak Mixtral-8x7B, strong GPT-4"


def label(item: ev.Item) -> int:
    return 1 if item.strong > item.weak else 0


def build(groups: Mapping[str, Sequence[tuple[str, int]]], *, seed: int = 0, epochs: int = 4,
          buckets: int = 2**14, hybrid_weight: float = 0.5, source: str = SOURCE) -> LearnedRouter:
    """Train on the named groups and calibrate onto the heuristic's scale over the same prompts."""
    names = sorted(groups)
    weights, bias = train([groups[n] for n in names], buckets=buckets, epochs=epochs, seed=seed)
    # Rounded as the file stores them, so the model evaluated here is the one the gateway loads.
    weights = {k: round(v, 4) for k, v in weights.items() if abs(v) >= 5e-4}
    bias = round(bias, 6)
    model = LearnedRouter(buckets, weights, bias)
    routing = load_catalog(ev.ROOT / "configs" / "models.yaml").routing
    prompts = [p for n in names for p, _ in groups[n]]
    knots = tuple((round(p, 6), round(s, 4)) for p, s in quantile_knots([model.probability(p) for p in prompts],
                           [estimate_complexity(p, routing)[0] for p in prompts]))
    digest = hashlib.sha256(json.dumps([[n, groups[n]] for n in names]).encode())
    digest.update(f"{FEATURES}/{seed}/{epochs}/{buckets}/{hybrid_weight}".encode())
    trained_on = {"source": source, "groups": {n: {"prompts": len(groups[n]), "cloud_better": sum(lb for _, lb in
                                                                                                  groups[n])}
                                               for n in names},
                  "label": "1 where the cloud (strong) model's result beats the local (weak) model's",
                  "seed": seed, "epochs": epochs}
    return LearnedRouter(buckets, weights, bias, knots, hybrid_weight, f"1-{digest.hexdigest()[:12]}", trained_on)


def benchmark_groups(data: Path, exclude: Sequence[str] = ()) -> dict[str, list[tuple[str, int]]]:
    return {b: [(i.prompt, label(i)) for i in ev.LOADERS[b](data)] for b in ev.BENCHMARKS if b not in exclude}


def jsonl_group(path: Path) -> list[tuple[str, int]]:
    """One JSONL file: {"prompt", "label"} or {"prompt", "weak", "strong"} per line."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            lab = int(row["label"]) if "label" in row else int(float(row["strong"]) > float(row["weak"]))
            rows.append((str(row["prompt"]), 1 if lab else 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"error: {path}:{n}: need prompt and label (or weak and strong): {exc}") from None
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ev.DEFAULT_DATA, help="the routing-bench folder")
    parser.add_argument("--exclude", action="append", default=[], choices=ev.BENCHMARKS,
                        help="leave this benchmark out (repeatable)")
    parser.add_argument("--no-bench", action="store_true", help="train on --jsonl files only")
    parser.add_argument("--jsonl", action="append", type=Path, default=[], help="your own labelled prompts")
    parser.add_argument("--out", type=Path, default=ev.ROOT / "configs" / "router" / "learned.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--buckets", type=int, default=2**14, help="hashed feature buckets (a power of two)")
    parser.add_argument("--hybrid-weight", type=float, default=0.5, help="the learned share of the hybrid score")
    args = parser.parse_args()
    groups: dict[str, list[tuple[str, int]]] = {}
    if not args.no_bench:
        if not args.data.exists():
            raise SystemExit(f"error: no benchmark data at {args.data} (--data DIR, or --no-bench with --jsonl)")
        groups.update(benchmark_groups(args.data, args.exclude))
    for path in args.jsonl:
        groups[path.stem] = jsonl_group(path)
    groups = {n: g for n, g in groups.items() if g}
    if not groups or args.buckets <= 0 or args.buckets & (args.buckets - 1):
        raise SystemExit("error: nothing to train on" if not groups else "error: --buckets must be a power of two")
    source = SOURCE if not args.no_bench else "your JSONL files"
    for name, rows in groups.items():
        print(f"training on {name}: {len(rows)} prompts, {sum(lb for _, lb in rows)} where the cloud model won")
    model = build(groups, seed=args.seed, epochs=args.epochs, buckets=args.buckets,
                  hybrid_weight=args.hybrid_weight, source=source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(model.to_json(), encoding="utf-8")
    print(f"wrote {args.out}: version {model.version}, {len(model.weights)} weights, seed {args.seed}, "
          f"{args.epochs} epochs, {args.buckets} buckets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
