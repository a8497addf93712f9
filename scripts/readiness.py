#!/usr/bin/env python3
"""The gateway's readiness as a person reads it: one line for the gateway, one per backend and one for Redis,
coloured on a terminal (NO_COLOR turns colour off); --json for the raw /health/ready answer.

    python3 scripts/readiness.py URL [--json]

Exit status: 0 ready (even with a backend down: its line says so), 1 unavailable (no backend can answer),
3 no answer at all (as `systemctl status` for a stopped unit).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


def paint(text: str, good: bool | None) -> str:
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR") or good is None:
        return text
    return f"\033[{32 if good else 31}m{text}\033[0m"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("url")
    parser.add_argument("--json", action="store_true", help="the raw /health/ready answer")
    args = parser.parse_args()
    url = args.url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/health/ready", timeout=3) as reply:
            body = json.load(reply)
    except urllib.error.HTTPError as exc:  # 503: no backend can answer, and the body says why
        body = json.load(exc)
    except (OSError, ValueError):
        print(f"the gateway at {url} does not answer", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(body))
        return 0 if body.get("status") == "ready" else 1
    ready = body.get("status") == "ready"
    degraded = body.get("degraded") or []
    state = "ready" + (f", degraded: {', '.join(degraded)} down" if degraded else "") if ready else "UNAVAILABLE"
    print(f"{'gateway':<10} {paint(state, ready and not degraded)}   {url}")
    for name, b in sorted(body.get("backends", {}).items()):
        status = "ok" if b.get("ok") else "DOWN"
        print(f"{name:<10} {paint(status, bool(b.get('ok'))):<4}   circuit {b.get('circuit', '?')}, "
              f"{b.get('detail', '')}")
    redis = body.get("redis") or {}
    if redis.get("configured"):
        print(f"{'redis':<10} {paint('ok' if redis.get('ok') else 'DOWN', bool(redis.get('ok')))}   "
              f"failure policy {redis.get('failure_policy')}")
    else:
        print(f"{'redis':<10} none   (state per process)")
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
