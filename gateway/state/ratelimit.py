"""Per-key rate limits (requests and tokens per minute) and a global concurrency cap per backend.

Fixed one-minute windows (UTC minute), checked and counted atomically. The concurrency cap is a set of
leases with a deadline, so a worker that dies holding one cannot block the backend for long.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from .store import PREFIX, RedisStore

# KEYS: request counter, token counter; ARGV: rpm (0 off), tpm (0 off), this request's input tokens
# The request's own input is counted on admission (a burst cannot pass the limit before its answers are
# counted); its output and the difference to its real input are added when it is answered.
_ADMIT = """
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if rpm > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= rpm then return 'rpm' end
if tpm > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') + tokens > tpm then return 'tpm' end
redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], 120)
if tpm > 0 then redis.call('INCRBY', KEYS[2], tokens); redis.call('EXPIRE', KEYS[2], 120) end
return 'ok'
"""

# The slot cap with a fair queue. KEYS: leases (lease -> taken at), waiters (waiter -> arrived at), waiters'
# last poll (waiter -> at), who waits (waiter -> key), when each key last got a slot (key -> at).
# ARGV: lease, now, cap, ttl, key, the queue's bound. A free slot goes to the waiting key that got one longest
# ago (never: first), its oldest waiter first: one key's burst cannot starve another's request. A waiter not
# seen for 5 s (its worker died) leaves the queue. Returns 1 (taken), 0 (wait), -1 (the queue is full).
_ACQUIRE = """
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - 5)) do
  redis.call('ZREM', KEYS[2], gone); redis.call('ZREM', KEYS[3], gone); redis.call('HDEL', KEYS[4], gone)
end
local waiting = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not waiting then
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return -1 end
  redis.call('ZADD', KEYS[2], now, ARGV[1]); redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
for _, k in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]}) do redis.call('EXPIRE', k, math.ceil(ttl) + 60) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
local best, best_last, best_at = nil, nil, nil
local all = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  local w, at = all[i], tonumber(all[i + 1])
  local key = redis.call('HGET', KEYS[4], w) or ''
  local last = tonumber(redis.call('HGET', KEYS[5], key) or '-1')
  if best == nil or last < best_last or (last == best_last and at < best_at) then
    best, best_last, best_at = w, last, at
  end
end
if best ~= ARGV[1] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('ZREM', KEYS[3], ARGV[1]); redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[5], ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
return 1
"""

# A waiter that gave up leaves the queue. KEYS: waiters, last polls, who waits. ARGV: waiter.
_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1]); redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('HDEL', KEYS[3], ARGV[1])
"""


# A write (RedisStore.writer): ["tokens", counter, tokens]
_ADD_TOKENS = "redis.call('INCRBY', op[2], op[3]); redis.call('EXPIRE', op[2], 120)"


def minute_of(t: float) -> int:
    return int(t // 60)


class RateLimiter(Protocol):
    def admit(self, key: str, tokens: int = 0) -> str | None:
        """None when admitted (its `tokens` counted); otherwise which limit ('rpm' or 'tpm') is reached."""

    def add_tokens(self, key: str, tokens: int) -> None:
        """Count tokens used (negative: fewer than counted on admission)."""


class RedisRateLimiter:
    def __init__(self, store: RedisStore, rpm: int, tpm: int, wall: Callable[[], float] = time.time):
        self.store, self.rpm, self.tpm, self.wall = store, rpm, tpm, wall
        store.writer("tokens", _ADD_TOKENS)

    def _keys(self, key: str) -> tuple[str, str]:
        minute = minute_of(self.wall())
        return f"{PREFIX}rl:{key}:{minute}:req", f"{PREFIX}rl:{key}:{minute}:tok"

    def admit(self, key: str, tokens: int = 0) -> str | None:
        script = self.store.script(_ADMIT)
        # Limits fail open when Redis is down: refusing every request would be worse.
        verdict = self.store.try_run(lambda r: script(keys=self._keys(key), args=[self.rpm, self.tpm, tokens],
                                                      client=r), "ok")
        return None if verdict == "ok" else verdict

    def add_tokens(self, key: str, tokens: int) -> None:
        if self.tpm <= 0 or not tokens:
            return
        self.store.write("tokens", self._keys(key)[1], tokens)


class MemoryRateLimiter:
    def __init__(self, rpm: int, tpm: int, wall: Callable[[], float] = time.time):
        self.rpm, self.tpm, self.wall = rpm, tpm, wall
        self._lock = threading.Lock()
        self._counts: defaultdict[tuple[str, int, str], int] = defaultdict(int)

    def admit(self, key: str, tokens: int = 0) -> str | None:
        minute = minute_of(self.wall())
        with self._lock:
            for k in [k for k in self._counts if k[1] < minute]:
                del self._counts[k]
            if self.rpm and self._counts[(key, minute, "req")] >= self.rpm:
                return "rpm"
            if self.tpm and self._counts[(key, minute, "tok")] + tokens > self.tpm:
                return "tpm"
            self._counts[(key, minute, "req")] += 1
            if self.tpm:
                self._counts[(key, minute, "tok")] += tokens
            return None

    def add_tokens(self, key: str, tokens: int) -> None:
        with self._lock:
            self._counts[(key, minute_of(self.wall()), "tok")] += tokens


class ConcurrencyCap(Protocol):
    caps: dict[str, int]  # backend -> slots across every worker and replica (0: uncapped)

    def acquire(self, backend: str, wait: float, key: str = "") -> str | None:
        """A lease id, or None when no slot freed up within `wait` seconds (or the queue is full). key: whose
        request waits (its API key's id): slots go round the waiting keys, oldest first within a key."""

    def release(self, backend: str, lease: str) -> None: ...


class RedisConcurrencyCap:
    def __init__(self, store: RedisStore, caps: dict[str, int], lease_ttl: float,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.store, self.caps, self.lease_ttl = store, caps, lease_ttl
        self.sleep, self.clock, self.wall = sleep, clock, wall

    def acquire(self, backend: str, wait: float, key: str = "") -> str | None:
        cap = self.caps.get(backend, 0)
        if cap <= 0:
            return ""
        lease, script = uuid.uuid4().hex, self.store.script(_ACQUIRE)
        base = f"{PREFIX}conc:{backend}"
        keys = [base, f"{base}:wait", f"{base}:seen", f"{base}:who", f"{base}:granted"]
        deadline = self.clock() + wait
        pause = 0.01
        while True:
            got = self.store.try_run(lambda r: script(keys=keys, args=[
                lease, repr(self.wall()), cap, self.lease_ttl, key, self.queue_bound(cap)], client=r), 1)
            if got == 1:  # Redis down: no cap
                return lease
            if got == -1 or self.clock() + pause > deadline:
                if got != -1:
                    self._leave(keys, lease)
                return None
            self.sleep(pause)
            pause = min(0.1, pause * 2)

    def _leave(self, keys: list[str], waiter: str) -> None:
        leave = self.store.script(_LEAVE)
        self.store.try_run(lambda r: leave(keys=keys[1:4], args=[waiter], client=r), None)

    @staticmethod
    def queue_bound(cap: int) -> int:
        """Requests that may wait for a backend's slots: a bounded queue, never an unbounded one."""
        return max(16, 8 * cap)

    def release(self, backend: str, lease: str) -> None:
        if lease:
            self.store.try_run(lambda r: r.zrem(f"{PREFIX}conc:{backend}", lease), None)


class MemoryConcurrencyCap:
    """The same cap in one process. Leases expire like the Redis ones: a call that never released its slot
    (a thread stuck on a client that stopped reading, a bug) frees it after `lease_ttl` seconds."""

    def __init__(self, caps: dict[str, int], lease_ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic):
        self.caps, self.lease_ttl, self.clock = caps, lease_ttl, clock
        self._cond = threading.Condition()
        self._held: defaultdict[str, dict[str, float]] = defaultdict(dict)  # backend -> lease -> expires at
        self._waiting: defaultdict[str, dict[str, tuple[str, float]]] = defaultdict(dict)  # -> (key, arrived)
        self._granted: dict[tuple[str, str], float] = {}  # (backend, key) -> when it last got a slot

    def _free(self, backend: str) -> bool:
        held, now = self._held[backend], self.clock()
        for lease in [lease for lease, expires in held.items() if expires <= now]:
            del held[lease]
        return len(held) < self.caps.get(backend, 0)

    def acquire(self, backend: str, wait: float, key: str = "") -> str | None:
        cap = self.caps.get(backend, 0)
        if cap <= 0:
            return ""
        waiter = uuid.uuid4().hex
        with self._cond:
            queue = self._waiting[backend]
            if len(queue) >= RedisConcurrencyCap.queue_bound(cap):
                return None
            queue[waiter] = (key, self.clock())
            try:
                if not self._cond.wait_for(lambda: self._free(backend) and self._next(backend) == waiter,
                                           timeout=wait):
                    return None
                self._granted[(backend, key)] = self.clock()
                self._held[backend][waiter] = self.clock() + self.lease_ttl
                return waiter
            finally:
                queue.pop(waiter, None)
                self._cond.notify_all()

    def _next(self, backend: str) -> str | None:
        """The waiter whose key got a slot longest ago (never: first), oldest first within a key."""
        queue = self._waiting[backend]
        return min(queue, key=lambda w: (self._granted.get((backend, queue[w][0]), -1.0), queue[w][1]),
                   default=None)

    def release(self, backend: str, lease: str) -> None:
        if lease:
            with self._cond:
                self._held[backend].pop(lease, None)
                self._cond.notify_all()  # the waiter whose turn it is, whichever thread it is on
