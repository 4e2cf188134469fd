"""DRAEM-style pseudo anomalies (Zavrtanik et al., ICCV 2021): Perlin masks filled with augmented textures."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .perlin import perlin_mask
from .textures import TextureSet, TextureSlotSynthesizer, augment_texture, blend_texture, texture_set


@dataclass
class DRAEMSynthesizer(TextureSlotSynthesizer):
    """DRAEM-style pseudo anomalies (Zavrtanik et al. 2021).

    Per slot: a :func:`perlin_mask` (scales 2^0-2^5 per axis, rotated, noise > 0.5) within the
    foreground (redrawn while empty), a texture drawn uniformly from ``textures``, resized to the
    image, in the target's colour mode, augmented by :func:`augment_texture` (3 augmenters), and
    blended by :func:`blend_texture` with ``opacity = 1 - beta``, ``beta`` uniform in
    [0, ``beta_max``) (DRAEM's code: the normal image keeps weight ``beta``, so the texture's weight
    is in (0.2, 1]). ``mask`` = ``placed_mask`` = the Perlin mask in the foreground. DRAEM's 50 %
    of untouched training images is the training loop's business, not done here.

    Attributes
    ----------
    textures : TextureSet or sequence of (h, w[, 3]) uint8 ndarray
        Default: :func:`texture_set` () — the embedded sample's anomaly photographs.
    per_image, max_attempts : int
    threshold : float
        Perlin threshold (DRAEM: 0.5).
    max_exponent : int
        Scale exponents are drawn from 0 .. max_exponent - 1 (DRAEM: 6).
    beta_max : float
        Upper end of beta (DRAEM: 0.8).
    n_ops : int
        Texture augmenters per anomaly (DRAEM: 3).
    fidelity_threshold : int
        Grey-level threshold of the fidelity figures (as CAI's).
    """

    textures: TextureSet | Sequence[np.ndarray] = field(default_factory=texture_set)
    per_image: int = 10
    threshold: float = 0.5
    max_exponent: int = 6
    rotate: bool = True
    beta_max: float = 0.8
    n_ops: int = 3
    max_attempts: int = 20
    fidelity_threshold: int = 7

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.beta_max <= 1:
            raise ValueError(f"beta_max must be in [0, 1], got {self.beta_max}")

    name = "draem"
    anomaly_class = "draem"

    def _mask(self, foreground, rng):
        return perlin_mask(foreground.shape, rng, self.threshold, self.max_exponent, self.rotate) & foreground

    def _augment(self, texture, rng):
        return augment_texture(texture, rng, self.n_ops)[0]

    def _blend(self, normal, texture, mask, rng):
        return blend_texture(normal, texture, mask, 1.0 - float(rng.uniform(0, self.beta_max)))
