"""Source-target scale matching (STR, Eq. 1 of Wang, Hu et al. 2025)."""
from __future__ import annotations

import numpy as np

from ._checks import as_bool_mask, bbox
from .config import CAIConfig


def bbox_long_side(mask) -> int:
    """Longer side, in pixels, of the axis-aligned bounding box of a mask.

    Parameters
    ----------
    mask : (H, W) bool or 0/1 ndarray
        Non-empty mask.

    Returns
    -------
    int
        ``max(rows spanned, cols spanned)``.

    Raises
    ------
    ValueError
        If ``mask`` is not 2-D binary or is empty.

    Example
    -------
    >>> m = np.zeros((10, 10), bool); m[2:5, 1:9] = True
    >>> bbox_long_side(m)
    8
    """
    mask = as_bool_mask(mask, "mask")
    if not mask.any():
        raise ValueError("mask is empty: an empty mask has no bounding box")
    r0, c0, r1, c1 = bbox(mask)
    return max(r1 - r0, c1 - c0)


def scale_transfer_ratio(anomaly_long_side: float, foreground_long_side: float) -> float:
    """R = s_a / s_f (Eq. 1): anomaly bounding-box long side over the target foreground's.

    Both sides are in pixels of their own images (source image and target image).

    Example
    -------
    >>> scale_transfer_ratio(64, 256)
    0.25
    """
    if anomaly_long_side <= 0 or foreground_long_side <= 0:
        raise ValueError(
            f"both long sides must be positive, got s_a={anomaly_long_side}, s_f={foreground_long_side}"
        )
    return float(anomaly_long_side) / float(foreground_long_side)


def scale_type(ratio: float, config: CAIConfig = CAIConfig()) -> str:
    """Scale type of a ratio R: ``"trivial"`` (R < 0.1), ``"small"`` [0.1, 0.3), ``"medium"`` [0.3, 0.7)
    or ``"large"`` (R >= 0.7), with the bounds taken from ``config``.

    Example
    -------
    >>> scale_type(0.3), scale_type(0.0999), scale_type(5.0)
    ('medium', 'trivial', 'large')
    """
    if not np.isfinite(ratio) or ratio < 0:
        raise ValueError(f"ratio must be a finite non-negative number, got {ratio}")
    if ratio < config.trivial_below:
        return "trivial"
    if ratio < config.small_below:
        return "small"
    if ratio < config.medium_below:
        return "medium"
    return "large"


def draw_target_ratio(scale: str, rng=None, config: CAIConfig = CAIConfig()) -> float:
    """Draw R' uniformly in the interval of ``scale``; the pattern is then resized by r = R' / R.

    Example
    -------
    >>> 0.3 <= draw_target_ratio("medium", rng=0) < 0.7
    True
    """
    low, high = config.interval(scale)
    return float(np.random.default_rng(rng).uniform(low, high))
