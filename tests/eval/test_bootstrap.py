"""Paired bootstrap of pixel-AP differences: histogram AP against sklearn, interval behaviour."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cai.eval.bootstrap import ap_from_histograms, paired_bootstrap, score_histograms, stratified_paired_bootstrap


def _maps(rng, n=12, shape=(24, 32), strength=1.0):
    maps, masks = [], []
    for i in range(n):
        mask = np.zeros(shape, bool)
        if i % 3:
            r, c = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 6)
            mask[r:r + 6, c:c + 6] = True
        maps.append(rng.normal(size=shape) + strength * mask)
        masks.append(mask)
    return maps, masks


def test_histogram_ap_is_exact_when_scores_fit_the_bins():
    rng = np.random.default_rng(0)
    maps, masks = _maps(rng)
    maps = [np.round(m, 1) for m in maps]  # ~100 distinct values < the bins: no tie inside a bin
    pos, neg = score_histograms(maps, masks)
    expected = average_precision_score(np.concatenate([m.ravel() for m in masks]),
                                       np.concatenate([m.ravel() for m in maps]))
    assert ap_from_histograms(pos.sum(0), neg.sum(0)) == pytest.approx(expected, abs=1e-12)


def test_histogram_ap_close_to_sklearn_on_continuous_scores_and_subsets():
    rng = np.random.default_rng(1)
    maps, masks = _maps(rng, n=20, shape=(64, 64), strength=2.5)
    pos, neg = score_histograms(maps, masks)
    for idx in ([0, 1, 2, 4, 5], list(range(20)), [1, 1, 2, 7, 7, 7]):  # a resample repeats images
        y = np.concatenate([masks[i].ravel() for i in idx])
        s = np.concatenate([maps[i].ravel() for i in idx])
        w = np.bincount(idx, minlength=20).astype(float)
        assert ap_from_histograms(w @ pos, w @ neg) == pytest.approx(average_precision_score(y, s), abs=1e-3)


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(2)
    base = _maps(rng, n=30, strength=1.0)
    better = ([m + 2.0 * y for m, y in zip(*base)], base[1])
    runs_a = [score_histograms(*better)] * 2
    runs_b = [score_histograms(*base)] * 2
    res = paired_bootstrap(runs_a, runs_b, n_boot=500)
    assert res["shown"] and res["low"] > 0 and res["diff"] > 0.2
    same = paired_bootstrap(runs_b, runs_b, n_boot=200)
    assert same["diff"] == 0 and not same["shown"]
    noisy = ([m + rng.normal(scale=0.05, size=m.shape) for m in base[0]], base[1])
    res = paired_bootstrap([score_histograms(*noisy)], [score_histograms(*base)], n_boot=500)
    assert res["low"] <= 0 <= res["high"] and not res["shown"]


def test_stratified_bootstrap_averages_the_strata_and_resamples_within_each():
    rng = np.random.default_rng(4)
    base = _maps(rng, n=20, strength=1.0)
    better = ([m + 2.0 * y for m, y in zip(*base)], base[1])
    a, b = [score_histograms(*better)], [score_histograms(*base)]
    other = _maps(rng, n=7, strength=0.5)  # a second stratum, other images and other bins
    c = [score_histograms(*other)]
    one = paired_bootstrap(a, b, n_boot=300)
    assert stratified_paired_bootstrap([(a, b)], n_boot=300) == one
    two = stratified_paired_bootstrap([(a, b), (c, c)], n_boot=300)
    assert two["diff"] == pytest.approx(one["diff"] / 2) and two["n_images"] == 27
    assert 0 < two["low"] < two["diff"] < two["high"]
    # brute force: the same resamples drawn by hand
    draw = np.random.default_rng(0)
    w1 = [np.bincount(draw.integers(0, 20, 20), minlength=20) for _ in range(300)]
    w2 = [np.bincount(draw.integers(0, 7, 7), minlength=7) for _ in range(300)]
    ap = lambda runs, w: ap_from_histograms(w @ runs[0][0], w @ runs[0][1])  # noqa: E731
    diffs = [((ap(a, u) - ap(b, u)) + (ap(c, v) - ap(c, v))) / 2 for u, v in zip(w1, w2)]
    diffs = [d for d in diffs if np.isfinite(d)]  # a resample of stratum 2 without a defect pixel has no AP
    assert two["low"] == pytest.approx(np.quantile(diffs, 0.025)) and two["high"] == pytest.approx(np.quantile(diffs, 0.975))
    with pytest.raises(ValueError, match="no stratum"):
        stratified_paired_bootstrap([])


def test_paired_bootstrap_refuses_mismatched_runs():
    rng = np.random.default_rng(3)
    a = score_histograms(*_maps(rng, n=5))
    b = score_histograms(*_maps(rng, n=6))
    with pytest.raises(ValueError, match="different test sets"):
        paired_bootstrap([a], [b])
    with pytest.raises(ValueError, match="same seeds"):
        paired_bootstrap([a, a], [a])


def test_cluster_bootstrap_equals_the_image_bootstrap_of_one_copy_per_cluster():
    """Repeating every image five times and labelling the copies as one cluster gives exactly the
    interval of the set without copies (same draws); treating the copies as independent narrows it."""
    rng = np.random.default_rng(5)
    maps_a, masks = _maps(rng, n=8, strength=1.5)
    maps_b = [m + rng.normal(scale=0.8, size=m.shape) for m in maps_a]
    ha, hb = score_histograms(maps_a, masks), score_histograms(maps_b, masks)
    copies = np.repeat(np.arange(8), 5)
    big_a = [(ha[0][copies], ha[1][copies])]
    big_b = [(hb[0][copies], hb[1][copies])]
    once = paired_bootstrap([ha], [hb], n_boot=300, seed=3)
    clustered = paired_bootstrap(big_a, big_b, n_boot=300, seed=3, clusters=[f"c{i}" for i in copies])
    for key in ("diff", "low", "high"):
        assert clustered[key] == pytest.approx(once[key], abs=1e-12)
    assert clustered["n_clusters"] == 8 and clustered["n_images"] == 40 and once["n_clusters"] == 8
    naive = paired_bootstrap(big_a, big_b, n_boot=300, seed=3)
    assert naive["high"] - naive["low"] < clustered["high"] - clustered["low"]


def test_one_cluster_collapses_the_interval_and_bad_labels_are_refused():
    rng = np.random.default_rng(6)
    maps, masks = _maps(rng, n=6)
    h = score_histograms(maps, masks)
    other = score_histograms([m * 0.5 + 0.1 * y for m, y in zip(maps, masks)], masks)
    res = paired_bootstrap([h], [other], n_boot=50, clusters=["all"] * 6)
    assert res["low"] == pytest.approx(res["diff"]) and res["high"] == pytest.approx(res["diff"])
    with pytest.raises(ValueError, match="cluster labels"):
        paired_bootstrap([h], [other], n_boot=10, clusters=["a"] * 5)
    with pytest.raises(ValueError, match="one cluster labelling per stratum"):
        stratified_paired_bootstrap([([h], [other])], n_boot=10, clusters=[None, None])


def test_resampling_seeds_widens_the_interval_when_seeds_disagree():
    """Two seeds whose differences have opposite signs: with fixed seeds the images alone decide; with
    the seeds resampled, the interval spans both seeds' differences. The image draws are unchanged."""
    rng = np.random.default_rng(7)
    maps, masks = _maps(rng, n=20, strength=1.0)
    strong = score_histograms([m + 1.5 * y for m, y in zip(maps, masks)], masks)
    weak = score_histograms([m - 0.5 * y for m, y in zip(maps, masks)], masks)
    base = score_histograms(maps, masks)
    runs_a, runs_b = [strong, weak], [base, base]
    fixed = paired_bootstrap(runs_a, runs_b, n_boot=400, seed=1)
    both = paired_bootstrap(runs_a, runs_b, n_boot=400, seed=1, resample_seeds=True)
    assert both["diff"] == fixed["diff"] and both["seeds_resampled"] and not fixed["seeds_resampled"]
    assert both["high"] - both["low"] > fixed["high"] - fixed["low"]
    per_seed = [paired_bootstrap([a], [b], n_boot=400, seed=1)["diff"] for a, b in zip(runs_a, runs_b)]
    assert per_seed[0] > 0 > per_seed[1]
    assert both["low"] < per_seed[1] / 2 and both["high"] > per_seed[0] / 2
    same = paired_bootstrap([strong, strong], [base, base], n_boot=400, seed=1, resample_seeds=True)
    once = paired_bootstrap([strong], [base], n_boot=400, seed=1)
    assert (same["low"], same["high"]) == pytest.approx((once["low"], once["high"]))  # identical seeds: no change
