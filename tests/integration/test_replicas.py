"""Three gateway replicas (separate gunicorn processes, two workers each) sharing one Redis, one Ollama and one
Claude, traffic spread over them as a load balancer would: the budget never overshoots, per-key limits and the
Ollama slot cap hold across replicas, stats and the decision log count every request once.

What stays per replica, and why that is fine: circuit breakers and health caches (each replica finds a dead
backend itself within BREAKER_FAILURE_THRESHOLD requests and probes it after the cool-down) and each process's
metrics (Prometheus scrapes every replica and sums)."""

from __future__ import annotations

import itertools
import threading

import pytest
import requests

from tests.fakes import Script

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
KEY = "integration-key"
OTHER = "second-key"
PROMPT = "Summarize the history of the printing press in one paragraph."
MAX_TOKENS = 100


@pytest.fixture
def replicas(gunicorn, redis_server):
    def start(**env) -> list[str]:
        shared = {"REDIS_URL": redis_server.url, "GATEWAY_WORKERS": "2", "GATEWAY_THREADS": "64",
                  "GATEWAY_API_KEYS": f"{KEY},{OTHER}", "GATEWAY_ADMIN_KEYS": "admin-key", **env}
        return [gunicorn(**shared)[0] for _ in range(3)]
    return start


def spread(urls: list[str], bodies: list[dict], key: str = KEY) -> list[requests.Response]:
    """Every body at once, round-robin over the replicas."""
    barrier, results = threading.Barrier(len(bodies)), [None] * len(bodies)

    def call(i: int, url: str, body: dict):
        barrier.wait()
        results[i] = requests.post(f"{url}/api/v1/chat", json=body, headers={"X-API-Key": key}, timeout=60)

    threads = [threading.Thread(target=call, args=(i, url, body))
               for i, (url, body) in enumerate(zip(itertools.cycle(urls), bodies, strict=False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_budget_stats_and_decisions_across_three_replicas(replicas, claude, ollama):
    bound = len(PROMPT.encode()) + 16 * 2                     # the gateway's input-token bound
    worst = bound * 2.0 / 1e6 + MAX_TOKENS * 10.0 / 1e6       # claude-sonnet's worst case
    budget = 30 * worst + worst / 2                           # room for exactly 30 worst cases
    urls = replicas(BUDGET_MONTHLY_USD=repr(budget))
    claude.default = Script(reply=" ".join(["w"] * MAX_TOKENS), delay=1.0)  # all in flight at once
    paid = spread(urls, [{"prompt": PROMPT, "model": "claude-sonnet", "max_tokens": MAX_TOKENS}] * 120)
    ok = [r.json() for r in paid if r.status_code == 200]
    assert len(ok) == 30 and sum(r.status_code == 429 for r in paid) == 90
    assert len(claude.calls("/v1/messages")) == 30
    local = spread(urls, [{"prompt": f"What is {i}?", "model": "tinyllama"} for i in range(30)])
    assert {r.status_code for r in local} == {200}

    admin = {"X-API-Key": "admin-key"}
    for url in urls:  # every replica says the same
        budget_now = requests.get(f"{url}/api/v1/budget", headers=admin, timeout=10).json()
        assert budget_now["spent_usd"] == pytest.approx(sum(b["cost"] for b in ok))
        assert budget_now["spent_usd"] <= budget and budget_now["reserved_usd"] == pytest.approx(0, abs=1e-9)
        stats = requests.get(f"{url}/api/v1/stats", headers=admin, timeout=10).json()
        assert stats["requests"] == 60, "each answered request counted once, whichever replica answered"
        assert stats["by_model"] == {"claude-sonnet": 30, "tinyllama": 30}
    logged = requests.get(f"{urls[0]}/api/v1/decisions?limit=1000", headers=admin, timeout=10).json()["decisions"]
    answered = {r.headers["X-Request-ID"] for r in [*paid, *local] if r.status_code == 200}
    ids = [d["request_id"] for d in logged]
    assert answered <= set(ids) and len(ids) == len(set(ids)), "every answer logged once"


def test_key_limits_and_ollama_slots_across_three_replicas(replicas, ollama, same_minute):
    urls = replicas(RATE_LIMIT_RPM="5", OLLAMA_MAX_CONCURRENCY="2", CONCURRENCY_WAIT_SECONDS="30")
    ollama.default = Script(delay=0.4)
    first = spread(urls, [{"prompt": f"What is {i}?", "strategy": "local-only"} for i in range(12)])
    assert sorted(r.status_code for r in first) == [200] * 5 + [429] * 7  # 5 a minute, whichever replica
    other = spread(urls, [{"prompt": f"Define {i}.", "strategy": "local-only"} for i in range(5)], key=OTHER)
    assert [r.status_code for r in other] == [200] * 5, "another key's minute is its own"
    assert ollama.max_posts_inflight == 2, "two slots for the whole fleet, leased through Redis"


def test_calls_in_flight_per_ollama_host_are_counted_across_replicas(replicas):
    """Two Ollama hosts, both with the model loaded, three replicas: the host with the fewest calls in flight
    is chosen from counts every replica shares (leases in Redis), so 8 simultaneous calls split 4 and 4; counted
    per replica, each would see its own few calls and pile more onto one host."""
    from tests.fakes import FakeOllama

    hosts = [FakeOllama(loaded=("tinyllama",)), FakeOllama(loaded=("tinyllama",))]
    try:
        for h in hosts:
            h.default = Script(delay=1.0)
        urls = replicas(OLLAMA_URLS=",".join(h.url for h in hosts))
        answers = spread(urls, [{"prompt": f"What is {i}?", "model": "tinyllama"} for i in range(8)])
        assert [r.status_code for r in answers] == [200] * 8
        assert [len(h.calls("/api/chat")) for h in hosts] == [4, 4]
    finally:
        for h in hosts:
            h.close()
