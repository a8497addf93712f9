#!/usr/bin/env python3
"""What the edge buys and costs, side by side in one run: slow clients, and time to first token.

The gateway runs under gunicorn with its production settings (2 workers x 256 threads: 512 requests in
its hands at once) and the edge (the real Caddy, configs/caddy/Caddyfile) in front of it, both on
loopback, against a fake Ollama that streams. For each target (the edge, then gunicorn directly):

- slow clients: --slow connections that never finish their headers (a slowloris client) or trickle
  their body, held open while --calls ordinary chat calls are made 4 at a time with a 10 s timeout;
  prints each call's latency percentiles and how many failed;
- time to first token: --streams streamed /v1/chat/completions calls one after another; prints the
  median and p90 time to the first content chunk.

The cost per plain request is scripts/bench/bench_gateway.py --edge. Loopback only, bounded in count and time.

    python scripts/bench/bench_edge.py [--slow 700] [--calls 40] [--streams 50]

Needs redis-server and caddy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench.procs import edge, fake_ollama, gunicorn_gateway, redis_server  # noqa: E402
from scripts.bench.slow_clients import slow_clients  # noqa: E402

KEY = "bench-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def calls(url: str, n: int, timeout: float = 10.0) -> dict:
    """`n` chat calls, 4 at a time: latency percentiles of those answered 200, and the failures."""
    def one(i):
        t0 = time.perf_counter()
        try:
            ok = requests.post(f"{url}/api/v1/chat", json={"prompt": f"What is {i}?", "temperature": 0},
                               headers=HEADERS, timeout=timeout).status_code == 200
        except requests.RequestException:
            ok = False
        return ok, time.perf_counter() - t0

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(n)))
    times = sorted(t for ok, t in results if ok)
    pct = (lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000) if times else (lambda q: float("nan"))
    return {"answered": len(times), "failed": n - len(times), "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def first_tokens(url: str, n: int) -> list[float]:
    """Time to the first content chunk of `n` streamed calls, one after another, in ms."""
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        with requests.post(f"{url}/v1/chat/completions", headers=HEADERS, stream=True, timeout=30,
                           json={"model": "auto", "stream": True, "temperature": 0,
                                 "messages": [{"role": "user", "content": f"Count to {i}"}]}) as r:
            for line in r.iter_lines():
                if line.startswith(b"data: {") and b'"content":"' in line.replace(b" ", b""):
                    out.append((time.perf_counter() - t0) * 1000)
                    break
            for _ in r.iter_content(None):
                pass
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=700, help="slow connections (more than gunicorn's 512)")
    parser.add_argument("--calls", type=int, default=40, help="ordinary calls made while they are open")
    parser.add_argument("--streams", type=int, default=50, help="streams timed for the first token")
    args = parser.parse_args()
    with ExitStack() as stack:
        up = stack.enter_context(fake_ollama(reply="one two three four five six seven eight", chunk_delay=0.02))
        redis_url = stack.enter_context(redis_server())
        gw = stack.enter_context(gunicorn_gateway({
            "OLLAMA_URL": up, "REDIS_URL": redis_url, "GATEWAY_API_KEYS": KEY, "LOG_LEVEL": "INFO",
            "GATEWAY_WORKERS": "2", "GATEWAY_THREADS": "256", "TRUSTED_PROXIES": "127.0.0.1/32"}))
        front = stack.enter_context(edge(gw.url.removeprefix("http://"))).url
        targets = (("through the edge", front), ("gunicorn directly", gw.url))
        for _, url in targets:  # warm up
            calls(url, 8)
            first_tokens(url, 3)
        print(f"{args.slow} slow connections, {args.calls} calls 4 at a time (10 s timeout)\n")
        print(f"{'target':<20}{'slow clients':<22}{'answered':>9}{'failed':>8}{'p50 ms':>10}{'p99 ms':>10}")
        for name, url in targets:
            rows = [("none", calls(url, args.calls))]
            for kind, label in (("headers", "slow headers"), ("body", "slow body")):
                with slow_clients(url, args.slow, kind, KEY):
                    rows.append((label, calls(url, args.calls)))
                time.sleep(2)  # gunicorn's threads come back once those connections are closed
            for label, r in rows:
                print(f"{name:<20}{label:<22}{r['answered']:>9}{r['failed']:>8}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}")
        print(f"\ntime to first token, {args.streams} streams one after another (chunks every 20 ms upstream)\n")
        for name, url in targets:
            ttft = sorted(first_tokens(url, args.streams))
            print(f"{name:<20} median {statistics.median(ttft):6.2f} ms   p90 {ttft[int(0.9 * len(ttft))]:6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
