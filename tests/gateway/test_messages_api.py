"""The Anthropic Messages surface (/v1/messages), driven by the official anthropic SDK over real HTTP: create,
stream, a tool-use round trip, count_tokens, errors in Anthropic's shape; and a replay of a coding agent's
session in the shapes Claude Code sends (betas, thinking, twenty tools, tool results, ?beta=true)."""

from __future__ import annotations

import json

import anthropic
import pytest
import requests

from tests.fakes import Script

KEY = "gateway-test-key"
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def base(make_app, serve, ollama):
    ollama.installed |= {"qwen3:0.6b", "qwen3-vl:2b"}
    return serve(make_app(GATEWAY_API_KEYS=KEY, MODEL_PRESET="tools"))


@pytest.fixture
def sdk(base) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0, timeout=20)


def test_a_haiku_class_call_is_routed_and_can_stay_local(sdk, ollama, claude):
    ollama.default = Script(reply="Fix typo in README")
    raw = sdk.messages.with_raw_response.create(model="claude-haiku-4-5-20251001", max_tokens=50,
                                                 messages=[{"role": "user", "content": "Title for: fix a typo"}])
    msg = raw.parse()
    assert msg.model == "qwen3-small" and msg.content[0].text == "Fix typo in README"
    assert msg.stop_reason == "end_turn" and msg.usage.input_tokens > 0 and msg.usage.output_tokens == 4
    assert raw.headers["x-gateway-backend"] == "ollama" and claude.calls("/v1/messages") == []


def test_a_sonnet_class_call_goes_to_claude_with_its_headers_and_fields(base, claude, ollama):
    claude.default = Script(reply="Done.")
    client = anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0,
                                 default_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-5-5", max_tokens=100, system=[{"type": "text", "text": "You are terse."}],
        messages=[{"role": "user", "content": "Refactor this."}],
        thinking={"type": "enabled", "budget_tokens": 1024}, metadata={"user_id": "u1"})
    assert raw.parse().model == "claude-sonnet" and "x-gateway-dropped" not in raw.headers
    sent = claude.calls("/v1/messages")[0]
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent.body["thinking"] == {"type": "enabled", "budget_tokens": 1024} and sent.body["metadata"] == {
        "user_id": "u1"}
    assert sent.body["system"] == "You are terse." and ollama.calls("/api/chat") == []


def test_claude_only_fields_are_dropped_for_a_local_model_and_the_response_says_so(sdk, ollama):
    ollama.default = Script(reply="ok")
    raw = sdk.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}],
        thinking={"type": "enabled", "budget_tokens": 1024}, metadata={"user_id": "u1"})
    assert raw.headers["x-gateway-dropped"] == "metadata, thinking, cache_control"
    sent = ollama.calls("/api/chat")[0].body
    assert "thinking" not in sent and sent["messages"] == [{"role": "user", "content": "hi"}]


def test_stream_events_in_anthropics_order(sdk, ollama):
    ollama.default = Script(reply="one two three")
    with sdk.messages.stream(model="claude-haiku-4-5", max_tokens=50,
                             messages=[{"role": "user", "content": "count"}]) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert kinds[:2] == ["message_start", "content_block_start"] or kinds[:3] == [
        "message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert final.content[0].text == "one two three" and final.usage.output_tokens == 3


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trip(sdk, ollama, stream):
    ollama.default = Script(reply="", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with sdk.messages.stream(model="claude-haiku-4-5", max_tokens=100, tools=[WEATHER], messages=ask) as s:
            first = s.get_final_message()
    else:
        first = sdk.messages.create(model="claude-haiku-4-5", max_tokens=100, tools=[WEATHER], messages=ask)
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    ollama.default = Script(reply="Sunny in Paris.")
    second = sdk.messages.create(model="claude-haiku-4-5", max_tokens=100, tools=[WEATHER], messages=[
        *ask, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sun, 21 C"},
                                     {"type": "text", "text": "Short answer please."}]}])
    assert second.content[0].text == "Sunny in Paris." and second.stop_reason == "end_turn"
    sent = ollama.calls("/api/chat")[-1].body["messages"]
    assert sent[-2] == {"role": "tool", "content": "sun, 21 C", "tool_name": "get_weather", "tool_call_id": use.id}
    assert sent[-1] == {"role": "user", "content": "Short answer please."}


def test_count_tokens_asks_anthropic_for_claude_and_estimates_otherwise(base, claude):
    client = anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0)
    ask = [{"role": "user", "content": "How many tokens is this sentence exactly?"}]
    claude_count = client.messages.with_raw_response.count_tokens(model="claude-sonnet-5-5", messages=ask)
    assert claude_count.parse().input_tokens == 7 and claude_count.headers["x-gateway-count"] == "anthropic"
    assert claude.calls("/v1/messages/count_tokens")[0].body["model"] == "claude-sonnet-5-5"
    local = client.messages.with_raw_response.count_tokens(model="claude-haiku-4-5", messages=ask)
    assert local.headers["x-gateway-count"] == "estimate" and 5 <= local.parse().input_tokens <= 20


def test_query_string_and_both_key_headers_are_accepted(base, ollama):
    ollama.default = Script(reply="hi")
    body = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hello"}]}
    for headers in ({"x-api-key": KEY}, {"Authorization": f"Bearer {KEY}"}):
        r = requests.post(f"{base}/v1/messages?beta=true", json=body, headers={**headers,
                                                                              "anthropic-version": "2023-06-01"})
        assert r.status_code == 200 and r.json()["type"] == "message"


@pytest.mark.parametrize(("body", "status", "kind"), [
    ({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}, 400, "invalid_request_error"),
    ({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, 422,
     "invalid_request_error"),
    ({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_nowhere", "content": "x"}]}]}, 422, "invalid_request_error"),
])
def test_bad_input_gets_anthropics_error_shape(base, body, status, kind):
    r = requests.post(f"{base}/v1/messages", json=body, headers={"x-api-key": KEY})
    assert r.status_code == status
    data = r.json()
    assert data["type"] == "error" and data["error"]["type"] == kind and data["error"]["message"]
    assert data["request_id"] == r.headers["x-request-id"]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=base, api_key="wrong", max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}])


def test_a_mid_stream_failure_ends_with_an_error_event(sdk, ollama):
    ollama.default = Script(reply="one two three four", cut_after=2)
    with pytest.raises(anthropic.APIStatusError), sdk.messages.stream(
            model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "count"}]) as s:
        for _ in s:
            pass


# ------------------------------------------------------------------ a coding agent's session, replayed
TOOLS = [{"name": n, "description": f"The {n} tool of a coding agent.", "input_schema": {
    "type": "object", "properties": {"path": {"type": "string"}, "command": {"type": "string"}}}}
    for n in ("Read", "Write", "Edit", "MultiEdit", "Bash", "Glob", "Grep", "LS", "Task", "TodoWrite", "WebFetch",
              "WebSearch", "NotebookRead", "NotebookEdit", "ExitPlanMode", "BashOutput", "KillShell", "SlashCommand",
              "ListMcpResources", "ReadMcpResource")]
BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
SYSTEM = [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
          {"type": "text", "text": "Use the tools to help the user.", "cache_control": {"type": "ephemeral"}}]


def session() -> list[tuple[str, dict]]:
    """The calls of a short coding-agent session, in the shapes Claude Code sends: the main model (sonnet-class,
    streamed, thinking, twenty tools, tool results) and the small fast model (haiku-class, non-streamed:
    titles, topic checks, summaries, bash command prefixes)."""
    main = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 32000, "stream": True, "system": SYSTEM,
            "tools": TOOLS, "thinking": {"type": "enabled", "budget_tokens": 4000}, "metadata": {"user_id": "u"}}
    small = {"model": "claude-haiku-4-5-20251001", "max_tokens": 512, "system": [SYSTEM[0]]}
    ask = {"role": "user", "content": [{"type": "text", "text": "Fix the failing test in tests/test_app.py"}]}
    thought = {"type": "thinking", "thinking": "I should read the test.", "signature": "sig=="}
    read = {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"path": "tests/test_app.py"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_01", "content": "def test_x(): assert 1 == 2"}
    return [
        ("small", {**small, "messages": [{"role": "user", "content": "Is this a new topic? Fix the failing test"}]}),
        ("small", {**small, "messages": [{"role": "user", "content": "Write a 5-word title: Fix the failing test"}]}),
        ("main", {**main, "messages": [ask]}),
        ("small", {**small, "messages": [{"role": "user", "content": "Command prefix of: pytest -q tests"}]}),
        ("main", {**main, "messages": [ask, {"role": "assistant", "content": [thought, read]},
                                       {"role": "user", "content": [result]}]}),
        ("small", {**small, "messages": [{"role": "user", "content": "Summarize: the test asserted 1 == 2"}]}),
    ]


def test_a_coding_agent_session_replayed_keeps_its_quick_calls_local(base, ollama, claude):
    claude.default = Script(reply="", tool_calls=[{"name": "Read", "arguments": {"path": "tests/test_app.py"}}])
    ollama.default = Script(reply="Fix failing test")
    answered = []
    for kind, body in session():
        r = requests.post(f"{base}/v1/messages?beta=true", json=body, stream=body.get("stream", False), headers={
            "x-api-key": KEY, "anthropic-version": "2023-06-01", "anthropic-beta": BETAS, "x-app": "cli",
            "User-Agent": "claude-cli/2.0.36 (external, cli)"})
        assert r.status_code == 200, r.text
        if body.get("stream"):
            events = [line[7:] for line in r.iter_lines(decode_unicode=True) if line.startswith("event: ")]
            assert events[0] == "message_start" and events[-1] == "message_stop"
        answered.append((kind, r.headers["x-gateway-backend"]))
    local = sum(b == "ollama" for _, b in answered) / len(answered)
    assert answered == [("small", "ollama"), ("small", "ollama"), ("main", "anthropic"), ("small", "ollama"),
                        ("main", "anthropic"), ("small", "ollama")] and local == 4 / 6
    # what Claude got: its betas, the thinking block back before its tool_use, the results first
    last = claude.calls("/v1/messages")[-1]
    assert last.headers["anthropic-beta"] == BETAS and last.body["thinking"]["type"] == "enabled"
    assert [b["type"] for b in last.body["messages"][1]["content"]] == ["thinking", "tool_use"]
    assert last.body["messages"][2]["content"][0]["tool_use_id"] == "toolu_01"
    # the client's own cache mark (on its system prompt) reaches Claude as it was, and the gateway adds none
    assert len(last.body["tools"]) == 20 and json.dumps(last.body).count("cache_control") == 1
    assert last.body["system"][-1]["cache_control"] == {"type": "ephemeral"}


def test_an_overloaded_claude_is_answered_in_anthropics_shape_and_counted_by_surface(make_app, serve, claude):
    from tests.gateway.test_observability import sample
    base = serve(make_app(GATEWAY_API_KEYS=KEY, ANTHROPIC_MAX_RETRIES=0))
    claude.queue(*[Script(status=529, error_type="overloaded_error")] * 2)
    client = anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as err:  # a gateway model by name: that model only
        client.messages.create(model="claude-sonnet", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 503 and err.value.body["error"]["type"] == "overloaded_error"
    metrics = requests.get(f"{base}/metrics", timeout=5).text
    assert sample(metrics, "api_gateway_requests_total", surface="messages", status="503") >= 1


def test_the_main_model_of_a_coding_agent_is_never_handed_to_a_local_model(sdk, claude, ollama):
    claude.queue(*[Script(status=529, error_type="overloaded_error")] * 3)
    with pytest.raises(anthropic.APIStatusError) as err:
        sdk.messages.create(model="claude-opus-4-1", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 503 and ollama.calls("/api/chat") == []


def test_a_model_name_with_a_newline_is_echoed_safely(base, claude):
    """Found by fuzzing: the requested name goes back in a header, where a newline was a 500."""
    claude.default = Script(reply="ok")
    r = requests.post(f"{base}/v1/messages", headers={"x-api-key": KEY}, json={
        "model": "claude-x\nSet-Cookie: a=b", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["x-gateway-requested-model"] == "claude-x?Set-Cookie: a=b"
    assert "set-cookie" not in r.headers
