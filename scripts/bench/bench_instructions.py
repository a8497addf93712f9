#!/usr/bin/env python3
"""The gateway's own cost per request in CPU instructions, counted by valgrind (callgrind): the same figure
on every run, whatever else the machine does, so a before/after of a few per cent is visible where wall-clock
benchmarks on a shared machine swing by more than that.

Each tree (this checkout, and --baseline REF) answers N and then 2N requests in-process (Flask's test
client: the gateway's hooks, router, dispatch, backend HTTP, Redis writes and JSON, without gunicorn and the
socket it reads from), with the production settings of scripts/bench/bench_gateway.py, against the fast fake
upstream and a private redis-server (separate processes, not counted). Per request = (I(2N) - I(N)) / N,
which takes start-up and warm-up out.

With --tools, this tree also answers a request with two tools (the tools preset's local model, which calls
one): what parsing, routing by capability, translating to Ollama and back and checking the call against its
schema cost beyond a plain request.

    python scripts/bench/bench_instructions.py [--baseline REF] [-n 200] [--tools]

Needs valgrind and redis-server.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench.bench_gateway import KEY, upstream  # noqa: E402
from scripts.bench.procs import redis_server, source_tree  # noqa: E402

# Runs inside valgrind, in the tree measured: argv = tree, upstream URL, Redis URL, target, requests.
DRIVER = """
import sys, uuid
sys.path.insert(0, sys.argv[1])
from gateway import create_app
tree, up, redis_url, target, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
app = create_app({"OLLAMA_URL": up, "REDIS_URL": redis_url, "GATEWAY_API_KEYS": "@KEY@", "LOG_LEVEL": "WARNING",
                  "ANTHROPIC_API_KEY": "", "METRICS_TRUSTED_NETWORKS": "127.0.0.1",
                  "MODEL_PRESET": "tools" if target in ("tools", "plain") else "classic"})
client = app.test_client()
headers = {"X-API-Key": "@KEY@"}
run = uuid.uuid4().hex  # a miss is a miss in every run
TOOLS = [{"type": "function", "function": {"name": n, "description": "The weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
    "required": ["city"]}}} for n in ("get_weather", "get_forecast")]
def body(i):
    prompt = "What is Python?" if target == "hit" else f"What is Python? {run}-{i}"
    return {"prompt": prompt, "temperature": 0} | ({"tools": TOOLS} if target == "tools" else {})
for i in range(20):  # warm-up: connections, first-call costs, the hit target's cached answer
    assert client.post("/api/v1/chat", json=body(-1 - i), headers=headers).status_code == 200
for i in range(n):
    client.post("/api/v1/chat", json=body(i), headers=headers)
""".replace("@KEY@", KEY)


def instructions(tree: Path, up: str, redis_url: str, target: str, n: int) -> int:
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
                          DRIVER, str(tree), up, redis_url, target, str(n)],
                         capture_output=True, text=True, cwd=tree, timeout=3600)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed in {tree}:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def per_request(tree: Path, up: str, redis_url: str, target: str, n: int) -> float:
    return (instructions(tree, up, redis_url, target, 2 * n) - instructions(tree, up, redis_url, target, n)) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REF", help="also the gateway of this git commit")
    parser.add_argument("-n", type=int, default=200, help="requests in the first run (the second sends twice)")
    parser.add_argument("--tools", action="store_true", help="also a request with tools (this tree only)")
    args = parser.parse_args()
    for tool in ("valgrind", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt-get install {tool})")
    with ExitStack() as stack:
        up, _ = stack.enter_context(upstream(0))
        redis_url = stack.enter_context(redis_server())
        trees = [("this tree", ROOT)]
        if args.baseline:
            trees.append((args.baseline, stack.enter_context(source_tree(args.baseline))))
        rows = {name: {t: per_request(tree, up, redis_url, t, args.n) for t in ("miss", "hit")}
                for name, tree in trees}
        if args.tools:  # the tools preset: a plain miss and a tools miss on the same models
            tools = {t: per_request(ROOT, up, redis_url, t, args.n) for t in ("plain", "tools")}
    print(f"instructions per request (callgrind, {args.n} and {2 * args.n} requests, in-process)")
    for name, row in rows.items():
        print(f"  {name:<20} miss {row['miss'] / 1e6:8.3f} M   cache hit {row['hit'] / 1e6:8.3f} M")
    if args.baseline:
        now, base = rows["this tree"], rows[args.baseline]
        print("  change vs baseline   " + "   ".join(f"{t} {now[t] / base[t] - 1:+.1%}" for t in ("miss", "hit")))
    if args.tools:
        plain, with_tools = tools["plain"], tools["tools"]
        print(f"  tools preset         plain miss {plain / 1e6:8.3f} M   with 2 tools {with_tools / 1e6:8.3f} M"
              f"   ({with_tools / plain - 1:+.1%}: parse, route by capability, translate, check)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
