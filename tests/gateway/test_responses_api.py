"""The OpenAI Responses surface (/v1/responses), driven by the official openai SDK (create, stream, parse) and
LangChain's ChatOpenAI(use_responses_api=True), plus the second turn n8n's AI Agent sends; what the client
got and what the upstream (a local model of the tools preset) was sent."""

from __future__ import annotations

import json

import openai
import pydantic
import pytest
import requests
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.fakes import Script

KEY = "gateway-test-key"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALL = [{"name": "get_weather", "arguments": {"city": "Paris"}}]


@pytest.fixture
def base(make_app, serve, ollama):
    ollama.installed |= {"qwen3:0.6b", "qwen3-vl:2b"}
    return serve(make_app(GATEWAY_API_KEYS=KEY, MODEL_PRESET="tools"))


@pytest.fixture
def sdk(base) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=20)


def test_create_text(sdk, ollama):
    ollama.default = Script(reply="Paris is the capital.")
    out = sdk.responses.create(model="auto", instructions="Be brief.", input="Capital of France?")
    assert out.output_text == "Paris is the capital." and out.status == "completed" and out.model == "qwen3-small"
    assert out.usage.input_tokens > 0 and out.usage.output_tokens == 4
    sent = ollama.calls("/api/chat")[0].body["messages"]
    assert sent == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]


@pytest.mark.parametrize("stream", [False, True])
def test_function_call_round_trip(sdk, ollama, stream):
    ollama.default = Script(reply="", tool_calls=CALL)
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with sdk.responses.stream(model="auto", input=ask, tools=[WEATHER]) as s:
            kinds = [e.type for e in s]
            first = s.get_final_response()
        assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
        assert "response.function_call_arguments.delta" in kinds
    else:
        first = sdk.responses.create(model="auto", input=ask, tools=[WEATHER])
    call = next(i for i in first.output if i.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    ollama.default = Script(reply="Sunny in Paris.")
    second = sdk.responses.create(model="auto", tools=[WEATHER], input=[
        *ask, *[i.model_dump() for i in first.output if i.type == "function_call"],
        {"type": "function_call_output", "call_id": call.call_id, "output": "sun, 21 C"}])
    assert second.output_text == "Sunny in Paris."
    sent = ollama.calls("/api/chat")[-1].body["messages"]
    assert sent[-1] == {"role": "tool", "content": "sun, 21 C", "tool_name": "get_weather",
                        "tool_call_id": call.call_id}


def test_stream_text_events_for_the_sdk_helper(sdk, ollama):
    ollama.default = Script(reply="one two three")
    with sdk.responses.stream(model="auto", input="count") as s:
        events = list(s)
        final = s.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "one two three"
    assert final.output_text == "one two three" and final.usage.output_tokens == 3


class City(pydantic.BaseModel):
    name: str
    country: str


def test_parse_with_a_pydantic_model(sdk, ollama):
    ollama.default = Script(reply='{"name": "Paris", "country": "France"}')
    out = sdk.responses.parse(model="auto", input="A city as JSON", text_format=City)
    assert out.output_parsed == City(name="Paris", country="France")
    assert ollama.calls("/api/chat")[0].body["format"]["required"] == ["name", "country"]


def test_previous_response_id_is_refused_not_ignored(sdk, ollama):
    with pytest.raises(openai.BadRequestError) as err:
        sdk.responses.create(model="auto", input="hi", previous_response_id="resp_abc")
    assert err.value.body["code"] == "previous_response_not_found" and ollama.calls("/api/chat") == []


def test_the_second_turn_n8n_sends(base, ollama):
    """n8n's AI Agent (LangChain-JS): an assistant message saying what it calls, the function_call (with an
    `id` inside the arguments), its output as a JSON string; strict: false and $schema in the tool."""
    tool_def = {**WEATHER, "strict": False, "parameters": {**WEATHER["parameters"], "additionalProperties": False,
                                                            "$schema": "http://json-schema.org/draft-07/schema#"}}
    ollama.default = Script(reply="It is sunny in Paris.")
    body = {"model": "auto", "stream": False, "text": {}, "tools": [tool_def], "input": [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "message", "role": "assistant", "content": 'Calling get_weather with input: {"city":"Paris"}'},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Paris","id":"call_1"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": '"sun, 21 C"'}]}
    r = requests.post(f"{base}/v1/responses", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    out = r.json()
    assert r.status_code == 200 and out["output"][0]["content"][0] == {
        "type": "output_text", "text": "It is sunny in Paris.", "annotations": []}
    sent = ollama.calls("/api/chat")[0].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[2]["tool_calls"][0]["function"]["name"] == "get_weather" and sent[3]["content"] == '"sun, 21 C"'


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sun in {city}"


def test_langchain_use_responses_api(base, ollama):
    llm = ChatOpenAI(model="auto", base_url=f"{base}/v1", api_key=KEY, use_responses_api=True, max_retries=0)
    bound = llm.bind_tools([get_weather])
    ollama.default = Script(reply="", tool_calls=CALL)
    ai = bound.invoke([HumanMessage("Weather in Paris?")])
    assert [(c["name"], c["args"]) for c in ai.tool_calls] == [("get_weather", {"city": "Paris"})]
    ollama.default = Script(reply="Sunny.")
    final = bound.invoke([HumanMessage("Weather in Paris?"), ai,
                          ToolMessage("sun in Paris", tool_call_id=ai.tool_calls[0]["id"])])
    assert final.text == "Sunny." if isinstance(final.text, str) else final.text() == "Sunny."


def test_a_mid_stream_failure_raises_in_the_sdk(sdk, ollama):
    ollama.default = Script(reply="one two three four", cut_after=2)
    with pytest.raises(openai.APIError), sdk.responses.stream(model="local-small", input="count") as s:
        for _ in s:
            pass


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "auto"}, "input"),
    ({"model": "auto", "input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
     "input[0].call_id"),
    ({"model": "auto", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"model": "auto", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0]"),
])
def test_bad_input_in_openai_error_shape(base, ollama, body, param):
    r = requests.post(f"{base}/v1/responses", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert r.status_code in (400, 422) and r.json()["error"]["param"] == param
    assert ollama.calls("/api/chat") == []
