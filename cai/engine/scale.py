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


def foreground_scale(foreground, reference: str = "long") -> tuple[float, tuple[int, int]]:
    """The foreground size s_f of Eq. 1 under ``reference`` (see ``CAIConfig.scale_reference``), and the
    (rows, cols) extent of the foreground's bounding box.

    ``"long"`` and ``"along"``: the box's long side (``"along"`` then resizes each placed defect by
    :func:`along_factor`); ``"mean"``: the geometric mean of its sides.

    Example
    -------
    >>> fg = np.zeros((10, 10), bool); fg[0:8, 2:4] = True
    >>> foreground_scale(fg), foreground_scale(fg, "mean")
    ((8.0, (8, 2)), (4.0, (8, 2)))
    """
    foreground = as_bool_mask(foreground, "foreground")
    if not foreground.any():
        raise ValueError("foreground is empty: an empty mask has no bounding box")
    r0, c0, r1, c1 = bbox(foreground)
    extent = (r1 - r0, c1 - c0)
    if reference == "mean":
        return float(np.sqrt(extent[0] * extent[1])), extent
    if reference in ("long", "along"):
        return float(max(extent)), extent
    raise ValueError(f"reference must be 'long', 'along' or 'mean', got {reference!r}")


def along_factor(mask, extent: tuple[int, int], reference: str = "long") -> float:
    """Extra resize of a pattern under ``reference="along"``: the foreground's extent along the
    pattern's long axis (rows when the mask's box is at least as tall as wide) over the long side
    ``max(extent)``; 1.0 for the other references, a square box or an empty mask.

    Example
    -------
    >>> m = np.zeros((5, 20), bool); m[2, 1:19] = True  # a horizontal defect
    >>> along_factor(m, (400, 100), "along"), along_factor(m.T, (400, 100), "along")
    (0.25, 1.0)
    """
    if reference != "along" or extent[0] == extent[1]:
        return 1.0
    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    cols = np.flatnonzero(np.asarray(mask).any(axis=0))
    if rows.size == 0:
        return 1.0
    upright = rows[-1] - rows[0] >= cols[-1] - cols[0]
    return extent[0 if upright else 1] / max(extent)


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
