#!/usr/bin/env python3
"""Routing and cost reports from the gateway, for the Taskwarrior helpers (examples/tw-helper.sh).

    python examples/tw_report.py routing    requests by tier, backend and model, local share, cache
    python examples/tw_report.py cost       spend this month, savings vs cloud-only, budget, newest decisions
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from gateway_client import Gateway, add_arguments, description


def routing(gw: Gateway) -> None:
    s = gw.get("/api/v1/stats")
    print(f"requests: {s['requests']}  local share: {s['local_share']:.1%}  "
          f"cache hit ratio: {s['cache']['hit_ratio']:.1%}")
    for key in ("by_tier", "by_backend", "by_model"):
        print(f"{key[3:]:>8}: " + (", ".join(f"{k} {v}" for k, v in s[key].items()) or "-"))
    if s["errors"]:
        print("  errors: " + ", ".join(f"{k} {v}" for k, v in s["errors"].items()))


def cost(gw: Gateway) -> None:
    s = gw.get("/api/v1/stats")
    spend, budget = s["spend_this_month"], s["budget"]
    print(f"month {spend['month']}: spent ${spend['spent_usd']:.4f}, cloud-only ${spend['cloud_only_usd']:.4f}, "
          f"saved ${spend['savings_usd']:.4f} ({spend['savings_share']:.0%})")
    for model, usd in spend.get("by_model", {}).items():  # an admin key's view; other keys see their own total
        print(f"  {model}: ${usd:.4f}")
    if budget["limit_usd"] is None:
        print("budget: none")
    else:
        soft = " (over the soft limit)" if budget["soft_limit_reached"] else ""
        print(f"budget: ${budget['spent_usd']:.4f} of ${budget['limit_usd']:.2f}, "
              f"${budget['remaining_usd']:.4f} left{soft}")
    rows = gw.get("/api/v1/decisions", limit=100)["decisions"]
    counts = Counter(r.get("model") or r.get("decided_model") for r in rows)
    print(f"last {len(rows)} decisions: " + (", ".join(f"{m} {n}" for m, n in counts.most_common()) or "-"))


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("report", choices=("routing", "cost"))
    add_arguments(parser)
    args = parser.parse_args()
    {"routing": routing, "cost": cost}[args.report](Gateway.from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
