#!/usr/bin/env python3
"""Plant, one at a time, the bugs an independent review found surviving the suite (issue 31), each in a copy of
this tree, and run the tests that must catch it. Every bug must be killed: a survivor means a promise no test
guards. (scripts/testing/mutation.sh does the same blindly, for every small change mutmut can make.)

    python scripts/testing/planted_bugs.py [NAME ...]      (default: all; exit status 1 if any survives)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


BUGS = (
    Bug("stream-charged-zero", "an interrupted or abandoned cloud stream is charged nothing",
        "gateway/service.py", "self.dispatcher.max_tokens(live.request, live.model)) or Usage()",
        "self.dispatcher.max_tokens(live.request, live.model)) and Usage()",
        ("tests/gateway/test_spend.py", "-k", "stream")),
    *(Bug(f"cache-key-without-{field}", f"the cache key leaves out {field}", "gateway/state/cache.py",
          f'"{field}": request.{field}', f'"{field}": None', ("tests/gateway/test_tenancy.py", "-k", "answer_changing"))
      for field in ("temperature", "max_tokens", "system")),
    Bug("cache-key-without-stop", "the cache key leaves out stop", "gateway/state/cache.py",
        '"stop": list(request.stop)', '"stop": []', ("tests/gateway/test_tenancy.py", "-k", "answer_changing")),
    Bug("reservations-never-expire-redis", "Redis reservations never expire", "gateway/state/budget.py",
        "ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[6]", "ZRANGEBYSCORE', KEYS[2], '-inf', '-inf'",
        ("tests/gateway/test_spend.py", "-k", "expired")),
    Bug("reservations-never-expire-memory", "in-process reservations never expire", "gateway/state/budget.py",
        "if expires <= now and self._take(res):", "if False and self._take(res):",
        ("tests/gateway/test_spend.py", "-k", "expired")),
    Bug("cap-per-process", "the Ollama cap is per process even with Redis", "gateway/state/__init__.py",
        "concurrency=RedisConcurrencyCap(store, caps, lease_ttl)", "concurrency=MemoryConcurrencyCap(caps, lease_ttl)",
        ("tests/integration/test_shared_limits.py", "-k", "cap_holds")),
    Bug("rate-limit-per-process", "rate limits are per process even with Redis", "gateway/state/__init__.py",
        "rate_limiter=RedisRateLimiter(store, settings.rate_limit_rpm, settings.rate_limit_tpm)",
        "rate_limiter=MemoryRateLimiter(settings.rate_limit_rpm, settings.rate_limit_tpm)",
        ("tests/integration/test_shared_limits.py", "-k", "per_minute")),
    Bug("rate-limit-fails-closed", "rate limits refuse every request while Redis is down", "gateway/state/ratelimit.py",
        'client=r), "ok")', 'client=r), "rpm")', ("tests/integration/test_shared_limits.py", "-k", "redis_is_down")),
    Bug("metrics-dir-not-emptied", "a previous run's metric samples are counted", "gateway/gunicorn.conf.py",
        "os.remove(stale)", "pass", ("tests/integration/test_shared_limits.py", "-k", "previous_run")),
    Bug("dead-workers-not-marked", "a dead worker's live gauges keep counting", "gateway/gunicorn.conf.py",
        "multiprocess.mark_process_dead(worker.pid)", "pass",
        ("tests/integration/test_shared_limits.py", "-k", "dead_worker")),
    Bug("gcp-undeclared-variable", "the GCP module references an undeclared variable", "terraform/gcp/main.tf",
        "  region = var.region\n", "  region = var.regoin\n", ("tests/deploy/test_terraform.py", "-k", "reference")),
    Bug("missing-model-never-back", "a model once missing never comes back", "gateway/upstreams.py",
        "self._missing.pop(m.name, None)", "pass",
        ("tests/integration/test_shared_limits.py", "-k", "missing")),
    Bug("anthropic-output-summed", "Anthropic's cumulative output counts are summed", "gateway/backends/anthropic.py",
        "meter.output_tokens = max(reported, meter.output_tokens or 0)",
        "meter.output_tokens = reported + (meter.output_tokens or 0)",
        ("tests/gateway/test_spend.py", "-k", "cumulative")),
    Bug("ollama-input-zero", "Ollama's input is 0 when prompt_eval_count is absent", "gateway/backends/ollama.py",
        "prompt if _count(prompt) else request.input_tokens_estimate", "prompt if _count(prompt) else 0",
        ("tests/gateway/test_spend.py", "-k", "ollama_without")),
    Bug("doctor-disk-1000x", "doctor's free disk figure is off by 1000x", "scripts/doctor.py",
        ".free / GB", ".free / GB * 1000", ("tests/deploy/test_doctor.py", "-k", "real_reading")),
    Bug("max-tokens-for-reasoning-models", "OpenAI reasoning models are sent max_tokens",
        "gateway/backends/openai_compat.py", "model.max_tokens_param: max_tokens", '"max_tokens": max_tokens',
        ("tests/gateway/test_spend.py", "-k", "reasoning")),
)


def copy_tree(dest: Path) -> None:
    """This checkout's files as they are now (tracked and new, not ignored), and the venv by link."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for shared in (".venv", ".cache"):
        if (ROOT / shared).exists():
            (dest / shared).symlink_to(ROOT / shared)


def plant(bug: Bug) -> tuple[bool, float]:
    """(killed, seconds): the tests fail with the bug in."""
    with tempfile.TemporaryDirectory(prefix=f"planted-{bug.name}-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        path = tree / bug.file
        text = path.read_text()
        if text.count(bug.old) != 1:
            raise SystemExit(f"{bug.name}: {bug.old!r} is not exactly once in {bug.file}: update this script")
        path.write_text(text.replace(bug.old, bug.new))
        started = time.monotonic()
        out = subprocess.run([str(tree / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-x", "-p",
                              "no:cacheprovider", *bug.tests], cwd=tree, capture_output=True, text=True, timeout=900)
        return out.returncode != 0, time.monotonic() - started


def main() -> int:
    wanted = set(sys.argv[1:])
    bugs = [b for b in BUGS if not wanted or b.name in wanted]
    survivors = []
    for bug in bugs:
        killed, seconds = plant(bug)
        print(f"{'killed  ' if killed else 'SURVIVED'} {bug.name:<34} {seconds:5.1f} s  {bug.what}", flush=True)
        if not killed:
            survivors.append(bug.name)
    print(f"\n{len(bugs) - len(survivors)} of {len(bugs)} planted bugs killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
