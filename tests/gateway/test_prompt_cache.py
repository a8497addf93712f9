"""Claude prompt caching: the gateway marks long stable prefixes, passes a client's own marks on, and counts
cache writes and reads at their prices in the cost, the budget, the stats and every surface's usage. The fake
Anthropic caches as the API does (tests/fakes/anthropic.py) and keeps the bill the gateway is compared with."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
import requests

from tests.fakes import Script

KEY = "team-key"
AUTH = {"X-API-Key": KEY}
# A system prompt of 3,000 words: above Sonnet's 2,048-token minimum for the fake's tokenizer (a word a token) and
# for the gateway's estimate (four characters a token).
LONG_SYSTEM = " ".join(f"rule{i % 97} applies" for i in range(1500))
PRICES = {"claude-sonnet-5-5": (2.0, 10.0), "claude-haiku-4-5": (1.0, 5.0)}  # configs/models.yaml


@pytest.fixture(params=["redis", "memory"])
def app(request, make_app, redis_server):
    env = {"REDIS_URL": redis_server.url} if request.param == "redis" else {}
    return make_app(GATEWAY_API_KEYS=KEY, GATEWAY_ADMIN_KEYS="admin-key", **env)


def chat(client, prompt="Summarise the rules.", system=LONG_SYSTEM, headers=None, **body):
    r = client.post("/api/v1/chat", json={"prompt": prompt, "system": system, "model": "claude-sonnet", **body},
                    headers={**AUTH, **(headers or {})})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def marks(body: dict) -> int:
    return json.dumps(body).count("cache_control")


def test_a_long_system_prompt_is_marked_written_once_then_read_at_a_tenth_and_the_saving_reported(app, claude):
    claude.default = Script(reply="Two rules matter most.")
    client = app.test_client()
    first, second = chat(client), chat(client, "Which rule is first?")
    sent = claude.calls("/v1/messages")
    assert [s.body["system"] for s in sent] == [[{"type": "text", "text": LONG_SYSTEM,
                                                 "cache_control": {"type": "ephemeral"}}]] * 2
    assert marks(sent[0].body) == 1  # the unique question is never marked: it would only be written
    assert first["usage"]["cache_write_tokens"] == 3000 and first["usage"]["cache_read_tokens"] == 0
    assert second["usage"]["cache_read_tokens"] == 3000 and second["usage"]["cache_write_tokens"] == 0
    assert first["usage"]["input_tokens"] == 3003 and second["usage"]["input_tokens"] == 3004
    # to the cent, as the provider bills: a write at 1.25x the input price, a read at 0.1x
    assert first["cost"] == pytest.approx((3000 * 2.5 + 3 * 2.0 + 4 * 10.0) / 1e6)
    assert second["cost"] == pytest.approx((3000 * 0.2 + 4 * 2.0 + 4 * 10.0) / 1e6)
    assert first["cost"] + second["cost"] == pytest.approx(claude.billed_at(PRICES))
    stats = client.get("/api/v1/stats", headers={"X-API-Key": "admin-key"}).get_json()["spend_this_month"]
    list_price = (3003 + 3004) * 2.0 / 1e6 + 8 * 10.0 / 1e6
    assert stats["spent_usd"] == pytest.approx(claude.billed_at(PRICES))
    assert stats["saved_by"]["prompt_cache"] == pytest.approx(list_price - stats["spent_usd"])
    assert stats["saved_by"]["batch"] == 0
    # routed to the cloud by name: local routing saved nothing, the rest of the savings is the cache's
    assert stats["saved_by"]["local_routing"] == pytest.approx(stats["savings_usd"] - stats["saved_by"]["prompt_cache"])
    own = client.get("/api/v1/stats", headers=AUTH).get_json()
    assert own["spend_this_month"]["saved_by"]["prompt_cache"] == pytest.approx(stats["saved_by"]["prompt_cache"])
    assert own["tokens"]["cache_read"] == 3000 and own["tokens"]["cache_write"] == 3000
    logged = client.get("/api/v1/decisions", headers=AUTH).get_json()["decisions"]
    assert sorted((d["cache_write_tokens"], d["cache_read_tokens"]) for d in logged) == [(0, 3000), (3000, 0)]


def test_a_short_prompt_is_never_marked(app, claude):
    client = app.test_client()
    body = chat(client, system="Be brief.")
    chat(client, system="Be brief.")
    assert [marks(s.body) for s in claude.calls("/v1/messages")] == [0, 0]
    assert "cache_read_tokens" not in body["usage"]


def test_the_request_or_the_operator_turns_it_off(app, make_app, claude):
    chat(app.test_client(), headers={"X-Gateway-Prompt-Cache": "off"})
    chat(app.test_client(), prompt_cache=False)
    chat(make_app(GATEWAY_API_KEYS=KEY, PROMPT_CACHING="off").test_client())
    assert [marks(s.body) for s in claude.calls("/v1/messages")] == [0, 0, 0]
    assert all(isinstance(s.body["system"], str) for s in claude.calls("/v1/messages"))


def test_an_agent_loop_marks_its_tools_and_last_earlier_turn_and_reads_the_last_request(app, claude):
    """Tools long enough to cache get their own mark; each turn reads the prefix the turn before wrote."""
    tools = [{"type": "function", "function": {"name": f"tool_{i}", "description": " ".join(["does work"] * 150),
                                              "parameters": {"type": "object", "properties": {}}}} for i in range(8)]
    claude.default = Script(reply="Done with this step.")
    client = app.test_client()
    history = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "Start the job."}]
    reads = []
    for turn in range(3):
        r = client.post("/v1/chat/completions", json={"model": "claude-sonnet", "messages": history, "tools": tools},
                        headers=AUTH)
        assert r.status_code == 200, r.get_json()
        usage = r.get_json()["usage"]
        reads.append(usage.get("prompt_tokens_details", {}).get("cached_tokens", 0))
        history += [{"role": "assistant", "content": "Done with this step."},
                    {"role": "user", "content": f"Next step {turn}."}]
    sent = [s.body for s in claude.calls("/v1/messages")]
    assert all("cache_control" in b["tools"][-1] for b in sent)
    assert marks(sent[0]) == 2 and marks(sent[1]) == 3  # tools + system; then the last earlier turn too
    assert "cache_control" in sent[1]["messages"][-2]["content"][-1]
    assert reads[0] == 0 and 0 < reads[1] < reads[2]  # each request reads what the one before wrote


def test_a_client_marks_are_passed_on_priced_by_lifetime_and_reported_in_anthropic_usage(make_app, serve, claude):
    """Claude Code marks its own prefix; the gateway adds nothing, and a one-hour write costs twice the input."""
    base = serve(make_app(GATEWAY_API_KEYS=KEY))
    client = anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0)
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is rule 3?"}]}]
    first = client.messages.create(model="claude-sonnet-5-5", max_tokens=50, system=system, messages=messages)
    with client.messages.stream(model="claude-sonnet-5-5", max_tokens=50, system=system, messages=messages) as s:
        second = s.get_final_message()
    sent = claude.calls("/v1/messages")
    assert [marks(s.body) for s in sent] == [1, 1]
    assert sent[0].body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert first.usage.cache_creation_input_tokens == 3000 and first.usage.input_tokens == 4
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == 3000
    assert second.usage.cache_read_input_tokens == 3000 and second.usage.input_tokens == 4
    assert [b[3] for b in claude.bills] == [(0, 3000, 0), (0, 0, 3000)]  # (writes 5m, writes 1h, reads)
    spent = requests.get(f"{base}/api/v1/stats", headers=AUTH, timeout=5).json()["spend_this_month"]["spent_usd"]
    assert spent == pytest.approx(claude.billed_at(PRICES))


def test_bad_cache_marks_get_anthropics_error_and_local_models_never_see_marks(make_app, serve, claude, ollama):
    base = serve(make_app(GATEWAY_API_KEYS=KEY))
    client = anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="claude-sonnet-5-5", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "text", "text": "x", "cache_control": {"type": "persistent"}}]}])
    assert "messages.0.content.0.cache_control" in err.value.body["error"]["message"]
    assert claude.calls("/v1/messages") == []
    # a quick call Claude Code makes to its small model stays local: the mark is dropped, and said so
    r = client.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=20,
        system=[{"type": "text", "text": "Reply with a title.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Title for: fix the test"}])
    assert r.headers["x-gateway-backend"] == "ollama" and "cache_control" in r.headers["x-gateway-dropped"]
    assert "cache_control" not in json.dumps(ollama.calls("/api/chat")[-1].body)


def test_the_openai_sdk_sees_cached_tokens_and_the_reservation_covers_a_write(make_app, serve, claude):
    """A cache write costs more than plain input: the budget reserves the dearer price, so it still holds."""
    base = serve(make_app(GATEWAY_API_KEYS=KEY, BUDGET_MONTHLY_USD="1"))
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
    ask = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "Rule 5?"}]
    client.chat.completions.create(model="claude-sonnet", messages=ask, max_tokens=20)
    again = client.chat.completions.create(model="claude-sonnet", messages=ask, max_tokens=20)
    assert again.usage.prompt_tokens_details.cached_tokens == 3000 and again.usage.prompt_tokens == 3002
    from gateway.catalog import load_catalog
    from tests.conftest import ROOT
    sonnet = load_catalog(ROOT / "configs" / "models.yaml").model("claude-sonnet")
    assert sonnet.worst_cost(1000, 0) == pytest.approx(1000 * 2.0 / 1e6)  # nothing can be written: input price
    assert sonnet.worst_cost(1000, 0, "5m") == pytest.approx(1000 * 2.5 / 1e6)
    assert sonnet.worst_cost(1000, 0, "1h") == pytest.approx(1000 * 4.0 / 1e6)


def test_an_openai_compatible_server_reports_its_cached_prompt_and_it_is_priced(compat):
    """Local and OpenAI-compatible backends get no marks; where the server says what it read from its own cache,
    the usage carries it and the model's cache price applies."""
    from gateway.backends.openai_compat import OpenAICompatBackend
    from gateway.catalog import ModelSpec
    from gateway.chat import ChatRequest, Message
    from gateway.config import BackendSettings
    backend = OpenAICompatBackend(BackendSettings(f"{compat.url}/v1", "sk-compat-test", timeout=2))
    model = ModelSpec("compat-cloud", "openai_compat", "compat-model", "cloud", 128_000, 0.5, 1.5,
                      price_cache_read_per_mtok=0.05)
    request = ChatRequest(messages=(Message("system", LONG_SYSTEM), Message("user", "Rule 9?")))
    try:
        first, second = (backend.complete(model, request, 20) for _ in range(2))
    finally:
        backend.close()
    assert first.usage.cache_read_tokens == 0 and second.usage.cache_read_tokens == 2944  # 3000 in 128s
    assert "cache_control" not in json.dumps(compat.calls("/v1/chat/completions")[-1].body)
    assert model.usage_cost(second.usage) == pytest.approx(
        ((second.usage.input_tokens - 2944) * 0.5 + 2944 * 0.05 + second.usage.output_tokens * 1.5) / 1e6)


def test_the_reservation_holds_the_write_price_only_for_a_call_that_may_write(make_app):
    """A long prompt to Claude may be written to its cache (1.25x input): its reservation covers that; a short
    one, or one with caching off, is reserved at the plain input price."""
    svc = make_app(BUDGET_MONTHLY_USD="100").extensions["gateway"]
    sonnet = svc.settings.catalog.model("claude-sonnet")
    from gateway.chat import ChatRequest, Message
    long_ = ChatRequest(messages=(Message("user", "Rule 1?"),), system=LONG_SYSTEM, model="claude-sonnet",
                        max_tokens=10)
    short = ChatRequest(messages=(Message("user", "Rule 1?"),), system="Be brief.", model="claude-sonnet",
                        max_tokens=10)
    off = ChatRequest(messages=long_.messages, system=LONG_SYSTEM, model="claude-sonnet", max_tokens=10,
                      prompt_cache=False)
    amounts = [svc.dispatcher._reserve(r, sonnet).amount for r in (long_, short, off)]
    assert amounts[0] == pytest.approx(sonnet.worst_cost(long_.input_tokens_bound, 10, "5m"))
    assert amounts[1] == pytest.approx(sonnet.worst_cost(short.input_tokens_bound, 10))
    assert amounts[2] == pytest.approx(sonnet.worst_cost(off.input_tokens_bound, 10))
    assert amounts[0] > sonnet.worst_cost(long_.input_tokens_bound, 10)
