"""scripts/logview.py: the gateway's JSON log lines as readable lines (`./deploy-all.sh logs --pretty`)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

ACCESS = {"ts": "2026-12-01T12:04:31.123Z", "level": "INFO", "logger": "gateway.access", "msg": "request",
          "request_id": "5f2a9c1e00112233", "method": "POST", "route": "/api/v1/chat", "status": 200,
          "latency_ms": 31.2, "model": "tinyllama", "backend": "ollama", "cost": 0.0, "input_tokens": 12,
          "output_tokens": 30}


def view(*lines: str, **env: str) -> list[str]:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "logview.py")], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=30, env=env or None)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_an_access_line_reads_as_one_line_and_other_lines_pass_through():
    warning = {"ts": "2026-12-01T12:05:00.000Z", "level": "WARNING", "logger": "gateway.stream",
               "msg": "stream interrupted after text was sent", "request_id": "abcdef0123"}
    lines = view(json.dumps(ACCESS), "[2026-12-01 12:00:00] [INFO] Booting worker with pid: 42", json.dumps(warning))
    assert lines == [
        "12:04:31 INFO  5f2a9c1e POST /api/v1/chat 200 31.2 ms  tinyllama (ollama) $0.000000 in 12 out 30",
        "[2026-12-01 12:00:00] [INFO] Booting worker with pid: 42",
        "12:05:00 WARNING abcdef01 stream interrupted after text was sent"]
