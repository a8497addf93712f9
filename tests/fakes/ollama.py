"""A fake Ollama: /api/chat (NDJSON streaming by default), /api/tags, /api/ps, /api/show, /api/version.

Follows the native API: stream defaults to true, token counts only on the final line
(prompt_eval_count / eval_count), durations in nanoseconds, 404 {"error"} for a model not pulled,
errors inside a 200 stream as an {"error": ...} line, per-token `logprobs` only when the request sets
"logprobs": true (0.12.11+). Tools as Ollama 0.12.10+ sends them: each call whole, object arguments, an id
(`call_` + 8), in its own NDJSON line when streamed, done_reason still "stop"; a model without the `tools`
capability refuses tools ("... does not support tools"), one without `vision` refuses images; /api/show
reports capabilities (and /api/tags too with `caps_in_tags`, as recent versions do).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
from datetime import UTC, datetime, timedelta

from .server import FakeServer, Script, call_arguments, pieces, token_logprobs, words


def vector(text: str, size: int) -> list[float]:
    """A deterministic unit vector for a text: the same text, the same vector."""
    raw = [((hash_bytes(text) >> (8 * i)) & 0xFF) + 1.0 for i in range(size)]
    norm = sum(x * x for x in raw) ** 0.5
    return [x / norm for x in raw]


def hash_bytes(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "little")


# What `ollama show` reports for the models the tests pull (ollama.com library pages).
CAPABILITIES = {"tinyllama": ["completion"], "phi": ["completion"], "mistral": ["completion", "tools"],
                "qwen3": ["completion", "tools", "thinking"], "llama3.2": ["completion", "tools"],
                "qwen3-vl": ["completion", "vision", "tools", "thinking"], "granite4": ["completion", "tools"],
                "nomic-embed-text": ["embedding"]}


class FakeOllama(FakeServer):
    def __init__(self, installed=("tinyllama", "phi", "mistral"), loaded=("tinyllama",)):
        super().__init__()
        self.installed = set(installed)
        self.loaded = set(loaded)
        self.vram = 0  # size_vram /api/ps reports for loaded models: > 0 means on the GPU
        self.health_delay = 0.0  # seconds /api/tags and /api/ps take: > the health timeout is a stuck server
        self.capabilities = {k: list(v) for k, v in CAPABILITIES.items()}
        self.caps_in_tags = False  # recent versions list capabilities on /api/tags too

    def reset(self) -> None:
        super().reset()
        self.vram, self.health_delay = 0, 0.0
        self.capabilities = {k: list(v) for k, v in CAPABILITIES.items()}
        self.caps_in_tags = False

    def caps(self, model: str) -> list[str]:
        name = model.removesuffix(":latest")
        return self.capabilities.get(name, self.capabilities.get(name.split(":")[0], ["completion"]))

    def handle(self, h, method, path, body):
        if path in ("/api/tags", "/api/ps") and self.health_delay:
            time.sleep(self.health_delay)
        if method == "GET" and path == "/api/version":
            return self.send(h, 200, {"version": "0.12.11"})
        if method == "GET" and path == "/api/tags":
            return self.send(h, 200, {"models": [
                {"name": f"{m}:latest", "model": f"{m}:latest", "size": 637_700_138, "digest": "sha256:" + "0" * 64,
                 "details": {"parameter_size": "1B", "quantization_level": "Q4_0"}}
                | ({"capabilities": self.caps(m)} if self.caps_in_tags else {}) for m in sorted(self.installed)]})
        if method == "POST" and path == "/api/show":
            model = str((body or {}).get("model", "")).removesuffix(":latest")
            if model not in self.installed:
                return self.send(h, 404, {"error": f"model '{model}' not found"})
            return self.send(h, 200, {"modelfile": "", "template": "{{ .Prompt }}", "details": {"family": "llama"},
                                      "model_info": {}, "capabilities": self.caps(model),
                                      "modified_at": datetime.now(UTC).isoformat()})
        if method == "GET" and path == "/api/ps":
            expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
            return self.send(h, 200, {"models": [
                {"name": f"{m}:latest", "model": f"{m}:latest", "size": 900_000_000, "size_vram": self.vram,
                 "expires_at": expires} for m in sorted(self.loaded)]})
        if method == "POST" and path == "/api/pull":
            model = (body or {}).get("model", "")
            self.start_stream(h, "application/x-ndjson")
            for status in ("pulling manifest", "pulling 2af3b81862c6", "verifying sha256 digest", "success"):
                self.write_chunk(h, json.dumps({"status": status}).encode() + b"\n")
            self.installed.add(model.removesuffix(":latest"))
            return self.end_stream(h)
        if method == "POST" and path == "/api/chat":
            return self._chat(h, body, self.next_script())
        if method == "POST" and path == "/api/embed":
            return self._embed(h, body, self.next_script())
        return self.send(h, 404, {"error": "404 page not found"}, "text/plain")

    def _chat(self, h, body, script: Script):
        if self.scripted_prelude(h, script):
            return None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return self.send(h, 400, {"error": "model is required"})
        if not isinstance(body.get("messages"), list):
            return self.send(h, 400, {"error": "messages must be a list"})
        model = body["model"].removesuffix(":latest")
        if script.status >= 400:
            return self.send(h, script.status, {"error": script.error_message},
                             script.content_type or "application/json", script.headers)
        if model not in self.installed:
            return self.send(h, 404, {"error": f'model "{model}" not found, try pulling it first'})
        full = f"registry.ollama.ai/library/{model}:latest"
        if body.get("tools") and "tools" not in self.caps(model):
            return self.send(h, 400, {"error": f"{full} does not support tools"})
        if any(m.get("images") for m in body["messages"] if isinstance(m, dict)) and "vision" not in self.caps(model):
            return self.send(h, 400, {"error": f"{full} does not support images"})
        self.loaded.add(model)
        prompt_tokens = sum(words(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
        limit = (body.get("options") or {}).get("num_predict")
        reply_pieces = pieces(script.reply)
        done_reason = "stop"
        if isinstance(limit, int) and 0 < limit < len(reply_pieces):
            reply_pieces, done_reason = reply_pieces[:limit], "length"
        final = {
            "model": body["model"], "created_at": datetime.now(UTC).isoformat(), "done": True,
            "done_reason": done_reason, "total_duration": 1_500_000_000, "load_duration": 2_000_000,
            "prompt_eval_count": prompt_tokens, "prompt_eval_duration": 300_000_000,
            "eval_count": len(reply_pieces), "eval_duration": 1_100_000_000,
        }
        if script.omit_counts:  # a prompt served from Ollama's cache leaves prompt_eval_count out
            del final["prompt_eval_count"], final["eval_count"]
        # Ollama 0.12.11+: a top-level list, one entry per token, only when asked
        scored = token_logprobs(script, reply_pieces) if body.get("logprobs") is True else None
        calls = [self._call(c, i, script) for i, c in enumerate(script.tool_calls or [])] if body.get("tools") else []
        if not reply_pieces[-1] and calls:
            reply_pieces = []  # reply="": calls only
        if calls:
            final["eval_count"] = len(reply_pieces) + sum(len(json.dumps(c["function"]["arguments"]).split())
                                                          for c in calls)
        if body.get("stream", True) is False:
            if script.endless:
                return self.endless_json(h, script)
            final["message"] = {"role": "assistant", "content": "".join(reply_pieces)}
            if calls:
                final["message"]["tool_calls"] = calls
            if scored:
                final["logprobs"] = scored
            return self.send(h, 200, final, script.content_type or "application/json", script.headers)
        self.start_stream(h, script.content_type or "application/x-ndjson", script.headers)
        for i, piece in enumerate(itertools.cycle(reply_pieces) if script.endless else reply_pieces):
            if script.cut_after is not None and i >= script.cut_after:
                return self.cut(h)
            if script.error_after is not None and i >= script.error_after:
                self.write_chunk(h, json.dumps({"error": script.error_message}).encode() + b"\n")
                return self.end_stream(h)
            line = {"model": body["model"], "created_at": datetime.now(UTC).isoformat(),
                    "message": {"role": "assistant", "content": piece}, "done": False}
            if scored:
                line["logprobs"] = [scored[i % len(scored)]]
            self.write_chunk(h, json.dumps(line).encode() + b"\n")
            if script.chunk_delay:
                time.sleep(script.chunk_delay)
        for call in calls:  # each call whole, in a line of its own (0.8.0+)
            line = {"model": body["model"], "created_at": datetime.now(UTC).isoformat(),
                    "message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False}
            self.write_chunk(h, json.dumps(line).encode() + b"\n")
        final["message"] = {"role": "assistant", "content": ""}
        self.write_chunk(h, json.dumps(final).encode() + b"\n")
        return self.end_stream(h)

    def _embed(self, h, body, script: Script):
        """Ollama's /api/embed: one L2-normalised vector per input (8 dimensions here, `dimensions` fewer), the
        input tokens counted; a model without the embedding capability refuses."""
        if self.scripted_prelude(h, script):
            return None
        if script.status >= 400:
            return self.send(h, script.status, {"error": script.error_message})
        model = str((body or {}).get("model", "")).removesuffix(":latest")
        if model not in self.installed:
            return self.send(h, 404, {"error": f'model "{model}" not found, try pulling it first'})
        if "embedding" not in self.caps(model):
            return self.send(h, 400, {"error": "this model does not support embeddings"})
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        size = min(int(body.get("dimensions") or 8), 8)
        return self.send(h, 200, {"model": body["model"], "embeddings": [vector(t, size) for t in texts],
                                  "total_duration": 1000, "load_duration": 10,
                                  "prompt_eval_count": sum(words(t) for t in texts)})

    @staticmethod
    def _call(call: dict, index: int, script: Script) -> dict:
        out = {"function": {"index": index, "name": call["name"], "arguments": call_arguments(call)}}
        if not script.no_call_ids:
            out["id"] = "call_" + secrets.token_hex(4)
        return out
