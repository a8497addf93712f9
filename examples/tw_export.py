#!/usr/bin/env python3
"""Export the gateway's routing decisions into Taskwarrior, in batches (one `task import` per batch,
never a process per request). Project hybrid_ai.router, a tag per tier, a numeric `cost` UDA.

Each decision becomes a completed task whose UUID is derived from its request id, so running the
export again updates instead of duplicating.

    python examples/tw_export.py [--since 24h|2026-11-01T00:00:00Z] [--batch 500] [--gateway-url URL]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from gateway_client import Gateway, add_arguments, description

PROJECT = "hybrid_ai.router"
NAMESPACE = uuid.UUID("6f1c4a52-8c1b-4f57-9a43-2f3b7e9d0c11")  # fixed: the same request, the same task
RELATIVE = re.compile(r"^(\d+)([mhd])$")


def parse_since(text: str) -> datetime:
    m = RELATIVE.match(text)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return datetime.now(UTC) - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: n})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SystemExit(f"error: --since takes 30m, 24h, 7d or an ISO time, got {text!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def to_task(d: dict) -> dict:
    when = datetime.strptime(d["time"], "%Y-%m-%dT%H:%M:%SZ").strftime("%Y%m%dT%H%M%SZ")
    model = d.get("model") or d.get("decided_model", "?")
    tier = d.get("tier") or d.get("decided_tier", "none")
    task = {
        "uuid": str(uuid.uuid5(NAMESPACE, d["request_id"])),
        "description": f"route {d['request_id'][:12]}: {model} ({d.get('backend', '-')}, score {d.get('score', '?')})",
        "project": PROJECT, "status": "completed", "entry": when, "end": when,
        "tags": [re.sub(r"[^A-Za-z0-9_]", "_", tier)] + (["error"] if d.get("error") else [])
        + (["cached"] if d.get("cached") in (True, "true") else [])
        + (["fallback"] if d.get("fallback") in (True, "true") else []),
        "cost": float(d.get("cost") or 0.0),
    }
    return task


def ensure_uda(task_bin: str) -> None:
    for key, value in (("uda.cost.type", "numeric"), ("uda.cost.label", "Cost")):
        subprocess.run([task_bin, "rc.confirmation=off", "config", key, value], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--since", default="24h", help="30m, 24h, 7d or an ISO time (default 24h)")
    parser.add_argument("--batch", type=int, default=500, help="tasks per `task import` (default 500)")
    parser.add_argument("--limit", type=int, default=1000, help="newest decisions to read (max 1000)")
    parser.add_argument("--task", default="task", help="the Taskwarrior binary")
    add_arguments(parser)
    args = parser.parse_args()
    since = parse_since(args.since)
    rows = Gateway.from_args(args).get("/api/v1/decisions", limit=min(args.limit, 1000))["decisions"]
    recent = [d for d in rows if "request_id" in d and "time" in d
              and datetime.strptime(d["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) >= since]
    if not recent:
        print(f"no routing decisions since {since:%Y-%m-%d %H:%M} UTC")
        return 0
    try:
        ensure_uda(args.task)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: Taskwarrior ('{args.task}') is not installed: apt-get install taskwarrior") from exc
    started = time.monotonic()
    for i in range(0, len(recent), args.batch):
        batch = [to_task(d) for d in recent[i:i + args.batch]]
        out = subprocess.run([args.task, "rc.confirmation=off", "rc.verbose=nothing", "import", "-"],
                             input=json.dumps(batch), text=True, capture_output=True)
        if out.returncode != 0:
            raise SystemExit(f"error: task import failed: {out.stderr.strip()[:300]}")
    print(f"exported {len(recent)} routing decisions to project:{PROJECT} "
          f"in {-(-len(recent) // args.batch)} batch(es), {time.monotonic() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
