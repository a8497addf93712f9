#!/usr/bin/env python3
"""What the gateway's two client-side choices cost per request, each side by side with what it replaced,
in one run on loopback: CPU and wall time per call, one thread.

- Upstream HTTP: one Ollama-style JSON POST and its JSON answer through requests (a pooled Session, proxy
  environment read once, as the gateway used it), urllib3 (a connection pool) and the gateway's own
  http_pool (gateway/backends/http_pool.py), against the fast fake upstream (scripts/bench/upstream.py).
- Redis writes: one request's writes (cache-miss count, stats, spend, decision log, cache fill) as a
  pipeline of one command per write (EVAL with the script text for the scripted ones, as before), as one
  EVALSHA through redis-py's client, and as the store's single EVALSHA on its own kept connections
  (RedisStore.command, gateway/state/store.py), against a private redis-server.
- Redis read: the cache lookup (a GET) through redis-py's client and through RedisStore.command.

    python scripts/bench/bench_clients.py [--calls 3000]

Needs redis-server.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import requests  # noqa: E402
import urllib3  # noqa: E402

from gateway import fastjson  # noqa: E402
from gateway.backends.http_pool import HttpPool  # noqa: E402
from gateway.state.budget import _RECORD, Limits, RedisLedger  # noqa: E402
from gateway.state.cache import CachedAnswer, RedisCache  # noqa: E402
from gateway.state.decisions import RedisDecisionLog  # noqa: E402
from gateway.state.stats import KEY, RedisStats  # noqa: E402
from gateway.state.store import RedisStore  # noqa: E402
from scripts.bench.bench_gateway import upstream  # noqa: E402
from scripts.bench.procs import redis_server  # noqa: E402

BODY = {"model": "tinyllama", "messages": [{"role": "user", "content": "What is Python?"}], "stream": False,
        "options": {"num_predict": 256}, "keep_alive": "30m"}
DECISION = {"time": "2026-11-22T10:00:00Z", "request_id": "0" * 32, "key_id": "", "strategy": "auto",
            "score": "0.1200", "decided_tier": "local-small", "decided_model": "tinyllama", "tier": "local-small",
            "model": "tinyllama", "backend": "ollama", "cost": "0.00000000", "latency_seconds": "0.0010",
            "cached": "false", "fallback": "false", "attempts": "1"}
ANSWER = CachedAnswer("tinyllama", "ollama", "local-small", "Hello from the benchmark upstream.", "stop", 12, 8)
STATS = {"requests": 1, "local": 1, "backend:ollama": 1, "model:tinyllama": 1, "tier:local-small": 1,
         "tokens:input": 12, "tokens:output": 8}


def measure(fn, calls: int) -> tuple[float, float]:
    """(CPU us, wall us) per call, after a warm-up."""
    for _ in range(min(300, calls)):
        fn()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


def http_clients(url: str) -> dict:
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16, max_retries=0))
    host, port = url.rsplit("/", 1)[1].split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=16, retries=False)
    ours = HttpPool("ollama", url, connect_timeout=5, read_timeout=60)

    def with_requests():
        r = session.post(f"{url}/api/chat", json=BODY, timeout=(5, 60))
        return r.json()

    def with_urllib3():
        r = pool.request("POST", "/api/chat", body=json.dumps(BODY).encode(), timeout=urllib3.Timeout(5, 60),
                         headers={"Content-Type": "application/json"}, preload_content=False)
        data = json.loads(r.read())
        r.release_conn()
        return data

    def with_http_pool():
        return ours.request("POST", "/api/chat", BODY).json(60)

    return {"requests": with_requests, "urllib3": with_urllib3, "gateway http_pool": with_http_pool}


def redis_writes(url: str) -> dict:
    client = redis.Redis.from_url(url, decode_responses=True)
    store = RedisStore(client)
    stats, ledger = RedisStats(store), RedisLedger(store, Limits(None, None))
    cache, decisions = RedisCache(store), RedisDecisionLog(store, 10000)
    increment = "for f, by in pairs(cjson.decode(ARGV[1])) do redis.call('HINCRBY', KEYS[1], f, by) end"
    record = _RECORD.replace("op[", "ARGV[")  # the spend script as it ran inside a pipeline before

    def pipeline_of_five():
        pipe = client.pipeline(transaction=False)
        pipe.eval(increment, 1, KEY, '{"cache:miss":1}')
        pipe.eval(increment, 1, KEY, json.dumps(STATS))
        pipe.eval(record, 0, "", "hai:spend:2026-11", "hai:spend:2026-11-22", "hai:resv:2026-11",
                  "hai:resv:2026-11:amounts", "", "0.0", "3.6e-05", "tinyllama", "ollama", "", 3456000)
        pipe.xadd("hai:decisions", {"e": json.dumps(DECISION)}, maxlen=10000, approximate=True)
        pipe.set("hai:cache:v1:" + "a" * 64, json.dumps(ANSWER.__dict__), ex=3600)
        pipe.execute()

    def writes():
        stats.record_cache("miss")
        store.write("stats", KEY, STATS)
        ledger.record(cost=0.0, cloud_cost=3.6e-05, model="tinyllama", backend="ollama", key_id=None,
                      reservation=None)
        decisions.append(DECISION)
        cache.put("hai:cache:v1:" + "a" * 64, ANSWER, 3600)

    def one_command():
        with store.batch():
            writes()

    store._local.pending = []  # the batch's ops, as the store sends them, for the redis-py row
    writes()
    ops, store._local.pending = store._local.pending, None
    apply = store._apply_script()
    client.script_load(apply.script)

    def evalsha_through_redis_py():
        client.evalsha(apply.sha, 0, fastjson.dumpb(ops))

    return {"pipeline of 5 commands": pipeline_of_five, "one EVALSHA, redis-py": evalsha_through_redis_py,
            "gateway: one EVALSHA": one_command}


def redis_reads(url: str) -> dict:
    client = redis.Redis.from_url(url, decode_responses=True)
    store = RedisStore(client)
    key = "hai:cache:v1:" + "b" * 64
    client.set(key, json.dumps(ANSWER.__dict__))
    return {"redis-py client.get": lambda: client.get(key), "gateway: store.command": lambda: store.command("GET", key)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    with upstream(0) as (url, _), redis_server() as redis_url:
        for title, clients in (("upstream JSON POST", http_clients(url)),
                               ("one request's Redis writes", redis_writes(redis_url)),
                               ("the cache lookup (Redis GET)", redis_reads(redis_url))):
            print(f"\n{title} ({args.calls} calls, one thread)")
            print(f"  {'client':<24}{'CPU us/call':>12}{'wall us/call':>14}")
            for name, fn in clients.items():
                cpu, wall = measure(fn, args.calls)
                print(f"  {name:<24}{cpu:>12.0f}{wall:>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
