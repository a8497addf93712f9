"""What the learning router keeps: each request's features for a while (feedback may come), the labels, the
refit versions with their history, and the shadow calls' spend. Redis (shared by every worker and replica)
or in-process.

Keys: cal:req:<request id> (features, key, answering model; expire after FEEDBACK_TTL_SECONDS),
cal:fb:<request id> (the feedback as given, same lifetime), cal:labels (hash: label id -> label) with
cal:label_times (sorted set, for the oldest-first order and trimming), cal:recent (the newest 2,000
requests' features: a sample of traffic, no key, no text), cal:models (hash: version -> the
published calibration), cal:history (list, newest first), cal:current (the version in force; absent: the
shipped weights), cal:hold (refits paused after a rollback), cal:spend:<month>, cal:lock (one refit at a time).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any, Protocol

from .. import fastjson
from .store import PREFIX, RedisStore

HISTORY = 50
_K = f"{PREFIX}cal:"

RECENT = 2000  # requests whose features are kept as a sample of recent traffic (calibrate.TRAFFIC)
# A write (RedisStore.writer): ["cal_req", key, ttl seconds (0: none), record, recent list, its entry or null].
# The record and entry travel as JSON objects inside the batch and are encoded here: no JSON string in JSON.
_REMEMBER = f"""
if tonumber(op[3]) > 0 then redis.call('SET', op[2], cjson.encode(op[4]), 'EX', op[3]) end
if op[6] ~= cjson.null then
  redis.call('LPUSH', op[5], cjson.encode(op[6]))
  redis.call('LTRIM', op[5], 0, {RECENT - 1})
end
"""
# Reserve a shadow call's worst case within the month's calibration budget: KEYS[1] spend key; ARGV amount, budget
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 5356800)
return 1
"""


class CalibrationStore(Protocol):
    def remember(self, request_id: str, record: dict[str, Any], ttl: int, recent: dict[str, Any] | None) -> None:
        """Keep the request's record for feedback (ttl 0: not) and its features among the recent traffic
        (None: not)."""
    def recent(self, limit: int) -> list[dict[str, Any]]: ...
    def request(self, request_id: str) -> dict[str, Any] | None: ...
    def put_feedback(self, request_id: str, feedback: dict[str, Any], ttl: int) -> bool:
        """Keep the feedback; True when it is the request's first."""
    def put_label(self, label_id: str, label: dict[str, Any], at: float) -> None: ...
    def labels(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` labels, oldest first."""
    def label_count(self) -> int: ...
    def label_ids(self) -> list[str]: ...
    def trim(self, keep: int) -> None: ...
    def publish(self, version: str, payload: dict[str, Any], summary: dict[str, Any]) -> None: ...
    def current(self) -> str | None: ...
    def payload(self, version: str) -> dict[str, Any] | None: ...
    def history(self, limit: int = HISTORY) -> list[dict[str, Any]]: ...
    def set_current(self, version: str | None, summary: dict[str, Any], hold: bool) -> None: ...
    def held(self) -> bool: ...
    def reserve_spend(self, month: str, amount: float, budget: float) -> bool: ...
    def settle_spend(self, month: str, delta: float) -> None: ...
    def spend(self, month: str) -> float: ...
    def lock(self, ttl: float) -> bool: ...
    def unlock(self) -> None: ...


class RedisCalibrationStore:
    def __init__(self, store: RedisStore):
        self.store = store
        store.writer("cal_req", _REMEMBER)

    def remember(self, request_id: str, record: dict[str, Any], ttl: int, recent: dict[str, Any] | None) -> None:
        # batched with the request's other writes (one round trip, sent before the answer)
        self.store.write("cal_req", f"{_K}req:{request_id}", ttl, record if ttl else 0, f"{_K}recent", recent)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.store.run(lambda r: r.lrange(f"{_K}recent", 0, limit - 1))]

    def request(self, request_id: str) -> dict[str, Any] | None:
        raw = self.store.run(lambda r: r.get(f"{_K}req:{request_id}"))
        return json.loads(raw) if raw else None

    def put_feedback(self, request_id: str, feedback: dict[str, Any], ttl: int) -> bool:
        key = f"{_K}fb:{request_id}"
        first = self.store.run(lambda r: r.set(key, json.dumps(feedback), ex=ttl, get=True))
        return first is None

    def put_label(self, label_id: str, label: dict[str, Any], at: float) -> None:
        def put(r):
            pipe = r.pipeline()
            pipe.hset(f"{_K}labels", label_id, fastjson.dumps(label))
            pipe.zadd(f"{_K}label_times", {label_id: at})
            pipe.execute()
        self.store.run(put)

    def labels(self, limit: int) -> list[dict[str, Any]]:
        ids = self.store.run(lambda r: r.zrange(f"{_K}label_times", -limit, -1))
        if not ids:
            return []
        rows = self.store.run(lambda r: r.hmget(f"{_K}labels", ids))
        return [json.loads(row) for row in rows if row]

    def label_count(self) -> int:
        return int(self.store.run(lambda r: r.zcard(f"{_K}label_times")))

    def label_ids(self) -> list[str]:
        return list(self.store.run(lambda r: r.zrange(f"{_K}label_times", 0, -1)))

    def trim(self, keep: int) -> None:
        def cut(r):
            old = r.zrange(f"{_K}label_times", 0, -keep - 1)
            if old:
                pipe = r.pipeline()
                pipe.hdel(f"{_K}labels", *old)
                pipe.zrem(f"{_K}label_times", *old)
                pipe.execute()
        self.store.run(cut)

    def publish(self, version: str, payload: dict[str, Any], summary: dict[str, Any]) -> None:
        def put(r):
            pipe = r.pipeline()
            pipe.hset(f"{_K}models", version, json.dumps(payload))
            pipe.lpush(f"{_K}history", json.dumps(summary))
            pipe.ltrim(f"{_K}history", 0, HISTORY - 1)
            pipe.set(f"{_K}current", version)
            pipe.execute()
            keep = {json.loads(h).get("version") for h in r.lrange(f"{_K}history", 0, -1)}
            stale = [v for v in r.hkeys(f"{_K}models") if v not in keep]
            if stale:
                r.hdel(f"{_K}models", *stale)
        self.store.run(put)

    def current(self) -> str | None:
        return self.store.run(lambda r: r.get(f"{_K}current"))

    def payload(self, version: str) -> dict[str, Any] | None:
        raw = self.store.run(lambda r: r.hget(f"{_K}models", version))
        return json.loads(raw) if raw else None

    def history(self, limit: int = HISTORY) -> list[dict[str, Any]]:
        return [json.loads(h) for h in self.store.run(lambda r: r.lrange(f"{_K}history", 0, limit - 1))]

    def set_current(self, version: str | None, summary: dict[str, Any], hold: bool) -> None:
        def put(r):
            pipe = r.pipeline()
            if version is None:
                pipe.delete(f"{_K}current")
            else:
                pipe.set(f"{_K}current", version)
            pipe.lpush(f"{_K}history", json.dumps(summary))
            pipe.ltrim(f"{_K}history", 0, HISTORY - 1)
            if hold:
                pipe.set(f"{_K}hold", "1")
            else:
                pipe.delete(f"{_K}hold")
            pipe.execute()
        self.store.run(put)

    def held(self) -> bool:
        return bool(self.store.run(lambda r: r.exists(f"{_K}hold")))

    def reserve_spend(self, month: str, amount: float, budget: float) -> bool:
        script = self.store.script(_RESERVE)
        return bool(self.store.run(lambda r: script(keys=[f"{_K}spend:{month}"], args=[amount, budget])))

    def settle_spend(self, month: str, delta: float) -> None:
        if delta:
            self.store.run(lambda r: r.incrbyfloat(f"{_K}spend:{month}", delta))

    def spend(self, month: str) -> float:
        return float(self.store.run(lambda r: r.get(f"{_K}spend:{month}")) or 0.0)

    def lock(self, ttl: float) -> bool:
        return bool(self.store.run(lambda r: r.set(f"{_K}lock", "1", nx=True, ex=max(1, int(ttl)))))

    def unlock(self) -> None:
        self.store.run(lambda r: r.delete(f"{_K}lock"))


class MemoryCalibrationStore:
    """One process: the same behaviour, nothing shared."""

    def __init__(self, clock=time.time):
        self._lock = threading.Lock()
        self.clock = clock
        self._requests: dict[str, tuple[float, dict]] = {}
        self._recent: deque[dict] = deque(maxlen=RECENT)
        self._feedback: dict[str, tuple[float, dict]] = {}
        self._labels: dict[str, tuple[float, dict]] = {}
        self._models: dict[str, dict] = {}
        self._history: list[dict] = []
        self._current: str | None = None
        self._hold = False
        self._spend: dict[str, float] = {}
        self._locked = 0.0

    def remember(self, request_id: str, record: dict[str, Any], ttl: int, recent: dict[str, Any] | None) -> None:
        with self._lock:
            if recent is not None:
                self._recent.appendleft(recent)
            if not ttl:
                return
            now = self.clock()
            if len(self._requests) > 100_000:  # bounded: drop the expired
                self._requests = {k: v for k, v in self._requests.items() if v[0] > now}
            self._requests[request_id] = (now + ttl, record)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent)[:limit]

    def request(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._requests.get(request_id)
            return found[1] if found and found[0] > self.clock() else None

    def put_feedback(self, request_id: str, feedback: dict[str, Any], ttl: int) -> bool:
        with self._lock:
            old = self._feedback.get(request_id)
            self._feedback[request_id] = (self.clock() + ttl, feedback)
            return old is None or old[0] <= self.clock()

    def put_label(self, label_id: str, label: dict[str, Any], at: float) -> None:
        with self._lock:
            self._labels[label_id] = (at, label)

    def labels(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            return [lb for _, lb in sorted(self._labels.values(), key=lambda v: v[0])[-limit:]]

    def label_count(self) -> int:
        return len(self._labels)

    def label_ids(self) -> list[str]:
        with self._lock:
            return list(self._labels)

    def trim(self, keep: int) -> None:
        with self._lock:
            for k, _ in sorted(self._labels.items(), key=lambda kv: kv[1][0])[:-keep]:
                del self._labels[k]

    def publish(self, version: str, payload: dict[str, Any], summary: dict[str, Any]) -> None:
        with self._lock:
            self._models[version] = payload
            self._history = [summary, *self._history][:HISTORY]
            self._current = version

    def current(self) -> str | None:
        return self._current

    def payload(self, version: str) -> dict[str, Any] | None:
        return self._models.get(version)

    def history(self, limit: int = HISTORY) -> list[dict[str, Any]]:
        return list(self._history[:limit])

    def set_current(self, version: str | None, summary: dict[str, Any], hold: bool) -> None:
        with self._lock:
            self._current = version
            self._history = [summary, *self._history][:HISTORY]
            self._hold = hold

    def held(self) -> bool:
        return self._hold

    def reserve_spend(self, month: str, amount: float, budget: float) -> bool:
        with self._lock:
            if self._spend.get(month, 0.0) + amount > budget:
                return False
            self._spend[month] = self._spend.get(month, 0.0) + amount
            return True

    def settle_spend(self, month: str, delta: float) -> None:
        with self._lock:
            self._spend[month] = self._spend.get(month, 0.0) + delta

    def spend(self, month: str) -> float:
        return self._spend.get(month, 0.0)

    def lock(self, ttl: float) -> bool:
        with self._lock:
            if self._locked > self.clock():
                return False
            self._locked = self.clock() + ttl
            return True

    def unlock(self) -> None:
        self._locked = 0.0
