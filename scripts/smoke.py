#!/usr/bin/env python3
"""The end of a deploy: every service with its URL, where the gateway key is, and a two-request smoke
test (a simple prompt answered locally, a complex one by the cloud model, or locally without a key),
each with its time to answer. Both go past the cache (a redeploy must ask the models again), and an answer
that came from another model than the one decided (a fallback) is called out: a deploy whose local models
are down must not look fine.

    python3 scripts/smoke.py --mode docker|local [--gateway-url URL] [--api-key KEY] [--env-file .env]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SIMPLE = "What is Python?"
COMPLEX = ("Design a distributed rate limiter for a public API serving millions of users: compare token "
           "bucket and sliding window, and explain the consistency trade-offs.")


def ask(url: str, key: str, prompt: str) -> tuple[dict | None, float, str]:
    req = urllib.request.Request(url + "/api/v1/chat", data=json.dumps({"prompt": prompt, "max_tokens": 64}).encode(),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                                          "Cache-Control": "no-cache, no-store"})
    t0 = time.monotonic()
    try:
        body = json.load(urllib.request.urlopen(req, timeout=180))
        return body, time.monotonic() - t0, ""
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        return None, time.monotonic() - t0, message
    except OSError as exc:
        return None, time.monotonic() - t0, f"unreachable ({type(exc).__name__})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("docker", "local"), required=True)
    parser.add_argument("--gateway-url", default=os.environ.get("GATEWAY_URL", ""))
    parser.add_argument("--api-key", default=(os.environ.get("GATEWAY_API_KEYS") or "").split(",")[0])
    parser.add_argument("--env-file", default=str(Path(".env").resolve()))
    args = parser.parse_args()
    port = os.environ.get("GATEWAY_PORT") or "8080"
    url = (args.gateway_url or f"http://127.0.0.1:{port}").rstrip("/")
    host = socket.gethostname()

    print("==> services")
    print(f"    {'api-gateway':<12} {url:<28} key: GATEWAY_API_KEYS in {args.env_file}")
    if args.mode == "docker":
        for name, var, default in (("grafana", "GRAFANA_PORT", 3000), ("n8n", "N8N_PORT", 5678),
                                   ("prometheus", "PROMETHEUS_PORT", 9090)):
            p = os.environ.get(var) or default
            print(f"    {name:<12} http://127.0.0.1:{p:<12} from another machine: ssh -L {p}:127.0.0.1:{p} {host}")
    print("==> smoke test")
    ok = True
    for label, prompt in (("simple", SIMPLE), ("complex", COMPLEX)):
        body, seconds, error = ask(url, args.api_key, prompt)
        if body is None:
            ok = False
            print(f"    {label:<8} failed after {seconds:.2f} s: {error}")
            continue
        failed = [a for a in body["routing"].get("attempts", []) if a.get("outcome") == "error"]
        if failed:  # answered, but not by the model decided: say so loudly, and fail the smoke test
            ok = False
            models = list(dict.fromkeys(a["model"] for a in failed))  # in order, each once (retries repeat them)
            kinds = list(dict.fromkeys(a.get("error_type") or "error" for a in failed))
            print(f"    {label:<8} FALLBACK: {', '.join(models)} failed ({', '.join(kinds)}); answered by "
                  f"{body['model']} ({body['backend']}) in {seconds:.2f} s, ${body['cost']:.6f}")
            continue
        print(f"    {label:<8} -> {body['model']} ({body['backend']}) in {seconds:.2f} s, ${body['cost']:.6f}: "
              f"{body['routing']['reason']}")
    if not ok and args.mode == "docker":
        print("    (models may still be downloading: ./deploy-all.sh logs ollama-pull-cpu)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
