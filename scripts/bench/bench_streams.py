#!/usr/bin/env python3
"""Hundreds of simultaneous streams through the gateway vs straight from the upstream, in one run.

A fake Ollama (own process) streams --tokens tokens over --stream-seconds per answer. The gateway runs
under gunicorn with its production settings (gateway/gunicorn.conf.py, nothing overridden). An asyncio
client opens --streams streams at once, first directly against the fake, then through the gateway's
/v1/chat/completions, and prints completed streams, errors and time-to-first-token percentiles.
Loopback only, bounded in time.

    python scripts/bench/bench_streams.py [--streams 500] [--tokens 20] [--stream-seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripts.bench.procs import fake_ollama, gateway

FIRST_TOKEN = re.compile(rb'"content": ?"[^"]')  # the first non-empty piece, in SSE or NDJSON


async def _one(host: str, port: int, path: str, body: bytes, done_marker: bytes, timeout: float):
    t0 = time.perf_counter()
    ttft = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        buf = b""
        while True:
            data = await asyncio.wait_for(reader.read(65536), timeout)
            if not data:
                break
            buf += data
            if ttft is None and FIRST_TOKEN.search(buf):
                ttft = time.perf_counter() - t0
        writer.close()
        ok = buf.startswith(b"HTTP/1.1 200") and done_marker in buf
        return ok, ttft, time.perf_counter() - t0
    except (OSError, TimeoutError):
        return False, ttft, time.perf_counter() - t0


async def _burst(url: str, path: str, payload: dict, done_marker: bytes, n: int, timeout: float):
    host, port = url.split("//")[1].split(":")
    body = json.dumps(payload).encode()
    return await asyncio.gather(*[_one(host, int(port), path, body, done_marker, timeout) for _ in range(n)])


def _row(name: str, results, wall: float) -> str:
    ok = [r for r in results if r[0]]
    ttfts = sorted(r[1] for r in ok if r[1] is not None)
    totals = sorted(r[2] for r in ok)

    def pct(values, q):
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")

    return (f"{name:<22}{len(ok):>10}{len(results) - len(ok):>8}{pct(ttfts, .5):>10.0f}{pct(ttfts, .9):>10.0f}"
            f"{pct(ttfts, .99):>10.0f}{statistics.median(totals) if totals else float('nan'):>10.2f}{wall:>9.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--stream-seconds", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    messages = [{"role": "user", "content": "What is Python?"}]
    rows = []
    reply = " ".join(f"tok{i}" for i in range(args.tokens))
    # GATEWAY_WORKERS/THREADS unset: the production defaults, whatever this shell has set.
    defaults = {"GATEWAY_WORKERS": None, "GATEWAY_THREADS": None, "CACHE_TTL_SECONDS": "0"}
    with fake_ollama(reply=reply, chunk_delay=args.stream_seconds / args.tokens) as ollama_url, \
            gateway({"OLLAMA_URL": ollama_url, **defaults}) as url:
        # Warm-up: imports, connection pools, worker threads.
        asyncio.run(_burst(url, "/v1/chat/completions", {"model": "auto", "messages": messages, "stream": True},
                           b"[DONE]", 8, args.timeout))
        for name, target, path, payload, marker in (
            ("direct (fake Ollama)", ollama_url, "/api/chat", {"model": "tinyllama", "messages": messages},
             b'"done": true'),
            ("through the gateway", url, "/v1/chat/completions",
             {"model": "auto", "messages": messages, "stream": True}, b"data: [DONE]"),
        ):
            t0 = time.perf_counter()
            results = asyncio.run(_burst(target, path, payload, marker, args.streams, args.timeout))
            rows.append(_row(name, results, time.perf_counter() - t0))

    print(f"\n{args.streams} simultaneous streams, {args.tokens} tokens over {args.stream_seconds:.0f} s each, "
          f"gateway with default gunicorn settings, loopback")
    print(f"{'target':<22}{'completed':>10}{'errors':>8}{'TTFT p50':>10}{'p90 ms':>10}{'p99 ms':>10}"
          f"{'total s':>10}{'wall s':>9}")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
