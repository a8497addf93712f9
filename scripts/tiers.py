#!/usr/bin/env python3
"""The deployment tiers of configs/tiers.yaml and the Ollama models each pulls (configs/models.yaml).

    python3 scripts/tiers.py models TIER    the Ollama model tags to pull, space-separated
    python3 scripts/tiers.py env TIER       NAME=value lines: the containers' memory limits and Redis' maxmemory
    python3 scripts/tiers.py table          the tier table of docs/operations.md (Markdown)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway.catalog import preset_models

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("gateway", "ollama", "redis", "prometheus", "grafana", "postgres", "n8n", "qdrant", "alertmanager",
            "node_exporter", "cadvisor", "edge")
REDIS_MAXMEMORY_SHARE = 0.75  # of its container's limit: the rest is Redis' own overhead and the AOF rewrite


@dataclass(frozen=True)
class Tier:
    number: int
    machine: str
    memory_gib: float
    disk_gb: int
    gpu: bool
    limits: dict[str, str]
    models: tuple[dict, ...]   # the Ollama models of configs/models.yaml this tier pulls

    @property
    def model_ids(self) -> list[str]:
        return [m.get("id") or m["name"] for m in self.models]

    def limit_gib(self, service: str) -> float:
        return to_bytes(self.limits[service]) / 2**30


def to_bytes(size: str) -> int:
    """A Compose memory size (512m, 1g, 1200m) in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)b?", str(size).strip().lower())
    if not m:
        raise ValueError(f"not a memory size: {size!r}")
    return int(float(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2)])


def load(number: int, root: Path = ROOT, preset: str | None = None) -> Tier:
    """Tier `number`, its Ollama models those of MODEL_PRESET (the argument, else the environment's)."""
    raw = yaml.safe_load((root / "configs" / "tiers.yaml").read_text())["tiers"]
    if number not in raw:
        raise SystemExit(f"tier must be one of {', '.join(map(str, raw))} (got {number})")
    t = raw[number]
    catalog = yaml.safe_load((root / "configs" / "models.yaml").read_text())
    enabled = {r["name"] for r in catalog["tiers"] if int(r.get("min_deployment_tier", 1)) <= number}
    listed = preset_models(catalog, preset or os.environ.get("MODEL_PRESET") or "classic")
    models = tuple(m for m in listed if m["backend"] == "ollama" and m["tier"] in enabled) + tuple(
        m for m in catalog.get("embedding_models") or [] if m["backend"] == "ollama")  # retrieval, every tier
    missing = set(SERVICES) - set(t["limits"])
    if missing:
        raise SystemExit(f"configs/tiers.yaml: tier {number} has no memory limit for {', '.join(sorted(missing))}")
    return Tier(number, t["machine"], float(t["memory_gib"]), int(t["disk_gb"]), bool(t["gpu"]),
                {k: str(v) for k, v in t["limits"].items()}, models)


def all_tiers(root: Path = ROOT) -> list[Tier]:
    return [load(n, root) for n in sorted(yaml.safe_load((root / "configs" / "tiers.yaml").read_text())["tiers"])]


def compose_env(tier: Tier) -> dict[str, str]:
    """What docker-compose.yml reads for this tier (each a default that a value set in .env overrides)."""
    env = {f"{service.upper()}_MEM_LIMIT": tier.limits[service] for service in SERVICES}
    env["OLLAMA_GPU_MEM_LIMIT"] = tier.limits["ollama"]
    env["REDIS_MAXMEMORY"] = f"{int(to_bytes(tier.limits['redis']) * REDIS_MAXMEMORY_SHARE / 2**20)}mb"
    env["OLLAMA_MODELS_TO_PULL"] = " ".join(tier.model_ids)
    return env


def table() -> str:
    lines = ["| tier | machine | memory | disk | Ollama models | Ollama memory limit |", "|---|---|---|---|---|---|"]
    for t in all_tiers():
        lines.append(f"| {t.number} | {t.machine} | {t.memory_gib:g} GiB | {t.disk_gb} GB | "
                     f"{', '.join(t.model_ids)} | {t.limits['ollama']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("models", "env", "table"))
    parser.add_argument("tier", type=int, nargs="?")
    args = parser.parse_args()
    if args.what == "table":
        print(table())
        return 0
    if args.tier is None:
        parser.error(f"{args.what} needs a TIER")
    tier = load(args.tier)
    if args.what == "models":
        print(" ".join(tier.model_ids))
    else:
        for name, value in compose_env(tier).items():
            print(f"{name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
