#!/usr/bin/env python3
"""What the two cloud price levers save, measured on replays against the protocol-faithful fake Anthropic (which
caches prompts and bills batches as the API does, tests/fakes/anthropic.py) at the prices in configs/models.yaml.

    python3 scripts/bench/bench_cloud_levers.py [--turns 12] [--questions 30] [--lines 40] [--json FILE]

1. Prompt caching, the same traffic with PROMPT_CACHING=off and on:
   - an agent session: a 3,000-token system prompt, 12 tools, a history that grows every turn (the shape of a
     coding agent's main-model calls), sent to Claude through /v1/chat/completions;
   - a support chat: the same long system prompt and a different short question each time.
2. The batch discount: a mixed batch (three quarters of its lines simple enough for a local model, a quarter
   named for Claude) through /v1/batches, against the same lines sent one by one to /v1/chat/completions.
The cost is what the fake provider bills; the gateway's own recorded spend is printed beside it (they agree).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway import create_app  # noqa: E402
from tests.fakes import FakeAnthropic, FakeOllama, Script  # noqa: E402

KEY = "bench-key"
PRICES = {"claude-sonnet-5-5": (2.0, 10.0), "claude-haiku-4-5": (1.0, 5.0)}
SYSTEM = " ".join(f"Policy {i}: answer within the rules of section {i % 40}." for i in range(300))  # ~3,000 words
TOOLS = [{"type": "function", "function": {"name": f"tool_{i}", "description": f"Tool {i}: " + "reads files " * 20,
                                          "parameters": {"type": "object", "properties": {
                                              "path": {"type": "string"}}}}} for i in range(12)]


def gateway(ollama: FakeOllama, claude: FakeAnthropic, **env):
    app = create_app({"OLLAMA_URL": ollama.url, "ANTHROPIC_API_KEY": "sk-ant-test-key",
                      "ANTHROPIC_BASE_URL": claude.url, "GATEWAY_API_KEYS": KEY, "CACHE_TTL_SECONDS": "0",
                      "DEPLOYMENT_TIER": "2", "LOG_LEVEL": "WARNING", **env})
    return app, app.test_client()


def post(client, path: str, body: dict) -> dict:
    r = client.post(path, json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def spent(client) -> float:
    return client.get("/api/v1/stats", headers={"Authorization": f"Bearer {KEY}"}).get_json()[
        "spend_this_month"]["spent_usd"]


def agent_session(client, turns: int) -> None:
    history = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Fix the failing test."}]
    for turn in range(turns):
        post(client, "/v1/chat/completions", {"model": "claude-sonnet", "messages": history, "tools": TOOLS,
                                              "max_tokens": 200})
        history += [{"role": "assistant", "content": f"Step {turn}: I read the file and found the cause. " * 8},
                    {"role": "user", "content": f"Result of step {turn}: " + "output line " * 60}]


def support_chat(client, questions: int) -> None:
    for q in range(questions):
        post(client, "/v1/chat/completions", {"model": "claude-sonnet", "max_tokens": 200, "messages": [
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Question {q}: how do I reset it?"}]})


def caching(ollama, claude, replay, size) -> dict:
    out = {}
    for mode in ("off", "on"):
        for fake in (ollama, claude):
            fake.reset()
        claude.default = Script(reply="Here is what to do next, step by step, with the reason for each. " * 4)
        app, client = gateway(ollama, claude, PROMPT_CACHING=mode)
        try:
            replay(client, size)
            out[mode] = {"billed_usd": round(claude.billed_at(PRICES), 6), "recorded_usd": round(spent(client), 6),
                         "calls": len(claude.calls("/v1/messages"))}
        finally:
            app.extensions["gateway"].close()
    out["saving"] = round(1 - out["on"]["billed_usd"] / out["off"]["billed_usd"], 4)
    return out


def batch_lines(n: int) -> list[dict]:
    lines = []
    for i in range(n):
        cloud = i % 4 == 3
        text = (f"Analyse the trade-offs of design {i} for a distributed ledger, step by step." if cloud
                else f"What is {i} plus {i}?")
        lines.append({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "claude-sonnet" if cloud else "auto", "max_tokens": 200,
                               "messages": [{"role": "user", "content": text}]}})
    return lines


def batching(ollama, claude, n: int) -> dict:
    out = {}
    lines = batch_lines(n)
    for mode in ("one_by_one", "batch"):
        for fake in (ollama, claude):
            fake.reset()
        claude.default = Script(reply="The trade-offs are latency, cost and consistency, weighed as follows. " * 4)
        ollama.default = Script(reply="The answer is simple.")
        with tempfile.TemporaryDirectory() as tmp:
            app, client = gateway(ollama, claude, BATCH_DIR=tmp, BATCH_POLL_SECONDS="0.05")
            try:
                if mode == "one_by_one":
                    for line in lines:
                        post(client, line["url"], line["body"])
                else:
                    data = "\n".join(json.dumps(x) for x in lines).encode()
                    r = client.post("/v1/files", data={"purpose": "batch", "file": (_bytes(data), "in.jsonl")},
                                    headers={"Authorization": f"Bearer {KEY}"}, content_type="multipart/form-data")
                    batch = post(client, "/v1/batches", {"input_file_id": r.get_json()["id"],
                                                         "completion_window": "24h",
                                                         "endpoint": "/v1/chat/completions"})
                    while batch["status"] != "completed":
                        time.sleep(0.05)
                        batch = client.get(f"/v1/batches/{batch['id']}",
                                           headers={"Authorization": f"Bearer {KEY}"}).get_json()
                out[mode] = {"billed_usd": round(claude.billed_at(PRICES), 6), "recorded_usd": round(spent(client), 6),
                             "local_calls": len(ollama.calls("/api/chat")),
                             "cloud_calls": len(claude.calls("/v1/messages")),
                             "message_batches": len([c for c in claude.calls("/v1/messages/batches")
                                                     if c.method == "POST"])}
            finally:
                app.extensions["gateway"].close()
    out["saving"] = round(1 - out["batch"]["billed_usd"] / out["one_by_one"]["billed_usd"], 4)
    return out


def _bytes(data: bytes):
    import io
    return io.BytesIO(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("--json")
    args = parser.parse_args()
    ollama, claude = FakeOllama(), FakeAnthropic("sk-ant-test-key")
    try:
        result = {"agent_session": caching(ollama, claude, agent_session, args.turns),
                  "support_chat": caching(ollama, claude, support_chat, args.questions),
                  "mixed_batch": batching(ollama, claude, args.lines)}
    finally:
        ollama.close()
        claude.close()
    for name, r in result.items():
        a, b = ("off", "on") if "on" in r else ("one_by_one", "batch")
        print(f"{name:14} {a}: ${r[a]['billed_usd']:.4f} (recorded ${r[a]['recorded_usd']:.4f})  "
              f"{b}: ${r[b]['billed_usd']:.4f} (recorded ${r[b]['recorded_usd']:.4f})  saving {r['saving']:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
