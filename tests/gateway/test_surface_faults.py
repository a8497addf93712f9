"""Faults on every surface added for agents and retrieval (Messages, Responses, embeddings), in each protocol's
own error shape: the local upstream down, Claude rate-limited, a stream cut mid-answer."""

from __future__ import annotations

import json

import pytest
import requests

from tests.fakes import Script

KEY = "gateway-test-key"
ASK = {
    "messages": ("/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 20,
                                  "messages": [{"role": "user", "content": "What is Python?"}]}),
    "responses": ("/v1/responses", {"model": "auto", "input": "What is Python?"}),
    "embeddings": ("/v1/embeddings", {"input": "What is Python?"}),
    "embed": ("/api/v1/embed", {"input": "What is Python?"}),
}


def shape(surface: str, body: dict) -> str:
    """The error's type in the surface's own shape, checking that shape on the way."""
    if surface == "messages":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"} and body["request_id"]
        return body["error"]["type"]
    if surface == "embed":
        assert body["request_id"] and body["error"]["message"]
        return body["error"]["type"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]["code"]


@pytest.mark.parametrize("surface", sorted(ASK))
def test_the_local_upstream_down(make_app, serve, unused_port, surface):
    base = serve(make_app(GATEWAY_API_KEYS=KEY, OLLAMA_URL=f"http://127.0.0.1:{unused_port}"))
    path, body = ASK[surface]
    r = requests.post(f"{base}{path}", json=body, headers={"x-api-key": KEY}, timeout=20)
    assert r.status_code in (502, 503) and r.headers["x-request-id"]
    kind = shape(surface, r.json())
    assert kind in {"messages": {"overloaded_error", "api_error"}}.get(surface, {
        "local_unavailable", "upstream_unreachable"}), kind


@pytest.mark.parametrize("surface", ["messages", "responses"])
def test_claude_rate_limited(make_app, serve, claude, surface):
    base = serve(make_app(GATEWAY_API_KEYS=KEY, ANTHROPIC_MAX_RETRIES=0))
    claude.queue(Script(status=429, error_type="rate_limit_error", headers={"retry-after": "7"}))
    path, body = ASK[surface]
    body = {**body, "model": "claude-sonnet"}
    r = requests.post(f"{base}{path}", json=body, headers={"x-api-key": KEY}, timeout=20)
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    assert shape(surface, r.json()) in ("overloaded_error", "upstream_rate_limited")


@pytest.mark.parametrize("surface", ["messages", "responses"])
def test_a_stream_cut_mid_answer_ends_with_the_protocols_error(make_app, serve, claude, surface):
    base = serve(make_app(GATEWAY_API_KEYS=KEY))
    claude.default = Script(reply="one two three four five", cut_after=2)
    path, body = ASK[surface]
    r = requests.post(f"{base}{path}", json={**body, "model": "claude-sonnet", "stream": True},
                      headers={"x-api-key": KEY}, timeout=20, stream=True)
    events = [line[7:] for line in r.iter_lines(decode_unicode=True) if line.startswith("event: ")]
    if surface == "messages":
        assert events[0] == "message_start" and events[-1] == "error" and "message_stop" not in events
    else:
        assert events[0] == "response.created" and events[-2:] == ["error", "response.failed"]
        assert "response.completed" not in events
    stats = requests.get(f"{base}/api/v1/stats", headers={"x-api-key": KEY}, timeout=5).json()
    assert stats["errors"] == {"stream_interrupted": 1} and json.dumps(stats)
