"""The native API over the Flask test client, with real backends talking to the fakes on loopback."""

from __future__ import annotations

import json

import pytest

from tests.fakes import Script

DESIGN = ("Design a distributed system for real-time chat that scales to millions of users, with fault "
          "tolerance and message ordering.")


def test_simple_prompt_answered_by_local_model(client, ollama, claude):
    ollama.default = Script(reply="Python is a programming language.")
    r = client.post("/api/v1/chat", json={"prompt": "What is Python?"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["model"] == "tinyllama" and body["backend"] == "ollama"
    assert body["response"] == "Python is a programming language."
    # usage from Ollama's own counts: 3 prompt words, 5 reply words in the fake's tokenizer
    assert body["usage"] == {"input_tokens": 3, "output_tokens": 5}
    assert body["cost"] == 0.0 and body["cached"] is False
    assert body["routing"]["tier"] == "local-small" and body["routing"]["reason"]
    assert body["routing"]["attempts"] == [
        {"model": "tinyllama", "backend": "ollama", "outcome": "ok",
         "latency_seconds": body["routing"]["attempts"][0]["latency_seconds"]}]
    assert body["latency_seconds"] >= 0 and body["request_id"] == r.headers["X-Request-ID"]
    sent = ollama.calls("/api/chat")[0].body
    assert sent["model"] == "tinyllama" and sent["stream"] is False  # a free model answers in one piece
    assert sent["messages"] == [{"role": "user", "content": "What is Python?"}]
    assert claude.requests == []


def test_complex_prompt_answered_by_claude_with_real_cost(client, claude, ollama):
    claude.default = Script(reply="Use a sharded pub/sub with per-room sequencing.")
    r = client.post("/api/v1/chat", json={"prompt": DESIGN, "max_tokens": 300, "temperature": 0.2})
    body = r.get_json()
    assert r.status_code == 200 and body["model"] == "claude-sonnet" and body["backend"] == "anthropic"
    usage = body["usage"]
    assert usage == {"input_tokens": len(DESIGN.split()), "output_tokens": 7}
    assert body["cost"] == pytest.approx((usage["input_tokens"] * 2.0 + usage["output_tokens"] * 10.0) / 1e6)
    sent = claude.calls("/v1/messages")[0]
    assert sent.body["model"] == "claude-sonnet-5-5" and sent.body["max_tokens"] == 300
    assert "temperature" not in sent.body  # Claude 5 rejects non-default sampling: the gateway leaves it out
    assert sent.headers["authorization"] == "Bearer sk-ant-test-key"
    assert ollama.calls("/api/chat") == []


def test_messages_and_system_reach_the_backend(client, ollama):
    r = client.post("/api/v1/chat", json={
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                     {"role": "user", "content": "What is 2+2?"}],
        "system": "Answer briefly.", "model": "tinyllama", "temperature": 0.5, "max_tokens": 50})
    assert r.status_code == 200
    sent = ollama.calls("/api/chat")[0].body
    assert sent["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["options"]["temperature"] == 0.5 and sent["options"]["num_predict"] == 50


def test_system_prompt_goes_top_level_to_anthropic(client, claude):
    r = client.post("/api/v1/chat", json={"prompt": "hello", "model": "claude-haiku", "system": "Be terse.",
                                          "temperature": 0.3})
    assert r.status_code == 200 and r.get_json()["model"] == "claude-haiku"
    sent = claude.calls("/v1/messages")[0].body
    assert sent["system"] == "Be terse." and sent["temperature"] == 0.3
    assert sent["messages"] == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(("model", "expected"), [("phi", "phi"), ("local-medium", "phi"), ("cloud", "claude-sonnet"),
                                                 ("claude-haiku", "claude-haiku")])
def test_explicit_model_or_tier(client, model, expected):
    r = client.post("/api/v1/chat", json={"prompt": "What is Python?", "model": model})
    assert r.status_code == 200 and r.get_json()["model"] == expected


@pytest.mark.parametrize("strategy", ["auto", "local-only", "cloud-first", "cost-aware"])
def test_each_strategy_per_request(client, strategy):
    r = client.post("/api/v1/chat", json={"prompt": DESIGN, "strategy": strategy})
    body = r.get_json()
    assert r.status_code == 200 and body["routing"]["strategy"] == strategy
    expected = "ollama" if strategy == "local-only" else "anthropic"
    assert body["backend"] == expected


def test_default_strategy_from_environment(make_app):
    client = make_app(ROUTING_STRATEGY="local-only").test_client()
    body = client.post("/api/v1/chat", json={"prompt": DESIGN}).get_json()
    assert body["backend"] == "ollama" and body["routing"]["strategy"] == "local-only"


def test_without_anthropic_key_complex_prompt_stays_local(make_app, claude):
    client = make_app(ANTHROPIC_API_KEY="").test_client()
    body = client.post("/api/v1/chat", json={"prompt": DESIGN}).get_json()
    assert body["backend"] == "ollama"
    assert "no ANTHROPIC_API_KEY" in body["routing"]["reason"]
    assert claude.requests == []


def test_dry_run_calls_no_upstream(client, ollama, claude):
    for prompt in ("What is Python?", DESIGN):
        r = client.post("/api/v1/chat", json={"prompt": prompt, "dry_run": True})
        body = r.get_json()
        assert r.status_code == 200 and body["dry_run"] is True
        assert body["model"] and body["routing"]["alternatives"] is not None
        assert "response" not in body
    assert ollama.requests == [] and claude.requests == []


def test_complexity_endpoint(client, ollama, claude):
    r = client.post("/api/v1/complexity", json={"prompt": DESIGN})
    body = r.get_json()
    assert r.status_code == 200
    assert body["complexity"] >= 0.6 and set(body["factors"]) == {"length", "reasoning", "code", "question", "steps"}
    assert body["recommended"] == {"model": "claude-sonnet", "backend": "anthropic", "tier": "cloud"}
    assert body["estimated_cost"] > 0
    assert ollama.requests == [] and claude.requests == []


def test_models_endpoint_reports_availability_warmth_and_prices(client, ollama):
    ollama.installed = {"tinyllama"}
    ollama.loaded = {"tinyllama"}
    models = {m["name"]: m for m in client.get("/api/v1/models").get_json()["models"]}
    assert (models["tinyllama"]["available"], models["tinyllama"]["warm"]) == (True, True)
    assert (models["phi"]["available"], models["phi"]["warm"]) == (False, False)
    assert models["claude-sonnet"]["price_in_per_mtok"] == 2.0 and models["claude-sonnet"]["price_out_per_mtok"] == 10.0
    assert models["tinyllama"]["circuit"] == "closed"
    assert {m["backend"] for m in models.values()} <= {"ollama", "anthropic", "openai_compat"}
    assert models["mistral"]["routable"] is False  # deployment tier 2


def test_models_endpoint_marks_unconfigured_backends(make_app):
    client = make_app(ANTHROPIC_API_KEY="").test_client()
    models = {m["name"]: m for m in client.get("/api/v1/models").get_json()["models"]}
    assert models["claude-sonnet"]["available"] is False
    assert models["claude-sonnet"]["circuit"] == "unconfigured"


def test_stats_count_by_backend_model_tier(client):
    client.post("/api/v1/chat", json={"prompt": "What is Python?"})
    client.post("/api/v1/chat", json={"prompt": "What is Rust?"})
    client.post("/api/v1/chat", json={"prompt": DESIGN})
    client.post("/api/v1/chat", json={"prompt": ""})
    s = client.get("/api/v1/stats").get_json()
    assert s["requests"] == 3 and s["errors"] == {"400": 1}
    assert s["by_backend"] == {"ollama": 2, "anthropic": 1}
    assert s["by_model"] == {"tinyllama": 2, "claude-sonnet": 1}
    assert s["by_tier"] == {"local-small": 2, "cloud": 1}
    assert s["local_share"] == pytest.approx(2 / 3, abs=1e-3)
    assert s["cost_usd"] > 0


def test_health_is_open_and_calls_nothing(make_app, ollama):
    client = make_app(GATEWAY_API_KEYS="k1").test_client()
    r = client.get("/health")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}
    assert ollama.requests == []


def test_readiness_reports_each_backend(make_app, ollama):
    client = make_app(GATEWAY_API_KEYS="k1").test_client()
    r = client.get("/health/ready")
    body = r.get_json()
    assert r.status_code == 200 and body["status"] == "ready"
    assert body["backends"]["ollama"]["ok"] and body["backends"]["anthropic"]["ok"] and body["degraded"] == []


def test_readiness_says_degraded_when_local_is_down_and_the_cloud_is_up(make_app, unused_port):
    """Ready (the cloud can answer) but not fine: the local models' prompts are refused or paid for."""
    client = make_app(OLLAMA_URL=f"http://127.0.0.1:{unused_port}").test_client()
    body = client.get("/health/ready").get_json()
    assert body["status"] == "ready" and body["degraded"] == ["ollama"]


def test_readiness_fails_when_no_backend_is_up(make_app, unused_port):
    client = make_app(OLLAMA_URL=f"http://127.0.0.1:{unused_port}", ANTHROPIC_API_KEY="").test_client()
    r = client.get("/health/ready")
    assert r.status_code == 503 and r.get_json()["backends"]["ollama"]["ok"] is False


def test_openai_compat_upstream_answers(make_app, compat, compat_catalog):
    client = make_app(MODELS_CONFIG=compat_catalog, OPENAI_COMPAT_URL=f"{compat.url}/v1",
                      OPENAI_COMPAT_API_KEY="sk-compat-test").test_client()
    compat.default = Script(reply="compat says hi")
    r = client.post("/api/v1/chat", json={"prompt": "hello", "model": "compat-cloud", "max_tokens": 20})
    body = r.get_json()
    assert r.status_code == 200 and body["backend"] == "openai_compat" and body["response"] == "compat says hi"
    assert body["usage"] == {"input_tokens": 1, "output_tokens": 3}
    assert body["cost"] == pytest.approx((1 * 0.5 + 3 * 1.5) / 1e6)
    assert compat.calls("/v1/chat/completions")[0].body["max_tokens"] == 20


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("path", ["/api/v1/chat", "/api/v1/complexity"])
def test_auth_required_when_keys_configured(make_app, path, ollama):
    client = make_app(GATEWAY_API_KEYS="key-one, key-two").test_client()
    body = {"prompt": "What is Python?"}
    r = client.post(path, json=body)
    assert r.status_code == 401
    err = r.get_json()
    assert err["error"]["type"] == "authentication_error" and err["request_id"] == r.headers["X-Request-ID"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post(path, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post(path, json=body, headers={"Authorization": "Bearer key-one"}).status_code == 200
    assert client.post(path, json=body, headers={"X-API-Key": "key-two"}).status_code == 200
    assert client.get("/api/v1/stats").status_code == 401
    assert client.get("/api/v1/models", headers={"X-API-Key": "key-two"}).status_code == 200


def test_unknown_routes_under_api_also_need_auth(make_app):
    client = make_app(GATEWAY_API_KEYS="k").test_client()
    assert client.get("/api/v1/nothing").status_code == 401
    assert client.get("/api/v1/nothing", headers={"X-API-Key": "k"}).status_code == 404


def test_auth_off_when_no_keys(client):
    assert client.post("/api/v1/chat", json={"prompt": "What is Python?"}).status_code == 200


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": "", "content_type": "application/json"}, 400, "empty"),
        ({"json": ["a list"]}, 400, "JSON object"),
        ({"json": {}}, 400, "missing 'prompt'"),
        ({"json": {"prompt": ""}}, 400, "empty"),
        ({"json": {"prompt": 42}}, 400, "'prompt' must be a string"),
        ({"json": {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}}, 400, "not both"),
        ({"json": {"messages": "hi"}}, 400, "'messages'"),
        ({"json": {"messages": [{"role": "user"}]}}, 400, "messages[0]"),
        ({"json": {"messages": [{"role": "assistant", "content": "x"}]}}, 400, "no non-empty user message"),
        ({"json": {"prompt": "hi", "max_tokens": "10"}}, 400, "'max_tokens' must be an integer"),
        ({"json": {"prompt": "hi", "max_tokens": True}}, 400, "'max_tokens' must be an integer"),
        ({"json": {"prompt": "hi", "temperature": "hot"}}, 400, "'temperature' must be a number"),
        ({"json": {"prompt": "hi", "model": 3}}, 400, "'model'"),
        ({"json": {"prompt": "hi", "dry_run": "yes"}}, 400, "'dry_run'"),
        ({"json": {"prompt": "hi", "model": "gpt-17"}}, 404, "unknown model"),
        ({"json": {"prompt": "hi", "max_tokens": 0}}, 422, "'max_tokens' must be between"),
        ({"json": {"prompt": "hi", "max_tokens": 10_000_000}}, 422, "'max_tokens' must be between"),
        ({"json": {"prompt": "hi", "temperature": 3.5}}, 422, "'temperature' must be between"),
        ({"json": {"prompt": "hi", "strategy": "cheapest"}}, 422, "'strategy' must be one of"),
        ({"json": {"messages": [{"role": "robot", "content": "x"}]}}, 422, "role must be one of"),
        ({"json": {"prompt": "hi", "model": "claude-sonnet", "strategy": "local-only"}}, 422, "local-only"),
    ],
)
def test_bad_input_gets_a_clear_json_error(client, ollama, claude, kwargs, status, fragment):
    r = client.post("/api/v1/chat", **kwargs)
    assert r.status_code == status, r.get_data(as_text=True)
    body = r.get_json()
    assert fragment in body["error"]["message"]
    assert body["error"]["type"] and body["request_id"] == r.headers["X-Request-ID"]
    assert "Traceback" not in r.get_data(as_text=True)
    assert ollama.calls("/api/chat") == [] and claude.requests == []


def test_body_over_the_limit_is_413(make_app):
    client = make_app(MAX_BODY_BYTES=2048).test_client()
    r = client.post("/api/v1/chat", data=json.dumps({"prompt": "x" * 5000}), content_type="application/json")
    assert r.status_code == 413 and r.get_json()["error"]["type"] == "payload_too_large"


def test_prompt_over_the_limit_is_413(make_app, ollama):
    client = make_app(MAX_PROMPT_CHARS=100).test_client()
    r = client.post("/api/v1/chat", json={"prompt": "y" * 101})
    assert r.status_code == 413 and r.get_json()["error"]["type"] == "prompt_too_large"
    assert ollama.requests == []


def test_unknown_route_and_method_are_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.get_json()["error"]["type"] == "not_found"
    r = client.get("/api/v1/chat")
    assert r.status_code == 405 and r.get_json()["error"]["type"] == "method_not_allowed"
    assert "POST" in r.headers["Allow"]


def test_request_id_is_honoured_or_generated(client):
    r = client.post("/api/v1/chat", json={"prompt": "hi", "dry_run": True}, headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123" and r.get_json()["request_id"] == "abc-123"
    r = client.post("/api/v1/chat", json={"prompt": "hi", "dry_run": True},
                    headers={"X-Request-ID": "bad id <script>"})
    assert r.headers["X-Request-ID"] != "bad id <script>" and len(r.headers["X-Request-ID"]) == 32
    assert client.get("/health").headers["X-Request-ID"]


def test_unexpected_exception_is_a_json_500_without_trace(client, monkeypatch):
    svc = client.application.extensions["gateway"]

    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(svc, "decide", boom)
    r = client.post("/api/v1/chat", json={"prompt": "hi"})
    assert r.status_code == 500
    text = r.get_data(as_text=True)
    assert "secret internals" not in text and "Traceback" not in text
    assert r.get_json()["error"]["type"] == "internal_error" and r.get_json()["request_id"]


def test_one_log_line_per_request_without_prompt_or_key(make_app, gateway_logs):
    client = make_app(GATEWAY_API_KEYS="super-secret-key").test_client()
    secret_prompt = "What is the launch code zebra-42?"
    r = client.post("/api/v1/chat", json={"prompt": secret_prompt}, headers={"X-API-Key": "super-secret-key"})
    assert r.status_code == 200
    client.post("/api/v1/chat", json={"prompt": secret_prompt}, headers={"X-API-Key": "wrong-key-123"})
    access = [json.loads(line) for line in gateway_logs if '"gateway.access"' in line]
    assert len(access) == 2
    ok = access[0]
    assert ok["request_id"] == r.headers["X-Request-ID"] and ok["route"] == "/api/v1/chat"
    assert (ok["status"], ok["model"], ok["backend"], ok["tier"]) == (200, "tinyllama", "ollama", "local-small")
    assert ok["latency_ms"] >= 0 and ok["key_id"] and ok["attempts"] == 1
    assert access[1]["status"] == 401
    everything = "\n".join(gateway_logs)
    for secret in ("zebra-42", "launch code", "super-secret-key", "wrong-key-123"):
        assert secret not in everything


@pytest.mark.parametrize("router", ["learned", "hybrid"])
def test_complexity_and_chat_with_the_learned_routers(make_app, ollama, router):
    """ROUTER=learned|hybrid: the shipped weights score the prompt, the factors say so, and a chat is routed
    and answered with the same decision."""
    client = make_app(ROUTER=router).test_client()
    body = client.post("/api/v1/complexity", json={"prompt": DESIGN}).get_json()
    assert 0.0 <= body["complexity"] <= 1.0 and "learned" in body["factors"]
    assert ("heuristic" in body["factors"]) == (router == "hybrid")
    r = client.post("/api/v1/chat", json={"prompt": "What is Python?", "strategy": "local-only"})
    assert r.status_code == 200 and "learned" in r.get_json()["routing"]["factors"]
    assert len(ollama.requests) == 1
