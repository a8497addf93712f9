"""A circuit breaker per backend: stop calling an upstream that keeps failing, probe it after a cool-down.

closed --(threshold consecutive failures)--> open --(cool-down elapsed)--> half_open
half_open lets exactly one probe through: success closes the circuit, failure opens it again.
State is per worker process; that is enough to shed load from a dead upstream within a few requests.
`on_change(opened)` hears each change between closed and not closed (the metric: gateway/telemetry.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic):
        self.threshold, self.cooldown, self.clock = threshold, cooldown, clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.on_change: Callable[[bool], None] | None = None

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._probing or self.clock() >= self._opened_at + self.cooldown:
            return "half_open"
        return "open"

    def retry_in(self) -> float:
        """Seconds until the next probe is allowed (0 when calls are allowed now)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self._opened_at + self.cooldown - self.clock())

    def allow(self) -> bool:
        """May a call go through now? In half_open only the first caller gets the probe."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half_open" and not self._probing:
                self._probing = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            was_open = self._opened_at is not None
            self._failures, self._opened_at, self._probing = 0, None, False
        if was_open and self.on_change is not None:
            self.on_change(False)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            opened = self._opened_at is None and (self._probing or self._failures >= self.threshold)
            if self._probing or self._failures >= self.threshold:
                self._opened_at, self._probing = self.clock(), False
        if opened and self.on_change is not None:
            self.on_change(True)

    def release(self) -> None:
        """A call ended with an error that says nothing about the backend's health (e.g. a bad request)."""
        with self._lock:
            self._probing = False
