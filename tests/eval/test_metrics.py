"""cai.eval.metrics against scikit-learn and against brute-force references written here."""
import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from cai.eval import metrics


# ----------------------------------------------------------------------------- references
def brute_auroc(scores, labels):
    """Probability that a random anomalous sample outscores a random normal one (ties: 1/2)."""
    s, y = np.ravel(scores).astype(float), np.ravel(labels).astype(bool)
    pos, neg = s[y], s[~y]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def brute_pro(maps, masks, limit=0.3):
    """Loop over thresholds and regions; trapezoids; linear interpolation at FPR = limit."""
    regions = []  # (image index, bool mask of region)
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    normal_total = sum((~m).sum() for m in masks)
    thresholds = np.unique(np.concatenate([a.ravel() for a in maps]))[::-1]
    points = [(0.0, 0.0)]
    for t in thresholds:
        fp = sum(((a >= t) & ~m).sum() for a, m in zip(maps, masks))
        overlaps = [(maps[i][r] >= t).mean() for i, r in regions]
        points.append((fp / normal_total, float(np.mean(overlaps))))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def random_case(rng, n=3, shape=(12, 10), levels=None):
    maps, masks = [], []
    for i in range(n):
        a = rng.random(shape)
        if levels:
            a = np.round(a * levels) / levels  # many ties
        m = np.zeros(shape, bool)
        if i > 0:  # image 0 is normal
            for _ in range(rng.integers(1, 3)):
                r, c = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
                m[r:r + rng.integers(1, 4), c:c + rng.integers(1, 4)] = True
            a = a + 0.5 * m * rng.random()
        maps.append(a)
        masks.append(m)
    return maps, masks


# ----------------------------------------------------------------------------- AUROC / AP
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("levels", [None, 4, 20])
def test_auroc_ap_match_sklearn(seed, levels):
    rng = np.random.default_rng(seed)
    s = rng.random(300)
    if levels:
        s = np.round(s * levels) / levels
    y = rng.random(300) < 0.2 + 0.5 * s  # informative but noisy
    assert metrics.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.roc_auc(s, y) == pytest.approx(brute_auroc(s, y), abs=1e-12)
    assert metrics.average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
def test_dtypes_and_label_forms(dtype):
    s = np.array([3, 1, 2, 2, 0, 5], dtype=dtype)
    y = np.array([1, 0, 1, 0, 0, 1])
    expected = roc_auc_score(y, s.astype(float))
    assert metrics.roc_auc(s, y) == pytest.approx(expected)
    assert metrics.roc_auc(s, y.astype(bool)) == pytest.approx(expected)
    assert metrics.average_precision(s.reshape(2, 3), y.reshape(2, 3)) == pytest.approx(
        average_precision_score(y, s.astype(float)))


def test_constant_scores_have_defined_values():
    y = np.array([0, 0, 0, 1])
    assert metrics.roc_auc(np.ones(4), y) == 0.5
    assert metrics.average_precision(np.ones(4), y) == 0.25  # the anomalous share


def test_perfect_and_inverted():
    y = np.array([0, 0, 1, 1])
    assert metrics.roc_auc([0, 1, 2, 3], y) == 1.0
    assert metrics.roc_auc([3, 2, 1, 0], y) == 0.0
    assert metrics.average_precision([0, 1, 2, 3], y) == 1.0


def test_single_class_and_bad_inputs_raise():
    with pytest.raises(ValueError, match="only normal"):
        metrics.roc_auc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="only anomalous"):
        metrics.roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="no anomalous"):
        metrics.average_precision([0.1, 0.2], [0, 0])
    assert metrics.average_precision([0.1, 0.2], [1, 1]) == 1.0  # all anomalous: precision 1
    with pytest.raises(ValueError, match="NaN"):
        metrics.roc_auc([np.nan, 0.2], [0, 1])
    with pytest.raises(ValueError, match="binary"):
        metrics.roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="elements"):
        metrics.roc_auc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="real-valued"):
        metrics.roc_auc([True, False], [0, 1])


# ----------------------------------------------------------------------------- PRO
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [None, 5])
def test_pro_matches_brute_force(seed, levels):
    maps, masks = random_case(np.random.default_rng(seed), levels=levels)
    assert metrics.pro_auc(maps, masks) == pytest.approx(brute_pro(maps, masks), abs=1e-12)
    assert metrics.pro_auc(maps, masks, fpr_limit=0.05) == pytest.approx(brute_pro(maps, masks, 0.05), abs=1e-12)
    assert metrics.pixel_metrics(maps, masks)["pro"] == pytest.approx(brute_pro(maps, masks), abs=1e-12)


def test_pro_weights_regions_not_pixels():
    # one big region fully found and one small region missed: PRO is about 1/2, pixel TPR is high
    mask = np.zeros((10, 10), bool)
    mask[0:5, 0:5] = True   # 25 px
    mask[8, 8] = True        # 1 px, separate region
    a = np.zeros((10, 10))
    a[0:5, 0:5] = 1.0
    fpr, pro, _ = metrics.pro_curve([a], [mask])
    assert pro[1] == pytest.approx(0.5) and fpr[1] == 0.0
    assert metrics.pro_auc([a], [mask]) == pytest.approx(brute_pro([a], [mask]))


def test_pro_diagonal_regions_are_one_region_with_8_connectivity():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True
    assert metrics.pixel_metrics([np.eye(4)], [mask])["n_regions"] == 1
    assert metrics.pixel_metrics([np.eye(4)], [mask], connectivity=4)["n_regions"] == 2


def test_pro_perfect_and_constant_maps():
    maps, masks = random_case(np.random.default_rng(0))
    perfect = [m.astype(float) for m in masks]
    assert metrics.pro_auc(perfect, masks) == pytest.approx(1.0)
    constant = [np.zeros(m.shape) for m in masks]
    assert metrics.pro_auc(constant, masks) == pytest.approx(0.15)  # the diagonal: 0.3 / 2 / 0.3


def test_pro_undefined_cases():
    with pytest.raises(ValueError, match="no anomalous region"):
        metrics.pro_auc([np.random.rand(4, 4)], [np.zeros((4, 4), bool)])
    with pytest.raises(ValueError, match="no normal pixel"):
        metrics.pro_auc([np.random.rand(4, 4)], [np.ones((4, 4), bool)])
    with pytest.raises(ValueError, match="shape"):
        metrics.pro_auc([np.random.rand(4, 4)], [np.ones((4, 5), bool)])


# ----------------------------------------------------------------------------- wrappers
def test_pixel_metrics_and_image_auroc():
    maps, masks = random_case(np.random.default_rng(3), n=5)
    out = metrics.pixel_metrics(maps, masks, return_curves=True)
    s = np.concatenate([a.ravel() for a in maps])
    y = np.concatenate([m.ravel() for m in masks])
    assert out["pixel_auroc"] == pytest.approx(roc_auc_score(y, s))
    assert out["pixel_ap"] == pytest.approx(average_precision_score(y, s))
    labels = [m.any() for m in masks]
    assert out["image_auroc"] == pytest.approx(roc_auc_score(labels, [a.max() for a in maps]))
    assert out["image_auroc"] == metrics.image_auroc(maps, masks=masks)
    assert out["n_images"] == 5 and out["n_anomalous_images"] == 4
    fpr, tpr = out["curves"]["roc"]
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)


def test_image_auroc_is_nan_without_normal_test_image():
    maps, masks = random_case(np.random.default_rng(1), n=3)
    out = metrics.pixel_metrics(maps[1:], masks[1:])
    assert np.isnan(out["image_auroc"])


def test_images_of_different_sizes():
    rng = np.random.default_rng(5)
    maps = [rng.random((6, 8)), rng.random((9, 5))]
    masks = [np.zeros((6, 8), bool), np.zeros((9, 5), bool)]
    masks[1][2:5, 1:3] = True
    maps[1][2:5, 1:3] += 0.3
    assert metrics.pro_auc(maps, masks) == pytest.approx(brute_pro(maps, masks))


def test_inputs_are_not_changed():
    maps, masks = random_case(np.random.default_rng(2))
    copies = [a.copy() for a in maps], [m.copy() for m in masks]
    metrics.pixel_metrics(maps, masks)
    assert all(np.array_equal(a, b) for a, b in zip(maps, copies[0]))
    assert all(np.array_equal(a, b) for a, b in zip(masks, copies[1]))


# ----------------------------------------------------------------------------- one sort
def _float32_scores(rng, n):
    s = rng.normal(size=n).astype(np.float32)
    s[::3], s[1::7], s[2::11], s[3::13] = 0.25, -0.0, 0.0, -3.5  # ties, both zeros, negatives
    return s.astype(np.float64)


def _stable_rank(s):
    order = np.argsort(-s, kind="stable")
    return order, np.r_[np.flatnonzero(np.diff(s[order])), s.size - 1]


@pytest.mark.parametrize("n", [1, 2, 17, 5000])
def test_rank_is_the_stable_argsort(n):
    rng = np.random.default_rng(n)
    s = _float32_scores(rng, n)
    s64 = s + 1e-12 * rng.random(n)  # not exact in float32: the plain stable argsort
    for scores in (s, s64):
        order, last = metrics._rank(scores)
        ref_order, ref_last = _stable_rank(scores)
        assert np.array_equal(order, ref_order) and np.array_equal(last, ref_last)


def test_pixel_metrics_are_bit_identical_with_the_stable_argsort(monkeypatch):
    rng = np.random.default_rng(11)
    maps, masks = random_case(rng, n=6)
    maps = [np.round(a * 50).astype(np.float32) / np.float32(50) for a in maps]  # float32 with many ties
    fast = metrics.pixel_metrics(maps, masks, return_curves=True)
    monkeypatch.setattr(metrics, "_rank", _stable_rank)
    slow = metrics.pixel_metrics(maps, masks, return_curves=True)
    for k in ("pixel_auroc", "pixel_ap", "pro", "image_auroc"):
        assert fast[k] == slow[k]
    for k in fast["curves"]:
        assert all(np.array_equal(a, b) for a, b in zip(fast["curves"][k], slow["curves"][k]))


def test_subset_ap_equals_ap_on_the_subset_pixels():
    rng = np.random.default_rng(4)
    maps, masks = random_case(rng, n=7)
    maps = [np.round(a * 20) / 20 for a in maps]  # ties across images
    masks[2][:] = False
    subsets = {"a": [3, 1, 2], "b": [2, 0], "empty": [2], "all": range(7)}
    out = metrics.pixel_metrics(maps, masks, subsets=subsets)["subset_ap"]
    for name, idx in subsets.items():
        s = np.concatenate([maps[i].ravel() for i in idx])
        y = np.concatenate([masks[i].ravel() for i in idx])
        if not y.any():
            assert np.isnan(out[name])
            continue
        assert out[name] == metrics.average_precision(s, y)  # exactly: ties do not change AP
        assert out[name] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert out["all"] == metrics.pixel_metrics(maps, masks)["pixel_ap"]


def test_ground_truth_prepared_once_gives_the_same_metrics():
    rng = np.random.default_rng(8)
    maps, masks = random_case(rng, n=5)
    truth = metrics.GroundTruth(masks)
    for seed in range(3):
        scores = [a + 0.1 * np.random.default_rng(seed).random(a.shape) for a in maps]
        a = metrics.pixel_metrics(scores, masks, subsets={"x": [0, 2]})
        b = metrics.pixel_metrics(scores, truth, subsets={"x": [0, 2]})
        assert a == b
    assert truth.n_regions == a["n_regions"] and len(truth) == 5
    with pytest.raises(ValueError, match="anomaly maps and 5 masks"):
        metrics.pixel_metrics(maps[:4], truth)
    with pytest.raises(ValueError, match="shape"):
        metrics.pixel_metrics([m[:, :-1] for m in maps], truth)
    with pytest.raises(ValueError, match="connectivity"):
        metrics.pixel_metrics(maps, truth, connectivity=4)
