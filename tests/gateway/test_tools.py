"""Tools, JSON and images on the request path: capability-aware routing (the catalog, and what Ollama reports
about a pulled model), the check of a structured answer (escalation, repair), the cache, the budget's bound,
bad input, and what the decision log and metrics record. The protocol translations are in
test_tools_matrix.py."""

from __future__ import annotations

import json

import pytest

from gateway.chat import ChatRequest, Image, Message, Tool
from tests.fakes import Script
from tests.gateway.test_observability import sample

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
CALL = [{"name": "get_weather", "arguments": {"city": "Paris"}}]


def ask(text: str = "Weather in Paris?") -> list[dict]:
    return [{"role": "user", "content": text}]


def chat(client, **body):
    r = client.post("/api/v1/chat", json={"messages": ask(), **body})
    return r, r.get_json()


@pytest.fixture
def tools_app(make_app, ollama):
    """The tools preset at deployment tier 2: qwen3 0.6B (tools) and Qwen3-VL 2B (tools, images) local."""
    ollama.installed |= {"qwen3:0.6b", "qwen3-vl:2b"}

    def _make(**env):
        return make_app(MODEL_PRESET="tools", **env).test_client()
    return _make


# ------------------------------------------------------------------ capability-aware routing
def test_the_classic_models_cannot_call_tools_so_a_tool_request_goes_to_claude_and_says_why(client, ollama, claude):
    claude.default = Script(reply="", tool_calls=CALL)
    r, body = chat(client, tools=[WEATHER])
    assert r.status_code == 200 and body["model"] == "claude-sonnet" and body["finish_reason"] == "tool_calls"
    assert json.loads(body["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    reason = body["routing"]["reason"]
    assert "needs tools: tinyllama cannot call tools" in reason and "needs tools: phi cannot call tools" in reason
    assert ollama.calls("/api/chat") == []  # never tried locally: not a fallback, a decision
    # a plain prompt still goes local
    ollama.default = Script(reply="Sunny.")
    assert chat(client)[1]["model"] == "tinyllama"


def test_dry_run_and_complexity_show_the_exclusion(client):
    _, dry = chat(client, tools=[WEATHER], dry_run=True)
    assert dry["model"] == "claude-sonnet" and "tinyllama cannot call tools" in dry["routing"]["reason"]
    r = client.post("/api/v1/complexity", json={"messages": ask(), "tools": [WEATHER]})
    assert r.get_json()["recommended"]["model"] == "claude-sonnet" and "needs tools" in r.get_json()["reason"]


def test_no_capable_model_is_a_400_that_says_which_capability_and_how_to_enable_one(make_app, ollama):
    client = make_app(ANTHROPIC_API_KEY="").test_client()
    r, body = chat(client, tools=[WEATHER])
    assert r.status_code == 400 and body["error"]["type"] == "capability_unavailable"
    assert body["error"]["param"] == "tools"
    assert "call tools" in body["error"]["message"] and "MODEL_PRESET=tools" in body["error"]["message"]
    r, body = chat(client, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
    assert r.status_code == 400 and body["error"]["param"] == "messages" and "read images" in body["error"]["message"]
    assert ollama.calls("/api/chat") == []


def test_a_named_model_or_tier_that_lacks_the_capability_is_refused_not_stripped(client, ollama):
    for target in ("tinyllama", "local-small"):
        r, body = chat(client, model=target, tools=[WEATHER])
        assert r.status_code == 400 and body["error"]["type"] == "capability_unavailable"
        assert "tinyllama cannot call tools" in body["error"]["message"] and body["error"]["param"] == "tools"
    assert ollama.calls("/api/chat") == []


def test_what_ollama_reports_about_a_pulled_model_wins_over_the_catalog(make_app, ollama):
    """/api/show says phi calls tools (a newer build): the request stays local; it says mistral cannot: out."""
    ollama.capabilities["phi"] = ["completion", "tools"]
    client = make_app().test_client()
    ollama.default = Script(reply="", tool_calls=CALL)
    _r, body = chat(client, tools=[WEATHER])
    assert body["model"] == "phi" and body["tool_calls"]
    assert [c.body["model"] for c in ollama.calls("/api/show")] == ["tinyllama", "phi", "mistral"]
    shown = len(ollama.calls("/api/show"))
    chat(client, tools=[WEATHER])
    assert len(ollama.calls("/api/show")) == shown  # asked once per model version
    # recent Ollama lists capabilities on /api/tags: no /api/show at all
    ollama.reset()
    ollama.installed, ollama.caps_in_tags = {"tinyllama", "phi"}, True
    ollama.capabilities["tinyllama"] = ["completion", "tools"]
    ollama.default = Script(reply="", tool_calls=CALL)
    assert chat(make_app().test_client(), tools=[WEATHER])[1]["model"] == "tinyllama"
    assert ollama.calls("/api/show") == []


def test_plain_chat_never_asks_ollama_what_its_models_can_do(client, ollama):
    ollama.default = Script(reply="Hi.")
    chat(client, messages=ask("Hello"))
    assert ollama.calls("/api/show") == [] and ollama.calls("/api/tags") == []


def test_an_image_url_is_not_sent_to_ollama_but_to_a_backend_that_fetches_it(tools_app, ollama, claude):
    client = tools_app()
    claude.default = Script(reply="A cat.")
    _, body = chat(client, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://x.test/c.png"}}]}])
    assert body["model"] == "claude-sonnet" and "takes images as data: URLs only" in body["routing"]["reason"]
    sent = claude.calls("/v1/messages")[0].body["messages"][0]["content"]
    assert sent[0] == {"type": "image", "source": {"type": "url", "url": "https://x.test/c.png"}}
    # as a data: URL the local vision model reads it
    ollama.default = Script(reply="A dot.")
    _r, body = chat(client, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
    assert body["model"] == "qwen3-vl-small" and ollama.calls("/api/chat")[-1].body["messages"][0]["images"] == [PNG]


# ------------------------------------------------------------------ local first, checked
def test_a_local_call_that_fails_the_schema_escalates_to_the_next_capable_local_model(tools_app, ollama, claude):
    client = tools_app()
    ollama.queue(Script(reply="", tool_calls=[{"name": "get_weather", "arguments": {"town": "Paris"}}]),
                 Script(reply="", tool_calls=CALL))
    r, body = chat(client, tools=[WEATHER])
    assert r.status_code == 200 and body["model"] == "qwen3-vl-small" and body["tool_calls"]
    first = body["routing"]["attempts"][0]
    assert (first["model"], first["outcome"], first["error_type"]) == ("qwen3-small", "rejected", "invalid_answer")
    assert "get_weather" in first["detail"] and "required failed" in first["detail"]
    assert claude.calls("/v1/messages") == []  # PAID_FALLBACK=refuse: the check does not open the way to paid


def test_an_unoffered_tool_and_text_where_a_call_is_required_are_rejected(tools_app, ollama):
    client = tools_app()
    ollama.queue(Script(reply="", tool_calls=[{"name": "rm_rf", "arguments": {}}]), Script(reply="Sunny, I think."))
    r, body = chat(client, model="local-small", tools=[WEATHER], tool_choice="required")
    assert r.status_code == 502 and body["error"]["type"] == "invalid_answer"
    details = [a["detail"] for a in body["error"]["attempts"]]
    assert "'rm_rf', a tool that was not offered" in details[0]
    assert "tool_choice asks for a tool and the model called none" in details[1]


def test_a_call_written_as_json_text_is_repaired_into_a_call(tools_app, ollama):
    client = tools_app()
    ollama.default = Script(reply='```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```')
    _r, body = chat(client, tools=[WEATHER])
    assert body["model"] == "qwen3-small" and body["response"] == "" and body["finish_reason"] == "tool_calls"
    call = body["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert call["id"].startswith("call_")
    # text that merely mentions JSON stays text
    ollama.default = Script(reply='Use {"city": "Paris"} next time.')
    assert chat(client, tools=[WEATHER])[1]["response"] == 'Use {"city": "Paris"} next time.'


def test_json_answers_are_checked_and_a_fenced_one_unwrapped(tools_app, ollama):
    client = tools_app()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "N", "schema": schema}}
    ollama.default = Script(reply='```json\n{"n": 3}\n```')
    assert chat(client, response_format=fmt)[1]["response"] == '{"n": 3}'
    ollama.queue(Script(reply='{"n": "three"}'), Script(reply='{"n": 3}'))
    _r, body = chat(client, response_format=fmt)
    assert body["response"] == '{"n": 3}' and "the answer do not match the schema at n" in \
        body["routing"]["attempts"][0]["detail"]
    assert ollama.calls("/api/chat")[-1].body["format"] == schema


def test_parallel_tool_calls_false_keeps_the_first_call_where_the_upstream_cannot_be_told(tools_app, ollama):
    ollama.default = Script(reply="", tool_calls=[CALL[0], {"name": "get_weather", "arguments": {"city": "Oslo"}}])
    _r, body = chat(tools_app(), tools=[WEATHER], parallel_tool_calls=False)
    assert [json.loads(c["function"]["arguments"])["city"] for c in body["tool_calls"]] == ["Paris"]


def test_ids_are_made_for_an_ollama_without_them_and_the_result_goes_back_by_name(tools_app, ollama):
    client = tools_app()
    ollama.default = Script(reply="", tool_calls=CALL, no_call_ids=True)
    call = chat(client, tools=[WEATHER])[1]["tool_calls"][0]
    assert call["id"].startswith("call_") and len(call["id"]) == 13
    ollama.default = Script(reply="Sunny in Paris.")
    _r, body = chat(client, tools=[WEATHER], messages=[
        *ask(), {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sun"}])
    assert body["response"] == "Sunny in Paris."
    result = ollama.calls("/api/chat")[-1].body["messages"][-1]
    assert result == {"role": "tool", "content": "sun", "tool_name": "get_weather", "tool_call_id": call["id"]}


def test_claude_without_native_schemas_answers_through_a_forced_tool(make_app, claude, tmp_path):
    import yaml

    from tests.conftest import ROOT
    raw = yaml.safe_load((ROOT / "configs" / "models.yaml").read_text())
    for m in raw["models"]:
        m.pop("structured_output", None)
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw))
    client = make_app(MODELS_CONFIG=str(path)).test_client()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    claude.default = Script(reply='{"n": 7}')
    for stream in (False, True):
        r = client.post("/api/v1/chat", json={
            "messages": ask("Seven as JSON"), "model": "claude-haiku", "stream": stream,
            "response_format": {"type": "json_schema", "json_schema": {"name": "N", "schema": schema}}})
        text = r.get_json()["response"] if not stream else "".join(
            json.loads(line[6:])["text"] for line in r.get_data(as_text=True).splitlines()
            if line.startswith("data: ") and '"text"' in line)
        assert json.loads(text) == {"n": 7}
    sent = claude.calls("/v1/messages")[-1].body
    assert sent["tool_choice"] == {"type": "tool", "name": "N"} and sent["tools"][0]["input_schema"] == schema
    assert "output_config" not in sent


# ------------------------------------------------------------------ the rest of the path
def test_the_cache_keeps_tool_answers_under_every_field_that_changes_them(tools_app, ollama):
    client = tools_app(CACHE_TTL_SECONDS=60)
    ollama.default = Script(reply="", tool_calls=CALL)
    first = chat(client, tools=[WEATHER], temperature=0)[1]
    again = chat(client, tools=[WEATHER], temperature=0)[1]
    assert again["cached"] is True and again["tool_calls"] == first["tool_calls"]
    assert again["finish_reason"] == "tool_calls" and len(ollama.calls("/api/chat")) == 1
    other = {"type": "function", "function": {**WEATHER["function"], "description": "Weather, in Celsius"}}
    for variant in ({"tools": [other]}, {"tools": [WEATHER], "tool_choice": "required"},
                    {"tools": [WEATHER], "parallel_tool_calls": False}):
        assert chat(client, temperature=0, **variant)[1]["cached"] is False
    pixel = [{"role": "user", "content": [{"type": "text", "text": "?"},
                                          {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]
    other_pixel = json.loads(json.dumps(pixel).replace("AAAADUlEQVR42mNk", "AAAADUlEQVR42mNl"))
    ollama.default = Script(reply="A dot.")
    assert chat(client, temperature=0, messages=pixel)[1]["cached"] is False
    assert chat(client, temperature=0, messages=pixel)[1]["cached"] is True
    assert chat(client, temperature=0, messages=other_pixel)[1]["cached"] is False  # images by hash


def test_the_budget_bound_counts_tool_schemas_and_images():
    plain = ChatRequest(messages=(Message("user", "hi"),))
    tools = ChatRequest(messages=(Message("user", "hi"),), tools=(Tool("t", "d" * 500, {"type": "object"}),))
    image = ChatRequest(messages=(Message("user", "hi", images=(Image("image/png", PNG),)),))
    assert tools.input_tokens_bound >= plain.input_tokens_bound + 500
    assert image.input_tokens_bound >= plain.input_tokens_bound + 1600  # an image is up to ~1,600 tokens
    assert tools.needs == {"tools"} and image.needs == {"vision"} and not plain.needs


def test_decision_log_and_metrics_record_tool_calls_and_exclusions(client, claude):
    def counts() -> tuple[float, float, float]:
        text = client.get("/metrics").get_data(as_text=True)
        return (sample(text, "api_gateway_tool_calls_total", model="claude-sonnet"),
                sample(text, "api_gateway_capability_exclusions_total", capability="tools"),
                sample(text, "api_gateway_routing_decisions_total", tier="cloud", strategy="auto", reason="capability"))

    before = counts()
    claude.default = Script(reply="", tool_calls=[CALL[0], {"name": "get_weather", "arguments": {"city": "Rome"}}])
    chat(client, tools=[WEATHER])
    entry = client.get("/api/v1/decisions?limit=1").get_json()["decisions"][0]
    assert entry["needs"] == ["tools"] and entry["excluded_for"] == ["tools"] and entry["tool_calls"] == 2
    assert [a - b for a, b in zip(counts(), before, strict=True)] == [2, 1, 1]
    stats = client.get("/api/v1/stats").get_json()
    assert stats["tools"] == {"answers_with_calls": 1, "calls": 2, "invalid_answers": 0}
    assert stats["capability_exclusions"] == {"tools": 1}
    listed = {m["name"]: m["capabilities"] for m in client.get("/api/v1/models").get_json()["models"]}
    assert listed["tinyllama"] == ["json_schema"] and listed["mistral"] == ["json_schema", "tools"]  # Ollama: format
    assert listed["claude-sonnet"] == ["json_schema", "tools", "vision"]


def test_legacy_functions_map_onto_tools_and_answer_in_their_own_shape(make_app, claude):
    client = make_app().test_client()
    claude.default = Script(reply="", tool_calls=CALL)
    functions = [WEATHER["function"]]
    r = client.post("/v1/chat/completions", json={"model": "auto", "messages": ask(), "functions": functions,
                                                  "function_call": {"name": "get_weather"}})
    choice = r.get_json()["choices"][0]
    assert choice["finish_reason"] == "function_call" and "tool_calls" not in choice["message"]
    assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert claude.calls("/v1/messages")[-1].body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    claude.default = Script(reply="Sunny.")
    r = client.post("/v1/chat/completions", json={"model": "auto", "functions": functions, "messages": [
        *ask(), {"role": "assistant", "content": None, "function_call": choice["message"]["function_call"]},
        {"role": "function", "name": "get_weather", "content": "sun"}]})
    assert r.get_json()["choices"][0]["message"]["content"] == "Sunny."
    turns = claude.calls("/v1/messages")[-1].body["messages"]
    assert turns[1]["content"][0]["type"] == "tool_use" and turns[2]["content"][0]["type"] == "tool_result"
    assert turns[2]["content"][0]["tool_use_id"] == turns[1]["content"][0]["id"]


# ------------------------------------------------------------------ bad input
BAD = [
    ({"tools": {"type": "function"}}, 400, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": []}}]}, 400,
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": {"type": "string"}}}]}, 422,
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": {"type": "object",
                                                                               "minProperties": -1}}}]},
     422, "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, 422, "tools[0].function.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, 422, "tool_choice"),
    ({"tool_choice": "required"}, 422, "tool_choice"),
    ({"tool_choice": "sometimes", "tools": [WEATHER]}, 422, "tool_choice"),
    ({"response_format": {"type": "xml"}}, 422, "response_format.type"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, 400, "response_format.json_schema"),
    ({"messages": [*ask(), {"role": "tool", "tool_call_id": "call_nowhere", "content": "x"}]}, 422,
     "messages[1].tool_call_id"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/tiff;base64,AAAA"}}]}]}, 422, "messages[0].content[0].image_url"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64,not base64!"}}]}]}, 422, "messages[0].content[0].image_url"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + "A" * 8000}}]}]}, 413, "messages[0].content[0].image_url"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, 422, "messages[0].tool_calls"),
]


@pytest.mark.parametrize(("extra", "status", "param"), BAD)
@pytest.mark.parametrize("surface", ["native", "openai"])
def test_bad_tool_input_is_a_4xx_naming_the_field_with_nothing_logged_of_it(make_app, ollama, gateway_logs, surface,
                                                                           extra, status, param):
    client = make_app(MAX_IMAGE_BYTES=4096).test_client()
    path = "/api/v1/chat" if surface == "native" else "/v1/chat/completions"
    r = client.post(path, json={"model": "auto", "messages": ask("secret question"), **extra})
    assert r.status_code == status, r.get_json()
    error = r.get_json()["error"]
    assert error["param"] == param and r.headers["X-Request-ID"]
    assert ollama.calls("/api/chat") == []
    assert not any("secret question" in line or "call_nowhere" in line for line in gateway_logs)


def test_a_paid_answer_that_fails_the_check_is_still_charged(make_app, claude):
    """Claude answered (and billed) a call that does not fit the schema: it is not sent, but it is paid for."""
    client = make_app().test_client()
    claude.default = Script(reply="", tool_calls=[{"name": "get_weather", "arguments": {"town": "Paris"}}])
    r, body = chat(client, model="claude-haiku", tools=[WEATHER])
    assert r.status_code == 502 and body["error"]["type"] == "invalid_answer"
    cost = body["error"]["attempts"][0]["cost"]
    assert cost > 0 and claude.billed(1.0, 5.0) == pytest.approx(cost)  # claude-haiku's prices
    spent = client.get("/api/v1/stats").get_json()["spend_this_month"]["by_model"]["claude-haiku"]
    assert spent == pytest.approx(cost)


def test_claude_only_fields_are_part_of_the_cache_key(make_app, claude):
    """The same Messages request with and without `thinking` is two answers, never one from the cache."""
    client = make_app(CACHE_TTL_SECONDS=60).test_client()
    claude.default = Script(reply="ok")
    ask_ = {"model": "claude-sonnet", "max_tokens": 20, "temperature": 0,
            "messages": [{"role": "user", "content": "hi"}]}
    client.post("/v1/messages", json=ask_)
    thinking = client.post("/v1/messages", json={**ask_, "thinking": {"type": "enabled", "budget_tokens": 1024}})
    again = client.post("/v1/messages", json={**ask_, "thinking": {"type": "enabled", "budget_tokens": 1024}})
    assert thinking.headers["X-Gateway-Cached"] == "false" and again.headers["X-Gateway-Cached"] == "true"
    assert len(claude.calls("/v1/messages")) == 2
