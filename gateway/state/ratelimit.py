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

# KEYS: lease zset; ARGV: lease id, now, cap, lease ttl
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[4]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])) + 60)
return 1
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

    def acquire(self, backend: str, wait: float) -> str | None:
        """A lease id, or None when no slot freed up within `wait` seconds."""

    def release(self, backend: str, lease: str) -> None: ...


class RedisConcurrencyCap:
    def __init__(self, store: RedisStore, caps: dict[str, int], lease_ttl: float,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.store, self.caps, self.lease_ttl = store, caps, lease_ttl
        self.sleep, self.clock, self.wall = sleep, clock, wall

    def acquire(self, backend: str, wait: float) -> str | None:
        cap = self.caps.get(backend, 0)
        if cap <= 0:
            return ""
        lease, script = uuid.uuid4().hex, self.store.script(_ACQUIRE)
        deadline = self.clock() + wait
        pause = 0.01
        while True:
            got = self.store.try_run(lambda r: script(keys=[f"{PREFIX}conc:{backend}"], args=[
                lease, repr(self.wall()), cap, self.lease_ttl], client=r), 1)  # Redis down: no cap
            if got:
                return lease
            if self.clock() + pause > deadline:
                return None
            self.sleep(pause)
            pause = min(0.1, pause * 2)

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

    def _free(self, backend: str) -> bool:
        held, now = self._held[backend], self.clock()
        for lease in [lease for lease, expires in held.items() if expires <= now]:
            del held[lease]
        return len(held) < self.caps.get(backend, 0)

    def acquire(self, backend: str, wait: float) -> str | None:
        cap = self.caps.get(backend, 0)
        if cap <= 0:
            return ""
        with self._cond:
            if not self._cond.wait_for(lambda: self._free(backend), timeout=wait):
                return None
            lease = uuid.uuid4().hex
            self._held[backend][lease] = self.clock() + self.lease_ttl
            return lease

    def release(self, backend: str, lease: str) -> None:
        if lease:
            with self._cond:
                self._held[backend].pop(lease, None)
                self._cond.notify()
