"""A fast fake upstream for benchmarks: Ollama's native API and the OpenAI chat API, instant fixed replies
(or a fixed delay), HTTP/1.1 keep-alive, on asyncio with no framework. It is the "direct call" baseline, so
it must cost as little as possible; tests/fakes/ are the protocol-faithful, scriptable ones for tests.

    python scripts/bench/upstream.py --port 11434 [--delay-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

MODELS = ("tinyllama", "phi", "mistral", "qwen3:0.6b", "qwen3-vl:2b")
REPLY = "Hello from the benchmark upstream."


def _ollama_chat(body: dict) -> dict:
    message = {"role": "assistant", "content": REPLY}
    if body.get("tools"):  # a request with tools: a call of the first one, whole, as Ollama answers
        tool = body["tools"][0]["function"]["name"]
        message = {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_bench01", "function": {"index": 0, "name": tool, "arguments": {"city": "Paris"}}}]}
    return {"model": body.get("model", "tinyllama"), "created_at": "2026-11-22T00:00:00Z",
            "message": message, "done": True, "done_reason": "stop",
            "total_duration": 1000, "prompt_eval_count": 12, "eval_count": 8}


def _ollama_stream(body: dict) -> list[bytes]:
    """What Ollama streams (its default): a line per token, then the final line with the counts."""
    model = body.get("model", "tinyllama")
    lines = [{"model": model, "created_at": "2026-11-22T00:00:00Z", "message": {"role": "assistant", "content": w},
              "done": False} for w in _pieces()]
    final = dict(_ollama_chat(body), message={"role": "assistant", "content": ""})
    return [json.dumps(x).encode() + b"\n" for x in (*lines, final)]


def _openai_stream(body: dict) -> list[bytes]:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body.get("model", "tinyllama")}
    chunks = [dict(base, choices=[{"index": 0, "delta": {"content": w}, "finish_reason": None}]) for w in _pieces()]
    chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    chunks.append(dict(base, choices=[], usage={"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}))
    return [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def _pieces() -> list[str]:
    words = REPLY.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def _openai_chat(body: dict) -> dict:
    return {"id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "tinyllama"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}}


TAGS = json.dumps({"models": [{"name": m if ":" in m else f"{m}:latest", "model": m, "size": 1, "capabilities": [
    "completion", "tools"] if m.startswith("qwen3") else ["completion"]} for m in MODELS]}).encode()
PS = json.dumps({"models": []}).encode()
OPENAI_MODELS = json.dumps({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "bench"}
                                                       for m in MODELS]}).encode()


class Upstream(asyncio.Protocol):
    delay = 0.0

    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4:head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length:]
            method, path = head.split(" ", 2)[:2]
            status, payload = self.answer(method, path.split("?")[0], body)
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self.send, status, payload)
            else:
                self.send(status, payload)

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if method == "GET" and path == "/api/tags":
            return 200, TAGS
        if method == "GET" and path == "/api/ps":
            return 200, PS
        if method == "GET" and path == "/v1/models":
            return 200, OPENAI_MODELS
        if method == "POST" and path in ("/api/chat", "/v1/chat/completions"):
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                return 400, b'{"error": "invalid JSON"}'
            ollama = path == "/api/chat"
            if request.get("stream", ollama) is True:  # Ollama streams unless told not to; OpenAI when told to
                return 200, (_ollama_stream(request) if ollama else _openai_stream(request))
            reply = _ollama_chat(request) if ollama else _openai_chat(request)
            return 200, json.dumps(reply).encode()
        return 404, b'{"error": "not found"}'

    def send(self, status: int, payload: bytes | list[bytes]) -> None:
        """A JSON body, or (a list) a stream sent chunked, one chunk per line or event, as the real servers do."""
        if self.transport.is_closing():
            return
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        if isinstance(payload, list):
            kind = "application/x-ndjson" if payload[0].startswith(b"{") else "text/event-stream"
            body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in payload) + b"0\r\n\r\n"
            self.transport.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
                                 "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n".encode() + body)
            return
        self.transport.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(payload)}\r\nConnection: keep-alive\r\n\r\n".encode() + payload)


async def serve(port: int, delay_ms: float) -> None:
    Upstream.delay = delay_ms / 1000
    server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="answer every chat after this delay")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.delay_ms))


if __name__ == "__main__":
    main()
