"""recipes/evaluate/error_sources.py: the AP decomposition against sklearn on hand-made scores."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cai.eval.bootstrap import score_histograms


def _case():
    rng = np.random.default_rng(0)
    maps, masks = [], []
    for i in range(6):  # images 0-2 normal, 3-5 defective
        m = rng.normal(0, 1, (20, 20))
        y = np.zeros((20, 20), bool)
        if i >= 3:
            y[5:10, 5:12] = True
            m[y] += 2.5
        if i == 0:
            m[:4, :4] += 4  # a strong false alarm on a normal image
        maps.append(m)
        masks.append(y)
    return maps, masks


def test_decomposition_matches_sklearn_and_counts_false_positives(evaluate_recipe):
    module = evaluate_recipe("error_sources")
    maps, masks = _case()
    pos, neg = score_histograms(maps, masks)
    r = module.error_sources(pos, neg)
    flat = lambda ims: np.concatenate([np.ravel(a) for a in ims])  # noqa: E731
    exact = average_precision_score(flat(masks), flat(maps))
    # negatives of the normal images only: defective images keep just their defect pixels
    good_only = average_precision_score(np.concatenate([flat(masks[:3]), np.ones(105, bool)]),
                                        np.concatenate([flat(maps[:3]), np.concatenate([m[y] for m, y in zip(maps[3:], masks[3:])])]))
    defect_only = average_precision_score(flat(masks[3:]), flat(maps[3:]))
    assert r["ap"] == pytest.approx(exact, abs=2e-3)
    assert r["ap_good_neg"] == pytest.approx(good_only, abs=2e-3)
    assert r["ap_defect_neg"] == pytest.approx(defect_only, abs=2e-3)
    # at recall 0.5: the threshold is the median defect score; count by brute force
    t = np.sort(flat([m[y] for m, y in zip(maps, masks)]))[::-1][int(np.ceil(0.5 * 105)) - 1]
    fp_good = sum(int((m[~y] >= t).sum()) for m, y in zip(maps[:3], masks[:3]))
    fp_defect = sum(int((m[~y] >= t).sum()) for m, y in zip(maps[3:], masks[3:]))
    assert r["fp_per_good_image"] == pytest.approx(fp_good / 3, abs=1.0)
    assert r["fp_per_defect_image"] == pytest.approx(fp_defect / 3, abs=1.0)
    assert r["fp_share_good"] > 0.5  # the alarm of image 0 dominates
    assert (r["n_good"], r["n_defective"]) == (3, 3)


def test_needs_both_kinds_of_images(evaluate_recipe):
    module = evaluate_recipe("error_sources")
    maps, masks = _case()
    pos, neg = score_histograms(maps[3:], masks[3:])
    with pytest.raises(ValueError, match="both normal and defective"):
        module.error_sources(pos, neg)
