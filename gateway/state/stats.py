"""Request statistics: counts by backend, model and tier, local share, cost.

InMemoryStats is per worker process: with several gunicorn workers each answers with its own counts.
A shared implementation (Redis) keeps the same two methods.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Protocol

from ..chat import Outcome


class StatsStore(Protocol):
    def record(self, outcome: Outcome, local: bool) -> None: ...
    def record_error(self, kind: str) -> None: ...
    def snapshot(self) -> dict: ...


class InMemoryStats:
    scope = "process"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.time()
        self._by = {"backend": Counter(), "model": Counter(), "tier": Counter()}
        self._errors: Counter = Counter()
        self._requests = self._local = self._cached = 0
        self._cost = 0.0
        self._tokens = Counter()

    def record(self, outcome: Outcome, local: bool) -> None:
        with self._lock:
            self._requests += 1
            self._local += int(local)
            self._cached += int(outcome.cached)
            self._by["backend"][outcome.backend] += 1
            self._by["model"][outcome.model] += 1
            self._by["tier"][outcome.tier] += 1
            self._cost += outcome.cost
            self._tokens["input"] += outcome.completion.usage.input_tokens
            self._tokens["output"] += outcome.completion.usage.output_tokens

    def record_error(self, kind: str) -> None:
        """kind: the HTTP status sent ("502"), or "stream_interrupted" for a stream that failed mid-way."""
        with self._lock:
            self._errors[kind] += 1

    def snapshot(self) -> dict:
        with self._lock:
            answered = self._requests
            return {
                "scope": self.scope,
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._started)),
                "requests": answered,
                "errors": dict(self._errors),
                "by_backend": dict(self._by["backend"]),
                "by_model": dict(self._by["model"]),
                "by_tier": dict(self._by["tier"]),
                "local_requests": self._local,
                "local_share": round(self._local / answered, 4) if answered else 0.0,
                "cached_requests": self._cached,
                "cost_usd": round(self._cost, 6),
                "tokens": {"input": self._tokens["input"], "output": self._tokens["output"]},
            }
