"""strategy "cascade": local first; the local answer is reviewed and escalated to the cloud only when it
fails the review; both attempts are visible and both costs counted."""

from __future__ import annotations

from tests.fakes import Script

QUESTION = "Janet has 16 eggs and eats 3. How many eggs are left?"


def chat(client, **body):
    return client.post("/api/v1/chat", json={"prompt": QUESTION, "strategy": "cascade", **body})


def test_a_good_local_answer_is_sent_and_the_cloud_never_called(client, ollama, claude):
    ollama.default = Script(reply="16 - 3 = 13. She has 13 eggs left.")
    r = chat(client)
    body = r.get_json()
    assert r.status_code == 200 and body["backend"] == "ollama" and body["cost"] == 0.0
    assert body["routing"]["strategy"] == "cascade" and body["routing"]["reason"].startswith("cascade: tier")
    assert [a["outcome"] for a in body["routing"]["attempts"]] == ["ok"]
    assert claude.requests == []


def test_a_wrong_local_answer_is_escalated_and_both_attempts_shown(client, ollama, claude):
    ollama.default = Script(reply="16 - 3 = 12. She has 12 eggs left.")
    claude.default = Script(reply="16 - 3 = 13 eggs.")
    r = chat(client)
    body = r.get_json()
    assert r.status_code == 200 and body["backend"] == "anthropic" and body["response"] == "16 - 3 = 13 eggs."
    local, cloud = body["routing"]["attempts"]
    assert local["backend"] == "ollama" and local["outcome"] == "rejected" and local["error_type"] == "cascade_review"
    assert local["detail"] == "1 calculation(s) in the answer do not add up"
    assert cloud["backend"] == "anthropic" and cloud["outcome"] == "ok"
    assert body["cost"] > 0
    assert len(ollama.calls("/api/chat")) == 1, "no other local model is tried after a rejection"
    stats = client.get("/api/v1/stats").get_json()
    assert stats["by_backend"] == {"anthropic": 1}


def test_the_rejected_local_answer_is_sent_when_the_cloud_fails(client, ollama, claude):
    ollama.default = Script(reply="16 - 3 = 12. She has 12 eggs left.")
    claude.default = Script(status=500)
    r = chat(client)
    body = r.get_json()
    assert r.status_code == 200 and body["backend"] == "ollama" and body["response"].startswith("16 - 3 = 12")
    outcomes = [a["outcome"] for a in body["routing"]["attempts"]]
    assert outcomes[0] == "rejected" and "error" in outcomes and set(outcomes[1:]) <= {"error", "skipped"}


def test_a_failed_local_call_goes_to_the_cloud_only_when_paid_fallback_is_allowed(make_app, ollama, claude):
    ollama.default = Script(status=500)
    claude.default = Script(reply="13")
    r = chat(make_app().test_client())
    assert r.status_code == 503 and r.get_json()["error"]["type"] == "local_unavailable"
    assert claude.requests == [] and any(a["error_type"] == "paid_fallback_refused"
                                         for a in r.get_json()["error"]["attempts"])
    r = chat(make_app(PAID_FALLBACK="cloud").test_client())
    assert r.status_code == 200 and r.get_json()["backend"] == "anthropic"


def test_complex_prompts_still_start_locally(client, ollama, claude):
    ollama.default = Script(reply="A sharded design with per-room ordering.")
    r = client.post("/api/v1/chat", json={"strategy": "cascade", "prompt": (
        "Design a distributed system for real-time chat that scales to millions of users, with fault "
        "tolerance and message ordering. Explain the trade-offs step by step.")})
    body = r.get_json()
    assert r.status_code == 200 and body["backend"] == "ollama" and body["routing"]["complexity"] >= 0.6
    assert claude.requests == []


def test_cascade_cannot_stream(client):
    r = client.post("/v1/chat/completions", json={"model": "auto", "stream": True, "strategy": "cascade",
                                                  "messages": [{"role": "user", "content": QUESTION}]})
    assert r.status_code == 422
    assert "use it without streaming" in r.get_json()["error"]["message"]


def test_local_only_budget_block_keeps_cascade_local(make_app, ollama, claude):
    client = make_app(BUDGET_MONTHLY_USD="0.0000001").test_client()
    ollama.default = Script(reply="16 - 3 = 12.")
    r = chat(client)
    body = r.get_json()
    assert r.status_code == 200 and body["backend"] == "ollama" and claude.requests == []
    assert "no cloud model usable" in body["routing"]["reason"]


def test_an_unsure_local_answer_is_escalated(client, ollama, claude):
    # Story prompts have no arithmetic to check: only the model's own confidence tells.
    ollama.default = Script(reply="Once upon a time a dragon", logprobs=(-0.4, -2.9, -3.1))
    claude.default = Script(reply="A proper story.")
    r = client.post("/api/v1/chat", json={"prompt": "Write a two-line story about a dragon", "strategy": "cascade"})
    body = r.get_json()
    assert r.status_code == 200 and body["backend"] == "anthropic"
    local = body["routing"]["attempts"][0]
    assert local["outcome"] == "rejected" and local["mean_logprob"] == -2.1333
    assert local["detail"] == "the local model was unsure of its answer (mean token log-probability -2.13 < -1.5)"
    assert "mean_logprob" not in body["routing"]["attempts"][1]
    local_call, = ollama.calls("/api/chat")
    assert local_call.body["logprobs"] is True and "logprobs" not in str(claude.requests[-1].body)


def test_a_confident_answer_stays_local_and_its_confidence_is_visible(client, ollama, claude):
    ollama.default = Script(reply="16 - 3 = 13. She has 13 eggs left.", logprobs=(-0.2,))
    body = chat(client).get_json()
    assert body["backend"] == "ollama" and claude.requests == []
    assert body["routing"]["attempts"] == [{"model": body["model"], "backend": "ollama", "outcome": "ok",
                                            "latency_seconds": body["routing"]["attempts"][0]["latency_seconds"],
                                            "mean_logprob": -0.2}]
    logged = client.get("/api/v1/decisions?limit=1").get_json()["decisions"][0]
    assert logged["local_mean_logprob"] == -0.2


def test_other_strategies_do_not_ask_for_logprobs(client, ollama):
    r = client.post("/api/v1/chat", json={"prompt": "What is Python?"})
    assert r.status_code == 200 and "mean_logprob" not in r.get_json()["routing"]["attempts"][0]
    assert "logprobs" not in ollama.calls("/api/chat")[-1].body
