"""Promises about state that workers share, checked across real gunicorn workers: the Ollama concurrency cap
and the per-key rate limits hold across all workers (docs/cost-control.md says "across all workers and replicas"),
rate limits let requests through while Redis is down, and the multiprocess metrics never count a previous
run or a dead worker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time

import pytest
import requests

from tests.fakes import Script
from tests.gateway.test_observability import sample
from tests.integration.conftest import METRICS_AUTH
from tests.integration.test_leaked_key import workers

pytestmark = pytest.mark.integration
KEY = {"X-API-Key": "integration-key"}


def post(url: str, **body) -> requests.Response:
    with requests.Session() as s:  # a new connection each time: gunicorn spreads them over its workers
        return s.post(f"{url}/api/v1/chat", json=body, headers=KEY, timeout=30)


def served_by(log, request_ids: list[str]) -> set[int]:
    """The worker pids that answered these requests (the access log's pid field)."""
    pids = set()
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"request_id"' in line:
            entry = json.loads(line)
            if entry.get("request_id") in request_ids and "pid" in entry:
                pids.add(entry["pid"])
    return pids


def test_the_ollama_cap_holds_across_workers(gunicorn, redis_server, ollama):
    url, proc, log = gunicorn(REDIS_URL=redis_server.url, GATEWAY_WORKERS="2", OLLAMA_MAX_CONCURRENCY="1",
                              CONCURRENCY_WAIT_SECONDS="20", LOG_LEVEL="INFO")
    assert len(workers(proc.pid)) == 2
    ollama.default = Script(delay=0.3)
    answers: list[requests.Response] = []
    # rounds of simultaneous calls until both workers have answered some (a cap per process would let each
    # worker's call through at once; which worker a connection reaches is the kernel's choice)
    for _ in range(5):
        threads = [threading.Thread(target=lambda i=i: answers.append(
            post(url, prompt=f"What is {i}?", strategy="local-only"))) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.2)
        if len(served_by(log, [r.headers["X-Request-ID"] for r in answers])) == 2:
            break
    assert len(served_by(log, [r.headers["X-Request-ID"] for r in answers])) == 2, "one worker took every call"
    assert {r.status_code for r in answers} == {200} and ollama.max_posts_inflight == 1


def test_requests_per_minute_hold_across_workers(gunicorn, redis_server, ollama, same_minute):
    url, _, log = gunicorn(REDIS_URL=redis_server.url, GATEWAY_WORKERS="2", RATE_LIMIT_RPM="3", LOG_LEVEL="INFO")
    answers = [post(url, prompt=f"What is {i}?") for i in range(6)]
    # more until both workers have answered (limits per process would give the second one 3 more)
    while len(served_by(log, [r.headers["X-Request-ID"] for r in answers])) < 2 and len(answers) < 60:
        answers.append(post(url, prompt="What is Python?"))
        time.sleep(0.05)
    assert len(served_by(log, [r.headers["X-Request-ID"] for r in answers])) == 2, "one worker took every call"
    statuses = [r.status_code for r in answers]
    assert statuses[:3] == [200] * 3 and set(statuses[3:]) == {429}


def test_rate_limits_let_requests_through_while_redis_is_down(gunicorn, redis_server, ollama, same_minute):
    url, _, _ = gunicorn(REDIS_URL=redis_server.url, GATEWAY_WORKERS="2", RATE_LIMIT_RPM="1", RATE_LIMIT_TPM="5")
    assert post(url, prompt="What is Python?").status_code == 200
    assert post(url, prompt="What is Python?").status_code == 429
    redis_server.stop()
    try:
        # refusing every request because the limiter cannot count would be worse than not limiting
        assert [post(url, prompt="What is Python?").status_code for _ in range(3)] == [200] * 3
    finally:
        redis_server.start()


def test_metrics_from_a_previous_run_are_not_counted(gunicorn, ollama, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    url, proc, _ = gunicorn(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    for i in range(5):
        assert post(url, prompt=f"What is {i}?").status_code == 200
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    assert list(metrics_dir.glob("*.db"))  # the old run's samples are still on disk
    url, _, _ = gunicorn(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))  # a restart (a container's) in the same dir
    post(url, prompt="What is new?")
    text = requests.get(f"{url}/metrics", headers=METRICS_AUTH, timeout=10).text
    assert sample(text, "api_gateway_requests_total") == 1


def test_a_dead_workers_in_flight_requests_stop_counting(gunicorn, ollama):
    url, proc, _ = gunicorn(GATEWAY_WORKERS="1")
    ollama.default = Script(delay=30)
    threading.Thread(target=lambda: _quietly(post, url, prompt="What is slow?"), daemon=True).start()
    deadline = time.monotonic() + 10
    while not ollama.inflight and time.monotonic() < deadline:
        time.sleep(0.05)
    [worker] = workers(proc.pid)
    text = requests.get(f"{url}/metrics", headers=METRICS_AUTH, timeout=10).text
    assert sample(text, "api_gateway_in_flight_requests") == 1
    os.kill(worker, signal.SIGKILL)  # gunicorn starts another; the dead one's gauge must not count
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        new = workers(proc.pid)
        if new and new != [worker]:
            try:
                text = requests.get(f"{url}/metrics", headers=METRICS_AUTH, timeout=10).text
                break
            except requests.RequestException:
                pass
        time.sleep(0.2)
    assert sample(text, "api_gateway_in_flight_requests") == 0


def _quietly(fn, *args, **kwargs):
    with contextlib.suppress(requests.RequestException):
        fn(*args, **kwargs)


def test_a_model_found_missing_comes_back_when_ollama_lists_it(make_app, ollama):
    client = make_app(HEALTH_CACHE_SECONDS="0").test_client()
    ollama.installed = {"phi"}
    body = client.post("/api/v1/chat", json={"prompt": "What is Python?"}).get_json()
    assert body["model"] == "phi"  # tinyllama said "not found": out of routing for a while
    assert client.post("/api/v1/chat", json={"prompt": "What is Python?"}).get_json()["model"] == "phi"
    ollama.installed = {"phi", "tinyllama"}  # pulled meanwhile
    client.get("/api/v1/models")             # any health check sees it listed again
    assert client.post("/api/v1/chat", json={"prompt": "What is Python?"}).get_json()["model"] == "tinyllama"
