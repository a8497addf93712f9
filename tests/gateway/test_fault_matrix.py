"""The fault-injection matrix: each backend x each fault x streamed or not, with the outcome written down.

Outcomes:
  fallback     answered by another backend, the fault recorded in `attempts`
  retry        answered by the same backend after a retry (transient fault)
  same         answered by the same backend (slow but within the timeout)
  error_event  a stream that had started ends with an explicit error event, no [DONE]
Every request ends within its deadline. Spend is what the answering model cost plus what every failed paid
try may have been billed (gateway/billing.py), by the fault's kind:
  none      the request never reached the upstream, or it refused it with an error status
  worst     it took the request and told nothing (no answer in time, an unreadable or dropped answer):
            the worst case reserved for the try
  received  it reported or sent part of an answer before failing: input as reported, output as received
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests
import yaml

from tests.conftest import ROOT
from tests.fakes import Script

DEADLINE = 4.0
SIMPLE = "What is Python?"
DESIGN = ("Design a distributed system for real-time chat that scales to millions of users, with fault "
          "tolerance and message ordering.")
REPLY = "alpha beta gamma delta epsilon"

# What a failed paid try is charged, by fault (absent: none)
CHARGED = {"read_timeout": "worst", "malformed_json": "worst", "wrong_content_type": "worst",
           "connection_dropped": "worst", "stream_cut_after_first_token": "received", "error_mid_stream": "received",
           "endless_stream": "received",
           # Anthropic reports the input count in message_start, before any text: a cut after it is charged that
           "stream_cut_before_first_token": {"anthropic": "received", "openai_compat": "worst"}}

# fault -> (how to make it, outcome when not streamed, outcome when streamed)
FAULTS = {
    "connection_refused": ("url:refused", "fallback", "fallback"),
    "dns_failure": ("url:dns", "fallback", "fallback"),
    "connect_timeout": ("url:blackhole", "fallback", "fallback"),
    "read_timeout": (Script(delay=1.5), "fallback", "fallback"),
    "slow_first_byte": (Script(delay=0.3, reply=REPLY), "same", "same"),
    "http_400": (Script(status=400), "fallback", "fallback"),
    "http_401": (Script(status=401), "fallback", "fallback"),
    "http_404": (Script(status=404), "fallback", "fallback"),
    "http_429_retry_after": ("once", Script(status=429, headers={"retry-after": "0"}), "retry"),
    "http_500": ("once", Script(status=500), "retry"),
    "http_503": ("once", Script(status=503), "retry"),
    "http_529": ("once", Script(status=529, error_type="overloaded_error"), "retry"),
    "malformed_json": (Script(raw_body=b"{not json", content_type="application/json"), "fallback", "fallback"),
    "wrong_content_type": (Script(raw_body=b"<html>oops</html>", content_type="text/html"), "fallback", "fallback"),
    "connection_dropped": (Script(drop=True), "fallback", "fallback"),
    "stream_cut_before_first_token": (Script(reply=REPLY, cut_after=0), None, "fallback"),
    "stream_cut_after_first_token": (Script(reply=REPLY, cut_after=2), None, "error_event"),
    "error_mid_stream": (Script(reply=REPLY, error_after=2, error_type="overloaded_error"), None, "error_event"),
    "endless_stream": (Script(reply=REPLY, endless=True, chunk_delay=0.02), "fallback", "error_event"),
}
BACKENDS = ("ollama", "anthropic", "openai_compat")


def cells():
    for backend in BACKENDS:
        for fault, (how, plain, streamed) in FAULTS.items():
            if how == "once":  # transient: fails once, then answers
                plain, streamed = "retry", "retry"
            for stream, expected in ((False, plain), (True, streamed)):
                if expected is not None:
                    mode = "stream" if stream else "plain"
                    yield pytest.param(backend, fault, stream, expected, id=f"{backend}-{fault}-{mode}")


@pytest.fixture(scope="module")
def blackhole():
    """A port whose accept queue is full: connecting to it times out (on loopback, without leaving the host)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    filler = socket.create_connection(srv.getsockname())
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    filler.close()
    srv.close()


@pytest.fixture(scope="module")
def compat_first_catalog(tmp_path_factory):
    """The shipped catalog with an OpenAI-compatible model first in the cloud tier, so it can be the one that fails."""
    raw = yaml.safe_load((ROOT / "configs" / "models.yaml").read_text())
    raw["models"].insert(3, {"name": "compat-cloud", "backend": "openai_compat", "id": "compat-model", "tier": "cloud",
                             "context_window": 128000, "price_in_per_mtok": 0.5, "price_out_per_mtok": 1.5})
    path = tmp_path_factory.mktemp("catalog") / "models.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize(("backend", "fault", "stream", "expected"), list(cells()))
def test_fault_matrix(backend, fault, stream, expected, make_app, serve, ollama, claude, compat, blackhole,
                      unused_port, compat_first_catalog):
    fakes = {"ollama": ollama, "anthropic": claude, "openai_compat": compat}
    url_var = {"ollama": "OLLAMA_URL", "anthropic": "ANTHROPIC_BASE_URL", "openai_compat": "OPENAI_COMPAT_URL"}
    env = dict(OLLAMA_TIMEOUT="0.8", ANTHROPIC_TIMEOUT="0.8",
               OPENAI_COMPAT_TIMEOUT="0.8", CONNECT_TIMEOUT="0.3", REQUEST_DEADLINE_SECONDS=str(DEADLINE),
               BUDGET_MONTHLY_USD="100", BREAKER_FAILURE_THRESHOLD="50",
               PAID_FALLBACK="cloud")  # the matrix walks every fallback, local to cloud included
    if backend == "openai_compat":  # first in the cloud tier, Claude behind it
        env.update(MODELS_CONFIG=compat_first_catalog, OPENAI_COMPAT_URL=f"{compat.url}/v1",
                   OPENAI_COMPAT_API_KEY="sk-compat-test")
    how = FAULTS[fault][0]
    suffix = "/v1" if backend == "openai_compat" else ""
    if how == "url:refused":
        env[url_var[backend]] = f"http://127.0.0.1:{unused_port}{suffix}"
    elif how == "url:dns":
        env[url_var[backend]] = f"http://no-such-host.invalid:1234{suffix}"
    elif how == "url:blackhole":
        env[url_var[backend]] = blackhole + suffix
    elif how == "once":
        fakes[backend].queue(FAULTS[fault][1])
    else:
        fakes[backend].default = how
    app = make_app(**env)
    base = serve(app)
    prompt = SIMPLE if backend == "ollama" else DESIGN
    started = time.monotonic()
    if stream:
        r = requests.post(f"{base}/v1/chat/completions", timeout=30, stream=True, json={
            "model": "auto", "messages": [{"role": "user", "content": prompt}], "stream": True,
            "stream_options": {"include_usage": True}})
        events = [line[6:] for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
        answered_by = r.headers.get("X-Gateway-Backend")
    else:
        r = requests.post(f"{base}/api/v1/chat", json={"prompt": prompt}, timeout=30)
        body = r.json()
        answered_by = body.get("backend")
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + 1.5, f"took {elapsed:.1f}s"

    assert r.status_code == 200, r.text[:300]
    if expected == "error_event":
        assert "[DONE]" not in events and json.loads(events[-1])["error"]["code"] == "stream_interrupted"
        assert answered_by == backend
    elif expected == "fallback":
        assert answered_by != backend
    else:
        assert answered_by == backend
        if stream:
            assert events[-1] == "[DONE]"
            attempts = int(r.headers["X-Gateway-Attempts"])
            assert (attempts >= 2) == (expected == "retry"), attempts
        else:
            kinds = [a.get("error_type") for a in body["routing"]["attempts"]]
            assert (kinds[-1] is None) and (len(kinds) >= 2) == (expected == "retry")

    # spend: the answer's cost, plus each failed paid try's charge by the fault's kind
    time.sleep(0.05)  # a stream's spend is recorded when the server closes it
    svc = app.extensions["gateway"]
    spent = svc.budget()["spent_usd"]
    assert svc.budget()["reserved_usd"] == pytest.approx(0, abs=1e-12)
    paid_tries = [r.body["model"] for r in fakes[backend].requests if r.method == "POST"] if backend != "ollama" else []
    worst = sum(_worst(svc, model) for model in paid_tries)
    charged = CHARGED.get(fault, "none") if backend != "ollama" else "none"
    charged = charged[backend] if isinstance(charged, dict) else charged
    if expected == "retry" or expected == "same":
        charged = "none"
    if not stream:
        answer = body["cost"]
        tries = [a for a in body["routing"]["attempts"] if a["outcome"] == "error"]
        if charged == "none":
            assert all("cost" not in a for a in tries), tries
        elif charged == "worst":
            assert all(a["cost"] == pytest.approx(_worst(svc, a["model"])) for a in tries if a["backend"] == backend)
        else:
            assert all(0 < a["cost"] < _worst(svc, a["model"]) for a in tries if a["backend"] == backend), tries
        assert spent == pytest.approx(answer + sum(a.get("cost", 0) for a in tries))
    else:
        answer = _stream_cost(svc, events, answered_by)
        if charged == "none":
            assert spent == pytest.approx(answer)
        elif charged == "worst" and expected != "error_event":
            assert spent == pytest.approx(answer + worst)
        else:
            assert answer < spent < answer + worst
    if answered_by == "ollama" and charged == "none":
        assert spent == 0


def _worst(svc, model_name: str) -> float:
    """The worst case a try of the test's prompt on this model reserves (and is charged when nothing is known)."""
    catalog = svc.settings.catalog
    model = catalog.model(model_name) or next(m for m in catalog.models if m.id == model_name)
    prompt_bound = len(DESIGN.encode()) + 16 * 2
    return model.cost(prompt_bound, model.output_limit(catalog.routing.default_max_tokens))


def _stream_cost(svc, events: list[str], answered_by: str | None) -> float:
    """What a streamed answer that completed cost, from its usage chunk (0 for local or interrupted ones)."""
    usage = next((json.loads(e)["usage"] for e in events if e != "[DONE]" and json.loads(e).get("usage")), None)
    if usage is None or answered_by == "ollama":
        return 0.0
    model = json.loads(events[0])["model"]
    spec = svc.settings.catalog.model(model)
    return spec.cost(usage["prompt_tokens"], usage["completion_tokens"])
