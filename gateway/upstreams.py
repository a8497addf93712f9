"""The gateway's view of its upstreams: backend clients, breakers, models found missing, cached health.

Built once per worker by create_app. Everything the router needs from here is read from memory, so
building a RoutingContext does no I/O on the request path; health checks hit upstreams at most once
per HEALTH_CACHE_SECONDS.
"""

from __future__ import annotations

import threading
import time

from .backends import Backend, BackendHealth, ModelState
from .breaker import CircuitBreaker
from .catalog import ModelSpec
from .config import Settings

MISSING_MODEL_TTL = 60.0  # seconds a model an upstream said it lacks stays out of routing


class Upstreams:
    def __init__(self, settings: Settings, backends: dict[str, Backend], clock=time.monotonic):
        self.settings, self.backends, self.clock = settings, backends, clock
        self.breakers = {
            name: CircuitBreaker(settings.breaker_failure_threshold, settings.breaker_cooldown_seconds, clock)
            for name in backends
        }
        self._lock = threading.Lock()
        self._missing: dict[str, float] = {}
        self._health: dict[str, tuple[float, BackendHealth]] = {}
        self._capabilities: dict[str, frozenset[str]] = {}  # by model name, as the upstreams report them

    def open_circuits(self) -> frozenset[str]:
        return frozenset(n for n, b in self.breakers.items() if b.state == "open")

    def mark_missing(self, model: str) -> None:
        with self._lock:
            self._missing[model] = self.clock() + MISSING_MODEL_TTL

    def missing_models(self) -> frozenset[str]:
        now = self.clock()
        with self._lock:
            self._missing = {m: t for m, t in self._missing.items() if t > now}
            return frozenset(self._missing)

    def health(self, name: str) -> BackendHealth:
        """The backend's health, fetched at most once per HEALTH_CACHE_SECONDS."""
        now = self.clock()
        cached = self._health.get(name)
        if cached and now - cached[0] < self.settings.health_cache_seconds:
            return cached[1]
        result = self.backends[name].health()
        self._health[name] = (now, result)
        if result.ok:
            with self._lock:  # a model installed since it was found missing comes back at once
                for m in self.settings.catalog.models:
                    if m.backend == name and self.backends[name].model_state(result, m).available:
                        self._missing.pop(m.name, None)
            for m in self.settings.catalog.models:
                if m.backend == name:
                    reported = self.backends[name].capabilities(result, m)
                    if reported is not None:
                        self._capabilities[m.name] = reported
        return result

    def capabilities(self) -> dict[str, frozenset[str]]:
        """What the upstreams report their models can do (Ollama's /api/show), by model name, read with the
        model list (at most once per HEALTH_CACHE_SECONDS); a model absent here keeps what
        configs/models.yaml says. Asked only for requests that need a capability: plain chat never waits."""
        for name, backend in self.backends.items():
            if type(backend).capabilities is not Backend.capabilities:
                self.health(name)
        return self._capabilities

    def answers(self, name: str) -> bool:
        """A fresh health check (not the cached one): does the backend answer at all right now?"""
        result = self.backends[name].health()
        self._health[name] = (self.clock(), result)
        return result.ok

    def model_state(self, model: ModelSpec) -> ModelState:
        if model.backend not in self.backends:
            return ModelState(False, None)
        backend = self.backends[model.backend]
        return backend.model_state(self.health(model.backend), model)

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
