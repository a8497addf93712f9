"""The routing benchmark's public per-prompt results, loaded: what scripts/routing/eval_router.py scores and
scripts/routing/train_router.py trains on (../shared/routing-bench/routellm, contaminated prompts dropped)."""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "routing-bench" / "routellm"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
BENCHMARKS = ("mt_bench", "mmlu", "gsm8k")
csv.field_size_limit(10**8)


@dataclass(frozen=True)
class Item:
    prompt: str
    weak: float    # the weak (local) model's result: 0/1 correct, or the MT-Bench grade
    strong: float  # the strong (cloud) model's result
    weak_answer: str = ""  # the weak model's answer text, where the data has it (GSM8K)
    group: str = ""        # MMLU's subject: k-fold keeps a subject on one side (never in train and test)


def _contaminated(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["eval_prompt"].strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()}


def load_mt_bench(data: Path) -> list[Item]:
    drop = _contaminated(data / "mt_bench" / "contaminated_prompts.jsonl")
    grades: dict[tuple[int, str], list[float]] = {}
    answers: dict[int, str] = {}  # the weak model's first answer, as the judge prompt quotes it
    for line in (data / "mt_bench" / "judgements.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["model"] in (WEAK, STRONG) and row["score"] >= 0:
            grades.setdefault((row["question_id"], row["model"]), []).append(float(row["score"]))
        if row["model"] == WEAK and row.get("turn") == 1:
            answers[row["question_id"]] = _first_answer(row.get("user_prompt", ""))
    items = []
    for line in (data / "mt_bench" / "question.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        first = q["turns"][0]
        weak, strong = grades.get((q["question_id"], WEAK)), grades.get((q["question_id"], STRONG))
        if first.strip() in drop or not weak or not strong:
            continue
        items.append(Item(first, statistics.fmean(weak), statistics.fmean(strong), answers.get(q["question_id"], "")))
    return items


def _first_answer(judge_prompt: str) -> str:
    """The assistant's answer a turn-1 MT-Bench judge prompt quotes."""
    _, found, rest = judge_prompt.partition("[The Start of Assistant's Answer]")
    return rest.split("[The End of Assistant's Answer]")[0].strip() if found else ""


def _load_csv(path: Path, drop: set[str], group: str = "") -> list[Item]:
    with path.open(newline="", encoding="utf-8") as f:
        return [Item(row["prompt"], float(row[WEAK] == "True"), float(row[STRONG] == "True"),
                     row.get(f"{WEAK}_response") or "", group)
                for row in csv.DictReader(f) if row["prompt"].strip() not in drop]


def load_gsm8k(data: Path) -> list[Item]:
    drop = _contaminated(data / "gsm8k" / "contaminated_prompts.jsonl")
    return _load_csv(data / "gsm8k" / "gsm8k_responses.csv", drop)


def load_mmlu(data: Path) -> list[Item]:
    drop = _contaminated(data / "mmlu" / "contaminated_prompts.jsonl")
    items: list[Item] = []
    for path in sorted((data / "mmlu" / "responses").glob("mmlu_*.csv")):
        items += _load_csv(path, drop, group=path.stem.removeprefix("mmlu_"))
    return items


LOADERS = {"mt_bench": load_mt_bench, "mmlu": load_mmlu, "gsm8k": load_gsm8k}
