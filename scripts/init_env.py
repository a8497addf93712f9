#!/usr/bin/env python3
"""Create .env from .env.example and fill every empty secret with a generated one.

Idempotent: a value already set in .env is never changed, so a second run keeps existing secrets.
Prints the names of what it generated, never the values. The file is made readable by its owner only.

    python3 scripts/init_env.py [--env .env] [--example .env.example] [--dry-run]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

SECRETS = ("REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "POSTGRES_PASSWORD", "N8N_ENCRYPTION_KEY", "QDRANT_API_KEY",
           "METRICS_TOKEN", "ALERTMANAGER_WEBHOOK_TOKEN")
LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def token() -> str:
    return secrets.token_urlsafe(32)


def fill(text: str) -> tuple[str, list[str]]:
    """The .env text with empty secrets filled, and the names that were filled."""
    values = {m.group(1): m.group(2).strip() for m in map(LINE.match, text.splitlines()) if m}
    wanted: dict[str, str] = {name: token() for name in SECRETS if not values.get(name)}
    # Apps get a key that sees only its own data; operators and n8n (whose cost monitor reads every key's
    # spend) get admin keys, each its own so one can be rotated without the other.
    if not values.get("GATEWAY_API_KEYS"):
        wanted["GATEWAY_API_KEYS"] = "gw-" + token()
    n8n = values.get("N8N_GATEWAY_API_KEY") or "gw-n8n-" + token()
    if not values.get("N8N_GATEWAY_API_KEY"):
        wanted["N8N_GATEWAY_API_KEY"] = n8n
    if not values.get("GATEWAY_ADMIN_KEYS"):
        wanted["GATEWAY_ADMIN_KEYS"] = f"gw-admin-{token()},{n8n}"
    out, done = [], []
    for line in text.splitlines():
        m = LINE.match(line)
        if m and m.group(1) in wanted and not m.group(2).strip():
            line = f"{m.group(1)}={wanted[m.group(1)]}"
            done.append(m.group(1))
        out.append(line)
    for name in wanted:  # a secret .env.example does not list (older .env): append it
        if name not in done and name not in values:
            out.append(f"{name}={wanted[name]}")
            done.append(name)
    return "\n".join(out) + "\n", done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=".env")
    parser.add_argument("--example", default=".env.example")
    parser.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")
    args = parser.parse_args()
    env, example = Path(args.env), Path(args.example)
    if not env.exists() and not example.exists():
        print(f"error: neither {env} nor {example} exists", file=sys.stderr)
        return 1
    text = env.read_text() if env.exists() else example.read_text()
    new, done = fill(text)
    if args.dry_run:
        print(f"would {'update' if env.exists() else 'create'} {env}; would generate: {', '.join(done) or 'nothing'}")
        return 0
    fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.chmod(env, 0o600)
    print(f"{env}: generated {', '.join(done)}" if done else f"{env}: every secret already set, nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
