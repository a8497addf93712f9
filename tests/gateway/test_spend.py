"""Every cent recorded: paid work that fails is charged what the provider bills for it, reservations that
outlive their call become spend, settles that Redis missed are sent again, and what is sent upstream is
what was reserved. The fakes keep the provider's own bill (what they generated), which every test
compares with what the gateway recorded."""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests
import yaml

from gateway.state.budget import MemoryLedger, RedisLedger
from gateway.state.store import RedisStore
from tests.conftest import ROOT
from tests.fakes import Script

DESIGN = ("Design a distributed system for real-time chat that scales to millions of users, with fault "
          "tolerance and message ordering.")
SONNET_IN, SONNET_OUT = 2.0, 10.0  # USD per Mtok (configs/models.yaml)
KEY = {"X-API-Key": "team-key"}


def usd(input_tokens: int, output_tokens: int, price_in: float = SONNET_IN, price_out: float = SONNET_OUT) -> float:
    return (input_tokens * price_in + output_tokens * price_out) / 1e6


@pytest.fixture(params=["redis", "memory"])
def paid_app(request, make_app, redis_server):
    """A gateway with $1 global and per-key budgets, on Redis or in-process state."""
    def _make(**env):
        if request.param == "redis":
            env["REDIS_URL"] = redis_server.url
        return make_app(BUDGET_MONTHLY_USD="1", BUDGET_PER_KEY_MONTHLY_USD="1", GATEWAY_API_KEYS="team-key",
                        GATEWAY_ADMIN_KEYS="admin-key", **env)
    return _make


def spent(app) -> dict:
    return app.extensions["gateway"].budget()


# --------------------------------------------------------------------------- failed paid calls are charged


def test_a_paid_call_that_times_out_after_generating_is_charged_what_it_generated(paid_app, claude):
    # The review's reproduction: an upstream that keeps generating, ANTHROPIC_TIMEOUT, a large max_tokens.
    app = paid_app(ANTHROPIC_TIMEOUT="1")
    claude.default = Script(reply="w", endless=True, chunk_delay=0.005)
    r = app.test_client().post("/api/v1/chat", headers=KEY, json={
        "prompt": DESIGN, "model": "claude-sonnet", "max_tokens": 32000})
    assert r.status_code == 504
    [attempt] = r.get_json()["error"]["attempts"]
    time.sleep(0.1)  # the fake notices the closed connection at its next write
    bill = claude.billed(SONNET_IN, SONNET_OUT)
    budget = spent(app)
    assert budget["reserved_usd"] == pytest.approx(0, abs=1e-12)
    assert budget["spent_usd"] == pytest.approx(attempt["cost"]) and budget["spent_usd"] > 0
    # exact input (message_start), output as received: at most what the provider billed, short of it only by
    # what was still in flight when the connection closed
    [(input_tokens, generated, *_)] = claude.bills
    assert input_tokens == len(DESIGN.split())
    assert bill - 10 * SONNET_OUT / 1e6 <= budget["spent_usd"] <= bill
    assert generated > 50


def test_a_paid_call_with_no_answer_at_all_is_charged_its_worst_case(paid_app, claude):
    # The upstream took the request and said nothing before the read timeout: it may have worked on it.
    app = paid_app(ANTHROPIC_TIMEOUT="0.3")
    claude.default = Script(delay=1.0)
    r = app.test_client().post("/api/v1/chat", headers=KEY, json={
        "prompt": DESIGN, "model": "claude-sonnet", "max_tokens": 500})
    assert r.status_code == 504
    worst = usd(len(DESIGN.encode()) + 32, 500)
    assert r.get_json()["error"]["attempts"][0]["cost"] == pytest.approx(worst)
    assert spent(app)["spent_usd"] == pytest.approx(worst)


@pytest.mark.parametrize("script", [Script(status=529, error_type="overloaded_error"), Script(status=400),
                                    Script(status=401)], ids=["529", "400", "401"])
def test_a_refused_paid_call_is_charged_nothing(paid_app, claude, script):
    app = paid_app()
    claude.default = script
    r = app.test_client().post("/api/v1/chat", headers=KEY, json={"prompt": DESIGN, "model": "claude-sonnet"})
    assert r.status_code >= 500 and all("cost" not in a for a in r.get_json()["error"]["attempts"])
    assert spent(app)["spent_usd"] == 0 and spent(app)["reserved_usd"] == pytest.approx(0, abs=1e-12)


def test_retries_and_fallbacks_are_each_charged_and_stay_in_the_budget(paid_app, claude):
    # Each try reserves its own worst case: a cut, its retry and the fallback cannot spend past the budget.
    app = paid_app()
    claude.queue(Script(reply="a b c d e f", cut_after=3), Script(reply="a b c d e f", error_after=2),
                 Script(reply="a b c d e f", cut_after=1))
    r = app.test_client().post("/api/v1/chat", headers=KEY, json={"prompt": DESIGN, "max_tokens": 100})
    body = r.get_json()
    assert r.status_code == 200 and body["model"] == "claude-haiku"
    costs = [a.get("cost") for a in body["routing"]["attempts"]]
    n_in = len(DESIGN.split())
    assert costs[:3] == [pytest.approx(usd(n_in, 3)), pytest.approx(usd(n_in, 2)), pytest.approx(usd(n_in, 1))]
    assert spent(app)["spent_usd"] == pytest.approx(sum(costs[:3]) + body["cost"])
    assert spent(app)["spent_usd"] == pytest.approx(claude.billed(SONNET_IN, SONNET_OUT) - _haiku_discount(claude))


def _haiku_discount(claude) -> float:
    """The fake bills every model at Sonnet's prices; the last call went to Haiku ($1 / $5)."""
    i, o, *_ = claude.bills[-1]
    return usd(i, o) - usd(i, o, 1.0, 5.0)


# --------------------------------------------------------------------------- streams


def _stream(url: str, **body) -> requests.Response:
    return requests.post(f"{url}/v1/chat/completions", headers=KEY, stream=True, timeout=20, json={
        "model": "claude-sonnet", "messages": [{"role": "user", "content": DESIGN}], "stream": True, **body})


def test_an_interrupted_stream_is_charged_the_exact_input_and_the_output_received(paid_app, serve, claude):
    app = paid_app()
    url = serve(app)
    claude.default = Script(reply="a b c d e f g h", cut_after=3)
    r = _stream(url)
    assert '"code": "stream_interrupted"' in r.text or '"code":"stream_interrupted"' in r.text
    time.sleep(0.1)
    # input as message_start reported it (not characters / 4), output: the 3 pieces that arrived
    assert spent(app)["spent_usd"] == pytest.approx(usd(len(DESIGN.split()), 3))
    assert spent(app)["spent_usd"] == pytest.approx(claude.billed(SONNET_IN, SONNET_OUT))


def test_an_abandoned_stream_is_charged_what_the_provider_generated(paid_app, serve, claude):
    app = paid_app()
    url = serve(app)
    claude.default = Script(reply="w", endless=True, chunk_delay=0.01)
    r = _stream(url)
    lines = r.iter_lines()
    for _ in range(5):
        next(lines)
    r.close()  # the client leaves mid-answer
    deadline = time.monotonic() + 5
    while spent(app)["spent_usd"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    bill = claude.billed(SONNET_IN, SONNET_OUT)
    assert spent(app)["reserved_usd"] == pytest.approx(0, abs=1e-12)
    assert bill - 10 * SONNET_OUT / 1e6 <= spent(app)["spent_usd"] <= bill


# --------------------------------------------------------------------------- reservations


@pytest.mark.parametrize("store", ["redis", "memory"])
def test_an_expired_reservation_becomes_spend_at_its_worst_case(redis_server, store):
    from gateway.state.budget import Limits

    now = [1_700_000_000.0]
    limits = Limits(monthly_usd=10.0, per_key_monthly_usd=5.0)
    if store == "redis":
        import redis

        ledger = RedisLedger(RedisStore(redis.Redis.from_url(redis_server.url, decode_responses=True)), limits,
                             wall=lambda: now[0])
    else:
        ledger = MemoryLedger(limits, wall=lambda: now[0])
    res = ledger.reserve("k1", 0.5, ttl=100, model="claude-sonnet", backend="anthropic")
    assert ledger.month_totals()["reserved"] == pytest.approx(0.5)
    now[0] += 101  # its worker died: nothing ever settles it
    assert ledger.reserve("k2", 0.1, ttl=100) is not None  # any later reservation sweeps
    totals = ledger.month_totals()
    assert totals["total"] == pytest.approx(0.5) and totals["key:k1"] == pytest.approx(0.5)
    assert totals["model:claude-sonnet"] == pytest.approx(0.5) and totals["expired"] == pytest.approx(0.5)
    assert totals["reserved"] == pytest.approx(0.1) and totals.get("reserved:k1", 0) == pytest.approx(0)
    # a settle that arrives after that (or twice) changes nothing: the worst case already covers it
    ledger.record(cost=0.2, cloud_cost=0.2, model="claude-sonnet", backend="anthropic", key_id="k1",
                  reservation=res)
    if store == "redis":
        ledger.store.flush_undelivered()
    assert ledger.month_totals()["total"] == pytest.approx(0.5)


def test_reservations_and_leases_outlive_the_longest_call(make_app, claude):
    app = make_app(BUDGET_MONTHLY_USD="1", REQUEST_DEADLINE_SECONDS="100", ANTHROPIC_TIMEOUT="250",
                   STREAM_SEND_TIMEOUT_SECONDS="30")
    svc = app.extensions["gateway"]
    seen = []
    reserve = svc.state.ledger.reserve
    svc.state.ledger.reserve = lambda *a, **kw: seen.append(a[2]) or reserve(*a, **kw)
    app.test_client().post("/api/v1/chat", json={"prompt": DESIGN, "model": "claude-sonnet"})
    # a try that starts just before the deadline may read for the whole timeout, then wait on a slow client
    assert seen and seen[0] >= 100 + 250 + 30
    assert svc.settings.longest_call_seconds == seen[0]


def test_a_settle_redis_missed_is_sent_again(make_app, redis_server, claude):
    # The settle of a paid call reaches Redis while it is stalled: the write is kept, sent with the next
    # request, and the reservation settles to the real cost (not left to expire).
    app = make_app(REDIS_URL=redis_server.url, BUDGET_MONTHLY_USD="1", REDIS_SOCKET_TIMEOUT="0.2")
    client = app.test_client()
    claude.default = Script(reply="one two three", delay=0.6)
    admin = redis_server.client()
    pause = threading.Timer(0.3, lambda: admin.execute_command("CLIENT", "PAUSE", "1200", "ALL"))
    pause.start()
    r = client.post("/api/v1/chat", json={"prompt": DESIGN, "model": "claude-sonnet"})
    assert r.status_code == 200
    cost = r.get_json()["cost"]
    time.sleep(1.5)  # Redis answers again; the gateway retries it a moment after a failure
    client.post("/api/v1/chat", json={"prompt": "What is Python?", "strategy": "local-only"})
    totals = app.extensions["gateway"].budget()
    assert totals["spent_usd"] == pytest.approx(cost) and totals["reserved_usd"] == pytest.approx(0, abs=1e-12)


# --------------------------------------------------------------------------- what is sent is what is reserved


@pytest.fixture
def capped_catalog(tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "models.yaml").read_text())
    raw["models"].insert(3, {"name": "compat-cloud", "backend": "openai_compat", "id": "compat-model",
                             "tier": "cloud", "context_window": 128000, "max_output_tokens": 50,
                             "price_in_per_mtok": 0.5, "price_out_per_mtok": 1.5})
    raw["models"].append({"name": "compat-o", "backend": "openai_compat", "id": "compat-reasoning",
                          "tier": "cloud", "context_window": 128000, "max_tokens_param": "max_completion_tokens",
                          "price_in_per_mtok": 1.0, "price_out_per_mtok": 4.0})
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_every_backend_caps_max_tokens_the_way_the_reservation_does(make_app, compat, capped_catalog):
    app = make_app(MODELS_CONFIG=capped_catalog, OPENAI_COMPAT_URL=f"{compat.url}/v1",
                   OPENAI_COMPAT_API_KEY="sk-compat-test", BUDGET_MONTHLY_USD="1")
    svc = app.extensions["gateway"]
    amounts = []
    reserve = svc.state.ledger.reserve
    svc.state.ledger.reserve = lambda *a, **kw: amounts.append(a[1]) or reserve(*a, **kw)
    r = app.test_client().post("/api/v1/chat", json={"prompt": DESIGN, "model": "compat-cloud", "max_tokens": 5000})
    assert r.status_code == 200
    sent = compat.calls("/v1/chat/completions")[-1].body
    assert sent["max_tokens"] == 50  # the model's own limit, as for Anthropic
    assert amounts == [pytest.approx((len(DESIGN.encode()) + 32) * 0.5 / 1e6 + 50 * 1.5 / 1e6)]


def test_reasoning_models_get_their_limit_as_max_completion_tokens(make_app, compat, capped_catalog):
    app = make_app(MODELS_CONFIG=capped_catalog, OPENAI_COMPAT_URL=f"{compat.url}/v1",
                   OPENAI_COMPAT_API_KEY="sk-compat-test")
    r = app.test_client().post("/api/v1/chat", json={"prompt": DESIGN, "model": "compat-o", "max_tokens": 300})
    assert r.status_code == 200, r.get_json()
    sent = compat.calls("/v1/chat/completions")[-1].body
    assert sent["max_completion_tokens"] == 300 and "max_tokens" not in sent


# --------------------------------------------------------------------------- usage as the upstreams report it


def test_a_reply_without_usage_counts_the_output_received_not_zero(make_app, compat, capped_catalog):
    app = make_app(MODELS_CONFIG=capped_catalog, OPENAI_COMPAT_URL=f"{compat.url}/v1",
                   OPENAI_COMPAT_API_KEY="sk-compat-test")
    compat.default = Script(reply="one two three four", omit_counts=True)
    body = app.test_client().post("/api/v1/chat", json={"prompt": DESIGN, "model": "compat-cloud"}).get_json()
    # a piece is at least a token, four characters about one: max(4 pieces, 18 characters / 4)
    assert body["usage"]["output_tokens"] == 5 and body["usage"]["input_tokens"] > 0 and body["cost"] > 0


def test_anthropic_output_is_the_last_cumulative_count_not_their_sum(make_app, claude):
    claude.default = Script(reply="a b c d e f g h i", usage_updates=3)
    body = make_app().test_client().post("/api/v1/chat", json={"prompt": DESIGN, "model": "claude-sonnet"}).get_json()
    assert body["usage"]["output_tokens"] == 9  # 3, 6, 9 reported: not 18


def test_ollama_without_its_counts_estimates_rather_than_reports_zero(make_app, ollama):
    ollama.default = Script(reply="one two three", omit_counts=True)
    body = make_app().test_client().post("/api/v1/chat", json={"prompt": "What is Python?"}).get_json()
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] == 4  # max(3 pieces, 13 chars / 4)


# --------------------------------------------------------------------------- Redis under memory pressure


def test_a_full_redis_evicts_cached_answers_never_money(make_app, redis_server, claude, ollama):
    """The compose Redis runs with maxmemory and volatile-lru: only keys with a lifetime may go. Money keys
    (spend, budgets, reservations) have none; cached answers do."""
    admin = redis_server.client()
    app = make_app(REDIS_URL=redis_server.url, BUDGET_MONTHLY_USD="1", CACHE_TTL_SECONDS="3600")
    client = app.test_client()
    paid = client.post("/api/v1/chat", json={"prompt": DESIGN, "model": "claude-sonnet"}).get_json()
    budget_before = app.extensions["gateway"].budget()
    money = [k for k in admin.keys("hai:*") if re.fullmatch(r"hai:(spend|resv):\d{4}-\d{2}(:amounts)?", k)]
    assert money and all(admin.ttl(k) == -1 for k in money), {k: admin.ttl(k) for k in money}
    # fill the rest of a small maxmemory with cached answers until Redis evicts
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", str(used + 2 * 2**20))
    admin.config_set("maxmemory-policy", "volatile-lru")
    try:
        ollama.default = Script(reply="x" * 20000)
        for i in range(400):
            client.post("/api/v1/chat", json={"prompt": f"What is {i}?", "temperature": 0})
        assert int(admin.info("stats")["evicted_keys"]) > 0
        assert app.extensions["gateway"].budget()["spent_usd"] == pytest.approx(budget_before["spent_usd"])
        assert budget_before["spent_usd"] == pytest.approx(paid["cost"])
    finally:
        admin.config_set("maxmemory", "0")
