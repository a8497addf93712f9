"""The learning router end to end, against the fake upstreams: feedback on one's own answers, shadow labels
that never delay an answer, never exceed their budget and never leave a local-only key's prompts, refits
shared by every worker through Redis with a rollback, and a live calibration on its endpoint and metrics."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis as redis_py

from gateway.api.hooks import key_id
from gateway.calibration.labels import Label
from gateway.cli import main as cli
from gateway.learned_router import features
from gateway.state.budget import month_of
from tests.conftest import ROOT
from tests.fakes import Script

K1, K2, ADMIN = "key-one", "key-two", "admin-key"
H1, H2, HA = ({"Authorization": f"Bearer {k}"} for k in (K1, K2, ADMIN))
KEYS = {"GATEWAY_API_KEYS": f"{K1},{K2}", "GATEWAY_ADMIN_KEYS": ADMIN}
LEARN = {**KEYS, "ROUTER": "hybrid"}  # a router that learns from feedback
SHADOW = {**KEYS, "CALIBRATION_RATE": "1", "CALIBRATION_BUDGET_USD": "1"}
SUM = "What is 17 + 25? Reply with the number."


def until(check, seconds: float = 10.0):
    """Poll until check() is truthy (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def counted(client, series: str) -> float:
    """A counter's value in this process (counters are per process: tests compare before and after)."""
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def labels(app) -> list[dict]:
    return app.extensions["gateway"].state.calibration.labels(10_000)


def catalog(tmp_path, target="0.95") -> str:
    path = tmp_path / "models.yaml"
    path.write_text((ROOT / "configs" / "models.yaml").read_text().replace("  target_quality: null",
                                                                            f"  target_quality: {target}"))
    return str(path)


def ask(client, prompt=SUM, headers=H1, **body):
    r = client.post("/api/v1/chat", json={"prompt": prompt, **body}, headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


# ---------------------------------------------------------------- feedback


def test_feedback_is_for_the_callers_own_answers_and_replaces_its_label(make_app):
    app = make_app(**LEARN)
    c = app.test_client()
    rid = ask(c)["request_id"]
    r = c.post("/api/v1/feedback", json={"request_id": rid, "label": "good"}, headers=H2)
    unknown = c.post("/api/v1/feedback", json={"request_id": "no-such-request", "label": "good"}, headers=H1)
    # another key's request and an unknown one: the same answer, so ids cannot be probed
    assert r.status_code == unknown.status_code == 404
    assert r.get_json()["error"]["type"] == unknown.get_json()["error"]["type"] == "unknown_request"
    assert r.get_json()["request_id"]
    assert labels(app) == []
    assert c.post("/api/v1/feedback", json={"request_id": rid, "label": "good"}).status_code == 401

    first = c.post("/api/v1/feedback", json={"request_id": rid, "label": "good"}, headers=H1).get_json()
    assert first == {"request_id": rid, "accepted": True, "replaced": False, "learned_from": True,
                     "answered_by": "tinyllama", "label": {"local": 1.0, "cloud": 1.0}}
    again = c.post("/api/v1/feedback", json={"request_id": rid, "label": "bad", "comment": "wrong sum"},
                   headers=H1).get_json()
    assert again["replaced"] is True
    [label] = labels(app)  # one label per request, the latest feedback's
    assert (label["l"], label["c"], label["s"], label["w"]) == (0.0, 1.0, "feedback", 1.0)
    # an admin key's requests are its own too: it cannot rate another key's
    assert c.post("/api/v1/feedback", json={"request_id": rid, "score": 0.9}, headers=HA).status_code == 404
    assert c.post("/api/v1/feedback", json={"request_id": rid, "score": 0.9}, headers=H1).status_code == 200
    assert labels(app)[0]["l"] == 1.0


def test_two_keys_sending_the_same_request_id_never_touch_each_others_feedback(make_app, ollama):
    """X-Request-ID is the client's to choose: key two reusing key one's id gets its own record and label."""
    app = make_app(**LEARN)
    c = app.test_client()
    same = {"X-Request-ID": "shared-id-0001"}
    ollama.queue(Script(reply="one"), Script(reply="two"))
    assert ask(c, headers={**H1, **same})["request_id"] == "shared-id-0001"
    ask(c, headers={**H2, **same})
    one = c.post("/api/v1/feedback", json={"request_id": "shared-id-0001", "label": "good"}, headers=H1).get_json()
    two = c.post("/api/v1/feedback", json={"request_id": "shared-id-0001", "label": "bad"}, headers=H2).get_json()
    assert one["replaced"] is two["replaced"] is False  # two first ratings, not one replacing the other
    assert sorted(lb["l"] for lb in labels(app)) == [0.0, 1.0]


@pytest.mark.parametrize(("body", "status", "param"), [
    ({}, 400, "request_id"),
    ({"request_id": "r"}, 400, "score"),
    ({"request_id": "r", "label": "good", "score": 1}, 400, "score"),
    ({"request_id": "r", "score": 1.5}, 422, "score"),
    ({"request_id": "r", "score": True}, 422, "score"),
    ({"request_id": "r", "label": "meh"}, 422, "label"),
    ({"request_id": "r", "preferred": "both"}, 422, "preferred"),
    ({"request_id": "r", "label": "good", "comment": ["x"]}, 422, "comment"),
    ({"request_id": "r", "label": "good", "rating": 5}, 422, "rating"),
])
def test_bad_feedback_gets_a_clear_error_in_the_native_shape(make_app, body, status, param):
    c = make_app(**LEARN).test_client()
    r = c.post("/api/v1/feedback", json=body, headers=H1)
    assert r.status_code == status
    err = r.get_json()
    assert err["error"]["param"] == param and err["request_id"] and "Traceback" not in r.get_data(as_text=True)


def test_a_cloud_answer_rated_bad_is_kept_but_says_nothing_about_routing(make_app):
    c = make_app(**LEARN).test_client()
    rid = ask(c, model="claude-sonnet")["request_id"]
    body = c.post("/api/v1/feedback", json={"request_id": rid, "label": "bad"}, headers=H1).get_json()
    assert body["learned_from"] is False and "preferred" in body["note"]
    assert c.post("/api/v1/feedback", json={"request_id": rid, "preferred": "local"}, headers=H1).get_json()[
        "label"] == {"local": 1.0, "cloud": 1.0}


def test_a_gateway_that_learns_nothing_keeps_nothing_per_request(make_app):
    """The default (ROUTER=heuristic, no quality target, no shadow labels): plain chat pays nothing for
    feedback it could not learn from, and feedback says so."""
    app = make_app(**KEYS)
    c = app.test_client()
    rid = ask(c)["request_id"]
    r = c.post("/api/v1/feedback", json={"request_id": rid, "label": "good"}, headers=H1)
    assert r.status_code == 404 and r.get_json()["error"]["type"] == "feedback_off"
    assert "ROUTER=learned or hybrid" in r.get_json()["error"]["message"]
    assert app.extensions["gateway"].state.calibration.request(f"{key_id(K1)}:{rid}") is None


def test_feedback_can_be_turned_off(make_app):
    c = make_app(**LEARN, FEEDBACK_TTL_SECONDS="0").test_client()
    rid = ask(c)["request_id"]
    r = c.post("/api/v1/feedback", json={"request_id": rid, "label": "good"}, headers=H1)
    assert r.status_code == 404 and r.get_json()["error"]["type"] == "feedback_off"


def test_what_is_kept_to_learn_from_is_features_not_text(make_app, redis_server, gateway_logs):
    secret = "Zanzibarian quarterly payroll figures"
    app = make_app(**SHADOW, REDIS_URL=redis_server.url)
    c = app.test_client()
    rid = ask(c, prompt=f"Summarise the {secret} for me")["request_id"]
    c.post("/api/v1/feedback", json={"request_id": rid, "label": "good"}, headers=H1)
    until(lambda: any(lb["s"] == "shadow" for lb in labels(app)))
    r = redis_py.Redis.from_url(redis_server.url, decode_responses=True)
    stored = []
    for key in r.keys("*"):
        kind = r.type(key)
        stored.append({"string": r.get, "hash": r.hgetall, "list": lambda k: r.lrange(k, 0, -1),
                       "zset": lambda k: r.zrange(k, 0, -1), "stream": lambda k: r.xrange(k)}.get(
            kind, lambda k: "")(key))
    assert "Zanzibarian" not in json.dumps(stored) and "payroll" not in json.dumps(stored)
    assert labels(app) and all("x" in lb for lb in labels(app))
    assert not any("Zanzibarian" in line for line in gateway_logs)


def test_prompts_are_kept_only_when_the_operator_opts_in(make_app):
    app = make_app(**LEARN, CALIBRATION_KEEP_PROMPTS="true")
    c = app.test_client()
    rid = ask(c, prompt="Translate 'good morning' into Basque")["request_id"]
    c.post("/api/v1/feedback", json={"request_id": rid, "label": "bad"}, headers=H1)
    assert labels(app)[0]["m"]["prompt"] == "Translate 'good morning' into Basque"


# ---------------------------------------------------------------- shadow labels


def test_a_shadow_label_never_delays_the_answer(make_app, ollama, claude):
    app = make_app(**SHADOW)
    c = app.test_client()
    hold = threading.Event()
    ollama.queue(Script(reply="42"))
    claude.queue(Script(reply="17 + 25 = 42", hold=hold))
    answer = ask(c)
    # the user has the local answer while the cloud's shadow answer is still being held upstream
    assert answer["model"] == "tinyllama" and answer["response"] == "42"
    until(lambda: claude.calls("/v1/messages"))
    assert labels(app) == []
    hold.set()
    [label] = until(lambda: labels(app))
    assert (label["l"], label["c"], label["s"], label["m"]["judge"]) == (1.0, 1.0, "shadow", "exact")
    assert label["w"] == 1.0 and label["m"]["other_model"] == "claude-sonnet"
    # the cloud model was asked the user's own question, once, with nothing of the gateway's added
    [sent] = claude.calls("/v1/messages")
    assert sent.body["model"] == "claude-sonnet-5-5"
    assert json.dumps(sent.body["messages"]).count("17 + 25") == 1
    assert app.extensions["gateway"].stats_report()["requests"] == 1  # a shadow is not a request


def test_a_wrong_local_answer_is_labelled_so(make_app, ollama, claude):
    app = make_app(**SHADOW)
    ollama.queue(Script(reply="The answer is 41."))
    claude.queue(Script(reply="42"))
    ask(app.test_client())
    [label] = until(lambda: labels(app))
    assert (label["l"], label["c"], label["m"]["judge"]) == (0.0, 1.0, "exact")


@pytest.mark.parametrize(("first", "second", "local", "how"), [
    ("B", "A", 0.0, "pairwise"),        # the cloud's answer won in both orders
    ("A", "B", 1.0, "pairwise"),        # the local one did
    ("B", "B", 1.0, "pairwise_split"),  # order-dependent: a tie (good enough), counted as the judge's noise
])
def test_answers_that_cannot_be_compared_are_judged_in_both_orders(make_app, ollama, claude, first, second, local,
                                                                   how):
    app = make_app(**SHADOW)
    ollama.queue(Script(reply="Rain on the tin roof"))
    claude.queue(Script(reply="Soft rain, grey morning"), Script(reply=first), Script(reply=second))
    ask(app.test_client(), prompt="Write a haiku about rain")
    [label] = until(lambda: labels(app))
    assert (label["l"], label["m"]["judge"]) == (local, how)
    _, judge_1, judge_2 = claude.calls("/v1/messages")
    text_1, text_2 = (json.dumps(j.body["messages"]) for j in (judge_1, judge_2))
    # the first judgement shows the local answer as A, the second as B
    assert text_1.index("Rain on the tin roof") < text_1.index("Soft rain, grey morning")
    assert text_2.index("Soft rain, grey morning") < text_2.index("Rain on the tin roof")
    assert "A, B or TIE" in json.dumps(judge_1.body["system"])


def test_a_cloud_answer_is_shadowed_by_the_local_model_for_free(make_app, ollama, claude):
    app = make_app(**SHADOW)
    claude.queue(Script(reply="42"))
    ollama.queue(Script(reply="41"))
    assert ask(app.test_client(), strategy="cloud-first")["model"] == "claude-sonnet"
    [label] = until(lambda: labels(app))
    assert (label["l"], label["c"], label["m"]["other_model"]) == (0.0, 1.0, "phi")  # the plan's first local model
    assert len(claude.calls("/v1/messages")) == 1  # the user's answer only: the shadow and its check cost nothing
    assert app.extensions["gateway"].state.calibration.spend(month_of(time.time())) == 0.0


def test_shadow_spend_stays_within_its_budget_and_is_counted_apart(make_app, ollama, claude):
    # one call's worst case (~$0.0103 at 1,024 output tokens) does not fit in $0.01: nothing goes to the cloud
    app = make_app(**{**SHADOW, "CALIBRATION_BUDGET_USD": "0.01"})
    c = app.test_client()
    skipped = 'api_gateway_shadow_labels_total{reason="calibration_budget",result="skipped"}'
    before = counted(c, skipped)
    for i in range(3):
        ask(c, prompt=f"What is {i} + 25?")
    until(lambda: counted(c, skipped) == before + 3)
    assert claude.calls("/v1/messages") == []

    claude.reset()
    app = make_app(**{**SHADOW, "CALIBRATION_BUDGET_USD": "0.05"})
    c = app.test_client()
    ollama.default = claude.default = Script(reply="42")
    for i in range(6):
        ask(c, prompt=f"What is {i} + 25?")
    svc = app.extensions["gateway"]
    until(lambda: len(labels(app)) == 6)
    spent = svc.state.calibration.spend(month_of(time.time()))
    billed = claude.billed(2.0, 10.0)  # what the fake Anthropic billed, at Sonnet's prices
    assert 0 < spent <= 0.05 and spent == pytest.approx(billed, rel=1e-6)
    stats = svc.stats_report()
    assert stats["spend_this_month"]["calibration_usd"] == pytest.approx(billed, rel=1e-6)
    assert stats["spend_this_month"]["spent_usd"] == pytest.approx(billed, rel=1e-6)  # the month's spend holds it
    mine = svc.stats_report(key_id(K1))["spend_this_month"]
    assert mine["spent_usd"] == 0.0  # no key pays for the gateway's own learning


def test_shadow_calls_respect_the_global_budget_too(make_app, ollama, claude):
    app = make_app(**SHADOW, BUDGET_MONTHLY_USD="0.005")  # under one shadow call's worst case (~$0.0103)
    c = app.test_client()
    skipped = 'api_gateway_shadow_labels_total{reason="budget",result="skipped"}'
    before = counted(c, skipped)
    ask(c)
    until(lambda: counted(c, skipped) == before + 1)  # the shadow was offered and the budget said no
    assert claude.calls("/v1/messages") == []
    # what the calibration budget held for it was given back
    assert app.extensions["gateway"].state.calibration.spend(month_of(time.time())) == 0.0


def test_a_shadow_call_the_upstream_refuses_never_opens_the_circuit_for_users(make_app, ollama, claude):
    """A shadow call is the gateway's own: a 400 for it is not the backend's health. With a breaker that opens at
    the first failure, the user's next cloud request must still get through."""
    app = make_app(**SHADOW, BREAKER_FAILURE_THRESHOLD="1")
    c = app.test_client()
    failed = 'api_gateway_shadow_labels_total{reason="bad_request",result="failed"}'
    before = counted(c, failed)
    ollama.queue(Script(reply="42"))
    claude.queue(Script(status=400, error_type="invalid_request_error"))
    ask(c)
    until(lambda: counted(c, failed) == before + 1)
    assert ask(c, model="claude-sonnet")["backend"] == "anthropic"


def test_a_local_only_key_is_never_shadowed_to_the_cloud(make_app, ollama, claude):
    app = make_app(**SHADOW, KEY_STRATEGIES=f"{key_id(K1)}=local-only")
    c = app.test_client()
    ollama.default = Script(reply="42")
    design = "Design a distributed system for real-time chat at scale, with fault tolerance and consistency"
    for prompt in (SUM, design, "Write a haiku about rain"):
        assert ask(c, prompt=prompt)["backend"] == "ollama"
    assert ask(c, prompt=design, strategy="cloud-first")["backend"] == "ollama"  # the key's rule wins
    r = c.post("/api/v1/chat", json={"prompt": SUM, "model": "claude-sonnet"}, headers=H1)
    assert r.status_code == 422
    # another key asking local-only for one request is not shadowed either
    ask(c, prompt=SUM, headers=H2, strategy="local-only")
    time.sleep(0.3)
    assert claude.calls("/v1/messages") == []
    assert labels(app) == []
    # the same prompt from the other key, not local-only: shadowed, and that is the only call the cloud ever saw
    claude.queue(Script(reply="42"))  # answers compared exactly: one cloud call, no judge
    ask(c, prompt=SUM, headers=H2)
    until(lambda: labels(app))
    [only] = claude.calls("/v1/messages")
    assert "17 + 25" in json.dumps(only.body["messages"])


def test_a_keys_own_strategy_is_its_default_and_a_request_may_name_another(make_app, claude):
    app = make_app(**KEYS, KEY_STRATEGIES=f"{key_id(K1)}=cloud-first")
    c = app.test_client()
    assert ask(c)["routing"]["strategy"] == "cloud-first" and claude.calls("/v1/messages")
    assert ask(c, strategy="auto")["routing"]["strategy"] == "auto"
    assert ask(c, headers=H2)["routing"]["strategy"] == "auto"  # another key: the gateway's default


def test_a_full_shadow_queue_drops_samples_and_answers_everyone(make_app, ollama, claude):
    app = make_app(**SHADOW)
    c = app.test_client()
    hold = threading.Event()
    claude.default = Script(reply="42", hold=hold)
    ollama.default = Script(reply="42")
    dropped = 'api_gateway_shadow_labels_total{reason="queue_full",result="dropped"}'
    before = counted(c, dropped)
    try:
        for i in range(20):  # 16 taken (2 running, 14 waiting); the other 4 dropped
            assert ask(c, prompt=f"What is {i} + 1?")["response"] == "42"
        assert counted(c, dropped) == before + 4
    finally:
        hold.set()
    until(lambda: len(labels(app)) == 16)


# ---------------------------------------------------------------- learning, versions, calibration


def seed(app, n: int = 120) -> None:
    """n labels as feedback would leave them: prompts about proofs the local model got wrong, greetings right."""
    store = app.extensions["gateway"].state.calibration
    for i in range(n):
        hard = i % 3 == 0
        prompt = f"Prove the lemma about invariant {i}" if hard else f"Say hello to friend {i}"
        store.put_label(f"fb:seed{i}", Label(features(prompt, 2**14), 0.2, 0.0 if hard else 1.0, 1.0, 1.0,
                                             "feedback", "general", time.time() + i * 1e-3).as_dict(), time.time())


def test_a_refit_is_shared_by_every_replica_and_can_be_rolled_back(make_app, redis_server, tmp_path, monkeypatch,
                                                                   capsys):
    settings = {**KEYS, "REDIS_URL": redis_server.url, "ROUTER": "learned", "MODELS_CONFIG": catalog(tmp_path)}
    a, b = make_app(**settings), make_app(**settings)
    shipped = a.extensions["gateway"].calibrator.current.version
    seed(a)
    done = a.extensions["gateway"].calibrator.refit()
    version = done["version"]
    assert version.startswith(shipped + "+120-") and done["labels"] == 120
    assert done["thresholds"]["*"] < 1.0 and done["estimate"]["target_met"]
    assert a.extensions["gateway"].calibrator.refit() is None  # nothing new labelled: no new version
    svc_b = b.extensions["gateway"]
    svc_b.calibrator.refresh()  # what its background thread does every few seconds
    assert svc_b.calibrator.current.version == version
    hard = ask(b.test_client(), prompt="Prove the lemma about invariant 999")
    easy = ask(b.test_client(), prompt="Say hello to friend 999")
    assert hard["backend"] == "anthropic" and easy["backend"] == "ollama"
    assert "calibrated to keep 95%" in hard["routing"]["reason"]
    log = svc_b.decisions(2)
    assert {e["router_version"] for e in log} == {version}

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("ROUTER", "learned")
    monkeypatch.setenv("MODELS_CONFIG", catalog(tmp_path))
    assert cli(["calibration", "rollback", "--env-file", ""]) == 0
    assert "rolled back to shipped" in capsys.readouterr().out
    assert cli(["calibration", "rollback", "--env-file", ""]) == 2  # nothing before the shipped weights
    assert "nothing before them" in capsys.readouterr().err
    svc_b.calibrator.refresh()
    assert svc_b.calibrator.current.version == shipped
    assert ask(b.test_client(), prompt="Prove the lemma about invariant 998")["backend"] == "ollama"
    assert svc_b.decisions(1)[0]["router_version"] == shipped
    seed(a, 130)
    assert a.extensions["gateway"].calibrator.refit() is None  # held after a rollback
    assert cli(["calibration", "resume", "--env-file", ""]) == 0
    assert a.extensions["gateway"].calibrator.refit()["labels"] == 130
    assert cli(["calibration", "rollback", "--env-file", "", "--to", version]) == 0
    svc_b.calibrator.refresh()
    assert svc_b.calibrator.current.version == version
    assert cli(["calibration", "rollback", "--env-file", "", "--to", "no-such-version"]) == 2
    capsys.readouterr()
    assert cli(["calibration", "status", "--env-file", ""]) == 0
    out = capsys.readouterr().out  # the report, after any log line the test's gateways wrote to stdout
    status = json.loads(out[out.index("\n{\n") + 1:] if not out.startswith("{\n") else out)
    assert status["version"] == version and status["labels"]["total"] == 130
    assert [h["event"] for h in status["history"][:5]] == ["rollback", "refit", "resume", "rollback", "refit"]


def test_a_live_calibration_shows_on_its_endpoint_and_in_the_metrics(make_app, redis_server, tmp_path, ollama, claude):
    app = make_app(**SHADOW, REDIS_URL=redis_server.url, ROUTER="learned", MODELS_CONFIG=catalog(tmp_path),
                   CALIBRATION_REFIT_SECONDS="1")
    c = app.test_client()
    before = c.get("/api/v1/calibration", headers=HA).get_json()
    assert before["estimate"] is None and before["threshold"]["in_force"] is None
    ollama.default = Script(reply="42")
    for i in range(64):  # sums the local model gets right, through the real shadow path
        claude.queue(Script(reply="42"))
        ask(c, prompt=f"What is {i} + {42 - i}?")
        until(lambda i=i: len(labels(app)) == i + 1)
    live = until(lambda: c.get("/api/v1/calibration", headers=HA).get_json()["estimate"], seconds=30)
    body = c.get("/api/v1/calibration", headers=HA).get_json()
    assert body["labels"]["by_source"] == {"shadow": 64} and body["target_quality"] == 0.95
    assert body["version"] != before["version"] and body["history"][0]["event"] == "refit"
    assert live["quality"] == 1.0 and live["target_met"] and live["quality_interval"][0] >= 0.9
    assert body["threshold"]["in_force"]["*"] == pytest.approx(1.01)  # every local answer was right: none to the cloud
    assert body["shadow"]["spent_this_month_usd"] > 0
    metrics = c.get("/metrics").get_data(as_text=True)
    assert 'api_gateway_calibration_quality{bound="lower"}' in metrics
    assert "api_gateway_calibration_labels 64.0" in metrics
    assert "api_gateway_calibration_target_quality 0.95" in metrics
    assert 'api_gateway_calibration_threshold{cluster="*"}' in metrics
    assert c.get("/api/v1/calibration", headers=H1).status_code == 403
