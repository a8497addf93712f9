#!/usr/bin/env python3
"""Gateway overhead, side by side in one run: the direct upstream call, the gateway (cache miss and hit,
native and OpenAI surfaces) and optionally a LiteLLM proxy on the same upstream, on loopback.

Starts a fast fake upstream (scripts/bench/upstream.py), a private redis-server, the gateway under gunicorn
(and with --baseline REF the gateway of that git commit beside it, for before/after in one run)
with its production settings (2 workers x 256 threads, auth on, Redis, metrics, INFO access log; worker
recycling off so CPU accounting sees every request), with --litellm a LiteLLM proxy with the same worker
count, with --floor a Flask app that only parses and answers JSON under the same gunicorn settings, and with
--edge the same gateway reached through the stack's edge (the real Caddy, configs/caddy/Caddyfile).
Warms each up, then drives the same request body with wrk at each concurrency for a fixed time, rotating
the target order per level so machine drift hits all. CPU time per request comes from the
target processes' own accounting (/proc, the whole process tree).

    python scripts/bench/bench_gateway.py [--duration 10] [--concurrency 1 16 64] [--litellm VENV] [--json FILE]
                                    [--delay-ms 0] [--quick] [--soak N] [--router] [--floor] [--baseline REF]
                                    [--edge]

Needs wrk (apt-get install wrk) and redis-server (and caddy for --edge).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench.procs import (  # noqa: E402
    edge,
    free_port,
    gunicorn_gateway,
    redis_server,
    source_tree,
    stop,
    wait_until,
)

KEY = "bench-key"
LITELLM_KEY = "sk-bench-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LITELLM_OFFLINE = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True", "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True", "LITELLM_TELEMETRY": "False", "DISABLE_ADMIN_UI": "True",
}


# ------------------------------------------------------------------------------------------- processes

def tree(pid: int) -> list[int]:
    """pid and every descendant (gunicorn's workers, LiteLLM's uvicorn workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process tree, from /proc/PID/stat."""
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def upstream(delay_ms: float) -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench" / "upstream.py"), "--port", str(port),
                             "--delay-ms", str(delay_ms)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/api/tags", timeout=1).ok, "the fake upstream")
        yield url, proc.pid
    finally:
        stop(proc)


@contextmanager
def litellm(binary: str, upstream_url: str, workers: int, workdir: Path) -> Iterator[tuple[str, int]]:
    config = workdir / "litellm.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "model_list": [{"model_name": "tinyllama", "litellm_params": {
            "model": "openai/tinyllama", "api_base": f"{upstream_url}/v1", "api_key": "none"}}],
        "general_settings": {"master_key": LITELLM_KEY},
    }))
    port = free_port()
    log = (workdir / "litellm.log").open("w")
    proc = subprocess.Popen([binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                             "--num_workers", str(workers)], env={**os.environ, **LITELLM_OFFLINE,
                                                                  "LITELLM_MASTER_KEY": LITELLM_KEY},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/health/liveliness", timeout=2).ok, "LiteLLM", seconds=180)
        yield url, proc.pid
    finally:
        stop(proc)
        log.close()


@contextmanager
def flask_floor(workers: int, threads: int) -> Iterator[tuple[str, int]]:
    """scripts/bench/floor_app.py under gunicorn with the gateway's worker class, workers and threads."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", str(workers),
                             "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                             "floor_app:create_app()"], cwd=ROOT / "scripts" / "bench",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.post(f"{url}/api/v1/chat", json={"prompt": "x"}, timeout=2).ok, "the Flask floor")
        yield url, proc.pid
    finally:
        stop(proc)


def litellm_binary(arg: str) -> str:
    path = Path(arg).expanduser()
    for candidate in (path, path / "bin" / "litellm"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise SystemExit(f"--litellm: no litellm binary at {arg} (./scripts/tools.sh litellm installs one)")


# ------------------------------------------------------------------------------------------------- wrk

@dataclass(frozen=True)
class Target:
    name: str
    url: str
    pid: int
    headers: dict[str, str]
    body: tuple[str, str]   # JSON before and after a per-request unique number ("" after: fixed body)
    also: int = 0           # another process tree its CPU counts (the gateway behind the edge)


LUA = """
wrk.method = "POST"
{headers}
local prefix, suffix, unique, run = [==[{prefix}]==], [==[{suffix}]==], {unique}, "{run}"
local counter = 0
local thread_no = 0
function setup(thread)
  thread_no = thread_no + 1
  thread:set("tid", thread_no)
end
function request()
  counter = counter + 1
  if unique then return wrk.format(nil, nil, nil, prefix .. run .. "-" .. tid .. "-" .. counter .. suffix) end
  return wrk.format(nil, nil, nil, prefix)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"non2xx": %d, "socket_errors": %d}}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def lua(target: Target, workdir: Path) -> Path:
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in
                        {"Content-Type": "application/json", **target.headers}.items())
    prefix, suffix = target.body
    path = workdir / f"{target.name}.lua"
    # A token new for every wrk run: the counters restart with each run, and without it a later round's
    # "unique" prompts would repeat an earlier round's and be answered from the cache.
    path.write_text(LUA.format(headers=headers, prefix=prefix, suffix=suffix, unique="true" if suffix else "false",
                               run=uuid.uuid4().hex[:12]))
    return path


def wrk(target: Target, concurrency: int, seconds: float, workdir: Path,
        until: Callable[[], bool] | None = None) -> dict:
    """One wrk run; with `until`, run until it returns True (checked twice a second), then stop wrk."""
    threads = min(concurrency, 2)
    duration = 24 * 3600 if until else max(1, round(seconds))
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--timeout", "30s",
           "-s", str(lua(target, workdir)), target.url]
    cpu0 = cpu_seconds(target.pid) + (cpu_seconds(target.also) if target.also else 0.0)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if until:
        while proc.poll() is None and not until():
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)   # wrk stops and reports on SIGINT
    stdout, stderr = proc.communicate(timeout=seconds + 600 if not until else 600)
    cpu1 = cpu_seconds(target.pid) + (cpu_seconds(target.also) if target.also else 0.0)
    line = next((x for x in stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed for {target.name}: {stdout}{stderr}")
    r = json.loads(line[len("WRKJSON "):])
    n = max(r["requests"], 1)
    rps = r["requests"] / (r["duration_us"] / 1e6)
    return {"target": target.name, "concurrency": concurrency, "rps": round(rps, 1),
            "p50_ms": round(r["p50_us"] / 1000, 3), "p99_ms": round(r["p99_us"] / 1000, 3),
            "cpu_ms_per_request": round((cpu1 - cpu0) * 1000 / n, 3), "requests": r["requests"],
            "errors": r["non2xx"] + r["socket_errors"]}


def combine(rounds: list[dict]) -> dict:
    """One figure per target from its rounds: total throughput and CPU, median latencies."""
    requests_ = sum(r["requests"] for r in rounds)
    seconds = sum(r["requests"] / r["rps"] for r in rounds if r["rps"])
    cpu = sum(r["cpu_ms_per_request"] * r["requests"] for r in rounds)
    return {"target": rounds[0]["target"], "concurrency": rounds[0]["concurrency"],
            "rps": round(requests_ / seconds, 1) if seconds else 0.0,
            "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 3),
            "cpu_ms_per_request": round(cpu / max(requests_, 1), 3), "requests": requests_,
            "errors": sum(r["errors"] for r in rounds)}


# ---------------------------------------------------------------------------------------------- report

def table(runs: list[dict]) -> str:
    direct = {r["concurrency"]: r for r in runs if r["target"] == "direct"}
    lines = [f"{'target':<20}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}"
             f"{'p50 +ms vs direct':>19}{'thru vs direct':>16}{'errors':>8}"]
    for r in runs:
        d = direct.get(r["concurrency"])
        extra = ("", "") if d is None or r["target"] == "direct" else (
            f"{r['p50_ms'] - d['p50_ms']:+.2f}", f"{r['rps'] / d['rps']:.1%}")
        lines.append(f"{r['target']:<20}{r['concurrency']:>5}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                     f"{r['cpu_ms_per_request']:>12.3f}{extra[0]:>19}{extra[1]:>16}{r['errors']:>8}")
    return "\n".join(lines)


def router_times(iterations: int) -> list[dict]:
    """decide() median and p99 per prompt size, for each router (ROUTER=heuristic|learned|hybrid) with the
    shipped configuration and weights."""
    from gateway.catalog import load_catalog
    from gateway.chat import ChatRequest, Message
    from gateway.learned_router import LearnedRouter
    from gateway.smart_router import ROUTERS, RoutingContext, decide
    from scripts.bench import bench_router  # the prompts and the timing loop

    catalog = load_catalog(ROOT / "configs" / "models.yaml")
    learned = LearnedRouter.load(ROOT / "configs" / "router" / "learned.json")
    out = []
    for name in ROUTERS:
        ctx = RoutingContext(catalog, frozenset({"ollama", "anthropic"}), router=name, learned=learned)
        for size in (100, 1024, 32768):
            req = ChatRequest(messages=(Message("user", bench_router.prompt_of(size)),))
            us = bench_router.timed(lambda r=req, c=ctx: decide(r, c), iterations)
            out.append({"router": name, "prompt_bytes": size, "median_us": round(statistics.median(us), 1),
                        "p99_us": round(statistics.quantiles(us, n=100)[98], 1)})
    return out


# ------------------------------------------------------------------------------------------------ main

def targets(up: str, up_pid: int, gw: str, gw_pid: int, ll: tuple[str, int] | None,
            floor: tuple[str, int] | None = None, base: tuple[str, int] | None = None,
            front: tuple[str, int] | None = None) -> list[Target]:
    key = {"X-API-Key": KEY}
    out = [Target("direct", f"{up}/api/chat", up_pid, {},
                  ('{"model":"tinyllama","stream":false,"messages":[{"role":"user","content":"What is Python? ',
                   '"}]}'))]
    for name, server in (("gateway", (gw, gw_pid)), ("baseline", base)):
        if server is None:
            continue
        url, pid = server
        # temperature 0: answers the cache may keep (a request without one samples at the model's default)
        out += [
            Target(name, f"{url}/api/v1/chat", pid, key, ('{"temperature":0,"prompt":"What is Python? ', '"}')),
            Target(f"{name}_cache_hit", f"{url}/api/v1/chat", pid, key,
                   ('{"temperature":0,"prompt":"What is Python?"}', "")),
            Target(f"{name}_openai", f"{url}/v1/chat/completions", pid, key,
                   ('{"model":"auto","temperature":0,"messages":[{"role":"user","content":"What is Python? ',
                    '"}]}')),
        ]
    if front:  # the gateway through the edge: its CPU is Caddy's and the gateway's together
        out += [
            Target("edge", f"{front[0]}/api/v1/chat", front[1], key, ('{"temperature":0,"prompt":"What is Python? ',
                                                                     '"}'), also=gw_pid),
            Target("edge_openai", f"{front[0]}/v1/chat/completions", front[1], key,
                   ('{"model":"auto","temperature":0,"messages":[{"role":"user","content":"What is Python? ',
                    '"}]}'), also=gw_pid),
        ]
    if floor:
        out.append(Target("flask_floor", f"{floor[0]}/api/v1/chat", floor[1], {},
                          ('{"prompt":"What is Python? ', '"}')))
    if ll:
        out.append(Target("litellm", f"{ll[0]}/v1/chat/completions", ll[1], {"Authorization": f"Bearer {LITELLM_KEY}"},
                          ('{"model":"tinyllama","messages":[{"role":"user","content":"What is Python? ', '"}]}')))
    return out


def soak(target: Target, gw: str, gw_pid: int, n: int, workdir: Path) -> None:
    workers = [p for p in tree(gw_pid) if p != gw_pid]
    before = {p: rss_mb(p) for p in workers}

    def answered() -> int:
        return requests.get(f"{gw}/api/v1/stats", headers={"X-API-Key": KEY}, timeout=10).json()["requests"]

    start, t0 = answered(), time.monotonic()
    r = wrk(target, 16, 0, workdir, until=lambda: answered() - start >= n)
    after = {p: rss_mb(p) for p in workers}
    print(f"\nsoak: {r['requests']} requests in {time.monotonic() - t0:.0f} s ({r['errors']} errors), "
          f"cache misses through the gateway at concurrency 16")
    for p in workers:
        print(f"  worker {p}: RSS {before[p]:.1f} MB -> {after[p]:.1f} MB ({after[p] - before[p]:+.1f} MB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per target and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--litellm", metavar="VENV", help="a LiteLLM virtual environment (scripts/tools.sh litellm)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="upstream answer delay (0: instant)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--rounds", type=int, default=5, help="split each duration into this many rotated rounds")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 s per target, concurrency 1 and 16")
    parser.add_argument("--soak", type=int, default=0, metavar="N", help="then send N requests; print worker RSS")
    parser.add_argument("--router", action="store_true", help="also time the router's decision")
    parser.add_argument("--baseline", metavar="REF",
                        help="also the gateway of this git commit (e.g. main~3), side by side: before/after")
    parser.add_argument("--edge", action="store_true",
                        help="also the gateway through the edge (Caddy, configs/caddy/Caddyfile): what it costs")
    parser.add_argument("--floor", action="store_true",
                        help="also a Flask app that only parses and answers JSON (the framework's floor)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    if args.quick:
        args.duration, args.concurrency, args.rounds = 1.0, [1, 16], 1
    warmup = 1.0 if args.quick else 3.0
    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    runs: list[dict] = []
    cache: dict = {}
    with ExitStack() as stack:
        up, up_pid = stack.enter_context(upstream(args.delay_ms))
        redis_url = stack.enter_context(redis_server())
        production = {"OLLAMA_URL": up, "REDIS_URL": redis_url, "GATEWAY_API_KEYS": KEY, "LOG_LEVEL": "INFO",
                      "GATEWAY_MAX_REQUESTS": "0", "GATEWAY_WORKERS": "2", "GATEWAY_THREADS": "256",
                      "TRUSTED_PROXIES": "127.0.0.1/32"}  # as deploy-all local runs it behind the edge
        gw = stack.enter_context(gunicorn_gateway(production))
        base = None
        if args.baseline:
            tree = stack.enter_context(source_tree(args.baseline))
            # its own Redis database: its cache and counters apart from the gateway's
            server = stack.enter_context(gunicorn_gateway({**production, "REDIS_URL": redis_url[:-1] + "1"},
                                                          root=tree))
            base = (server.url, server.proc.pid)
        ll = None
        if args.litellm:
            ll = stack.enter_context(litellm(litellm_binary(args.litellm), up, 2, workdir))
        fl = stack.enter_context(flask_floor(2, 256)) if args.floor else None
        front = None
        if args.edge:
            server = stack.enter_context(edge(gw.url.removeprefix("http://")))
            front = (server.url, server.proc.pid)
        all_targets = targets(up, up_pid, gw.url, gw.proc.pid, ll, fl, base, front)
        for t in all_targets:   # warm up: connections, caches, JIT-less Python's first-call costs
            wrk(t, 4, warmup * (10 if t.name == "litellm" and not args.quick else 1), workdir)
        for i, c in enumerate(args.concurrency):
            # Several short rounds, the order rotated each time: a slow spell of the machine lands on every
            # target instead of one.
            level: dict[str, list[dict]] = {t.name: [] for t in all_targets}
            for r in range(args.rounds):
                shift = (i + r) % len(all_targets)
                for t in all_targets[shift:] + all_targets[:shift]:
                    level[t.name].append(wrk(t, c, args.duration / args.rounds, workdir))
            runs.extend(combine(level[t.name]) for t in all_targets)
        print(f"{len(all_targets)} targets, {args.duration:.0f} s each per concurrency in {args.rounds} rounds, "
              f"upstream delay {args.delay_ms:.0f} ms, {os.cpu_count()} CPUs\n")
        print(table(runs))
        # What the gateway itself counted: the miss targets must have missed (their prompts are unique).
        cache = requests.get(f"{gw.url}/api/v1/stats", headers={"X-API-Key": KEY}, timeout=10).json()["cache"]
        print(f"\ngateway cache over the run: {cache['hits']} hits, {cache['misses']} misses")
        if args.soak:
            soak(all_targets[1], gw.url, gw.proc.pid, args.soak, workdir)
    router = []
    if args.router:  # once every server has stopped: an idle LiteLLM still wakes up now and then
        router = router_times(300 if args.quick else 2000)
        print("\nrouter decision (decide(), one core):")
        for r in router:
            print(f"  {r['router']:<10}{r['prompt_bytes']:>7} B   median {r['median_us']:>8.1f} us"
                  f"   p99 {r['p99_us']:>8.1f} us")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "router": router, "gateway_cache": cache}, indent=2) + "\n")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
