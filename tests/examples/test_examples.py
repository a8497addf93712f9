"""The example scripts against a gateway with fake upstreams; the Taskwarrior parts against a real `task`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.fakes import Script

EXAMPLES = ROOT / "examples"


def run(script: str, *args: str, url: str, stdin: str | None = None, env: dict | None = None):
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], input=stdin, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "GATEWAY_URL": url, **(env or {})})


@pytest.fixture
def url(make_app, serve):
    return serve(make_app(GATEWAY_API_KEYS="ex-key"))


ITEMS = [
    ("1", "Have a lovely day, friend!", ["SAFE"], [], "approved", "local"),
    ("2", "I will hurt you.", ["UNSAFE"], [], "rejected", "local"),
    ("3", "Borderline text one", ["The text is SAFE."], ["UNSAFE"], "rejected", "cloud"),
    ("4", "Borderline text two", ["SAFE, mostly"], ["unsure"], "review", "human"),
    ("5", "Borderline text three", ["UNSURE"], ["SAFE"], "approved", "cloud"),
    ("6", "Borderline text four", ["NOT UNSAFE"], ["I think SAFE"], "review", "human"),
]


def test_moderation_fails_closed(url, ollama, claude):
    for _, _, local, cloud, _, _ in ITEMS:
        ollama.queue(*(Script(reply=r) for r in local))
        claude.queue(*(Script(reply=r) for r in cloud))
    lines = "\n".join(json.dumps({"id": i, "text": t}) for i, t, *_ in ITEMS)
    out = run("moderation_pipeline.py", "--json", url=url, stdin=lines, env={"GATEWAY_API_KEY": "ex-key"})
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    verdicts, summary = rows[:-1], rows[-1]["summary"]
    for (item_id, _, _, _, verdict, by), got in zip(ITEMS, verdicts, strict=True):
        assert (got["id"], got["verdict"], got["decided_by"]) == (item_id, verdict, by), got
    # Unsafe and garbled answers never come out approved.
    approved = {v["id"] for v in verdicts if v["verdict"] == "approved"}
    assert approved == {"1", "5"}
    assert summary["items"] == 6 and summary["review"] == 2 and summary["decided_locally"] == 2
    assert summary["cost_usd"] > 0 and summary["cloud_only_usd"] > summary["cost_usd"] > 0
    # the strict local prompt: temperature 0, a few tokens, the moderator's system prompt
    sent = ollama.calls("/api/chat")[0].body
    assert sent["options"]["temperature"] == 0 and sent["messages"][0]["role"] == "system"


def test_moderation_cloud_refusal_goes_to_a_human(url, ollama, claude):
    ollama.queue(Script(reply="maybe"))
    claude.queue(Script(status=400, error_message="bad"))
    out = run("moderation_pipeline.py", url=url, stdin="just some text\n", env={"GATEWAY_API_KEY": "ex-key"})
    assert out.returncode == 0 and "REVIEW" in out.stdout and "APPROVED" not in out.stdout


def test_examples_say_clearly_when_the_gateway_is_unreachable(unused_port):
    dead = f"http://127.0.0.1:{unused_port}"
    for script, args in (("moderation_pipeline.py", []), ("support_router.py", ["hi"]), ("tw_report.py", ["routing"])):
        out = run(script, *args, url=dead, stdin='{"id": 1, "text": "x"}\n')
        assert out.returncode == 2 and "unreachable" in out.stderr and "Traceback" not in out.stderr, script


def test_examples_have_help():
    for script in ("moderation_pipeline.py", "support_router.py", "tw_export.py", "tw_report.py"):
        out = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "--gateway-url" in out.stdout, script
        # the description is whole sentences, not a docstring's first line cut mid-sentence
        text = " ".join(out.stdout.split("\n\n")[1].split())
        assert text.endswith("."), (script, text)


def test_examples_say_in_one_line_what_is_wrong(url, tmp_path):
    """A refused key, a missing file, a FAQ that is not JSON: one line saying what to do, exit 2, no trace."""
    cases = [(("moderation_pipeline.py", "examples/data/items.jsonl"), {"GATEWAY_API_KEY": "wrong"},
              "refused the API key"),
             (("moderation_pipeline.py", str(tmp_path / "missing.jsonl")), {"GATEWAY_API_KEY": "ex-key"},
              "cannot read"),
             (("support_router.py", "--questions", str(tmp_path / "none.txt")), {}, "cannot read"),
             (("support_router.py", "hi", "--faq", "examples/data/questions.txt"), {}, "is not JSON")]
    for args, env, message in cases:
        out = subprocess.run([sys.executable, str(EXAMPLES / args[0]), *args[1:]], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, env={**os.environ, "GATEWAY_URL": url,
                                                         "GATEWAY_ENV_FILE": str(tmp_path / "none"), **env})
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


def test_examples_find_the_key_in_the_stacks_env(url, tmp_path, ollama):
    """No GATEWAY_API_KEY set: the first of GATEWAY_API_KEYS in .env, read as Compose reads it."""
    env_file = tmp_path / ".env"
    env_file.write_text('# the stack\nGATEWAY_API_KEYS="ex-key,other"\n')
    ollama.default = Script(reply="SAFE")
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_API_KEY"}
    out = subprocess.run([sys.executable, str(EXAMPLES / "moderation_pipeline.py"), "examples/data/items.jsonl"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**env, "GATEWAY_URL": url, "GATEWAY_ENV_FILE": str(env_file)})
    assert out.returncode == 0, out.stderr
    assert "4 items: 4 approved" in out.stdout  # the sample input, and "1 item" / "N items" spelled right


def test_support_router_keeps_faq_local_and_sends_complex_to_the_cloud(url, tmp_path, ollama, claude):
    faq = tmp_path / "faq.json"
    faq.write_text(json.dumps([{"q": "How do I reset my password?", "a": "Use the 'Forgot password' link."}]))
    complex_q = ("Design a migration plan to move our distributed billing system to a new architecture with zero "
                 "downtime, and analyze the consistency trade-offs.")
    out = run("support_router.py", "How can I reset my password?", complex_q, "--faq", str(faq), url=url,
              env={"GATEWAY_API_KEY": "ex-key"})
    assert out.returncode == 0, out.stderr
    assert "/ ollama] FAQ, kept local" in out.stdout and "[claude-sonnet / anthropic]" in out.stdout
    assert "2 questions: 1 local, 1 cloud, 0 failed" in out.stdout
    assert "Forgot password" in ollama.calls("/api/chat")[0].body["messages"][0]["content"]


# --------------------------------------------------------------------------- Taskwarrior

needs_task = pytest.mark.skipif(shutil.which("task") is None, reason="taskwarrior not installed (test.sh installs it)")


@pytest.fixture
def taskenv(tmp_path) -> dict[str, str]:
    (tmp_path / "taskrc").write_text(f"data.location={tmp_path / 'data'}\n")
    return {"TASKDATA": str(tmp_path / "data"), "TASKRC": str(tmp_path / "taskrc")}


def tasks(taskenv: dict, project: str) -> list[dict]:
    out = subprocess.run(["task", "rc.verbose=nothing", f"project:{project}", "export"], capture_output=True,
                         text=True, env={**os.environ, **taskenv}, stdin=subprocess.DEVNULL)
    return json.loads(out.stdout or "[]")


@needs_task
def test_tw_export_batches_decisions_without_duplicates(url, taskenv):
    import requests

    for prompt in ("What is Python?", "What is Rust?", "Design a distributed system for real-time chat at scale "
                   "with fault tolerance and consistency trade-offs"):
        requests.post(f"{url}/api/v1/chat", json={"prompt": prompt}, headers={"X-API-Key": "ex-key"}, timeout=10)
    env = {"GATEWAY_API_KEY": "ex-key", **taskenv}
    out = run("tw_export.py", "--since", "1h", "--batch", "2", url=url, env=env)
    assert out.returncode == 0 and "exported 3 routing decisions" in out.stdout and "2 batch(es)" in out.stdout
    exported = tasks(taskenv, "hybrid_ai.router")
    assert len(exported) == 3 and {t["status"] for t in exported} == {"completed"}
    assert sorted(t["tags"][0] for t in exported) == ["cloud", "local_small", "local_small"]
    assert max(t["cost"] for t in exported) > 0
    assert run("tw_export.py", "--since", "1h", url=url, env=env).returncode == 0
    assert len(tasks(taskenv, "hybrid_ai.router")) == 3  # the same requests update, never duplicate


@needs_task
def test_tw_helpers_report_and_log_deployments(url, taskenv):
    import requests

    requests.post(f"{url}/api/v1/chat", json={"prompt": "What is Python?"}, headers={"X-API-Key": "ex-key"},
                  timeout=10)
    env = {**os.environ, "GATEWAY_URL": url, "GATEWAY_API_KEY": "ex-key", **taskenv}
    script = (f". {EXAMPLES / 'tw-helper.sh'} && tw_routing_stats && tw_cost_report && tw_log_deploy docker 2")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert "requests: 1" in out.stdout and "local share: 100.0%" in out.stdout
    assert "spent $0.0000" in out.stdout and "last 1 decisions: tinyllama 1" in out.stdout
    deploys = tasks(taskenv, "hybrid_ai.deploy")
    assert len(deploys) == 1 and set(deploys[0]["tags"]) == {"deploy", "tier2"}
    assert deploys[0]["status"] == "completed" and "deployed docker tier 2" in deploys[0]["description"]
