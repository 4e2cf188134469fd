"""Does a labelled change stand out from the part's own texture at its own size?

A defect's *contrast* is its mean luma minus the mean luma of a ring 2-5 px around it. The same footprint
(the mask and its ring) moved to random places of the normal image gives the contrasts ordinary texture
makes at that size; a pseudo anomaly *stands out* when its |contrast| exceeds their ``quantile``. The
thirteenth round measured that only 21-36 % of NSA's in-domain patches stand out (95-100 % of CAI's), and
that training on the rest teaches false alarms (recipes/evaluate/README.md).
"""
from __future__ import annotations

import numpy as np

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
