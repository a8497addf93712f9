"""Several Ollama hosts behind the one `ollama` backend (OLLAMA_URLS): which host a call goes to.

Each host has its own connections, health (what it has installed and loaded, from /api/tags and /api/ps) and
circuit breaker. A call goes to a host that has the model: loaded before cold (a cold load takes seconds to
minutes), then the fewest calls in flight (counted across every worker and replica, gateway/state/hosts.py),
then the lowest recent latency. A host that refuses the connection is marked and the next one tried in the
same call. With one host nothing of this runs: the call goes straight to it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from ..breaker import CircuitBreaker
from ..state.hosts import HostLeases
from .base import BackendError, BackendHealth, ModelState
from .http_pool import HttpPool

_REFUSED = ("connection", "connect_timeout")  # nothing reached the host: another one can take the call


class Host:
    def __init__(self, url: str, http: HttpPool, breaker: CircuitBreaker):
        self.url, self.http, self.breaker = url, http, breaker
        self.health: BackendHealth | None = None  # the last check; None before the first
        self.checked_at = float("-inf")
        self.latency: float | None = None          # seconds to the answer's headers, smoothed

    def models(self) -> dict[str, ModelState]:
        return self.health.models if self.health is not None and self.health.ok else {}

    def has(self, model: str) -> bool:
        return model in self.models()

    def observe(self, seconds: float) -> None:
        self.latency = seconds if self.latency is None else 0.8 * self.latency + 0.2 * seconds


class Hold:
    """The host one call is on, and its lease, until the call's answer has been read (release())."""

    __slots__ = ("host", "lease", "model", "pool")

    def __init__(self, pool: HostPool, model: str):
        self.pool, self.model, self.host, self.lease = pool, model, None, ""

    def take(self, tried: set[Host]) -> Host:
        self.release()
        self.host, self.lease = self.pool.choose(self.model, tried)
        return self.host

    def release(self) -> None:
        if self.lease and self.host is not None:
            self.pool.leases.give_back(self.host.url, self.lease)
        self.lease = ""


class HostPool:
    def __init__(self, hosts: list[Host], check: Callable[[Host], BackendHealth], max_age: float = 10.0,
                 policy: str = "smart"):
        """check: a host's health (its /api/tags and /api/ps), asked again when older than max_age seconds.
        policy: smart (above); round_robin or first (the first host that has the model) are what simpler
        gateways do, kept to measure against (scripts/bench/bench_capacity.py)."""
        self.hosts, self.check, self.max_age, self.policy = hosts, check, max_age, policy
        self._turn = itertools.count()
        self.single = len(hosts) == 1
        self.leases: HostLeases | None = None  # the shared counts, attached by the service
        self.on_cold: Callable[[str], None] = lambda url: None  # a call sent where the model is not loaded
        self._checking = threading.Lock()

    def refresh(self, force: bool = False) -> None:
        """Each host's health, when stale, asked off the request path (a host that does not answer takes its
        connect timeout); before the first check ended, calls wait for it: choosing blind sends them to hosts
        without the model loaded. force: now, on this thread (the backend's own health check)."""
        blind = any(h.health is None for h in self.hosts)
        if force or blind:
            self._check(force, blocking=True)
        elif any(time.monotonic() - h.checked_at >= self.max_age for h in self.hosts) and not self._checking.locked():
            threading.Thread(target=self._check, args=(False, False), daemon=True, name="ollama-hosts").start()

    def _check(self, force: bool, blocking: bool) -> None:
        if not self._checking.acquire(blocking=blocking):
            return
        try:
            now = time.monotonic()
            for host in self.hosts:
                if force or host.health is None or now - host.checked_at >= self.max_age:
                    host.health, host.checked_at = self.check(host), time.monotonic()
        finally:
            self._checking.release()

    def choose(self, model: str, tried: set[Host]) -> tuple[Host, str]:
        """A host for `model` (Ollama's id, without :latest) and its lease ("" when uncounted)."""
        if self.single:
            return self.hosts[0], ""
        self.refresh()
        usable = [h for h in self.hosts if h not in tried and h.breaker.state != "open"]
        having = [h for h in usable if h.has(model)] or usable  # none known to have it: Ollama says 404
        if not having:
            raise BackendError("connection", "ollama: every host is down or its circuit open")
        if self.policy == "smart":
            by_latency = sorted(range(len(having)), key=lambda i: having[i].latency or 0.0)
            rank = {i: r for r, i in enumerate(by_latency)}
            candidates = [(h.url, 0 if h.models().get(model, ModelState(False, False)).warm else 1, rank[i])
                          for i, h in enumerate(having)]
        else:  # counted all the same (the metrics), chosen without looking: one candidate
            pick = having[next(self._turn) % len(having)] if self.policy == "round_robin" else having[0]
            having, candidates = [pick], [(pick.url, 0, 0)]
        if self.leases is None:
            index, lease = min(range(len(having)), key=lambda i: candidates[i][1:]), ""
        else:
            index, lease, _ = self.leases.take(candidates)
        chosen = having[index]
        if not chosen.models().get(model, ModelState(False, False)).warm:
            self.on_cold(chosen.url)
        return chosen, lease

    def send(self, hold: Hold, method: str, path: str, body: dict):
        """The request on the chosen host; a host that refused the connection is marked and the next tried."""
        tried: set[Host] = set()
        while True:
            host = hold.take(tried)
            started = time.monotonic()
            try:
                reply = host.http.request(method, path, body)
            except BackendError as exc:
                if self.single or exc.kind not in _REFUSED:
                    raise
                host.breaker.record_failure()
                tried.add(host)
                if len(tried) == len(self.hosts):
                    raise
                continue
            host.observe(time.monotonic() - started)
            if self.single:
                return reply
            host.breaker.record_success()
            if reply.status == 404 and len(tried) + 1 < len(self.hosts):  # not pulled there (since the check)
                reply.close()
                tried.add(host)
                continue
            return reply

    def in_flight(self) -> dict[str, int]:
        return self.leases.in_flight([h.url for h in self.hosts]) if self.leases is not None else {}

    def close(self) -> None:
        for h in self.hosts:
            h.http.close()
