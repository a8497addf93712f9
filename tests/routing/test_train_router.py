"""scripts/routing/train_router.py: reproducible weights, the shipped file among them, and your own data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.learned_router import LearnedRouter
from tests.conftest import ROOT

DATA = ROOT.parent / "shared" / "routing-bench" / "routellm"
SHIPPED = ROOT / "configs" / "router" / "learned.json"


def train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/routing/train_router.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.skipif(not DATA.exists(), reason=f"benchmark data not found at {DATA}")
def test_the_shipped_weights_are_reproduced_byte_for_byte(tmp_path):
    out = train("--out", str(tmp_path / "learned.json"))
    assert out.returncode == 0, out.stderr
    assert "training on mmlu: 14037 prompts" in out.stdout and "training on gsm8k: 1307 prompts" in out.stdout
    assert (tmp_path / "learned.json").read_bytes() == SHIPPED.read_bytes(), \
        "configs/router/learned.json is stale: rerun python scripts/routing/train_router.py"


def test_training_on_your_own_jsonl_is_deterministic(tmp_path):
    rows = [{"prompt": f"summarise ticket {i} about billing", "label": 0} for i in range(30)]
    rows += [{"prompt": f"prove lemma {i} about the scheduler's fairness", "weak": 3, "strong": 9} for i in range(30)]
    (tmp_path / "traffic.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    for path in outs:
        r = train("--no-bench", "--jsonl", str(tmp_path / "traffic.jsonl"), "--out", str(path), "--buckets", "1024")
        assert r.returncode == 0, r.stderr
        assert "training on traffic: 60 prompts, 30 where the cloud model won" in r.stdout
    assert outs[0].read_bytes() == outs[1].read_bytes()
    model = LearnedRouter.load(outs[0])
    assert model.trained_on["groups"] == {"traffic": {"prompts": 60, "cloud_better": 30}}
    assert model.probability("prove lemma 99 about fairness") > model.probability("summarise ticket 99 about billing")


def test_a_bad_training_row_is_named(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "label": 1}\n{"text": "no prompt"}\n')
    r = train("--no-bench", "--jsonl", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "w.json"))
    assert r.returncode != 0 and "bad.jsonl:2" in r.stderr and not (tmp_path / "w.json").exists()
