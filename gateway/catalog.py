"""The model catalog: tiers, models, prices and routing weights from configs/models.yaml.

Plain frozen dataclasses so the pure router can take them as input. Parsing validates every
field and names the offending entry, because a typo here would otherwise surface as a wrong
routing decision much later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from .chat import CAPABILITIES, Usage

BACKENDS = ("ollama", "anthropic", "openai_compat")
# What a model can do when configs/models.yaml does not say (`capabilities:`). Ollama constrains any model's
# output to a JSON schema (`format`); which of its models call tools or see images, Ollama itself reports
# (/api/show, read with the model list), and the yaml says for a server too old to report it.
DEFAULT_CAPABILITIES = {"ollama": frozenset({"json_schema"}),
                        "anthropic": frozenset({"tools", "vision", "json_schema"}),
                        "openai_compat": frozenset({"tools", "vision", "json_schema"})}
MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")
EMBEDDING = "embedding"  # the tier name of embedding models: outside chat routing
# The temperature each upstream samples at when a request sets none (Ollama's default; the cloud APIs' 1.0).
DEFAULT_TEMPERATURES = {"ollama": 0.8, "anthropic": 1.0, "openai_compat": 1.0}
FACTORS = ("length", "reasoning", "code", "question", "steps")


class CatalogError(ValueError):
    """configs/models.yaml is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str
    id: str
    tier: str
    context_window: int
    price_in_per_mtok: float
    price_out_per_mtok: float
    max_output_tokens: int | None = None
    sampling_params: bool = True
    max_tokens_param: str = "max_tokens"  # openai_compat: the field the model takes its output limit in
    default_temperature: float = 1.0      # what the upstream samples at when a request sets none
    capabilities: frozenset[str] = frozenset()  # of CAPABILITIES: tools, vision, json_schema
    # anthropic: the model takes a JSON schema natively (output_config.format); else the forced-tool method
    structured_output: bool = False
    # Prompt caching (Anthropic): prices of cached input, and the shortest prefix the provider caches
    # (0: the gateway never marks one). Unset cache prices are the input price (nothing cached, nothing saved).
    price_cache_read_per_mtok: float | None = None
    price_cache_write_per_mtok: float | None = None
    price_cache_write_1h_per_mtok: float | None = None
    min_cache_tokens: int = 0
    batch_discount: float = 0.0  # share off every price through the provider's batch API (Anthropic: 0.5)

    @cached_property  # asked several times per request
    def paid(self) -> bool:
        """Costs money per token (a cloud API); free models count as local in stats and strategies."""
        return self.price_in_per_mtok > 0 or self.price_out_per_mtok > 0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for the given token counts at this model's list prices (no cache, no batch)."""
        return (input_tokens * self.price_in_per_mtok + output_tokens * self.price_out_per_mtok) / 1e6

    def worst_cost(self, input_tokens: int, output_tokens: int, cache_write: str = "") -> float:
        """The most these counts can cost: every input token at the dearest price the call can pay, a cache
        write ("5m" or "1h") when its prompt may be written to the provider's cache. What a budget reservation
        holds."""
        dearest = self.price_in_per_mtok
        if cache_write:
            dearest = max(dearest, _or(self.price_cache_write_per_mtok, dearest))
        if cache_write == "1h":
            dearest = max(dearest, _or(self.price_cache_write_1h_per_mtok, dearest))
        return (input_tokens * dearest + output_tokens * self.price_out_per_mtok) / 1e6

    def usage_cost(self, usage: Usage, batch: bool = False) -> float:
        """USD for one call's usage: cache reads and writes at their prices, the batch discount if it went
        through the batch API (the discounts stack, as Anthropic bills them)."""
        if usage.cached:
            inp = self.price_in_per_mtok
            uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens \
                - usage.cache_write_1h_tokens
            cost = (uncached * inp + usage.output_tokens * self.price_out_per_mtok
                    + usage.cache_read_tokens * _or(self.price_cache_read_per_mtok, inp)
                    + usage.cache_write_tokens * _or(self.price_cache_write_per_mtok, inp)
                    + usage.cache_write_1h_tokens * _or(self.price_cache_write_1h_per_mtok, inp)) / 1e6
        else:
            cost = self.cost(usage.input_tokens, usage.output_tokens)
        return cost * (1 - self.batch_discount) if batch else cost

    def output_limit(self, max_tokens: int) -> int:
        """The max_tokens a call to this model is sent with: the request's, capped at the model's own
        limit. The budget reserves at this same figure, so what is sent is what is reserved."""
        return min(max_tokens, self.max_output_tokens) if self.max_output_tokens else max_tokens


def _or(price: float | None, default: float) -> float:
    return default if price is None else price


@dataclass(frozen=True)
class TierSpec:
    name: str
    max_score: float
    min_deployment_tier: int = 1


@dataclass(frozen=True)
class QuestionStyle:
    simple: tuple[str, ...] = ()
    open: tuple[str, ...] = ()
    task: tuple[str, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)  # hashed by identity: the router caches compiled keywords per config
class RoutingConfig:
    weights: dict[str, float]
    short_words: int
    long_words: int
    reasoning_keywords: tuple[str, ...]
    reasoning_saturation: int
    code_fenced_block: float
    code_per_line: float
    question: QuestionStyle
    steps_saturation: int
    conserve_at: float
    conserve_min_score: float
    default_max_tokens: int
    # tier -> (larger local model, free GPU memory in MiB it needs): used when a GPU has that much free
    gpu_upgrades: dict[str, tuple[str, int]] = field(default_factory=dict)
    # strategy cascade: a local answer whose mean token log-probability is lower goes to the cloud (None: off)
    cascade_min_mean_logprob: float | None = None
    # the share of the cloud model's quality to keep: the gateway calibrates the cloud threshold to it from
    # labelled traffic (gateway/calibration/); None: the tiers' max_score decide
    target_quality: float | None = None


@dataclass(frozen=True)
class Catalog:
    tiers: tuple[TierSpec, ...]
    models: tuple[ModelSpec, ...]
    routing: RoutingConfig
    prices_as_of: str = ""
    # The Messages surface: (part of a Claude model name, the gateway target that answers it), first match wins.
    claude_names: tuple[tuple[str, str], ...] = ()
    # Models that turn text into vectors (/v1/embeddings, /api/v1/embed); the first configured one is the default.
    embedding_models: tuple[ModelSpec, ...] = ()

    def embedding_model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.embedding_models if m.name == name or m.id == name), None)

    def claude_target(self, name: str) -> str:
        """The gateway target (auto, a tier, a model) for a model name a Messages client asked for: itself if
        the gateway knows it, else the first `claude_names` entry it contains, else the configured model of
        that upstream id, else the cloud tier."""
        if name == "auto" or self.model(name) is not None or self.tier(name) is not None:
            return name
        lower = name.lower()
        for part, target in self.claude_names:
            if part in lower:
                return target
        same = next((m.name for m in self.models if m.id == name), None)
        return same or ("cloud" if self.tier("cloud") is not None else "auto")

    def model(self, name: str) -> ModelSpec | None:
        for m in self.models:
            if m.name == name:
                return m
        return None

    def tier(self, name: str) -> TierSpec | None:
        for t in self.tiers:
            if t.name == name:
                return t
        return None

    def models_in(self, tier: str) -> tuple[ModelSpec, ...]:
        return self._by_tier.get(tier, ())

    @cached_property
    def _by_tier(self) -> dict[str, tuple[ModelSpec, ...]]:
        """Built on first use: the router asks for a tier's models several times per decision."""
        by_tier: dict[str, tuple[ModelSpec, ...]] = {}
        for m in self.models:
            by_tier[m.tier] = (*by_tier.get(m.tier, ()), m)
        return by_tier


def load_catalog(path: str | Path, preset: str = "classic") -> Catalog:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"cannot read models config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"models config {path} is not valid YAML: {exc}") from exc
    return parse_catalog(raw, source=str(path), preset=preset)


def preset_models(raw: dict, preset: str, source: str = "models config") -> list:
    """The catalog's models under a preset (MODEL_PRESET): `classic` is the `models:` list; another preset's
    list (`presets: {name: [...]}`) replaces the Ollama models of it, the others (cloud) stay."""
    models = raw.get("models") if isinstance(raw.get("models"), list) else []
    if preset == "classic":
        return models
    presets = raw.get("presets") or {}
    if not isinstance(presets, dict) or not isinstance(presets.get(preset), list):
        known = ", ".join(["classic", *(presets if isinstance(presets, dict) else {})])
        raise CatalogError(f"{source}: no model preset {preset!r} (MODEL_PRESET); known: {known}")
    return presets[preset] + [m for m in models if isinstance(m, dict) and m.get("backend") != "ollama"]


def parse_catalog(raw: Any, source: str = "models config", preset: str = "classic") -> Catalog:
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: top level must be a mapping")
    raw = {**raw, "models": preset_models(raw, preset, source)}
    tiers = tuple(_tier(t, source) for t in _list(raw, "tiers", source))
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise CatalogError(f"{source}: duplicate tier names in {names}")
    if [t.max_score for t in tiers] != sorted(t.max_score for t in tiers):
        raise CatalogError(f"{source}: tiers must be ordered by ascending max_score")
    models = tuple(_model(m, source, set(names)) for m in _list(raw, "models", source))
    mnames = [m.name for m in models]
    if len(set(mnames)) != len(mnames):
        raise CatalogError(f"{source}: duplicate model names in {mnames}")
    clash = set(mnames) & set(names) | ({"auto"} & (set(mnames) | set(names)))
    if clash:
        raise CatalogError(f"{source}: names used both as tier and model (or 'auto'): {sorted(clash)}")
    routing = _routing(raw.get("routing") or {}, source)
    if preset != "classic":  # an upgrade to a model the preset replaced does not apply
        for tier, (model, _) in list(routing.gpu_upgrades.items()):
            if model not in mnames:
                del routing.gpu_upgrades[tier]
    for tier, (model, _) in routing.gpu_upgrades.items():
        if tier not in names or model not in mnames:
            raise CatalogError(f"{source}: routing.gpu_upgrade: {tier!r} -> {model!r} names an unknown tier or model")
    claude = raw.get("claude_names") or {}
    if not isinstance(claude, dict) or not all(isinstance(v, str) for v in claude.values()):
        raise CatalogError(f"{source}: claude_names must map parts of model names to a target (auto, a tier, a model)")
    for part, target in claude.items():
        if target != "auto" and target not in names and target not in mnames:
            raise CatalogError(f"{source}: claude_names: {part!r} -> {target!r} is not auto, a tier or a model")
    embedding = tuple(_model({**m, "tier": EMBEDDING}, source, {EMBEDDING}) if isinstance(m, dict) else _model(
        m, source, set()) for m in raw.get("embedding_models") or [])
    if set(m.name for m in embedding) & (set(mnames) | set(names)):
        raise CatalogError(f"{source}: embedding model names must differ from chat model and tier names")
    return Catalog(tiers=tiers, models=models, routing=routing, prices_as_of=str(raw.get("prices_as_of", "")),
                   claude_names=tuple((str(k).lower(), v) for k, v in claude.items()), embedding_models=embedding)


def _list(raw: dict, key: str, source: str) -> list:
    value = raw.get(key)
    if not isinstance(value, list) or not value:
        raise CatalogError(f"{source}: '{key}' must be a non-empty list")
    return value


def _tier(t: Any, source: str) -> TierSpec:
    if not isinstance(t, dict) or not isinstance(t.get("name"), str):
        raise CatalogError(f"{source}: each tier needs a name")
    try:
        spec = TierSpec(name=t["name"], max_score=float(t["max_score"]),
                        min_deployment_tier=int(t.get("min_deployment_tier", 1)))
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"{source}: tier {t['name']!r}: max_score and min_deployment_tier must be numbers") from exc
    if not 0 < spec.max_score <= 1 or not 1 <= spec.min_deployment_tier <= 4:
        raise CatalogError(f"{source}: tier {spec.name!r}: max_score in (0, 1], min_deployment_tier in 1-4")
    return spec


def _model(m: Any, source: str, tiers: set[str]) -> ModelSpec:
    if not isinstance(m, dict) or not isinstance(m.get("name"), str):
        raise CatalogError(f"{source}: each model needs a name")
    name = m["name"]
    if m.get("backend") not in BACKENDS:
        raise CatalogError(f"{source}: model {name!r}: backend must be one of {', '.join(BACKENDS)}")
    if m.get("tier") not in tiers:
        raise CatalogError(f"{source}: model {name!r}: tier {m.get('tier')!r} is not a configured tier")
    try:
        spec = ModelSpec(
            name=name, backend=m["backend"], id=str(m.get("id") or name), tier=m["tier"],
            context_window=int(m["context_window"]),
            price_in_per_mtok=float(m["price_in_per_mtok"]),
            price_out_per_mtok=float(m["price_out_per_mtok"]),
            max_output_tokens=int(m["max_output_tokens"]) if m.get("max_output_tokens") else None,
            sampling_params=bool(m.get("sampling_params", True)),
            max_tokens_param=str(m.get("max_tokens_param", "max_tokens")),
            default_temperature=float(m.get("default_temperature", DEFAULT_TEMPERATURES[m["backend"]])),
            capabilities=_capabilities(m, source),
            structured_output=bool(m.get("structured_output", False)),
            price_cache_read_per_mtok=_price(m, "price_cache_read_per_mtok"),
            price_cache_write_per_mtok=_price(m, "price_cache_write_per_mtok"),
            price_cache_write_1h_per_mtok=_price(m, "price_cache_write_1h_per_mtok"),
            min_cache_tokens=int(m.get("min_cache_tokens", 0)),
            batch_discount=float(m.get("batch_discount", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(
            f"{source}: model {name!r}: context_window, price_in_per_mtok and price_out_per_mtok are required numbers"
        ) from exc
    if spec.context_window <= 0 or spec.price_in_per_mtok < 0 or spec.price_out_per_mtok < 0:
        raise CatalogError(f"{source}: model {name!r}: context_window > 0 and prices >= 0 required")
    cache_prices = (spec.price_cache_read_per_mtok, spec.price_cache_write_per_mtok, spec.price_cache_write_1h_per_mtok)
    if any(p is not None and p < 0 for p in cache_prices) or spec.min_cache_tokens < 0 \
            or not 0 <= spec.batch_discount < 1:
        raise CatalogError(f"{source}: model {name!r}: cache prices and min_cache_tokens >= 0, "
                           "batch_discount in [0, 1)")
    if spec.max_tokens_param not in MAX_TOKENS_PARAMS:
        raise CatalogError(f"{source}: model {name!r}: max_tokens_param must be one of {', '.join(MAX_TOKENS_PARAMS)}")
    return spec


def _price(m: dict, field: str) -> float | None:
    return None if m.get(field) is None else float(m[field])


def _capabilities(m: dict, source: str) -> frozenset[str]:
    declared = m.get("capabilities")
    if declared is None:
        return DEFAULT_CAPABILITIES[m["backend"]]
    if not isinstance(declared, list) or set(declared) - set(CAPABILITIES):
        raise CatalogError(f"{source}: model {m['name']!r}: capabilities must be a list of {', '.join(CAPABILITIES)}")
    return frozenset(declared) | (DEFAULT_CAPABILITIES["ollama"] if m["backend"] == "ollama" else frozenset())


def _words(value: Any) -> tuple[str, ...]:
    return tuple(str(v).strip().lower() for v in (value or ()) if str(v).strip())


def _routing(r: dict, source: str) -> RoutingConfig:
    weights = {f: float((r.get("weights") or {}).get(f, 0.0)) for f in FACTORS}
    unknown = set(r.get("weights") or {}) - set(FACTORS)
    if unknown:
        raise CatalogError(f"{source}: routing.weights: unknown factors {sorted(unknown)}; known: {FACTORS}")
    if any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise CatalogError(f"{source}: routing.weights must be >= 0 and not all zero")
    length, reasoning = r.get("length") or {}, r.get("reasoning") or {}
    code, q, steps, ca = r.get("code") or {}, r.get("question") or {}, r.get("steps") or {}, r.get("cost_aware") or {}
    scores = {"simple": 0.0, "other": 0.3, "open": 0.6, "task": 0.8} | {
        k: float(v) for k, v in (q.get("scores") or {}).items()
    }
    cfg = RoutingConfig(
        weights=weights,
        short_words=int(length.get("short_words", 12)),
        long_words=int(length.get("long_words", 400)),
        reasoning_keywords=_words(reasoning.get("keywords")),
        reasoning_saturation=max(1, int(reasoning.get("saturation", 3))),
        code_fenced_block=float(code.get("fenced_block", 1.0)),
        code_per_line=float(code.get("per_code_line", 0.25)),
        question=QuestionStyle(simple=_words(q.get("simple")), open=_words(q.get("open")),
                               task=_words(q.get("task")), scores=scores),
        steps_saturation=max(1, int(steps.get("saturation", 4))),
        conserve_at=float(ca.get("conserve_at", 0.8)),
        conserve_min_score=float(ca.get("conserve_min_score", 0.85)),
        default_max_tokens=int(r.get("default_max_tokens", 1024)),
        gpu_upgrades={str(tier): (str(u["model"]), int(u["min_free_mb"]))
                      for tier, u in (r.get("gpu_upgrade") or {}).items()},
        cascade_min_mean_logprob=_min_mean_logprob(r.get("cascade") or {}, source),
        target_quality=_target_quality(r.get("target_quality"), source),
    )
    if not 0 < cfg.short_words < cfg.long_words:
        raise CatalogError(f"{source}: routing.length: 0 < short_words < long_words required")
    return cfg


def _target_quality(value: object, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise CatalogError(f"{source}: routing.target_quality must be a share of the cloud model's quality between 0 "
                           f"and 1 (e.g. 0.95) or null, got {value!r}")
    return float(value)


def _min_mean_logprob(cascade: dict, source: str) -> float | None:
    value = cascade.get("min_mean_logprob")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value < 0:
        raise CatalogError(f"{source}: routing.cascade.min_mean_logprob must be a negative number (a log-probability) "
                           f"or null, got {value!r}")
    return float(value)
