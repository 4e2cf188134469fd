"""Border policy for DAAD rows whose defect touches the image border (a truncated defect: the photo
cuts it with a straight edge that CAI would otherwise carry into every pseudo anomaly made from it).

Per source (recipe ``border:`` default, overridden by a source's own ``border:``):

``keep``     the row is published as is (flag ``touches_border``);
``trim``     mask pixels closer than ``border_trim`` px to the image border are removed, so the mask
             (and CAI's Poisson region around it, which extends 2 px) ends on real defect pixels
             inside the image instead of at the cut; the row gets ``border_trimmed`` (and, like any
             row, ``trivial``/``empty`` if too little is left);
``exclude``  the row is not published (reason ``border_excluded``).

Which policy CAI is best served by is measured by the evaluation, not decided here.
"""
from __future__ import annotations

import numpy as np

POLICIES = ("keep", "trim", "exclude")


def check_policy(value, where: str = "border") -> str:
    """``value`` when it is one of :data:`POLICIES`; ValueError naming ``where`` otherwise."""
    if value not in POLICIES:
        raise ValueError(f"{where} must be one of {POLICIES}, got {value!r}")
    return value


def touches_border(mask) -> bool:
    """Whether a (H, W) bool mask has a pixel on the image's outermost rows or columns."""
    mask = np.asarray(mask, bool)
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def trim_border(mask, px: int) -> np.ndarray:
    """The mask without its pixels closer than ``px`` to the image border.

    Parameters
    ----------
    mask : (H, W) bool ndarray
    px : int >= 1

    Returns
    -------
    (H, W) bool ndarray, a new array (the input is not changed)

    Examples
    --------
    >>> m = np.ones((4, 6), bool)
    >>> trim_border(m, 1).astype(int)
    array([[0, 0, 0, 0, 0, 0],
           [0, 1, 1, 1, 1, 0],
           [0, 1, 1, 1, 1, 0],
           [0, 0, 0, 0, 0, 0]])
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if int(px) < 1:
        raise ValueError(f"border_trim must be >= 1 px, got {px}")
    px = int(px)
    out = mask.copy()
    out[:px] = False
    out[-px:] = False
    out[:, :px] = False
    out[:, -px:] = False
    return out


def policy_counts(rows, policies: dict, default: str) -> dict:
    """Per source: its policy and how many rows touched the border, were trimmed or excluded.

    Parameters
    ----------
    rows : iterable of (source, flags)
    policies : dict
        source -> policy (sources not in it use ``default``).

    Returns
    -------
    dict
        source -> ``{"policy", "rows", "touching", "trimmed", "excluded"}``; ``touching`` counts rows
        whose source mask touched the border (``touches_border`` or ``border_trimmed``).
    """
    out = {}
    for source, flags in rows:
        e = out.setdefault(source, {"policy": policies.get(source, default), "rows": 0, "touching": 0,
                                    "trimmed": 0, "excluded": 0})
        e["rows"] += 1
        flags = set(flags)
        e["touching"] += bool(flags & {"touches_border", "border_trimmed"})
        e["trimmed"] += "border_trimmed" in flags
        e["excluded"] += "border_excluded" in flags
    return dict(sorted(out.items()))
