"""Batches under gunicorn as deployed: two workers share one Redis and one BATCH_DIR, each runs a batch runner,
and every line is answered exactly once (a lease per batch); the whole server killed mid-batch and started
again finishes the batch without running a finished line twice."""

from __future__ import annotations

import contextlib
import json
import signal
import time

import openai
import pytest

from tests.fakes import Script

pytestmark = pytest.mark.integration
KEY = "integration-key"


def lines(n: int) -> bytes:
    ask = lambda i: [{"role": "user", "content": f"What is {i}+1?"}]  # noqa: E731
    return "\n".join(json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"model": "auto", "messages": ask(i)}}) for i in range(n)).encode()


def run_until(client: openai.OpenAI, batch_id: str, status: str, seconds: float = 60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status == status:
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch.status}, {batch.request_counts}")


def test_two_workers_answer_each_line_once_and_a_killed_server_resumes(gunicorn, ollama, redis_server, tmp_path):
    env = {"REDIS_URL": redis_server.url, "BATCH_DIR": str(tmp_path / "batches"), "BATCH_POLL_SECONDS": "0.1",
           "BATCH_LOCAL_CONCURRENCY": "2"}
    ollama.default = Script(reply="A number.", delay=0.3)  # 0.3 s a line, two at a time
    url, proc, _ = gunicorn(**env)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    uploaded = client.files.create(file=("in.jsonl", lines(40)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    deadline = time.time() + 30
    while len(ollama.calls("/api/chat")) < 6 and time.time() < deadline:
        time.sleep(0.05)
    _crash(proc)
    answered_before = len(ollama.calls("/api/chat"))
    assert 6 <= answered_before < 40

    url2, _, _ = gunicorn(**env)
    client2 = openai.OpenAI(base_url=f"{url2}/v1", api_key=KEY, max_retries=0)
    done = run_until(client2, batch.id, "completed")
    assert done.request_counts.completed == 40 and done.request_counts.failed == 0
    out = [json.loads(x) for x in client2.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in out] == [f"q{i}" for i in range(40)]
    # each line ran once, except at most the lines in flight when the server died (2 workers x 2 at a time)
    # (a call the kill cut before its body was whole reached the fake without one)
    prompts = [c.body["messages"][-1]["content"] for c in ollama.calls("/api/chat") if c.body]
    assert len(set(prompts)) == 40 and len(prompts) - 40 <= 4


def _crash(proc) -> None:
    """The whole server dies at once, as on a crashed host: the arbiter and its workers, SIGKILL, no cleanup."""
    import os
    import subprocess
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    for pid in [proc.pid, *map(int, workers)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)
