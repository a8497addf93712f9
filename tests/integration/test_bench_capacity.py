"""scripts/bench/bench_capacity.py as a smoke check on tiny traffic: every policy answers every call, and what
each policy does is visible in the counts (no timing asserted): the gateway's choice sends each model to the
host that has it loaded (no cold load), round-robin and "first host" load models cold."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_the_three_policies_side_by_side(tmp_path):
    out = subprocess.run([sys.executable, "scripts/bench/bench_capacity.py", "--bursts", "2", "--burst-size", "6",
                          "--gap", "0.2", "--tokens", "5", "--token-seconds", "0.001", "--cold-seconds", "0.2",
                          "--json", str(tmp_path / "capacity.json")], cwd=ROOT, capture_output=True, text=True,
                         timeout=280)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {r["policy"]: r for r in json.loads((tmp_path / "capacity.json").read_text())["rows"]}
    assert set(rows) == {"smart", "round_robin", "first"}
    assert all(r["answered"] == 12 and r["errors"] == 0 for r in rows.values())
    assert rows["smart"]["cold_loads"] == 0 and rows["smart"]["host_share"] == [0.5, 0.5, 0.0]
    assert rows["round_robin"]["cold_loads"] > 0 and rows["first"]["host_share"] == [1.0, 0.0, 0.0]
    assert rows["first"]["cold_loads"] > 0
    assert "smart" in out.stdout and "wait p99" in out.stdout
