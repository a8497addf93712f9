"""A fake OpenAI-compatible upstream (vLLM / llama.cpp / OpenAI): /v1/chat/completions and /v1/models.

Streaming is SSE `data:` chunks ending with `data: [DONE]`, with a usage chunk when
stream_options.include_usage is set; errors are {"error": {message, type, param, code}}.

Tools as OpenAI sends them: `tool_calls` with JSON-string arguments and content null, finish_reason
tool_calls; streamed as indexed deltas (id, type and name with an empty arguments string on a call's first
piece, then argument fragments), parallel calls' fragments interleaved. A tool message that answers no
earlier call is refused as OpenAI refuses it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import uuid

from .server import FakeServer, call_text, pieces, token_logprobs, words

ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
               429: "rate_limit_exceeded", 500: "server_error", 503: "server_error"}


class FakeOpenAI(FakeServer):
    def __init__(self, api_key: str | None = "sk-compat-test", models=("compat-model", "compat-reasoning"),
                 completion_tokens_only=("compat-reasoning",)):
        super().__init__()
        self.api_key = api_key
        self.models = set(models)
        # Like OpenAI's reasoning models: the output limit only as max_completion_tokens; max_tokens is a 400.
        self.completion_tokens_only = set(completion_tokens_only)

    def _embeddings(self, h, body):
        if not isinstance(body, dict) or body.get("model") not in self.models or "input" not in body:
            return self.error(h, 404, "The model does not exist", code="model_not_found")
        rows, tokens = _embedding_rows(body)
        return self.send(h, 200, {"object": "list", "data": rows, "model": body["model"],
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def error(self, h, status, message, type_=None, headers=None, content_type="application/json", code=None,
              param=None):
        body = {"error": {"message": message, "type": type_ or ERROR_TYPES.get(status, "server_error"),
                          "param": param, "code": code}}
        return self.send(h, status, body, content_type, headers)

    def reset(self):
        super().reset()
        with self._lock:
            self.__dict__.pop("_prefixes", None)

    def _cached(self, body: dict) -> int:
        """OpenAI's automatic prompt caching: a prompt of 1024 tokens or more reads the longest prefix (whole
        messages here) an earlier request sent, counted in steps of 128 tokens."""
        seen, size, digest, found = self.__dict__.setdefault("_prefixes", set()), 0, hashlib.sha256(), 0
        with self._lock:
            for m in body["messages"]:
                size += words(_text(m.get("content"))) if isinstance(m, dict) else 0
                digest.update(json.dumps(m, sort_keys=True).encode())
                key = (body["model"], digest.hexdigest())
                if key in seen and size >= 1024:
                    found = size
                seen.add(key)
        return found // 128 * 128

    def handle(self, h, method, path, body):
        if self.api_key and h.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error(h, 401, "Incorrect API key provided", code="invalid_api_key")
        if method == "GET" and path == "/v1/models":
            return self.send(h, 200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
                for m in sorted(self.models)]})
        if method == "POST" and path == "/v1/embeddings":
            return self._embeddings(h, body)
        if not (method == "POST" and path == "/v1/chat/completions"):
            return self.error(h, 404, f"Unknown request URL: {method} {path}", code="unknown_url")
        script = self.next_script()
        if self.scripted_prelude(h, script):
            return None
        if script.status >= 400:
            return self.error(h, script.status, script.error_message, script.error_type, script.headers,
                              script.content_type or "application/json")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            return self.error(h, 400, "'model' and 'messages' are required", param="messages")
        if body["model"] not in self.models:
            return self.error(h, 404, f"The model `{body['model']}` does not exist", code="model_not_found")
        if body["model"] in self.completion_tokens_only and "max_tokens" in body:
            return self.error(h, 400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                              "Use 'max_completion_tokens' instead.", param="max_tokens", code="unsupported_parameter")
        problem = _invalid_tools(body)
        if problem:
            return self.error(h, 400, problem, param="messages")
        prompt_tokens = sum(words(_text(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
        cached = self._cached(body)
        reply = pieces(script.reply) if script.reply else []
        calls = [{"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                  "function": {"name": c["name"], "arguments": call_text(c)}}
                 for c in (script.tool_calls or [])] if body.get("tools") else []
        finish = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and 0 < limit < len(reply):
            reply, finish = reply[:limit], "length"
        elif calls:
            finish = "tool_calls"
        cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(reply),
                 "total_tokens": prompt_tokens + len(reply), "prompt_tokens_details": {"cached_tokens": cached}}
        # With "logprobs": true, each choice carries {"content": [{token, logprob, bytes, top_logprobs}]}.
        scored = [dict(e, top_logprobs=[]) for e in token_logprobs(script, reply)] if body.get("logprobs") else None
        bill = self.bill(h, prompt_tokens, body["model"])
        if not body.get("stream"):
            if script.endless:
                return self.endless_json(h, script)
            bill[1] = len(reply)
            message = {"role": "assistant", "content": "".join(reply) if reply or not calls else None}
            if calls:
                message["tool_calls"] = calls
            return self.send(h, 200, {
                "id": cid, "object": "chat.completion", "created": created, "model": body["model"],
                "choices": [{"index": 0, "message": message,
                             "finish_reason": finish, "logprobs": {"content": scored} if scored else None}],
                "usage": usage}, script.content_type or "application/json", script.headers)

        def chunk(delta, finish_reason=None, usage_=None, choices=True, logprobs=None):
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]
                    if choices else []}
            if usage_ is not None:
                data["usage"] = usage_
            self.write_chunk(h, f"data: {json.dumps(data)}\n\n".encode())

        self.start_stream(h, script.content_type or "text/event-stream", script.headers)
        chunk({"role": "assistant", "content": ""})
        for i, piece in enumerate(itertools.cycle(reply) if script.endless else reply):
            if script.cut_after is not None and i >= script.cut_after:
                return self.cut(h)
            if script.error_after is not None and i >= script.error_after:
                self.write_chunk(h, f"data: {json.dumps({'error': {'message': script.error_message}})}\n\n".encode())
                return self.end_stream(h)
            chunk({"content": piece}, logprobs={"content": [scored[i % len(scored)]]} if scored else None)
            bill[1] += 1
            if script.chunk_delay:
                time.sleep(script.chunk_delay)
        for n, call in enumerate(calls):  # each call's first piece: index, id, type, name, arguments ""
            chunk({"tool_calls": [{"index": n, "id": call["id"], "type": "function",
                                   "function": {"name": call["function"]["name"], "arguments": ""}}]})
        fragments = [[c["function"]["arguments"][i:i + 7] for i in range(0, len(c["function"]["arguments"]), 7)]
                     for c in calls]
        for step in range(max((len(f) for f in fragments), default=0)):  # parallel calls interleaved
            for n, frags in enumerate(fragments):
                if step < len(frags):
                    chunk({"tool_calls": [{"index": n, "function": {"arguments": frags[step]}}]})
        chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage") and not script.omit_counts:
            chunk(None, usage_=usage, choices=False)
        self.write_chunk(h, b"data: [DONE]\n\n")
        return self.end_stream(h)


def _embedding_rows(body: dict) -> tuple[list[dict], int]:
    import base64
    import struct

    from .ollama import vector
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    size = min(int(body.get("dimensions") or 8), 8)
    rows = []
    for i, t in enumerate(texts):
        v = vector(t, size)
        encoded = base64.b64encode(struct.pack(f"<{size}f", *v)).decode() if body.get(
            "encoding_format", "float") == "base64" else v
        rows.append({"object": "embedding", "index": i, "embedding": encoded})
    return rows, sum(words(t) for t in texts)


def _text(content) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


def _invalid_tools(body: dict) -> str | None:
    answered: set[str] = set()
    for i, m in enumerate(body["messages"]):
        if not isinstance(m, dict):
            return f"messages[{i}] must be an object"
        if m.get("role") == "assistant":
            answered = set()
            for c in m.get("tool_calls") or []:
                if not isinstance(c.get("function", {}).get("arguments"), str):
                    return f"Invalid type for 'messages[{i}].tool_calls[0].function.arguments': expected a string"
                answered.add(c.get("id"))
        elif m.get("role") == "tool" and m.get("tool_call_id") not in answered:
            return ("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                    "'tool_calls'.")
    return None
