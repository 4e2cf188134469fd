"""Baseline pseudo-anomaly synthesizers and CAI ablations (one module each) behind CAI's synthesizer interface.

Every synthesizer here has a ``name`` and ``synthesize(normal, foreground, normal_index, seed,
is_grey=False)`` returning one :class:`~cai.engine.synthesizer.PseudoAnomaly` or
:class:`~cai.engine.synthesizer.Skipped` per slot ``k``, with the randomness of slot ``k`` of normal image
``i`` drawn from ``np.random.default_rng([seed, i, k])`` only, so results do not depend on
sharding, worker count or call order. Images come back (H, W, 3) uint8, or (H, W) uint8 for grey
targets; ``mask`` and ``placed_mask`` are (H, W) bool.

Baselines (each changes pixels inside the foreground only):

* :class:`CutPasteSynthesizer` — CutPaste and CutPaste-scar (Li et al., CVPR 2021): a rectangle
  (or a thin rotated scar) cut from the same image, colour-jittered, pasted elsewhere; the mask is
  the pasted patch.
* :class:`NSASynthesizer` — Natural Synthetic Anomalies, Normal and Mixed (Schlüter et al., ECCV
  2022): a patch of *another* normal image of the same target, resized and Poisson-blended; the
  mask is the thresholded, median-cleaned difference.
* :class:`GLASSSynthesizer` — GLASS local anomaly synthesis (Chen et al., ECCV 2024), ``glass-las``.
* :class:`DRAEMSynthesizer` — DRAEM-style (Zavrtanik et al., ICCV 2021): a thresholded, rotated
  Perlin-noise mask filled with an augmented texture image, blended with opacity in [0.2, 1].

CAI ablations (paper Tables 3 and 4) are :class:`~cai.engine.synthesizer.CAISynthesizer` with another
:class:`~cai.engine.config.CAIConfig` or :class:`CAIVariant` (no scale matching, no injection location
selection, other scale mixes); :class:`SlotMixture` makes a share of CAI's slots by another synthesizer
(``cai+nsan25``), and :class:`VisibleOnly` keeps only another synthesizer's slots that stand out from the
part's texture (``cai+nsanv25``). :func:`make_synthesizer` builds any of them by name
(:data:`SYNTHESIZERS`).

References
----------
.. [1] C.-L. Li, K. Sohn, J. Yoon, T. Pfister, "CutPaste: Self-Supervised Learning for Anomaly
   Detection and Localization", CVPR 2021.
.. [2] H. M. Schlüter, J. Tan, B. Hou, B. Kainz, "Natural Synthetic Anomalies for Self-Supervised
   Anomaly Detection and Localization", ECCV 2022.
.. [3] V. Zavrtanik, M. Kristan, D. Skočaj, "DRAEM — A discriminatively trained reconstruction
   embedding for surface anomaly detection", ICCV 2021.
.. [4] K. Perlin, "Improving noise", SIGGRAPH 2002 (the quintic fade).
"""
from __future__ import annotations

from .cai_ablations import CAIVariant
from .cutpaste import CutPasteSynthesizer, colour_jitter
from .draem import DRAEMSynthesizer
from .glass import GLASSSynthesizer, glass_augment, glass_mask
from .mixture import SlotMixture
from .nsa import NSASynthesizer, nsa_blend
from .perlin import perlin_mask, perlin_noise
from .registry import CAI_MODIFIERS, SYNTHESIZERS, make_synthesizer
from .textures import (
    DEFAULT_TEXTURE_DIR,
    TextureSet,
    augment_texture,
    blend_texture,
    texture_set,
)
from .visible import VisibleOnly

__all__ = [
    "SYNTHESIZERS", "DEFAULT_TEXTURE_DIR", "CAIVariant", "CutPasteSynthesizer", "NSASynthesizer",
    "DRAEMSynthesizer", "TextureSet", "texture_set", "make_synthesizer", "perlin_noise", "perlin_mask",
    "augment_texture", "blend_texture", "colour_jitter", "nsa_blend", "GLASSSynthesizer", "glass_augment",
    "glass_mask", "CAI_MODIFIERS", "SlotMixture", "VisibleOnly",
]
