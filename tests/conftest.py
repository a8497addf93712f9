"""Shared fixtures: fake upstreams on loopback (one per session, reset per test) and app factories.

Where a test goes (one rule, by what it needs to run):
- tests/unit/         one module, in-process: no server, no subprocess, no network;
- tests/gateway/      the gateway app in-process (Flask's test client) against the fake upstreams (tests/fakes/)
                      and a real redis-server, one file per surface or promise (native API, OpenAI API,
                      streaming, spend, tenancy, resilience, observability...);
- tests/integration/  the gateway as it runs: gunicorn, Caddy, Prometheus, n8n, wrk as real processes;
- tests/deploy/       the files that deploy it (compose, Dockerfile, Terraform, install.sh and deploy-all.sh,
                      doctor, backup, workflows), each checked by its real tool;
- tests/routing/, tests/examples/   scripts/routing/ and examples/, run as their users run them.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from gateway import create_app
from tests.fakes import FakeAnthropic, FakeOllama, FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
ANTHROPIC_KEY = "sk-ant-test-key"


COMPAT_MODEL = {"name": "compat-cloud", "backend": "openai_compat", "id": "compat-model", "tier": "cloud",
                "context_window": 128000, "price_in_per_mtok": 0.5, "price_out_per_mtok": 1.5}


@pytest.fixture(scope="session")
def compat_catalog(tmp_path_factory) -> str:
    """The shipped catalog plus an OpenAI-compatible cloud model after the Claude ones."""
    raw = yaml.safe_load((ROOT / "configs" / "models.yaml").read_text())
    raw["models"].append(COMPAT_MODEL)
    path = tmp_path_factory.mktemp("catalog") / "models.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture(scope="session")
def _fakes():
    fakes = {"ollama": FakeOllama(), "claude": FakeAnthropic(ANTHROPIC_KEY), "compat": FakeOpenAI()}
    yield fakes
    for f in fakes.values():
        f.close()


@pytest.fixture
def ollama(_fakes) -> FakeOllama:
    return _fakes["ollama"]


@pytest.fixture
def claude(_fakes) -> FakeAnthropic:
    return _fakes["claude"]


@pytest.fixture
def compat(_fakes) -> FakeOpenAI:
    return _fakes["compat"]


@pytest.fixture(autouse=True)
def _reset_fakes(_fakes):
    for f in _fakes.values():
        f.reset()
    _fakes["ollama"].installed = {"tinyllama", "phi", "mistral"}
    _fakes["ollama"].loaded = {"tinyllama"}
    yield


@pytest.fixture
def env(ollama, claude):
    """Environment for a gateway wired to the fakes, with fast retries so failure tests stay quick."""
    return {
        "OLLAMA_URL": ollama.url,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": claude.url,
        "DEPLOYMENT_TIER": "2",
        "RETRY_BACKOFF_SECONDS": "0.01",
        "OLLAMA_TIMEOUT": "2",
        "ANTHROPIC_TIMEOUT": "2",
        "OPENAI_COMPAT_TIMEOUT": "2",
        "CONNECT_TIMEOUT": "1",
        "HEALTH_CACHE_SECONDS": "0",
        "CACHE_TTL_SECONDS": "0",  # the cache tests turn it on; elsewhere repeated prompts must reach the fakes
        "LOG_LEVEL": "INFO",
        # the test client scrapes /metrics from loopback; test_observability checks the default (no one trusted)
        "METRICS_TRUSTED_NETWORKS": "127.0.0.1",
    }


@pytest.fixture
def make_app(env):
    apps = []

    def _make(**overrides):
        app = create_app({**env, **{k: str(v) for k, v in overrides.items()}})
        app.testing = True
        apps.append(app)
        return app

    yield _make
    for app in apps:
        app.extensions["gateway"].close()


@pytest.fixture
def client(make_app):
    return make_app().test_client()


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture
def gateway_logs():
    """Every line the gateway logs during the test, formatted exactly as on stdout."""
    from gateway.logs import JsonFormatter

    handler = _ListHandler()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gateway")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


@pytest.fixture
def same_minute():
    """The limits count per UTC minute: start the test well inside one so it cannot straddle two."""
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.1)


def cached_tool(name: str) -> str:
    """The binary of a tool scripts/tools.sh installs outside the repo (test.sh installs them first)."""
    out = subprocess.run([str(ROOT / "scripts" / "tools.sh"), "--check", name], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(out.stderr.strip() or f"{name} is missing")
    return out.stdout.strip()


def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    return free_port()


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test is a failure: a skip there means a tool the suite needs is missing."""
    import os

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) skipped; failing the run (install what they need)", red=True)
        session.exitstatus = 1


@pytest.fixture
def serve():
    """Serve a Flask app over real HTTP on loopback (werkzeug, threaded), for clients like the openai SDK."""
    import threading

    from werkzeug.serving import make_server

    servers = []
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    def _serve(app) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield _serve
    for server in servers:
        server.shutdown()
        server.server_close()


class RedisServer:
    """A private redis-server on a free loopback port, stoppable and restartable on the same port."""

    def __init__(self, workdir):
        import shutil

        self.binary = shutil.which("redis-server")
        self.port, self.workdir, self.proc = free_port(), workdir, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import subprocess
        import time

        import redis

        self.proc = subprocess.Popen([self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True)


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory):
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs it with apt-get)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(_redis_server) -> RedisServer:
    """The session's redis-server, running and empty at the start of the test."""
    if _redis_server.proc.poll() is not None:
        _redis_server.start()
    _redis_server.client().flushall()
    return _redis_server
