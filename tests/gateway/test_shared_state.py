"""Shared state on a real redis-server: spend, savings, budgets, cache, rate limits, decision log, and
what happens when Redis goes away and comes back."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tests.fakes import Script

SIMPLE = "What is Python?"
DESIGN = ("Design a distributed system for real-time chat that scales to millions of users, with fault "
          "tolerance and message ordering.")
SONNET_IN, SONNET_OUT = 2.0 / 1e6, 10.0 / 1e6


@pytest.fixture
def shared(make_app, redis_server):
    """An app factory wired to the test's redis-server."""
    def _make(**env):
        return make_app(REDIS_URL=redis_server.url, **env)
    return _make


def chat(client, headers=None, **body):
    r = client.post("/api/v1/chat", json=body, headers=headers or {})
    return r, r.get_json()


# --------------------------------------------------------------------------- spend and savings


def test_cost_from_real_token_counts_recorded_per_model_backend_key(shared, claude, redis_server):
    client = shared(GATEWAY_API_KEYS="team-a", GATEWAY_ADMIN_KEYS="ops").test_client()
    claude.default = Script(reply=" ".join(["w"] * 50))
    _, body = chat(client, {"X-API-Key": "team-a"}, prompt=DESIGN)
    usage = body["usage"]
    assert usage == {"input_tokens": len(DESIGN.split()), "output_tokens": 50}
    expected = usage["input_tokens"] * SONNET_IN + usage["output_tokens"] * SONNET_OUT
    assert body["cost"] == pytest.approx(expected)
    own = client.get("/api/v1/stats", headers={"X-API-Key": "team-a"}).get_json()
    assert own["scope"] == "key" and own["spend_this_month"]["spent_usd"] == pytest.approx(expected)
    spend = client.get("/api/v1/stats", headers={"X-API-Key": "ops"}).get_json()["spend_this_month"]
    assert spend["spent_usd"] == pytest.approx(expected)
    assert spend["by_model"] == {"claude-sonnet": pytest.approx(expected)}
    assert spend["by_backend"] == {"anthropic": pytest.approx(expected)}
    assert list(spend["by_key"].values()) == [pytest.approx(expected)]
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert float(redis_server.client().hget(f"hai:spend:{day}", "total")) == pytest.approx(expected)


def test_savings_are_measured_against_the_cloud_model(shared, ollama):
    client = shared().test_client()
    ollama.default = Script(reply=" ".join(["x"] * 20))
    _, body = chat(client, prompt=SIMPLE)
    usage = body["usage"]
    assert body["cost"] == 0
    spend = client.get("/api/v1/stats").get_json()["spend_this_month"]
    cloud = usage["input_tokens"] * SONNET_IN + usage["output_tokens"] * SONNET_OUT
    assert spend["cloud_reference_model"] == "claude-sonnet"
    assert spend["cloud_only_usd"] == pytest.approx(cloud) and spend["savings_usd"] == pytest.approx(cloud)
    assert spend["savings_share"] == 1.0


# --------------------------------------------------------------------------- cache


def test_cache_hit_miss_and_shared_between_processes(shared, ollama):
    app1, app2 = shared(CACHE_TTL_SECONDS=60), shared(CACHE_TTL_SECONDS=60)
    c1, c2 = app1.test_client(), app2.test_client()
    _, first = chat(c1, prompt=SIMPLE, temperature=0)
    _, second = chat(c2, prompt=SIMPLE, temperature=0)  # another gateway process, same Redis
    assert first["cached"] is False and second["cached"] is True
    assert second["response"] == first["response"] and second["cost"] == 0 and second["usage"] == first["usage"]
    assert len(ollama.calls("/api/chat")) == 1
    cache = c1.get("/api/v1/stats").get_json()["cache"]
    assert (cache["hits"], cache["misses"], cache["hit_ratio"]) == (1, 1, 0.5)


def test_cache_control_no_cache_and_no_store(shared, ollama):
    client = shared(CACHE_TTL_SECONDS=60).test_client()
    chat(client, {"Cache-Control": "no-store"}, prompt=SIMPLE, temperature=0)
    _, body = chat(client, prompt=SIMPLE, temperature=0)
    assert body["cached"] is False  # nothing was stored
    _, body = chat(client, {"Cache-Control": "no-cache"}, prompt=SIMPLE, temperature=0)
    assert body["cached"] is False  # stored now, but reading was bypassed
    _, body = chat(client, prompt=SIMPLE, temperature=0)
    assert body["cached"] is True
    assert len(ollama.calls("/api/chat")) == 3


def test_hot_temperature_is_not_cached_unless_forced(shared, ollama):
    client = shared(CACHE_TTL_SECONDS=60, CACHE_MAX_TEMPERATURE=0.5).test_client()
    for _ in range(2):
        _, body = chat(client, prompt=SIMPLE, temperature=1.2)
        assert body["cached"] is False
    chat(client, {"X-Gateway-Cache": "force"}, prompt=SIMPLE, temperature=1.2)
    _, body = chat(client, {"X-Gateway-Cache": "force"}, prompt=SIMPLE, temperature=1.2)
    assert body["cached"] is True
    assert client.get("/api/v1/stats").get_json()["cache"]["bypassed"] == 2


def test_no_temperature_means_the_models_sampling_default_and_is_not_cached(shared, ollama):
    # Ollama samples at 0.8 when a request sets no temperature: replaying one sample is not the same answer
    client = shared(CACHE_TTL_SECONDS=60, CACHE_MAX_TEMPERATURE=0.5).test_client()
    for _ in range(2):
        assert chat(client, prompt=SIMPLE)[1]["cached"] is False
    assert len(ollama.calls("/api/chat")) == 2
    # with a cooler default configured for the model (or temperature 0 asked), it is
    client = shared(CACHE_TTL_SECONDS=60, CACHE_MAX_TEMPERATURE=0.9).test_client()
    chat(client, prompt=SIMPLE)
    assert chat(client, prompt=SIMPLE)[1]["cached"] is True


def test_streamed_answer_is_cached_once_complete_and_replayed_as_a_stream(shared, serve, ollama):
    import requests

    url = serve(shared(CACHE_TTL_SECONDS=60))
    ollama.default = Script(reply="one two three", cut_after=1)
    requests.post(f"{url}/api/v1/chat", json={"prompt": SIMPLE, "stream": True, "temperature": 0},
                  timeout=10).close()
    ollama.default = Script(reply="one two three")
    r = requests.post(f"{url}/api/v1/chat", json={"prompt": SIMPLE, "stream": True, "temperature": 0}, timeout=10)
    assert r.headers["X-Gateway-Cached"] == "false"  # the interrupted stream was not cached
    calls = len(ollama.calls("/api/chat"))
    r = requests.post(f"{url}/v1/chat/completions", timeout=10, json={
        "model": "auto", "messages": [{"role": "user", "content": SIMPLE}], "stream": True, "temperature": 0})
    assert r.headers["X-Gateway-Cached"] == "true" and r.text.rstrip().endswith("data: [DONE]")
    assert '"content":"one "' in r.text and '"content":"three"' in r.text
    body = requests.post(f"{url}/api/v1/chat", json={"prompt": SIMPLE, "temperature": 0}, timeout=10).json()
    assert body["cached"] is True and body["response"] == "one two three"
    assert len(ollama.calls("/api/chat")) == calls


# --------------------------------------------------------------------------- budgets


@pytest.mark.parametrize("store", ["redis", "memory"])
def test_budget_exhausted_routes_local_and_forced_cloud_gets_429(make_app, redis_server, claude, store):
    env = {"BUDGET_MONTHLY_USD": "0.001"}
    if store == "redis":
        env["REDIS_URL"] = redis_server.url
    client = make_app(**env).test_client()
    r, body = chat(client, prompt=DESIGN)  # worst case ~$0.0109 > $0.001
    assert r.status_code == 200 and body["backend"] == "ollama"
    assert "budget" in body["routing"]["reason"] and "worst case" in body["routing"]["reason"]
    r, body = chat(client, prompt=DESIGN, model="claude-sonnet")
    assert r.status_code == 429 and body["error"]["type"] == "budget_exceeded"
    assert claude.requests == []
    budget = client.get("/api/v1/budget").get_json()
    assert budget == {"month": time.strftime("%Y-%m", time.gmtime()), "limit_usd": 0.001, "spent_usd": 0.0,
                      "reserved_usd": 0.0, "remaining_usd": 0.001, "soft_limit_reached": False}


def test_budget_status_and_soft_limit(shared, claude):
    client = shared(BUDGET_MONTHLY_USD="0.012", BUDGET_SOFT_LIMIT="0.5").test_client()
    claude.default = Script(reply=" ".join(["w"] * 600))
    _, body = chat(client, prompt=DESIGN, max_tokens=800)
    b = client.get("/api/v1/budget").get_json()
    assert b["spent_usd"] == pytest.approx(body["cost"]) and b["reserved_usd"] == pytest.approx(0)
    assert b["remaining_usd"] == pytest.approx(0.012 - body["cost"]) and b["soft_limit_reached"] is True


def test_per_key_budget(shared, claude):
    client = shared(GATEWAY_API_KEYS="a,b", BUDGET_PER_KEY_MONTHLY_USD="0.02").test_client()
    claude.default = Script(reply=" ".join(["w"] * 1000))
    _, body = chat(client, {"X-API-Key": "a"}, prompt=DESIGN, model="claude-sonnet", max_tokens=1000)
    assert body["cost"] > 0.01
    r, body = chat(client, {"X-API-Key": "a"}, prompt=DESIGN, model="claude-sonnet", max_tokens=1000)
    assert r.status_code == 429 and body["error"]["type"] == "budget_exceeded"
    r, _ = chat(client, {"X-API-Key": "b"}, prompt=DESIGN, model="claude-sonnet", max_tokens=1000)
    assert r.status_code == 200  # the other key has its own budget
    import hashlib
    key_a = hashlib.sha256(b"a").hexdigest()[:12]
    own = client.get(f"/api/v1/budget?key={key_a}", headers={"X-API-Key": "a"}).get_json()
    assert own["key"] == key_a and own["limit_usd"] == 0.02 and own["spent_usd"] > 0.01


# --------------------------------------------------------------------------- rate limits


def test_requests_per_minute_per_key(shared, same_minute):
    client = shared(GATEWAY_API_KEYS="a,b", RATE_LIMIT_RPM="3").test_client()
    for _ in range(3):
        assert chat(client, {"X-API-Key": "a"}, prompt=SIMPLE)[0].status_code == 200
    r, body = chat(client, {"X-API-Key": "a"}, prompt=SIMPLE)
    assert r.status_code == 429 and body["error"]["type"] == "rate_limited_rpm"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert chat(client, {"X-API-Key": "b"}, prompt=SIMPLE)[0].status_code == 200


def test_tokens_per_minute_per_key(shared, ollama, same_minute):
    client = shared(RATE_LIMIT_TPM="10").test_client()
    ollama.default = Script(reply=" ".join(["w"] * 20))
    assert chat(client, prompt=SIMPLE)[0].status_code == 200  # 3 in + 20 out: over the limit now
    r, body = chat(client, prompt=SIMPLE)
    assert r.status_code == 429 and body["error"]["type"] == "rate_limited_tpm"


# --------------------------------------------------------------------------- stats and decisions


def test_stats_identical_from_every_process(shared, claude):
    a, b = shared().test_client(), shared().test_client()
    chat(a, prompt=SIMPLE)
    chat(b, prompt=DESIGN)
    chat(b, prompt="")  # a 400
    sa, sb = a.get("/api/v1/stats").get_json(), b.get("/api/v1/stats").get_json()
    assert sa == sb
    assert sa["scope"] == "shared" and sa["requests"] == 2 and sa["local_share"] == 0.5
    assert sa["by_backend"] == {"anthropic": 1, "ollama": 1} and sa["errors"] == {"400": 1}


def test_decision_log(shared, claude):
    client = shared().test_client()
    chat(client, prompt=SIMPLE)
    chat(client, prompt=DESIGN)
    claude.default = Script(status=500)
    chat(client, prompt=DESIGN, model="claude-sonnet")
    rows = client.get("/api/v1/decisions?limit=2").get_json()["decisions"]
    assert len(rows) == 2
    # newest first, typed, with the reason the client was given
    assert rows[0]["decided_model"] == "claude-sonnet" and rows[0]["error"] == "upstream_error"
    assert rows[1]["model"] == "claude-sonnet" and rows[1]["fallback"] is False and rows[1]["cached"] is False
    assert isinstance(rows[1]["cost"], float) and rows[1]["cost"] > 0 and isinstance(rows[1]["attempts"], int)
    assert isinstance(rows[1]["score"], float) and rows[1]["reason"].startswith("complexity ")
    assert {"time", "request_id", "strategy", "score", "decided_tier", "reason"} <= set(rows[0])
    assert client.get("/api/v1/decisions?limit=0").status_code == 422


def test_a_write_redis_refuses_loses_only_itself(shared, claude, redis_server):
    """A request's writes go to Redis as one command; one that fails (here the stats hash is the wrong type)
    is logged and the others (spend, decision log) still land."""
    redis_server.client().set("hai:stats", "not a hash")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("gateway.state").addHandler(handler)
    try:
        client = shared().test_client()
        r, body = chat(client, prompt=DESIGN)
    finally:
        logging.getLogger("gateway.state").removeHandler(handler)
    assert r.status_code == 200 and body["cost"] > 0
    assert client.get("/api/v1/budget").get_json()["spent_usd"] == pytest.approx(body["cost"])
    assert client.get("/api/v1/decisions?limit=1").get_json()["decisions"][0]["request_id"] == body["request_id"]
    messages = [rec.getMessage() for rec in records]
    assert any("refused by redis: stats: WRONGTYPE" in m for m in messages), messages
    assert not any(DESIGN in m for m in messages)  # the error names the write, never the prompt


def test_every_request_reuses_a_connection_and_survives_redis_dropping_it(shared, redis_server):
    """The cache read and the batch of writes go over the store's own kept connections: many requests
    use one, one Redis closed while idle is replaced without losing a request or marking Redis down, and
    a Redis that forgot the write script (SCRIPT FLUSH, a restart) gets it again."""
    client = shared(CACHE_TTL_SECONDS=60).test_client()
    admin = redis_server.client()
    for i in range(20):
        assert chat(client, prompt=f"What is {i}?", temperature=0)[0].status_code == 200
    gateway_clients = [c for c in admin.client_list() if c["cmd"] in ("get", "evalsha")]
    assert len(gateway_clients) == 1
    admin.client_kill_filter(_id=gateway_clients[0]["id"])
    admin.script_flush()
    r, body = chat(client, prompt="What is 0?", temperature=0)
    assert r.status_code == 200 and body["cached"] is True  # read over a new connection
    assert "Redis is down" not in body["routing"]["reason"]
    r, body = chat(client, prompt="What is new?")
    stats = client.get("/api/v1/stats").get_json()
    assert stats["requests"] == 22 and stats["cached_requests"] == 1  # the writes landed


# --------------------------------------------------------------------------- concurrency


def test_concurrency_cap_holds_ollama_to_its_slots(shared, serve, ollama):
    import requests

    url = serve(shared(OLLAMA_MAX_CONCURRENCY="2"))
    ollama.default = Script(delay=0.3)
    results = []

    def call(i):
        results.append(requests.post(f"{url}/api/v1/chat", json={"prompt": f"What is {i}?",
                                                                 "strategy": "local-only"}, timeout=20).status_code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6 and ollama.max_inflight == 2


# --------------------------------------------------------------------------- Redis loss


def test_redis_lost_and_back(shared, redis_server, ollama, claude):
    client = shared(CACHE_TTL_SECONDS=60, BUDGET_MONTHLY_USD="5").test_client()
    assert chat(client, prompt=SIMPLE)[1]["cached"] is False
    redis_server.stop()
    try:
        r, body = chat(client, prompt="What is Rust?")
        assert r.status_code == 200 and body["backend"] == "ollama"  # still served
        r, body = chat(client, prompt=DESIGN)  # would go to Claude: spend cannot be guarded
        assert r.status_code == 200 and body["backend"] == "ollama" and "Redis is down" in body["routing"]["reason"]
        r, body = chat(client, prompt=DESIGN, model="claude-sonnet")
        assert r.status_code == 503 and body["error"]["type"] == "budget_unguarded"
        ready = client.get("/health/ready").get_json()
        assert ready["status"] == "ready" and ready["redis"] == {"configured": True, "ok": False,
                                                                 "failure_policy": "local-only"}
        assert client.get("/api/v1/stats").status_code == 503
        assert claude.requests == []
    finally:
        redis_server.start()
    time.sleep(1.1)  # the gateway retries Redis a moment after a failure
    assert client.get("/health/ready").get_json()["redis"]["ok"] is True
    r, body = chat(client, prompt=DESIGN)
    assert r.status_code == 200 and body["backend"] == "anthropic"
    chat(client, prompt="What is Go?", temperature=0)
    assert chat(client, prompt="What is Go?", temperature=0)[1]["cached"] is True
    assert client.get("/api/v1/budget").get_json()["spent_usd"] == pytest.approx(body["cost"])


def test_redis_down_with_allow_policy_keeps_paid_calls(shared, redis_server, claude):
    client = shared(BUDGET_MONTHLY_USD="5", REDIS_FAILURE_POLICY="allow").test_client()
    redis_server.stop()
    r, body = chat(client, prompt=DESIGN)
    assert r.status_code == 200 and body["backend"] == "anthropic"
