"""Pseudo mask from the thresholded difference (Eq. 4 of Wang, Hu et al. 2025), kept faithful to the
visible defect, and the fidelity figures reported per run."""
from __future__ import annotations

import cv2
import numpy as np

from ._checks import as_bool_mask, bbox, check_image

_DISK = {}


def _disk(radius: int) -> np.ndarray:
    if radius not in _DISK:
        _DISK[radius] = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return _DISK[radius]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) bool mask grown by a disk of ``radius`` pixels (returned as a new bool array)."""
    if radius <= 0:
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), _disk(radius)).astype(bool)


_LUMA = np.array([0.299, 0.587, 0.114], np.float32).astype(np.float64)  # ITU-R 601, as float32 weights


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 luma (0-255) of an (H, W) or (H, W, 3) RGB image (ITU-R 601 weights).

    The same bits on every CPU: ``R*wr``, then ``+ G*wg`` and ``+ B*wb`` each rounded once to float32
    (a fused multiply-add), computed in float64 with elementwise numpy operations (exact for pixel values
    0-255; for other float32 inputs a float64 rounding may come first, still the same everywhere). A BLAS
    product (``image @ w``) rounds its last bit as its CPU's kernel does, and a change of exactly the pseudo-mask threshold (7 grey levels between
    grey pixels, whose luma is then 7 +- 1 ulp) fell on either side of it: the same seed gave other
    pseudo masks on another machine. This order gives the bits such a kernel gave where the recorded
    golden hashes were made (tests/test_determinism_golden.py).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[..., 0]
    # a product of two float32 is exact in float64; one channel at a time keeps the temporaries small
    out = (image[..., 0].astype(np.float64) * _LUMA[0]).astype(np.float32)
    out = (image[..., 1].astype(np.float64) * _LUMA[1] + out).astype(np.float32)
    return (image[..., 2].astype(np.float64) * _LUMA[2] + out).astype(np.float32)


def channel_max(a: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H, W): the largest channel, the same values as ``a.max(axis=2)`` (elementwise
    ``np.maximum`` over the channels: several times faster than a reduction over a short last axis)."""
    out = a[..., 0]
    for c in range(1, a.shape[2]):
        out = np.maximum(out, a[..., c])
    return out


def raw_change(normal, injected, rule: str = "luma") -> np.ndarray:
    """(H, W) float32 signed luma change (``rule="luma"``) or (H, W[, 3]) per-channel change
    (``rule="channel"``) of ``injected`` against ``normal``."""
    if rule == "luma":
        return grey(injected) - grey(normal)
    if rule == "channel":
        return np.asarray(injected, np.float32) - np.asarray(normal, np.float32)
    raise ValueError(f"rule must be 'luma' or 'channel', got {rule!r}")


def _differing(normal: np.ndarray, injected: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels where any channel differs, the only ones whose change can be non-zero."""
    differs = normal != injected
    return channel_max(differs) if differs.ndim == 3 else differs


def detail_change(normal, injected, placed_mask, sigma: float = 6.0, rule: str = "luma") -> np.ndarray:
    """Grey-level change with the smooth brightness shift around the defect removed.

    ``d = grey(injected) - grey(normal)`` (``rule="luma"``) or the per-channel difference
    (``rule="channel"``: the paper's ``|I' - I|``, the largest channel's change is returned, so
    channel changes cannot cancel); the shift is the Gaussian-weighted mean of ``d`` over
    the pixels *outside* the placed defect (normalised convolution), so the change of the defect
    itself stays whole, while a smooth offset that Poisson blending spreads over a region (the
    membrane term) is not counted as change. Computed on the window where ``d`` or the defect is
    non-zero, plus the Gaussian's reach (exact: outside it the result is 0; a test checks it against
    the whole-image computation).

    Parameters
    ----------
    normal, injected : (H, W) or (H, W, 3) ndarray, 0-255
        The normal image and the same image after injection.
    placed_mask : (H, W) bool ndarray
        Where the source defect was placed.
    sigma : float
        Gaussian scale, in pixels, of the shift estimate.

    Returns
    -------
    (H, W) float32 ndarray
        ``|d - shift|`` in grey levels.
    """
    normal, injected = np.asarray(normal), np.asarray(injected)
    out = np.zeros(normal.shape[:2], np.float32)
    active = _differing(normal, injected) | placed_mask  # covers d != 0
    if not active.any():
        return out
    reach = int(np.ceil(4 * sigma)) + 1  # cv2's Gaussian support for this sigma
    r0, c0, r1, c1 = bbox(active)
    win = (slice(max(r0 - reach, 0), r1 + reach), slice(max(c0 - reach, 0), c1 + reach))
    dw = raw_change(normal[win], injected[win], rule)  # pointwise: the whole image's values there
    outside = (~placed_mask[win]).astype(np.float32)
    if dw.ndim == 3:
        outside = outside[..., None]
    num = cv2.GaussianBlur(np.ascontiguousarray(dw * outside), (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    den = cv2.GaussianBlur(outside, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    if num.ndim == 3 and den.ndim == 2:
        den = den[..., None]
    shift = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0)
    dev = np.abs(dw - shift)
    out[win] = channel_max(dev) if dev.ndim == 3 else dev
    return out


def pseudo_mask(normal, injected, placed_mask, threshold: float = 7, median_ksize: int = 1,
                margin: int = 3, min_component: int = 5, return_change: bool = False, rule: str = "luma"):
    """Pseudo mask of an injected defect: visible change above ``threshold``, near the placed defect.

    Eq. 4 thresholds |I_sa - I_n| on grey levels. Here the change is judged on
    :func:`detail_change` (the smooth brightness shift of the blend removed), cleaned of specks
    (connected components under ``min_component`` pixels; the paper's median filter is optional,
    off by default because a k x k median erases lines thinner than k/2 + 1 pixels, i.e. the thin
    cracks themselves) and bounded by the placed source mask grown by ``margin`` pixels, so the mask
    marks the visible defect and not the whole blended region.

    Parameters
    ----------
    normal, injected : (H, W) or (H, W, 3) uint8 or float ndarray, 0-255
    placed_mask : (H, W) bool ndarray
        Source defect mask where it was placed.
    threshold : float
        Grey-level change (0-255) a pixel must exceed (paper: 7).
    median_ksize : int
        Odd median filter size (paper: 7); 1 disables it (default).
    margin : int
        Pixels beyond ``placed_mask`` the pseudo mask may reach.
    min_component : int
        8-connected components smaller than this many pixels are dropped (1 keeps all).
    rule : {"luma", "channel"}
        Change measured on luma, or as the largest per-channel absolute change (see
        :func:`detail_change`).

    Returns
    -------
    (H, W) bool ndarray
        May be empty: the caller resamples. With ``return_change``, also the (H, W) float32
        :func:`detail_change` map it was thresholded from.

    Example
    -------
    >>> n = np.full((32, 32), 100, np.uint8); placed = np.zeros((32, 32), bool); placed[10:20, 10:20] = True
    >>> inj = n.copy(); inj[placed] = 60
    >>> int(pseudo_mask(n, inj, placed).sum())
    100
    """
    normal = check_image(normal, "normal")
    injected = check_image(injected, "injected")
    if normal.shape != injected.shape:
        raise ValueError(f"injected shape {injected.shape} differs from normal shape {normal.shape}")
    placed_mask = as_bool_mask(placed_mask, "placed_mask")
    if placed_mask.shape != normal.shape[:2]:
        raise ValueError(f"placed_mask shape {placed_mask.shape} differs from image shape {normal.shape[:2]}")
    if median_ksize < 1 or median_ksize % 2 == 0:
        raise ValueError(f"median_ksize must be a positive odd integer, got {median_ksize}")
    change = detail_change(normal, injected, placed_mask, rule=rule)
    changed = (change > threshold).astype(np.uint8) * 255
    if median_ksize > 1:
        changed = cv2.medianBlur(changed, median_ksize)
    mask = (changed > 0) & dilate(placed_mask, margin)
    if min_component > 1 and mask.any():
        r0, c0, r1, c1 = bbox(mask)
        win = (slice(r0, r1), slice(c0, c1))
        _, labels, stats, _ = cv2.connectedComponentsWithStats(mask[win].astype(np.uint8), connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_component
        keep[0] = False
        mask[win] = keep[labels]
    return (mask, change) if return_change else mask


def mask_fidelity(normal, injected, mask, placed_mask, visible: float = 3.0, threshold: float = 7, change=None,
                  rule: str = "luma"):
    """How faithful a pseudo mask is to the visible defect.

    Returns
    -------
    dict
        ``iou``: IoU of ``mask`` and ``placed_mask``;
        ``visible_share``: share of mask pixels whose :func:`detail_change` is >= ``visible`` grey levels;
        ``changed_outside_share``: share of pixels whose raw grey change exceeds ``threshold`` that lie
        outside ``mask`` (a halo the mask misses).

    ``change``, when given, is ``detail_change(normal, injected, placed_mask)`` already computed.
    """
    mask = as_bool_mask(mask, "mask")
    placed_mask = as_bool_mask(placed_mask, "placed_mask")
    union = (mask | placed_mask).sum()
    if change is None:
        change = detail_change(normal, injected, placed_mask, rule=rule)
    normal, injected = np.asarray(normal), np.asarray(injected)
    differs = _differing(normal, injected)
    win = (slice(0, 0), slice(0, 0))
    if differs.any():
        r0, c0, r1, c1 = bbox(differs)
        win = (slice(r0, r1), slice(c0, c1))
    raw = np.abs(raw_change(normal[win], injected[win], rule))
    raw = (channel_max(raw) if raw.ndim == 3 else raw) > threshold
    return {
        "iou": float((mask & placed_mask).sum() / union) if union else 1.0,
        "visible_share": float((change[mask] >= visible).mean()) if mask.any() else 0.0,
        "changed_outside_share": float((raw & ~mask[win]).sum() / raw.sum()) if raw.any() else 0.0,
    }
