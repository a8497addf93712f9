"""A fake OpenAI-compatible upstream (vLLM / llama.cpp / OpenAI): /v1/chat/completions and /v1/models.

Streaming is SSE `data:` chunks ending with `data: [DONE]`, with a usage chunk when
stream_options.include_usage is set; errors are {"error": {message, type, param, code}}.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid

from .server import FakeServer, pieces, token_logprobs, words

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

    def error(self, h, status, message, type_=None, headers=None, content_type="application/json", code=None,
              param=None):
        body = {"error": {"message": message, "type": type_ or ERROR_TYPES.get(status, "server_error"),
                          "param": param, "code": code}}
        return self.send(h, status, body, content_type, headers)

    def handle(self, h, method, path, body):
        if self.api_key and h.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error(h, 401, "Incorrect API key provided", code="invalid_api_key")
        if method == "GET" and path == "/v1/models":
            return self.send(h, 200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
                for m in sorted(self.models)]})
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
        prompt_tokens = sum(words(m.get("content") or "") for m in body["messages"] if isinstance(m, dict))
        reply = pieces(script.reply)
        finish = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and 0 < limit < len(reply):
            reply, finish = reply[:limit], "length"
        cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(reply),
                 "total_tokens": prompt_tokens + len(reply)}
        # With "logprobs": true, each choice carries {"content": [{token, logprob, bytes, top_logprobs}]}.
        scored = [dict(e, top_logprobs=[]) for e in token_logprobs(script, reply)] if body.get("logprobs") else None
        bill = self.bill(h, prompt_tokens, body["model"])
        if not body.get("stream"):
            if script.endless:
                return self.endless_json(h, script)
            bill[1] = len(reply)
            return self.send(h, 200, {
                "id": cid, "object": "chat.completion", "created": created, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(reply)},
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
        chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage") and not script.omit_counts:
            chunk(None, usage_=usage, choices=False)
        self.write_chunk(h, b"data: [DONE]\n\n")
        return self.end_stream(h)
