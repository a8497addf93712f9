"""A scriptable HTTP server on loopback, the base of the protocol-faithful fake upstreams.

Each fake answers its protocol's paths like the real server. A test scripts the next answers with
`fake.queue(Script(...))` (first in, first out; `fake.default` when the queue is empty) and reads what
the gateway sent from `fake.requests`. Scripts cover the awkward cases: delay, error status with the
protocol's error body, retry-after, malformed body, wrong content type, stream cut or error after k chunks.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Script:
    reply: str = "Hello from the fake."
    status: int = 200
    error_type: str | None = None        # protocol error type for status >= 400
    error_message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0                   # before anything is sent: slow first byte / read timeout
    raw_body: bytes | None = None        # send these bytes instead of the protocol body (malformed)
    content_type: str | None = None      # override the Content-Type
    cut_after: int | None = None         # streaming: drop the connection after k chunks
    error_after: int | None = None       # streaming: send the protocol's in-stream error after k chunks
    chunk_delay: float = 0.0
    drop: bool = False                   # close the connection without any response
    endless: bool = False                # streaming: repeat the reply forever (until the client leaves)
    # Log-probabilities of the reply's tokens (one per piece, cycled), sent only when the request asks for
    # them, as the real servers do; None: -0.05 each.
    logprobs: tuple[float, ...] | None = None
    # Anthropic: message_delta events carrying the (cumulative) output count, spread over the answer.
    usage_updates: int = 1
    # Leave out the optional token counts (Ollama's prompt_eval_count/eval_count, OpenAI's usage chunk,
    # Anthropic's message_delta output_tokens), as some servers and versions do.
    omit_counts: bool = False
    # Tool calls the model makes after `reply` (use reply="" for calls only): [{"name", "arguments"}], the
    # arguments an object (or, for OpenAI's string field, any text: malformed JSON). Each fake sends them
    # in its own protocol's shape.
    tool_calls: list[dict] | None = None
    # Ollama before 0.12.10: tool calls without ids.
    no_call_ids: bool = False
    # Answer only once the test sets this event (what a caller does meanwhile shows it did not wait)
    hold: threading.Event | None = None


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeServer:
    """Override `handle(handler, method, path, body)`; use `self.next_script()` for scripted paths."""

    def __init__(self):
        self.default = Script()
        self._queue: deque[Script] = deque()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self.inflight = self.max_inflight = 0  # concurrent requests now / at most, to prove concurrency
        self.posts_inflight = self.max_posts_inflight = 0  # the same for model calls only (POST), health aside
        self.aborted = 0  # responses the client hung up on before they were complete
        # What a real provider would bill: per accepted generation, [input tokens, output tokens written to the
        # socket] (a client that leaves mid-answer is still billed what was generated).
        self.bills: list[list] = []
        self._epoch = 0  # reset() starts a new one: a slow request of an earlier test does not bill this one
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every keep-alive response.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output quiet
                pass

            def _dispatch(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                with fake._lock:
                    self.epoch = fake._epoch
                    fake.requests.append(Recorded(method, self.path, {k.lower(): v for k, v in self.headers.items()},
                                                  body))
                    fake.inflight += 1
                    fake.max_inflight = max(fake.max_inflight, fake.inflight)
                    if method == "POST":
                        fake.posts_inflight += 1
                        fake.max_posts_inflight = max(fake.max_posts_inflight, fake.posts_inflight)
                try:
                    fake.handle(self, method, self.path.split("?")[0], body)
                except (BrokenPipeError, ConnectionResetError):
                    with fake._lock:
                        fake.aborted += 1
                finally:
                    with fake._lock:
                        fake.inflight -= 1
                        fake.posts_inflight -= method == "POST"

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # benchmarks open hundreds of connections at once

            def handle_error(self, request, client_address):
                pass  # a client that hung up mid-answer (timeouts under test) is expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    # --- scripting -------------------------------------------------------------------------
    def queue(self, *scripts: Script) -> FakeServer:
        with self._lock:
            self._queue.extend(scripts)
        return self

    def next_script(self) -> Script:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.bills.clear()
            self._epoch += 1
            self.max_inflight = self.max_posts_inflight = self.aborted = 0
        self.default = Script()

    def calls(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0] == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def bill(self, h: BaseHTTPRequestHandler, input_tokens: int, model: str = "", cache=(0, 0, 0),
             factor: float = 1.0) -> list:
        """Open the bill of one generation, [input tokens, output tokens, model, (cache writes 5m, writes 1h,
        reads), price factor (a batch: 0.5)]; input tokens are the uncached ones (Anthropic bills the cache's at
        its own prices). The caller adds output tokens as it writes them."""
        entry = [input_tokens, 0, model, tuple(cache), factor]
        with self._lock:
            if getattr(h, "epoch", None) == self._epoch:
                self.bills.append(entry)
        return entry

    def billed(self, price_in_per_mtok: float, price_out_per_mtok: float) -> float:
        """USD this fake would have charged if every model had these prices."""
        with self._lock:
            return sum(i * price_in_per_mtok + o * price_out_per_mtok for i, o, *_ in self.bills) / 1e6

    def billed_at(self, prices: dict[str, tuple[float, float]]) -> float:
        """USD this fake would have charged, at each model id's (input, output) prices per Mtok; the cache at
        Anthropic's multiples of the input price (writes 1.25x for 5 minutes, 2x for an hour; reads 0.1x)."""
        with self._lock:
            return sum(factor * (prices[m][0] * (i + 1.25 * w5 + 2 * w1h + 0.1 * r) + o * prices[m][1])
                       for i, o, m, (w5, w1h, r), factor in self.bills) / 1e6

    # --- helpers for subclasses ------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler, method: str, path: str, body: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, payload: Any, content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def start_stream(h: BaseHTTPRequestHandler, content_type: str, headers: dict[str, str] | None = None) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()

    @staticmethod
    def write_chunk(h: BaseHTTPRequestHandler, data: bytes) -> None:
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()

    @staticmethod
    def end_stream(h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    @staticmethod
    def cut(h: BaseHTTPRequestHandler) -> None:
        """Drop the TCP connection mid-response, as a crashed upstream would."""
        h.close_connection = True
        try:
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def endless_json(self, h: BaseHTTPRequestHandler, script: Script) -> None:
        """A JSON body that never ends (a broken upstream): whitespace forever, until the client leaves."""
        self.start_stream(h, "application/json")
        self.write_chunk(h, b'{"model": "x", ')
        while True:
            self.write_chunk(h, b" " * 64)
            time.sleep(script.chunk_delay or 0.01)

    def scripted_prelude(self, h: BaseHTTPRequestHandler, script: Script) -> bool:
        """Apply delay/drop/raw body. Returns True when the response is already fully handled."""
        if script.delay:
            time.sleep(script.delay)
        if script.hold is not None:
            script.hold.wait(30)
        if script.drop:
            self.cut(h)
            return True
        if script.raw_body is not None:
            self.send(h, script.status, script.raw_body, script.content_type or "application/json", script.headers)
            return True
        return False


def call_arguments(call: dict) -> dict:
    """A scripted call's arguments as an object (the Ollama and Anthropic shape)."""
    args = call.get("arguments", {})
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            return {"_unparsable": args}
    return args


def call_text(call: dict) -> str:
    """A scripted call's arguments as JSON text (the OpenAI shape), malformed when scripted so."""
    args = call.get("arguments", {})
    return args if isinstance(args, str) else json.dumps(args)


def words(text: str) -> int:
    """The fakes' tokenizer: one token per whitespace-separated word. Deterministic, easy to assert on."""
    return len(text.split())


def pieces(text: str) -> list[str]:
    """A reply split into stream chunks, one word (with its following space) each."""
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


def token_logprobs(script: Script, reply_pieces: list[str]) -> list[dict]:
    """Per sampled token, what Ollama and OpenAI-compatible servers report: token, logprob, UTF-8 bytes."""
    values = script.logprobs or (-0.05,)
    return [{"token": p, "logprob": values[i % len(values)], "bytes": list(p.encode())}
            for i, p in enumerate(reply_pieces)]
