"""What a leaked key can spend, tried for real: the gateway under gunicorn (two workers, Redis), a per-key
budget, and a client that throws every failure at it at once: timeouts while the upstream generates, streams
cut mid-answer, overloads that are retried, fallbacks, concurrent requests, and a worker killed with calls in
flight. SECURITY.md states the bound this checks."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests

from gateway.state.budget import Limits, RedisLedger
from gateway.state.store import RedisStore
from tests.fakes import Script

DESIGN = ("Design a distributed system for real-time chat that scales to millions of users, with fault "
          "tolerance and message ordering.")
PRICES = {"claude-sonnet-5-5": (2.0, 10.0), "claude-haiku-4-5": (1.0, 5.0)}  # configs/models.yaml
KEY_BUDGET = 0.05
LEAKED, OTHER = {"X-API-Key": "leaked-key"}, {"X-API-Key": "other-key"}
# Every kind of failure, and answers: the queue is served in order, whichever thread asks.
MIX = [Script(reply="w", endless=True, chunk_delay=0.005),          # times out while generating
       Script(reply="a b c d e f g h", cut_after=4),                # cut mid-answer (retried)
       Script(status=529, error_type="overloaded_error"),           # refused (retried, not billed)
       Script(reply="a b c d e f", error_after=3),                  # error event mid-stream
       Script(reply=" ".join(["w"] * 40)),                          # an answer
       Script(delay=2.0)]                                           # no answer at all: worst case


def workers(master: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


@pytest.mark.integration
def test_a_leaked_key_spends_at_most_its_budget(gunicorn, claude, redis_server):
    url, proc, _ = gunicorn(
        REDIS_URL=redis_server.url, GATEWAY_API_KEYS="leaked-key,other-key", BUDGET_PER_KEY_MONTHLY_USD=str(KEY_BUDGET),
        BUDGET_MONTHLY_USD="10", ANTHROPIC_TIMEOUT="1", OLLAMA_TIMEOUT="1", OPENAI_COMPAT_TIMEOUT="1",
        REQUEST_DEADLINE_SECONDS="3", STREAM_SEND_TIMEOUT_SECONDS="1", ANTHROPIC_MAX_RETRIES="1",
        RETRY_BACKOFF_SECONDS="0.01", BREAKER_FAILURE_THRESHOLD="1000")
    claude.queue(*(MIX * 40))
    claude.default = Script(reply=" ".join(["w"] * 40))
    statuses: list[int] = []
    stop = time.monotonic() + 20

    def hammer(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            body = {"messages": [{"role": "user", "content": f"{DESIGN} ({i}-{n})"}], "max_tokens": 200,
                    "model": "cloud" if n % 2 else "claude-sonnet", "stream": n % 3 == 0}
            try:
                r = requests.post(f"{url}/v1/chat/completions", json=body, headers=LEAKED, timeout=15)
                statuses.append(r.status_code)
                if r.status_code == 429:
                    return  # the budget is spent
            except requests.RequestException:
                statuses.append(0)  # its worker was killed mid-call

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    victim = workers(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)  # calls in flight there never settle: their reservations must
    for t in threads:
        t.join()
    assert 429 in statuses and 0 in statuses, statuses

    # The killed worker's reservations expire (deadline 3 + timeout 1 + send timeout 1 + 10 s margin) and
    # become spend at their worst case: never nothing. Any later reservation sweeps them.
    time.sleep(16)
    import redis

    ledger = RedisLedger(RedisStore(redis.Redis.from_url(redis_server.url, decode_responses=True)),
                         Limits(10.0, KEY_BUDGET))
    ledger.reserve("sweeper", 0.0, ttl=1)
    import hashlib

    leaked = hashlib.sha256(b"leaked-key").hexdigest()[:12]
    totals = ledger.month_totals()
    spent, reserved = totals.get(f"key:{leaked}", 0.0), totals.get(f"reserved:{leaked}", 0.0)
    assert reserved == pytest.approx(0, abs=1e-9)
    assert totals.get("expired", 0) > 0  # the killed worker's calls were charged

    # The bound: recorded spend never passes the key's budget, and the provider's bill for the key never
    # passes what was recorded by more than what was in flight when calls failed (a few tokens each).
    bill = claude.billed_at(PRICES)
    assert spent <= KEY_BUDGET + 1e-9
    failed_calls = sum(1 for s in statuses if s != 200) + 8
    assert bill <= spent + failed_calls * 10 * 10.0 / 1e6, (bill, spent)

    # The leaked key is refused paid work from now on; the other key is untouched
    claude.reset()  # the rest of the failure mix, unserved
    r = requests.post(f"{url}/api/v1/chat", json={"prompt": DESIGN, "model": "claude-sonnet"}, headers=LEAKED,
                      timeout=15)
    assert r.status_code == 429 and r.json()["error"]["type"] == "budget_exceeded"
    r = requests.post(f"{url}/api/v1/chat", json={"prompt": DESIGN, "model": "claude-sonnet"}, headers=OTHER,
                      timeout=15)
    assert r.status_code == 200


@pytest.mark.integration
def test_a_client_that_stops_reading_a_stream_frees_its_slot(gunicorn, ollama):
    """A streaming client that reads nothing holds a thread, the upstream call and an Ollama slot only until
    the send timeout: then the stream is cut and the next caller gets the slot."""
    import socket

    url, _, _ = gunicorn(OLLAMA_MAX_CONCURRENCY="1", CONCURRENCY_WAIT_SECONDS="20", STREAM_SEND_TIMEOUT_SECONDS="2")
    ollama.default = Script(reply="x" * 4000, endless=True)  # fills every socket buffer at once
    port = int(url.rsplit(":", 1)[1])
    body = b'{"prompt": "Write forever.", "stream": true, "strategy": "local-only"}'
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    head = (b"POST /api/v1/chat HTTP/1.1\r\nHost: x\r\nX-API-Key: integration-key\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    stalled.sendall(head + body)
    try:
        time.sleep(1)  # the stream is running and holds the only slot; nobody reads it
        ollama.default = Script(reply="The next caller's answer.")
        started = time.monotonic()
        r = requests.post(f"{url}/api/v1/chat", json={"prompt": "What is Python?", "strategy": "local-only"},
                          headers={"X-API-Key": "integration-key"}, timeout=30)
        waited = time.monotonic() - started
        assert r.status_code == 200 and r.json()["response"] == "The next caller's answer."
        assert waited < 10, waited  # freed by the 2 s send timeout, not by the 20 s wait running out
        assert ollama.aborted >= 1  # the stalled stream's upstream call was closed
    finally:
        stalled.close()


@pytest.mark.integration
def test_without_redis_one_worker_keeps_the_budget(gunicorn, claude):
    # Per-process state in two workers would allow the budget twice: without REDIS_URL gunicorn runs one.
    worst = (len(DESIGN.encode()) + 32) * 2.0 / 1e6 + 100 * 10.0 / 1e6   # one call's reservation
    url, proc, log = gunicorn(GATEWAY_WORKERS="2", BUDGET_MONTHLY_USD=str(round(2.5 * worst, 8)))
    time.sleep(0.5)
    assert len(workers(proc.pid)) == 1
    assert "running 1 worker instead of GATEWAY_WORKERS=2" in log.read_text()
    claude.default = Script(reply="ok", delay=1.0)  # every call still in flight when the others arrive
    statuses: list[int] = []

    def call() -> None:
        with requests.Session() as s:  # new connections: two workers would each get some
            statuses.append(s.post(f"{url}/api/v1/chat", headers={"X-API-Key": "integration-key"}, timeout=20,
                                   json={"prompt": DESIGN, "model": "claude-sonnet", "max_tokens": 100}).status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 200, 429, 429, 429, 429]
