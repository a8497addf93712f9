"""The gateway as it runs in production: gunicorn with gateway/gunicorn.conf.py, on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import ANTHROPIC_KEY, ROOT, free_port
from tests.fakes import Script

pytestmark = pytest.mark.integration


def test_serves_chat_with_auth_and_logs_no_prompt(gunicorn):
    url, proc, log = gunicorn()
    headers = {"Authorization": "Bearer integration-key"}
    r = requests.post(f"{url}/api/v1/chat", json={"prompt": "What is the secret word pelican?"}, timeout=10)
    assert r.status_code == 401
    r = requests.post(f"{url}/api/v1/chat", json={"prompt": "What is the secret word pelican?"}, headers=headers,
                      timeout=10)
    assert r.status_code == 200 and r.json()["model"] == "tinyllama"
    assert r.headers["X-Request-ID"] == r.json()["request_id"]
    assert not any(ch.isdigit() for ch in r.headers.get("Server", ""))  # no server version disclosed
    assert requests.get(f"{url}/health/ready", timeout=5).json()["status"] == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0  # graceful stop
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(e.get("request_id") == r.json()["request_id"] and e.get("route") == "/api/v1/chat" for e in lines)
    assert "pelican" not in text and "integration-key" not in text


def test_one_worker_holds_many_slow_calls_at_once(gunicorn, ollama):
    """gthread: 16 slow upstream calls are in flight together in a single worker process."""
    url, _, _ = gunicorn(GATEWAY_WORKERS="1", GATEWAY_THREADS="16")
    ollama.default = Script(delay=1.0, reply="slow answer")
    headers = {"X-API-Key": "integration-key"}

    def call(i):
        return requests.post(f"{url}/api/v1/chat", json={"prompt": f"What is {i}?"}, headers=headers, timeout=30)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    assert [r.status_code for r in results] == [200] * 16
    assert ollama.max_inflight == 16


def test_bad_config_fails_fast_with_a_clear_message(ollama, tmp_path):
    env = {**os.environ, "GATEWAY_PORT": str(free_port()), "GATEWAY_HOST": "127.0.0.1", "DEPLOYMENT_TIER": "9"}
    out = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gateway/gunicorn.conf.py", "gateway:create_app()"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "DEPLOYMENT_TIER must be between 1 and 4" in out.stdout + out.stderr


def test_cli_route_prints_decision_without_calling_models(ollama, claude):
    env = {**os.environ, "OLLAMA_URL": ollama.url, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}
    out = subprocess.run([sys.executable, "-m", "gateway", "route", "Design a distributed system for real-time "
                          "chat that scales to millions of users", "--explain"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "model: claude-sonnet (anthropic, tier cloud)" in out.stdout
    assert "reasoning" in out.stdout and "fallbacks, in order:" in out.stdout and "claude-haiku" in out.stdout
    out = subprocess.run([sys.executable, "-m", "gateway", "route", "What is Python?", "--strategy", "local-only",
                          "--json"], cwd=ROOT, env={**env, "ANTHROPIC_API_KEY": ""}, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and '"model": "tinyllama"' in out.stdout
    out = subprocess.run([sys.executable, "-m", "gateway", "route", "hi", "--model", "gpt-17"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown model" in out.stderr
    assert ollama.requests == [] and claude.requests == []


def test_cli_reads_the_stacks_env_as_the_server_gets_it(tmp_path, ollama):
    """The server gets .env (deploy-all, Compose); so does the CLI: a key in .env makes Claude available to
    both, and what the caller exported still wins."""
    env_file = tmp_path / ".env"
    env_file.write_text(f'ANTHROPIC_API_KEY="{ANTHROPIC_KEY}"\nDEPLOYMENT_TIER=2\n')
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "DEPLOYMENT_TIER")}
    env["OLLAMA_URL"] = ollama.url
    design = "Design a distributed system for real-time chat that scales to millions of users"

    def route(*args, **extra):
        out = subprocess.run([sys.executable, "-m", "gateway", "route", design, "--json", *args], cwd=ROOT,
                             env={**env, **extra}, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["model"]

    assert route("--env-file", str(env_file)) == "claude-sonnet"
    assert route("--env-file", "") != "claude-sonnet"  # no key anywhere: no cloud model
    assert route("--env-file", str(env_file), ANTHROPIC_API_KEY="") != "claude-sonnet"  # the caller's wins


def test_cli_check_says_whether_the_configuration_would_start(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "gateway", "check", "--env-file", ""], cwd=ROOT, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and "configuration ok:" in ok.stdout and "models in configs/models.yaml" in ok.stdout
    broken = tmp_path / "models.yaml"
    broken.write_text("models: [this is: not, a catalog")
    bad = subprocess.run([sys.executable, "-m", "gateway", "check", "--env-file", ""], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "MODELS_CONFIG": str(broken)})
    assert bad.returncode == 2 and "configuration error" in bad.stderr and "Traceback" not in bad.stderr


def test_stream_through_gunicorn_and_disconnect_cancels_upstream(gunicorn, ollama):
    url, _, _ = gunicorn()
    headers = {"X-API-Key": "integration-key"}
    ollama.default = Script(reply="one two three")
    r = requests.post(f"{url}/v1/chat/completions", headers=headers, stream=True, timeout=10,
                      json={"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    lines = [x for x in r.iter_lines(decode_unicode=True) if x]
    assert lines[-1] == "data: [DONE]" and r.headers["X-Gateway-Model"] == "tinyllama"

    ollama.default = Script(reply=" ".join(f"w{i}" for i in range(60)), chunk_delay=0.05)
    r = requests.post(f"{url}/api/v1/chat", headers=headers, json={"prompt": "hi", "stream": True}, stream=True,
                      timeout=10)
    it = r.iter_lines()
    for _ in range(6):
        next(it)
    r.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (ollama.inflight or not ollama.aborted):
        time.sleep(0.05)
    assert ollama.aborted == 1 and ollama.inflight == 0


def test_two_gateway_processes_share_stats_through_redis(gunicorn, redis_server, claude):
    a, _, _ = gunicorn(REDIS_URL=redis_server.url)
    b, _, _ = gunicorn(REDIS_URL=redis_server.url)
    headers = {"X-API-Key": "integration-key"}
    design = "Design a distributed system for real-time chat at scale with fault tolerance"
    for url, prompt in ((a, "What is Python?"), (b, "What is Rust?"), (b, design)):
        assert requests.post(f"{url}/api/v1/chat", json={"prompt": prompt}, headers=headers, timeout=10).ok
    # Several requests each: with 2 workers per process, every worker of both processes answers some.
    seen = [requests.get(f"{url}/api/v1/stats", headers=headers, timeout=5).json() for url in (a, b) * 4]
    assert all(s == seen[0] for s in seen)
    assert seen[0]["requests"] == 3 and seen[0]["by_backend"] == {"ollama": 2, "anthropic": 1}


def test_sigterm_lets_in_flight_requests_and_streams_finish(gunicorn, ollama):
    url, proc, _ = gunicorn(GATEWAY_WORKERS="1")
    headers = {"X-API-Key": "integration-key"}
    results = {}

    def slow_call():
        results["chat"] = requests.post(f"{url}/api/v1/chat", json={"prompt": "What is slow?"}, headers=headers,
                                        timeout=30)

    def slow_stream():
        r = requests.post(f"{url}/api/v1/chat", json={"prompt": "What is streaming?", "stream": True},
                          headers=headers, stream=True, timeout=30)
        results["stream"] = [x for x in r.iter_lines(decode_unicode=True) if x.startswith("event: ")]

    import threading

    # Both calls take over a second upstream (whichever reaches the fake first): SIGTERM lands mid-way.
    ollama.default = Script(delay=1.2, reply="finished anyway", chunk_delay=0.2)
    threads = [threading.Thread(target=slow_call), threading.Thread(target=slow_stream)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)  # graceful: finish what is in flight, accept nothing new
    for t in threads:
        t.join(timeout=30)
    assert proc.wait(timeout=30) == 0
    assert results["chat"].status_code == 200 and results["chat"].json()["response"] == "finished anyway"
    assert results["stream"][0] == "event: start" and results["stream"][-1] == "event: done"


def test_one_workers_open_circuit_reads_open_on_every_scrape(gunicorn, ollama, redis_server):
    """The breaker is per worker; the metric is the most of the live workers' (a multiprocess `livemax` gauge), so
    the CircuitOpen alert sees an open circuit whichever worker answers the scrape (before: about half said 0)."""
    from tests.gateway.test_observability import sample
    from tests.integration.conftest import METRICS_AUTH
    url, _, _ = gunicorn(REDIS_URL=redis_server.url, BREAKER_FAILURE_THRESHOLD="1", OLLAMA_MAX_RETRIES="0")
    scrape = lambda: sample(requests.get(f"{url}/metrics", headers=METRICS_AUTH, timeout=5).text,  # noqa: E731
                            "api_gateway_circuit_open", backend="ollama")
    assert [scrape() for _ in range(10)] == [0.0] * 10
    ollama.queue(Script(status=500))
    r = requests.post(f"{url}/api/v1/chat", json={"prompt": "hi", "model": "tinyllama"},
                      headers={"X-API-Key": "integration-key"}, timeout=10)
    assert r.status_code == 502  # one worker's breaker opened; the other's is closed
    assert [scrape() for _ in range(30)] == [1.0] * 30


def test_every_workers_memory_and_cpu_on_every_scrape(gunicorn, redis_server):
    """Multiprocess mode drops prometheus_client's process_* metrics; the gateway reports the master and each
    worker from /proc, the same set whichever worker answers, so the container's memory limit can be watched."""
    from tests.integration.conftest import METRICS_AUTH
    url, proc, _ = gunicorn(REDIS_URL=redis_server.url)  # with Redis, GATEWAY_WORKERS=2 run

    def scrape():
        text = requests.get(f"{url}/metrics", headers=METRICS_AUTH, timeout=5).text
        return text, {line.split("{", 1)[1].split("}", 1)[0]: float(line.rsplit(" ", 1)[1])
                      for line in text.splitlines() if line.startswith("api_gateway_process_resident_memory_bytes{")}

    deadline = time.monotonic() + 20
    while len(scrape()[1]) < 3:  # /health answers once the first worker is up; the second may still be starting
        assert time.monotonic() < deadline, scrape()[1]
        time.sleep(0.2)
    seen = []
    for _ in range(12):
        text, rss = scrape()
        seen.append(sorted(rss))
        assert f'pid="{proc.pid}",role="master"' in rss and len(rss) == 3  # the master and GATEWAY_WORKERS=2
        assert all(v > 10_000_000 for v in rss.values())
        assert text.count("api_gateway_process_cpu_seconds_total{") == 3
    assert all(s == seen[0] for s in seen)
