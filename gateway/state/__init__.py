"""What workers share: stats, spend and budgets, the response cache, rate limits, the decision log, the
learning router's labels and versions.

Each store has one interface and two implementations: Redis (shared by every worker and replica) and
in-process (one worker only). build_state picks them from REDIS_URL; nothing else imports redis.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..config import Settings
from .budget import Ledger, Limits, MemoryLedger, RedisLedger
from .cache import Cache, MemoryCache, RedisCache
from .calibration import CalibrationStore, MemoryCalibrationStore, RedisCalibrationStore
from .decisions import DecisionLog, MemoryDecisionLog, RedisDecisionLog
from .hosts import HostLeases, MemoryHostLeases, RedisHostLeases
from .ratelimit import (
    ConcurrencyCap,
    MemoryConcurrencyCap,
    MemoryRateLimiter,
    RateLimiter,
    RedisConcurrencyCap,
    RedisRateLimiter,
)
from .stats import InMemoryStats, RedisStats, StatsStore
from .store import RedisStore, StateUnavailable

__all__ = ["State", "StateUnavailable", "build_state"]
log = logging.getLogger("gateway")


@dataclass
class State:
    stats: StatsStore
    ledger: Ledger
    limits: Limits
    cache: Cache
    rate_limiter: RateLimiter
    concurrency: ConcurrencyCap
    decisions: DecisionLog
    hosts: HostLeases  # calls in flight per Ollama host (several hosts: which one a call goes to)
    redis: RedisStore | None = None
    calibration: CalibrationStore = field(default_factory=MemoryCalibrationStore)  # the learning router's

    @property
    def shared(self) -> bool:
        return self.redis is not None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The writes of one request (stats, spend, decision log, cache fill) in one Redis round trip."""
        if self.redis is None:
            yield
        else:
            with self.redis.batch():
                yield

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()


def build_state(settings: Settings) -> State:
    limits = Limits(monthly_usd=settings.budget_monthly_usd or None,
                    per_key_monthly_usd=settings.budget_per_key_monthly_usd or None,
                    soft_share=settings.budget_soft_limit)
    caps = {"ollama": settings.ollama_max_concurrency}
    lease_ttl = settings.longest_call_seconds
    if settings.redis_url:
        store = RedisStore.from_settings(settings)
        return State(
            stats=RedisStats(store), ledger=RedisLedger(store, limits), limits=limits, cache=RedisCache(store),
            rate_limiter=RedisRateLimiter(store, settings.rate_limit_rpm, settings.rate_limit_tpm),
            concurrency=RedisConcurrencyCap(store, caps, lease_ttl),
            decisions=RedisDecisionLog(store, settings.decision_log_max), hosts=RedisHostLeases(store, lease_ttl),
            redis=store, calibration=RedisCalibrationStore(store))
    log.warning("no REDIS_URL: stats, spend, budgets, cache and rate limits are per process; "
                "run a single worker (GATEWAY_WORKERS=1) or set REDIS_URL")
    return State(
        stats=InMemoryStats(), ledger=MemoryLedger(limits), limits=limits, cache=MemoryCache(),
        rate_limiter=MemoryRateLimiter(settings.rate_limit_rpm, settings.rate_limit_tpm),
        concurrency=MemoryConcurrencyCap(caps, lease_ttl), decisions=MemoryDecisionLog(settings.decision_log_max),
        hosts=MemoryHostLeases(lease_ttl))
