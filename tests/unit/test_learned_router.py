"""The learned router: features, training, calibration, the weights file, and its place in decide()."""

import itertools
import json

import pytest

from gateway.catalog import load_catalog
from gateway.chat import ChatRequest, Message
from gateway.config import PROJECT_ROOT, ConfigError, Settings
from gateway.learned_router import DENSE, FORMAT, LearnedRouter, features, quantile_knots, train
from gateway.smart_router import RoutingContext, decide, estimate_complexity, score_prompt

ROUTING = load_catalog(PROJECT_ROOT / "configs" / "models.yaml").routing
SHIPPED = PROJECT_ROOT / "configs" / "router" / "learned.json"


def test_features_are_deterministic_fold_numbers_and_bound_long_prompts():
    a, b = features("Tom has 3 apples and buys 12 more.", 1024), features("Tom has 7 apples and buys 40 more.", 1024)
    assert a == features("Tom has 3 apples and buys 12 more.", 1024)
    sparse = {k: v for k, v in a.items() if k < 1024}
    assert sparse == {k: v for k, v in b.items() if k < 1024}  # any number is the same token
    assert all(1024 <= k < 1024 + len(DENSE) for k in set(a) - set(sparse))
    # A 1 MB prompt is read through the same 4 KB window: the sparse part stays small.
    huge = features("word " * 200_000 + "final question?", 1024)
    assert len(huge) <= 1024 + len(DENSE)


def _groups():
    # Two sources with very different base rates. Within each, "hard" prompts are the ones the cloud wins.
    a = [(f"alpha task {i} hard proof", 1) for i in range(20)] + [(f"alpha task {i} easy lookup", 0) for i in range(80)]
    b = [(f"beta task {i} hard proof", 1) for i in range(80)] + [(f"beta task {i} easy lookup", 0) for i in range(20)]
    return [a, b]


def test_training_learns_what_is_hard_within_a_source_not_which_source_is_harder():
    weights, bias = train(_groups(), buckets=1024, epochs=6)
    model = LearnedRouter(1024, weights, bias)
    assert model.probability("alpha task 7 hard proof") > 0.5 > model.probability("alpha task 7 easy lookup")
    # Source "beta" has 4x the cloud wins of "alpha", but an easy beta prompt still ranks below a hard alpha one.
    assert model.probability("beta task 3 easy lookup") < model.probability("alpha task 3 hard proof")
    assert train(_groups(), buckets=1024, epochs=6) == (weights, bias)  # same data and seed, same model


def test_calibration_maps_probabilities_onto_the_heuristic_scale():
    probs = [i / 100 for i in range(1, 100)]
    scores = [min(1.0, i / 50) for i in range(1, 100)]
    knots = quantile_knots(probs, scores)
    assert knots[0] == (0.0, 0.0) and knots[-1] == (1.0, 1.0)
    assert all(b[0] > a[0] and b[1] >= a[1] for a, b in itertools.pairwise(knots))
    model = LearnedRouter(1024, {}, 0.0, knots)  # probability 0.5 for every prompt
    assert model.score("anything") == pytest.approx(1.0)  # the median probability -> the median score (1.0 here)


def test_weights_file_round_trip_and_clear_errors(tmp_path):
    weights, bias = train(_groups(), buckets=1024, epochs=2)
    model = LearnedRouter(1024, {k: round(v, 4) for k, v in weights.items()}, round(bias, 6),
                          ((0.0, 0.0), (0.5, 0.3), (1.0, 1.0)), 0.25, "1-test", {"groups": {"toy": {}}})
    path = tmp_path / "w.json"
    path.write_text(model.to_json())
    loaded = LearnedRouter.load(path)
    assert (loaded.version, loaded.hybrid_weight, loaded.trained_on) == ("1-test", 0.25, {"groups": {"toy": {}}})
    for prompt in ("alpha task hard proof", "beta easy lookup", ""):
        assert loaded.score(prompt) == model.score(prompt)
    good = json.loads(path.read_text())
    for broken, needle in (({**good, "format": "other/1"}, FORMAT), ({**good, "buckets": 1000}, "power of two"),
                           ({**good, "features": 1}, "retrain"),
                           ({**good, "calibration": [[0.5, 0.1], [0.2, 0.3]]}, "increasing"),
                           ({k: v for k, v in good.items() if k != "weights"}, "weights")):
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=needle) as exc:
            LearnedRouter.load(path)
        assert str(path) in str(exc.value)
    with pytest.raises(ValueError, match="not a learned-router weights file"):
        LearnedRouter.load(tmp_path / "missing.json")


def test_shipped_weights_load_and_say_what_they_were_trained_on():
    model = LearnedRouter.load(SHIPPED)
    assert model.version.startswith("1-") and set(model.trained_on["groups"]) == {"mt_bench", "mmlu", "gsm8k"}
    assert SHIPPED.stat().st_size < 400_000
    for prompt in ("hi", "Prove that there are infinitely many primes.", "x" * 40_000):
        assert 0.0 <= model.score(prompt) <= 1.0


def test_score_prompt_per_router():
    model = LearnedRouter.load(SHIPPED)
    prompt = "Design a fault-tolerant job queue and compare it with Kafka."
    h, h_factors = estimate_complexity(prompt, ROUTING)
    assert score_prompt(prompt, ROUTING) == (h, h_factors)
    assert score_prompt(prompt, ROUTING, "learned", None) == (h, h_factors)  # no weights: the heuristic
    learned, factors = score_prompt(prompt, ROUTING, "learned", model)
    assert factors == {"learned": model.score(prompt)} and learned == model.score(prompt)
    hybrid, factors = score_prompt(prompt, ROUTING, "hybrid", model)
    assert factors == {**h_factors, "heuristic": h, "learned": learned}
    assert hybrid == pytest.approx(model.hybrid_weight * learned + (1 - model.hybrid_weight) * h, abs=1e-4)


def test_decide_uses_the_configured_router():
    catalog = load_catalog(PROJECT_ROOT / "configs" / "models.yaml")
    knots_all_cloud = ((0.0, 1.0), (1.0, 1.0))  # a learned model that scores every prompt 1.0
    always_cloud = LearnedRouter(1024, {}, 0.0, knots_all_cloud)
    request = ChatRequest(messages=(Message("user", "What is 2+2?"),))
    backends = frozenset({"ollama", "anthropic"})
    assert decide(request, RoutingContext(catalog, backends)).tier != "cloud"
    d = decide(request, RoutingContext(catalog, backends, router="learned", learned=always_cloud))
    assert (d.tier, d.score, d.factors) == ("cloud", 1.0, {"learned": 1.0})


def test_settings_load_the_weights_only_when_the_router_needs_them(tmp_path):
    assert Settings.from_env({}).learned is None and Settings.from_env({}).router == "heuristic"
    s = Settings.from_env({"ROUTER": "hybrid"})
    assert s.router == "hybrid" and s.learned is not None and s.learned.version.startswith("1-")
    with pytest.raises(ConfigError, match="ROUTER must be one of heuristic, learned, hybrid"):
        Settings.from_env({"ROUTER": "bert"})
    with pytest.raises(ConfigError, match="ROUTER=learned needs ROUTER_WEIGHTS") as exc:
        Settings.from_env({"ROUTER": "learned", "ROUTER_WEIGHTS": str(tmp_path / "none.json")})
    assert "none.json" in str(exc.value)
