"""scripts/replay_calibration.py: the learning router replayed over a benchmark, quick mode as a smoke test, and
its JSONL input. The full run's figures are in README.md and docs/routing.md."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from scripts.routing import bench_data as bd
from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "replay_calibration.py"
METRICS = {"CPT50", "CPT80", "APGR", "quality_vs_target", "shortfall_rate", "cloud_share_at_target", "labels_reached"}


def run(tmp_path, *args) -> dict:
    out = tmp_path / "replay.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out), *args], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


@pytest.mark.skipif(not bd.DEFAULT_DATA.exists(), reason=f"benchmark data not found at {bd.DEFAULT_DATA}")
def test_quick_replay_reports_every_benchmark_and_budget(tmp_path):
    report = run(tmp_path, "--labels", "0,50,100")
    assert set(report) == {"mt_bench", "mmlu", "gsm8k"}
    for bench, r in report.items():
        assert set(r["baselines"]) == {"random", "length"} and 0 <= r["baselines"]["length"]["CPT50"] <= 100
        for key in ("labels", "labels_noisy"):
            assert set(r[key]) == {"0", "50", "100"}, bench
            for n, row in r[key].items():
                assert set(row) == METRICS
                assert 0 <= row["CPT50"] <= 100 and 0 <= row["APGR"] <= 1.5
                assert row["labels_reached"] <= int(n)
            assert r[key]["0"]["quality_vs_target"] is None  # no labels: no calibrated threshold yet
        # the prior (trained without this benchmark) is the same with or without judge noise
        assert r["labels"]["0"] == r["labels_noisy"]["0"]
        assert r["prior"] and r["noise"] == 0.15


def test_a_jsonl_benchmark_of_ones_own(tmp_path):
    """{"prompt", "weak", "strong"} per line, one benchmark per file: prompts about proofs the weak model fails."""
    rnd = random.Random(0)
    rows = []
    for i in range(900):
        hard = rnd.random() < 0.3
        prompt = f"Prove the lemma on graph colouring number {i}" if hard else f"Say hello to friend {i} politely"
        rows.append({"prompt": prompt, "weak": 0.0 if hard else 1.0, "strong": 1.0})
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    r = run(tmp_path, "--jsonl", str(path), "--labels", "0,100", "--noise", "0")["mine"]
    # from a prior that never saw these prompts, a hundred labels find the hard ones: far better than random
    assert r["labels"]["100"]["CPT50"] < 25 < r["baselines"]["random"]["CPT50"]
    assert r["labels"]["100"]["shortfall_rate"] == 0.0
