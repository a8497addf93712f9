"""scripts/smoke.py, the end of every deploy, against a served gateway and the fake upstreams: it asks the
models every time (never the cache) and a fallback answer fails it, loudly."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.fakes import Script


def smoke(url: str):
    return subprocess.run([sys.executable, "scripts/smoke.py", "--mode", "local", "--gateway-url", url,
                           "--api-key", "smoke-key"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=os.environ)


def test_a_redeploy_asks_the_models_again(make_app, serve, ollama):
    url = serve(make_app(GATEWAY_API_KEYS="smoke-key", ANTHROPIC_API_KEY=""))
    for run in (1, 2):
        out = smoke(url)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "simple   -> tinyllama (ollama)" in out.stdout
        assert len(ollama.calls("/api/chat")) == 2 * run  # both prompts reached Ollama both times


def test_an_answer_from_a_fallback_fails_the_smoke_test(make_app, serve, ollama, claude):
    url = serve(make_app(GATEWAY_API_KEYS="smoke-key", PAID_FALLBACK="cloud"))
    ollama.default = Script(status=500, error_message="runner crashed")
    out = smoke(url)
    assert out.returncode == 1
    assert "simple   FALLBACK: tinyllama, phi failed (server_error); answered by claude-sonnet" in out.stdout
    assert claude.calls("/v1/messages")  # the paid model really answered
