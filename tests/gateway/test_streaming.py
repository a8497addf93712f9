"""Streams on both surfaces: failover before the first token, an explicit error after it, never a
clean-looking truncated answer, and a client that leaves cancels the upstream request."""

from __future__ import annotations

import json
import time

import openai
import pytest
import requests

from tests.fakes import Script

SIMPLE = "What is Python?"
DESIGN = ("Design a distributed system for real-time chat that scales to millions of users, with fault "
          "tolerance and message ordering.")
REPLY = "alpha beta gamma delta epsilon zeta"


@pytest.fixture
def url(make_app, serve):
    return serve(make_app())


def openai_events(url: str, prompt: str, **extra) -> tuple[requests.Response, list[str]]:
    r = requests.post(f"{url}/v1/chat/completions", stream=True, timeout=20,
                      json={"model": "auto", "messages": [{"role": "user", "content": prompt}], "stream": True,
                            **extra})
    return r, [line[6:] for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]


def native_events(url: str, prompt: str, **extra) -> tuple[requests.Response, list[tuple[str, dict]]]:
    r = requests.post(f"{url}/api/v1/chat", json={"prompt": prompt, "stream": True, **extra}, stream=True,
                      timeout=20)
    events, name = [], None
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return r, events


def content(events: list[str]) -> str:
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


# --------------------------------------------------------------------------- native event format


def test_native_stream_event_format(url, ollama):
    ollama.default = Script(reply=REPLY)
    r, events = native_events(url, SIMPLE)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    names = [n for n, _ in events]
    assert names[0] == "start" and names[-1] == "done" and set(names[1:-1]) == {"delta"}
    start, done = events[0][1], events[-1][1]
    assert (start["model"], start["backend"], start["tier"]) == ("tinyllama", "ollama", "local-small")
    assert start["routing"]["reason"] and start["request_id"] == r.headers["X-Request-ID"]
    assert "".join(d["text"] for n, d in events if n == "delta") == REPLY
    assert done["usage"] == {"input_tokens": 3, "output_tokens": 6} and done["cost"] == 0.0
    assert done["finish_reason"] == "stop" and done["attempts"][-1]["outcome"] == "ok"
    assert done["first_token_seconds"] <= done["latency_seconds"]


def test_native_stream_from_claude_counts_cumulative_usage_once(url, claude):
    claude.default = Script(reply=REPLY)
    _, events = native_events(url, DESIGN, max_tokens=100)
    done = events[-1][1]
    assert events[0][1]["model"] == "claude-sonnet"
    assert done["usage"]["output_tokens"] == 6  # message_delta's cumulative count, not a sum
    assert done["cost"] == pytest.approx((done["usage"]["input_tokens"] * 2 + 6 * 10) / 1e6)


# --------------------------------------------------------------------------- before the first token: fail over


@pytest.mark.parametrize(
    "script",
    [Script(reply=REPLY, cut_after=0), Script(status=500), Script(reply=REPLY, error_after=0),
     Script(raw_body=b"<html>", content_type="text/html")],
    ids=["cut-before-first-chunk", "http-500", "error-line-first", "wrong-content-type"],
)
def test_failure_before_first_token_falls_over_invisibly(url, ollama, script):
    ollama.queue(script)
    ollama.default = Script(reply=REPLY)
    r, events = openai_events(url, SIMPLE)
    assert r.status_code == 200 and events[-1] == "[DONE]"
    assert content(events) == REPLY
    assert r.headers["x-gateway-model"] in ("tinyllama", "phi") and int(r.headers["x-gateway-attempts"]) >= 2


def test_anthropic_overloaded_before_first_token_falls_back(url, claude):
    claude.queue(Script(reply=REPLY, error_after=0, error_type="overloaded_error"), Script(status=529),
                 Script(status=529))
    r, events = native_events(url, DESIGN)
    assert r.status_code == 200 and events[-1][0] == "done"
    assert events[0][1]["model"] == "claude-haiku"
    kinds = [a.get("error_type") for a in events[-1][1]["attempts"]]
    assert kinds == ["overloaded", "overloaded", "overloaded", None]


def test_every_backend_failing_before_first_token_is_a_plain_http_error(make_app, serve, ollama):
    url = serve(make_app(ANTHROPIC_API_KEY=""))
    ollama.default = Script(status=500)
    r = requests.post(f"{url}/v1/chat/completions", timeout=10, json={
        "model": "auto", "messages": [{"role": "user", "content": SIMPLE}], "stream": True})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"


# --------------------------------------------------------------------------- after the first token: explicit error


@pytest.mark.parametrize(
    ("fake", "prompt", "script"),
    [("ollama", SIMPLE, Script(reply=REPLY, cut_after=2)),
     ("ollama", SIMPLE, Script(reply=REPLY, error_after=2, error_message="llama runner terminated")),
     ("claude", DESIGN, Script(reply=REPLY, error_after=2, error_type="overloaded_error")),
     ("claude", DESIGN, Script(reply=REPLY, cut_after=2))],
    ids=["ollama-cut", "ollama-error-line", "anthropic-overloaded-event", "anthropic-cut"],
)
def test_failure_after_first_token_ends_with_error_and_no_done(url, request, fake, prompt, script):
    request.getfixturevalue(fake).default = script
    r, events = openai_events(url, prompt)
    assert r.status_code == 200
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["code"] == "stream_interrupted"
    assert content(events) == "alpha beta "

    r, events = native_events(url, prompt)
    assert [n for n, _ in events][-1] == "error" and "done" not in [n for n, _ in events]
    assert events[-1][1]["error"]["type"] == "stream_interrupted"


def test_openai_sdk_raises_on_a_stream_cut_mid_answer(make_app, serve, ollama):
    sdk = openai.OpenAI(base_url=serve(make_app()) + "/v1", api_key="x", max_retries=0)
    ollama.default = Script(reply=REPLY, cut_after=3)
    got = []
    with pytest.raises(openai.APIError):
        for chunk in sdk.chat.completions.create(model="tinyllama", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True):
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "alpha beta gamma "


def test_interrupted_streams_are_counted_and_logged(make_app, serve, ollama, gateway_logs):
    app = make_app()
    url = serve(app)
    ollama.default = Script(reply=REPLY, cut_after=2)
    openai_events(url, SIMPLE)
    time.sleep(0.2)  # the access line is written when the server closes the response
    assert app.extensions["gateway"].stats_report()["errors"] == {"stream_interrupted": 1}
    access = [json.loads(line) for line in gateway_logs if '"gateway.access"' in line]
    assert access[-1]["stream"] is True and access[-1]["error"] == "stream_interrupted:connection"
    assert "What is Python" not in "\n".join(gateway_logs)


def test_completed_stream_is_recorded_in_stats_and_log(make_app, serve, ollama, gateway_logs):
    app = make_app()
    url = serve(app)
    ollama.default = Script(reply=REPLY)
    openai_events(url, SIMPLE)
    time.sleep(0.2)
    stats = app.extensions["gateway"].stats_report()
    assert stats["requests"] == 1 and stats["by_model"] == {"tinyllama": 1} and stats["tokens"]["output"] == 6
    line = [json.loads(x) for x in gateway_logs if '"gateway.access"' in x][-1]
    assert line["model"] == "tinyllama" and line["output_tokens"] == 6 and line["first_token_ms"] >= 0


# --------------------------------------------------------------------------- client disconnect


@pytest.mark.parametrize(("fake", "prompt"), [("ollama", SIMPLE), ("claude", DESIGN)])
def test_client_disconnect_cancels_the_upstream_request(url, request, fake, prompt):
    upstream = request.getfixturevalue(fake)
    upstream.default = Script(reply=" ".join(f"w{i}" for i in range(40)), chunk_delay=0.05)
    r = requests.post(f"{url}/api/v1/chat", json={"prompt": prompt, "stream": True}, stream=True, timeout=10)
    lines = r.iter_lines()
    for _ in range(6):
        next(lines)
    r.close()  # the client goes away after a few pieces
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (upstream.inflight or not upstream.aborted):
        time.sleep(0.05)
    assert upstream.aborted == 1 and upstream.inflight == 0  # the upstream saw its request end early
