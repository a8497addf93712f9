#!/usr/bin/env python3
"""The kill rate per module of the last `mutmut run` (mutants/*.meta), and every survivor with its change.

    python scripts/testing/mutation_report.py [--mutants mutants] [--survivors N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit codes: what each mutant's test run said (mutmut/stats.py)
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--survivors", type=int, default=50, help="show this many survivors with their change")
    args = parser.parse_args()
    rows, survivors = [], []
    for meta in sorted(args.mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        counts = Counter(STATUS.get(code, "suspicious") for code in codes.values())
        module = str(meta.relative_to(args.mutants))[: -len(".meta")]
        rows.append((module, counts))
        survivors += [name for name, code in codes.items() if code == 0]
    if not rows:
        print("no results: run ./scripts/testing/mutation.sh first", file=sys.stderr)
        return 1
    print(f"{'module':<36}{'mutants':>8}{'killed':>8}{'survived':>9}{'timeout':>8}{'no tests':>9}{'kill rate':>10}")
    total = Counter()
    for module, c in rows:
        total.update(c)
        print(_row(module, c))
    print(_row("all", total))
    print("\nkill rate = (killed + timeout) / (killed + timeout + survived); 'no tests': no in-process test runs it")
    for name in survivors[: args.survivors]:
        out = subprocess.run([sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True,
                             cwd=args.mutants.resolve().parent)
        diff = [x for x in out.stdout.splitlines() if x.startswith(("-", "+")) and not x.startswith(("---", "+++"))]
        print(f"\nsurvived: {name}\n  " + "\n  ".join(diff[:6]))
    if len(survivors) > args.survivors:
        print(f"\n... and {len(survivors) - args.survivors} more survivors (mutmut results)")
    return 0


def _row(module: str, c: Counter) -> str:
    tested = c["killed"] + c["timeout"] + c["survived"]
    rate = f"{(c['killed'] + c['timeout']) / tested:.1%}" if tested else "-"
    return (f"{module:<36}{sum(c.values()):>8}{c['killed']:>8}{c['survived']:>9}{c['timeout']:>8}"
            f"{c['no tests']:>9}{rate:>10}")


if __name__ == "__main__":
    sys.exit(main())
