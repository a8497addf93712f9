#!/usr/bin/env python3
"""Cache hit vs miss latency through the gateway (gunicorn + a private redis-server), with the direct
upstream call as the baseline, in one run. Loopback only, bounded in count.

    python scripts/bench/bench_cache.py [--requests 300] [--upstream-delay 0.0]

Misses use a new prompt each time; hits repeat one prompt that is already cached.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripts.bench.procs import fake_ollama, gateway, redis_server


def _timed(session: requests.Session, url: str, body: dict) -> float:
    t0 = time.perf_counter()
    r = session.post(url, json=body, timeout=30)
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return elapsed * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--upstream-delay", type=float, default=0.0, help="seconds the fake model takes")
    args = parser.parse_args()
    rows = []
    with redis_server() as redis_url, fake_ollama(delay=args.upstream_delay) as ollama_url, \
            gateway({"OLLAMA_URL": ollama_url, "REDIS_URL": redis_url, "CACHE_TTL_SECONDS": "3600"}) as url:
        s = requests.Session()
        for i in range(20):  # warm-up: imports, pools, both workers
            _timed(s, f"{url}/api/v1/chat", {"prompt": f"warm {i}"})
        _timed(s, f"{url}/api/v1/chat", {"prompt": "What is the cached question?"})
        direct = [_timed(s, f"{ollama_url}/api/chat", {"model": "tinyllama", "stream": False,
                                                       "messages": [{"role": "user", "content": f"What is {i}?"}]})
                  for i in range(args.requests)]
        miss = [_timed(s, f"{url}/api/v1/chat", {"prompt": f"What is {i}?"}) for i in range(args.requests)]
        hit = [_timed(s, f"{url}/api/v1/chat", {"prompt": "What is the cached question?"})
               for _ in range(args.requests)]
        stats = s.get(f"{url}/api/v1/stats", timeout=5).json()["cache"]
        for name, values in (("direct upstream call", direct), ("gateway, cache miss", miss),
                             ("gateway, cache hit", hit)):
            q = statistics.quantiles(values, n=100)
            rows.append(f"{name:<24}{statistics.median(values):>10.2f}{q[98]:>10.2f}")

    print(f"\n{args.requests} sequential requests each, upstream answers in {args.upstream_delay:.2f} s, "
          f"gunicorn defaults + Redis, loopback")
    print(f"{'path':<24}{'p50 ms':>10}{'p99 ms':>10}")
    for row in rows:
        print(row)
    print(f"(gateway cache counters: {stats['hits']} hits, {stats['misses']} misses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
