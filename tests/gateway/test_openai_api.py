"""The OpenAI-compatible surface, driven by the official openai SDK over real HTTP."""

from __future__ import annotations

import openai
import pytest
import requests

from tests.fakes import Script

KEY = "gateway-test-key"
DESIGN = ("Design a distributed system for real-time chat that scales to millions of users, with fault "
          "tolerance and message ordering.")


@pytest.fixture
def base_url(make_app, serve, compat, compat_catalog):
    app = make_app(GATEWAY_API_KEYS=KEY, MODELS_CONFIG=compat_catalog, OPENAI_COMPAT_URL=f"{compat.url}/v1",
                   OPENAI_COMPAT_API_KEY="sk-compat-test")
    return serve(app) + "/v1"


@pytest.fixture
def sdk(base_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=20)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_auto_simple_prompt_answers_locally_with_real_usage(sdk, ollama):
    ollama.default = Script(reply="A programming language.")
    raw = sdk.chat.completions.with_raw_response.create(model="auto", messages=user("What is Python?"))
    out = raw.parse()
    assert out.object == "chat.completion" and out.model == "tinyllama"
    assert out.choices[0].message.content == "A programming language." and out.choices[0].finish_reason == "stop"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (3, 3, 6)
    h = raw.headers
    assert (h["x-gateway-model"], h["x-gateway-backend"], h["x-gateway-tier"]) == ("tinyllama", "ollama", "local-small")
    assert float(h["x-gateway-complexity"]) < 0.3 and h["x-gateway-reason"] and h["x-gateway-cost"] == "0.00000000"
    assert out.id.startswith("chatcmpl-") and h["x-request-id"] in out.id


def test_auto_complex_prompt_answers_from_claude(sdk, claude):
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "system", "content": "Be brief."}, *user(DESIGN)], max_tokens=200)
    out = raw.parse()
    assert out.model == "claude-sonnet" and raw.headers["x-gateway-backend"] == "anthropic"
    assert float(raw.headers["x-gateway-cost"]) == pytest.approx(
        (out.usage.prompt_tokens * 2 + out.usage.completion_tokens * 10) / 1e6)
    sent = claude.calls("/v1/messages")[0].body
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 200
    assert [m["role"] for m in sent["messages"]] == ["user"]


@pytest.mark.parametrize(("model", "answered"), [("phi", "phi"), ("local-medium", "phi"), ("cloud", "claude-sonnet"),
                                                 ("compat-cloud", "compat-cloud")])
def test_explicit_model_or_tier(sdk, model, answered):
    assert sdk.chat.completions.create(model=model, messages=user("hello")).model == answered


def test_request_fields_reach_the_backend(sdk, ollama):
    sdk.chat.completions.create(model="tinyllama", messages=[
        {"role": "developer", "content": "sys"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        temperature=0.4, max_completion_tokens=33, stop=["\n\n"], user="alice")
    body = ollama.calls("/api/chat")[0].body
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    assert body["options"] == {"num_predict": 33, "temperature": 0.4, "stop": ["\n\n"]}


@pytest.mark.parametrize(("model", "fake"), [("tinyllama", "ollama"), ("claude-sonnet", "claude"),
                                             ("compat-cloud", "compat")])
def test_streams_from_every_backend_with_usage(sdk, request, model, fake):
    request.getfixturevalue(fake).default = Script(reply="one two three four")
    chunks = list(sdk.chat.completions.create(model=model, messages=user("count for me"), stream=True,
                                              stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.model == model for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == 3


def test_stream_without_include_usage_has_no_usage_chunk(base_url):
    r = requests.post(f"{base_url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, stream=True,
                      json={"model": "tinyllama", "messages": user("hi"), "stream": True}, timeout=10)
    assert r.headers["content-type"].startswith("text/event-stream") and r.headers["x-gateway-model"] == "tinyllama"
    events = [line for line in r.iter_lines(decode_unicode=True) if line.startswith("data:")]
    assert events[-1] == "data: [DONE]" and '"usage"' not in "".join(events)


def test_models_list_and_retrieve(sdk):
    ids = [m.id for m in sdk.models.list()]
    assert ids[:5] == ["auto", "local-small", "local-medium", "local-large", "cloud"]
    assert {"tinyllama", "phi", "mistral", "claude-sonnet", "claude-haiku", "compat-cloud"} <= set(ids)
    m = sdk.models.retrieve("claude-sonnet")
    assert (m.id, m.object, m.owned_by) == ("claude-sonnet", "model", "anthropic") and m.created > 0
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-17")


def test_sdk_raises_typed_errors(base_url, sdk, make_app, serve, unused_port):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).chat.completions.create(
            model="auto", messages=user("hi"))
    with pytest.raises(openai.NotFoundError) as exc:
        sdk.chat.completions.create(model="gpt-17", messages=user("hi"))
    assert exc.value.body["code"] == "model_not_found" and exc.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="auto", messages=[])
    assert exc.value.body["param"] == "messages" and exc.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.UnprocessableEntityError) as exc:
        sdk.chat.completions.create(model="auto", messages=user("hi"), temperature=5)
    assert exc.value.body["param"] == "temperature"
    down = serve(make_app(OLLAMA_URL=f"http://127.0.0.1:{unused_port}", ANTHROPIC_API_KEY="")) + "/v1"
    with pytest.raises(openai.APIStatusError) as exc:
        openai.OpenAI(base_url=down, api_key="x", max_retries=0).chat.completions.create(
            model="auto", messages=user("hi"))
    assert exc.value.status_code == 502 and exc.value.body["code"] == "upstream_unreachable"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "auto"}, 400, "messages"),
        ({"model": "auto", "messages": "hi"}, 400, "messages"),
        ({"model": 5, "messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
        ({"model": "auto", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
         "messages[0].content[0].image_url"),
        ({"model": "auto", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, 422,
         "messages[0].content[0]"),
        ({"model": "auto", "messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].tool_call_id"),
        ({"model": "auto", "messages": [{"role": "robot", "content": "x"}]}, 422, "messages[0].role"),
        ({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "n": 3}, 422, "n"),
        ({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 422, "max_tokens"),
        ({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stop": ["a"] * 5}, 422, "stop"),
        ({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, 400, "stream"),
    ],
)
def test_bad_input_in_openai_error_shape(base_url, ollama, body, status, param):
    r = requests.post(f"{base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=10)
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param and err["message"]
    assert r.headers["X-Request-ID"]
    assert ollama.calls("/api/chat") == []


def test_v1_errors_without_auth_and_for_unknown_routes(base_url):
    r = requests.get(f"{base_url}/models", timeout=5)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = requests.get(f"{base_url}/assistants", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = requests.get(f"{base_url}/embeddings", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert r.status_code == 405 and "POST" in r.headers["Allow"] and r.json()["error"]["code"] == "method_not_allowed"
