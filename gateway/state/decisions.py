"""The routing-decision log: one entry per answered or failed request, newest last, capped.

Operators and workflows read it (GET /api/v1/decisions?limit=N) to audit and tune routing.
RedisDecisionLog appends to a capped stream; MemoryDecisionLog keeps a bounded list per process.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Protocol

from .. import fastjson
from .store import PREFIX, RedisStore

STREAM = f"{PREFIX}decisions"


class DecisionLog(Protocol):
    def append(self, entry: dict[str, str]) -> None: ...
    def recent(self, limit: int) -> list[dict[str, str]]: ...


# A write (RedisStore.writer): ["decision", stream, max length, entry as JSON]
_APPEND = "redis.call('XADD', op[2], 'MAXLEN', '~', op[3], '*', 'e', op[4])"


class RedisDecisionLog:
    def __init__(self, store: RedisStore, maxlen: int):
        self.store, self.maxlen = store, maxlen
        store.writer("decision", _APPEND)

    def append(self, entry: dict[str, str]) -> None:
        # One field holding the entry as JSON: a third of the cost of a field per key on the request path.
        self.store.write("decision", STREAM, self.maxlen, fastjson.dumps(entry))

    def recent(self, limit: int) -> list[dict[str, str]]:
        rows = self.store.run(lambda r: r.xrevrange(STREAM, count=limit))
        return [dict(_entry(fields), id=entry_id) for entry_id, fields in reversed(rows)]


def _entry(fields: dict[str, str]) -> dict[str, str]:
    """An entry as written: one JSON field, or (older gateways) a field per key."""
    if set(fields) == {"e"}:
        try:
            return json.loads(fields["e"])
        except ValueError:
            pass
    return fields


class MemoryDecisionLog:
    def __init__(self, maxlen: int):
        self._lock = threading.Lock()
        self._rows: deque[dict[str, str]] = deque(maxlen=maxlen)
        self._seq = 0

    def append(self, entry: dict[str, str]) -> None:
        with self._lock:
            self._seq += 1
            self._rows.append(dict(entry, id=str(self._seq)))

    def recent(self, limit: int) -> list[dict[str, str]]:
        with self._lock:
            return list(self._rows)[-limit:]
