"""The routing-decision log: one entry per answered or failed request, read newest first, capped.

Operators and workflows read it (GET /api/v1/decisions?limit=N) to audit and tune routing.
RedisDecisionLog appends to a capped stream; MemoryDecisionLog keeps a bounded list per process.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from typing import Any, Protocol

from .. import fastjson
from .store import PREFIX, RedisStore

STREAM = f"{PREFIX}decisions"
_PAGE = 500  # entries read per round trip when looking for one key's


class DecisionLog(Protocol):
    def append(self, entry: dict[str, Any]) -> None: ...
    def recent(self, limit: int, key_id: str | None = None) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first; with key_id, only that key's."""


# A write (RedisStore.writer): ["decision", stream, max length, entry as JSON]
_APPEND = "redis.call('XADD', op[2], 'MAXLEN', '~', op[3], '*', 'e', op[4])"


class RedisDecisionLog:
    def __init__(self, store: RedisStore, maxlen: int):
        self.store, self.maxlen = store, maxlen
        store.writer("decision", _APPEND)

    def append(self, entry: dict[str, Any]) -> None:
        # One field holding the entry as JSON: a third of the cost of a field per key on the request path.
        self.store.write("decision", STREAM, self.maxlen, fastjson.dumps(entry))

    def recent(self, limit: int, key_id: str | None = None) -> list[dict[str, Any]]:
        if key_id is None:
            rows = self.store.run(lambda r: r.xrevrange(STREAM, count=limit))
            return [dict(_entry(fields), id=entry_id) for entry_id, fields in rows]
        # One key's entries: newest first, a page at a time, through the capped log at most once.
        found: list[dict[str, Any]] = []
        end = "+"
        scanned = 0
        while len(found) < limit and scanned < self.maxlen * 2:
            rows = self.store.run(lambda r, end=end: r.xrevrange(STREAM, max=end, count=_PAGE))
            if end != "+":
                rows = rows[1:]  # the page starts at the last entry of the one before
            if not rows:
                break
            scanned += len(rows)
            for entry_id, fields in rows:
                entry = _entry(fields)
                if entry.get("key_id") == key_id:
                    found.append(dict(entry, id=entry_id))
                    if len(found) == limit:
                        break
            end = rows[-1][0]
        return found


# Older gateways wrote every value as a string: read back, they get the types new entries have.
_FLOATS = ("score", "cost", "latency_seconds", "local_mean_logprob")
_BOOLS = ("cached", "fallback")


def _entry(fields: dict[str, str]) -> dict[str, Any]:
    """An entry as written: one JSON field, or (older gateways) a field per key; typed either way."""
    entry: dict[str, Any] = fields
    if set(fields) == {"e"}:
        with contextlib.suppress(ValueError):
            entry = json.loads(fields["e"])
    return _typed(entry)


def _typed(entry: dict[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    for k in _FLOATS:
        if isinstance(out.get(k), str):
            with contextlib.suppress(ValueError):
                out[k] = float(out[k])
    for k in _BOOLS:
        if isinstance(out.get(k), str):
            out[k] = out[k] == "true"
    if isinstance(out.get("attempts"), str) and out["attempts"].isdigit():
        out["attempts"] = int(out["attempts"])
    return out


class MemoryDecisionLog:
    def __init__(self, maxlen: int):
        self._lock = threading.Lock()
        self._rows: deque[dict[str, str]] = deque(maxlen=maxlen)
        self._seq = 0

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            self._rows.append(dict(entry, id=str(self._seq)))

    def recent(self, limit: int, key_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self._rows) if key_id is None else [r for r in self._rows if r.get("key_id") == key_id]
            return rows[::-1][:limit]
