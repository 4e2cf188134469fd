"""CAI with a part switched off or changed (paper Tables 3/4 and the quality variants)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..engine.scale import scale_type
from ..engine.synthesizer import CAISynthesizer, PseudoAnomaly


@dataclass
class CAIVariant(CAISynthesizer):
    """CAI with a part switched off (paper Tables 3/4), under its own ``name``.

    Attributes
    ----------
    variant : str
        The name reported (e.g. ``"cai-622"``).
    scale_matching : bool
        False (``cai-no-stm``): every slot draws a pattern uniformly from the whole bank and keeps
        its own size (resize ratio 1), shrunk only as far as needed for its defect's bounding box
        (plus the Poisson margin) to fit inside the image; quotas are ignored and each result's
        ``scale`` is the scale type of the ratio it got (``"trivial"`` included), ``""`` when skipped.
    location : {"foreground", "anywhere"}
        ``"anywhere"`` (``cai-no-ils``): the centre is drawn over the whole image and neither the
        injection nor the pseudo mask is limited to the foreground (scale matching still measures
        against the foreground). Same as CAI on texture targets whose foreground is the image.
    """

    variant: str = "cai-n"
    scale_matching: bool = True
    location: str = "foreground"

    def __post_init__(self):
        super().__post_init__()
        if self.location not in ("foreground", "anywhere"):
            raise ValueError(f"location must be 'foreground' or 'anywhere', got {self.location!r}")

    @property
    def name(self) -> str:
        return self.variant

    def synthesize(self, normal, foreground, normal_index: int, seed: int, is_grey: bool = False):
        results = super().synthesize(normal, foreground, normal_index, seed, is_grey)
        if self.scale_matching:
            return results
        return [dataclasses.replace(r, scale=scale_type(r.str_ratio, self.config) if isinstance(r, PseudoAnomaly)
                                    else "") for r in results]

    def _placement_area(self, foreground):
        if self.location == "anywhere":
            return np.ones(np.shape(foreground), bool)
        return foreground

    def _choose(self, ratios, scale, rng, image_shape):
        if self.scale_matching:
            return super()._choose(ratios, scale, rng, image_shape)
        index = int(rng.integers(len(ratios)))
        margin = self.config.region_dilation + 1
        room = max(1.0, min(image_shape) - 2 * margin - 2)  # -2: slack for the resize's rounding
        resize = min(1.0, room / float(self.bank.long_sides[index]))
        return index, float(ratios[index]) * resize, resize


def _scaled_quota(quota, n: int) -> tuple[int, int, int]:
    """``quota`` proportions over ``n`` slots (largest remainder, ties to the larger scale)."""
    total = sum(quota)
    if total == n:
        return tuple(int(q) for q in quota)
    if total == 0:
        raise ValueError("quota sums to 0")
    exact = [q * n / total for q in quota]
    out = [int(math.floor(e)) for e in exact]
    for i in sorted(range(3), key=lambda i: (-(exact[i] - out[i]), i))[: n - sum(out)]:
        out[i] += 1
    return tuple(out)
