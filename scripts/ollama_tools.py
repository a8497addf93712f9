#!/usr/bin/env python3
"""Ollama chores for ./deploy-all.sh: reach an external Ollama, pull models into it, and tell whether a
loaded model really runs on the GPU.

    python3 scripts/ollama_tools.py check URL
    python3 scripts/ollama_tools.py pull URL MODEL...
    python3 scripts/ollama_tools.py gpu-truth (--url URL | --compose SERVICE)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request


def _get(url: str, path: str, timeout: float = 5) -> dict:
    return json.load(urllib.request.urlopen(url.rstrip("/") + path, timeout=timeout))


def check(url: str) -> int:
    try:
        version = _get(url, "/api/version").get("version", "?")
    except (OSError, ValueError) as exc:
        print(f"error: no Ollama answers at {url} ({type(exc).__name__}). Start it (ollama serve), and on Linux "
              "let containers reach it: OLLAMA_HOST=0.0.0.0 (sudo systemctl edit ollama, "
              "Environment=OLLAMA_HOST=0.0.0.0), then try again", file=sys.stderr)
        return 1
    print(f"Ollama {version} at {url}")
    return 0


def pull(url: str, models: list[str]) -> int:
    for model in models:
        req = urllib.request.Request(url.rstrip("/") + "/api/pull", data=json.dumps({"model": model}).encode(),
                                     headers={"Content-Type": "application/json"})
        last = ""
        with urllib.request.urlopen(req, timeout=3600) as resp:
            for line in resp:
                status = json.loads(line)
                if "error" in status:
                    print(f"error: pulling {model}: {status['error']}", file=sys.stderr)
                    return 1
                if status.get("status") != last:
                    last = status.get("status", "")
                    print(f"  {model}: {last}")
        if last != "success":
            print(f"error: pulling {model} ended with {last!r}", file=sys.stderr)
            return 1
    return 0


def processor_lines(ps_output: str) -> list[tuple[str, str]]:
    """(model, processor) from `ollama ps`: PROCESSOR is '100% GPU', '100% CPU' or '48%/52% CPU/GPU'."""
    rows = []
    for line in ps_output.splitlines()[1:]:
        m = re.match(r"^(\S+)\s+\S+\s+[\d.]+ \w+\s+(\d+%(?:/\d+%)? (?:CPU/GPU|GPU|CPU))", line)
        if m:
            rows.append((m.group(1), m.group(2)))
    return rows


def gpu_truth(url: str | None, service: str | None) -> int:
    """After a warm-up request: is the loaded model in GPU memory? Loud when it is not."""
    if url:
        models = [(m.get("name", "?"), int(m.get("size_vram") or 0)) for m in _get(url, "/api/ps").get("models", [])]
        rows = [(name, "GPU" if vram > 0 else "CPU") for name, vram in models]
    else:
        out = subprocess.run(["docker", "compose", "exec", "-T", service, "ollama", "ps"], capture_output=True,
                             text=True, timeout=30)
        rows = [(name, "GPU" if "GPU" in proc and not proc.startswith("100% CPU") else "CPU")
                for name, proc in processor_lines(out.stdout)]
    if not rows:
        print("warning: no model is loaded yet, so the GPU could not be checked (send one request, then "
              "./deploy-all.sh status)")
        return 0
    on_cpu = [name for name, where in rows if where == "CPU"]
    for name, where in rows:
        print(f"{name}: runs on the {where}")
    if on_cpu:
        print("WARNING: the GPU profile is running models on the CPU: check `nvidia-smi` inside the container "
              "and the NVIDIA container toolkit (./deploy-all.sh doctor)", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check").add_argument("url")
    p = sub.add_parser("pull")
    p.add_argument("url", help="an Ollama URL, or several comma-separated (\"$OLLAMA_URLS\")")
    p.add_argument("models", nargs="+")
    g = sub.add_parser("gpu-truth")
    where = g.add_mutually_exclusive_group(required=True)
    where.add_argument("--url")
    where.add_argument("--compose")
    args = parser.parse_args()
    if args.command == "check":
        return check(args.url)
    if args.command == "pull":  # URL, or several comma-separated (OLLAMA_URLS): each host gets every model
        return max(pull(url.strip(), args.models) for url in args.url.split(",") if url.strip())
    return gpu_truth(args.url, args.compose)


if __name__ == "__main__":
    sys.exit(main())
