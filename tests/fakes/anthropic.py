"""A fake Anthropic Messages API: POST /v1/messages, JSON or SSE, with the real error shapes.

Accepts both authentication styles (Authorization: Bearer from SDK 2.x, x-api-key from older clients)
and requires an anthropic-version header. Streaming follows the event sequence of the real API:
message_start (input usage), content_block_start, ping, content_block_delta (text_delta)...,
content_block_stop, message_delta (CUMULATIVE output_tokens; several with Script.usage_updates), message_stop;
`error` events can arrive after the 200 status line. `bills` records what the real API would charge.

Prompt caching as the API does it: tools, then system, then messages, a block at a time; a block with
`cache_control` is a breakpoint (at most 4, else 400). A request reads the longest earlier-cached prefix
found at a block boundary up to 20 blocks before one of its breakpoints, and writes each breakpoint's prefix
beyond that, if the prefix reaches the model's minimum cacheable length (MIN_CACHE); entries live 5 minutes
(or `ttl: 1h`) from their last use. usage.input_tokens is then the uncached part, with
cache_creation_input_tokens (and its split by lifetime) and cache_read_input_tokens beside it.

Tools as the real API takes and gives them: `tool_use` blocks (object input, toolu_ ids) after any text,
stop_reason tool_use, streamed as content_block_start (input {}) then `input_json_delta` fragments; the
request is refused (400, the API's own wording) for the rules translators break: an empty text block, a
tool_use not answered by tool_result blocks at the start of the next user turn, a tool_result for no
tool_use, a tool without an object input_schema, an image of another media type.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import uuid

from .server import FakeServer, Script, call_arguments, pieces, words

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

MIN_CACHE = {"claude-sonnet-5-5": 2048, "claude-haiku-4-5": 4096}  # as in configs/models.yaml
LOOKBACK = 20  # blocks before a breakpoint where the API looks for an earlier cached prefix

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error", 503: "overloaded_error"}


class FakeAnthropic(FakeServer):
    def __init__(self, api_key: str = "sk-ant-test-key", models=("claude-sonnet-5-5", "claude-haiku-4-5"),
                 no_sampling=("claude-sonnet-5-5",)):
        super().__init__()
        self.api_key = api_key
        self.models = set(models)
        self.no_sampling = set(no_sampling)  # models that reject a non-default temperature (Claude 5 series)
        self.prompt_cache: dict[str, float] = {}  # prefix hash -> expiry (monotonic)
        self.message_batches: dict[str, dict] = {}
        self.batch_delay = 0.0  # seconds a message batch stays in_progress

    def reset(self):
        super().reset()
        with self._lock:
            self.prompt_cache.clear()
            self.message_batches.clear()
        self.batch_delay = 0.0

    def cache_usage(self, body: dict) -> tuple[int, tuple[int, int, int]] | str:
        """(uncached input tokens, (cache writes 5m, writes 1h, reads)) for this request, caching what it
        marks; or the API's error for too many breakpoints."""
        segments = []  # (tokens, ttl of its mark or None, canonical text)
        system = body.get("system") or ""
        blocks = [*(body.get("tools") or []),
                  *([{"type": "text", "text": system}] if isinstance(system, str) else system)]
        for m in body["messages"]:
            blocks += [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else m["content"]
        for b in blocks:
            plain = {k: v for k, v in b.items() if k != "cache_control"}
            mark = b.get("cache_control")
            tokens = words(json.dumps(plain) if "input_schema" in b else _text([plain]))
            segments.append((tokens, (mark.get("ttl") or "5m") if mark else None, json.dumps(plain, sort_keys=True)))
        marks = [i for i, seg in enumerate(segments) if seg[1]]
        if len(marks) > 4:
            return f"A maximum of 4 blocks with cache_control may be provided. Found {len(marks)}."
        cum, hashes, total, digest = [], [], 0, hashlib.sha256(body["model"].encode())
        for tokens, _, text in segments:
            total += tokens
            digest.update(text.encode())
            cum.append(total)
            hashes.append(digest.copy().hexdigest())
        now, least = time.monotonic(), MIN_CACHE.get(body["model"], 1024)
        with self._lock:
            hits = [j for i in marks for j in range(max(0, i - LOOKBACK), i + 1)
                    if self.prompt_cache.get(hashes[j], 0) > now]
            read = max((cum[j] for j in hits), default=0)
            written = {"5m": 0, "1h": 0}
            for i in marks:
                ttl = segments[i][1]
                if cum[i] >= least:
                    self.prompt_cache[hashes[i]] = max(self.prompt_cache.get(hashes[i], 0),
                                                       now + (3600 if ttl == "1h" else 300))
                    if cum[i] > read + written["5m"] + written["1h"]:
                        written[ttl] += cum[i] - read - written["5m"] - written["1h"]
        cached = (written["5m"], written["1h"], read)
        return total - sum(cached), cached

    def error(self, h, status, message, type_=None, headers=None, content_type="application/json"):
        body = {"type": "error", "error": {"type": type_ or ERROR_TYPES.get(status, "api_error"), "message": message},
                "request_id": "req_" + uuid.uuid4().hex[:24]}
        return self.send(h, status, body, content_type, headers)

    def handle(self, h, method, path, body):
        batches = path.startswith("/v1/messages/batches")
        if not (method == "POST" and path in ("/v1/messages", "/v1/messages/count_tokens")) and not batches:
            return self.error(h, 404, f"Not found: {path}", "not_found_error")
        headers = h.headers
        bearer = headers.get("Authorization", "")
        key = bearer[7:] if bearer.startswith("Bearer ") else headers.get("x-api-key")
        if key != self.api_key:
            return self.error(h, 401, "invalid x-api-key")
        if not headers.get("anthropic-version"):
            return self.error(h, 400, "anthropic-version: header is required")
        if batches:
            return self._batches(h, method, path, body)
        if path == "/v1/messages/count_tokens":  # the fakes' tokenizer: a token per word
            if not isinstance(body, dict) or body.get("model") not in self.models:
                return self.error(h, 404 if isinstance(body, dict) else 400, "model: not found")
            system = body.get("system") or ""
            return self.send(h, 200, {"input_tokens": words(system if isinstance(system, str) else _text(system))
                                      + sum(words(_text(m["content"])) for m in body.get("messages") or [])})
        script = self.next_script()
        if self.scripted_prelude(h, script):
            return None
        if script.status >= 400:
            return self.error(h, script.status, script.error_message, script.error_type, script.headers,
                              script.content_type or "application/json")
        answer = self._answer(h, body, script, streamed=bool(isinstance(body, dict) and body.get("stream")))
        if answer[0] != 200:
            return self.error(h, answer[0], answer[1])
        if isinstance(answer[1], dict):
            return self.send(h, 200, answer[1], script.content_type or "application/json", script.headers)
        return self._stream(h, body, script, *answer[1])

    def _answer(self, h, body, script: Script, streamed: bool, factor: float = 1.0):
        """(200, the message) or, streamed, (200, the stream's parts); (status, message) for a refusal."""
        problem = self._invalid(body)
        if problem:
            return 400, problem
        if body["model"] not in self.models:
            return 404, f"model: {body['model']}"
        if body["model"] in self.no_sampling and "temperature" in body:
            return 400, "temperature is not supported for this model"
        counted = self.cache_usage(body)
        if isinstance(counted, str):
            return 400, counted
        input_tokens, cache = counted
        scripted_calls = script.tool_calls or []
        forced = (body.get("tool_choice") or {}).get("name") if (body.get("tool_choice") or {}).get("type") == \
            "tool" else None
        if forced and not scripted_calls:  # a forced tool is always called: the scripted reply is its input
            try:
                scripted_calls = [{"name": forced, "arguments": json.loads(script.reply)}]
            except ValueError:
                scripted_calls = [{"name": forced, "arguments": {}}]
            script = Script(**{**script.__dict__, "reply": ""})
        reply = pieces(script.reply) if script.reply else []
        stop = "end_turn"
        if len(reply) > body["max_tokens"]:
            reply, stop = reply[: body["max_tokens"]], "max_tokens"
        calls = [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": c["name"],
                  "input": call_arguments(c)} for c in scripted_calls] if body.get("tools") else []
        if calls and stop == "end_turn":
            stop = "tool_use"
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        if streamed:
            return 200, (msg_id, input_tokens, reply, stop, calls, cache)
        self.bill(h, input_tokens, body["model"], cache, factor)[1] = len(reply)
        text = [{"type": "text", "text": "".join(reply)}] if reply else []
        return 200, {
            "id": msg_id, "type": "message", "role": "assistant", "model": body["model"],
            "content": text + calls, "stop_reason": stop, "stop_sequence": None,
            "usage": {**_input_usage(input_tokens, cache), "output_tokens": len(reply)},
        }

    def _batches(self, h, method, path, body):
        """The Message Batches API: create, retrieve, results, cancel. A batch ends `batch_delay` seconds after
        it was created (each request answered from the script queue, billed at half price)."""
        parts = path.split("/")[4:]  # after /v1/messages/batches
        if method == "POST" and not parts:
            requests = body.get("requests") if isinstance(body, dict) else None
            if not isinstance(requests, list) or not requests:
                return self.error(h, 400, "requests: Field required")
            ids = [r.get("custom_id") for r in requests]
            if len(set(ids)) != len(ids) or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
                return self.error(h, 400, "requests: custom_id must be unique strings of 1 to 64 characters")
            batch_id = "msgbatch_" + uuid.uuid4().hex[:24]
            results = []
            for r in requests:
                status, answer = self._answer(h, r.get("params"), self.next_script(), False, factor=0.5)
                results.append({"custom_id": r["custom_id"], "result": {"type": "succeeded", "message": answer}}
                               if status == 200 else {"custom_id": r["custom_id"], "result": {"type": "errored",
                                   "error": {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"),
                                                                        "message": answer}}}})
            with self._lock:
                self.message_batches[batch_id] = {"created": time.time(), "results": results, "canceled": False}
            return self.send(h, 200, self._batch(batch_id))
        batch = self.message_batches.get(parts[0]) if parts else None
        if batch is None:
            return self.error(h, 404, "message batch not found", "not_found_error")
        if method == "POST" and parts[1:] == ["cancel"]:
            batch["canceled"] = True
            return self.send(h, 200, self._batch(parts[0]))
        if method == "GET" and parts[1:] == ["results"]:
            view = self._batch(parts[0])
            if view["processing_status"] != "ended":
                return self.error(h, 400, "the batch is still processing")
            lines = [r if not batch["canceled"] else {"custom_id": r["custom_id"], "result": {"type": "canceled"}}
                     for r in batch["results"]]
            return self.send(h, 200, "".join(json.dumps(r) + "\n" for r in lines).encode(), "application/binary")
        if method == "GET" and not parts[1:]:
            return self.send(h, 200, self._batch(parts[0]))
        return self.error(h, 404, f"Not found: {path}", "not_found_error")

    def _batch(self, batch_id: str) -> dict:
        batch = self.message_batches[batch_id]
        ended = batch["canceled"] or time.time() - batch["created"] >= self.batch_delay
        results = batch["results"]
        ok = sum(r["result"]["type"] == "succeeded" for r in results)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch["created"]))
        counts = {"processing": 0 if ended else len(results), "succeeded": 0, "errored": 0, "canceled": 0,
                  "expired": 0}
        if ended and batch["canceled"]:
            counts["canceled"] = len(results)
        elif ended:
            counts.update(succeeded=ok, errored=len(results) - ok)
        return {"id": batch_id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
                "request_counts": counts, "ended_at": stamp if ended else None, "created_at": stamp,
                "expires_at": stamp, "archived_at": None, "cancel_initiated_at": stamp if batch["canceled"] else None,
                "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results" if ended else None}

    @staticmethod
    def _invalid(body) -> str | None:
        if not isinstance(body, dict):
            return "request body must be a JSON object"
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            return "max_tokens: Field required"
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return "messages: Field required"
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if msgs[0]["role"] != "user":
            return "messages: first message must use the \"user\" role"
        return FakeAnthropic._invalid_blocks(body)

    @staticmethod
    def _invalid_blocks(body) -> str | None:
        for i, t in enumerate(body.get("tools") or []):
            schema = t.get("input_schema") if isinstance(t, dict) else None
            if not isinstance(t.get("name"), str) or not isinstance(schema, dict) or schema.get("type") != "object":
                return f"tools.{i}.input_schema: Input should be an object schema"
        choice = body.get("tool_choice")
        if choice is not None and choice.get("type") not in ("auto", "any", "tool", "none"):
            return "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"
        pending: list[str] = []  # tool_use ids of the last assistant turn, to be answered next
        for i, m in enumerate(body["messages"]):
            blocks = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
            for j, b in enumerate(blocks):
                if b.get("type") == "text" and not b.get("text"):
                    return f"messages.{i}.content.{j}.text: text content blocks must be non-empty"
                if b.get("type") == "image" and b.get("source", {}).get("type") == "base64" and \
                        b["source"].get("media_type") not in IMAGE_TYPES:
                    return f"messages.{i}.content.{j}.source.media_type: Input should be one of {IMAGE_TYPES}"
            if m["role"] == "user":
                results = []
                for b in blocks:
                    if b.get("type") != "tool_result":
                        break
                    results.append(b.get("tool_use_id"))
                if any(b.get("type") == "tool_result" for b in blocks[len(results):]):
                    return (f"messages.{i}: tool_result blocks must come first in the user message, before any "
                            "other content")
                if pending and sorted(results) != sorted(pending):
                    return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                            f"after: {', '.join(sorted(set(pending) - set(results)))}. Each `tool_use` block must "
                            "have a corresponding `tool_result` block in the next message.")
                if results and not pending:
                    return f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks"
                pending = []
            else:
                pending = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
        return None

    def _stream(self, h, body, script: Script, msg_id, input_tokens, reply, stop, calls=(), cache=(0, 0, 0)):
        def event(name, data):
            self.write_chunk(h, f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        def usage(count):
            return {} if script.omit_counts else {"output_tokens": count}

        bill = self.bill(h, input_tokens, body["model"], cache)
        self.start_stream(h, script.content_type or "text/event-stream", script.headers)
        event("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": body["model"], "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {**_input_usage(input_tokens, cache), "output_tokens": 1}}})
        if reply or not calls:
            event("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}})
        event("ping", {"type": "ping"})
        # Intermediate message_delta events (usage_updates > 1) repeat the CUMULATIVE count so far.
        every = max(1, len(reply) // max(1, script.usage_updates))
        for i, piece in enumerate(itertools.cycle(reply) if script.endless else reply):
            if script.cut_after is not None and i >= script.cut_after:
                return self.cut(h)
            if script.error_after is not None and i >= script.error_after:
                event("error", {"type": "error", "error": {"type": script.error_type or "overloaded_error",
                                                           "message": script.error_message}})
                return self.end_stream(h)
            event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": piece}})
            bill[1] += 1
            if script.usage_updates > 1 and (i + 1) % every == 0 and i + 1 < len(reply):
                event("message_delta", {"type": "message_delta", "delta": {"stop_reason": None, "stop_sequence": None},
                                        "usage": usage(i + 1)})
            if script.chunk_delay:
                time.sleep(script.chunk_delay)
        if reply or not calls:
            event("content_block_stop", {"type": "content_block_stop", "index": 0})
        for n, call in enumerate(calls, start=1 if reply else 0):
            event("content_block_start", {"type": "content_block_start", "index": n, "content_block": {
                "type": "tool_use", "id": call["id"], "name": call["name"], "input": {}}})
            text = json.dumps(call["input"])
            cuts = [0, len(text) // 3, 2 * len(text) // 3, len(text)]  # fragments that are not JSON alone
            for a, b in itertools.pairwise(cuts):
                if b > a:
                    event("content_block_delta", {"type": "content_block_delta", "index": n,
                                                  "delta": {"type": "input_json_delta", "partial_json": text[a:b]}})
            event("content_block_stop", {"type": "content_block_stop", "index": n})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": usage(len(reply))})
        event("message_stop", {"type": "message_stop"})
        return self.end_stream(h)


def _input_usage(uncached: int, cache) -> dict:
    w5, w1h, read = cache
    return {"input_tokens": uncached, "cache_creation_input_tokens": w5 + w1h, "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1h}}


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") if b.get("type") == "text" else _text(b.get("content", ""))
                        for b in content if isinstance(b, dict))
    return ""
