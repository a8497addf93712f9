"""`./deploy-all.sh local` for real: gunicorn from .venv, a private redis-server, the fake Ollama."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import openai
import pytest
import requests

from tests.conftest import ROOT, free_port
from tests.fakes import Script

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def listening(port: int) -> set[str]:
    """The addresses something listens on at `port` (the kernel's own table)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                raw = bytes.fromhex(addr)
                if width == 8:
                    found.add(".".join(str(b) for b in reversed(raw)))
                else:
                    found.add(str(__import__("ipaddress").IPv6Address(b"".join(raw[i:i + 4][::-1]
                                                                             for i in range(0, 16, 4)))))
    return found


def local_env(ollama, run_dir, port: int, **extra: str) -> dict[str, str]:
    """The environment ./deploy-all.sh local runs with in these tests: the fake Ollama, free ports, its own
    run directory, no cloud key, and none of the caller's Redis or worker settings."""
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "GATEWAY_WORKERS")}
    return {**base, "OLLAMA_URL": ollama.url, "GATEWAY_PORT": str(port), "GATEWAY_INTERNAL_PORT": str(free_port()),
            "LOCAL_REDIS_PORT": str(free_port()), "DEPLOY_RUN_DIR": str(run_dir), "ANTHROPIC_API_KEY": "", **extra}


def test_local_mode_up_answer_and_stop(ollama, tmp_path):
    port, redis_port, internal = free_port(), free_port(), free_port()
    env = local_env(ollama, tmp_path, port, GATEWAY_INTERNAL_PORT=str(internal), LOCAL_REDIS_PORT=str(redis_port),
                    GATEWAY_API_KEYS="local-key", REDIS_PASSWORD="local-redis", GATEWAY_ADMIN_KEYS="local-admin")
    up = subprocess.run(["./deploy-all.sh", "local", "2"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=120)
    pids = {name: int((tmp_path / f"{name}.pid").read_text()) for name in ("edge", "gateway", "redis")
            if (tmp_path / f"{name}.pid").exists()}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        # the smoke test: a simple prompt answered locally, a complex one locally too (no cloud key), timed
        smoke = re.findall(r"^\s+(simple|complex)\s+-> (\S+) \((\w+)\) in ([0-9.]+) s", up.stdout, re.M)
        assert [(kind, backend) for kind, _, backend, _ in smoke] == [("simple", "ollama"), ("complex", "ollama")]
        assert smoke[0][1] == "tinyllama" and all(float(s[3]) >= 0 for s in smoke)
        assert "key: GATEWAY_API_KEYS in" in up.stdout
        url = f"http://127.0.0.1:{port}"
        ready = requests.get(f"{url}/health/ready", timeout=5).json()
        assert ready["status"] == "ready" and ready["redis"]["ok"] is True
        r = requests.post(f"{url}/api/v1/chat", json={"prompt": "What is Python?"},
                          headers={"Authorization": "Bearer local-key"}, timeout=10)
        assert r.status_code == 200 and r.json()["backend"] == "ollama"
        assert requests.get(f"{url}/api/v1/stats", headers={"X-API-Key": "local-admin"}, timeout=5).json()[
            "scope"] == "shared"
        assert requests.get(f"{url}/api/v1/stats", headers={"X-API-Key": "local-key"}, timeout=5).json()[
            "scope"] == "key"
        assert set(pids) == {"edge", "gateway", "redis"} and all(alive(p) for p in pids.values())
        # the edge has the public port; gunicorn listens on loopback only, behind it
        assert "starting the edge (Caddy)" in up.stdout + up.stderr
        assert listening(internal) == {"127.0.0.1"} and listening(port) == {"127.0.0.1"}
        # the Redis password is in no process's arguments (ps shows them to every user) nor in the output
        for pid in pids.values():
            assert b"local-redis" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert "local-redis" not in up.stdout + up.stderr
        assert oct((tmp_path / "redis.conf").stat().st_mode & 0o777) == "0o600"
        status = subprocess.run(["./deploy-all.sh", "status"], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=60)
        assert status.returncode == 0, status.stderr
        assert re.search(r"^gateway\s+ready\s", status.stdout, re.M)
        assert re.search(r"^ollama\s+ok\s", status.stdout, re.M)
        assert re.search(r"^redis\s+ok\s", status.stdout, re.M) and "\033[" not in status.stdout  # no colour in a pipe
        raw = subprocess.run(["./deploy-all.sh", "status", "--json"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60)
        assert '"status": "ready"' in raw.stdout
        # every command knows local mode is running: logs of its parts, down stops it, backup backs it up
        def dry(*args):
            return subprocess.run(["./deploy-all.sh", *args, "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=60)
        assert f"+ tail -n 100 -f {tmp_path}/edge.log" in dry("logs", "edge").stdout
        bad = dry("logs", "n8n")
        assert bad.returncode != 0 and "local mode runs gateway, edge and redis" in bad.stderr
        assert f"+ tail -n 100 -f {tmp_path}/gateway.log | logview" in dry("logs", "--pretty").stdout
        down = dry("down")
        assert "local mode is running: stopping it" in down.stdout + down.stderr and "docker" not in down.stdout
        backup = dry("backup")
        assert backup.returncode == 0 and "backing it up (--local)" in backup.stdout + backup.stderr
        restore = dry("restore", "x.tar.gz")
        assert restore.returncode != 0 and "./deploy-all.sh stop, then restore FILE --local" in restore.stderr
    finally:
        down = subprocess.run(["./deploy-all.sh", "stop"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
    assert down.returncode == 0, down.stderr
    assert not any(alive(p) for p in pids.values())
    assert not list(tmp_path.glob("*.pid"))
    # stopped is not "fine": status says so in its exit code too, for scripts
    status = subprocess.run(["./deploy-all.sh", "status"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 3 and "does not answer" in status.stderr


def test_backup_and_restore_round_trip_in_local_mode(ollama, tmp_path):
    run_dir, backups = tmp_path / "run", tmp_path / "backups"
    port = free_port()
    env = local_env(ollama, run_dir, port, GATEWAY_API_KEYS="k", REDIS_PASSWORD="round-trip",
                    BACKUP_ENV_FILE=str(tmp_path / ".env"))
    (tmp_path / ".env").write_text("REDIS_PASSWORD=round-trip\nN8N_ENCRYPTION_KEY=keep-me-forever\n")

    def deploy(*args):
        out = subprocess.run(["./deploy-all.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout + out.stderr

    def requests_counted():
        stats = requests.get(f"http://127.0.0.1:{port}/api/v1/stats", headers={"X-API-Key": "k"}, timeout=5).json()
        return stats["requests"]

    def batch_output(batch_id=None):
        """A batch run through the openai SDK (or, given its id, the one made before): its output file's text."""
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        if batch_id is None:
            line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "auto", "messages": [{"role": "user", "content": "What is 2+2?"}]}}
            uploaded = client.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
            batch_id = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                             completion_window="24h").id
        for _ in range(200):
            batch = client.batches.retrieve(batch_id)
            if batch.status == "completed":
                return batch_id, client.files.content(batch.output_file_id).text
            time.sleep(0.1)
        raise AssertionError(f"batch {batch.status}")

    try:
        deploy("local", "2")
        before = requests_counted()  # the smoke test's two requests
        assert before == 2
        batch_id, output = batch_output()  # batch files live in the run dir, their state in Redis
        made = deploy("backup", str(backups), "--local")
        archive = next(backups.glob("hybrid-ai-backup-*.tar.gz"))
        assert "backup written" in made and "Never rotate N8N_ENCRYPTION_KEY" in made
        deploy("stop")
        for leftover in (run_dir / "dump.rdb", run_dir / "appendonlydir", run_dir / "batches"):  # lose the data
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        (tmp_path / ".env").write_text("lost\n")
        deploy("restore", str(archive), "--local")
        assert "N8N_ENCRYPTION_KEY=keep-me-forever" in (tmp_path / ".env").read_text()
        deploy("local", "2")
        assert requests_counted() == before + 3  # restored (the batch's line too), plus this start's smoke test
        assert batch_output(batch_id) == (batch_id, output)  # the batch and its files came back
    finally:
        deploy("stop")


def test_reload_applies_the_configuration_without_dropping_a_request(ollama, tmp_path):
    """./deploy-all.sh reload: a request in flight finishes, the new models.yaml is what the next ones see,
    and a broken file is refused before any worker is touched."""
    catalog = tmp_path / "models.yaml"
    catalog.write_text((ROOT / "configs" / "models.yaml").read_text())
    port = free_port()
    env = local_env(ollama, tmp_path / "run", port, GATEWAY_API_KEYS="k", REDIS_PASSWORD="reload",
                    MODELS_CONFIG=str(catalog))
    url, key = f"http://127.0.0.1:{port}", {"Authorization": "Bearer k"}

    def deploy(*args):
        return subprocess.run(["./deploy-all.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)

    up = deploy("local", "2", "--skip-doctor")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        before = requests.get(f"{url}/api/v1/models", headers=key, timeout=5).json()["models"]
        assert any(m["name"] == "tinyllama" for m in before)
        # a stream that takes ~3 s is in flight while the configuration changes
        ollama.default = Script(reply="a b c d e f g h i j", chunk_delay=0.3)
        result = {}

        def stream():
            with requests.post(f"{url}/api/v1/chat", headers=key, stream=True, timeout=30,
                               json={"prompt": "Say ten letters", "stream": True}) as r:
                result["body"] = b"".join(r.iter_content(None)).decode()

        thread = threading.Thread(target=stream)
        thread.start()
        time.sleep(0.8)
        catalog.write_text(catalog.read_text().replace("name: tinyllama", "name: tinyllama-renamed", 1))
        reload = deploy("reload")
        assert reload.returncode == 0, reload.stdout + reload.stderr
        assert "configuration ok" in reload.stdout
        thread.join(timeout=30)
        assert "event: done" in result["body"] and "event: error" not in result["body"]  # not dropped
        names = {m["name"] for m in requests.get(f"{url}/api/v1/models", headers=key, timeout=5).json()["models"]}
        assert "tinyllama-renamed" in names and "tinyllama" not in names  # the new file is live
        # a broken file: refused before any worker is touched; the gateway keeps answering
        catalog.write_text("models: [this is: not, a catalog")
        broken = deploy("reload")
        assert broken.returncode != 0 and "nothing reloaded" in broken.stderr
        ollama.default = Script(reply="still here")
        r = requests.post(f"{url}/api/v1/chat", headers=key, json={"prompt": "What is Python?"}, timeout=10)
        assert r.status_code == 200 and r.json()["response"] == "still here"
    finally:
        deploy("stop")


def test_dashboards_in_local_mode(ollama, tmp_path):
    """`./deploy-all.sh dashboards`: the native Prometheus on loopback, scraping the local gateway with its
    METRICS_TOKEN and the stack's alert rules; `stop` stops it with the rest."""
    port, prom = free_port(), free_port()
    env = local_env(ollama, tmp_path, port, GATEWAY_API_KEYS="local-key", REDIS_PASSWORD="local-redis",
                    GATEWAY_ADMIN_KEYS="local-admin", METRICS_TOKEN="local-metrics-token", PROMETHEUS_PORT=str(prom),
                    PROMETHEUS_SCRAPE_INTERVAL="1s")
    up = subprocess.run(["./deploy-all.sh", "local", "2"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=120)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        dash = subprocess.run(["./deploy-all.sh", "dashboards"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
        assert dash.returncode == 0, dash.stdout + dash.stderr
        assert f"Prometheus: http://127.0.0.1:{prom}" in dash.stdout + dash.stderr
        requests.post(f"http://127.0.0.1:{port}/api/v1/chat", json={"prompt": "What is Python?"},
                      headers={"X-API-Key": "local-key"}, timeout=10)
        api = f"http://127.0.0.1:{prom}/api/v1"
        deadline, found = time.monotonic() + 60, []
        while time.monotonic() < deadline and not found:
            time.sleep(1)
            try:
                found = requests.get(f"{api}/query", params={"query": 'api_gateway_requests_total{status="200"}'},
                                     timeout=5).json()["data"]["result"]
            except requests.RequestException:
                continue
        assert found and found[0]["metric"]["job"] == "api-gateway"
        up_now = requests.get(f"{api}/query", params={"query": 'up{job="api-gateway"}'}, timeout=5).json()
        assert up_now["data"]["result"][0]["value"][1] == "1"  # the token was accepted
        rules = requests.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
        assert sum(len(g["rules"]) for g in rules) >= 10  # the stack's alert rules
        assert "local-metrics-token" not in (tmp_path / "prometheus" / "prometheus.yml").read_text()
        assert oct((tmp_path / "prometheus" / "metrics_token").stat().st_mode & 0o777) == "0o600"
        pid = int((tmp_path / "prometheus.pid").read_text())
    finally:
        down = subprocess.run(["./deploy-all.sh", "stop"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
    assert down.returncode == 0, down.stderr
    assert not alive(pid)
