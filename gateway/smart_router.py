"""The smart router: score a prompt, pick a tier and model, plan the fallbacks. Pure: no I/O.

`estimate_complexity(prompt, routing)` turns text into a score in [0, 1] and the factors behind it;
`score_prompt` picks that heuristic, the learned router (gateway/learned_router.py) or their blend.
`decide(request, context)` turns a ChatRequest plus what the gateway knows right now (configured
backends, open circuits, models found missing, budget) into a Decision: the model to call first and
the ordered alternatives dispatch may fall back to. Same prompt and context, same decision.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from .calibration.labels import cluster_of
from .catalog import Catalog, ModelSpec, RoutingConfig, TierSpec
from .chat import STRATEGIES, ChatRequest
from .errors import BadRequest, InvalidParameter, ServiceUnavailable, UnknownModel
from .learned_router import LearnedRouter
from .prompt_window import scan_window

ROUTERS = ("heuristic", "learned", "hybrid")  # ROUTER: which scorer score_prompt() uses

_PUNCT = ".,;:!?()[]{}<>\"'`*_~/\\|=+"
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
# Signs of code, each anchored on a literal newline or operator so the regex engine skips prose fast
# (the text is scanned with a newline prepended and appended). A lone bracket or one parenthesis in a
# sentence matches none of them.
_CODE_SIGNS = (
    re.compile(r"\n[ \t]*(?:def|class|import|from\s+[\w.]+\s+import|return|fn|func|function|const|let|var|"
               r"public|private|static|package|using|#include|SELECT|INSERT|UPDATE|CREATE\s+TABLE|async\s+def|"
               r"elif|else:|try:|except|catch|while\s*\(|for\s*\(|if\s*\(|switch\s*\()\b"),
    re.compile(r"\n[ \t]*[\w.\[\]]+[ \t]*(?:=|\+=|-=|:=|==)[ \t]*[\w\"'(\[{-]"),   # x = 1, a.b += c
    re.compile(r"[;{][ \t]*\n|\n[ \t]*\}"),                                      # ; or { ending, } opening
    re.compile(r"=>|->|::|&&|\|\||!=|\+\+"),                                        # operators prose lacks
)
_INLINE_CODE = re.compile(r"`[^`\n]+`|\b\w+\([^()\n]*\)")
# Anchored on a literal newline (the text is scanned with one prepended) so the regex engine can jump
# from line to line instead of trying every position.
_LIST_ITEM = re.compile(r"\n[ \t]*(?:\d{1,2}[.)]|[-*\u2022])[ \t]+\S")
_SEQUENCE_WORDS = frozenset(
    {"first", "firstly", "second", "secondly", "third", "then", "next", "finally", "lastly", "afterwards", "after"}
)
_POLITE = re.compile(r"^(?:please|pls|kindly|hey|hi|hello|can you|could you|would you|i need you to|help me)[\s,]+")


def _inflections(keyword: str) -> tuple[str, ...]:
    """A keyword and its common inflections: design -> designs, designing, designed; scale -> scaling."""
    stem = keyword[:-1] if keyword.endswith("e") else keyword
    return (keyword, keyword + "s", keyword + "es", stem + "ing", stem + "ed", keyword + "d")


@dataclass(frozen=True)
class _Keywords:
    forms: dict[str, str]          # every inflected form -> its keyword: one dict lookup per word
    phrases: tuple[str, ...]


@lru_cache(maxsize=16)
def _keywords(routing: RoutingConfig) -> _Keywords:
    kws = routing.reasoning_keywords
    forms = {form: k for k in kws if " " not in k for form in _inflections(k)}
    return _Keywords(forms, tuple(k for k in kws if " " in k))


def estimate_complexity(prompt: str, routing: RoutingConfig) -> tuple[float, dict[str, float]]:
    """Score a prompt in [0, 1]: the weighted sum of five factors, each in [0, 1], capped at 1."""
    text = scan_window(prompt)
    windowed = text is not prompt
    lower = text.lower()
    tokens = lower.split()
    # The length factor counts the whole prompt: whitespace runs, at C speed, when it was windowed, unless
    # the window alone already saturates it (two passes over 32 KB cost more than the rest of the score).
    n_words = len(tokens)
    if windowed and n_words < routing.long_words:
        n_words = max(n_words, prompt.count(" ") + prompt.count("\n"))
    words = {t.strip(_PUNCT) for t in set(tokens)}
    factors = {
        "length": _length(n_words, routing),
        "reasoning": _reasoning(words, lower, routing),
        "code": _code(text, routing),
        "question": _question(lower, n_words, routing),
        "steps": _steps(text, lower, words, routing),
    }
    factors = {k: round(v, 4) for k, v in factors.items()}
    score = sum(routing.weights[k] * v for k, v in factors.items())
    return round(min(1.0, max(0.0, score)), 4), factors


def score_prompt(prompt: str, routing: RoutingConfig, router: str = "heuristic",
                 learned: LearnedRouter | None = None) -> tuple[float, dict[str, float]]:
    """The score `router` gives a prompt, with its factors: `heuristic` (estimate_complexity), `learned`
    (the model's probability mapped onto the same scale) or `hybrid` (their weighted mean, with both
    parts in the factors). Without a learned model every router is the heuristic."""
    if router == "heuristic" or learned is None:
        return estimate_complexity(prompt, routing)
    score = learned.score(prompt)
    if router == "learned":
        return score, {"learned": score}
    heuristic, factors = estimate_complexity(prompt, routing)
    w = learned.hybrid_weight
    return round(w * score + (1 - w) * heuristic, 4), {**factors, "heuristic": heuristic, "learned": score}


def _length(n_words: int, r: RoutingConfig) -> float:
    if n_words <= r.short_words:
        return 0.0
    if n_words >= r.long_words:
        return 1.0
    return math.log(n_words / r.short_words) / math.log(r.long_words / r.short_words)


def _reasoning(words: set[str], lower: str, r: RoutingConfig) -> float:
    kw = _keywords(r)
    forms = kw.forms
    hits = {forms[w] for w in words if w in forms}
    hits.update(p for p in kw.phrases if p in lower)
    return min(1.0, len(hits) / r.reasoning_saturation)


def _code(text: str, r: RoutingConfig) -> float:
    if _FENCE.search(text):
        return min(1.0, r.code_fenced_block)
    framed = "\n" + text + "\n"
    lines = sum(len(sign.findall(framed)) for sign in _CODE_SIGNS)
    inline = len(_INLINE_CODE.findall(text))
    return min(1.0, (lines + 0.5 * min(inline, 4)) * r.code_per_line)


def _question(lower: str, n_words: int, r: RoutingConfig) -> float:
    q = r.question
    head = _POLITE.sub("", lower.lstrip()[:200]).lstrip()
    if head.startswith(q.task):  # a tuple: one C call for every prefix
        return q.scores["task"]
    padded = f" {head[:120]} "
    if head.startswith(q.open) or any(f" {o} " in padded for o in q.open):
        return q.scores["open"]
    if n_words <= 2 * r.short_words and head.startswith(q.simple):
        return q.scores["simple"]
    return q.scores["other"]


def _steps(text: str, lower: str, words: set[str], r: RoutingConfig) -> float:
    items = len(_LIST_ITEM.findall("\n" + text))
    sequence = len(_SEQUENCE_WORDS.intersection(words))
    if "step by step" in lower:
        sequence += 2
    count = max(items, sequence)
    return min(1.0, count / r.steps_saturation) if count >= 2 else 0.0


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class RoutingContext:
    """What the gateway knows at decision time; built by the caller without I/O on the request path."""
    catalog: Catalog
    configured_backends: frozenset[str]
    deployment_tier: int = 2
    default_strategy: str = "auto"
    open_circuits: frozenset[str] = frozenset()      # backends whose breaker is open
    missing_models: frozenset[str] = frozenset()     # model names an upstream said it does not have
    budget_used_fraction: float | None = None        # of the monthly budget, when known
    budget_remaining_usd: float | None = None
    paid_block_reason: str | None = None             # set when paid calls are paused (e.g. Redis down)
    gpu_free_mb: int | None = None                   # largest free GPU memory, when a GPU is present
    router: str = "heuristic"                        # ROUTER: heuristic, learned or hybrid
    learned: LearnedRouter | None = None             # the loaded weights, for learned and hybrid
    paid_fallback: str = "refuse"                    # PAID_FALLBACK: may local failures go to a paid model?
    # What models can do as their upstream reports it (Ollama's /api/show), by model name; a model not
    # here has the capabilities configs/models.yaml gives it.
    capabilities: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # The learning router (gateway/calibration/): the cloud threshold calibrated to routing.target_quality,
    # "*" and per task cluster (empty: the tiers' max_score decide), and the version in force
    thresholds: Mapping[str, float] = field(default_factory=dict)
    router_version: str = ""


@dataclass(frozen=True)
class Choice:
    model: str
    backend: str
    tier: str
    estimated_cost: float

    def as_dict(self) -> dict:
        return {"model": self.model, "backend": self.backend, "tier": self.tier,
                "estimated_cost": self.estimated_cost}


@dataclass(frozen=True)
class Decision:
    tier: str
    model: str
    backend: str
    score: float
    factors: dict[str, float]
    reason: str
    estimated_cost: float
    alternatives: tuple[Choice, ...] = ()
    strategy: str = "auto"
    explicit: bool = False
    # A bounded label for metrics: complexity, calibrated (routing.target_quality's threshold decided), explicit_model,
    # explicit_tier, cloud_first, local_only,
    # budget, budget_conserve, paid_paused, unavailable, capability (the tier's models lack what the request
    # needs) or local_unavailable.
    reason_code: str = "complexity"
    # The capabilities that kept models out of the plan (a bounded label for metrics), e.g. ("tools",).
    exclusions: tuple[str, ...] = ()
    router_version: str = ""  # the learned weights and calibration the decision used (the decision log shows it)

    @property
    def plan(self) -> tuple[Choice, ...]:
        """The primary choice then the fallbacks, in the order dispatch tries them."""
        return (Choice(self.model, self.backend, self.tier, self.estimated_cost), *self.alternatives)


_NEEDS = {"anthropic": "ANTHROPIC_API_KEY", "openai_compat": "OPENAI_COMPAT_URL", "ollama": "OLLAMA_URL"}
_CAN = {"tools": "call tools", "vision": "read images", "json_schema": "follow a JSON schema"}
# What a capability needs on the request, for the error that names the field.
_FIELD = {"tools": "tools", "vision": "messages", "json_schema": "response_format"}


class _Planner:
    def __init__(self, request: ChatRequest, ctx: RoutingContext, strategy: str):
        self.req, self.ctx, self.strategy = request, ctx, strategy
        self.cat = ctx.catalog
        self.tokens = request.input_tokens_estimate
        self.out_tokens = request.max_tokens or self.cat.routing.default_max_tokens
        self.notes: list[str] = []
        self.code = "complexity"
        self.local_decided = False   # the prompt was given to a local tier (PAID_FALLBACK applies)
        self.excluded: dict[str, None] = {}  # capabilities that kept a model out (ordered set)
        self.demanding = bool(request.needs or request.image_urls)  # plain chat skips the capability check

    def lacks(self, m: ModelSpec) -> str | None:
        """Why `m` cannot answer this request (a capability it lacks), or None."""
        needs = self.req.needs
        if not needs and not self.req.image_urls:
            return None
        caps = self.ctx.capabilities.get(m.name, m.capabilities)
        for need in sorted(needs - caps):
            self.excluded[need] = None
            return f"needs {need}: {m.name} cannot {_CAN[need]}"
        if self.req.image_urls and m.backend == "ollama":
            self.excluded["vision"] = None
            return f"image URL: {m.name} (ollama) takes images as data: URLs only"
        return None

    def enabled(self, tier: TierSpec) -> bool:
        return tier.min_deployment_tier <= self.ctx.deployment_tier

    def usable(self, m: ModelSpec) -> bool:
        if m.backend not in self.ctx.configured_backends or m.name in self.ctx.missing_models \
                or self.tokens >= m.context_window:
            return False
        if not self.demanding:
            return True
        why = self.lacks(m)
        if why:
            self.notes.append(why)
        return why is None

    def choice(self, m: ModelSpec) -> Choice:
        return Choice(m.name, m.backend, m.tier, round(m.cost(self.tokens, self.out_tokens), 8))

    def tier_models(self, tier: TierSpec, allow_paid: bool = True) -> list[ModelSpec]:
        return [m for m in self.cat.models_in(tier.name) if self.usable(m) and (allow_paid or not m.paid)]

    def order(self, models: list[ModelSpec]) -> list[ModelSpec]:
        """Keep the configured order, but move models behind an open circuit to the end."""
        return sorted(models, key=lambda m: m.backend in self.ctx.open_circuits)

    def chain(self, start: int, allow_paid: bool) -> list[ModelSpec]:
        """Tiers from `start` upward, then downward: more capable first, cheaper after."""
        tiers = [t for t in self.cat.tiers if self.enabled(t)]
        ordered = tiers[start:] + tiers[:start][::-1]
        models: list[ModelSpec] = []
        for t in ordered:
            models += self.tier_models(t, allow_paid)
        return self.order(models)

    def unavailable_note(self, models: list[ModelSpec]) -> None:
        for m in models:
            if m.backend not in self.ctx.configured_backends:
                self.notes.append(f"{m.name} unavailable: no {_NEEDS[m.backend]}")
            elif m.name in self.ctx.missing_models:
                self.notes.append(f"{m.name} unavailable: not installed on {m.backend}")
            elif self.tokens >= m.context_window:
                self.notes.append(
                    f"{m.name} skipped: ~{self.tokens} tokens exceed its {m.context_window}-token context")


def decide(request: ChatRequest, context: RoutingContext) -> Decision:
    """Pick the model for a request and the fallbacks after it. Raises InvalidParameter, UnknownModel
    or ServiceUnavailable (nothing usable)."""
    strategy = request.strategy or context.default_strategy
    if strategy not in STRATEGIES:
        raise InvalidParameter(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}", param="strategy")
    score, factors = score_prompt(request.prompt, context.catalog.routing, context.router, context.learned)
    p = _Planner(request, context, strategy)
    target = request.model or "auto"

    if target != "auto":
        model = context.catalog.model(target)
        if model is not None:
            return _explicit_model(p, model, score, factors)
        tier = context.catalog.tier(target)
        if tier is None:
            names = [m.name for m in context.catalog.models] + [t.name for t in context.catalog.tiers]
            raise UnknownModel(f"unknown model or tier {target!r}; known: auto, {', '.join(names)}", param="model")
        return _explicit_tier(p, tier, score, factors)
    return _by_complexity(p, score, factors)


def _explicit_model(p: _Planner, m: ModelSpec, score: float, factors: dict) -> Decision:
    if p.strategy == "local-only" and m.paid:
        raise InvalidParameter(f"model {m.name!r} is a paid cloud model but strategy is local-only", param="model")
    tier = next(t for t in p.cat.tiers if t.name == m.tier)
    if not p.enabled(tier):  # the same answer as for its tier: the deployment does not run (or pull) it
        raise InvalidParameter(f"model {m.name!r} is in tier {tier.name!r}, which needs deployment tier "
                               f"{tier.min_deployment_tier}+; this gateway runs deployment tier "
                               f"{p.ctx.deployment_tier}", param="model")
    if m.backend not in p.ctx.configured_backends:
        raise ServiceUnavailable(f"model {m.name!r} needs {_NEEDS[m.backend]}, which is not configured")
    why = p.lacks(m)
    if why:
        need = next(iter(p.excluded))
        raise BadRequest(f"model {m.name!r} cannot take this request ({why}); ask for 'auto' or a model that can "
                         f"(GET /api/v1/models lists each model's capabilities)", param=_FIELD[need],
                         error_type="capability_unavailable")
    c = p.choice(m)
    return Decision(m.tier, m.name, m.backend, score, factors, f"model {m.name} requested explicitly",
                    c.estimated_cost, (), p.strategy, explicit=True, reason_code="explicit_model",
                    router_version=p.ctx.router_version)


def _no_capable_model(p: _Planner) -> BadRequest:
    """Every model that could otherwise answer lacks what the request needs: say which and how to get one."""
    need = next(iter(p.excluded))
    return BadRequest(f"no enabled model can {_CAN[need]} ({'; '.join(dict.fromkeys(p.notes))}); enable one: "
                      "MODEL_PRESET=tools in .env (local models that call tools and read images), a cloud model, or "
                      f"`capabilities: [{need}]` on a model in configs/models.yaml that has it",
                      param=_FIELD[need], error_type="capability_unavailable")


def _explicit_tier(p: _Planner, tier: TierSpec, score: float, factors: dict) -> Decision:
    if not p.enabled(tier):
        raise InvalidParameter(f"tier {tier.name!r} needs deployment tier {tier.min_deployment_tier}+, "
                               f"this gateway runs deployment tier {p.ctx.deployment_tier}", param="model")
    allow_paid = p.strategy != "local-only"
    first = p.tier_models(tier, allow_paid)
    if not first and p.excluded:
        raise BadRequest(f"no model of tier {tier.name!r} can take this request ({'; '.join(dict.fromkeys(p.notes))});"
                         " ask for 'auto' or a tier with a capable model", param=_FIELD[next(iter(p.excluded))],
                         error_type="capability_unavailable")
    if not first:
        p.unavailable_note(list(p.cat.models_in(tier.name)))
        raise ServiceUnavailable(f"no usable model in tier {tier.name!r}"
                                 + (f" ({'; '.join(p.notes)})" if p.notes else ""))
    tiers = [t for t in p.cat.tiers if p.enabled(t)]
    rest = [m for m in p.chain(tiers.index(tier), allow_paid and p.strategy != "cost-aware") if m not in first]
    p.code = "explicit_tier"
    p.local_decided = not _tier_paid(p, tier)
    return _decision(p, p.order(first) + rest, score, factors, f"tier {tier.name} requested explicitly")


def _by_complexity(p: _Planner, score: float, factors: dict) -> Decision:
    tiers = [t for t in p.cat.tiers if p.enabled(t)]
    if p.strategy == "cloud-first":
        paid = [m for t in tiers for m in p.tier_models(t) if m.paid]
        local = [m for t in reversed(tiers) for m in p.tier_models(t, allow_paid=False)]
        p.code = "cloud_first"
        blocked = _paid_blocked(p, paid[0] if paid else None)
        if blocked:
            paid = []
            p.notes.append(blocked)
            p.code = "paid_paused" if p.ctx.paid_block_reason else "budget"
        elif not paid:
            p.unavailable_note([m for m in p.cat.models if m.paid])
            p.code = "unavailable"
        return _decision(p, p.order(paid) + p.order(local), score, factors,
                         "cloud-first: quality first, local models only if the cloud fails")

    # The first enabled tier whose threshold lies above the score.
    wanted = next((i for i, t in enumerate(tiers) if score < t.max_score), len(tiers) - 1)
    if p.strategy == "cascade":
        return _cascade(p, tiers, wanted, score, factors)
    bound = f" < {tiers[wanted].max_score:.2f}" if tiers[wanted].max_score < 1.0 else ""
    reason = f"complexity {score:.2f}{bound} -> tier {tiers[wanted].name}"
    calibrated = _calibrated(p, tiers, score)
    if calibrated is not None:
        wanted, reason = calibrated
    allow_paid = p.strategy != "local-only"
    if allow_paid and _tier_paid(p, tiers[wanted]):
        blocked = _paid_blocked(p, next(iter(p.tier_models(tiers[wanted])), None))
        why = blocked or _conserve(p, score)
        if why:
            allow_paid = False
            p.notes.append(why)
            p.code = ("paid_paused" if p.ctx.paid_block_reason else "budget") if blocked else "budget_conserve"
    start = wanted
    p.local_decided = not _tier_paid(p, tiers[wanted])
    if not allow_paid and _tier_paid(p, tiers[wanted]):
        start = max((i for i, t in enumerate(tiers) if not _tier_paid(p, t)), default=0)
        if p.strategy == "local-only":
            p.notes.append("local-only: the cloud is never used")
            p.code = "local_only"
    models = _gpu_upgrade(p, p.chain(start, allow_paid), tiers[start])
    if p.strategy == "cost-aware":
        # Spend only where the score asked for it: a failed local call does not escalate to the cloud,
        # unless no local model can take the prompt at all (longer than every local context window).
        models = [m for m in models if not m.paid or m.tier == tiers[start].name] or models
    if not models or models[0].tier != tiers[wanted].name:
        p.unavailable_note(list(p.cat.models_in(tiers[wanted].name)))
        if p.code in ("complexity", "calibrated"):
            p.code = "capability" if p.excluded else "unavailable"
        if models:
            reason += f", answered by tier {models[0].tier}"
    return _decision(p, models, score, factors, reason)


def _calibrated(p: _Planner, tiers: list[TierSpec], score: float) -> tuple[int, str] | None:
    """routing.target_quality: the calibrated threshold, not the tiers' max_score, says local or cloud; below
    it the local tiers keep their own bands (the most capable local tier takes the rest)."""
    if not p.ctx.thresholds:
        return None
    cluster = cluster_of(p.req.prompt)
    threshold = p.ctx.thresholds.get(cluster, p.ctx.thresholds.get("*"))
    local = [i for i, t in enumerate(tiers) if not _tier_paid(p, t)]
    paid = [i for i, t in enumerate(tiers) if _tier_paid(p, t)]
    if threshold is None or not local or not paid:
        return None
    target = p.cat.routing.target_quality or 0.0
    if score >= threshold:
        p.code = "calibrated"
        return paid[0], (f"complexity {score:.2f} >= {threshold:.4f}, the {cluster} threshold calibrated to keep "
                         f"{target:.0%} of the cloud's quality -> tier {tiers[paid[0]].name}")
    wanted = next((i for i in local if score < tiers[i].max_score), local[-1])
    p.code = "calibrated"
    return wanted, (f"complexity {score:.2f} < {threshold:.4f}, the {cluster} threshold calibrated to keep "
                    f"{target:.0%} of the cloud's quality -> tier {tiers[wanted].name}")


def _cascade(p: _Planner, tiers: list[TierSpec], wanted: int, score: float, factors: dict) -> Decision:
    """Local first, always: the tier the score asks for, or the most capable local one when it asks for
    the cloud. Dispatch reviews the local answer (gateway/cascade.py) and calls the cloud model only when
    the answer fails the review or the local call fails."""
    local = [i for i, t in enumerate(tiers) if not _tier_paid(p, t)]
    start = max((i for i in local if i <= wanted), default=local[0] if local else 0)
    paid = [m for m in p.chain(start, True) if m.paid]
    blocked = _paid_blocked(p, paid[0] if paid else None)
    if blocked:
        p.notes.append(blocked)
    models = _gpu_upgrade(p, p.chain(start, not blocked), tiers[start])
    p.code = "cascade"
    p.local_decided = True
    return _decision(p, models, score, factors, f"cascade: tier {tiers[start].name} first, the cloud only if "
                     "its answer fails the review" + ("" if paid and not blocked else " (no cloud model usable)"))


def _gpu_upgrade(p: _Planner, models: list[ModelSpec], tier: TierSpec) -> list[ModelSpec]:
    """A GPU with enough free memory lets the tier's prompts try a larger local model first."""
    upgrade = p.cat.routing.gpu_upgrades.get(tier.name)
    free = p.ctx.gpu_free_mb
    if upgrade is None or free is None or free < upgrade[1]:
        return models
    big = p.cat.model(upgrade[0])
    if big is None or not p.usable(big) or (models and models[0] == big):
        return models
    p.notes.append(f"GPU has {free} MiB free: {big.name} first")
    return [big] + [m for m in models if m != big]


def _tier_paid(p: _Planner, tier: TierSpec) -> bool:
    models = p.cat.models_in(tier.name)
    return bool(models) and all(m.paid for m in models)


def _paid_blocked(p: _Planner, first_paid: ModelSpec | None) -> str | None:
    """Why a paid model cannot be used now: paid calls paused, or the budget left cannot cover the
    worst case of this request (the same bound the budget reservation uses)."""
    ctx = p.ctx
    if ctx.paid_block_reason:
        return ctx.paid_block_reason
    if first_paid is None or ctx.budget_remaining_usd is None:
        return None
    worst = first_paid.worst_cost(p.req.input_tokens_bound, p.out_tokens)
    if ctx.budget_remaining_usd < worst:
        return (f"budget: ${ctx.budget_remaining_usd:.4f} left this month < worst case ${worst:.4f} "
                f"for {first_paid.name}")
    return None


def _conserve(p: _Planner, score: float) -> str | None:
    """cost-aware only: with most of the budget spent, keep the cloud for the hardest prompts."""
    r, ctx = p.cat.routing, p.ctx
    if p.strategy != "cost-aware":
        return None
    used = ctx.budget_used_fraction
    if used is not None and used >= r.conserve_at and score < r.conserve_min_score:
        return (f"cost-aware: {ctx.budget_used_fraction:.0%} of budget used, cloud kept for "
                f"complexity >= {r.conserve_min_score:.2f}")
    return None


def _keep_local(p: _Planner, models: list[ModelSpec]) -> list[ModelSpec]:
    """PAID_FALLBACK=refuse (the default): a prompt given to a local tier never reaches a paid model because
    the local ones are down (circuit open, not pulled, failing): it is answered locally or refused (503
    local_unavailable), never quietly billed. Paid models stay where no local model could take the prompt
    at all (longer than every local context window: a decision, not a fallback), and for the cascade,
    after the local models: dispatch sends them a rejected answer's prompt, never a failed one's."""
    if p.ctx.paid_fallback != "refuse" or not p.local_decided or not any(m.paid for m in models):
        return models
    tiers = {t.name for t in p.cat.tiers if p.enabled(t)}
    capable = [m for m in p.cat.models if not m.paid and m.tier in tiers
               and m.backend in p.ctx.configured_backends and p.tokens < m.context_window and p.lacks(m) is None]
    if not capable:
        return models
    local = [m for m in models if not m.paid]
    if not local or all(m.backend in p.ctx.open_circuits for m in local):
        p.unavailable_note(capable)
        p.notes.append("local models unavailable and PAID_FALLBACK=refuse: no paid fallback")
        p.code = "local_unavailable"
    if p.strategy == "cascade":
        return local + [m for m in models if m.paid]
    return local


def _decision(p: _Planner, models: list[ModelSpec], score: float, factors: dict, reason: str) -> Decision:
    models = _keep_local(p, models)
    # 400 when no model this request could ever get (enabled, configured, allowed by its strategy) can take it
    if not models and p.excluded and not any(p.lacks(m) is None for m in p.cat.models if m.backend in p.ctx.
                                             configured_backends and p.enabled(p.cat.tier(m.tier))
                                             and not (m.paid and p.strategy == "local-only")):
        raise _no_capable_model(p)
    if not models:
        detail = "; ".join(dict.fromkeys(p.notes)) or "no model has a configured backend"
        if p.code == "local_unavailable":
            raise ServiceUnavailable(f"no local model can answer now: {detail}", error_type="local_unavailable",
                                     headers={"Retry-After": "30"})
        raise ServiceUnavailable(f"no usable model for strategy {p.strategy}: {detail}")
    first, rest = models[0], models[1:]
    if first.backend in p.ctx.open_circuits:
        p.notes.append(f"circuit open for {first.backend}")
    notes = tuple(dict.fromkeys(p.notes))
    full = reason + (f" ({'; '.join(notes)})" if notes else "")
    c = p.choice(first)
    return Decision(first.tier, first.name, first.backend, score, factors, full, c.estimated_cost,
                    tuple(p.choice(m) for m in rest), p.strategy, reason_code=p.code, exclusions=tuple(p.excluded),
                    router_version=p.ctx.router_version)
