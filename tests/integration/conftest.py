"""The gateway as it runs in production: gunicorn with gateway/gunicorn.conf.py, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ANTHROPIC_KEY, ROOT, free_port


@pytest.fixture
def gunicorn(ollama, claude, tmp_path):
    procs = []

    def start(**env):
        port = free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        full = {**os.environ, "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port), "OLLAMA_URL": ollama.url,
                "ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": claude.url, "GATEWAY_WORKERS": "2",
                "GATEWAY_THREADS": "16", "GATEWAY_API_KEYS": "integration-key", "CACHE_TTL_SECONDS": "0", **env}
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


