"""Security as tests: auth on every route, no CORS, no internals in errors, no secret or prompt in logs
or metrics, no fetching of URLs found in requests."""

from __future__ import annotations

import pytest

from tests.fakes import FakeOpenAI, Script

OPEN_ROUTES = {"/health", "/health/ready", "/openapi.json", "/metrics"}
SENTINEL_KEY = "sk-sentinel-KEY-7f3a9c"
SENTINEL_PROMPT = "sentinel-prompt-zebra-42 what is the launch code"


def routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<path:model_id>", "tinyllama")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield path, method


def test_every_route_needs_a_key_except_the_open_ones(make_app):
    app = make_app(GATEWAY_API_KEYS="right-key")
    client = app.test_client()
    checked = 0
    for path, method in routes(app):
        body = {"json": {"prompt": "hi"}} if method == "POST" else {}
        no_key = client.open(path, method=method, **body)
        wrong = client.open(path, method=method, headers={"Authorization": "Bearer wrong-key"}, **body)
        if path in OPEN_ROUTES:
            assert no_key.status_code != 401, path
            continue
        assert (no_key.status_code, wrong.status_code) == (401, 401), f"{method} {path}"
        assert no_key.get_json()["error"]["type"] == "authentication_error"
        checked += 1
    assert checked >= 10


def test_no_cors_unless_configured(client):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    r = client.options("/api/v1/chat", headers=preflight)
    assert "Access-Control-Allow-Origin" not in r.headers
    r = client.post("/api/v1/chat", json={"prompt": "hi", "dry_run": True}, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("POST", "/api/v1/chat", {"data": "{broken"}), ("GET", "/nope", {}), ("PUT", "/api/v1/chat", {}),
    ("POST", "/v1/chat/completions", {"json": {"messages": 1}}),
])
def test_errors_reveal_no_internals(client, method, path, kwargs):
    r = client.open(path, method=method, **kwargs)
    text = r.get_data(as_text=True)
    for leak in ("Traceback", "File \"", "werkzeug", "Werkzeug", "flask", "gateway/", ".py"):
        assert leak not in text, leak


def test_the_gateway_never_fetches_urls_found_in_requests(client, ollama):
    target = FakeOpenAI(api_key=None)
    try:
        prompt = f"Summarize {target.url}/v1/models and {target.url}/secret please"
        assert client.post("/api/v1/chat", json={"prompt": prompt}).status_code == 200
        assert client.post("/v1/chat/completions", json={"model": "auto", "messages": [
            {"role": "user", "content": [{"type": "text", "text": prompt}]}]}).status_code == 200
        assert target.requests == []
    finally:
        target.close()


def test_sentinel_key_and_prompt_never_reach_logs_or_metrics(make_app, gateway_logs, ollama, claude):
    client = make_app(GATEWAY_API_KEYS=SENTINEL_KEY).test_client()
    auth = {"Authorization": f"Bearer {SENTINEL_KEY}"}
    client.post("/api/v1/chat", json={"prompt": SENTINEL_PROMPT}, headers=auth)
    client.post("/api/v1/chat", json={"prompt": SENTINEL_PROMPT, "stream": True}, headers=auth).get_data()
    client.post("/v1/chat/completions", headers=auth, json={
        "model": "auto", "messages": [{"role": "user", "content": SENTINEL_PROMPT}]})
    ollama.queue(Script(status=500, error_message=SENTINEL_PROMPT), Script(status=500), Script(status=500),
                 Script(status=500))
    client.post("/api/v1/chat", json={"prompt": SENTINEL_PROMPT, "strategy": "local-only"}, headers=auth)
    client.post("/api/v1/chat", json={"prompt": SENTINEL_PROMPT}, headers={"Authorization": f"Bearer {SENTINEL_KEY}x"})
    client.post("/api/v1/chat", json={"prompt": SENTINEL_PROMPT, "model": SENTINEL_PROMPT}, headers=auth)
    metrics = client.get("/metrics").get_data(as_text=True)
    everything = "\n".join(gateway_logs) + metrics
    assert gateway_logs
    for secret in (SENTINEL_KEY, "sentinel-prompt", "zebra-42", "launch code"):
        assert secret not in everything, secret
