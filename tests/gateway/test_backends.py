"""Backends against the fakes, including streaming; and the fakes against the official SDKs, which
proves they speak the real protocols."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
import requests

from gateway.backends import BackendError
from gateway.backends.anthropic import AnthropicBackend
from gateway.backends.ollama import OllamaBackend
from gateway.backends.openai_compat import OpenAICompatBackend
from gateway.catalog import ModelSpec
from gateway.chat import ChatRequest, Message, Tool, ToolCallBuilder, Usage
from gateway.config import BackendSettings
from tests.conftest import ANTHROPIC_KEY
from tests.fakes import Script

REQ = ChatRequest(messages=(Message("user", "say something nice"),), system="be kind")
TINY = ModelSpec("tinyllama", "ollama", "tinyllama", "local-small", 2048, 0, 0)
SONNET = ModelSpec("claude-sonnet", "anthropic", "claude-sonnet-5-5", "cloud", 1_000_000, 2, 10, sampling_params=False)
COMPAT = ModelSpec("compat-cloud", "openai_compat", "compat-model", "cloud", 128_000, 0.5, 1.5)


@pytest.fixture
def backends(ollama, claude, compat):
    made = {
        "ollama": OllamaBackend(BackendSettings(ollama.url, timeout=2, connect_timeout=1)),
        "anthropic": AnthropicBackend(BackendSettings(claude.url, ANTHROPIC_KEY, timeout=2, connect_timeout=1)),
        "openai_compat": OpenAICompatBackend(BackendSettings(f"{compat.url}/v1", "sk-compat-test", timeout=2)),
    }
    yield made
    for b in made.values():
        b.close()


CASES = [("ollama", TINY, "ollama"), ("anthropic", SONNET, "claude"), ("openai_compat", COMPAT, "compat")]
SCORED = [c for c in CASES if c[0] != "anthropic"]  # the Messages API has no log-probabilities


@pytest.mark.parametrize(("name", "model", "fake"), CASES)
def test_stream_yields_text_then_final_usage(backends, request, name, model, fake):
    upstream = request.getfixturevalue(fake)
    upstream.default = Script(reply="one two three four five")
    deltas = list(backends[name].stream(model, REQ, max_tokens=100))
    assert "".join(d.text for d in deltas) == "one two three four five"
    assert len([d for d in deltas if d.text]) == 5
    final = deltas[-1]
    # fake tokenizer: one token per word; the system prompt counts as input too
    assert final.usage == Usage(input_tokens=5, output_tokens=5) and final.finish_reason == "stop"


@pytest.mark.parametrize(("name", "model", "fake"), CASES)
def test_complete_respects_max_tokens(backends, request, name, model, fake):
    request.getfixturevalue(fake).default = Script(reply="a b c d e f g h")
    result = backends[name].complete(model, REQ, max_tokens=3)
    assert result.text == "a b c " and result.usage.output_tokens == 3 and result.finish_reason == "length"


@pytest.mark.parametrize(("name", "model", "fake"), SCORED)
def test_complete_returns_token_logprobs_only_when_asked(backends, request, name, model, fake):
    upstream = request.getfixturevalue(fake)
    upstream.default = Script(reply="one two three", logprobs=(-0.25, -1.5, -0.75))
    plain = backends[name].complete(model, REQ, max_tokens=100)
    assert plain.logprobs is None and "logprobs" not in upstream.requests[-1].body
    scored = backends[name].complete(model, REQ, max_tokens=100, logprobs=True)
    assert upstream.requests[-1].body["logprobs"] is True
    assert scored.text == "one two three" and scored.logprobs == (-0.25, -1.5, -0.75)


@pytest.mark.parametrize(("name", "model", "fake"), SCORED)
@pytest.mark.parametrize("entries", [None, [], [{"token": "a"}], [{"token": "a", "logprob": "high"}],
                                     [{"token": "a", "logprob": 0.5}], ["a"]])
def test_missing_or_malformed_logprobs_leave_the_answer_unscored(backends, request, name, model, fake, entries):
    # An upstream that ignores the field (Ollama before 0.12.11) or reports nonsense: the answer stands, only
    # unscored. Free models answer in one JSON body (TINY); paid ones are read as a stream (COMPAT), where one
    # bad piece is enough.
    upstream = request.getfixturevalue(fake)
    good = [{"token": "x", "logprob": -0.1}]
    if name == "ollama":
        body = {"model": "tinyllama", "message": {"role": "assistant", "content": "fine"}, "done": True,
                "done_reason": "stop", "eval_count": 1, "logprobs": entries}
        raw, content_type = json.dumps(body).encode(), "application/json"
    else:
        def chunk(text, scored):
            return {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "compat-model",
                    "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None,
                                 "logprobs": None if scored is None else {"content": scored}}]}
        events = [chunk("fi", good), chunk("ne", entries), "[DONE]"]
        raw = b"".join(b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events)
        content_type = "text/event-stream"
    upstream.default = Script(raw_body=raw, content_type=content_type)
    out = backends[name].complete(model, REQ, max_tokens=100, logprobs=True)
    assert out.text == "fine" and out.logprobs is None


@pytest.mark.parametrize(("name", "model", "fake"), CASES)
def test_stream_cut_mid_way_is_an_error_not_a_short_answer(backends, request, name, model, fake):
    request.getfixturevalue(fake).default = Script(reply="a b c d e f", cut_after=2)
    got = []
    with pytest.raises(BackendError) as exc:
        for d in backends[name].stream(model, REQ, max_tokens=100):
            got.append(d.text)
    assert exc.value.kind == "connection"
    assert "".join(got) == "a b "


@pytest.mark.parametrize(("name", "model", "fake", "kind"),
                         [("ollama", TINY, "ollama", "server_error"), ("anthropic", SONNET, "claude", "overloaded"),
                          ("openai_compat", COMPAT, "compat", "server_error")])
def test_error_event_after_200_raises(backends, request, name, model, fake, kind):
    request.getfixturevalue(fake).default = Script(reply="a b c d", error_after=1, error_message="Overloaded")
    with pytest.raises(BackendError) as exc:
        list(backends[name].stream(model, REQ, max_tokens=100))
    assert exc.value.kind == kind


def test_ollama_health_lists_installed_and_warm(backends, ollama):
    ollama.installed, ollama.loaded = {"tinyllama", "phi"}, {"phi"}
    h = backends["ollama"].health()
    assert h.ok and h.models["phi"].warm is True and h.models["tinyllama"].warm is False
    mistral = ModelSpec("m", "ollama", "mistral", "local-large", 1, 0, 0)
    assert backends["ollama"].model_state(h, mistral).available is False


def test_ollama_health_when_down(unused_port):
    b = OllamaBackend(BackendSettings(f"http://127.0.0.1:{unused_port}", connect_timeout=0.5))
    h = b.health()
    assert not h.ok and "connection" in h.detail


def test_anthropic_connection_refused(unused_port):
    b = AnthropicBackend(BackendSettings(f"http://127.0.0.1:{unused_port}", "k", timeout=1, connect_timeout=0.5))
    with pytest.raises(BackendError) as exc:
        b.complete(SONNET, REQ, 10)
    assert exc.value.kind == "connection"


def test_anthropic_timeout(backends, claude):
    claude.default = Script(delay=3)
    with pytest.raises(BackendError) as exc:
        backends["anthropic"].complete(SONNET, REQ, 10)
    assert exc.value.kind == "timeout"


# --------------------------------------------------------------------------- fakes vs official SDKs


def test_fake_anthropic_speaks_the_sdk_protocol(claude):
    client = anthropic.Anthropic(api_key=ANTHROPIC_KEY, base_url=claude.url, max_retries=0)
    claude.default = Script(reply="hello there friend")
    msg = client.messages.create(model="claude-sonnet-5-5", max_tokens=50,
                                 messages=[{"role": "user", "content": "hi you"}])
    assert msg.content[0].text == "hello there friend" and msg.usage.output_tokens == 3
    assert msg.usage.input_tokens == 2 and msg.stop_reason == "end_turn"
    with client.messages.stream(model="claude-sonnet-5-5", max_tokens=50,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "hello there friend" and final.usage.output_tokens == 3
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="claude-nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    claude.queue(Script(status=529, error_type="overloaded_error"))
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model="claude-sonnet-5-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    bad = anthropic.Anthropic(api_key="wrong", base_url=claude.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-sonnet-5-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])


HAIKU_BODY = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}


def test_fake_anthropic_accepts_legacy_x_api_key(claude):
    r = requests.post(f"{claude.url}/v1/messages", timeout=5,
                      headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
                      json=HAIKU_BODY)
    assert r.status_code == 200 and r.json()["type"] == "message"
    r = requests.post(f"{claude.url}/v1/messages", timeout=5, headers={"x-api-key": ANTHROPIC_KEY},
                      json=HAIKU_BODY)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_fake_openai_speaks_the_sdk_protocol(compat):
    client = openai.OpenAI(api_key="sk-compat-test", base_url=f"{compat.url}/v1", max_retries=0)
    compat.default = Script(reply="hi from compat")
    out = client.chat.completions.create(model="compat-model", messages=[{"role": "user", "content": "hello"}])
    assert out.choices[0].message.content == "hi from compat" and out.usage.completion_tokens == 3
    chunks = list(client.chat.completions.create(model="compat-model", messages=[{"role": "user", "content": "x"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hi from compat"
    assert chunks[-1].usage.total_tokens == 4
    assert [m.id for m in client.models.list()] == ["compat-model", "compat-reasoning"]
    # like OpenAI's reasoning models, compat-reasoning takes its limit only as max_completion_tokens
    with pytest.raises(openai.BadRequestError, match="max_completion_tokens"):
        client.chat.completions.create(model="compat-reasoning", max_tokens=5,
                                       messages=[{"role": "user", "content": "x"}])
    out = client.chat.completions.create(model="compat-reasoning", max_completion_tokens=2,
                                         messages=[{"role": "user", "content": "x"}])
    assert out.choices[0].message.content == "hi from " and out.choices[0].finish_reason == "length"
    compat.default = Script(reply="hi from compat", logprobs=(-0.5,))
    scored = client.chat.completions.create(model="compat-model", messages=[{"role": "user", "content": "x"}],
                                            logprobs=True)
    assert [(t.token, t.logprob) for t in scored.choices[0].logprobs.content] == [("hi ", -0.5), ("from ", -0.5),
                                                                                   ("compat", -0.5)]
    chunks = list(client.chat.completions.create(model="compat-model", messages=[{"role": "user", "content": "x"}],
                                                 stream=True, logprobs=True))
    assert [t.logprob for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content] \
        == [-0.5, -0.5, -0.5]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


def test_fake_ollama_speaks_the_official_client_protocol(ollama):
    """The fake Ollama checked by Ollama's own Python client, as the Anthropic and OpenAI fakes are by theirs."""
    import ollama as ollama_sdk

    client = ollama_sdk.Client(host=ollama.url)
    ollama.default = Script(reply="hello there friend")
    out = client.chat(model="tinyllama", messages=[{"role": "user", "content": "hi you"}])
    assert out.message.content == "hello there friend" and out.done and out.done_reason == "stop"
    assert (out.prompt_eval_count, out.eval_count) == (2, 3) and out.total_duration > 0
    pieces = list(client.chat(model="tinyllama", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(p.message.content for p in pieces) == "hello there friend"
    assert [p.done for p in pieces] == [False, False, False, True] and pieces[-1].eval_count == 3
    limited = client.chat(model="tinyllama", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 2})
    assert limited.message.content == "hello there " and limited.done_reason == "length"
    ollama.default = Script(reply="a b", logprobs=(-0.1, -2.0))
    scored = client.chat(model="tinyllama", messages=[{"role": "user", "content": "hi"}], logprobs=True)
    assert [t.logprob for t in scored.logprobs] == [-0.1, -2.0]
    assert {m.model for m in client.list().models} == {"tinyllama:latest", "phi:latest", "mistral:latest"}
    assert [m.model for m in client.ps().models] == ["tinyllama:latest"]
    progress = [p.status for p in client.pull("llama3.2", stream=True)]
    assert progress[-1] == "success" and "llama3.2" in ollama.installed
    with pytest.raises(ollama_sdk.ResponseError) as missing:
        client.chat(model="llama9", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 404 and "not found" in missing.value.error
    ollama.queue(Script(status=500, error_message="model runner crashed"))
    with pytest.raises(ollama_sdk.ResponseError) as crashed:
        client.chat(model="tinyllama", messages=[{"role": "user", "content": "hi"}])
    assert crashed.value.status_code == 500 and crashed.value.error == "model runner crashed"
    ollama.default = Script(reply="a b c d", error_after=2, error_message="out of memory")
    with pytest.raises(ollama_sdk.ResponseError, match="out of memory"):
        list(client.chat(model="tinyllama", messages=[{"role": "user", "content": "hi"}], stream=True))


def test_fake_ollama_streams_ndjson_by_default(ollama):
    r = requests.post(f"{ollama.url}/api/chat", json={"model": "tinyllama", "messages": [
        {"role": "user", "content": "hi"}]}, stream=True, timeout=5)
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [requests.models.complexjson.loads(x) for x in r.iter_lines() if x]
    assert all(not x["done"] for x in lines[:-1]) and lines[-1]["done"] is True
    assert lines[-1]["eval_count"] == len(lines) - 1 and "prompt_eval_count" not in lines[0]
    assert not any("logprobs" in x for x in lines)  # only when asked
    ollama.default = Script(reply="a b", logprobs=(-0.1, -2.0))
    r = requests.post(f"{ollama.url}/api/chat", json={"model": "tinyllama", "logprobs": True, "messages": [
        {"role": "user", "content": "hi"}]}, stream=True, timeout=5)
    lines = [requests.models.complexjson.loads(x) for x in r.iter_lines() if x]
    assert [x.get("logprobs") for x in lines] == [[{"token": "a ", "logprob": -0.1, "bytes": [97, 32]}],
                                                  [{"token": "b", "logprob": -2.0, "bytes": [98]}], None]
    r = requests.post(f"{ollama.url}/api/chat", json={"model": "llama9", "messages": []}, timeout=5)
    assert r.status_code == 404 and "not found" in r.json()["error"]


# ------------------------------------------------------------------ tool calls, streamed and not, per backend
TOOL_REQ = ChatRequest(messages=(Message("user", "weather in Paris and Oslo?"),),
                       tools=(Tool("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}}),))
QWEN = ModelSpec("qwen3-small", "ollama", "qwen3:0.6b", "local-small", 32768, 0, 0)
FREE_COMPAT = ModelSpec("vllm", "openai_compat", "compat-model", "local-large", 128_000, 0, 0)
TWO = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather", "arguments": {"city": "Oslo"}}]


@pytest.mark.parametrize(("name", "model", "fake"), [("ollama", QWEN, "ollama"), ("anthropic", SONNET, "claude"),
                                                     ("openai_compat", COMPAT, "compat")])
@pytest.mark.parametrize("ids", [True, False], ids=["ids", "no_ids"])
def test_streamed_tool_calls_join_into_whole_calls(backends, request, name, model, fake, ids):
    """Ollama: each call whole in its own NDJSON line (without ids before 0.12.10: made here); Anthropic:
    input_json_delta fragments per block; OpenAI: indexed deltas of parallel calls, interleaved."""
    upstream = request.getfixturevalue(fake)
    if name == "ollama":
        upstream.installed.add("qwen3:0.6b")
    upstream.default = Script(reply="Checking.", tool_calls=TWO, no_call_ids=not ids)
    deltas = list(backends[name].stream(model, TOOL_REQ, max_tokens=100))
    builder = ToolCallBuilder()
    for d in deltas:
        for piece in d.tool_calls or ():
            builder.add(piece)
    calls = builder.calls(lambda: "unused")
    assert [(c.name, c.parsed["city"]) for c in calls] == [("get_weather", "Paris"), ("get_weather", "Oslo")]
    assert all(c.id.startswith(("call_", "toolu_")) for c in calls) and calls[0].id != calls[1].id
    assert "".join(d.text for d in deltas) == "Checking." and deltas[-1].finish_reason == "tool_calls"
    if name == "anthropic":  # fragments: no piece is the whole arguments text
        assert max(len(p.arguments) for d in deltas for p in d.tool_calls or ()) < len('{"city": "Paris"}')


def test_a_free_openai_compatible_model_answers_tool_calls_in_one_body(backends, compat):
    compat.default = Script(reply="", tool_calls=TWO)
    done = backends["openai_compat"].complete(FREE_COMPAT, TOOL_REQ, max_tokens=100)
    assert compat.calls("/v1/chat/completions")[-1].body["stream"] is False
    assert [c.parsed for c in done.tool_calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert done.text == "" and done.finish_reason == "tool_calls"


def test_ollama_refusing_tools_for_a_model_is_a_rejected_request(backends, ollama):
    with pytest.raises(BackendError) as err:
        backends["ollama"].complete(TINY, TOOL_REQ, max_tokens=10)
    assert err.value.kind == "bad_request" and "does not support tools" in err.value.upstream_message
