#!/usr/bin/env python3
"""How long does the router take to decide? Median and p99 in microseconds on 1 KB and 32 KB prompts.

Side by side with a floor baseline: counting the words of the same prompt (str.split), the least work
any length-based router does. Deterministic prompts, fixed iteration count.

    python scripts/bench/bench_router.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.catalog import load_catalog  # noqa: E402
from gateway.chat import ChatRequest, Message  # noqa: E402
from gateway.smart_router import RoutingContext, decide  # noqa: E402

PARAGRAPH = (
    "Our team runs a distributed ingestion service that reads events from Kafka, enriches them and writes "
    "them to PostgreSQL. Latency grew after the last release. Analyze the design below, explain the "
    "trade-offs, and propose a step by step plan to fix it.\n"
    "```python\ndef handle(event):\n    row = enrich(event)\n    db.insert(row)\n```\n"
    "1. Measure the consumer lag\n2. Profile enrich()\n3. Batch the inserts\n"
)


def prompt_of(size: int) -> str:
    text = (PARAGRAPH * (size // len(PARAGRAPH) + 1))[:size]
    assert len(text.encode()) == size
    return text


def timed(fn, iterations: int) -> list[float]:
    for _ in range(min(200, iterations)):
        fn()
    out = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    catalog = load_catalog(ROOT / "configs" / "models.yaml")
    ctx = RoutingContext(catalog, frozenset({"ollama", "anthropic"}))
    print(f"{'prompt':<8}{'what':<34}{'median us':>11}{'p99 us':>10}   decision")
    for size in (1024, 32768):
        text = prompt_of(size)
        req = ChatRequest(messages=(Message("user", text),))
        d = decide(req, ctx)
        for name, fn in (("decide() (full router)", lambda r=req: decide(r, ctx)),
                         ("baseline: len(prompt.split())", lambda t=text: len(t.split()))):
            us = timed(fn, args.iterations)
            p99 = statistics.quantiles(us, n=100)[98]
            label = f"{d.model} ({d.score:.2f})" if name.startswith("decide") else ""
            print(f"{size // 1024:>3} KB   {name:<34}{statistics.median(us):>11.1f}{p99:>10.1f}   {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
