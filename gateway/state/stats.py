"""Request statistics: counts by backend, model, tier and key, local share, cache results, tokens.

RedisStats keeps one hash that every worker and replica increments, so /api/v1/stats is the same
whichever worker answers, and one more per API key (what that key may see of them). InMemoryStats counts
for one process only.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Protocol

from ..chat import Outcome
from .store import PREFIX, RedisStore

KEY = f"{PREFIX}stats"
KEY_PREFIX = f"{PREFIX}stats:key:"  # + key id: one key's own counters
# A write (RedisStore.writer): ["stats", hash key, {field: increment}, the key's own hash ('' none)]. The key's
# own counters are the same but its name (key:ID), counted here rather than by the gateway: one op, less CPU.
_INCREMENT = """
for field, by in pairs(op[3]) do
  redis.call('HINCRBY', op[2], field, by)
  if op[4] ~= '' and string.sub(field, 1, 4) ~= 'key:' then redis.call('HINCRBY', op[4], field, by) end
end
"""


class StatsStore(Protocol):
    scope: str

    def record(self, outcome: Outcome, local: bool, key_id: str | None) -> None: ...
    def record_error(self, kind: str, key_id: str | None = None) -> None: ...
    def record_cache(self, result: str, key_id: str | None = None) -> None: ...
    def counters(self, key_id: str | None = None) -> dict[str, float]:
        """Every key's counters, or (key_id) one key's own."""


def _fields(outcome: Outcome, local: bool, key_id: str | None) -> dict[str, int]:
    usage = outcome.completion.usage
    fields = {"requests": 1, "local": int(local), "cached": int(outcome.cached),
              f"backend:{outcome.backend}": 1, f"model:{outcome.model}": 1, f"tier:{outcome.tier}": 1,
              "tokens:input": usage.input_tokens, "tokens:output": usage.output_tokens}
    if key_id:
        fields[f"key:{key_id}"] = 1
    if usage.cached:
        fields["tokens:cache_read"] = usage.cache_read_tokens
        fields["tokens:cache_write"] = usage.cache_write_tokens + usage.cache_write_1h_tokens
    if outcome.completion.tool_calls:
        fields["tools:calls"] = len(outcome.completion.tool_calls)
        fields["tools:answers"] = 1
    for capability in getattr(outcome.decision, "exclusions", ()):
        fields[f"excluded:{capability}"] = 1
    for attempt in outcome.attempts:
        if attempt.error_type == "invalid_answer":
            fields["tools:invalid_answers"] = fields.get("tools:invalid_answers", 0) + 1
    return fields


def snapshot(counters: dict[str, float], scope: str) -> dict:
    """The counts part of /api/v1/stats, from the flat counters either store keeps."""
    def group(prefix: str) -> dict[str, int]:
        return {k[len(prefix):]: int(v) for k, v in sorted(counters.items()) if k.startswith(prefix)}

    requests, local = int(counters.get("requests", 0)), int(counters.get("local", 0))
    hits, misses = int(counters.get("cache:hit", 0)), int(counters.get("cache:miss", 0))
    return {
        "scope": scope,
        "requests": requests,
        "errors": group("errors:"),
        "by_backend": group("backend:"), "by_model": group("model:"), "by_tier": group("tier:"),
        "by_key": group("key:"),
        "local_requests": local,
        "local_share": round(local / requests, 4) if requests else 0.0,
        "cached_requests": int(counters.get("cached", 0)),
        "cache": {"hits": hits, "misses": misses, "bypassed": int(counters.get("cache:bypass", 0)),
                  "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else 0.0},
        # cache_read and cache_write: the parts of the input the provider's prompt cache served or stored
        "tokens": {"input": int(counters.get("tokens:input", 0)), "output": int(counters.get("tokens:output", 0)),
                   "cache_read": int(counters.get("tokens:cache_read", 0)),
                   "cache_write": int(counters.get("tokens:cache_write", 0))},
        # answers with tool calls, the calls, structured answers refused by the check; requests whose
        # decision left models out for a capability (tools, vision, json_schema)
        "tools": {"answers_with_calls": int(counters.get("tools:answers", 0)),
                  "calls": int(counters.get("tools:calls", 0)),
                  "invalid_answers": int(counters.get("tools:invalid_answers", 0))},
        "capability_exclusions": group("excluded:"),
    }


class _Counting:
    """record_* in terms of one `_add(fields, key_id)`: the stores differ only in where the counters live."""

    def _add(self, fields: dict[str, int], key_id: str | None) -> None:
        raise NotImplementedError

    def record(self, outcome: Outcome, local: bool, key_id: str | None) -> None:
        self._add(_fields(outcome, local, key_id), key_id)

    def record_error(self, kind: str, key_id: str | None = None) -> None:
        """kind: the HTTP status sent ("502"), or "stream_interrupted" for a stream that failed mid-way."""
        self._add({f"errors:{kind}": 1}, key_id)

    def record_cache(self, result: str, key_id: str | None = None) -> None:
        self._add({f"cache:{result}": 1}, key_id)


class RedisStats(_Counting):
    scope = "shared"

    def __init__(self, store: RedisStore):
        self.store = store
        store.writer("stats", _INCREMENT)

    def _add(self, fields: dict[str, int], key_id: str | None) -> None:
        # stats degrade, requests do not
        self.store.write("stats", KEY, {k: v for k, v in fields.items() if v}, KEY_PREFIX + key_id if key_id else "")

    def counters(self, key_id: str | None = None) -> dict[str, float]:
        hash_key = KEY if key_id is None else KEY_PREFIX + key_id
        return {k: float(v) for k, v in self.store.run(lambda r: r.hgetall(hash_key)).items()}


class InMemoryStats(_Counting):
    scope = "process"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._by_key: dict[str, Counter] = {}

    def _add(self, fields: dict[str, int], key_id: str | None) -> None:
        with self._lock:
            self._counts.update(fields)
            if key_id:
                self._by_key.setdefault(key_id, Counter()).update(
                    {k: v for k, v in fields.items() if not k.startswith("key:")})

    def counters(self, key_id: str | None = None) -> dict[str, float]:
        with self._lock:
            counts = self._counts if key_id is None else self._by_key.get(key_id, Counter())
            return {k: float(v) for k, v in counts.items()}
