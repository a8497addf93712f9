"""The response cache: repeated questions answered for free.

Exact match on a canonical form of what decides the answer: who asked (each API key has its own cache
unless CACHE_SHARED_ACROSS_KEYS), the model that answered, the strategy (a cascade answer was reviewed,
an auto one was not), messages (with their images, by hash, tool calls and results), system, temperature,
max_tokens, stop, tools, tool_choice, parallel_tool_calls and response_format. An answer with tool calls is
cached like a text one (the calls with their ids). Keys are SHA-256 under a
namespace and a version, so a format change never reads old entries. Only complete answers are stored,
each under the model that gave it (a fallback's answer never under the decided model's key).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .. import fastjson
from ..chat import ChatRequest
from .store import PREFIX, RedisStore

VERSION = 3
MEMORY_ENTRIES = 2000  # the in-process cache keeps at most this many answers (least recently used go)


@dataclass(frozen=True)
class CachedAnswer:
    model: str
    backend: str
    tier: str
    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    tool_calls: list = field(default_factory=list)  # [[id, name, arguments], ...]


def cache_key(request: ChatRequest, model: str, strategy: str, partition: str) -> str:
    """partition: the API key's id (each key its own cache), or "" for one cache shared by every key."""
    canonical = fastjson.dumpb({
        "v": VERSION, "partition": partition, "model": model, "strategy": strategy, "system": request.system,
        "messages": [_message(m) for m in request.messages],
        "temperature": request.temperature, "max_tokens": request.max_tokens, "stop": list(request.stop),
        **_structured(request),
    }, sort_keys=True)
    return f"{PREFIX}cache:v{VERSION}:{hashlib.sha256(canonical).hexdigest()}"


def _message(m) -> list:
    if not (m.images or m.tool_calls or m.role == "tool" or m.thinking):
        return [m.role, m.content]  # plain text: the shape of every key so far
    return [m.role, m.content, [i.digest for i in m.images], [[c.id, c.name, c.arguments] for c in m.tool_calls],
            m.tool_call_id, m.is_error, list(m.thinking)]


def _structured(request: ChatRequest) -> dict:
    """The fields beyond plain chat; none for plain chat, so its keys keep their shape."""
    fields: dict = {}
    if request.tools or request.response_format or request.tool_choice or request.parallel_tool_calls is not None:
        fmt = request.response_format
        fields = {"tools": [[t.name, t.description, t.parameters, t.strict] for t in request.tools],
                  "tool_choice": [request.tool_choice, request.forced_tool], "parallel": request.parallel_tool_calls,
                  "format": [fmt.type, fmt.name, fmt.schema, fmt.strict] if fmt else None}
    if request.passthrough:  # Claude-only fields (thinking...) change Claude's answer
        fields["passthrough"] = request.passthrough.get("body")
    return fields


class Cache(Protocol):
    def get(self, key: str) -> CachedAnswer | None: ...
    def put(self, key: str, answer: CachedAnswer, ttl: int) -> None: ...


# A write (RedisStore.writer): ["cache", key, answer as JSON, ttl seconds]
_PUT = "redis.call('SET', op[2], op[3], 'EX', op[4])"


class RedisCache:
    """A cache that fails open: with Redis down, get() misses and put() does nothing."""

    def __init__(self, store: RedisStore):
        self.store = store
        store.writer("cache", _PUT)

    def get(self, key: str) -> CachedAnswer | None:
        raw = self.store.try_run(lambda r: self.store.command("GET", key), None)
        if not raw:
            return None
        try:
            return CachedAnswer(**fastjson.loads(raw))
        except (ValueError, TypeError):
            return None  # an entry from another version of the gateway: ignore it

    def put(self, key: str, answer: CachedAnswer, ttl: int) -> None:
        self.store.write("cache", key, fastjson.dumps(answer.__dict__), ttl)


class MemoryCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic, entries: int = MEMORY_ENTRIES):
        self.clock, self.entries = clock, entries
        self._lock = threading.Lock()
        self._data: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()

    def get(self, key: str) -> CachedAnswer | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] <= self.clock():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return item[1]

    def put(self, key: str, answer: CachedAnswer, ttl: int) -> None:
        with self._lock:
            self._data[key] = (self.clock() + ttl, answer)
            self._data.move_to_end(key)
            while len(self._data) > self.entries:
                self._data.popitem(last=False)
