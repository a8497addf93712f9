"""The edge (the real Caddy with configs/caddy/Caddyfile) in front of gunicorn: slow and idle clients cost it a
goroutine each, never a gunicorn thread, so legitimate requests keep being answered. Loopback only; every
slow client is bounded in count and time and closed at the end."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from scripts.bench.procs import edge
from scripts.bench.slow_clients import address, slow_clients
from tests.fakes import Script

pytestmark = pytest.mark.integration

KEY_VALUE = "integration-key"
KEY = {"Authorization": f"Bearer {KEY_VALUE}"}
THREADS = 8           # gunicorn's threads in these tests: one worker of 8
SLOW_CLIENTS = 40     # five times as many slow connections


@pytest.fixture
def stack(gunicorn, tmp_path):
    """gunicorn (1 worker x 8 threads) on loopback, and the edge in front of it: (edge URL, gunicorn URL, log)."""
    url, _, log = gunicorn(GATEWAY_WORKERS="1", GATEWAY_THREADS=str(THREADS), TRUSTED_PROXIES="127.0.0.1/32",
                           MAX_BODY_BYTES="65536", LOG_LEVEL="INFO", BATCH_DIR=str(tmp_path / "batches"),
                           BATCH_MAX_FILE_BYTES="200000")
    with edge(url.removeprefix("http://"), max_body_bytes=65536, log=tmp_path / "caddy.log",
              max_file_bytes=200000) as front:
        yield front.url, url, log


def _legitimate(url: str, count: int = 10, timeout: float = 5) -> list[object]:
    """`count` ordinary chat calls, a few at a time: each status code, or the exception's name."""
    def call(i):
        try:
            return requests.post(f"{url}/api/v1/chat", json={"prompt": f"What is {i}?"}, headers=KEY,
                                 timeout=timeout).status_code
        except requests.RequestException as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(call, range(count)))


@pytest.mark.parametrize("kind", ["headers", "body", "idle"])
def test_slow_clients_hold_gunicorn_but_not_the_edge(stack, kind):
    front, direct, _ = stack
    with slow_clients(front, SLOW_CLIENTS, kind, KEY_VALUE):
        assert _legitimate(front) == [200] * 10
    if kind == "idle":
        return  # gunicorn parks idle keep-alives itself; the edge must only not make it worse
    # the same slow clients straight at gunicorn: its eight threads are held and real requests wait
    with slow_clients(direct, SLOW_CLIENTS, kind, KEY_VALUE):
        results = _legitimate(direct, count=4, timeout=3)
    assert results.count(200) < 4, results


def test_a_burst_of_500_streams_through_the_edge(stack, ollama):
    front, _, _ = stack
    ollama.default = Script(reply="one two three")

    def stream(i):
        with requests.post(f"{front}/v1/chat/completions", headers=KEY, stream=True, timeout=60,
                           json={"model": "tinyllama", "stream": True,
                                 "messages": [{"role": "user", "content": f"Count {i}"}]}) as r:
            body = b"".join(r.iter_content(None)).decode()
        return r.status_code, body.rstrip().endswith("data: [DONE]")

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(stream, range(500)))
    assert results == [(200, True)] * 500


def test_streamed_chunks_pass_the_edge_as_they_come(stack, ollama):
    front, _, _ = stack
    ollama.default = Script(reply="a b c d e f", chunk_delay=0.3)
    started = time.monotonic()
    arrivals = []
    with requests.post(f"{front}/v1/chat/completions", headers=KEY, stream=True, timeout=30,
                       json={"model": "tinyllama", "stream": True,
                             "messages": [{"role": "user", "content": "Say six letters"}]}) as r:
        for line in r.iter_lines():
            if line.startswith(b"data: {"):
                arrivals.append(time.monotonic() - started)
    total = time.monotonic() - started
    assert len(arrivals) >= 6 and total >= 1.5
    # the first token arrives while the upstream is still generating, not when the answer is complete
    assert arrivals[0] < total - 1.0, (arrivals, total)


def test_the_openai_sdk_through_the_edge(stack, ollama):
    front, _, _ = stack
    client = openai.OpenAI(base_url=f"{front}/v1", api_key="integration-key", max_retries=0)
    answer = client.chat.completions.create(model="tinyllama", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content and answer.model == "tinyllama"
    ollama.default = Script(reply="streamed through")
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="tinyllama", stream=True, messages=[{"role": "user", "content": "Hi"}]) if c.choices]
    assert "".join(parts) == "streamed through"
    assert ollama.requests and all(r.path == "/api/chat" for r in ollama.requests)  # the gateway called Ollama


def test_an_oversized_body_is_refused_at_the_edge(stack, ollama):
    front, _, log = stack
    before = log.read_text().count('"route"')
    r = requests.post(f"{front}/api/v1/chat", headers=KEY, timeout=10,
                      data=json.dumps({"prompt": "x" * 70_000}))
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"
    assert r.json()["request_id"] == r.headers["X-Request-ID"]  # the native error shape, with an id to quote
    r = requests.post(f"{front}/v1/chat/completions", headers=KEY, timeout=10,
                      json={"model": "tinyllama", "messages": [{"role": "user", "content": "x" * 70_000}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"  # the OpenAI one
    time.sleep(0.5)
    assert log.read_text().count('"route"') == before  # gunicorn never saw it
    assert ollama.requests == []


def test_a_batch_file_may_be_larger_than_a_request_but_not_without_bound(stack):
    """POST /v1/files takes up to BATCH_MAX_FILE_BYTES through the edge; any other body stays at MAX_BODY_BYTES."""
    front, _, _ = stack
    client = openai.OpenAI(base_url=f"{front}/v1", api_key=KEY_VALUE, max_retries=0)
    line = json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "auto", "messages": [{"role": "user", "content": "y" * 900}]}}) + "\n"
    uploaded = client.files.create(file=("lines.jsonl", (line * 100).encode()), purpose="batch")  # ~100 KB
    assert uploaded.bytes == len(line) * 100 > 65536
    with pytest.raises(openai.APIStatusError) as err:
        client.files.create(file=("lines.jsonl", (line * 250).encode()), purpose="batch")
    assert err.value.status_code == 413 and "BATCH_MAX_FILE_BYTES" in err.value.message


def _from(url: str, source: str, request_id: str) -> int:
    """A chat call from another loopback address (source), claiming to be 203.0.113.9."""
    conn = http.client.HTTPConnection(*address(url), timeout=10, source_address=(source, 0))
    conn.request("POST", "/api/v1/chat", body=json.dumps({"prompt": "What is 1?"}),
                 headers={**KEY, "Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9",
                          "X-Request-ID": request_id})
    status = conn.getresponse().status
    conn.close()
    return status


def _logged_client(log, request_id: str) -> str:
    time.sleep(0.2)
    return next(json.loads(line) for line in log.read_text().splitlines()
                if line.startswith("{") and request_id in line)["client"]


def test_the_gateway_sees_the_client_not_a_forged_header(stack):
    front, direct, log = stack
    # through the edge (127.0.0.1, trusted): the address the edge saw, not the one the client claimed
    assert _from(front, "127.0.0.2", "xff-through-edge") == 200
    assert _logged_client(log, "xff-through-edge") == "127.0.0.2"
    # straight from an address that is not the edge: its own address, the header ignored
    assert _from(direct, "127.0.0.3", "xff-direct") == 200
    assert _logged_client(log, "xff-direct") == "127.0.0.3"
