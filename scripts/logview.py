#!/usr/bin/env python3
"""The gateway's JSON log lines as one readable line each (`./deploy-all.sh logs --pretty`); other lines pass
through as they are. Reads stdin, writes stdout; colour on a terminal (NO_COLOR turns it off).

    12:04:31 INFO  5f2a9c1e POST /api/v1/chat 200 31.2 ms  tinyllama (ollama) $0.000000  in 12 out 30
"""

from __future__ import annotations

import json
import os
import sys

_LEVEL = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


def pretty(line: str, colour: bool = False) -> str:
    try:
        data = json.loads(line)
    except ValueError:
        return line.rstrip("\n")
    if not isinstance(data, dict) or "msg" not in data:
        return line.rstrip("\n")
    level = str(data.get("level", ""))
    head = f"{str(data.get('ts', ''))[11:19]} {level:<5}"
    if colour:
        head = f"\033[{_LEVEL.get(level, '0')}m{head}\033[0m"
    parts = [head, str(data.get("request_id") or "-")[:8]]
    if data.get("route"):
        parts.append(f"{data.get('method', '')} {data['route']} {data.get('status', '')} "
                     f"{data.get('latency_ms', '')} ms")
    else:
        parts.append(str(data["msg"]))
    if data.get("model"):
        parts.append(f" {data['model']} ({data.get('backend', '')})")
    if data.get("cost") is not None:
        parts.append(f"${float(data['cost']):.6f}")
    if data.get("input_tokens") is not None:
        parts.append(f"in {data['input_tokens']} out {data.get('output_tokens', 0)}")
    if data.get("stream"):
        parts.append("stream")
    if data.get("error"):
        parts.append(f"error={data['error']}")
    if data.get("exc"):
        parts.append("\n" + str(data["exc"]))
    return " ".join(parts)


def main() -> int:
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    try:
        for line in sys.stdin:
            print(pretty(line, colour), flush=True)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
