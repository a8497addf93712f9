"""Metrics as Prometheus sees them: a real prometheus server scraping the gateway under gunicorn.

Every Grafana panel query must return data after traffic that exercises every path, and every alert
expression must parse, evaluated through Prometheus' own HTTP API.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import ROOT
from tests.fakes import Script
from tests.gateway.test_observability import panel_queries, sample
from tests.integration.conftest import METRICS_AUTH

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="prometheus not installed (scripts/test.sh installs it)")]
HEADERS = {"X-API-Key": "integration-key"}
DESIGN = "Design a distributed system for real-time chat at scale, with fault tolerance and consistency trade-offs"


@pytest.fixture
def fake_gpu(tmp_path) -> dict[str, str]:
    """nvidia-smi faked at its boundary, on the gateway's PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA T4, 15360, 4096, 37, 51, 27.50'\n")
    smi.chmod(0o755)
    import os

    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def query(prom: str, expr: str) -> dict:
    r = requests.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    return r.json()


def wait_for(prom: str, expr: str, seconds: float = 30) -> list:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = query(prom, expr).get("data", {}).get("result", [])
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"no data for {expr}")


def traffic(url: str, ollama, claude, i: int) -> None:
    """One round over every path: local, cloud, cache hit, fallback, stream, a stream cut part-way, error, budget
    refusal.
    Prompts change with the round so that only the intended request is a cache hit."""
    post = lambda body: requests.post(f"{url}/api/v1/chat", json=body, headers=HEADERS, timeout=30)  # noqa: E731
    post({"prompt": f"What is Python {i}?", "temperature": 0})
    post({"prompt": f"What is Python {i}?", "temperature": 0})            # cache hit
    post({"prompt": f"{DESIGN} ({i})"})                                   # cloud
    ollama.queue(Script(status=500), Script(status=500))
    post({"prompt": f"What is a fallback {i}?", "strategy": "local-only"})  # tinyllama -> phi
    r = requests.post(f"{url}/v1/chat/completions", headers=HEADERS, stream=True, timeout=30, json={
        "model": "phi", "messages": [{"role": "user", "content": f"stream please {i}"}], "stream": True})
    r.content  # noqa: B018 - read the stream to its end
    ollama.queue(Script(reply="a stream that breaks part-way through", cut_after=2))  # 200, then cut
    cut = requests.post(f"{url}/v1/chat/completions", headers=HEADERS, stream=True, timeout=30, json={
        "model": "tinyllama", "messages": [{"role": "user", "content": f"cut {i}"}], "stream": True})
    cut.content  # noqa: B018
    ollama.queue(Script(status=500), Script(status=500))
    post({"prompt": "What is an error?", "model": "tinyllama"})           # 502
    post({"prompt": DESIGN, "model": "claude-sonnet", "max_tokens": 30000})  # 429 budget_exceeded


def seed_calibration(redis_url: str, tmp_path: Path) -> str:
    """Labels a learning router would have gathered (prompts scoring over 0.4 the local model got wrong), and a
    catalog with a quality target: the gateway's refit job calibrates from them while the test runs, so the
    learning router's panels have a calibration to show (the shadow path: tests/gateway/test_learning_router.py)."""
    import redis as redis_py

    from gateway.calibration.labels import Label
    from gateway.learned_router import features
    from gateway.state.calibration import RedisCalibrationStore
    from gateway.state.store import RedisStore

    store = RedisCalibrationStore(RedisStore(redis_py.Redis.from_url(redis_url, decode_responses=True)))
    for i in range(80):
        h = i / 80
        label = Label(features(f"synthetic prompt {i}", 2**14), h, 0.0 if h > 0.4 else 1.0, 1.0, 1.0, "shadow",
                      "general", time.time())
        store.put_label(f"seed{i}", label.as_dict(), label.time)
    catalog = tmp_path / "models.yaml"
    catalog.write_text((ROOT / "configs" / "models.yaml").read_text().replace("  target_quality: null",
                                                                               "  target_quality: 0.95"))
    return str(catalog)


def test_every_panel_returns_data_and_every_alert_parses(gunicorn, prometheus, redis_server, ollama, claude,
                                                          fake_gpu, tmp_path):
    catalog = seed_calibration(redis_server.url, tmp_path)
    url, _, _ = gunicorn(REDIS_URL=redis_server.url, BUDGET_MONTHLY_USD="0.05", CACHE_TTL_SECONDS="60",
                         GATEWAY_WORKERS="2", OLLAMA_MAX_CONCURRENCY="4", **fake_gpu,
                         MODELS_CONFIG=catalog, CALIBRATION_REFIT_SECONDS="1",
                         # two hosts (the per-host panels): the same fake Ollama by two names
                         OLLAMA_URLS=f"{ollama.url},{ollama.url.replace('127.0.0.1', 'localhost')}")
    prom = prometheus(url.removeprefix("http://"))
    wait_for(prom, 'up{job="api-gateway"} == 1')
    for i in range(4):  # several scrapes apart, so every rate() has two points that differ
        traffic(url, ollama, claude, i)
        time.sleep(1.2)
    wait_for(prom, "api_gateway_time_to_first_token_seconds_count")
    time.sleep(2.5)

    empty, results = [], {}
    # Grafana's $__rate_interval at a 1 s scrape would be 4 s; a minute covers every round of traffic.
    for dashboard, title, expr in panel_queries(rate_interval="1m"):
        body = query(prom, expr)
        assert body["status"] == "success", f"{dashboard} / {title}: {body}"
        values = [float(s["value"][1]) for s in body["data"]["result"]]
        results[f"{dashboard} / {title} / {expr}"] = values
        if not any(v == v for v in values):  # no series, or only NaN
            empty.append(f"{dashboard} / {title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    (tmp_path / "panel-values.json").write_text(json.dumps(results, indent=1))

    rules = yaml.safe_load((ROOT / "configs" / "prometheus" / "alert-rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            body = query(prom, rule["expr"])
            assert body["status"] == "success", f"{rule['alert']}: {body}"
    loaded = requests.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert sum(len(g["rules"]) for g in loaded) == sum(len(g["rules"]) for g in rules["groups"])
    assert all(r["health"] == "ok" for g in loaded for r in g["rules"])


def test_one_scrape_counts_every_request_across_four_workers(gunicorn, ollama):
    url, _, _ = gunicorn(GATEWAY_WORKERS="4", GATEWAY_THREADS="4", CACHE_TTL_SECONDS="0")
    n = 60
    for i in range(n):  # a new connection each time, so gunicorn spreads them over its workers
        with requests.Session() as s:
            assert s.post(f"{url}/api/v1/chat", json={"prompt": f"What is {i}?"}, headers=HEADERS, timeout=10).ok
    text = requests.get(f"{url}/metrics", headers=METRICS_AUTH, timeout=10).text
    assert sample(text, "api_gateway_requests_total") == n
    assert sample(text, "api_gateway_request_duration_seconds_count") == n
    assert sample(text, "api_gateway_tokens_total", direction="input") == 3 * n
    assert sample(text, "api_gateway_in_flight_requests") == 0


def test_shipped_prometheus_config_scrapes_the_gateway():
    config = yaml.safe_load(Path(ROOT / "configs" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["api-gateway"]["static_configs"][0]["targets"] == ["api-gateway:8080"]
    assert config["rule_files"] == ["alert-rules.yml"]
