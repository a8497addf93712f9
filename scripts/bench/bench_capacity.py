#!/usr/bin/env python3
"""Several Ollama hosts: the gateway's choice of host against round-robin and "the first host that has the
model", in one run, on the same traffic.

Three fake Ollama hosts (threads in this process) that behave as Ollama does where it matters here: a fixed
number of parallel slots (a call waits for a free one), a per-token generation time, one model in memory at a
time (another model loads cold first, evicting it, for --cold-seconds). At the start host 1 has model A
loaded, host 2 model B, host 3 none. Bursts of calls for A and B go through the gateway under gunicorn
(OLLAMA_URLS, OLLAMA_HOST_POLICY = smart, round_robin, first). Per policy: client latency p50/p99, cold loads,
time calls waited for a slot on the host (p99, total), and each host's share. Spills (a full fleet sending a
call to the cloud) are not built yet: every call here stays local.

    python scripts/bench/bench_capacity.py [--bursts 6] [--burst-size 12] [--gap 1.5] [--slots 2]
                                           [--tokens 40] [--token-seconds 0.01] [--cold-seconds 2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripts.bench.procs import gateway

MODELS = ("tinyllama", "phi")
POLICIES = ("smart", "round_robin", "first")


class Host:
    """A fake Ollama with slots, a generation speed and one model in memory."""

    def __init__(self, slots: int, tokens: int, token_seconds: float, cold_seconds: float, loaded: str | None):
        self.tokens, self.token_seconds, self.cold_seconds = tokens, token_seconds, cold_seconds
        self.slots = threading.Semaphore(slots)
        self.loading = threading.Lock()
        self.loaded, self.calls, self.cold_loads, self.waits = loaded, 0, 0, []
        self.lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, body: dict):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/api/tags":
                    self._send({"models": [{"name": f"{m}:latest", "digest": m} for m in MODELS]})
                elif self.path == "/api/ps":
                    self._send({"models": [{"name": f"{host.loaded}:latest"}] if host.loaded else []})
                else:
                    self._send({"version": "0.12.11"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._send(host.generate(body["model"].removesuffix(":latest")))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def generate(self, model: str) -> dict:
        asked = time.monotonic()
        with self.slots:
            with self.lock:
                self.calls += 1
                self.waits.append(time.monotonic() - asked)
            with self.loading:  # one model in memory: another one is loaded first, cold
                if self.loaded != model:
                    time.sleep(self.cold_seconds)
                    self.loaded = model
                    with self.lock:
                        self.cold_loads += 1
            time.sleep(self.tokens * self.token_seconds)
        return {"model": model, "message": {"role": "assistant", "content": "word " * self.tokens}, "done": True,
                "done_reason": "stop", "prompt_eval_count": 12, "eval_count": self.tokens}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


def run(policy: str, args) -> dict:
    hosts = [Host(args.slots, args.tokens, args.token_seconds, args.cold_seconds, loaded)
             for loaded in (MODELS[0], MODELS[1], None)]
    env = {"OLLAMA_URLS": ",".join(h.url for h in hosts), "OLLAMA_HOST_POLICY": policy, "GATEWAY_WORKERS": "1",
           "GATEWAY_THREADS": "256", "HEALTH_CACHE_SECONDS": "1", "OLLAMA_MAX_RETRIES": "0",
           "OLLAMA_TIMEOUT": "120", "REDIS_URL": None, "CACHE_TTL_SECONDS": "0"}
    latencies, errors = [], 0
    try:
        with gateway(env) as url, ThreadPoolExecutor(max_workers=args.burst_size) as pool:
            def call(i: int) -> float | None:
                t0 = time.perf_counter()
                r = requests.post(f"{url}/api/v1/chat", timeout=300, json={
                    "prompt": f"What is {i}?", "model": MODELS[i % 2], "strategy": "local-only"})
                return time.perf_counter() - t0 if r.status_code == 200 else None

            for h in hosts:  # warm-up reads aside, every count starts here
                h.calls, h.cold_loads, h.waits = 0, 0, []
            for burst in range(args.bursts):
                for took in pool.map(call, range(burst * args.burst_size, (burst + 1) * args.burst_size)):
                    if took is None:
                        errors += 1
                    else:
                        latencies.append(took)
                time.sleep(args.gap)
    finally:
        for h in hosts:
            h.close()
    calls = sum(h.calls for h in hosts) or 1
    waits = [w for h in hosts for w in h.waits]
    return {"policy": policy, "answered": len(latencies), "errors": errors,
            "p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "p99_s": round(pct(latencies, 99), 3), "cold_loads": sum(h.cold_loads for h in hosts),
            "slot_wait_p99_s": round(pct(waits, 99), 3), "slot_wait_total_s": round(sum(waits), 2),
            "spills": 0, "host_share": [round(h.calls / calls, 3) for h in hosts]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=6)
    parser.add_argument("--burst-size", type=int, default=12)
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between bursts")
    parser.add_argument("--slots", type=int, default=2, help="parallel slots per host (OLLAMA_NUM_PARALLEL)")
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--token-seconds", type=float, default=0.01)
    parser.add_argument("--cold-seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [run(policy, args) for policy in POLICIES]
    print(f"{args.bursts} bursts of {args.burst_size} calls (models {MODELS[0]} and {MODELS[1]} alternating), "
          f"3 hosts x {args.slots} slots, {args.tokens} tokens x {args.token_seconds} s, cold load "
          f"{args.cold_seconds} s, one model in memory per host")
    print(f"{'policy':<12} {'p50 s':>7} {'p99 s':>7} {'cold':>5} {'wait p99':>9} {'wait sum':>9} {'errors':>6}  share")
    for r in rows:
        print(f"{r['policy']:<12} {r['p50_s']:>7} {r['p99_s']:>7} {r['cold_loads']:>5} {r['slot_wait_p99_s']:>9} "
              f"{r['slot_wait_total_s']:>9} {r['errors']:>6}  {r['host_share']}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
