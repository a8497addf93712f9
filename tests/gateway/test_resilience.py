"""Upstream failures: each ends in a fallback answer or the specified error, with every attempt recorded."""

from __future__ import annotations

import time

import pytest

from tests.fakes import Script

SIMPLE = "What is Python?"
DESIGN = ("Design a distributed system for real-time chat that scales to millions of users, with fault "
          "tolerance and message ordering.")


def chat(client, **body):
    r = client.post("/api/v1/chat", json=body)
    return r, r.get_json()


def kinds(body) -> list[tuple[str, str, str | None]]:
    attempts = body["routing"]["attempts"] if "routing" in body else body["error"]["attempts"]
    return [(a["model"], a["outcome"], a.get("error_type")) for a in attempts]


def test_ollama_down_is_refused_not_billed_by_default(make_app, unused_port, claude):
    client = make_app(OLLAMA_URL=f"http://127.0.0.1:{unused_port}").test_client()
    r, body = chat(client, prompt=SIMPLE)
    assert r.status_code == 503 and body["error"]["type"] == "local_unavailable"
    assert "PAID_FALLBACK=refuse" in body["error"]["message"] and int(r.headers["Retry-After"]) >= 1
    assert {a["backend"] for a in body["error"]["attempts"]} == {"ollama"}
    assert claude.requests == []


def test_ollama_connection_refused_falls_back_to_cloud_when_allowed(make_app, unused_port, claude):
    client = make_app(OLLAMA_URL=f"http://127.0.0.1:{unused_port}", PAID_FALLBACK="cloud").test_client()
    r, body = chat(client, prompt=SIMPLE)
    assert r.status_code == 200 and body["backend"] == "anthropic"
    assert kinds(body) == [("tinyllama", "error", "connection"), ("tinyllama", "error", "connection"),
                           ("phi", "error", "connection"), ("phi", "error", "connection"),
                           ("claude-sonnet", "ok", None)]
    # the answer says it is a paid fallback, and why
    assert "tinyllama failed (connection)" in body["routing"]["reason"]
    assert "paid fallback" in body["routing"]["reason"] and body["cost"] > 0


def test_ollama_connection_refused_local_only_is_502(make_app, unused_port, claude):
    client = make_app(OLLAMA_URL=f"http://127.0.0.1:{unused_port}").test_client()
    r, body = chat(client, prompt=SIMPLE, strategy="local-only")
    assert r.status_code == 502
    assert body["error"]["type"] == "upstream_unreachable" and body["request_id"]
    assert {a["backend"] for a in body["error"]["attempts"]} == {"ollama"}
    assert claude.requests == []


def test_dns_failure_is_a_connection_error(make_app, claude):
    client = make_app(OLLAMA_URL="http://no-such-host.invalid:11434", PAID_FALLBACK="cloud").test_client()
    r, body = chat(client, prompt=SIMPLE)
    assert r.status_code == 200 and body["backend"] == "anthropic"
    assert kinds(body)[0] == ("tinyllama", "error", "connection")


def test_read_timeout_falls_back_without_retrying(make_app, ollama):
    client = make_app(OLLAMA_TIMEOUT="0.3").test_client()
    ollama.queue(Script(delay=1.0))
    r, body = chat(client, prompt=SIMPLE)
    assert r.status_code == 200 and body["model"] == "phi"
    assert kinds(body) == [("tinyllama", "error", "timeout"), ("phi", "ok", None)]


def test_every_backend_timing_out_is_504(make_app, ollama):
    client = make_app(OLLAMA_TIMEOUT="0.2").test_client()
    ollama.default = Script(delay=0.6)
    r, body = chat(client, prompt=SIMPLE, strategy="local-only")
    assert r.status_code == 504 and body["error"]["type"] == "upstream_timeout"


def test_model_not_pulled_falls_back_and_is_remembered(client, ollama):
    ollama.installed = {"phi"}
    r, body = chat(client, prompt=SIMPLE)
    assert r.status_code == 200 and body["model"] == "phi"
    assert kinds(body) == [("tinyllama", "error", "model_not_found"), ("phi", "ok", None)]
    before = len(ollama.calls("/api/chat"))
    r, body = chat(client, prompt=SIMPLE)
    assert body["model"] == "phi" and "not installed" in body["routing"]["reason"]
    assert [c.body["model"] for c in ollama.calls("/api/chat")[before:]] == ["phi"]


def test_model_not_pulled_when_asked_explicitly_is_a_clear_503(client, ollama):
    ollama.installed = {"phi"}
    r, body = chat(client, prompt=SIMPLE, model="tinyllama")
    assert r.status_code == 503
    assert body["error"]["type"] == "model_not_installed"
    assert "ollama pull tinyllama" in body["error"]["message"]


def test_429_with_retry_after_is_retried_on_the_same_model(client, claude):
    claude.queue(Script(status=429, headers={"retry-after": "0"}))
    r, body = chat(client, prompt=DESIGN)
    assert r.status_code == 200 and body["model"] == "claude-sonnet"
    assert kinds(body) == [("claude-sonnet", "error", "rate_limited"), ("claude-sonnet", "ok", None)]
    assert body["routing"]["attempts"][0]["status"] == 429


def test_429_with_long_retry_after_falls_back_instead_of_waiting(client, claude):
    claude.queue(Script(status=429, headers={"retry-after": "30"}))
    started = time.monotonic()
    r, body = chat(client, prompt=DESIGN)
    assert r.status_code == 200 and body["model"] == "claude-haiku"
    assert kinds(body) == [("claude-sonnet", "error", "rate_limited"), ("claude-haiku", "ok", None)]
    assert time.monotonic() - started < 30  # it did not sleep the 30 s


def test_429_on_an_explicit_model_is_503_with_retry_after(client, claude):
    claude.default = Script(status=429, headers={"retry-after": "30"})
    r, body = chat(client, prompt=DESIGN, model="claude-sonnet")
    assert r.status_code == 503 and body["error"]["type"] == "upstream_rate_limited"
    assert r.headers["Retry-After"] == "30"


def test_500_is_retried_then_succeeds(client, claude):
    claude.queue(Script(status=500))
    r, body = chat(client, prompt=DESIGN)
    assert r.status_code == 200 and body["model"] == "claude-sonnet"
    assert kinds(body) == [("claude-sonnet", "error", "server_error"), ("claude-sonnet", "ok", None)]


def test_529_overloaded_cloud_falls_back_to_local(client, claude, ollama):
    claude.default = Script(status=529, error_type="overloaded_error", error_message="Overloaded")
    r, body = chat(client, prompt=DESIGN)
    assert r.status_code == 200 and body["backend"] == "ollama" and body["model"] == "phi"
    got = kinds(body)
    assert got[0] == ("claude-sonnet", "error", "overloaded") and got[-1] == ("phi", "ok", None)
    # 3 tries on sonnet, then haiku until the breaker opens at 5 failures: the 6th is skipped
    assert got.count(("claude-haiku", "skipped", "circuit_open")) == 1


def test_all_overloaded_is_503(client, claude, ollama):
    claude.default = Script(status=529, error_type="overloaded_error")
    r, body = chat(client, prompt=DESIGN, model="claude-sonnet")
    assert r.status_code == 503 and body["error"]["type"] == "upstream_overloaded"
    assert len(body["error"]["attempts"]) == 3  # first try + ANTHROPIC_MAX_RETRIES=2


@pytest.mark.parametrize(
    "script",
    [Script(raw_body=b"{this is not json", content_type="application/json"),
     Script(raw_body=b"<html>Bad Gateway</html>", content_type="text/html"),
     Script(raw_body=b'{"unexpected": true}', content_type="application/json")],
    ids=["broken-json", "wrong-content-type", "wrong-shape"],
)
def test_malformed_ollama_body_falls_back(client, ollama, script):
    ollama.queue(script)
    r, body = chat(client, prompt=SIMPLE)
    assert r.status_code == 200 and body["model"] == "phi"
    assert kinds(body)[0] == ("tinyllama", "error", "malformed")


def test_malformed_anthropic_body_falls_back(client, claude):
    claude.queue(Script(raw_body=b"{this is not json", content_type="application/json"))
    r, body = chat(client, prompt=DESIGN)
    assert r.status_code == 200 and body["model"] == "claude-haiku"
    assert kinds(body)[0] == ("claude-sonnet", "error", "malformed")


def test_error_inside_a_200_ollama_body_is_retried(client, ollama):
    ollama.queue(Script(raw_body=b'{"error": "llama runner process has terminated"}',
                        content_type="application/json"))
    r, body = chat(client, prompt=SIMPLE)
    assert r.status_code == 200 and body["model"] == "tinyllama"
    assert kinds(body) == [("tinyllama", "error", "server_error"), ("tinyllama", "ok", None)]


def test_bad_anthropic_key_falls_back_to_local(make_app, claude):
    client = make_app(ANTHROPIC_API_KEY="sk-ant-wrong").test_client()
    r, body = chat(client, prompt=DESIGN)
    assert r.status_code == 200 and body["backend"] == "ollama"
    assert kinds(body)[0] == ("claude-sonnet", "error", "auth")


def test_explicit_model_does_not_fall_back(client, ollama):
    ollama.default = Script(status=500, error_message="boom")
    r, body = chat(client, prompt=SIMPLE, model="tinyllama")
    assert r.status_code == 502 and body["error"]["type"] == "upstream_error"
    assert {a["model"] for a in body["error"]["attempts"]} == {"tinyllama"}


def test_openai_compat_failure_falls_back_within_the_cloud_tier(make_app, compat, claude, compat_catalog):
    client = make_app(MODELS_CONFIG=compat_catalog, OPENAI_COMPAT_URL=f"{compat.url}/v1",
                      OPENAI_COMPAT_API_KEY="sk-compat-test").test_client()
    claude.default = Script(status=401)
    r, body = chat(client, prompt=DESIGN)
    assert r.status_code == 200 and body["backend"] == "openai_compat" and body["model"] == "compat-cloud"


def test_circuit_breaker_opens_then_recovers(make_app, ollama, claude):
    client = make_app(BREAKER_FAILURE_THRESHOLD="2", BREAKER_COOLDOWN_SECONDS="0.5").test_client()
    ollama.default = Script(status=500)
    r, body = chat(client, prompt=SIMPLE, strategy="local-only")
    assert r.status_code == 502
    assert kinds(body) == [("tinyllama", "error", "server_error"), ("tinyllama", "error", "server_error"),
                           ("phi", "skipped", "circuit_open")]
    models = {m["name"]: m for m in client.get("/api/v1/models").get_json()["models"]}
    assert models["tinyllama"]["circuit"] == "open"

    calls = len(ollama.calls("/api/chat"))
    r, body = chat(client, prompt=SIMPLE, strategy="local-only")
    assert r.status_code == 503 and body["error"]["type"] == "circuit_open"
    assert int(r.headers["Retry-After"]) >= 1
    assert len(ollama.calls("/api/chat")) == calls  # nothing was sent to the open backend

    # While open, auto routing refuses simple prompts (PAID_FALLBACK=refuse): no paid answer, a retry hint.
    r, body = chat(client, prompt=SIMPLE)
    assert r.status_code == 503 and body["error"]["type"] == "local_unavailable"
    assert int(r.headers["Retry-After"]) >= 1 and claude.requests == []

    ollama.default = Script(reply="back again")
    time.sleep(0.6)  # the cool-down
    r, body = chat(client, prompt=SIMPLE, strategy="local-only")
    assert r.status_code == 200 and body["response"] == "back again"
    models = {m["name"]: m for m in client.get("/api/v1/models").get_json()["models"]}
    assert models["tinyllama"]["circuit"] == "closed"


def test_half_open_failure_reopens(make_app, ollama):
    client = make_app(BREAKER_FAILURE_THRESHOLD="1", BREAKER_COOLDOWN_SECONDS="0.3",
                      OLLAMA_MAX_RETRIES="0").test_client()
    ollama.default = Script(status=503)
    chat(client, prompt=SIMPLE, strategy="local-only")
    time.sleep(0.4)
    calls = len(ollama.calls("/api/chat"))
    r, _ = chat(client, prompt=SIMPLE, strategy="local-only")
    assert len(ollama.calls("/api/chat")) == calls + 1  # exactly one probe
    assert r.status_code == 503
    assert client.get("/api/v1/models").get_json()["models"][0]["circuit"] == "open"


def test_bad_request_does_not_open_the_circuit(make_app, ollama):
    client = make_app(BREAKER_FAILURE_THRESHOLD="1").test_client()
    ollama.queue(Script(status=400, error_message="invalid options"))
    r, body = chat(client, prompt=SIMPLE)
    assert r.status_code == 200 and body["model"] == "phi"
    assert client.get("/api/v1/models").get_json()["models"][0]["circuit"] == "closed"
