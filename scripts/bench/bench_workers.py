#!/usr/bin/env python3
"""Which gunicorn worker class serves many slow LLM calls? sync vs gthread vs gevent, side by side.

Starts a fake Ollama whose every answer takes --delay seconds (a slow model), then for each worker
class runs the gateway under gunicorn with gateway/gunicorn.conf.py (only the worker class changed)
and drives --concurrency clients against /api/v1/chat for --seconds. Loopback only, bounded in time.

    python scripts/bench/bench_workers.py [--concurrency 200] [--delay 1.0] [--seconds 10] [--workers 2]

gevent is measured only when it is installed (pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripts.bench.procs import fake_ollama, gateway


def _drive(url: str, concurrency: int, seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(i: int) -> None:
        nonlocal errors
        session = requests.Session()
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                ok = session.post(f"{url}/api/v1/chat", json={"prompt": f"What is {i}?"},
                                  timeout=seconds + 30).status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                if ok and time.monotonic() <= stop_at + 0.001:
                    latencies.append(time.perf_counter() - t0)
                elif not ok:
                    errors += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    return latencies, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the fake model takes per answer")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=256, help="gthread threads per worker (production default)")
    args = parser.parse_args()

    classes = ["sync", "gthread"] + (["gevent"] if importlib.util.find_spec("gevent") else [])
    extra = {"sync": ["--threads", "1"],  # with threads > 1 gunicorn silently runs gthread instead of sync
             "gthread": [], "gevent": ["--worker-connections", "1000"]}
    rows = []
    with fake_ollama(delay=args.delay, reply="a slow local answer") as ollama_url:
        for worker_class in classes:
            env = {"OLLAMA_URL": ollama_url, "GATEWAY_WORKERS": str(args.workers), "GATEWAY_THREADS": str(args.threads),
                   "CACHE_TTL_SECONDS": "0"}  # every request must reach the slow upstream
            with gateway(env, "--worker-class", worker_class, *extra[worker_class]) as url:
                _drive(url, min(args.concurrency, 8), 1.0)  # warm-up: imports, connection pools
                latencies, errors = _drive(url, args.concurrency, args.seconds)
            capacity = {"sync": args.workers, "gthread": args.workers * args.threads,
                        "gevent": args.workers * 1000}[worker_class]
            q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
            rows.append((worker_class, capacity, len(latencies), len(latencies) / args.seconds,
                         statistics.median(latencies) if latencies else float("nan"), q[98], errors))

    print(f"\n{args.concurrency} concurrent clients, upstream answer takes {args.delay:.1f} s, "
          f"{args.workers} workers, {args.seconds:.0f} s per run, loopback")
    print(f"{'worker class':<13}{'slots':>7}{'answers':>9}{'req/s':>9}{'p50 s':>8}{'p99 s':>8}{'errors':>8}")
    for name, slots, n, rps, p50, p99, errors in rows:
        print(f"{name:<13}{slots:>7}{n:>9}{rps:>9.1f}{p50:>8.2f}{p99:>8.2f}{errors:>8}")
    if args.delay > 0:
        print(f"(ideal: {args.concurrency / args.delay:.0f} req/s, every client waiting only on the upstream)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
