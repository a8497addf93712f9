"""LangChain's ChatOpenAI pointed at the gateway, unchanged but for its base URL: bind_tools and a tool round
trip (streamed and not), and with_structured_output in its three methods (json_schema, its default;
function_calling; json_mode), answered by the local models of the tools preset."""

from __future__ import annotations

import pydantic
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.fakes import Script

KEY = "gateway-test-key"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sun in {city}"


class Weather(pydantic.BaseModel):
    """A weather report."""
    city: str
    celsius: int


@pytest.fixture
def llm(make_app, serve, ollama):
    ollama.installed |= {"qwen3:0.6b", "qwen3-vl:2b"}
    base = serve(make_app(GATEWAY_API_KEYS=KEY, MODEL_PRESET="tools"))
    return ChatOpenAI(model="auto", base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=20, temperature=0)


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_bind_tools_round_trip(llm, ollama, stream):
    bound = llm.bind_tools([get_weather])
    ollama.default = Script(reply="", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    question = [HumanMessage("Weather in Paris?")]
    if stream:
        ai = None
        for chunk in bound.stream(question):
            ai = chunk if ai is None else ai + chunk
    else:
        ai = bound.invoke(question)
    assert [(c["name"], c["args"]) for c in ai.tool_calls] == [("get_weather", {"city": "Paris"})]
    sent = ollama.calls("/api/chat")[-1].body
    assert sent["model"] == "qwen3:0.6b" and sent["tools"][0]["function"]["name"] == "get_weather"

    ollama.default = Script(reply="It is sunny in Paris.")
    result = get_weather.invoke(ai.tool_calls[0]["args"])
    final = bound.invoke([*question, ai, ToolMessage(result, tool_call_id=ai.tool_calls[0]["id"])])
    assert final.content == "It is sunny in Paris." and not final.tool_calls
    back = ollama.calls("/api/chat")[-1].body["messages"]
    assert back[-1] == {"role": "tool", "content": "sun in Paris", "tool_name": "get_weather",
                        "tool_call_id": ai.tool_calls[0]["id"]}


def test_with_structured_output_json_schema(llm, ollama):
    ollama.default = Script(reply='{"city": "Oslo", "celsius": 4}')
    out = llm.with_structured_output(Weather).invoke("Weather in Oslo as JSON")
    assert out == Weather(city="Oslo", celsius=4)
    fmt = ollama.calls("/api/chat")[-1].body["format"]
    assert fmt["required"] == ["city", "celsius"] and fmt["properties"]["celsius"]["type"] == "integer"


def test_with_structured_output_function_calling(llm, ollama):
    ollama.default = Script(reply="", tool_calls=[{"name": "Weather", "arguments": {"city": "Rome", "celsius": 21}}])
    out = llm.with_structured_output(Weather, method="function_calling").invoke("Weather in Rome")
    assert out == Weather(city="Rome", celsius=21)
    sent = ollama.calls("/api/chat")[-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["Weather"]  # the forced tool alone


def test_with_structured_output_json_mode(llm, ollama):
    ollama.default = Script(reply='{"city": "Lima", "celsius": 18}')
    out = llm.with_structured_output(Weather, method="json_mode").invoke("Weather in Lima, as JSON")
    assert out == Weather(city="Lima", celsius=18) and ollama.calls("/api/chat")[-1].body["format"] == "json"
