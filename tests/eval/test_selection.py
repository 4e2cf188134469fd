"""Choosing on a few defects (cai.eval.selection) against a brute-force sklearn reference."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cai.eval.selection import few_defect_choice


def _histograms(rng, n_images, n_bins, defective, strength):
    """One seed's (pos, neg) counts: defective images hold positives, shifted up by ``strength`` bins."""
    pos = np.zeros((n_images, n_bins), np.int64)
    neg = np.zeros((n_images, n_bins), np.int64)
    for i in range(n_images):
        neg[i] = rng.multinomial(40, np.full(n_bins, 1 / n_bins))
        if defective[i]:
            shift = np.clip(rng.integers(0, n_bins, 6) + strength[i], 0, n_bins - 1)
            pos[i] = np.bincount(shift, minlength=n_bins)
    return pos, neg


def _sklearn_ap(pos, neg, images):
    """Pooled AP of the chosen images, pixels expanded from the histograms (bin index = score)."""
    scores, labels = [], []
    for i in images:
        for b in range(pos.shape[1]):
            scores += [b] * int(pos[i, b] + neg[i, b])
            labels += [1] * int(pos[i, b]) + [0] * int(neg[i, b])
    return average_precision_score(labels, scores)


def test_choice_and_held_out_scores_match_brute_force():
    rng = np.random.default_rng(3)
    n, bins = 9, 7
    defective = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1], bool)
    runs = {name: [_histograms(rng, n, bins, defective, rng.integers(-2, 4, n)) for _ in range(2)]
            for name in ("mix", "paste", "normal")}
    draws = few_defect_choice(runs, 2, "mix", n_draws=25, seed=1)
    assert draws.validation.shape == (25, n) and (draws.validation.sum(1) == 2).all()
    assert not draws.validation[:, ~defective].any()  # only defective units are drawn
    names = list(runs)
    for r in range(25):
        val = np.flatnonzero(draws.validation[r])
        held = np.flatnonzero(~draws.validation[r])
        val_ap = [np.mean([_sklearn_ap(p, q, val) for p, q in runs[c]]) for c in names]
        held_ap = [np.mean([_sklearn_ap(p, q, held) for p, q in runs[c]]) for c in names]
        np.testing.assert_allclose(draws.held_out_ap[r], held_ap, atol=1e-12)
        assert draws.chosen[r] == int(np.argmax(val_ap))  # first of ties, as np.argmax
        assert draws.best[r] == int(np.argmax(held_ap))
        assert draws.gain[r] == pytest.approx(held_ap[draws.chosen[r]] - held_ap[0])
    s = draws.summary(loss=0.05)
    assert s["picked_best"] == pytest.approx(np.mean(draws.chosen == draws.best))
    assert sum(s["chosen"].values()) == pytest.approx(1.0) and s["units"] == 7
    assert s["gain_p05"] <= s["gain_mean"] <= s["gain_p95"]


def test_a_margin_keeps_the_default_unless_beaten_by_more_than_it():
    rng = np.random.default_rng(5)
    n, bins = 9, 7
    defective = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1], bool)
    runs = {name: [_histograms(rng, n, bins, defective, rng.integers(-2, 4, n)) for _ in range(2)]
            for name in ("paste", "mix", "normal")}  # the default is not first: ties are not what keeps it
    plain = few_defect_choice(runs, 2, "mix", n_draws=40, seed=2)
    for margin in (0.02, 0.1):
        kept = few_defect_choice(runs, 2, "mix", n_draws=40, seed=2, margin=margin)
        np.testing.assert_array_equal(kept.validation, plain.validation)  # the same draws
        np.testing.assert_array_equal(kept.held_out_ap, plain.held_out_ap)
        names = list(runs)
        for r in range(40):
            val = np.flatnonzero(kept.validation[r])
            val_ap = [np.mean([_sklearn_ap(p, q, val) for p, q in runs[c]]) for c in names]
            best = int(np.argmax(val_ap))
            expected = best if val_ap[best] - val_ap[1] > margin else 1
            assert kept.chosen[r] == expected
        assert (kept.chosen == 1).sum() > (plain.chosen == 1).sum()  # 7 of 40 without a margin
    assert (few_defect_choice(runs, 2, "mix", n_draws=40, seed=2, margin=1.0).chosen == 1).all()
    with pytest.raises(ValueError, match="margin"):
        few_defect_choice(runs, 2, "mix", margin=-0.1)


def test_a_candidate_better_everywhere_is_always_chosen_and_gains():
    rng = np.random.default_rng(0)
    defective = np.array([1, 1, 1, 1, 0], bool)
    strong = [_histograms(rng, 5, 8, defective, np.full(5, 6))]
    weak = [_histograms(rng, 5, 8, defective, np.full(5, -6))]
    draws = few_defect_choice({"default": weak, "better": strong}, 1, "default", n_draws=40)
    assert (draws.chosen == 1).all() and (draws.best == 1).all() and (draws.gain > 0).all()
    assert draws.summary()["loss_share"] == 0.0


def test_clusters_are_drawn_and_held_out_whole():
    rng = np.random.default_rng(1)
    defective = np.array([1, 0, 1, 1, 0, 0, 1], bool)
    clusters = ["a", "a", "b", "b", "c", "d", "d"]  # c holds no defect: never drawn
    runs = {"x": [_histograms(rng, 7, 6, defective, np.zeros(7, int))],
            "y": [_histograms(rng, 7, 6, defective, np.ones(7, int))]}
    draws = few_defect_choice(runs, 1, "x", n_draws=60, clusters=clusters)
    assert draws.units == 3
    v = draws.validation
    assert (v[:, 0] == v[:, 1]).all() and (v[:, 2] == v[:, 3]).all() and (v[:, 5] == v[:, 6]).all()
    assert not v[:, 4].any() and (v.sum(1) == 2).all()
    assert {tuple(np.flatnonzero(row)) for row in v} == {(0, 1), (2, 3), (5, 6)}


def test_bad_input_is_refused():
    rng = np.random.default_rng(2)
    defective = np.array([1, 1, 0], bool)
    one = [_histograms(rng, 3, 5, defective, np.zeros(3, int))]
    with pytest.raises(ValueError, match="default"):
        few_defect_choice({"a": one}, 1, "b")
    with pytest.raises(ValueError, match="k must be"):
        few_defect_choice({"a": one}, 2, "a")
    with pytest.raises(ValueError, match="same .*number of seeds"):
        few_defect_choice({"a": one, "b": one + one}, 1, "a")
    with pytest.raises(ValueError, match="different test sets"):
        few_defect_choice({"a": one, "b": [_histograms(rng, 4, 5, np.ones(4, bool), np.zeros(4, int))]}, 1, "a")
