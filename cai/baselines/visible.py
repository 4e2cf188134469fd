"""A slot synthesizer whose pseudo anomalies must stand out from the part's texture (``cai+nsanv25``) or be
unlike any other window of the part (``cai+nsanus25``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.pseudo_mask import grey
from ..engine.synthesizer import PseudoAnomaly, Skipped
from ..engine.visibility import is_novel, stands_out, window_inside
from ._common import SlotSynthesizer, _check_positive_int

#: What a gated slot must pass, and the reason a slot that never does is skipped with.
GATES = {"stands_out": (stands_out, "not_visible"), "novel": (is_novel, "not_novel")}
#: Skip reasons of :class:`VisibleOnly` (a slot that found nothing passing its gate, not a failure).
GATE_SKIPS = frozenset(reason for _, reason in GATES.values())


@dataclass
class VisibleOnly(SlotSynthesizer):
    """``inner``'s slots, kept only when they stand out from the normal image's own texture.

    Slot k tries ``inner``'s slot up to ``tries`` times, all from the one slot generator: the first try is
    exactly ``inner``'s slot for the same seed, each later try continues that generator. A try is kept
    when :func:`cai.engine.visibility.stands_out` holds for its ``footprint`` at ``quantile`` of
    ``null_places`` texture placements, drawn from the same generator after the try. When no try stands
    out (or none can be measured) the slot is ``Skipped(k, "not_visible")``.

    The default footprint is the placed region (NSA's patch rectangle), fixed before the blend. The label
    is not a fair test: it is chosen *after* the blend as the pixels that changed most, so a label of
    scattered specks on a noisy texture differs from its ring by construction, where the same footprint
    placed at random does not.

    Attributes
    ----------
    inner : SlotSynthesizer
        NSA, CutPaste, DRAEM or GLASS-LAS.
    tries : int
        At most this many of ``inner``'s slots per slot. In ``cai+nsanv25`` 8 tries of NSA-N found a patch
        that stands out in 19-26 of the 28 slots drawn for NSA on six targets (seed 0, 8 normals each;
        recipes/evaluate/diagnostics_round14).
    quantile : float
        In (0, 1); 0.9 is what ``recipes/evaluate/diagnose_injection.py`` reports as "stands out". The
        novel gate also takes 1 (the most isolated of the ordinary windows).
    null_places : int
        Texture placements per try.
    footprint : {"placed", "label"}
        What must pass: the placed region (``placed_mask``) or the label (``mask``).
    gate : {"stands_out", "novel"}
        The test (:data:`GATES`).
    per_image : int or None
        Slots per normal image; None takes ``inner``'s.
    factor : float
        The novel gate only: the window must be this many times further from every other window than the
        ``quantile`` of ordinary windows (>= 1).
    within_foreground : bool
        A try whose window (the footprint's bounding box + 4 px, :func:`cai.engine.visibility.window_inside`)
        reaches outside the foreground fails, whatever the gate says: the patch must change the part's
        surface, not its outline.
    """

    inner: SlotSynthesizer
    tries: int = 8
    quantile: float = 0.9
    null_places: int = 16
    footprint: str = "placed"
    per_image: int | None = None
    gate: str = "stands_out"
    factor: float = 1.0
    within_foreground: bool = False

    def __post_init__(self):
        if not isinstance(self.inner, SlotSynthesizer):
            raise ValueError(f"inner must make one slot at a time (a SlotSynthesizer), got {type(self.inner).__name__}")
        self.tries = _check_positive_int(self.tries, "tries")
        self.per_image = _check_positive_int(self.inner.per_image if self.per_image is None else self.per_image,
                                             "per_image")
        self.null_places = _check_positive_int(self.null_places, "null_places")
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {sorted(GATES)}, got {self.gate!r}")
        novel = self.gate == "novel"
        if not (0.0 < float(self.quantile) < 1.0 or (novel and float(self.quantile) == 1.0)):
            raise ValueError(f"quantile must be in (0, 1){' or 1' if novel else ''}, got {self.quantile!r}")
        if not float(self.factor) >= 1.0 or (not novel and float(self.factor) != 1.0):
            raise ValueError(f"factor must be >= 1, and 1 unless the gate is 'novel'; got {self.factor!r}")
        if self.footprint not in ("placed", "label"):
            raise ValueError(f"footprint must be 'placed' or 'label', got {self.footprint!r}")

    @property
    def name(self) -> str:
        return f"{self.inner.name}+{'visible' if self.gate == 'stands_out' else 'novel'}"

    def _one(self, normal, foreground, normal_index, k, rng):
        """Slot k: (H, W[, 3]) uint8 ``normal`` and (H, W) bool ``foreground`` as :class:`SlotSynthesizer`."""
        passes, reason = GATES[self.gate]
        extra = {"factor": self.factor} if self.gate == "novel" else {}
        luma = grey(normal)  # once per slot: every try is judged against the same normal image
        for _ in range(self.tries):
            result = self.inner._one(normal, foreground, normal_index, k, rng)
            if not isinstance(result, PseudoAnomaly):
                return result
            region = result.placed_mask if self.footprint == "placed" else result.mask
            if self.within_foreground and not window_inside(region, foreground):
                continue
            if passes(luma, result.image, region, foreground, rng, self.quantile, self.null_places, **extra):
                return result
        return Skipped(k, reason)
