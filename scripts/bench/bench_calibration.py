#!/usr/bin/env python3
"""What the learning router costs: the decision with a calibrated threshold in force (median and p99 in
microseconds, 1 KB and 32 KB prompts, ROUTER=learned with the shipped weights), side by side with the same
decision without one; and the background work: one refit, and one whole calibration run (three refits and the
thresholds), on 10,000 labels of the public benchmarks' prompts (../shared/routing-bench; synthetic prompts
without it).

    python scripts/bench/bench_calibration.py [--iterations 2000] [--labels 10000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.calibration import calibrate  # noqa: E402
from gateway.calibration.labels import Label, cluster_of  # noqa: E402
from gateway.calibration.learn import refit  # noqa: E402
from gateway.catalog import load_catalog  # noqa: E402
from gateway.chat import ChatRequest, Message  # noqa: E402
from gateway.learned_router import LearnedRouter, features  # noqa: E402
from gateway.smart_router import RoutingContext, decide  # noqa: E402
from scripts.bench.bench_router import prompt_of, timed  # noqa: E402


def prompts(n: int) -> list[str]:
    try:
        from scripts.routing import bench_data
        found = [i.prompt for b in ("mmlu", "gsm8k") for i in bench_data.LOADERS[b](bench_data.DEFAULT_DATA)]
    except (OSError, KeyError):
        found = []
    rnd = random.Random(0)
    if len(found) < n:
        words = [f"word{i}" for i in range(5000)]
        found += [" ".join(rnd.choice(words) for _ in range(60)) for _ in range(n - len(found))]
    rnd.shuffle(found)
    return found[:n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--labels", type=int, default=10_000)
    args = parser.parse_args()
    text = (ROOT / "configs" / "models.yaml").read_text()
    catalog = load_catalog(ROOT / "configs" / "models.yaml")
    path = Path("/tmp/bench-calibration-models.yaml")
    path.write_text(text.replace("  target_quality: null", "  target_quality: 0.95"))
    targeted = load_catalog(path)
    model = LearnedRouter.load(ROOT / "configs" / "router" / "learned.json")
    plain = RoutingContext(catalog, frozenset({"ollama", "anthropic"}), router="learned", learned=model)
    calibrated = RoutingContext(targeted, frozenset({"ollama", "anthropic"}), router="learned", learned=model,
                                thresholds={"*": 0.4, "code": 0.35}, router_version="bench")
    print(f"{'prompt':<8}{'what':<44}{'median us':>11}{'p99 us':>10}")
    for size in (1024, 32768):
        req = ChatRequest(messages=(Message("user", prompt_of(size)),))
        for name, ctx in (("decide(), learned, tiers' thresholds", plain),
                          ("decide(), learned, calibrated threshold", calibrated)):
            us = timed(lambda r=req, c=ctx: decide(r, c), args.iterations)
            print(f"{size // 1024:>3} KB   {name:<44}{statistics.median(us):>11.1f}"
                  f"{statistics.quantiles(us, n=100)[98]:>10.1f}")

    texts = prompts(args.labels)
    rnd = random.Random(1)
    labels = [Label(features(p, model.buckets), rnd.random(), float(rnd.random() < 0.7), 1.0, 1.0 / 0.05,
                    "shadow", cluster_of(p), float(i)) for i, p in enumerate(texts)]
    traffic = labels[: calibrate.TRAFFIC]
    t0 = time.perf_counter()
    refit(model, labels)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    cal = calibrate.run(model, labels, router="learned", target=0.95, traffic=traffic)
    whole = time.perf_counter() - t0
    print(f"\n{len(labels)} labels: one refit {one:.2f} s; a whole calibration run (3 refits, thresholds for "
          f"{len(cal.thresholds)} cluster(s), window {min(len(labels), calibrate.WINDOW)}) {whole:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
