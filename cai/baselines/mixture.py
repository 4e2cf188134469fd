"""CAI with a share of its slots made by another synthesizer (``cai+nsan25``: a quarter by NSA Normal;
``cai+nsanv25``: a quarter by NSA Normal patches that stand out, the rest of those slots CAI's)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.synthesizer import Skipped
from ._common import SlotSynthesizer, _prepare, _slot_rng

#: Extra word of the seed sequence that decides which synthesizer makes a slot, so the decision is a stream
#: of its own: the slots CAI keeps are byte-identical to CAI's own, the others to the other synthesizer's.
MIX_STREAM = 0x6D6978  # "mix"


@dataclass
class SlotMixture:
    """Slot k of normal image i is made by ``other`` with probability ``share``, by ``main`` otherwise.

    The choice draws ``np.random.default_rng([seed, i, k, MIX_STREAM]).random() < share``; the slot itself is
    made from ``default_rng([seed, i, k])`` as either synthesizer makes it alone. So the result is, slot by
    slot, exactly the main's or the other's result for the same seed: a mixture run and the two single runs
    can be compared pairwise. The main is run for every slot (its slots share one quota plan) and its
    replaced results are dropped; the other runs only on its own slots.

    Attributes
    ----------
    main : synthesizer
        Any synthesizer (here CAI); its ``synthesize`` gives the ``per_image`` slots.
    other : SlotSynthesizer
        A baseline that makes one slot at a time (NSA, CutPaste, DRAEM, GLASS-LAS).
    share : float
        In (0, 1): expected share of slots made by ``other``.
    variant : str
        The name reported (e.g. ``"cai+nsan25"``).
    keep_main_when_skipped : bool
        A slot ``other`` skips keeps the main's result instead (used with
        :class:`~cai.baselines.visible.VisibleOnly`, whose slots are skipped when nothing stands out).
    """

    main: object
    other: SlotSynthesizer
    share: float
    variant: str
    keep_main_when_skipped: bool = False

    def __post_init__(self):
        if not 0.0 < float(self.share) < 1.0:
            raise ValueError(f"share must be in (0, 1), got {self.share!r}")
        if not isinstance(self.other, SlotSynthesizer):
            raise ValueError(f"other must make one slot at a time (a SlotSynthesizer), got {type(self.other).__name__}")

    @property
    def name(self) -> str:
        return self.variant

    def uses_other(self, normal_index: int, seed: int, k: int) -> bool:
        """Whether slot ``k`` of normal image ``normal_index`` is made by ``other``."""
        return bool(np.random.default_rng([seed, normal_index, k, MIX_STREAM]).random() < self.share)

    def synthesize(self, normal, foreground, normal_index: int, seed: int, is_grey: bool = False):
        """The main's results with the slots drawn for ``other`` made by it instead.

        Parameters and returns as :meth:`cai.engine.synthesizer.CAISynthesizer.synthesize`: a list of
        :class:`~cai.engine.synthesizer.PseudoAnomaly` or :class:`~cai.engine.synthesizer.Skipped`, one per
        slot; images (H, W, 3) uint8, or (H, W) for grey targets; masks (H, W) bool.
        """
        results = self.main.synthesize(normal, foreground, normal_index, seed, is_grey)
        mine = [k for k in range(len(results)) if self.uses_other(normal_index, seed, k)]
        if not mine:
            return results
        checked, fg = _prepare(normal, foreground, is_grey)
        for k in mine:
            made = (self.other._one(checked, fg, normal_index, k, _slot_rng(seed, normal_index, k))
                    if fg.any() else Skipped(k, "empty_foreground"))
            if not (self.keep_main_when_skipped and isinstance(made, Skipped)):
                results[k] = made
        return results
