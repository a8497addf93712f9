"""Backups restore what they saved, in the shapes the docker layout has, run natively (no Docker engine here):
Redis with its append-only file on, Grafana's data without the read-only dashboards mount, the steps in the
order the stack needs them (.env first, Postgres answering before psql). test_deploy_local.py restores a
whole archive in local mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

import pytest
import redis

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


def start_redis(data, port, *args):
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True)
    for _ in range(100):
        try:
            client.ping()
            return proc, client
        except redis.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")


def stop(proc):
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def snapshot(tmp_path):
    """An RDB snapshot of a Redis that holds spend, a budget reservation and a cached answer, as backup.py takes."""
    port = free_port()
    (tmp_path / "live").mkdir()
    proc, client = start_redis(tmp_path / "live", port, "--appendonly", "yes")
    client.hset("hai:spend:2026-12", mapping={"total": "1.25", "key:abc": "1.25"})
    client.zadd("hai:resv:2026-12", {"r1": 1e12})
    client.set("hai:cache:v2:x", "answer", ex=3600)
    subprocess.run(["redis-cli", "-p", str(port), "--rdb", str(tmp_path / "redis.rdb")], check=True,
                   capture_output=True)
    stop(proc)
    return tmp_path / "redis.rdb"


def test_redis_restored_runs_with_the_append_only_file_on(snapshot, tmp_path):
    data = tmp_path / "data"
    out = subprocess.run(["sh", str(ROOT / "scripts" / "restore_redis.sh"), str(data), str(snapshot),
                          str(free_port())], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "3 keys restored" in out.stdout, out.stdout + out.stderr
    # the stack's Redis: AOF on (docker-compose.yml and ./deploy-all.sh local)
    proc, client = start_redis(data, free_port(), "--appendonly", "yes")
    try:
        assert client.hget("hai:spend:2026-12", "total") == "1.25" and client.zcard("hai:resv:2026-12") == 1
    finally:
        stop(proc)


def test_a_bare_snapshot_under_aof_starts_empty_which_is_why_restore_converts_it(snapshot, tmp_path):
    data = tmp_path / "naive"
    data.mkdir()
    shutil.copy(snapshot, data / "dump.rdb")  # the old restore
    proc, client = start_redis(data, free_port(), "--appendonly", "yes")
    try:
        assert client.dbsize() == 0
    finally:
        stop(proc)


def test_grafana_archive_leaves_the_read_only_dashboards_mount_alone(tmp_path):
    """The exact tar commands backup.py sends to the Grafana container, run on a folder shaped like it."""
    grafana = tmp_path / "var-lib-grafana"
    (grafana / "dashboards").mkdir(parents=True)
    (grafana / "grafana.db").write_text("sqlite")
    (grafana / "dashboards" / "gateway.json").write_text("{}")
    dry = subprocess.run([sys.executable, "scripts/backup.py", "backup", "--mode", "docker", "--dry-run"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    pack = next(line for line in dry.splitlines() if "grafana tar" in line).split("grafana ", 1)[1].split(" > ")[0]
    with open(tmp_path / "grafana.tar", "wb") as f:
        subprocess.run(pack.replace("/var/lib/grafana", str(grafana)).split(), stdout=f, check=True)
    with tarfile.open(tmp_path / "grafana.tar") as tar:
        names = tar.getnames()
    assert "./grafana.db" in names and not any("dashboards" in n for n in names)
    os.chmod(grafana / "dashboards", 0o555)  # what the read-only bind mount looks like
    (grafana / "grafana.db").unlink()
    try:
        with tarfile.open(tmp_path / "old.tar", "w") as tar:  # an archive from before: dashboards included
            tar.add(tmp_path / "grafana.tar", arcname="./grafana.db")
            tar.add(ROOT / "README.md", arcname="./dashboards/gateway.json")
        restore = next(c for c in _restore_commands(tmp_path) if "grafana" in c and "tar" in c)
        unpack = restore.split("-c ", 1)[1].replace("/var/lib/grafana", str(grafana))
        unpack = unpack.replace("/restore/grafana.tar", str(tmp_path / "old.tar"))
        out = subprocess.run(["sh", "-c", unpack], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        # the mount is left as it is (even root, who could write it, does not)
        assert (grafana / "grafana.db").exists() and (grafana / "dashboards" / "gateway.json").read_text() == "{}"
    finally:
        os.chmod(grafana / "dashboards", 0o755)


def _restore_commands(tmp_path) -> list[str]:
    archive = tmp_path / "backup.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("manifest.json", json.dumps({"created": "x", "mode": "docker", "contents": [
                ".env", "redis.rdb", "grafana.tar", "n8n.sql", "qdrant.tar"]})), (".env", "A=1\n"),
                           ("redis.rdb", ""), ("grafana.tar", ""), ("n8n.sql", ""), ("qdrant.tar", "")):
            path = tmp_path / f"member-{name}"
            path.write_text(data)
            tar.add(path, arcname=name)
    out = subprocess.run([sys.executable, "scripts/backup.py", "restore", str(archive), "--mode", "docker",
                          "--dry-run", "--env-file", str(tmp_path / ".env")], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return [line for line in out.stdout.splitlines() if line.startswith("+ ")]


def test_docker_restore_runs_in_the_order_the_stack_needs(tmp_path):
    steps = _restore_commands(tmp_path)
    order = [next(i for i, s in enumerate(steps) if what in s) for what in (
        "restore .env", "restore_redis.sh /data /restore/redis.rdb", "grafana", "qdrant",
        "up -d --wait postgres", "psql")]
    assert order == sorted(order), steps
    assert not (tmp_path / ".env").exists()  # a dry run changes nothing


def test_a_stack_that_is_not_there_is_one_line_not_a_traceback(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    (bindir / "docker").chmod(0o755)
    out = subprocess.run([sys.executable, "scripts/backup.py", "backup", "--mode", "docker", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "error: docker compose exec" in out.stderr and "(--local for local mode)" in out.stderr
