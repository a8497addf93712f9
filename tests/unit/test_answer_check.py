"""The check of a structured answer (gateway/answer_check.py): what passes, what is repaired, what is refused
and why, with reasons that never quote the values."""

from __future__ import annotations

import json

import pytest

from gateway.answer_check import check, structured
from gateway.chat import ChatRequest, Completion, Message, ResponseFormat, Tool, ToolCall, Usage

WEATHER = Tool("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}},
                                   "required": ["city"], "additionalProperties": False})
ASK = (Message("user", "weather?"),)


def req(**fields) -> ChatRequest:
    return ChatRequest(messages=ASK, **fields)


def answer(text: str = "", *calls: tuple[str, str]) -> Completion:
    return Completion(text, Usage(1, 1), "tool_calls" if calls else "stop",
                      tool_calls=tuple(ToolCall(f"call_{i}", n, a) for i, (n, a) in enumerate(calls)))


def test_a_valid_call_passes_unchanged():
    done = answer("", ("get_weather", '{"city": "Paris"}'))
    assert check(req(tools=(WEATHER,)), done) == (done, None)


@pytest.mark.parametrize(("args", "why"), [
    ('{"city": 5}', "the arguments of get_weather do not match the schema at city (type failed)"),
    ("{}", "the arguments of get_weather do not match the schema at the top level (required failed)"),
    ('{"city": "Paris", "when": 1}',
     "the arguments of get_weather do not match the schema at the top level (additionalProperties failed)"),
    ('{"city": "Paris"', "the arguments of get_weather are not a JSON object"),
    ('["Paris"]', "the arguments of get_weather are not a JSON object"),
])
def test_arguments_that_do_not_fit_are_refused_without_quoting_them(args, why):
    assert check(req(tools=(WEATHER,)), answer("", ("get_weather", args)))[1] == why


def test_choice_rules():
    calls = answer("", ("get_weather", '{"city": "Oslo"}'))
    other = Tool("get_time")
    assert "tool_choice names 'get_time'" in check(req(tools=(WEATHER, other), tool_choice="required",
                                                       forced_tool="get_time"), calls)[1]
    assert "called none" in check(req(tools=(WEATHER,), tool_choice="required"), answer("Sunny."))[1]
    assert "where none may be called" in check(req(tools=(WEATHER,), tool_choice="none"), calls)[1]
    assert check(req(tools=(WEATHER,)), answer("Sunny."))[1] is None  # auto: text is an answer


def test_parallel_false_keeps_the_first_call():
    two = answer("", ("get_weather", '{"city": "A"}'), ("get_weather", '{"city": "B"}'))
    done, why = check(req(tools=(WEATHER,), parallel_tool_calls=False), two)
    assert why is None and [c.parsed["city"] for c in done.tool_calls] == ["A"]


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '```json\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```',
    '[{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}]',
])
def test_a_call_written_as_text_is_repaired(text):
    done, why = check(req(tools=(WEATHER,)), answer(text))
    assert why is None and done.text == "" and done.finish_reason == "tool_calls"
    assert [(c.name, c.parsed) for c in done.tool_calls] == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("text", [
    '{"name": "delete_all", "arguments": {}}',                          # not an offered tool
    '{"name": "get_weather", "arguments": {"city": "P"}, "note": "x"}',  # something besides the call
    'Call {"name": "get_weather", "arguments": {"city": "P"}} now',      # text around it
    '{"name": "get_weather", "arguments": 5}',
])
def test_anything_less_clear_is_left_as_text(text):
    done, why = check(req(tools=(WEATHER,)), answer(text))
    assert done.text == text and not done.tool_calls and why is None


def test_json_answers():
    fmt = ResponseFormat("json_schema", "N", {"type": "object", "properties": {"n": {"type": "integer"}},
                                               "required": ["n"]})
    assert check(req(response_format=fmt), answer('{"n": 1}'))[1] is None
    assert check(req(response_format=fmt), answer("```json\n{\"n\": 1}\n```"))[0].text == '{"n": 1}'
    assert check(req(response_format=fmt), answer('{"n": "one"}'))[1] == \
        "the answer do not match the schema at n (type failed)"
    json_mode = req(response_format=ResponseFormat("json_object"))
    assert check(json_mode, answer("[1]"))[1] == "the answer is JSON but not an object"
    assert check(json_mode, answer("sure!"))[1] == "the answer is not valid JSON"
    cut = Completion('{"n": ', Usage(1, 1), "length")
    assert check(req(response_format=fmt), cut)[1] is None  # cut at max_tokens: the client sees finish_reason


def test_a_schema_the_validator_cannot_evaluate_lets_the_answer_through():
    fmt = ResponseFormat("json_schema", "N", {"$ref": "https://example.test/schema.json"})
    assert check(req(response_format=fmt), answer(json.dumps({"n": 1})))[1] is None


def test_which_requests_are_checked():
    assert structured(req(tools=(WEATHER,))) and structured(req(response_format=ResponseFormat("json_object")))
    assert not structured(req()) and not structured(req(response_format=ResponseFormat("text")))
    history = ChatRequest(messages=(*ASK, Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather"),)),
                                    Message("tool", "sun", tool_call_id="c1", name="get_weather")))
    assert structured(history) and history.needs == {"tools"}
