"""Every key in its own lane: a key sees its own budget, stats, decisions and cached answers, an admin key
(GATEWAY_ADMIN_KEYS) sees every key's, and /metrics is open to no address by default."""

from __future__ import annotations

import hashlib

import pytest

from tests.fakes import Script

DESIGN = ("Design a distributed system for real-time chat that scales to millions of users, with fault "
          "tolerance and message ordering.")
A, B, ADMIN = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}, {"X-API-Key": "key-admin"}


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@pytest.fixture(params=["redis", "memory"])
def client(request, make_app, redis_server):
    env = {"GATEWAY_API_KEYS": "key-a,key-b", "GATEWAY_ADMIN_KEYS": "key-admin", "BUDGET_PER_KEY_MONTHLY_USD": "5",
           "BUDGET_MONTHLY_USD": "50", "CACHE_TTL_SECONDS": "60"}
    if request.param == "redis":
        env["REDIS_URL"] = redis_server.url
    return make_app(**env).test_client()


def chat(client, headers, **body):
    r = client.post("/api/v1/chat", json=body, headers=headers)
    return r, r.get_json()


def test_a_key_sees_only_its_own_budget(client, claude):
    chat(client, A, prompt=DESIGN)
    own = client.get("/api/v1/budget", headers=B).get_json()
    assert own["key"] == key_id("key-b") and own["spent_usd"] == 0 and own["limit_usd"] == 5
    r = client.get(f"/api/v1/budget?key={key_id('key-a')}", headers=B)
    assert r.status_code == 403 and r.get_json()["error"]["type"] == "forbidden"
    assert str(key_id("key-a")) not in r.get_data(as_text=True)
    # an admin key reads any key's, and the global one
    theirs = client.get(f"/api/v1/budget?key={key_id('key-a')}", headers=ADMIN).get_json()
    assert theirs["spent_usd"] > 0 and theirs["limit_usd"] == 5
    assert client.get("/api/v1/budget", headers=ADMIN).get_json()["limit_usd"] == 50


def test_a_raw_key_in_the_query_is_refused_not_echoed(client):
    r = client.get("/api/v1/budget?key=key-a", headers=ADMIN)
    assert r.status_code == 422 and "key-a" not in r.get_data(as_text=True)


def test_a_key_sees_only_its_own_decisions(client, ollama):
    for i in range(3):
        chat(client, A, prompt=f"What is {i}?")
    chat(client, B, prompt="What is B?")
    mine = client.get("/api/v1/decisions", headers=B).get_json()["decisions"]
    assert [d["key_id"] for d in mine] == [key_id("key-b")]
    every = client.get("/api/v1/decisions", headers=ADMIN).get_json()["decisions"]
    assert sorted(d["key_id"] for d in every) == sorted([key_id("key-a")] * 3 + [key_id("key-b")])
    assert len(client.get("/api/v1/decisions?limit=2", headers=A).get_json()["decisions"]) == 2


def test_a_key_sees_only_its_own_stats(client, ollama, claude):
    chat(client, A, prompt=DESIGN)
    chat(client, B, prompt="What is Python?")
    mine = client.get("/api/v1/stats", headers=B).get_json()
    assert mine["scope"] == "key" and mine["requests"] == 1 and mine["by_model"] == {"tinyllama": 1}
    assert "by_key" not in mine and mine["spend_this_month"]["spent_usd"] == 0
    assert key_id("key-a") not in str(mine)
    every = client.get("/api/v1/stats", headers=ADMIN).get_json()
    assert every["requests"] == 2 and set(every["by_key"]) == {key_id("key-a"), key_id("key-b")}


def test_the_cache_is_partitioned_per_key(client, ollama):
    _, first = chat(client, A, prompt="What is Python?", temperature=0)
    _, other = chat(client, B, prompt="What is Python?", temperature=0)
    _, again = chat(client, A, prompt="What is Python?", temperature=0)
    assert (first["cached"], other["cached"], again["cached"]) == (False, False, True)
    assert len(ollama.calls("/api/chat")) == 2  # B's question never read A's answer


def test_one_cache_for_every_key_only_when_the_operator_says_so(make_app, ollama):
    client = make_app(GATEWAY_API_KEYS="key-a,key-b", CACHE_TTL_SECONDS="60",
                      CACHE_SHARED_ACROSS_KEYS="true").test_client()
    chat(client, A, prompt="What is Python?", temperature=0)
    assert chat(client, B, prompt="What is Python?", temperature=0)[1]["cached"] is True


def test_without_keys_there_is_one_tenant_that_sees_everything(make_app, ollama):
    client = make_app().test_client()
    chat(client, {}, prompt="What is Python?")
    assert client.get("/api/v1/stats").get_json()["scope"] in ("process", "shared")
    assert len(client.get("/api/v1/decisions").get_json()["decisions"]) == 1


# --------------------------------------------------------------------------- the cache answers what was asked


def _cache_client(make_app, redis_server, **env):
    # a breaker that does not open on the failures these tests script: the cache is what they look at
    return make_app(REDIS_URL=redis_server.url, CACHE_TTL_SECONDS="60", BREAKER_FAILURE_THRESHOLD="50",
                    **env).test_client()


def test_a_fallback_answer_is_not_served_as_the_decided_models(make_app, redis_server, ollama, claude):
    client = _cache_client(make_app, redis_server)
    claude.queue(Script(status=500), Script(status=500), Script(status=500), Script(status=500),
                 Script(status=500), Script(status=500))
    _, body = chat(client, {}, prompt=DESIGN, temperature=0)
    assert body["backend"] == "ollama"  # Claude (both models) failed: a local model answered
    # Claude is back: the next identical request goes to Claude, not to the local stand-in's cached answer
    _, body = chat(client, {}, prompt=DESIGN, temperature=0)
    assert body["backend"] == "anthropic" and body["cached"] is False


def test_a_rejected_local_answer_sent_because_the_cloud_failed_is_never_cached(make_app, redis_server, ollama,
                                                                                claude):
    client = _cache_client(make_app, redis_server)
    ollama.default = Script(reply="I'm sorry, I cannot help with that.")  # the review rejects a refusal
    claude.default = Script(status=500)
    _, body = chat(client, {}, prompt="What is 2 + 2?", strategy="cascade", temperature=0)
    assert body["backend"] == "ollama" and body["routing"]["attempts"][0]["outcome"] == "rejected"
    claude.default = Script(reply="4")
    _, body = chat(client, {}, prompt="What is 2 + 2?", strategy="cascade", temperature=0)
    assert body["cached"] is False and body["backend"] == "anthropic"


def test_an_unreviewed_answer_is_not_served_to_a_cascade_request(make_app, redis_server, ollama):
    client = _cache_client(make_app, redis_server)
    chat(client, {}, prompt="What is Python?", temperature=0)                      # auto: not reviewed
    _, body = chat(client, {}, prompt="What is Python?", temperature=0, strategy="cascade")
    assert body["cached"] is False


@pytest.mark.parametrize(("first", "second"), [
    ({"temperature": 0}, {"temperature": 0.2}),
    ({"max_tokens": 50}, {"max_tokens": 51}),
    ({"stop": ["\n"]}, {"stop": ["."]}),
    ({"system": "Be brief."}, {"system": "Be thorough."}),
    ({"model": "tinyllama"}, {"model": "phi"}),
], ids=["temperature", "max_tokens", "stop", "system", "model"])
def test_every_answer_changing_field_is_in_the_cache_key(make_app, redis_server, ollama, first, second):
    client = _cache_client(make_app, redis_server)
    base = {"prompt": "What is Python?", "temperature": 0}
    chat(client, {}, **{**base, **first})
    assert chat(client, {}, **{**base, **first})[1]["cached"] is True  # the same request hits
    assert chat(client, {}, **{**base, **second})[1]["cached"] is False
