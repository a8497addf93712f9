"""The learning router's pure parts: the threshold for a quality target, the refit, labels, the sampler, the judge."""

from __future__ import annotations

import itertools
import random

import pytest

from gateway.calibration import calibrate, judge, sampler
from gateway.calibration import threshold as th
from gateway.calibration.labels import Label, cluster_of, decode_features, feedback_label
from gateway.calibration.learn import refit
from gateway.catalog import CatalogError, load_catalog
from gateway.learned_router import LearnedRouter, features, quantile_knots
from tests.conftest import ROOT

SHIPPED = LearnedRouter.load(ROOT / "configs" / "router" / "learned.json")


def points(n, *, hard_share=0.3, seed=0, noise_free=True):
    """Prompts whose score says how hard they are: the hard ones (score > 0.7) the local model gets wrong."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        s = rnd.random()
        hard = s > 1 - hard_share
        out.append(th.Point(s, 0.0 if hard else 1.0, 1.0))
    return out


def test_the_threshold_keeps_the_target_at_the_lowest_cloud_share_a_bound_allows():
    est = th.choose(points(2000), 0.9)
    # losing every hard prompt costs 30 %: keeping 90 % means sending at least 2/3 of them (20 % of all)
    assert est is not None and est.met
    assert 0.2 <= est.cloud_share <= 0.3
    assert est.quality_interval[0] >= 0.9 and est.quality >= 0.9
    assert th.evaluate(points(2000), est.threshold)[0] >= 0.9
    # a stricter target costs more cloud; none below MIN_LABELS labels
    assert th.choose(points(2000), 0.97).cloud_share > est.cloud_share
    assert th.choose(points(th.MIN_LABELS - 1), 0.9) is None


def test_fewer_labels_mean_a_wider_bound_and_more_cloud():
    few, many = th.choose(points(60, seed=1), 0.9), th.choose(points(4000, seed=1), 0.9)
    assert few.quality_interval[1] - few.quality_interval[0] > many.quality_interval[1] - many.quality_interval[0]
    assert few.cloud_share >= many.cloud_share


def test_assumed_label_noise_makes_the_threshold_stricter():
    clean, noisy = th.choose(points(3000), 0.9), th.choose(points(3000), 0.9, noise=0.15)
    assert noisy.cloud_share > clean.cloud_share


def test_a_local_model_that_is_always_wrong_keeps_at_most_what_the_target_allows():
    bad = [th.Point(random.random(), 0.0, 1.0) for _ in range(100)]
    est = th.choose(bad, 0.95)
    assert est.cloud_share >= 0.95 and est.quality >= 0.95
    assert th.choose(bad, 0.999).cloud_share == 1.0


def test_weights_count_a_sample_for_the_requests_it_stands_for():
    # the hard prompts were sampled 10x as often as the easy ones: weighted back, the estimate is the
    # population's, not the sample's
    pts = [th.Point(0.9, 0.0, 1.0, 0.1) for _ in range(100)] + [th.Point(0.1, 1.0, 1.0, 1.0) for _ in range(100)]
    quality, _, share, _ = th.evaluate(pts, th.NEVER)  # everything local
    assert quality == pytest.approx(100 / 110)
    assert share == 0.0


def labelled(prompts_and_labels, weight=1.0):
    return [Label(features(p, SHIPPED.buckets), 0.2, 0.0 if hard else 1.0, 1.0, weight, "feedback", cluster_of(p))
            for p, hard in prompts_and_labels]


def test_a_refit_learns_what_the_traffic_says_and_keeps_the_prior_elsewhere():
    hard = [f"Prove that the {w} invariant holds for every reachable state of the protocol" for w in
            ("safety", "liveness", "ordering", "quorum", "lease", "epoch")]
    easy = [f"Say hello to {name} in French" for name in ("Ann", "Bob", "Cid", "Dee", "Eve", "Fay")]
    model = refit(SHIPPED, labelled([(p, True) for p in hard] + [(p, False) for p in easy]))
    new_hard = "Prove that the monotonic invariant holds for every reachable state of the protocol"
    new_easy = "Say hello to Gus in French"
    assert model.probability(new_hard) > SHIPPED.probability(new_hard)
    assert model.probability(new_easy) < SHIPPED.probability(new_easy)
    assert model.probability(new_hard) > model.probability(new_easy)
    assert model.version.startswith(SHIPPED.version + "+12-") and model.trained_on["labels"] == 12
    assert refit(SHIPPED, []) is SHIPPED
    # the refit model is a learned-router weights file like the shipped one
    assert LearnedRouter.from_json(model.to_json()).probability(new_hard) == pytest.approx(
        model.probability(new_hard), abs=1e-9)


def test_a_refit_on_ten_thousand_labels_is_deterministic():
    rnd = random.Random(3)
    words = [f"w{i}" for i in range(400)]
    rows = [(" ".join(rnd.choice(words) for _ in range(30)), rnd.random() < 0.3) for _ in range(10_000)]
    labels = labelled(rows)
    a, b = refit(SHIPPED, labels), refit(SHIPPED, labels)
    assert a.weights == b.weights and a.version == b.version


def test_knots_after_a_refit_never_tie_two_probabilities():
    knots = quantile_knots([0.1, 0.2, 0.2, 0.3, 0.9], [0.0, 0.0, 0.0, 0.0, 0.5], min_step=0.002)
    assert all(b[0] > a[0] and b[1] > a[1] for a, b in itertools.pairwise(knots))


def test_calibration_needs_out_of_fold_labels_and_reads_the_share_on_traffic():
    rnd = random.Random(5)
    rows = []
    for i in range(400):
        hard = rnd.random() < 0.3
        topic = "theorem proof lemma" if hard else "greeting hello weather"
        rows.append((f"{topic} item {i % 17}", hard))
    labels = labelled(rows)
    assert calibrate.run(SHIPPED, labels[:59], router="learned", target=0.95).thresholds == {}  # < 2 x 30
    traffic = labelled([(f"{'theorem proof lemma' if i % 3 == 0 else 'greeting hello weather'} item {i}", False)
                        for i in range(300)])
    cal = calibrate.run(SHIPPED, labels, router="learned", target=0.95, traffic=traffic)
    assert cal.estimate is not None and cal.estimate.met
    t = cal.thresholds["*"]
    score = calibrate.scorer("learned", cal.model)
    sent = [score(lb) >= t for lb in traffic]
    # the hard third of the traffic goes to the cloud, the easy rest stays local
    assert all(sent[i] for i in range(0, 300, 3))
    assert sum(sent) < 150
    # the heuristic router learns nothing, but its threshold is calibrated all the same
    heur = calibrate.run(None, labels, router="heuristic", target=0.95)
    assert heur.model is None and "*" in heur.thresholds


def test_drift_is_judged_on_the_labels_that_came_after_the_version_in_force():
    """Scored by the version in force at its own thresholds: labels it has not seen yet where it keeps local
    answers that were wrong mean drift; older labels, which it learned from, say nothing."""
    in_force = calibrate.Calibration(None, {"*": 0.5}, version="v1", time=100.0)

    def batch(t, local_good, n=60):
        return [Label({}, 0.1 + 0.8 * (i % 2), 1.0 if local_good or i % 2 else 0.0, 1.0, 1.0, "shadow", "general",
                      t + i) for i in range(n)]

    # below 0.5 the version keeps prompts local: those local answers now fail
    drift = calibrate.run(None, batch(0.0, True) + batch(200.0, False), router="heuristic", target=0.95,
                          in_force=in_force).drift
    assert drift["drifted"] and drift["labels"] == 60 and drift["quality"] == 0.5 and drift["cloud_share"] == 0.5
    steady = calibrate.run(None, batch(0.0, False) + batch(200.0, True), router="heuristic", target=0.95,
                           in_force=in_force).drift
    assert not steady["drifted"] and steady["labels"] == 60 and steady["quality"] == 1.0
    # a threshold of 0.0 sends everything to the cloud (it is not "no threshold")
    cloud_all = calibrate.Calibration(None, {"*": 0.0}, time=100.0)
    assert calibrate.run(None, batch(200.0, False), router="heuristic", target=0.95,
                         in_force=cloud_all).drift["cloud_share"] == 1.0
    assert calibrate.run(None, batch(0.0, False), router="heuristic", target=0.95, in_force=in_force).drift is None


def test_label_features_survive_storage_without_the_text():
    prompt = "Summarise the quarterly figures for ACME Corp, 2026 Q3"
    x = features(prompt, SHIPPED.buckets)
    stored = Label(x, 0.3, 1.0, 1.0).as_dict()
    assert decode_features(stored["x"]) == pytest.approx(x, abs=1e-6)
    assert "ACME" not in repr(stored) and "quarterly" not in repr(stored)


@pytest.mark.parametrize(("paid", "given", "expected"), [
    (False, {"label": "good"}, (1.0, 1.0)), (False, {"label": "bad"}, (0.0, 1.0)),
    (False, {"score": 0.8}, (1.0, 1.0)), (False, {"score": 0.2}, (0.0, 1.0)),
    (True, {"preferred": "local"}, (1.0, 1.0)), (True, {"preferred": "cloud"}, (0.0, 1.0)),
    (True, {"label": "bad"}, None),  # a bad cloud answer says nothing about whether local would have done
])
def test_feedback_becomes_a_routing_label_only_where_it_speaks_to_routing(paid, given, expected):
    assert feedback_label(paid, **given) == expected


def test_the_sampler_has_a_floor_and_favours_the_threshold():
    far, near = sampler.probability(0.05, 0.6, 0.1), sampler.probability(0.6, 0.6, 0.1)
    assert far == pytest.approx(0.05) and near == pytest.approx(0.25)
    assert sampler.probability(0.6, None, 0.1) == far
    assert sampler.probability(0.5, 0.6, 0.0) == 0.0 and sampler.probability(0.5, 0.6, 1.0) == 1.0


@pytest.mark.parametrize(("prompt", "local", "cloud", "expected"), [
    ("Tom has 3 apples and buys 4 more. How many?", "He has 7 apples.", "The answer is 7", (1.0, 1.0)),
    ("Tom has 3 apples and buys 4 more. How many?", "12", "So 3 + 4 = 7.", (0.0, 1.0)),
    ("Which is a mammal?\nA. trout\nB. whale\nC. shark\nD. eel", "The answer is B.", "B) whale", (1.0, 1.0)),
    ("Which is a mammal?\nA. trout\nB. whale\nC. shark\nD. eel", "Answer: C", "The answer is (B)", (0.0, 1.0)),
    ("Write a haiku about autumn", "Leaves fall...", "Crisp air...", None),  # nothing to compare: a judge
])
def test_answers_that_can_be_checked_are_compared_exactly(prompt, local, cloud, expected):
    assert judge.exact(prompt, local, cloud) == expected


def test_a_pairwise_verdict_counts_only_when_it_holds_in_both_orders():
    assert judge.combine("B", "A") == (0.0, 1.0)    # the cloud's answer won both ways
    assert judge.combine("A", "B") == (1.0, 1.0)    # the local one won both ways
    assert judge.combine("B", "B") == (1.0, 1.0)    # "whatever came second": order-dependent, a tie
    assert judge.combine("TIE", "A") == (1.0, 1.0)
    assert judge.consistent("B", "A") and judge.consistent("TIE", "TIE") and not judge.consistent("B", "B")
    assert judge.verdict("B.") == "B" and judge.verdict("I think TIE") == "TIE" and judge.verdict("??") == "TIE"


def test_target_quality_is_checked_where_the_catalog_is_read(tmp_path):
    text = (ROOT / "configs" / "models.yaml").read_text()
    assert load_catalog(ROOT / "configs" / "models.yaml").routing.target_quality is None
    for bad in ("1.5", "0", "yes"):
        path = tmp_path / "m.yaml"
        path.write_text(text.replace("  target_quality: null", f"  target_quality: {bad}"))
        with pytest.raises(CatalogError, match="target_quality"):
            load_catalog(path)
    path.write_text(text.replace("  target_quality: null", "  target_quality: 0.95"))
    assert load_catalog(path).routing.target_quality == 0.95
