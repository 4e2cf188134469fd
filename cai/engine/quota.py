"""Multi-scale quota planning (STM + MAS, Algorithm 1 of Wang, Hu et al. 2025)."""
from __future__ import annotations

import numpy as np

from .config import SCALES, CAIConfig
from .scale import draw_target_ratio

_RANK = {"trivial": -1, "small": 0, "medium": 1, "large": 2}


def plan_scales(quota=(4, 3, 3)) -> list[str]:
    """The scale of each pseudo anomaly of one normal image, larger quotas first.

    Parameters
    ----------
    quota : (3,) sequence of int
        Number of large, medium and small pseudo anomalies.

    Returns
    -------
    list of str
        ``sum(quota)`` entries; entry k is the scale pseudo anomaly k is made at.

    Example
    -------
    >>> plan_scales((2, 1, 1))
    ['large', 'large', 'medium', 'small']
    """
    if len(quota) != 3 or any(int(q) != q or q < 0 for q in quota):
        raise ValueError(f"quota must be three non-negative integers, got {quota!r}")
    return [scale for scale, count in zip(SCALES, quota) for _ in range(int(count))]


def can_serve(pattern_scale: str, slot_scale: str) -> bool:
    """A pattern serves its own scale or a smaller one, never a larger one (no enlarging).

    Example
    -------
    >>> can_serve("large", "small"), can_serve("small", "medium"), can_serve("trivial", "small")
    (True, False, False)
    """
    if slot_scale not in SCALES:
        raise ValueError(f"slot_scale must be one of {SCALES}, got {slot_scale!r}")
    return _RANK[pattern_scale] >= _RANK[slot_scale]


def eligible_patterns(ratios, slot_scale: str, config: CAIConfig = CAIConfig()) -> np.ndarray:
    """Indices of patterns whose scale-transfer ratio can serve ``slot_scale``.

    Parameters
    ----------
    ratios : (P,) float ndarray
        R of every pattern against the current target foreground.

    Returns
    -------
    (Q,) int64 ndarray
        Sorted indices i with ``scale_type(ratios[i]) >= slot_scale`` (never trivial).
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.ndim != 1:
        raise ValueError(f"ratios must be 1-D, got shape {ratios.shape}")
    low = {"small": config.trivial_below, "medium": config.small_below, "large": config.medium_below}
    if slot_scale not in low:
        raise ValueError(f"slot_scale must be one of {SCALES}, got {slot_scale!r}")
    return np.flatnonzero(ratios >= low[slot_scale])


def choose_pattern(ratios, slot_scale: str, rng=None, config: CAIConfig = CAIConfig(), classes=None):
    """Draw a pattern for a slot uniformly among those that can serve it, and its target ratio R'.

    This is Algorithm 1's draw-until-it-fits loop without the wasted draws: a uniform draw
    conditioned on the pattern serving the slot. With ``config.draw == "class"`` the draw is in two
    steps: a class uniformly among the classes of the patterns that can serve the slot, then one of
    that class's patterns uniformly.

    Parameters
    ----------
    classes : (P,) int ndarray, optional
        Class code of every pattern (required when ``config.draw == "class"``).

    Returns
    -------
    (int, float, float) or None
        (pattern index, R', resize ratio r = R' / R), or None when no pattern can serve the slot.
    """
    rng = np.random.default_rng(rng)
    candidates = eligible_patterns(ratios, slot_scale, config)
    if candidates.size == 0:
        return None
    if config.draw == "class":
        if classes is None:
            raise ValueError("config.draw == 'class' needs the patterns' class codes (classes=)")
        codes = np.asarray(classes)[candidates]
        present = np.unique(codes)
        candidates = candidates[codes == present[rng.integers(present.size)]]
    index = int(candidates[rng.integers(candidates.size)])
    target_ratio = draw_target_ratio(slot_scale, rng, config)
    return index, target_ratio, target_ratio / float(np.asarray(ratios)[index])
