"""Perlin noise and the thresholded, rotated Perlin masks of DRAEM and GLASS."""
from __future__ import annotations

import cv2
import numpy as np


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic 6 t^5 - 15 t^4 + 10 t^3 (zero first and second derivatives at 0 and 1)."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(shape, scales, rng=None) -> np.ndarray:
    """2-D gradient (Perlin) noise with ``scales`` lattice cells along rows and columns.

    Random unit gradients sit on an (sr + 1, sc + 1) lattice spanning the image; pixel (r, c) lies
    at lattice coordinate ``(r * sr / H, c * sc / W)``, takes the dot products of the four corner
    gradients with its offsets to them and blends them with the quintic fade. The result is scaled
    by sqrt(2) (as DRAEM's generator) so that it lies in [-1, 1]; it is 0 on lattice points.

    Parameters
    ----------
    shape : (int, int)
        (H, W) of the output.
    scales : (int, int)
        Lattice cells (sr, sc) along rows and columns, each >= 1 (DRAEM: powers of 2).
    rng : None, int or numpy.random.Generator
        Source of the gradient angles.

    Returns
    -------
    (H, W) float64 ndarray, values in [-1, 1]

    Example
    -------
    >>> n = perlin_noise((8, 8), (2, 2), rng=0)
    >>> n.shape, float(n[0, 0]), float(n[4, 4]), bool(np.abs(n).max() <= 1)
    ((8, 8), 0.0, 0.0, True)
    """
    H, W = (int(v) for v in shape)
    sr, sc = (int(v) for v in scales)
    if H < 1 or W < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    if sr < 1 or sc < 1:
        raise ValueError(f"scales must be positive integers, got {scales}")
    angles = np.random.default_rng(rng).uniform(0, 2 * np.pi, (sr + 1, sc + 1))
    g_row, g_col = np.sin(angles), np.cos(angles)  # gradient components along rows and columns
    tr, tc = np.arange(H) * sr / H, np.arange(W) * sc / W
    ir, ic = np.floor(tr).astype(np.int64), np.floor(tc).astype(np.int64)
    fr, fc = (tr - ir)[:, None], (tc - ic)[None, :]
    ir, ic = ir[:, None], ic[None, :]

    def corner(dr, dc):  # gradient of corner (ir + dr, ic + dc) dotted with the offset to it
        return g_row[ir + dr, ic + dc] * (fr - dr) + g_col[ir + dr, ic + dc] * (fc - dc)

    u, v = _fade(fr), _fade(fc)
    top = corner(0, 0) * (1 - v) + corner(0, 1) * v
    bottom = corner(1, 0) * (1 - v) + corner(1, 1) * v
    return np.sqrt(2) * (top * (1 - u) + bottom * u)


def perlin_mask(shape, rng=None, threshold: float = 0.5, max_exponent: int = 6, rotate: bool = True):
    """DRAEM's anomaly shape: Perlin noise with random scales, optionally rotated, thresholded.

    Scales are ``2 ** e`` with ``e`` drawn independently for rows and columns from
    ``0 .. max_exponent - 1`` (DRAEM: 0-5, i.e. 1-32 cells). The rotation angle is uniform in
    [-90, 90) degrees about the image centre; corners the rotated noise does not cover are 0.

    Parameters
    ----------
    shape : (int, int)
        (H, W).
    rng : None, int or numpy.random.Generator
    threshold : float
        Pixels whose noise exceeds it are in the mask (DRAEM: 0.5).
    max_exponent : int
        Exclusive upper bound of the scale exponent (>= 1).
    rotate : bool

    Returns
    -------
    (H, W) bool ndarray, possibly empty

    Example
    -------
    >>> m = perlin_mask((32, 32), rng=1)
    >>> m.shape, m.dtype
    ((32, 32), dtype('bool'))
    """
    if max_exponent < 1:
        raise ValueError(f"max_exponent must be >= 1, got {max_exponent}")
    rng = np.random.default_rng(rng)
    H, W = (int(v) for v in shape)
    scales = (2 ** int(rng.integers(max_exponent)), 2 ** int(rng.integers(max_exponent)))
    noise = perlin_noise((H, W), scales, rng).astype(np.float32)
    if rotate:
        m = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), float(rng.uniform(-90, 90)), 1.0)
        noise = cv2.warpAffine(noise, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)
    return noise > threshold
