"""scripts/bench/bench_gateway.py --quick as a smoke check: it starts everything, measures every target, prints
the table and writes the JSON. No timing is asserted (benchmarks measure; tests check behaviour)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300),
              pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (scripts/test.sh installs it)")]
TARGETS = ["direct", "gateway", "gateway_cache_hit", "gateway_openai", "baseline", "baseline_cache_hit",
           "baseline_openai", "edge", "edge_openai", "flask_floor"]


def test_quick_run_prints_the_table_and_json(tmp_path):
    # --baseline HEAD: the committed gateway beside this tree's, as a before/after run does
    out = subprocess.run([sys.executable, "scripts/bench/bench_gateway.py", "--quick", "--router", "--floor", "--edge",
                          "--baseline", "HEAD", "--json", str(tmp_path / "bench.json")], cwd=ROOT,
                         capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "p50 +ms vs direct" in out.stdout and "router decision" in out.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["target"], r["concurrency"]) for r in report["runs"]] == [(t, c) for c in (1, 16) for t in TARGETS]
    for run in report["runs"]:
        assert run["requests"] > 0 and run["errors"] == 0, run
        assert set(run) >= {"rps", "p50_ms", "p99_ms", "cpu_ms_per_request"}
    # The miss targets really missed (each prompt unique across every wrk run), the hit target really hit.
    served = {t: sum(r["requests"] for r in report["runs"] if r["target"] == t) for t in TARGETS}
    assert report["gateway_cache"]["misses"] >= (served["gateway"] + served["gateway_openai"] + served["edge"]
                                                 + served["edge_openai"])
    assert report["gateway_cache"]["hits"] >= served["gateway_cache_hit"] - 1
    assert [(r["router"], r["prompt_bytes"]) for r in report["router"]] == [
        (name, size) for name in ("heuristic", "learned", "hybrid") for size in (100, 1024, 32768)]


def test_client_benchmark_prints_every_comparison():
    out = subprocess.run([sys.executable, "scripts/bench/bench_clients.py", "--calls", "50"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for row in ("requests", "urllib3", "gateway http_pool", "pipeline of 5 commands", "one EVALSHA, redis-py",
                "gateway: one EVALSHA", "redis-py client.get", "gateway: store.command"):
        assert row in out.stdout


def test_edge_benchmark_prints_both_targets():
    """scripts/bench/bench_edge.py, small: every row printed (the figures: docs/performance.md)."""
    out = subprocess.run([sys.executable, "scripts/bench/bench_edge.py", "--slow", "20", "--calls", "4",
                          "--streams", "2"], cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert out.returncode == 0, out.stdout + out.stderr
    for target in ("through the edge", "gunicorn directly"):
        for row in ("none", "slow headers", "slow body"):
            assert re.search(rf"{target}\s+{row}\s+4\s+0", out.stdout), out.stdout  # 20 slow ones hold nothing
        assert re.search(rf"{target}\s+median\s+[\d.]+ ms", out.stdout)
