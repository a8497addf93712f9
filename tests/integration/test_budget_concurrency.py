"""200 concurrent paid requests against a budget that covers 50, through two gunicorn workers sharing Redis."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.fakes import Script

pytestmark = pytest.mark.integration

PROMPT = "Summarize the history of the printing press in one paragraph."
MAX_TOKENS = 100


def test_budget_holds_under_concurrency(gunicorn, claude, redis_server):
    bound = len(PROMPT.encode()) + 16 * 2          # the gateway's input-token bound: bytes + framing
    worst = bound * 2.0 / 1e6 + MAX_TOKENS * 10.0 / 1e6
    budget = 50 * worst + worst / 2                # room for exactly 50 worst cases
    url, _, _ = gunicorn(REDIS_URL=redis_server.url, BUDGET_MONTHLY_USD=repr(budget), GATEWAY_THREADS="128")
    claude.default = Script(reply=" ".join(["w"] * MAX_TOKENS), delay=1.5)  # every call in flight at once
    barrier, results = threading.Barrier(200), []

    def call():
        barrier.wait()
        r = requests.post(f"{url}/api/v1/chat", headers={"X-API-Key": "integration-key"}, timeout=60,
                          json={"prompt": PROMPT, "model": "claude-sonnet", "max_tokens": MAX_TOKENS})
        results.append((r.status_code, r.json()))

    threads = [threading.Thread(target=call) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    ok = [body for status, body in results if status == 200]
    refused = [body for status, body in results if status == 429]
    assert len(ok) == 50 and len(refused) == 150
    assert {b["error"]["type"] for b in refused} == {"budget_exceeded"}
    assert len(claude.calls("/v1/messages")) == 50
    status = requests.get(f"{url}/api/v1/budget", headers={"X-API-Key": "integration-key"}, timeout=5).json()
    assert status["spent_usd"] == pytest.approx(sum(b["cost"] for b in ok))
    assert status["spent_usd"] <= budget and status["reserved_usd"] == pytest.approx(0, abs=1e-9)
