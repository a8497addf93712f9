"""Calls in flight on each Ollama host, shared by every worker and replica: leases that expire.

A call takes a lease on the host it goes to and gives it back when it ends; a lease that is never given back
(a killed worker) expires after `lease_ttl`, so no count drifts. Choosing the host and taking its lease are
one step (one Redis round trip): among the candidates, the one with the lowest (class, calls in flight, rank),
where the caller's class puts hosts with the model loaded before cold ones and its rank orders by latency.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

from .store import PREFIX, RedisStore

# KEYS: one zset per candidate host (lease -> taken at). ARGV: lease, now, ttl, then class and rank per KEY.
# Returns the chosen index (1-based) and the counts seen.
_TAKE = """
local now, ttl, best, best_score, counts = tonumber(ARGV[2]), tonumber(ARGV[3]), 0, nil, {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl)
  local n = redis.call('ZCARD', key)
  counts[i] = n
  local score = tonumber(ARGV[2 + 2 * i]) * 1e9 + n * 1e3 + tonumber(ARGV[3 + 2 * i])
  if best_score == nil or score < best_score then best, best_score = i, score end
end
redis.call('ZADD', KEYS[best], now, ARGV[1])
redis.call('EXPIRE', KEYS[best], math.ceil(ttl) + 60)
return {best, counts}
"""


class HostLeases(Protocol):
    def take(self, candidates: Sequence[tuple[str, int, int]]) -> tuple[int, str, list[int]]:
        """candidates: (host, class, rank). The index chosen, its lease, and each candidate's calls in flight
        before this one."""

    def give_back(self, host: str, lease: str) -> None: ...

    def in_flight(self, hosts: Sequence[str]) -> dict[str, int]: ...


def _key(host: str) -> str:
    return f"{PREFIX}host:{host}"


class RedisHostLeases:
    def __init__(self, store: RedisStore, lease_ttl: float, wall: Callable[[], float] = time.time):
        self.store, self.lease_ttl, self.wall = store, lease_ttl, wall

    def take(self, candidates: Sequence[tuple[str, int, int]]) -> tuple[int, str, list[int]]:
        lease, script = uuid.uuid4().hex, self.store.script(_TAKE)
        args: list = [lease, repr(self.wall()), self.lease_ttl]
        for _, cls, rank in candidates:
            args += [cls, rank]
        keys = [_key(host) for host, _, _ in candidates]
        # Redis down: the first candidate, uncounted (the caller still has a host; nothing to give back)
        chosen = self.store.try_run(lambda r: script(keys=keys, args=args, client=r), None)
        if not chosen:
            return 0, "", [0] * len(candidates)
        return int(chosen[0]) - 1, lease, [int(n) for n in chosen[1]]

    def give_back(self, host: str, lease: str) -> None:
        if lease:
            self.store.try_run(lambda r: r.zrem(_key(host), lease), None)

    def in_flight(self, hosts: Sequence[str]) -> dict[str, int]:
        floor = self.wall() - self.lease_ttl

        def count(r):
            pipe = r.pipeline(transaction=False)
            for host in hosts:
                pipe.zcount(_key(host), floor, "+inf")
            return pipe.execute()
        return dict(zip(hosts, self.store.try_run(count, [0] * len(hosts)), strict=True))


class MemoryHostLeases:
    """The same in one process (no REDIS_URL: one worker)."""

    def __init__(self, lease_ttl: float, clock: Callable[[], float] = time.monotonic):
        self.lease_ttl, self.clock = lease_ttl, clock
        self._lock = threading.Lock()
        self._held: defaultdict[str, dict[str, float]] = defaultdict(dict)  # host -> lease -> taken at

    def _count(self, host: str, now: float) -> int:
        held = self._held[host]
        for lease in [lease for lease, taken in held.items() if taken <= now - self.lease_ttl]:
            del held[lease]
        return len(held)

    def take(self, candidates: Sequence[tuple[str, int, int]]) -> tuple[int, str, list[int]]:
        lease = uuid.uuid4().hex
        with self._lock:
            now = self.clock()
            counts = [self._count(host, now) for host, _, _ in candidates]
            best = min(range(len(candidates)), key=lambda i: (candidates[i][1], counts[i], candidates[i][2]))
            self._held[candidates[best][0]][lease] = now
        return best, lease, counts

    def give_back(self, host: str, lease: str) -> None:
        with self._lock:
            self._held[host].pop(lease, None)

    def in_flight(self, hosts: Sequence[str]) -> dict[str, int]:
        with self._lock:
            now = self.clock()
            return {host: self._count(host, now) for host in hosts}
