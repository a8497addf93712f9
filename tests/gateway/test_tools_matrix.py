"""The tools conformance matrix: surfaces (native, OpenAI) x backends (Ollama, Anthropic, OpenAI-compatible) x
(streamed, not) x cases, through the real clients (the openai SDK's stream accumulator and
`chat.completions.parse`; plain HTTP for the native API), each checking what the client got and what the
gateway sent upstream in that upstream's own protocol.

The peers' known bugs are the cases: streamed tool calls lost, finish_reason stop after a call, arguments
dropped or sent as {}, wrong indexes for parallel calls, tool results in the wrong order for Anthropic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import openai
import pydantic
import pytest
import requests

from tests.fakes import Script

KEY = "gateway-test-key"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now"}}  # no arguments
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
          "required": ["answer", "confidence"], "additionalProperties": False}
# A 1x1 PNG.
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
MODELS = {"ollama": "qwen3-vl", "anthropic": "claude-haiku", "openai_compat": "compat-cloud"}
PATHS = {"ollama": "/api/chat", "anthropic": "/v1/messages", "openai_compat": "/v1/chat/completions"}


class Answer(pydantic.BaseModel):
    answer: str
    confidence: float


@dataclass
class Case:
    body: dict                                     # the request's fields beyond model and stream
    calls: list[dict] = field(default_factory=list)  # what the model does: [{"name", "arguments"}]
    reply: str = ""
    want_text: str | None = ""
    want_calls: list[tuple[str, dict]] = field(default_factory=list)
    want_finish: str = "stop"


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


ROUND_TRIP = [
    {"role": "system", "content": "You help with travel."},
    {"role": "user", "content": "Weather in Paris and Tokyo?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_p1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_t2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'}}]},
    # the results come back in the other order: Anthropic needs them in call order, first in the user turn
    {"role": "tool", "tool_call_id": "call_t2", "content": "rain, 12 C"},
    {"role": "tool", "tool_call_id": "call_p1", "content": "sun, 20 C"},
]

CASES = {
    "one_call": Case({"messages": ask("Weather in Paris?"), "tools": [WEATHER]},
                     calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}],
                     want_text=None, want_calls=[("get_weather", {"city": "Paris"})], want_finish="tool_calls"),
    "parallel_calls": Case({"messages": ask("Weather in Paris and Tokyo?"), "tools": [WEATHER, TIME]},
                           calls=[{"name": "get_weather", "arguments": {"city": "Paris"}},
                                  {"name": "get_weather", "arguments": {"city": "Tokyo"}}],
                           want_text=None, want_calls=[("get_weather", {"city": "Paris"}),
                                                       ("get_weather", {"city": "Tokyo"})], want_finish="tool_calls"),
    "text_and_call": Case({"messages": ask("Weather in Oslo?"), "tools": [WEATHER]}, reply="Let me look that up.",
                          calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}],
                          want_text="Let me look that up.", want_calls=[("get_weather", {"city": "Oslo"})],
                          want_finish="tool_calls"),
    "empty_arguments": Case({"messages": ask("What time is it?"), "tools": [TIME]},
                            calls=[{"name": "get_time", "arguments": {}}], want_text=None,
                            want_calls=[("get_time", {})], want_finish="tool_calls"),
    "round_trip": Case({"messages": ROUND_TRIP, "tools": [WEATHER]}, reply="Paris: sun. Tokyo: rain.",
                       want_text="Paris: sun. Tokyo: rain."),
    "required": Case({"messages": ask("Weather?"), "tools": [WEATHER, TIME], "tool_choice": "required"},
                     calls=[{"name": "get_time", "arguments": {}}], want_text=None, want_calls=[("get_time", {})],
                     want_finish="tool_calls"),
    "named": Case({"messages": ask("Anything"), "tools": [WEATHER, TIME],
                   "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
                  calls=[{"name": "get_weather", "arguments": {"city": "Rome"}}], want_text=None,
                  want_calls=[("get_weather", {"city": "Rome"})], want_finish="tool_calls"),
    "none": Case({"messages": ask("Just say hi"), "tools": [WEATHER], "tool_choice": "none"}, reply="Hi there.",
                 want_text="Hi there."),
    "json_object": Case({"messages": ask("Give JSON with a key a"), "response_format": {"type": "json_object"}},
                        reply='{"a": 1}', want_text='{"a": 1}'),
    "json_schema": Case({"messages": ask("Answer as JSON"), "response_format": {
        "type": "json_schema", "json_schema": {"name": "Answer", "schema": SCHEMA, "strict": True}}},
        reply='{"answer": "42", "confidence": 0.9}', want_text='{"answer": "42", "confidence": 0.9}'),
    "image": Case({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]}, reply="A dot.",
        want_text="A dot."),
}


@pytest.fixture
def served(make_app, serve, ollama, compat, compat_catalog):
    ollama.installed |= {"qwen3:0.6b", "qwen3-vl:2b", "qwen3-vl:8b"}
    app = make_app(GATEWAY_API_KEYS=KEY, MODELS_CONFIG=compat_catalog, MODEL_PRESET="tools", DEPLOYMENT_TIER=3,
                   OPENAI_COMPAT_URL=f"{compat.url}/v1", OPENAI_COMPAT_API_KEY="sk-compat-test")
    return serve(app)


def fake_for(backend: str, ollama, claude, compat):
    return {"ollama": ollama, "anthropic": claude, "openai_compat": compat}[backend]


def via_openai(base: str, body: dict, stream: bool, pydantic_format: bool) -> tuple[str | None, list, str]:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=20)
    if pydantic_format:
        kwargs = {k: v for k, v in body.items() if k != "response_format"}
        if stream:
            with client.chat.completions.stream(response_format=Answer, **kwargs) as s:
                out = s.get_final_completion()
        else:
            out = client.chat.completions.parse(response_format=Answer, **kwargs)
        assert out.choices[0].message.parsed == Answer(answer="42", confidence=0.9)
    elif stream:
        with client.chat.completions.stream(**body) as s:  # the SDK's accumulator joins the deltas
            out = s.get_final_completion()
    else:
        out = client.chat.completions.create(**body)
    choice = out.choices[0]
    calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    return choice.message.content, calls, choice.finish_reason


def via_native(base: str, body: dict, stream: bool) -> tuple[str | None, list, str]:
    r = requests.post(f"{base}/api/v1/chat", json=body | {"stream": stream},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=20, stream=stream)
    if r.status_code != 200:
        raise NativeError(r.status_code, r.json())
    if not stream:
        data = r.json()
        calls = [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in data["tool_calls"]]
        return data["response"] or None, calls, data["finish_reason"]
    text, calls, finish, name = [], [], None, None
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            if name == "delta":
                text.append(data["text"])
            elif name == "tool_call":
                assert data["index"] == len(calls) and data["type"] == "function"
                calls.append((data["id"], data["function"]["name"], data["function"]["arguments"]))
            elif name == "done":
                finish = data["finish_reason"]
    return "".join(text) or None, calls, finish


class NativeError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status, self.body = status, body


def script_for(backend: str, case: Case, name: str) -> Script:
    return Script(reply=case.reply, tool_calls=case.calls)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("backend", sorted(MODELS))
@pytest.mark.parametrize("surface", ["openai", "native"])
def test_matrix(served, ollama, claude, compat, surface, backend, stream, case):
    c = CASES[case]
    fake = fake_for(backend, ollama, claude, compat)
    fake.default = script_for(backend, c, case)
    body = {"model": MODELS[backend], **c.body}
    if surface == "openai":
        text, calls, finish = via_openai(served, body, stream, pydantic_format=case == "json_schema")
    else:
        text, calls, finish = via_native(served, body, stream)
    assert text == c.want_text
    assert [(n, json.loads(a)) for _, n, a in calls] == c.want_calls
    assert len({i for i, _, _ in calls}) == len(calls) and all(i for i, _, _ in calls)  # ids: present, distinct
    assert finish == c.want_finish
    sent = fake.calls(PATHS[backend])
    assert len(sent) == 1
    UPSTREAM[backend](case, sent[0].body, c)


# ------------------------------------------------------------------ what each upstream was sent
def untitled(schema):
    """A schema without pydantic's titles: the SDK sends Answer's schema with them."""
    if isinstance(schema, dict):
        return {k: untitled(v) for k, v in schema.items() if k != "title"}
    return schema


def check_ollama(case: str, sent: dict, c: Case) -> None:
    tools = [t["function"]["name"] for t in sent.get("tools", [])]
    assert tools == {"none": [], "named": ["get_weather"], "json_object": [], "json_schema": [], "image": [],
                     }.get(case, [t["function"]["name"] for t in c.body.get("tools", [])])
    for t in sent.get("tools", []):
        assert t["type"] == "function" and t["function"]["parameters"]["type"] == "object"
    if case == "round_trip":
        results = [m for m in sent["messages"] if m["role"] == "tool"]
        assert [(m["tool_name"], m["tool_call_id"], m["content"]) for m in results] == [
            ("get_weather", "call_t2", "rain, 12 C"), ("get_weather", "call_p1", "sun, 20 C")]
        call = next(m for m in sent["messages"] if m.get("tool_calls"))
        assert call["content"] == "" and [c_["function"]["arguments"] for c_ in call["tool_calls"]] == [
            {"city": "Paris"}, {"city": "Tokyo"}]  # objects, as Ollama takes them
    assert untitled(sent.get("format")) == {"json_object": "json", "json_schema": SCHEMA}.get(case)
    if case == "image":
        assert sent["messages"][-1]["images"] == [PNG]  # raw base64: no data: prefix
        assert sent["messages"][-1]["content"] == "What is in this picture?"


def check_anthropic(case: str, sent: dict, c: Case) -> None:
    assert sent["stream"] is True
    tools = {t["name"]: t for t in sent.get("tools", [])}
    for t in tools.values():
        assert t["input_schema"]["type"] == "object"
    choices = {"required": {"type": "any"}, "named": {"type": "tool", "name": "get_weather"}, "none": {"type": "none"},
               "json_object": {"type": "tool", "name": "json_response"}}
    assert sent.get("tool_choice") == choices.get(case, {"type": "auto"} if tools else None)
    if case == "json_object":  # no JSON mode in the Messages API: a forced tool whose input is the answer
        assert list(tools) == ["json_response"] and tools["json_response"]["input_schema"]["type"] == "object"
    if case == "round_trip":
        assert sent["system"] == "You help with travel."
        assistant, results = sent["messages"][1], sent["messages"][2]
        assert [b["type"] for b in assistant["content"]] == ["tool_use", "tool_use"]  # no empty text block
        assert assistant["content"][0]["input"] == {"city": "Paris"}
        assert results["role"] == "user" and [(b["type"], b["tool_use_id"], b["content"]) for b in results["content"]] \
            == [("tool_result", "call_p1", "sun, 20 C"), ("tool_result", "call_t2", "rain, 12 C")]
    if case == "json_schema":  # Claude Haiku 4.5 takes the schema natively
        assert untitled(sent["output_config"]) == {"format": {"type": "json_schema", "schema": SCHEMA}}
    if case == "image":
        assert sent["messages"][0]["content"][0] == {
            "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


def check_compat(case: str, sent: dict, c: Case) -> None:
    assert sent.get("tools") == (c.body.get("tools") and [
        {"type": "function", "function": {"name": t["function"]["name"], "description": t["function"]["description"],
                                          "parameters": t["function"].get("parameters") or {
                                              "type": "object", "properties": {}}}} for t in c.body["tools"]])
    assert sent.get("tool_choice") == c.body.get("tool_choice")
    if case == "round_trip":
        assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool", "tool"]
        assert sent["messages"][2]["tool_calls"][1]["function"]["arguments"] == '{"city": "Tokyo"}'
        assert sent["messages"][3]["tool_call_id"] == "call_t2"
    if case.startswith("json"):
        fmt = sent["response_format"]
        assert fmt["type"] == case and (case == "json_object" or untitled(fmt["json_schema"]["schema"]) == SCHEMA)
    if case == "image":
        assert sent["messages"][0]["content"][1] == {"type": "image_url",
                                                     "image_url": {"url": f"data:image/png;base64,{PNG}"}}


UPSTREAM = {"ollama": check_ollama, "anthropic": check_anthropic, "openai_compat": check_compat}


# ------------------------------------------------------------------ malformed arguments: a clear error
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("backend", sorted(MODELS))
@pytest.mark.parametrize("surface", ["openai", "native"])
def test_malformed_arguments_from_the_only_capable_model_are_a_clear_error(served, ollama, claude, compat, surface,
                                                                            backend, stream):
    """An explicitly named model whose call does not match the tool's schema (or is not JSON): nothing else may
    answer, so a 502 that says why, never the broken call."""
    bad = "{city: Paris" if backend == "openai_compat" else {"city": 5}
    fake_for(backend, ollama, claude, compat).default = Script(reply="", tool_calls=[
        {"name": "get_weather", "arguments": bad}])
    body = {"model": MODELS[backend], "messages": ask("Weather in Paris?"), "tools": [WEATHER]}
    if surface == "openai":
        with pytest.raises(openai.APIStatusError) as err:
            via_openai(served, body, stream, pydantic_format=False)
        status, error = err.value.status_code, err.value.body
    else:
        with pytest.raises(NativeError) as err:
            via_native(served, body, stream)
        status, error = err.value.status, err.value.body["error"]
    assert status == 502 and (error.get("code") or error.get("type")) == "invalid_answer"
    assert "get_weather" in error["message"] and "Paris" not in error["message"]
