"""DRAEM-style pseudo anomalies (Zavrtanik et al., ICCV 2021): Perlin masks filled with augmented textures."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from ..engine._checks import bbox, check_image
from ..engine.inject import match_colour_mode
from ..engine.synthesizer import Skipped
from ._common import SlotSynthesizer, _check_positive_int, _made, _resamples
from .perlin import perlin_mask
from .textures import TextureSet, augment_texture, blend_texture, texture_set


@dataclass
class DRAEMSynthesizer(SlotSynthesizer):
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
        if not isinstance(self.textures, TextureSet):
            self.textures = TextureSet.from_arrays(self.textures)
        _check_positive_int(self.per_image, "per_image")
        _check_positive_int(self.max_attempts, "max_attempts")
        if not 0 <= self.beta_max <= 1:
            raise ValueError(f"beta_max must be in [0, 1], got {self.beta_max}")

    name = "draem"

    def _one(self, normal, foreground, k, rng):
        H, W = foreground.shape
        resamples = _resamples()
        for attempt in range(1, self.max_attempts + 1):
            mask = perlin_mask((H, W), rng, self.threshold, self.max_exponent, self.rotate) & foreground
            if not mask.any():
                resamples["empty_mask"] += 1
                continue
            t = int(rng.integers(len(self.textures.ids)))
            texture = match_colour_mode(check_image(self.textures.load(t), "texture"), normal.ndim == 2)
            if texture.shape[:2] != (H, W):
                texture = cv2.resize(texture, (W, H), interpolation=cv2.INTER_AREA
                                     if texture.shape[0] * texture.shape[1] > H * W else cv2.INTER_LINEAR)
            texture, _ = augment_texture(texture, rng, self.n_ops)
            opacity = 1.0 - float(rng.uniform(0, self.beta_max))
            image = blend_texture(normal, texture, mask, opacity)
            r0, c0, r1, c1 = bbox(mask)
            return _made(normal, image, mask, mask.copy(), k, "draem", 0.0, 0.0, ((r0 + r1 - 1) // 2, (c0 + c1 - 1) // 2),
                         f"texture:{self.textures.ids[t]}", "texture", attempt, resamples, self.fidelity_threshold)
        return Skipped(k, "max_attempts", "", resamples)
