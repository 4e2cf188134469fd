"""Anomaly-detection metrics: pixel AUROC, pixel AP, PRO and image AUROC.

Every curve here is one weighted sort + cumsum: scores are sorted once in decreasing order, the
positive and negative weights are accumulated, and a curve point is kept at the end of each run of
tied scores (a threshold ``t`` classifies ``score >= t`` as anomalous). Plain AUROC/AP use weight 1
per pixel; PRO gives each anomalous pixel the weight ``1 / (R * |region|)`` (R regions in all), so
that the weighted true-positive rate at a threshold *is* the per-region overlap averaged over
regions, and the PRO curve needs no loop over thresholds or regions.

Definitions
-----------
AUROC
    Area under the ROC curve (FPR, TPR) through every distinct threshold, trapezoidal; ties count
    as half, as in ``sklearn.metrics.roc_auc_score``.
AP
    ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds in decreasing order (no interpolation),
    as ``sklearn.metrics.average_precision_score``.
PRO (Bergmann et al., MVTec AD, IJCV 2021)
    Regions are the connected components (8-connectivity by default) of every ground-truth mask.
    At threshold ``t`` the overlap of a region is the share of its pixels with ``score >= t``; PRO(t)
    is the mean overlap over all regions of all images and FPR(t) the share of normal pixels
    (ground truth 0, over all images) with ``score >= t``. The PRO score is the area under PRO(FPR)
    from 0 to ``fpr_limit`` (0.3), trapezoidal, the curve linearly interpolated at ``fpr_limit``,
    divided by ``fpr_limit`` (so a perfect map scores 1 and a constant map ``fpr_limit / 2``).
Image AUROC
    AUROC of one score per image, the maximum of its anomaly map, against "mask has a defect pixel"
    (or labels given explicitly).

Inputs are never changed; all results are Python floats or new float64 arrays.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["GroundTruth", "roc_curve", "roc_auc", "precision_recall_curve", "average_precision", "pro_curve",
           "pro_auc", "image_scores", "image_auroc", "pixel_metrics", "region_weights"]


# ----------------------------------------------------------------------------- checks
def _scores(values, name: str) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be a real-valued array, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False).ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _labels(values, name: str, size: int) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype != bool:
        if not np.issubdtype(a.dtype, np.number) or not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be binary (bool or 0/1)")
        a = a.astype(bool)
    a = a.ravel()
    if a.size != size:
        raise ValueError(f"{name} has {a.size} elements, the scores {size}")
    return a


def _both_classes(labels: np.ndarray, what: str, name: str) -> None:
    if labels.all() or not labels.any():
        present = "anomalous" if labels.any() else "normal"
        raise ValueError(f"{what} is undefined: {name} holds only {present} samples")


# ----------------------------------------------------------------------------- core
def _rank(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, last) of (N,) float64 ``scores``: ``order`` is ``np.argsort(-scores, kind="stable")``
    (decreasing, ties in index order) and ``last`` (K,) the positions in ``order`` that end each
    run of tied scores, for the K distinct scores.

    When every score is exact in float32 (anomaly maps are float32) and N < 2**32, one unstable
    sort of 64-bit keys (an order-reversing 32-bit code of the score, then the index) gives the
    same permutation several times faster than the stable argsort, and the runs from the codes.
    """
    n = scores.size
    if n < 2 ** 32:
        s32 = scores.astype(np.float32)
        if np.array_equal(s32, scores):
            s32 += np.float32(0.0)  # -0.0 -> +0.0: equal scores get one code
            bits = s32.view(np.uint32)
            code = np.where(bits >> 31 == 1, bits, ~bits & np.uint32(0x7FFFFFFF))  # larger score, smaller code
            del s32, bits
            keys = code.astype(np.uint64) << np.uint64(32)
            del code
            keys |= np.arange(n, dtype=np.uint64)
            keys.sort()
            order = (keys & np.uint64(0xFFFFFFFF)).astype(np.intp)
            keys >>= np.uint64(32)
            return order, np.r_[np.flatnonzero(keys[1:] != keys[:-1]), n - 1]
    order = np.argsort(-scores, kind="stable")
    return order, _run_ends(scores[order])


def _run_ends(sorted_scores: np.ndarray) -> np.ndarray:
    """(K,) positions ending each run of tied values in (N,) sorted scores."""
    return np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]


def _cum_at(values: np.ndarray, order: np.ndarray, last: np.ndarray) -> np.ndarray:
    """(K,) float64: ``values`` ((N,) bool or float) summed over each threshold's pixels (see _rank)."""
    return np.cumsum(values[order], dtype=np.float64)[last]


def _label_curve(s: np.ndarray, y: np.ndarray, ranking=None):
    """(tp, fp, thresholds) at each distinct threshold for scores ``s`` and labels ``y`` (N,) bool;
    counts as float64 (exact integers)."""
    order, last = _rank(s) if ranking is None else ranking
    tp = _cum_at(y, order, last)
    return tp, (last + 1) - tp, s[order[last]]


def roc_curve(scores, labels):
    """ROC curve through every distinct threshold.

    Parameters
    ----------
    scores : array_like of float
        Any shape; higher means more anomalous.
    labels : array_like of bool or {0, 1}
        Same number of elements; True/1 = anomalous.

    Returns
    -------
    fpr, tpr : (K + 1,) float64 ndarray
        Starting at (0, 0) and ending at (1, 1).
    thresholds : (K,) float64 ndarray
        Decreasing; point ``k + 1`` classifies ``score >= thresholds[k]`` as anomalous.

    Raises
    ------
    ValueError
        Non-finite scores, non-binary labels, size mismatch, or labels of a single class.
    """
    s = _scores(scores, "scores")
    y = _labels(labels, "labels", s.size)
    _both_classes(y, "the ROC curve", "labels")
    tp, fp, thr = _label_curve(s, y)
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]], thr


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (trapezoidal; tied scores count half). See :func:`roc_curve`.

    Constant scores give 0.5. Raises ValueError when ``labels`` hold a single class.

    Example
    -------
    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(scores, labels):
    """Precision and recall at every distinct threshold, in decreasing threshold order.

    Returns
    -------
    precision, recall, thresholds : (K,) float64 ndarray
        No artificial (recall 0, precision 1) end point is added.

    Raises
    ------
    ValueError
        As :func:`roc_curve`, but only a missing anomalous sample is an error (no normal sample is
        fine: precision is then 1).
    """
    s = _scores(scores, "scores")
    y = _labels(labels, "labels", s.size)
    if not y.any():
        raise ValueError("precision/recall are undefined: labels hold no anomalous sample")
    tp, fp, thr = _label_curve(s, y)
    return tp / (tp + fp), tp / tp[-1], thr


def average_precision(scores, labels) -> float:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` (no interpolation, as scikit-learn).

    Constant scores give the anomalous share of the samples. Raises ValueError without any
    anomalous sample.

    Example
    -------
    >>> average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.8333333333333333
    """
    precision, recall, _ = precision_recall_curve(scores, labels)
    return _ap(precision, recall)


def _ap(precision: np.ndarray, recall: np.ndarray) -> float:
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# ----------------------------------------------------------------------------- maps
def _as_list(arrays) -> list:
    """A sequence of 2-D arrays, an (N, H, W) array or one (H, W) array, as a list of arrays."""
    if isinstance(arrays, np.ndarray) and arrays.ndim != 3:
        return [arrays]
    return [np.asarray(a) for a in arrays]


def _check_maps(maps, shapes) -> list:
    maps = _as_list(maps)
    if len(maps) != len(shapes):
        raise ValueError(f"got {len(maps)} anomaly maps and {len(shapes)} masks")
    if not maps:
        raise ValueError("no anomaly map given")
    for i, (a, shape) in enumerate(zip(maps, shapes)):
        if a.ndim != 2:
            raise ValueError(f"anomaly_maps[{i}] must be (H, W), got shape {a.shape}")
        if a.shape != tuple(shape):
            raise ValueError(f"anomaly_maps[{i}] has shape {a.shape} but masks[{i}] {tuple(shape)}")
    return maps


def _stack_maps(maps, masks):
    masks = _as_list(masks)
    return _check_maps(maps, [m.shape for m in masks]), masks


def region_weights(masks, connectivity: int = 8) -> np.ndarray:
    """Per-pixel PRO weight: ``1 / (R * |region|)`` on ground-truth pixels, 0 elsewhere.

    Parameters
    ----------
    masks : sequence of (H_i, W_i) bool ndarray
    connectivity : {4, 8}

    Returns
    -------
    (sum_i H_i W_i,) float64 ndarray
        Concatenated in the order of ``masks`` (row-major per image); sums to 1 when any region
        exists, all zero otherwise.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    structure = np.ones((3, 3), bool) if connectivity == 8 else None
    parts, sizes, offset = [], [], 0
    for i, m in enumerate(masks):
        m = _labels(m, f"masks[{i}]", np.asarray(m).size).reshape(np.shape(m))
        lab, n = ndimage.label(m, structure=structure)
        lab = lab.ravel().astype(np.int64)
        lab[lab > 0] += offset
        parts.append(lab)
        offset += n
    labels = np.concatenate(parts)
    if offset == 0:
        return np.zeros(labels.size)
    counts = np.bincount(labels, minlength=offset + 1).astype(np.float64)
    per_region = np.r_[0.0, 1.0 / (offset * counts[1:])]
    return per_region[labels]


def pro_curve(anomaly_maps, masks, connectivity: int = 8):
    """Per-region-overlap curve over every distinct threshold.

    Parameters
    ----------
    anomaly_maps : sequence of (H_i, W_i) float ndarray, or (N, H, W) ndarray
    masks : sequence of (H_i, W_i) bool ndarray, or (N, H, W) ndarray
        Ground truth; images may have different sizes (each map matches its mask).
    connectivity : {4, 8}
        Pixel connectivity of a ground-truth region (MVTec's evaluation uses 8).

    Returns
    -------
    fpr, pro : (K + 1,) float64 ndarray
        From (0, 0) to (1, 1); ``fpr`` non-decreasing.
    thresholds : (K,) float64 ndarray
        Decreasing.

    Raises
    ------
    ValueError
        No ground-truth region, no normal pixel, non-finite scores, shape mismatches.
    """
    maps, masks = _stack_maps(anomaly_maps, masks)
    s = np.concatenate([_scores(a, f"anomaly_maps[{i}]") for i, a in enumerate(maps)])
    return _pro_curve(s, region_weights(masks, connectivity))


def _pro_curve(s: np.ndarray, weights: np.ndarray):
    """PRO curve of concatenated scores ``s`` (N,) with region weights (N,) (see region_weights)."""
    positive = weights > 0
    if not positive.any():
        raise ValueError("PRO is undefined: the masks hold no anomalous region")
    if positive.all():
        raise ValueError("PRO is undefined: the masks hold no normal pixel (FPR has no denominator)")
    order, last = _rank(s)
    tp, fp = _cum_at(weights, order, last), (last + 1) - _cum_at(positive, order, last)
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]], s[order[last]]


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under y(x) for x in [0, limit]; x non-decreasing from 0, y interpolated at limit."""
    inside = int(np.searchsorted(x, limit, side="right"))  # points with x <= limit
    xs, ys = x[:inside], y[:inside]
    if inside < x.size and xs[-1] < limit:
        x0, x1, y0, y1 = x[inside - 1], x[inside], y[inside - 1], y[inside]
        xs = np.r_[xs, limit]
        ys = np.r_[ys, y0 + (y1 - y0) * (limit - x0) / (x1 - x0)]
    return float(np.trapezoid(ys, xs))


def pro_auc(anomaly_maps, masks, fpr_limit: float = 0.3, connectivity: int = 8) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (default 0.3), in [0, 1].

    See the module docstring for the definition and :func:`pro_curve` for the inputs.
    """
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro, _ = pro_curve(anomaly_maps, masks, connectivity)
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


def image_scores(anomaly_maps) -> np.ndarray:
    """(N,) float64: the maximum of each anomaly map."""
    maps = [anomaly_maps] if isinstance(anomaly_maps, np.ndarray) and anomaly_maps.ndim == 2 else anomaly_maps
    return np.array([_scores(a, f"anomaly_maps[{i}]").max() for i, a in enumerate(maps)])


def image_auroc(anomaly_maps, masks=None, labels=None) -> float:
    """Image AUROC with the map maximum as the image score.

    Give ``labels`` ((N,) bool, True = anomalous image) or ``masks`` (an image is anomalous when
    its mask has a defect pixel). Raises ValueError when all images are of one kind.
    """
    scores = image_scores(anomaly_maps)
    if labels is None:
        if masks is None:
            raise ValueError("give masks or labels")
        labels = [bool(np.asarray(m).any()) for m in masks]
    return roc_auc(scores, labels)


class GroundTruth:
    """The masks of a test set prepared once for many :func:`pixel_metrics` calls (the same test set
    scored by several detectors): concatenated labels, PRO region weights and region count.

    Parameters
    ----------
    masks : sequence of (H_i, W_i) bool ndarray
    connectivity : {4, 8}
    """

    def __init__(self, masks, connectivity: int = 8):
        masks = _as_list(masks)
        if not masks:
            raise ValueError("no mask given")
        masks = [_labels(m, f"masks[{i}]", m.size).reshape(m.shape) for i, m in enumerate(masks)]
        self.shapes = [m.shape for m in masks]
        self.connectivity = connectivity
        self.labels = np.concatenate([m.ravel() for m in masks])
        self.weights = region_weights(masks, connectivity)
        self.anomalous = [bool(m.any()) for m in masks]
        self.n_regions = _count_regions(masks, connectivity)

    def __len__(self) -> int:
        return len(self.shapes)


def pixel_metrics(anomaly_maps, masks, fpr_limit: float = 0.3, connectivity: int = 8,
                  return_curves: bool = False, subsets: dict | None = None) -> dict:
    """Pixel AUROC, pixel AP, PRO (to ``fpr_limit``) and image AUROC of a test set.

    Parameters
    ----------
    anomaly_maps, masks : sequences of (H_i, W_i) arrays (see :func:`pro_curve`); ``masks`` may also
        be a :class:`GroundTruth` of them, prepared once for many calls
    return_curves : bool
        Also return ``curves``: ``{"roc": (fpr, tpr), "pr": (precision, recall), "pro": (fpr, pro)}``.
    subsets : dict name -> sequence of int, optional
        Also return ``subset_ap``: for each name, the pixel AP over the images of those indices (e.g.
        one defect class and the normal images), NaN when they hold no anomalous pixel; the same
        value as :func:`average_precision` on their pixels, taken from the one sort of all pixels.

    Returns
    -------
    dict
        ``pixel_auroc``, ``pixel_ap``, ``pro``, ``image_auroc`` (float; ``image_auroc`` is NaN when
        every test image is anomalous or every one normal), ``n_images``, ``n_anomalous_images``,
        ``n_regions`` (int).
    """
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    truth = masks if isinstance(masks, GroundTruth) else GroundTruth(masks, connectivity)
    if truth.connectivity != connectivity:
        raise ValueError(f"the GroundTruth was made with connectivity {truth.connectivity}, not {connectivity}")
    maps = _check_maps(anomaly_maps, truth.shapes)
    s = np.concatenate([_scores(a, f"anomaly_maps[{i}]") for i, a in enumerate(maps)])
    y, weights, anomalous = truth.labels, truth.weights, truth.anomalous
    _both_classes(y, "pixel AUROC", "masks")
    if not (weights > 0).any():
        raise ValueError("PRO is undefined: the masks hold no anomalous region")
    # one sort for all curves (PRO's negatives are the pixels outside every region: ~y)
    order, last = _rank(s)
    tp, fp, _ = _label_curve(s, y, (order, last))
    overlap = _cum_at(weights, order, last)
    fpr, tpr = np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]
    precision, recall = tp / (tp + fp), tp / tp[-1]
    pro_fpr, pro = fpr, np.r_[0.0, overlap / overlap[-1]]
    out = {"pixel_auroc": float(np.trapezoid(tpr, fpr)),
           "pixel_ap": _ap(precision, recall),
           "pro": _area_up_to(pro_fpr, pro, fpr_limit) / fpr_limit,
           "image_auroc": (roc_auc(image_scores(maps), anomalous) if 0 < sum(anomalous) < len(anomalous)
                           else float("nan")),
           "n_images": len(maps), "n_anomalous_images": int(sum(anomalous)),
           "n_regions": truth.n_regions}
    if return_curves:
        out["curves"] = {"roc": (fpr, tpr), "pr": (precision, recall), "pro": (pro_fpr, pro)}
    if subsets is not None:
        out["subset_ap"] = _subset_ap(s, y, [m.size for m in maps], order, subsets, out["pixel_ap"])
    return out


def _subset_ap(s, y, sizes, order, subsets: dict, all_ap: float) -> dict:
    """AP of each subset of images from the one decreasing order of all pixels: a subset's pixels
    keep that order (ties aside, which do not change AP), so no new sort is needed."""
    out, image_of = {}, None
    for name, indices in subsets.items():
        member = np.zeros(len(sizes), bool)
        member[np.asarray(list(indices), dtype=np.intp)] = True
        if member.all():
            out[name] = all_ap
            continue
        if image_of is None:
            image_of = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)[order]
        sub_order = order[member[image_of]]
        if not y[sub_order].any():
            out[name] = float("nan")
            continue
        tp, fp, _ = _label_curve(s, y, (sub_order, _run_ends(s[sub_order])))
        out[name] = _ap(tp / (tp + fp), tp / tp[-1])
    return out


def _count_regions(masks: Sequence[np.ndarray], connectivity: int) -> int:
    structure = np.ones((3, 3), bool) if connectivity == 8 else None
    return int(sum(ndimage.label(np.asarray(m, bool), structure=structure)[1] for m in masks))
