"""GLASS local anomaly synthesis (LAS; Chen et al., ECCV 2024), image level, in numpy and cv2.

Per slot: two thresholded Perlin masks combined by union, intersection or the first alone (equal
probability), restricted to the foreground and redrawn while empty; a texture image drawn uniformly
from the texture set, resized to the image and changed by 3 of GLASS's 9 augmentations; blended as
``out = img * (1 - m) + (1 - beta) * tex * m + beta * img * m`` with ``beta ~ N(0.5, 0.1)``
clipped to [0.2, 0.8]. GLASS's feature-level global synthesis (GAS) belongs to its detector
training, not to an image synthesizer, and is not part of this.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from ..engine.pseudo_mask import grey
from .perlin import perlin_mask
from .textures import (TextureSet, TextureSlotSynthesizer, _autocontrast, _equalize, _rotate, augment_texture,
                       texture_set)


def _contrast(x, rng, colour):
    luma = grey(x) if colour else x
    return float(rng.uniform(0.8, 1.2)) * (x - luma.mean()) + luma.mean()


def _brightness(x, rng, colour):
    return x * float(rng.uniform(0.8, 1.2))


def _saturation_hue(x, rng, colour):
    saturation, hue = float(rng.uniform(0.8, 1.2)), float(rng.uniform(-0.2, 0.2))
    if not colour:
        return x
    hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * hue, 360.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


def _hflip(x, rng, colour):
    return x[:, ::-1].copy()


def _vflip(x, rng, colour):
    return x[::-1].copy()


def _greyscale(x, rng, colour):
    if not colour:
        return x
    return np.repeat(grey(x)[..., None], 3, axis=2)


#: GLASS's texture augmentations (torchvision in the original), in its order.
GLASS_AUGMENTERS = {
    "contrast": _contrast, "brightness": _brightness, "saturation_hue": _saturation_hue, "hflip": _hflip,
    "vflip": _vflip, "greyscale": _greyscale, "autocontrast": _autocontrast, "equalize": _equalize,
    "rotate": _rotate,
}


def glass_augment(texture, rng=None, n_ops: int = 3) -> tuple[np.ndarray, tuple[str, ...]]:
    """``n_ops`` distinct GLASS augmentations, drawn at random, applied in the drawn order.

    Contrast and brightness factors uniform in [0.8, 1.2]; saturation factor in [0.8, 1.2] with a
    hue shift in [-0.2, 0.2] of the hue circle; horizontal and vertical flips; greyscale;
    autocontrast; equalize; rotation uniform in [-45, 45] degrees (black corners).

    Parameters
    ----------
    texture : (h, w) or (h, w, 3) uint8 ndarray
    rng : None, int or numpy.random.Generator
    n_ops : int, 0 to 9

    Returns
    -------
    texture : uint8 ndarray, the input's shape
    ops : tuple of str
    """
    return augment_texture(texture, rng, n_ops, augmenters=GLASS_AUGMENTERS)


def glass_mask(shape, foreground, rng, max_exponent: int = 6, threshold: float = 0.5) -> np.ndarray:
    """Two Perlin masks combined by union, intersection or the first alone (1/3 each), in ``foreground``.

    Returns
    -------
    (H, W) bool ndarray, possibly empty
    """
    first = perlin_mask(shape, rng, threshold, max_exponent, rotate=True)
    second = perlin_mask(shape, rng, threshold, max_exponent, rotate=True)
    u = float(rng.uniform())
    mask = first | second if u > 2 / 3 else (first & second if u > 1 / 3 else first)
    return mask & foreground


@dataclass
class GLASSSynthesizer(TextureSlotSynthesizer):
    """GLASS local anomaly synthesis (``glass-las``) behind the synthesizer interface.

    Attributes
    ----------
    textures : TextureSet or sequence of (h, w[, 3]) uint8 ndarray
        Default: the same textures as ``draem`` (:func:`cai.baselines.textures.texture_set`).
    per_image, max_attempts : int
    max_exponent : int
        Perlin scales 2^e per axis, e in 0 .. max_exponent - 1.
    beta_mean, beta_std, beta_range
        ``beta ~ N(beta_mean, beta_std)`` clipped to ``beta_range`` (GLASS: 0.5, 0.1, (0.2, 0.8)).
    n_ops : int
        Texture augmentations per anomaly (GLASS: 3).
    fidelity_threshold : int
    """

    textures: TextureSet | Sequence[np.ndarray] = field(default_factory=texture_set)
    per_image: int = 10
    max_exponent: int = 6
    beta_mean: float = 0.5
    beta_std: float = 0.1
    beta_range: tuple[float, float] = (0.2, 0.8)
    n_ops: int = 3
    max_attempts: int = 20
    fidelity_threshold: int = 7

    name = "glass-las"
    anomaly_class = "glass"

    def __post_init__(self):
        super().__post_init__()
        lo, hi = self.beta_range
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"beta_range must satisfy 0 <= low <= high <= 1, got {self.beta_range}")

    def _mask(self, foreground, rng):
        return glass_mask(foreground.shape, foreground, rng, self.max_exponent)

    def _augment(self, texture, rng):
        return glass_augment(texture, rng, self.n_ops)[0]

    def _blend(self, normal, texture, mask, rng):
        """``normal * (1 - m) + (1 - beta) * texture * m + beta * normal * m``, rounded to uint8."""
        beta = float(np.clip(rng.normal(self.beta_mean, self.beta_std), *self.beta_range))
        m = mask[..., None] if normal.ndim == 3 else mask
        img = normal.astype(np.float64)
        out = img * (1 - m) + (1 - beta) * texture.astype(np.float64) * m + beta * img * m
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
