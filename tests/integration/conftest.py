"""The gateway as it runs in production (gunicorn with gateway/gunicorn.conf.py) and a real Prometheus scraping
it, on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import yaml

from tests.conftest import ANTHROPIC_KEY, ROOT, free_port

METRICS_TOKEN = "integration-metrics-token"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def gunicorn(ollama, claude, tmp_path):
    procs = []

    def start(**env):
        port = free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        full = {**os.environ, "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port), "OLLAMA_URL": ollama.url,
                "ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": claude.url, "GATEWAY_WORKERS": "2",
                "GATEWAY_THREADS": "16", "GATEWAY_API_KEYS": "integration-key", "CACHE_TTL_SECONDS": "0",
                "METRICS_TOKEN": METRICS_TOKEN, **env}
        out = log.open("w")
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gateway/gunicorn.conf.py",
                                 "gateway:create_app()"], cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT)
        procs.append((proc, out))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError("gunicorn exited:\n" + log.read_text())
            try:
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    return url, proc, log
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError("gunicorn did not start:\n" + log.read_text())

    yield start
    for proc, out in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()


@pytest.fixture
def prometheus(tmp_path):
    """start(target) -> URL of a prometheus scraping target every second, with the alert rules loaded."""
    procs = []

    def start(target: str) -> str:
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "configs" / "prometheus" / "alert-rules.yml")],
            "scrape_configs": [{"job_name": "api-gateway", "static_configs": [{"targets": [target]}],
                                "authorization": {"type": "Bearer", "credentials": METRICS_TOKEN}}],
        }
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.Popen(["prometheus", f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).ok:
                    return url
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError("prometheus did not start")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=20)


class Receiver:
    """A Slack/Discord-style incoming webhook on loopback that records what it is sent."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()
