"""Settings: one typed object read once from the environment (every variable is in .env.example).

`Settings.from_env(mapping)` is the only place that reads environment variables; create_app calls it
and passes the result down. Tests build Settings from a plain dict.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import Catalog, load_catalog
from .chat import STRATEGIES
from .learned_router import LearnedRouter
from .smart_router import ROUTERS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PAID_FALLBACKS = ("refuse", "cloud")


HOST_POLICIES = ("smart", "round_robin", "first")


class ConfigError(ValueError):
    """An environment variable has a value the gateway cannot run with."""


@dataclass(frozen=True)
class BackendSettings:
    url: str | None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0          # seconds to wait for the answer (read timeout)
    connect_timeout: float = 3.0
    max_retries: int = 1           # retries after the first try, for retryable failures only
    prompt_caching: bool = False   # anthropic: mark long stable prefixes cacheable (PROMPT_CACHING, on by default)


@dataclass(frozen=True)
class Settings:
    ollama: BackendSettings
    anthropic: BackendSettings
    openai_compat: BackendSettings
    catalog: Catalog
    host: str = "0.0.0.0"  # noqa: S104 - a gateway in a container listens on all interfaces
    port: int = 8080
    redis_url: str | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    admin_keys: tuple[str, ...] = field(default=(), repr=False)  # also API keys; see every key's data
    models_config: str = "configs/models.yaml"
    model_preset: str = "classic"
    deployment_tier: int = 2
    routing_strategy: str = "auto"
    paid_fallback: str = "refuse"            # PAID_FALLBACK: refuse or cloud (when local models are down)
    router: str = "heuristic"                # ROUTER: heuristic, learned or hybrid
    learned: LearnedRouter | None = field(default=None, repr=False)  # loaded for learned and hybrid
    log_level: str = "INFO"
    ollama_keep_alive: str = "30m"
    ollama_urls: tuple[str, ...] = ()        # several Ollama hosts (OLLAMA_URLS); () : OLLAMA_URL alone
    ollama_host_policy: str = "smart"        # smart | round_robin | first (the last two: to compare against)
    key_priorities: dict = field(default_factory=dict)  # API key id -> high | normal | low (KEY_PRIORITIES)
    retry_backoff_seconds: float = 0.5
    retry_after_max_seconds: float = 10.0
    breaker_failure_threshold: int = 5
    breaker_cooldown_seconds: float = 30.0
    request_deadline_seconds: float = 180.0
    max_body_bytes: int = 8_388_608
    # Batches (/v1/files, /v1/batches): where files live (None: batches off), their limits, the pace
    batch_dir: str | None = None
    batch_max_file_bytes: int = 52_428_800
    batch_file_ttl_days: float = 30.0
    batch_local_concurrency: int = 2
    batch_poll_seconds: float = 30.0
    max_prompt_chars: int = 200_000
    max_image_bytes: int = 5_242_880
    max_output_tokens: int = 32_768
    health_cache_seconds: float = 5.0
    # Shared state (Redis) and cost control
    redis_password: str | None = field(default=None, repr=False)
    redis_tls: bool = False
    redis_socket_timeout: float = 0.5
    redis_failure_policy: str = "local-only"
    budget_monthly_usd: float = 0.0          # 0: no global budget
    budget_per_key_monthly_usd: float = 0.0  # 0: no per-key budget
    budget_soft_limit: float = 0.8
    cache_ttl_seconds: int = 3600            # 0: cache off
    cache_max_temperature: float = 0.5
    cache_shared_across_keys: bool = False   # one cache for every API key (only if keys trust each other)
    rate_limit_rpm: int = 0                  # per API key; 0: off
    rate_limit_tpm: int = 0
    ollama_max_concurrency: int = 0          # across all workers and replicas; 0: no cap
    concurrency_wait_seconds: float = 10.0
    decision_log_max: int = 10000
    metrics_token: str | None = field(default=None, repr=False)
    metrics_trusted_networks: tuple = ()     # METRICS_TRUSTED_NETWORKS: CIDRs that may scrape without the token
    trusted_proxies: tuple = ()              # TRUSTED_PROXIES: the edge's CIDRs, whose X-Forwarded-For is believed
    gpu_sample_seconds: float = 5.0
    stream_send_timeout_seconds: float = 30.0  # a client that reads nothing of a stream this long is cut off
    key_strategies: dict = field(default_factory=dict)  # API key id -> its strategy (KEY_STRATEGIES)
    # The learning router (gateway/calibration/): feedback kept this long per request (0: no feedback), shadow
    # labels for this share of requests within this monthly budget (both 0: off), refits this often
    feedback_ttl_seconds: int = 172800
    calibration_rate: float = 0.0
    calibration_budget_usd: float = 0.0
    calibration_refit_seconds: float = 600.0
    calibration_max_labels: int = 10000
    calibration_keep_prompts: bool = False   # keep labelled prompts' text too (opt-in; SECURITY.md)

    @property
    def longest_call_seconds(self) -> float:
        """How long one upstream call can hold a budget reservation or a concurrency slot: started just before
        the request deadline it may read for its backend's whole timeout, and a stream may then wait on a
        slow client for the send timeout; plus a margin. Reservations and leases live this long."""
        timeout = max(b.timeout for b in (self.ollama, self.anthropic, self.openai_compat))
        return self.request_deadline_seconds + timeout + self.stream_send_timeout_seconds + 10

    @property
    def configured_backends(self) -> frozenset[str]:
        """Backends the gateway may call: Ollama always has a URL; the others need theirs set."""
        names = {"ollama"} if self.ollama.url else set()
        if self.anthropic.api_key:
            names.add("anthropic")
        if self.openai_compat.url:
            names.add("openai_compat")
        return frozenset(names)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        r = _Reader(env)
        connect = r.number("CONNECT_TIMEOUT", 3.0, low=0.1)
        models_config = r.text("MODELS_CONFIG", "configs/models.yaml")
        preset = r.text("MODEL_PRESET", "classic")
        router = r.choice("ROUTER", "heuristic", ROUTERS)
        ollama_urls = r.urls("OLLAMA_URLS")
        settings = cls(
            host=r.text("GATEWAY_HOST", "0.0.0.0"),  # noqa: S104
            port=int(r.number("GATEWAY_PORT", 8080, low=1, high=65535)),
            ollama=BackendSettings(
                url=ollama_urls[0] if ollama_urls else r.url("OLLAMA_URL", "http://localhost:11434"),
                timeout=r.number("OLLAMA_TIMEOUT", 120.0, low=0.1), connect_timeout=connect,
                max_retries=int(r.number("OLLAMA_MAX_RETRIES", 1, low=0, high=10))),
            anthropic=BackendSettings(
                url=r.url("ANTHROPIC_BASE_URL", None), api_key=r.text("ANTHROPIC_API_KEY", None),
                timeout=r.number("ANTHROPIC_TIMEOUT", 120.0, low=0.1), connect_timeout=connect,
                max_retries=int(r.number("ANTHROPIC_MAX_RETRIES", 2, low=0, high=10)),
                prompt_caching=r.flag("PROMPT_CACHING", True)),
            openai_compat=BackendSettings(
                url=r.url("OPENAI_COMPAT_URL", None), api_key=r.text("OPENAI_COMPAT_API_KEY", None),
                timeout=r.number("OPENAI_COMPAT_TIMEOUT", 120.0, low=0.1), connect_timeout=connect,
                max_retries=int(r.number("OPENAI_COMPAT_MAX_RETRIES", 2, low=0, high=10))),
            redis_url=r.text("REDIS_URL", None),
            api_keys=r.keys("GATEWAY_API_KEYS"),
            admin_keys=r.keys("GATEWAY_ADMIN_KEYS"),
            models_config=models_config, model_preset=preset,
            catalog=load_catalog(resolve_path(models_config), preset),
            deployment_tier=int(r.number("DEPLOYMENT_TIER", 2, low=1, high=4)),
            routing_strategy=r.choice("ROUTING_STRATEGY", "auto", STRATEGIES),
            paid_fallback=r.choice("PAID_FALLBACK", "refuse", PAID_FALLBACKS),
            router=router, learned=r.learned(router, r.text("ROUTER_WEIGHTS", "configs/router/learned.json")),
            log_level=r.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            ollama_keep_alive=r.text("OLLAMA_KEEP_ALIVE", "30m"),
            ollama_urls=ollama_urls if len(ollama_urls) > 1 else (),
            ollama_host_policy=r.choice("OLLAMA_HOST_POLICY", "smart", HOST_POLICIES),
            key_priorities=r.per_key("KEY_PRIORITIES", ("high", "normal", "low")),
            retry_backoff_seconds=r.number("RETRY_BACKOFF_SECONDS", 0.5, low=0),
            retry_after_max_seconds=r.number("RETRY_AFTER_MAX_SECONDS", 10.0, low=0),
            breaker_failure_threshold=int(r.number("BREAKER_FAILURE_THRESHOLD", 5, low=1)),
            breaker_cooldown_seconds=r.number("BREAKER_COOLDOWN_SECONDS", 30.0, low=0),
            request_deadline_seconds=r.number("REQUEST_DEADLINE_SECONDS", 180.0, low=1),
            max_body_bytes=int(r.number("MAX_BODY_BYTES", 8_388_608, low=1024)),
            batch_dir=r.text("BATCH_DIR", None),
            batch_max_file_bytes=int(r.number("BATCH_MAX_FILE_BYTES", 52_428_800, low=1024)),
            batch_file_ttl_days=r.number("BATCH_FILE_TTL_DAYS", 30.0, low=0.001),
            batch_local_concurrency=int(r.number("BATCH_LOCAL_CONCURRENCY", 2, low=1, high=64)),
            batch_poll_seconds=r.number("BATCH_POLL_SECONDS", 30.0, low=0.01),
            max_image_bytes=int(r.number("MAX_IMAGE_BYTES", 5_242_880, low=1024)),
            max_prompt_chars=int(r.number("MAX_PROMPT_CHARS", 200_000, low=1)),
            max_output_tokens=int(r.number("MAX_OUTPUT_TOKENS", 32_768, low=1)),
            health_cache_seconds=r.number("HEALTH_CACHE_SECONDS", 5.0, low=0),
            redis_password=r.text("REDIS_PASSWORD", None),
            redis_tls=r.flag("REDIS_TLS", False),
            redis_socket_timeout=r.number("REDIS_SOCKET_TIMEOUT", 0.5, low=0.05, high=30),
            redis_failure_policy=r.choice("REDIS_FAILURE_POLICY", "local-only", ("local-only", "allow")),
            budget_monthly_usd=r.number("BUDGET_MONTHLY_USD", 0.0, low=0),
            budget_per_key_monthly_usd=r.number("BUDGET_PER_KEY_MONTHLY_USD", 0.0, low=0),
            budget_soft_limit=r.number("BUDGET_SOFT_LIMIT", 0.8, low=0, high=1),
            cache_ttl_seconds=int(r.number("CACHE_TTL_SECONDS", 3600, low=0)),
            cache_max_temperature=r.number("CACHE_MAX_TEMPERATURE", 0.5, low=0, high=2),
            cache_shared_across_keys=r.flag("CACHE_SHARED_ACROSS_KEYS", False),
            rate_limit_rpm=int(r.number("RATE_LIMIT_RPM", 0, low=0)),
            rate_limit_tpm=int(r.number("RATE_LIMIT_TPM", 0, low=0)),
            # unset with several hosts and OLLAMA_NUM_PARALLEL: the fleet's slots (each host's parallel slots)
            ollama_max_concurrency=int(r.number("OLLAMA_MAX_CONCURRENCY", 0, low=0)) or (
                len(ollama_urls) * int(r.number("OLLAMA_NUM_PARALLEL", 0, low=0, high=256))
                if len(ollama_urls) > 1 else 0),
            concurrency_wait_seconds=r.number("CONCURRENCY_WAIT_SECONDS", 10.0, low=0),
            decision_log_max=int(r.number("DECISION_LOG_MAX", 10000, low=10)),
            metrics_token=r.text("METRICS_TOKEN", None),
            metrics_trusted_networks=r.networks("METRICS_TRUSTED_NETWORKS"),
            trusted_proxies=r.networks("TRUSTED_PROXIES"),
            gpu_sample_seconds=r.number("GPU_SAMPLE_SECONDS", 5.0, low=0.5),
            stream_send_timeout_seconds=r.number("STREAM_SEND_TIMEOUT_SECONDS", 30.0, low=1, high=3600),
            key_strategies=r.per_key("KEY_STRATEGIES", STRATEGIES),
            feedback_ttl_seconds=int(r.number("FEEDBACK_TTL_SECONDS", 172800, low=0, high=90 * 86400)),
            calibration_rate=r.number("CALIBRATION_RATE", 0.0, low=0, high=1),
            calibration_budget_usd=r.number("CALIBRATION_BUDGET_USD", 0.0, low=0),
            calibration_refit_seconds=r.number("CALIBRATION_REFIT_SECONDS", 600.0, low=1),
            calibration_max_labels=int(r.number("CALIBRATION_MAX_LABELS", 10000, low=100, high=200000)),
            calibration_keep_prompts=r.flag("CALIBRATION_KEEP_PROMPTS", False),
        )
        r.raise_if_errors()
        return settings


def resolve_path(path: str) -> Path:
    """A relative path is taken from the working directory, else from the project root."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return PROJECT_ROOT / p


class _Reader:
    """Reads and validates variables, collecting every problem so one start-up error lists them all."""

    def __init__(self, env: Mapping[str, str]):
        self.env, self.errors = env, []

    def text(self, name: str, default: str | None) -> str | None:
        value = self.env.get(name, "")
        value = value.strip() if isinstance(value, str) else str(value)
        return value or default

    def keys(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of secrets."""
        return tuple(k.strip() for k in (self.text(name, "") or "").split(",") if k.strip())

    def per_key(self, name: str, allowed: tuple[str, ...]) -> dict[str, str]:
        """KEY_ID=VALUE, comma-separated (a key's id: the SHA-256 prefix stats and logs show), each value one of
        `allowed`: KEY_PRIORITIES, KEY_STRATEGIES."""
        out = {}
        for part in self.keys(name):
            key, _, value = part.partition("=")
            if not key.strip() or value.strip() not in allowed:
                self.errors.append(f"{name}: {part[:40]!r} must be KEY_ID=one of {', '.join(allowed)}")
            else:
                out[key.strip()] = value.strip()
        return out

    def urls(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of http(s) URLs, each checked, without duplicates."""
        out: list[str] = []
        for part in self.keys(name):
            if not part.startswith(("http://", "https://")):
                self.errors.append(f"{name}: {part!r} must start with http:// or https://")
            elif part.rstrip("/") not in out:
                out.append(part.rstrip("/"))
        return tuple(out)

    def networks(self, name: str) -> tuple:
        """A comma-separated list of CIDRs (a bare address is one host)."""
        out = []
        for part in self.keys(name):
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                self.errors.append(f"{name}: {part!r} is not an address or CIDR (e.g. 10.0.0.0/8)")
        return tuple(out)

    def url(self, name: str, default: str | None) -> str | None:
        value = self.text(name, default)
        if value and not value.startswith(("http://", "https://")):
            self.errors.append(f"{name} must start with http:// or https://")
        return value.rstrip("/") if value else value

    def number(self, name: str, default: float, low: float | None = None, high: float | None = None) -> float:
        raw = self.text(name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.errors.append(f"{name} must be a number, got {raw!r}")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            self.errors.append(f"{name} must be between {low} and {high}, got {raw!r}")
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = (self.text(name, None) or "").lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        self.errors.append(f"{name} must be true or false, got {raw!r}")
        return default

    def choice(self, name: str, default: str, allowed: tuple[str, ...], upper: bool = False) -> str:
        value = self.text(name, default) or default
        value = value.upper() if upper else value
        if value not in allowed:
            self.errors.append(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
            return default
        return value

    def learned(self, router: str, path: str) -> LearnedRouter | None:
        """The learned router's weights, read once at start-up, when ROUTER needs them."""
        if router == "heuristic":
            return None
        try:
            return LearnedRouter.load(resolve_path(path))
        except ValueError as exc:
            self.errors.append(f"ROUTER={router} needs ROUTER_WEIGHTS: {exc}")
            return None

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ConfigError("invalid configuration: " + "; ".join(self.errors))
