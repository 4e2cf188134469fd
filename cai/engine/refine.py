"""A defect's deviation from its own background, and source masks refined to the visible defect.

Both rest on the source background under the defect, estimated as the harmonic (membrane)
interpolation of the pixels around it: the solution of Laplace's equation on the defect mask with
the surrounding source pixels as boundary values (Poisson blending with a zero guidance field).
"""
from __future__ import annotations

import cv2
import numpy as np

from ._checks import as_bool_mask, check_image
from .poisson import poisson_blend


def source_background(image, mask) -> np.ndarray:
    """Harmonic interpolation of ``image`` over ``mask`` from the pixels around it.

    Parameters
    ----------
    image : (h, w) or (h, w, 3) uint8 ndarray
    mask : (h, w) bool ndarray

    Returns
    -------
    (h, w) or (h, w, 3) float32 ndarray
        ``image`` outside ``mask``; inside, the smooth membrane through the surrounding pixels
        (the crop's edge is replicated where the mask touches it).
    """
    image = check_image(image, "image")
    mask = as_bool_mask(mask, "mask")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape[:2]}")
    if not mask.any():
        return image.astype(np.float32)
    padded = cv2.copyMakeBorder(image, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    region = np.pad(mask, 1)
    out = poisson_blend(padded, np.zeros_like(padded), region)
    return out[1:-1, 1:-1]


def defect_deviation(image, mask) -> np.ndarray:
    """The defect as a signed deviation from its own background: ``image - source_background``
    on ``mask``, 0 elsewhere.

    Returns
    -------
    (h, w) or (h, w, 3) float32 ndarray, in grey levels (about -255 .. 255)
    """
    mask = as_bool_mask(mask, "mask")
    dev = np.asarray(image, np.float32) - source_background(image, mask)
    dev[~mask] = 0.0
    return dev


def refine_defect_mask(image, mask, k: float = 2.5, ring: int = 6, min_component: int = 5,
                       min_keep: float = 0.05) -> np.ndarray:
    """Keep the visibly defective pixels of a (possibly coarse) defect mask.

    A pixel of ``mask`` is kept when its deviation from the source background
    (:func:`defect_deviation`, largest absolute channel) exceeds ``k`` robust standard deviations
    (1.4826 x median absolute deviation) of the same image's texture in a ring of ``ring`` pixels
    around the mask — i.e. it differs from the background more than the background differs from
    itself. Components under ``min_component`` pixels are dropped and the result is closed by a
    3 x 3 square. When less than ``min_keep`` of the mask would remain, the mask is returned
    unchanged (nothing stands out: a faint or texture-like defect).

    Parameters
    ----------
    image : (h, w) or (h, w, 3) uint8 ndarray
    mask : (h, w) bool ndarray, non-empty

    Returns
    -------
    (h, w) bool ndarray, a subset of ``mask``
    """
    mask = as_bool_mask(mask, "mask")
    if not mask.any():
        raise ValueError("mask is empty")
    dev = defect_deviation(image, mask)
    mag = np.abs(dev).max(axis=2) if dev.ndim == 3 else np.abs(dev)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    around = cv2.dilate(mask.astype(np.uint8), disk).astype(bool) & ~mask
    if around.sum() < 20:
        return mask.copy()
    grey = np.asarray(image, np.float32)
    grey = grey.max(axis=2) if grey.ndim == 3 else grey
    texture = grey - cv2.GaussianBlur(grey, (0, 0), 2.0)
    t = texture[around]
    spread = max(1.4826 * float(np.median(np.abs(t - np.median(t)))), 1.0)
    keep = mask & (mag > k * spread)
    if min_component > 1 and keep.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(keep.astype(np.uint8), connectivity=8)
        ok = stats[:, cv2.CC_STAT_AREA] >= min_component
        ok[0] = False
        keep = ok[labels]
    keep = cv2.morphologyEx(keep.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool) & mask
    if keep.sum() < min_keep * mask.sum():
        return mask.copy()
    return keep


def grow_within(mask, limit, radius: int) -> np.ndarray:
    """``mask`` dilated by ``radius`` pixels (elliptic kernel), then cut to ``limit``.

    mask, limit : (h, w) bool ndarray (e.g. a refined defect mask and the source's own mask).
    Returns a new (h, w) bool ndarray; ``radius`` 0 gives ``mask & limit``.
    """
    mask, limit = as_bool_mask(mask, "mask"), as_bool_mask(limit, "limit")
    if mask.shape != limit.shape:
        raise ValueError(f"mask {mask.shape} and limit {limit.shape} differ in shape")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if radius == 0:
        return mask & limit
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & limit
