"""Several Ollama hosts (OLLAMA_URLS) behind the one `ollama` backend: a call goes to a host that has the
model, loaded before cold, then the fewest in flight; a host that refuses the connection is skipped within
the same call and its breaker opens; health is every host's; nothing changes with one host."""

from __future__ import annotations

import threading
import time

import pytest

from tests.fakes import FakeOllama, Script

SIMPLE = "What is Python?"


@pytest.fixture
def hosts():
    made = [FakeOllama(installed=("tinyllama", "phi"), loaded=()), FakeOllama(installed=("tinyllama", "phi"),
                                                                              loaded=())]
    yield made
    for h in made:
        h.close()


def chat(client, **body):
    return client.post("/api/v1/chat", json={"prompt": SIMPLE, "strategy": "local-only", **body})


def test_a_call_goes_to_a_host_that_has_the_model(make_app, hosts):
    a, b = hosts
    a.installed, b.installed = {"tinyllama"}, {"phi"}
    client = make_app(OLLAMA_URLS=f"{a.url},{b.url}").test_client()
    assert chat(client, model="phi").status_code == 200
    assert chat(client, model="tinyllama").status_code == 200
    assert [c.body["model"] for c in a.calls("/api/chat")] == ["tinyllama"]
    assert [c.body["model"] for c in b.calls("/api/chat")] == ["phi"]


def test_loaded_before_cold(make_app, hosts):
    from tests.gateway.test_observability import sample

    a, b = hosts
    b.loaded = {"tinyllama"}  # a would have to load it first
    client = make_app(OLLAMA_URLS=f"{a.url},{b.url}").test_client()
    cold = lambda: sample(client.get("/metrics").get_data(as_text=True),  # noqa: E731
                          "api_gateway_ollama_cold_loads_total", host=a.url)
    for _ in range(3):
        assert chat(client, model="tinyllama").status_code == 200
    assert len(b.calls("/api/chat")) == 3 and a.calls("/api/chat") == []
    assert chat(client, model="phi").status_code == 200  # loaded nowhere: a cold load, counted
    assert cold() + sample(client.get("/metrics").get_data(as_text=True), "api_gateway_ollama_cold_loads_total",
                           host=b.url) == 1


def test_calls_in_flight_spread_over_the_hosts(make_app, hosts):
    a, b = hosts
    a.loaded = b.loaded = {"tinyllama"}
    a.default = b.default = Script(delay=0.5)
    client = make_app(OLLAMA_URLS=f"{a.url},{b.url}").test_client()
    barrier, codes = threading.Barrier(6), []

    def call():
        barrier.wait()
        codes.append(chat(client, model="tinyllama").status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 6
    assert len(a.calls("/api/chat")) == len(b.calls("/api/chat")) == 3  # the fewest in flight, each time


def test_a_host_known_down_is_never_tried(make_app, hosts, unused_port):
    a, _ = hosts
    down = f"http://127.0.0.1:{unused_port}"
    client = make_app(OLLAMA_URLS=f"{down},{a.url}").test_client()
    for _ in range(3):
        assert chat(client, model="tinyllama").status_code == 200
    assert len(a.calls("/api/chat")) == 3
    assert client.get("/health/ready").get_json()["status"] == "ready"


def test_a_host_that_dies_between_checks_is_skipped_in_the_same_call_and_its_breaker_opens(make_app, hosts):
    a, b = hosts
    a.loaded = b.loaded = {"tinyllama"}
    a.default = Script(delay=0.05)  # slower: b is preferred once both have answered
    client = make_app(OLLAMA_URLS=f"{a.url},{b.url}", BREAKER_FAILURE_THRESHOLD="2",
                      HEALTH_CACHE_SECONDS="3600").test_client()
    assert chat(client, model="tinyllama").status_code == 200 and chat(client, model="tinyllama").status_code == 200
    assert len(a.calls("/api/chat")) == len(b.calls("/api/chat")) == 1
    b.default = Script(drop=True)  # gone: connections close unanswered; the last health check says it is up
    for _ in range(4):
        r = chat(client, model="tinyllama")
        assert r.status_code == 200 and len(r.get_json()["routing"]["attempts"]) == 1  # the user sees no failure
    assert len(a.calls("/api/chat")) == 5
    pool = client.application.extensions["gateway"].upstreams.backends["ollama"].pool
    assert pool.hosts[1].breaker.state == "open"  # two refusals: not tried again until the cool-down


def test_health_is_every_hosts(make_app, hosts, unused_port):
    a, b = hosts
    a.installed, a.loaded = {"tinyllama"}, {"tinyllama"}
    b.installed, b.loaded = {"phi", "tinyllama"}, set()
    down = f"http://127.0.0.1:{unused_port}"
    client = make_app(OLLAMA_URLS=f"{a.url},{b.url},{down}").test_client()
    svc = client.application.extensions["gateway"]
    health = svc.upstreams.health("ollama")
    assert health.ok and health.detail.startswith("2 of 3 hosts up")
    assert set(health.models) == {"tinyllama", "phi"} and health.models["tinyllama"].warm is True
    assert health.models["phi"].warm is False
    models = {m["name"]: m for m in client.get("/api/v1/models").get_json()["models"]}
    assert models["phi"]["available"] and models["tinyllama"]["warm"] and not models["mistral"]["available"]


def test_one_url_or_a_bad_list(make_app, ollama):
    from gateway.config import ConfigError, Settings

    one = make_app(OLLAMA_URLS=ollama.url).test_client()  # one URL: as OLLAMA_URL, no host choice
    assert one.application.extensions["gateway"].upstreams.backends["ollama"].pool.single
    assert chat(one, model="tinyllama").status_code == 200
    with pytest.raises(ConfigError, match="OLLAMA_URLS: 'ftp://x' must start with http"):
        Settings.from_env({"OLLAMA_URLS": f"{ollama.url},ftp://x"})


def test_each_host_in_the_metrics(make_app, hosts, unused_port):
    from tests.gateway.test_observability import sample

    a, _ = hosts
    down = f"http://127.0.0.1:{unused_port}"
    client = make_app(OLLAMA_URLS=f"{a.url},{down}").test_client()
    assert chat(client, model="tinyllama").status_code == 200
    streamed = chat(client, model="tinyllama", stream=True)
    streamed.get_data()
    streamed.close()  # a stream holds its host's lease until it ends, then gives it back
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "api_gateway_ollama_host_up", host=a.url) == 1
    assert sample(text, "api_gateway_ollama_host_up", host=down) == 0
    assert sample(text, "api_gateway_ollama_host_in_flight", host=a.url) == 0  # both calls gave their leases back


def test_the_fleets_slots_cap_calls_when_each_hosts_slots_are_known(make_app, hosts, claude):
    """OLLAMA_NUM_PARALLEL=1 on two hosts and no OLLAMA_MAX_CONCURRENCY: two calls at once, the third finds
    every slot busy, waits, then spills (PAID_FALLBACK=cloud) saying so."""
    a, b = hosts
    a.loaded = b.loaded = {"tinyllama"}
    a.default = b.default = Script(delay=1.0)
    client = make_app(OLLAMA_URLS=f"{a.url},{b.url}", OLLAMA_NUM_PARALLEL="1", CONCURRENCY_WAIT_SECONDS="0.2",
                      PAID_FALLBACK="cloud").test_client()
    assert client.application.extensions["gateway"].state.concurrency.caps["ollama"] == 2
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(chat(client, model="tinyllama"))) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while a.posts_inflight + b.posts_inflight < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    third = client.post("/api/v1/chat", json={"prompt": SIMPLE}).get_json()
    for t in threads:
        t.join()
    assert [r.status_code for r in answers] == [200, 200]
    assert third["backend"] == "anthropic" and "all 2 ollama slots busy" in third["routing"]["reason"]
