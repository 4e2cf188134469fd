"""What the pipeline benchmarks share: the ``cv2.seamlessClone`` stand-in for our Poisson blend."""
import cv2
import numpy as np


def cv2_blend(target, source, region, mode="normal"):
    """Drop-in for ``cai.engine.inject.poisson_blend`` on cv2.seamlessClone (solves the region's bbox).

    Parameters
    ----------
    target, source : (H, W) or (H, W, 3) uint8 ndarray
        Grey images go through cv2 as 3 equal channels.
    region : (H, W) bool ndarray, not empty
    mode : {"normal", "mixed"}

    Returns
    -------
    (H, W) or (H, W, 3) float32 ndarray, the target's shape
    """
    grey = target.ndim == 2
    t = cv2.cvtColor(target, cv2.COLOR_GRAY2BGR) if grey else np.ascontiguousarray(target)
    s = cv2.cvtColor(source, cv2.COLOR_GRAY2BGR) if grey else np.ascontiguousarray(source)
    rows, cols = np.nonzero(region)
    center = (int((cols.min() + cols.max() + 1) // 2), int((rows.min() + rows.max() + 1) // 2))
    flag = cv2.NORMAL_CLONE if mode == "normal" else cv2.MIXED_CLONE
    out = cv2.seamlessClone(s, t, region.astype(np.uint8) * 255, center, flag)
    return (out[..., 0] if grey else out).astype(np.float32)
