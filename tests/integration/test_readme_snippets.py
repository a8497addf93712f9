"""Every bash and python block of the README's "Using it" section, run as written against the gateway under
gunicorn with fake upstreams: only the address (localhost:8080) becomes the test's. A snippet that does not
paste, or answers otherwise than the README says, fails here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.fakes import Script

pytestmark = pytest.mark.integration


def blocks(language: str, section: str = "Using it") -> list[str]:
    readme = (ROOT / "README.md").read_text()
    text = readme.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.M | re.S)


def test_the_readme_has_snippets_to_run():
    assert len(blocks("bash")) == 1 and len(blocks("python")) == 1
    assert len(blocks("python", "Tools, JSON and images")) == 1 and len(blocks("bash", "Tools, JSON and images")) == 1


def test_the_shell_snippet(gunicorn, ollama, claude):
    url, _, _ = gunicorn()
    script = blocks("bash")[0].replace("localhost:8080", url.removeprefix("http://"))
    env = {k: v for k, v in os.environ.items() if k != "KEY"}
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**env, "GATEWAY_API_KEYS": "integration-key,another"})
    assert out.returncode == 0, out.stderr
    answers = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    simple, design, dry = answers
    assert (simple["model"], simple["backend"], simple["cost"]) == ("tinyllama", "ollama", 0.0)  # as commented
    assert design["backend"] == "anthropic" and design["model"].startswith("claude")
    assert dry["dry_run"] is True and dry["routing"]["attempts"] == []
    # what went upstream: one local call, one cloud call, nothing for the dry run
    assert len(ollama.calls("/api/chat")) == 1 and len(claude.calls("/v1/messages")) == 1


def test_the_python_snippet(gunicorn, ollama):
    url, _, _ = gunicorn()
    ollama.default = Script(reply="one two three four five")
    code = blocks("python")[0].replace("localhost:8080", url.removeprefix("http://"))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "KEY": "integration-key"})
    assert out.returncode == 0, out.stderr
    first, streamed = out.stdout.split("\n", 1)
    assert first.startswith("tinyllama one two three four five CompletionUsage(")
    assert "one two three four five" in streamed and "completion_tokens=" in streamed
    sent = ollama.calls("/api/chat")
    assert len(sent) == 2 and sent[1].body["stream"] is True


def test_the_tools_snippet(gunicorn, ollama):
    """The tools preset's local model calls the tool; the result goes back; it answers."""
    ollama.installed |= {"qwen3:0.6b", "qwen3-vl:2b"}
    url, _, _ = gunicorn(MODEL_PRESET="tools")
    ollama.queue(Script(reply="", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]),
                 Script(reply="It is sunny in Paris."))
    code = blocks("python", "Tools, JSON and images")[0].replace("localhost:8080", url.removeprefix("http://"))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "KEY": "integration-key"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['qwen3-small tool_calls get_weather {"city": "Paris"}', "It is sunny in Paris."]
    second = ollama.calls("/api/chat")[1].body["messages"]
    assert second[-1] == {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather",
                          "tool_call_id": second[-2]["tool_calls"][0]["id"]}


def test_the_tools_shell_snippet(gunicorn, ollama):
    """The native JSON-schema request: answered by the tools preset's local model, its format sent to Ollama."""
    ollama.installed |= {"qwen3:0.6b", "qwen3-vl:2b"}
    url, _, _ = gunicorn(MODEL_PRESET="tools")
    ollama.default = Script(reply='{"city": "Paris"}')
    script = blocks("bash", "Tools, JSON and images")[0].replace("localhost:8080", url.removeprefix("http://"))
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "KEY": "integration-key"})
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["model"] == "qwen3-small" and json.loads(answer["response"]) == {"city": "Paris"}
    assert ollama.calls("/api/chat")[0].body["format"]["required"] == ["city"]
