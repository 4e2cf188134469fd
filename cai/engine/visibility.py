"""Does a labelled change stand out from the part's own texture at its own size?

A defect's *contrast* is its mean luma minus the mean luma of a ring 2-5 px around it. The same footprint
(the mask and its ring) moved to random places of the normal image gives the contrasts ordinary texture
makes at that size; a pseudo anomaly *stands out* when its |contrast| exceeds their ``quantile``. The
thirteenth round measured that only 21-36 % of NSA's in-domain patches stand out (95-100 % of CAI's), and
that training on the rest teaches false alarms (recipes/evaluate/README.md).

A change is *novel* when the window around it (its bounding box grown by ``NOVELTY_MARGIN``) matches no
window elsewhere in the normal image as closely as ordinary windows of that size match one another: a
patch of the part's own texture moved to another place is not novel however much its mean differs from
its ring, a broken period of a regular pattern is.
"""
from __future__ import annotations

import cv2
import numpy as np

from ._checks import bbox
from .pseudo_mask import dilate, grey

#: Ring around a footprint: pixels 2 to 5 px from the mask (inner, outer radius).
RING = (2, 5)


def contrast(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean luma on ``mask`` minus mean luma on the ring 2-5 px around it; NaN without a ring or a mask.

    image : (H, W) or (H, W, 3) uint8/float RGB or luma, 0-255; mask : (H, W) bool. Returns grey levels.
    """
    ring = dilate(mask, RING[1]) & ~dilate(mask, RING[0])
    if not ring.any() or not mask.any():
        return float("nan")
    g = grey(image)
    return float(g[mask].mean() - g[ring].mean())


def texture_contrasts(normal: np.ndarray, mask: np.ndarray, foreground: np.ndarray, rng: np.random.Generator,
                      n: int = 16) -> np.ndarray:
    """|contrast| of ``mask``'s footprint (the mask and its ring, as :func:`contrast`) at ``n`` random places
    of ``normal`` whose footprint lies inside ``foreground``.

    normal : (H, W) or (H, W, 3), 0-255; mask, foreground : (H, W) bool; rng draws ``n`` tops and lefts.
    Returns (m,) float64, m <= n: placements leaving the foreground are dropped, not redrawn; empty when
    the footprint is larger than the image or ``mask`` is empty.
    """
    if not mask.any():
        return np.zeros(0)
    rows, cols = np.nonzero(mask)
    pad = RING[1]
    crop = np.zeros((rows.max() - rows.min() + 1 + 2 * pad, cols.max() - cols.min() + 1 + 2 * pad), bool)
    crop[rows - rows.min() + pad, cols - cols.min() + pad] = True
    ring = dilate(crop, RING[1]) & ~dilate(crop, RING[0])
    h, w = crop.shape
    H, W = foreground.shape
    if h > H or w > W:
        return np.zeros(0)
    g, both, out = grey(normal), crop | ring, []
    for top, left in zip(rng.integers(0, H - h + 1, n), rng.integers(0, W - w + 1, n)):
        if foreground[top:top + h, left:left + w][both].all():
            window = g[top:top + h, left:left + w]
            out.append(abs(float(window[crop].mean() - window[ring].mean())))
    return np.asarray(out, np.float64)


def stands_out(normal: np.ndarray, image: np.ndarray, mask: np.ndarray, foreground: np.ndarray,
               rng: np.random.Generator, quantile: float = 0.9, n: int = 16) -> bool | None:
    """Whether ``mask``'s |contrast| in ``image`` exceeds the ``quantile`` of :func:`texture_contrasts` of
    the same footprint in ``normal`` (the image before the change).

    normal, image : (H, W) or (H, W, 3), 0-255, same shape; mask, foreground : (H, W) bool.
    Returns None when it cannot be measured: no ring around the mask, or no placement of its footprint
    inside the foreground.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    value = contrast(image, mask)
    null = texture_contrasts(normal, mask, foreground, rng, n)
    if not np.isfinite(value) or not null.size:
        return None
    return bool(abs(value) > np.quantile(null, quantile))


#: Pixels added on each side of a footprint's bounding box to make the window a change is judged by.
NOVELTY_MARGIN = 4


def _window_box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of ``mask``'s bounding box grown by ``margin`` and cut to the image."""
    if not mask.any():
        return None
    r0, c0, r1, c1 = bbox(mask)
    top, left = max(r0 - margin, 0), max(c0 - margin, 0)
    bottom, right = min(r1 + margin, mask.shape[0]), min(c1 + margin, mask.shape[1])
    return top, left, bottom - top, right - left


def window_inside(mask: np.ndarray, foreground: np.ndarray, margin: int = NOVELTY_MARGIN) -> bool:
    """Whether the window a change is judged by (``mask``'s bounding box grown by ``margin``) lies wholly
    inside ``foreground`` (both (H, W) bool); False for an empty mask."""
    box = _window_box(mask, margin)
    if box is None:
        return False
    top, left, h, w = box
    return bool(foreground[top:top + h, left:left + w].all())


def nearest_window_distance(luma: np.ndarray, window: np.ndarray, top: int, left: int) -> float:
    """Smallest mean squared difference between ``window`` and a window of ``luma`` that does not overlap
    the place (``top``, ``left``) it came from by half its size or more in both axes.

    luma : (H, W) float32, 0-255; window : (h, w) float32. Returns grey levels squared; NaN when no such
    placement exists (the window is over half the image in both axes).
    """
    h, w = window.shape
    ssd = cv2.matchTemplate(luma, window, cv2.TM_SQDIFF)  # (H-h+1, W-w+1): ssd[y, x] for the window at (y, x)
    y0, x0 = max(top - h // 2, 0), max(left - w // 2, 0)
    ssd[y0:top + h // 2 + 1, x0:left + w // 2 + 1] = np.inf
    best = float(ssd.min())
    return best / (h * w) if np.isfinite(best) else float("nan")


def texture_novelties(normal: np.ndarray, box: tuple[int, int], foreground: np.ndarray, rng: np.random.Generator,
                      n: int = 16) -> np.ndarray:
    """:func:`nearest_window_distance` of ``n`` random (h, w) = ``box`` windows of ``normal`` lying inside
    ``foreground``: how closely ordinary windows of that size are matched elsewhere in the same image.

    normal : (H, W) or (H, W, 3), 0-255; foreground : (H, W) bool. Returns (m,) float64, m <= n
    (placements leaving the foreground, or without a non-overlapping match, are dropped, not redrawn).
    """
    h, w = box
    H, W = foreground.shape
    if h > H or w > W:
        return np.zeros(0)
    luma, out = grey(normal), []
    for top, left in zip(rng.integers(0, H - h + 1, n), rng.integers(0, W - w + 1, n)):
        if foreground[top:top + h, left:left + w].all():
            d = nearest_window_distance(luma, luma[top:top + h, left:left + w], int(top), int(left))
            if np.isfinite(d):
                out.append(d)
    return np.asarray(out, np.float64)


def novelty(normal: np.ndarray, image: np.ndarray, mask: np.ndarray, foreground: np.ndarray,
            rng: np.random.Generator, n: int = 16, margin: int = NOVELTY_MARGIN) -> tuple[float, np.ndarray] | None:
    """The changed window's distance to its nearest other window of ``normal`` and the null of ordinary ones.

    The window is ``mask``'s bounding box grown by ``margin``, cut from ``image`` (the changed image) and
    matched, by :func:`nearest_window_distance`, against ``normal`` (the image before the change) away
    from its own place; the null is :func:`texture_novelties` of the same window size.

    normal, image : (H, W) or (H, W, 3), 0-255, same shape; mask, foreground : (H, W) bool.
    Returns (distance, null distances) or None when either cannot be measured.
    """
    box = _window_box(mask, margin)
    if box is None:
        return None
    top, left, h, w = box
    luma = grey(normal)  # once: the null below takes it as a grey image
    value = nearest_window_distance(luma, grey(image[top:top + h, left:left + w]), top, left)
    null = texture_novelties(luma, (h, w), foreground, rng, n)
    if not np.isfinite(value) or not null.size:
        return None
    return value, null


def is_novel(normal: np.ndarray, image: np.ndarray, mask: np.ndarray, foreground: np.ndarray,
             rng: np.random.Generator, quantile: float = 0.9, n: int = 16, factor: float = 1.0) -> bool | None:
    """Whether the change around ``mask`` is further from every other window of ``normal`` than ``factor``
    times the ``quantile`` of ordinary windows (:func:`novelty`); None when it cannot be measured.

    ``quantile`` in (0, 1] (1: the most isolated ordinary window), ``factor`` >= 1.
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
    if not factor >= 1.0:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    measured = novelty(normal, image, mask, foreground, rng, n)
    if measured is None:
        return None
    value, null = measured
    return bool(value > factor * np.quantile(null, quantile))
