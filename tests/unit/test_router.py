"""The smart router: complexity factors, the routing table, strategies, explicit choices. Pure code."""

from __future__ import annotations

import dataclasses
import random
import string

import pytest

from gateway.catalog import load_catalog
from gateway.chat import ChatRequest, Message
from gateway.config import resolve_path
from gateway.errors import InvalidParameter, ServiceUnavailable, UnknownModel
from gateway.smart_router import RoutingContext, decide, estimate_complexity

CATALOG = load_catalog(resolve_path("configs/models.yaml"))
ALL = frozenset({"ollama", "anthropic"})


def ctx(backends=ALL, tier=2, **kw) -> RoutingContext:
    return RoutingContext(CATALOG, frozenset(backends), deployment_tier=tier, **kw)


def req(prompt: str, **kw) -> ChatRequest:
    return ChatRequest(messages=(Message("user", prompt),), **kw)


SIMPLE = [
    "What is Python?",
    "What is the capital of France?",
    "Hi!",
    "Translate 'good morning' into French.",
    "Who was Ada Lovelace?",
    "Why is the sky blue?",
]
MEDIUM = [
    "Write a Python function to implement a binary search tree with insertion, deletion, and balancing.",
    "Fix this code:\n```python\ndef add(a, b):\n    return a - b\n```",
    "1. Read the CSV file\n2. Remove duplicate rows\n3. Compute the average per region\n4. Plot the result",
]
COMPLEX = [
    "Design a distributed system for real-time chat that scales to millions of users, with fault tolerance "
    "and message ordering.",
    "Compare PostgreSQL and MongoDB for an e-commerce backend: analyze consistency, scalability and cost "
    "trade-offs, then recommend one.",
    "Write a detailed, step by step migration plan to move a monolith to microservices, with a rollback strategy.",
    "Design the architecture of a payment service. Explain the trade-offs between consistency and availability,\n"
    "```python\nclass Ledger:\n    def post(self, entry):\n        ...\n```\nthen implement idempotent retries.",
]


@pytest.mark.parametrize("prompt", SIMPLE)
def test_simple_prompts_go_to_the_small_local_model(prompt):
    d = decide(req(prompt), ctx())
    assert (d.model, d.backend, d.tier) == ("tinyllama", "ollama", "local-small")
    assert d.score < 0.3
    assert d.estimated_cost == 0.0


@pytest.mark.parametrize("prompt", MEDIUM)
def test_medium_prompts_go_to_phi(prompt):
    d = decide(req(prompt), ctx())
    assert (d.model, d.tier) == ("phi", "local-medium")
    assert 0.3 <= d.score < 0.6


@pytest.mark.parametrize("prompt", COMPLEX)
def test_complex_prompts_go_to_claude(prompt):
    d = decide(req(prompt), ctx())
    assert (d.model, d.backend, d.tier) == ("claude-sonnet", "anthropic", "cloud")
    assert d.score >= 0.6
    assert d.estimated_cost > 0


def test_decision_names_factors_reason_and_alternatives():
    d = decide(req(COMPLEX[0]), ctx())
    assert set(d.factors) == {"length", "reasoning", "code", "question", "steps"}
    assert all(0.0 <= v <= 1.0 for v in d.factors.values())
    assert "complexity 0.6" in d.reason and "cloud" in d.reason
    assert [c.model for c in d.alternatives] == ["claude-haiku", "phi", "tinyllama"]


@pytest.mark.parametrize(
    ("text", "has_code"),
    [
        ("```js\nconsole.log(1)\n```", True),
        ("def area(r):\n    return 3.14 * r * r", True),
        ("for (int i = 0; i < n; i++) {\n  sum += a[i];\n}", True),
        ("SELECT name FROM users WHERE id = 1;", True),
        ("What does [this] mean?", False),                     # a lone bracket is not code
        ("I (really) like tea.", False),
        ("Tell me a story about a cat.", False),
    ],
)
def test_code_factor_detects_code_not_lone_brackets(text, has_code):
    _, factors = estimate_complexity(text, CATALOG.routing)
    assert (factors["code"] > 0) is has_code


def test_factors_each_respond_to_their_signal():
    r = CATALOG.routing
    assert estimate_complexity("word " * 500, r)[1]["length"] == 1.0
    assert estimate_complexity("Analyze the trade-offs of this distributed design", r)[1]["reasoning"] == 1.0
    assert estimate_complexity("Write a poem", r)[1]["question"] == r.question.scores["task"]
    assert estimate_complexity("What is a cat?", r)[1]["question"] == r.question.scores["simple"]
    steps = "First, boil water. Then add pasta. Next, stir it. Finally, drain it."
    assert estimate_complexity(steps, r)[1]["steps"] == 1.0


def test_weights_and_thresholds_come_from_configuration():
    prompt = "Explain how a hash map works."
    assert decide(req(prompt), ctx()).model == "tinyllama"
    heavy = dataclasses.replace(CATALOG.routing, weights={**CATALOG.routing.weights, "question": 1.0})
    catalog = dataclasses.replace(CATALOG, routing=heavy)
    d = decide(req(prompt), RoutingContext(catalog, ALL))
    assert d.score == 0.6 and d.model == "claude-sonnet"
    low = dataclasses.replace(CATALOG, tiers=tuple(
        dataclasses.replace(t, max_score=0.05) if t.name == "local-small" else t for t in CATALOG.tiers))
    assert decide(req(prompt), RoutingContext(low, ALL)).model == "phi"


def test_same_prompt_same_decision():
    prompt = COMPLEX[3]
    first = decide(req(prompt), ctx())
    for _ in range(5):
        assert decide(req(prompt), ctx()) == first


def test_without_anthropic_key_the_cloud_is_never_picked_and_the_reason_says_so():
    d = decide(req(COMPLEX[0]), ctx(backends={"ollama"}))
    assert d.backend == "ollama" and d.model == "phi"
    assert "no ANTHROPIC_API_KEY" in d.reason
    assert all(c.backend == "ollama" for c in d.alternatives)


def test_local_only_never_uses_the_cloud():
    d = decide(req(COMPLEX[0], strategy="local-only"), ctx())
    assert d.model == "phi"
    assert all(c.backend == "ollama" for c in d.plan)
    assert "local-only" in d.reason


def test_local_only_with_a_cloud_model_named_is_rejected():
    with pytest.raises(InvalidParameter):
        decide(req("hi", model="claude-sonnet", strategy="local-only"), ctx())


def test_cloud_first_puts_the_cloud_first_and_local_after():
    d = decide(req("What is Python?", strategy="cloud-first"), ctx())
    assert d.model == "claude-sonnet"
    assert [c.backend for c in d.plan] == ["anthropic", "anthropic", "ollama", "ollama"]


def test_cloud_first_without_key_falls_to_local_with_reason():
    d = decide(req("What is Python?", strategy="cloud-first"), ctx(backends={"ollama"}))
    assert d.backend == "ollama" and "no ANTHROPIC_API_KEY" in d.reason


def test_auto_falls_back_upward_to_local_models_only_by_default():
    d = decide(req("What is Python?"), ctx())
    assert [c.model for c in d.plan] == ["tinyllama", "phi"]  # PAID_FALLBACK=refuse


def test_auto_falls_back_upward_then_to_cloud_when_paid_fallback_is_allowed():
    d = decide(req("What is Python?"), ctx(paid_fallback="cloud"))
    assert [c.model for c in d.plan] == ["tinyllama", "phi", "claude-sonnet", "claude-haiku"]


def test_a_prompt_no_local_model_can_hold_still_goes_to_the_cloud():
    # longer than every local context window at tier 2: a decision for the cloud, not a fallback
    d = decide(req("word " * 3000), ctx())
    assert d.backend == "anthropic" and "exceed" in d.reason


def test_cost_aware_keeps_medium_cloud_prompts_local_when_budget_runs_low():
    prompt = COMPLEX[0]
    assert decide(req(prompt, strategy="cost-aware"), ctx()).model == "claude-sonnet"
    d = decide(req(prompt, strategy="cost-aware"), ctx(budget_used_fraction=0.9))
    assert d.backend == "ollama" and "budget" in d.reason
    assert all(c.backend == "ollama" for c in d.plan)
    d = decide(req(prompt, strategy="cost-aware"), ctx(budget_remaining_usd=0.0001))
    assert d.backend == "ollama" and "left this month" in d.reason


@pytest.mark.parametrize("strategy", ["auto", "cloud-first", "cost-aware"])
def test_a_budget_that_cannot_cover_the_worst_case_routes_local(strategy):
    d = decide(req(COMPLEX[0], strategy=strategy), ctx(budget_remaining_usd=0.001))
    assert d.backend == "ollama" and "worst case" in d.reason
    assert all(c.backend == "ollama" for c in d.plan)
    assert decide(req(COMPLEX[0], strategy=strategy), ctx(budget_remaining_usd=1.0)).backend == "anthropic"


def test_paused_paid_calls_route_local_with_the_reason():
    why = "redis down: paid calls paused (REDIS_FAILURE_POLICY=local-only)"
    for strategy in ("auto", "cloud-first"):
        d = decide(req(COMPLEX[0], strategy=strategy), ctx(paid_block_reason=why))
        assert d.backend == "ollama" and why in d.reason


def test_cost_aware_does_not_escalate_local_failures_to_the_cloud():
    d = decide(req("What is Python?", strategy="cost-aware"), ctx())
    assert all(c.backend == "ollama" for c in d.plan)


def test_cost_aware_uses_the_cloud_when_no_local_model_can_hold_the_prompt():
    d = decide(req("word " * 3000, strategy="cost-aware"), ctx())  # ~3,750 tokens > 2,048 local windows
    assert d.backend == "anthropic"


def test_default_strategy_comes_from_context():
    d = decide(req(COMPLEX[0]), ctx(default_strategy="local-only"))
    assert d.strategy == "local-only" and d.backend == "ollama"


def test_explicit_model_is_used_without_fallbacks():
    d = decide(req("What is Python?", model="claude-haiku"), ctx())
    assert (d.model, d.backend, d.alternatives, d.explicit) == ("claude-haiku", "anthropic", (), True)
    assert "explicitly" in d.reason


def test_explicit_cloud_model_without_key_is_unavailable():
    with pytest.raises(ServiceUnavailable, match="ANTHROPIC_API_KEY"):
        decide(req("hi", model="claude-sonnet"), ctx(backends={"ollama"}))


def test_explicit_tier_uses_its_models_first():
    d = decide(req(COMPLEX[0], model="local-small"), ctx())
    assert d.model == "tinyllama" and d.tier == "local-small"
    assert d.alternatives[0].model == "phi"


def test_unknown_model_or_tier():
    with pytest.raises(UnknownModel):
        decide(req("hi", model="gpt-17"), ctx())


def test_mistral_tier_is_enabled_from_deployment_tier_3():
    prompt = "Design a scalable distributed cache."
    score, _ = estimate_complexity(prompt, CATALOG.routing)
    assert 0.6 <= score < 0.75
    assert decide(req(prompt), ctx(tier=2)).model == "claude-sonnet"
    assert decide(req(prompt), ctx(tier=3)).model == "mistral"
    with pytest.raises(InvalidParameter, match="deployment tier"):
        decide(req("hi", model="local-large"), ctx(tier=2))


def test_deployment_tier_1_has_no_phi():
    d = decide(req(MEDIUM[0]), ctx(tier=1))
    assert d.model == "claude-sonnet"
    assert "phi" not in [c.model for c in d.plan]


def test_open_circuit_moves_backend_to_the_end_when_paid_fallback_is_allowed():
    d = decide(req("What is Python?"), ctx(open_circuits=frozenset({"ollama"}), paid_fallback="cloud"))
    assert d.backend == "anthropic"
    assert [c.backend for c in d.plan][-2:] == ["ollama", "ollama"]


def test_open_local_circuit_never_upgrades_a_simple_prompt_to_a_paid_model():
    d = decide(req("What is Python?"), ctx(open_circuits=frozenset({"ollama"})))
    assert [c.backend for c in d.plan] == ["ollama", "ollama"]
    assert d.reason_code == "local_unavailable" and "PAID_FALLBACK=refuse" in d.reason
    # the cascade keeps the cloud for reviewing local answers, behind the local models
    d = decide(req("What is Python?", strategy="cascade"), ctx(open_circuits=frozenset({"ollama"})))
    assert [c.backend for c in d.plan] == ["ollama", "ollama", "anthropic", "anthropic"]


def test_every_local_model_missing_is_a_clear_503_not_a_paid_answer():
    with pytest.raises(ServiceUnavailable) as exc:
        decide(req("What is Python?"), ctx(missing_models=frozenset({"tinyllama", "phi", "mistral"})))
    assert exc.value.type == "local_unavailable" and "not installed" in exc.value.message


def test_missing_model_is_skipped():
    d = decide(req("What is Python?"), ctx(missing_models=frozenset({"tinyllama"})))
    assert d.model == "phi" and "not installed" in d.reason


def test_prompt_larger_than_a_context_window_skips_that_model():
    d = decide(req("word " * 3000), ctx(backends={"ollama"}, tier=3))
    assert d.model == "mistral"  # tinyllama/phi have 2048-token windows
    assert "exceed" in d.reason


def test_nothing_usable_is_service_unavailable():
    with pytest.raises(ServiceUnavailable):
        decide(req("hi"), ctx(backends=set()))


@pytest.mark.parametrize("seed", range(20))
def test_any_text_gets_a_bounded_decision(seed):
    rnd = random.Random(seed)
    alphabet = string.printable + "\x00\x1b\u202e\ud7ff\U0001f600é中文"
    text = "".join(rnd.choice(alphabet) for _ in range(rnd.choice([0, 1, 50, 5000, 70000])))
    score, factors = estimate_complexity(text, CATALOG.routing)
    assert 0.0 <= score <= 1.0 and all(0.0 <= v <= 1.0 for v in factors.values())
    d = decide(req(text), ctx())
    assert d.model in {m.name for m in CATALOG.models}


# --------------------------------------------------------------------------- properties (Hypothesis)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TEXT = st.one_of(
    st.text(),                                                     # any Unicode, including empty
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=500),  # control characters
    st.binary(max_size=2000).map(lambda b: b.decode("latin-1")),   # binary-looking input
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=20), st.integers(1, 8000)),  # huge
)


@given(TEXT, st.sampled_from(["auto", "local-only", "cloud-first", "cost-aware"]))
@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])  # bounded: < 1 s each
def test_any_prompt_gets_a_valid_decision(text, strategy):
    try:
        d = decide(req(text, strategy=strategy), ctx())
    except ServiceUnavailable as exc:
        # Only one honest refusal: a prompt longer than every local context window, under local-only.
        assert strategy == "local-only" and "exceed" in exc.message
        enabled = {t.name for t in CATALOG.tiers if t.min_deployment_tier <= 2}
        local = [m for m in CATALOG.models if not m.paid and m.tier in enabled]
        assert req(text).input_tokens_estimate >= max(m.context_window for m in local)
        return
    assert 0.0 <= d.score <= 1.0 and all(0.0 <= v <= 1.0 for v in d.factors.values())
    assert d.model in {m.name for m in CATALOG.models} and d.reason
    assert d == decide(req(text, strategy=strategy), ctx())  # deterministic
    if strategy == "local-only":
        assert all(c.backend == "ollama" for c in d.plan)


def test_a_model_of_a_tier_the_deployment_does_not_run_is_refused_like_its_tier():
    """At deployment tier 2 local-large (Mistral) is neither run nor pulled: asking for the tier or for its model
    by name gets the same 422, naming the parameter."""
    cat = CATALOG
    ctx = RoutingContext(cat, {"ollama", "anthropic"}, deployment_tier=2)
    for target in ("local-large", "mistral"):
        with pytest.raises(InvalidParameter) as err:
            decide(ChatRequest(messages=(Message("user", "hi"),), model=target), ctx)
        assert "needs deployment tier 3+" in err.value.message and err.value.extra["param"] == "model"
    three = RoutingContext(cat, {"ollama", "anthropic"}, deployment_tier=3)
    assert decide(ChatRequest(messages=(Message("user", "hi"),), model="mistral"), three).model == "mistral"
