"""Start and stop what a benchmark measures, each in its own process so the load generator's GIL does
not slow the thing being measured. Everything listens on 127.0.0.1 and is stopped by its handle."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - anything short of an answer means "not yet"
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start within {seconds:.0f} s")


def _serve_ollama(script: dict, queue) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fakes import FakeOllama, Script

    fake = FakeOllama()
    fake.default = Script(**script)
    queue.put(fake.url)
    signal.sigwait({signal.SIGTERM})


@contextmanager
def fake_ollama(**script):
    """A fake Ollama in its own process answering every request with Script(**script); yields its URL."""
    queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_serve_ollama, args=(script, queue), daemon=True)
    proc.start()
    try:
        yield queue.get(timeout=30)
    finally:
        proc.terminate()
        proc.join(timeout=10)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen


@contextmanager
def gunicorn_gateway(env: dict[str, str | None], *extra_args: str, root: Path = ROOT):
    """The gateway under gunicorn with gateway/gunicorn.conf.py; yields a Server once /health answers.
    A None value in env removes that variable (to get the production default). `root`: another checkout
    of the gateway to run (a baseline; see source_tree)."""
    port = free_port()
    merged = {**os.environ, "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port), "ANTHROPIC_API_KEY": "",
              "GATEWAY_API_KEYS": "", "LOG_LEVEL": "WARNING", **env}
    full = {k: v for k, v in merged.items() if v is not None}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gateway/gunicorn.conf.py", *extra_args,
                             "gateway:create_app()"], cwd=root, env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is None and requests.get(f"{url}/health", timeout=2).ok, "gunicorn")
        yield Server(url, proc)
    finally:
        stop(proc, 60)


@contextmanager
def gateway(env: dict[str, str | None], *extra_args: str):
    """gunicorn_gateway(), yielding only its URL."""
    with gunicorn_gateway(env, *extra_args) as server:
        yield server.url


@contextmanager
def edge(upstream: str, max_body_bytes: int = 1_048_576, log: Path | None = None, max_file_bytes: int = 52_428_800):
    """The real Caddy with configs/caddy/Caddyfile in front of `upstream` (host:port), on a free loopback port;
    yields a Server once /health answers through it."""
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="edge-"))
    env = {**os.environ, "EDGE_ADDRESS": f":{port}", "EDGE_BIND": "127.0.0.1", "EDGE_UPSTREAM": upstream,
           "MAX_BODY_BYTES": str(max_body_bytes), "BATCH_MAX_FILE_BYTES": str(max_file_bytes),
           "XDG_DATA_HOME": str(state), "XDG_CONFIG_HOME": str(state)}
    out = log.open("w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(["caddy", "run", "--adapter", "caddyfile", "--config",
                             str(ROOT / "configs" / "caddy" / "Caddyfile")], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is None and requests.get(f"{url}/health", timeout=2).ok, "caddy")
        yield Server(url, proc)
    finally:
        stop(proc, 10)
        if log:
            out.close()
        shutil.rmtree(state, ignore_errors=True)


@contextmanager
def source_tree(ref: str):
    """The repository's files at git `ref` in a temporary folder (gunicorn run there imports that gateway)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    try:
        archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stop(proc: subprocess.Popen, seconds: float = 30) -> None:
    """SIGTERM, then SIGKILL after `seconds`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def redis_server():
    """A private redis-server; yields its URL."""
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is needed (apt-get install redis-server)")
    port, tmp = free_port(), tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
    try:
        import redis

        wait_until(lambda: redis.Redis(port=port).ping(), "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
