#!/usr/bin/env python3
"""Print the Ollama model tags a deployment tier pulls, from configs/models.yaml (space-separated).

    python3 scripts/tier_models.py TIER [--config configs/models.yaml]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def tier_models(raw: dict, tier: int) -> list[str]:
    enabled = {t["name"] for t in raw["tiers"] if int(t.get("min_deployment_tier", 1)) <= tier}
    return [m.get("id") or m["name"] for m in raw["models"] if m["backend"] == "ollama" and m["tier"] in enabled]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tier", type=int, choices=(1, 2, 3, 4))
    parser.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "configs" / "models.yaml"))
    args = parser.parse_args()
    print(" ".join(tier_models(yaml.safe_load(Path(args.config).read_text()), args.tier)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
