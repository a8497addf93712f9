"""Local capacity as a routing input: with every capped local slot busy (OLLAMA_MAX_CONCURRENCY), a request
waits up to a bound that depends on its strategy and X-Priority, then spills to the next model when the money
rules allow (PAID_FALLBACK=cloud: a prompt decided local is paid for only when the operator said so), saying
why; else a 503 with Retry-After. Never an unbounded wait."""

from __future__ import annotations

import threading
import time

import pytest

from tests.fakes import Script
from tests.gateway.test_observability import sample

SIMPLE = "What is Python?"


@pytest.fixture
def busy(ollama):
    """The one local slot held by a call that takes `seconds`."""
    threads = []

    def hold(client, seconds: float, key: str | None = None):
        ollama.queue(Script(delay=seconds))
        t = threading.Thread(target=lambda: client.post("/api/v1/chat", json={"prompt": "Hold the slot.",
                                                                              "model": "tinyllama"},
                                                        headers={"X-API-Key": key} if key else {}))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while ollama.inflight < 1:
            assert time.monotonic() < deadline, "the first call never reached Ollama"
            time.sleep(0.01)

    yield hold
    for t in threads:
        t.join()


def test_a_full_fleet_spills_to_the_cloud_and_says_why(make_app, busy, ollama, claude):
    client = make_app(OLLAMA_MAX_CONCURRENCY="1", CONCURRENCY_WAIT_SECONDS="0.3", PAID_FALLBACK="cloud").test_client()
    before = client.get("/metrics").get_data(as_text=True)
    busy(client, 2.0)
    waiting = []
    watcher = threading.Thread(target=lambda: (time.sleep(0.15), waiting.append(sample(
        client.get("/metrics").get_data(as_text=True), "api_gateway_slot_waiting", backend="ollama"))))
    watcher.start()
    r = client.post("/api/v1/chat", json={"prompt": SIMPLE})
    watcher.join()
    assert waiting == [1.0], "the waiting request is visible while it waits"
    body = r.get_json()
    assert r.status_code == 200 and body["backend"] == "anthropic", body
    reason = body["routing"]["reason"]
    assert "all 1 ollama slots busy for 0.3 s: spilled to claude" in reason, reason
    assert body["routing"]["attempts"][0]["error_type"] == "concurrency_cap"
    after = client.get("/metrics").get_data(as_text=True)
    spilled = lambda t: sample(t, "api_gateway_fallbacks_total", kind="capacity")  # noqa: E731
    assert spilled(after) == spilled(before) + 1
    assert len(ollama.calls("/api/chat")) == 1  # only the call that held the slot


def test_without_paid_fallback_the_wait_ends_in_a_503_with_retry_after(make_app, busy, ollama, claude):
    client = make_app(OLLAMA_MAX_CONCURRENCY="1", CONCURRENCY_WAIT_SECONDS="0.3").test_client()  # PAID_FALLBACK=refuse
    busy(client, 2.0)
    r = client.post("/api/v1/chat", json={"prompt": SIMPLE})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert "ollama slots busy" in r.get_json()["error"]["message"] and claude.requests == []


def test_priority_sets_how_long_a_request_waits_for_a_slot(make_app, busy, ollama, claude):
    """The slot frees after 1 s. Waiting 0.8 s (normal) x 0.25 (high): spilled; x 3 (low): the slot frees first."""
    client = make_app(OLLAMA_MAX_CONCURRENCY="1", CONCURRENCY_WAIT_SECONDS="0.8", PAID_FALLBACK="cloud").test_client()
    busy(client, 1.0)
    high = client.post("/api/v1/chat", json={"prompt": SIMPLE}, headers={"X-Priority": "high"}).get_json()
    assert high["backend"] == "anthropic" and "busy for 0.2 s" in high["routing"]["reason"]
    low = client.post("/api/v1/chat", json={"prompt": SIMPLE}, headers={"X-Priority": "low"}).get_json()
    assert low["backend"] == "ollama" and low["model"] == "tinyllama"


def test_a_bad_priority_is_a_clear_error_in_each_protocols_shape(make_app):
    client = make_app().test_client()
    native = client.post("/api/v1/chat", json={"prompt": SIMPLE}, headers={"X-Priority": "urgent"})
    assert native.status_code == 422 and "X-Priority must be one of high, normal, low" in \
        native.get_json()["error"]["message"] and native.get_json()["request_id"]
    openai = client.post("/v1/chat/completions", headers={"X-Priority": "urgent"},
                         json={"model": "auto", "messages": [{"role": "user", "content": SIMPLE}]})
    assert openai.status_code == 422 and openai.get_json()["error"]["param"] == "X-Priority"


@pytest.mark.parametrize("shared", [False, True], ids=["one_process", "redis"])
def test_a_free_slot_goes_round_the_waiting_keys(make_app, busy, ollama, redis_server, shared):
    """Key A has three requests waiting, key B one that came later: the slots go A, B, A, A. A queue in arrival
    order would serve B last; one key's burst cannot starve another key."""
    env = {"GATEWAY_API_KEYS": "key-a,key-b,key-h", "OLLAMA_MAX_CONCURRENCY": "1", "CONCURRENCY_WAIT_SECONDS": "30"}
    if shared:
        env["REDIS_URL"] = redis_server.url
    client = make_app(**env).test_client()
    ollama.default = Script(delay=0.15)
    busy(client, 0.6, key="key-h")
    threads = []
    for key, prompt in (("key-a", "A1"), ("key-a", "A2"), ("key-a", "A3"), ("key-b", "B1")):
        threads.append(threading.Thread(target=lambda k=key, p=prompt: client.post(
            "/api/v1/chat", json={"prompt": f"Say {p}.", "model": "tinyllama"}, headers={"X-API-Key": k})))
        threads[-1].start()
        time.sleep(0.08)  # arrival order: A1, A2, A3, then B1
    for t in threads:
        t.join()
    served = [c.body["messages"][-1]["content"].removeprefix("Say ").removesuffix(".")
              for c in ollama.calls("/api/chat")][1:]
    assert served == ["A1", "B1", "A2", "A3"], served


def test_the_queue_is_bounded():
    from gateway.state.ratelimit import MemoryConcurrencyCap, RedisConcurrencyCap

    cap = MemoryConcurrencyCap({"ollama": 1})
    held = cap.acquire("ollama", 0)
    bound = RedisConcurrencyCap.queue_bound(1)
    waiting = [threading.Thread(target=cap.acquire, args=("ollama", 1.0, f"k{i}")) for i in range(bound)]
    for t in waiting:
        t.start()
    deadline = time.monotonic() + 5
    while len(cap._waiting["ollama"]) < bound:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert cap.acquire("ollama", 30.0, "late") is None  # full: refused at once, not after 30 s
    assert len(cap._waiting["ollama"]) == bound
    cap.release("ollama", held)
    for t in waiting:
        t.join()


def test_a_keys_own_priority_applies_unless_the_request_says_otherwise(make_app, busy, ollama, claude):
    from gateway.api.hooks import key_id
    from gateway.config import ConfigError, Settings

    client = make_app(GATEWAY_API_KEYS="key-batch,key-app,key-h", KEY_PRIORITIES=f"{key_id('key-batch')}=high",
                      OLLAMA_MAX_CONCURRENCY="1", CONCURRENCY_WAIT_SECONDS="0.8", PAID_FALLBACK="cloud").test_client()
    busy(client, 1.0, key="key-h")
    quick = client.post("/api/v1/chat", json={"prompt": SIMPLE}, headers={"X-API-Key": "key-batch"}).get_json()
    assert quick["backend"] == "anthropic" and "busy for 0.2 s" in quick["routing"]["reason"]  # its own: high
    patient = client.post("/api/v1/chat", json={"prompt": SIMPLE},
                          headers={"X-API-Key": "key-batch", "X-Priority": "low"}).get_json()
    assert patient["backend"] == "ollama"  # the header wins
    with pytest.raises(ConfigError, match="KEY_PRIORITIES"):
        Settings.from_env({"KEY_PRIORITIES": "abc=urgent"})
