"""Batches through the openai SDK: files.create, batches.create, retrieve until done, files.content. Each line is
routed like a chat request; local lines run on Ollama, cloud lines reach Claude only as one Message Batch at
half price; bad lines land in the error file with their line numbers; a batch survives a restart and belongs
to the key that made it."""

from __future__ import annotations

import json
import time

import openai
import pytest
import requests

from tests.fakes import Script

KEY, OTHER, ADMIN = "team-key", "other-key", "admin-key"
PRICES = {"claude-sonnet-5-5": (2.0, 10.0), "claude-haiku-4-5": (1.0, 5.0)}


def line(custom_id: str, body, url: str = "/v1/chat/completions") -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def ask(text: str, model: str = "auto") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 50}


MIXED = "\n".join([
    line("local-1", ask("What is 2+2?")),
    line("cloud-1", ask("Summarise the design of a distributed queue.", "claude-sonnet")),
    "{this is not json",
    line("local-2", ask("Name a colour.")),
    "",
    line("wrong-url", ask("x"), url="/v1/embeddings"),
    line("cloud-2", ask("Explain consensus protocols.", "claude-sonnet")),
    line("no-messages", {"model": "auto"}),
]) + "\n"


@pytest.fixture(params=["redis", "disk"])
def gateway(request, make_app, serve, redis_server, tmp_path):
    """Make (and serve) gateways sharing one BATCH_DIR and, in the redis case, one Redis: a restart is a new one."""
    env = {"GATEWAY_API_KEYS": f"{KEY},{OTHER}", "GATEWAY_ADMIN_KEYS": ADMIN, "BATCH_DIR": str(tmp_path / "batches"),
           "BATCH_POLL_SECONDS": "0.05", "BUDGET_MONTHLY_USD": "5"}
    if request.param == "redis":
        env["REDIS_URL"] = redis_server.url

    def _make(**more):
        app = make_app(**{**env, **more})
        return app, serve(app)
    return _make


def sdk(base: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)


def wait_for(client: openai.OpenAI, batch_id: str, statuses=("completed",), timeout: float = 20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        time.sleep(0.05)
    raise AssertionError(f"batch still {batch.status}")


def submit(client: openai.OpenAI, text: str = MIXED):
    uploaded = client.files.create(file=("lines.jsonl", text.encode()), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", metadata={"job": "nightly"})


def test_a_mixed_batch_runs_local_lines_locally_and_cloud_lines_as_one_message_batch_at_half_price(
        gateway, ollama, claude):
    ollama.default = Script(reply="Four.")
    claude.default = Script(reply="A queue keeps messages in order until consumers take them.")
    _, base = gateway()
    client = sdk(base)
    batch = submit(client)
    assert batch.status == "validating" and batch.metadata == {"job": "nightly"}
    done = wait_for(client, batch.id)
    assert done.request_counts.total == 8 and done.request_counts.completed == 4 and done.request_counts.failed == 3

    outputs = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in outputs] == ["local-1", "cloud-1", "local-2", "cloud-2"]
    by_id = {o["custom_id"]: o["response"] for o in outputs}
    assert all(r["status_code"] == 200 and r["body"]["object"] == "chat.completion" for r in by_id.values())
    assert by_id["local-1"]["body"]["model"] == "tinyllama" and by_id["cloud-1"]["body"]["model"] == "claude-sonnet"
    assert by_id["cloud-2"]["body"]["choices"][0]["message"]["content"].startswith("A queue keeps")

    # local lines never reached the cloud; the cloud lines reached it only as one Message Batch
    assert len(ollama.calls("/api/chat")) == 2 and claude.calls("/v1/messages") == []
    [sent] = claude.calls("/v1/messages/batches")
    assert [r["custom_id"] for r in sent.body["requests"]] == ["line-2", "line-7"]
    assert sent.body["requests"][0]["params"]["model"] == "claude-sonnet-5-5"

    # bad lines: each in the error file, with its line number or the response it would have had
    errors = {json.loads(x)["custom_id"] or "?": json.loads(x) for x in
              client.files.content(done.error_file_id).text.splitlines()}
    assert errors["?"]["error"]["line"] == 3 and errors["?"]["response"] is None
    assert errors["wrong-url"]["error"]["line"] == 6
    assert errors["no-messages"]["response"]["status_code"] == 400
    assert errors["no-messages"]["response"]["body"]["error"]["param"] == "messages"

    # charged what the provider bills for a batch: half the list price, the saving reported as the batch's
    stats = requests.get(f"{base}/api/v1/stats", headers={"X-API-Key": ADMIN}, timeout=5).json()
    spend = stats["spend_this_month"]
    assert spend["spent_usd"] == pytest.approx(claude.billed_at(PRICES)) and spend["spent_usd"] > 0
    assert spend["saved_by"]["batch"] == pytest.approx(spend["spent_usd"])  # what it saved = what it cost
    assert stats["by_model"] == {"claude-sonnet": 2, "tinyllama": 2}
    assert stats["budget"]["reserved_usd"] == 0  # the batch's reservation was settled


def test_a_batch_survives_a_restart_and_its_cloud_lines_are_never_sent_twice(gateway, ollama, claude):
    claude.batch_delay = 3600  # the Message Batch stays in progress
    app, base = gateway()
    client = sdk(base)
    batch = submit(client, line("c", ask("Explain consensus.", "claude-sonnet")) + "\n"
                   + line("l", ask("What is 2+2?")) + "\n")
    deadline = time.time() + 10
    while not claude.calls("/v1/messages/batches") and time.time() < deadline:
        time.sleep(0.05)
    wait_for(client, batch.id, ("in_progress",))
    budget = requests.get(f"{base}/api/v1/budget", headers={"X-API-Key": ADMIN}, timeout=5).json()
    assert budget["reserved_usd"] > 0  # the cloud lines' worst case, reserved when submitted
    app.extensions["gateway"].close()  # the gateway stops

    claude.batch_delay = 0
    _, base2 = gateway()
    done = wait_for(sdk(base2), batch.id)
    assert done.request_counts.completed == 2
    assert len([c for c in claude.calls("/v1/messages/batches") if c.method == "POST"]) == 1
    assert len(ollama.calls("/api/chat")) == 1
    budget = requests.get(f"{base2}/api/v1/budget", headers={"X-API-Key": ADMIN}, timeout=5).json()
    assert budget["reserved_usd"] == 0 and budget["spent_usd"] == pytest.approx(claude.billed_at(PRICES))


def test_another_key_cannot_see_read_or_cancel_a_batch_or_its_files(gateway):
    _, base = gateway()
    mine, theirs = sdk(base), sdk(base, OTHER)
    batch = submit(mine, line("l", ask("What is 2+2?")) + "\n")
    done = wait_for(mine, batch.id)
    for attempt in (lambda: theirs.batches.retrieve(batch.id), lambda: theirs.batches.cancel(batch.id),
                    lambda: theirs.files.content(done.output_file_id),
                    lambda: theirs.files.retrieve(batch.input_file_id),
                    lambda: theirs.batches.create(input_file_id=batch.input_file_id,
                                                  endpoint="/v1/chat/completions", completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert theirs.batches.list().data == [] and [b.id for b in mine.batches.list().data] == [batch.id]
    r = requests.get(f"{base}/v1/batches/{batch.id}", timeout=5)
    assert r.status_code == 401


def test_cancelling_a_batch_cancels_its_message_batch_and_reports_every_line(gateway, claude):
    claude.batch_delay = 3600
    _, base = gateway()
    client = sdk(base)
    batch = submit(client, line("c1", ask("Explain consensus.", "claude-sonnet")) + "\n"
                   + line("c2", ask("Explain sharding.", "claude-sonnet")) + "\n")
    wait_for(client, batch.id, ("in_progress",))
    deadline = time.time() + 10
    while not claude.calls("/v1/messages/batches") and time.time() < deadline:
        time.sleep(0.05)
    assert client.batches.cancel(batch.id).status == "cancelling"
    done = wait_for(client, batch.id, ("cancelled",))
    assert [r.method for r in claude.requests if r.path.endswith("/cancel")] == ["POST"]
    assert done.output_file_id is None
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert sorted(e["custom_id"] for e in errors) == ["c1", "c2"]
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)
    budget = requests.get(f"{base}/api/v1/budget", headers={"X-API-Key": ADMIN}, timeout=5).json()
    assert budget["reserved_usd"] == 0


def test_bad_uploads_and_requests_get_clear_errors(gateway, make_app, serve):
    _, base = gateway(BATCH_MAX_FILE_BYTES="2048")
    client = sdk(base)
    with pytest.raises(openai.APIStatusError) as err:
        client.files.create(file=("big.jsonl", b"x" * 5000), purpose="batch")
    assert err.value.status_code == 413
    with pytest.raises(openai.UnprocessableEntityError):
        client.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
    uploaded = client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(openai.UnprocessableEntityError):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    off = serve(make_app(GATEWAY_API_KEYS=KEY))
    with pytest.raises(openai.APIStatusError) as err:
        sdk(off).batches.list()
    assert err.value.status_code == 503 and "BATCH_DIR" in err.value.message


def test_a_batch_the_budget_cannot_cover_reports_its_cloud_lines_and_still_runs_the_local_ones(gateway, claude):
    """The reservation is the whole Message Batch's worst case: refused, nothing reaches Claude, and each cloud
    line says why in the error file (429, as a single request would get)."""
    _, base = gateway(BUDGET_MONTHLY_USD="0.0001")
    client = sdk(base)
    batch = submit(client, line("c", ask("Explain consensus.", "claude-sonnet")) + "\n"
                   + line("l", ask("What is 2+2?")) + "\n")
    done = wait_for(client, batch.id)
    assert done.request_counts.completed == 1 and done.request_counts.failed == 1
    [error] = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert error["custom_id"] == "c" and error["response"]["status_code"] == 429
    assert error["response"]["body"]["error"]["code"] == "budget_exceeded"
    assert claude.requests == []


def test_ids_cannot_reach_outside_the_batch_folder_and_lines_are_logged_as_batch(gateway, tmp_path):
    _, base = gateway()
    for path in ("/v1/files/..%2F..%2Fetc%2Fpasswd/content", "/v1/files/..%2Frecords/content",
                 "/v1/batches/..%2F..%2Fx", "/v1/files/file-" + "a" * 300):
        r = requests.get(base + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert r.status_code == 404, path
    client = sdk(base)
    done = wait_for(client, submit(client, line("c", ask("Explain consensus.", "claude-sonnet")) + "\n").id)
    logged = requests.get(f"{base}/api/v1/decisions", headers={"X-API-Key": KEY}, timeout=5).json()["decisions"]
    assert done.request_counts.completed == 1 and [d.get("batch") for d in logged] == [True]


def test_a_batch_whose_input_file_was_deleted_fails_with_the_reason(gateway, claude):
    claude.batch_delay = 3600
    app, base = gateway()
    client = sdk(base)
    uploaded = client.files.create(file=("in.jsonl", line("l", ask("What is 2+2?")).encode()), purpose="batch")
    app.extensions["batch_runner"].close()  # no worker runs it before the file is gone
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert client.files.delete(uploaded.id).deleted
    _, base2 = gateway()
    failed = wait_for(sdk(base2), batch.id, ("failed",))
    assert failed.errors.data[0].code == "input_file_missing"
