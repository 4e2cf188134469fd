"""The synthesizer interface and CAI composed from its stages (Fig. 3 / Algorithm 1).

A synthesizer turns one normal image into ``n`` pseudo anomalies; CAI and the baselines share this
interface so evaluation can treat them alike. Randomness of pseudo anomaly k of normal image i is
``np.random.default_rng([seed, i, k])``, so any sharding or worker count gives the same rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from .config import CAIConfig
from .inject import inject_pattern, match_colour_mode, resize_pattern
from .location import select_center
from .pseudo_mask import mask_fidelity, pseudo_mask
from .quota import choose_pattern, plan_scales
from .refine import grow_within, refine_defect_mask
from .scale import along_factor, foreground_scale


def _draw_mode(modes: tuple[str, ...], weights, rng) -> str:
    """One of ``modes``: uniformly (``weights`` None or all equal, one ``rng.integers`` draw) or by relative
    ``weights`` (one ``rng.random`` draw against the cumulative shares)."""
    if len(modes) == 1:
        return modes[0]
    if weights is None or len(set(weights)) == 1:
        return modes[int(rng.integers(len(modes)))]
    cumulative = np.cumsum(np.asarray(weights, float))
    return modes[min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(modes) - 1)]


_CV2_TURNS = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


def _as_cv2(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint8) if a.dtype == bool else a


_FLIP_AS_TURN = (0, 4, 6, 2)  # identity, columns flipped, rows flipped, 180 degrees


def _flipped(a: np.ndarray, t: int) -> np.ndarray:
    """Transform ``t`` in 0..3 of an (H, W[, C]) array: bit 0 flips the columns, bit 1 the rows (3: turned
    by 180 degrees); the values of the numpy slices ``a[::-1]``, ``a[:, ::-1]``, as :func:`_turned`."""
    return _turned(a, _FLIP_AS_TURN[t])


def _turned(a: np.ndarray, t: int) -> np.ndarray:
    """Dihedral transform ``t`` in 0..7 of an (H, W[, C]) array: ``np.rot90(a, t % 4)`` (counter-clockwise),
    then, for t >= 4, the columns flipped. A contiguous array (``a`` itself for t = 0) with exactly those
    values; cv2 moves the pixels several times faster than numpy's strided copy."""
    if t == 0:
        return np.ascontiguousarray(a)
    out = _as_cv2(a)
    if t % 4:
        out = cv2.rotate(out, _CV2_TURNS[t % 4])
    if t >= 4:
        out = cv2.flip(out, 1)
    return out.view(bool) if a.dtype == bool else out


@dataclass
class PseudoAnomaly:
    """One made pseudo anomaly.

    image : (H, W, 3) uint8 (or (H, W) for grey targets); mask, placed_mask : (H, W) bool.
    """

    image: np.ndarray
    mask: np.ndarray
    placed_mask: np.ndarray
    k: int
    anomaly_class: str
    scale: str
    str_ratio: float
    resize_ratio: float
    center: tuple[int, int]
    source_id: str
    source: str
    attempts: int
    fidelity: dict = field(default_factory=dict)
    resamples: dict = field(default_factory=dict)
    mode: str = ""
    clipped: int = 0


@dataclass
class Skipped:
    """A pseudo anomaly that could not be made; ``reason`` is counted in the run summary."""

    k: int
    reason: str
    scale: str = ""
    resamples: dict = field(default_factory=dict)


class Synthesizer(Protocol):
    """What every pseudo-anomaly synthesizer (CAI and the baselines) provides."""

    name: str

    def synthesize(self, normal: np.ndarray, foreground: np.ndarray, normal_index: int, seed: int,
                   is_grey: bool = False) -> list[PseudoAnomaly | Skipped]:
        ...


@dataclass
class PatternBank:
    """The anomaly patterns CAI draws from.

    long_sides : (P,) int ndarray — bounding-box long side s_a of each pattern's defect mask.
    load : callable i -> (image (h, w, 3) uint8, mask (h, w) bool), the crop around defect i.
    refined : optional callable i -> (h, w) bool mask or None: a stored
        ``refine_defect_mask(*load(i))`` (the same array, computed once per anomaly set); None, or no
        callable, and the synthesizer refines the mask itself.
    """

    long_sides: np.ndarray
    anomaly_class: Sequence[str]
    source: Sequence[str]
    ids: Sequence[str]
    load: Callable[[int], tuple[np.ndarray, np.ndarray]]
    refined: Callable[[int], np.ndarray | None] | None = None

    def __post_init__(self):
        self.long_sides = np.asarray(self.long_sides, dtype=np.float64)
        if not (len(self.long_sides) == len(self.anomaly_class) == len(self.source) == len(self.ids)):
            raise ValueError("PatternBank columns must have equal lengths")
        if len(self.long_sides) == 0:
            raise ValueError("PatternBank is empty: no anomaly pattern to inject")


@dataclass
class CAISynthesizer:
    """Cross-domain Anomaly Injection over a :class:`PatternBank`."""

    bank: PatternBank
    config: CAIConfig = field(default_factory=CAIConfig)

    def __post_init__(self):
        self._refined: dict = {}
        self._touches_border = None
        # class code of every pattern (codes in sorted class order), for the class-balanced draw
        self._class_codes = np.unique(np.asarray(self.bank.anomaly_class, dtype=str), return_inverse=True)[1]

    @property
    def name(self) -> str:
        return {"normal": "cai-n", "mixed": "cai-m", "paste": "cai-paste", "relative": "cai-r"}.get(
            self.config.mode, "cai-" + self.config.mode)

    def _pattern(self, index: int):
        """(image, mask) of pattern ``index``, the mask refined when ``config.refine_mask``."""
        image, mask = self.bank.load(index)
        if self.config.refine_mask:
            if index not in self._refined:
                stored = self.bank.refined(index) if self.bank.refined is not None else None
                refined = refine_defect_mask(image, mask) if stored is None else stored
                if self.config.halo:
                    refined = grow_within(refined, mask, self.config.halo)
                self._refined[index] = refined
            mask = self._refined[index]
        return image, mask

    def border_patterns(self) -> np.ndarray:
        """(P,) bool: patterns whose defect touches the edge of its crop, i.e. its source image's
        border (crops keep a margin around the defect wherever the image has one)."""
        if self._touches_border is None:
            flags = []
            for i in range(len(self.bank.long_sides)):
                m = self.bank.load(i)[1]
                flags.append(bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()))
            self._touches_border = np.array(flags, bool)
        return self._touches_border

    def synthesize(self, normal, foreground, normal_index: int, seed: int, is_grey: bool = False):
        """All pseudo anomalies of one normal image (``sum(config.quota)`` results, made or skipped).

        Parameters
        ----------
        normal : (H, W, 3) uint8 ndarray
        foreground : (H, W) bool ndarray
        is_grey : bool
            Target is grey: patterns are injected in grey and images come back as (H, W).
        """
        scales = plan_scales(self.config.quota)
        if not np.asarray(foreground).any():
            return [Skipped(k, "empty_foreground", s) for k, s in enumerate(scales)]
        if is_grey and normal.ndim == 3:
            normal = normal[..., 0]
        s_f, extent = foreground_scale(foreground, self.config.scale_reference)
        ratios = self.bank.long_sides / s_f
        if self.config.border == "exclude":
            ratios = np.where(self.border_patterns(), 0.0, ratios)  # below "trivial": never drawn
        foreground = self._placement_area(foreground)
        return [self._one(normal, foreground, ratios, k, scale, np.random.default_rng([seed, normal_index, k]), is_grey,
                          extent) for k, scale in enumerate(scales)]

    # Hooks for the ablations in :mod:`cai.baselines` (CAI itself: ILS over the foreground, STM quotas).
    def _placement_area(self, foreground):
        """(H, W) bool area where centres are drawn, the pattern may land and the pseudo mask may lie."""
        return foreground

    def _choose(self, ratios, scale, rng, image_shape):
        """(pattern index, R', resize ratio) for one slot, or None when no pattern can serve it."""
        return choose_pattern(ratios, scale, rng, self.config, classes=self._class_codes)

    def _one(self, normal, foreground, ratios, k, scale, rng, is_grey, extent):
        cfg = self.config
        resamples = {"location": 0, "empty_mask": 0, "vanished": 0}
        modes = cfg.modes
        for attempt in range(1, cfg.max_attempts + 1):
            mode = _draw_mode(modes, cfg.mode_weights, rng)
            choice = self._choose(ratios, scale, rng, normal.shape[:2])
            if choice is None:
                return Skipped(k, f"no_pattern_for_{scale}", scale, resamples)
            index, target_ratio, resize = choice
            image, mask = self._pattern(index)
            # the colour mode is pointwise: matched on the smaller side of the transform's copy (grey
            # before it, grey-to-RGB after it), the same bytes either way
            if is_grey:
                image = match_colour_mode(image, is_grey)
            if cfg.augment and cfg.augment_group == "flips":  # identity, h-flip, v-flip, 180 degrees
                t = int(rng.integers(4))
                image, mask = _flipped(image, t), _flipped(mask, t)
            elif cfg.augment:
                t = int(rng.integers(8))
                image, mask = _turned(image, t), _turned(mask, t)
            if not is_grey:
                image = match_colour_mode(image, is_grey)
            resize *= along_factor(mask, extent, cfg.scale_reference)
            image, mask = resize_pattern(image, mask, resize)
            if not mask.any():
                resamples["vanished"] += 1
                continue
            rows, cols = np.nonzero(mask)
            shape = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
            center = select_center(foreground, shape, rng, margin=cfg.region_dilation + 1)
            if center is None:
                resamples["location"] += 1
                continue
            low, high = cfg.gain
            gain = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else low
            injection = inject_pattern(normal, foreground, image, mask, center, cfg, mode=mode, gain=gain)
            pmask, change = pseudo_mask(normal, injection.image, injection.placed_mask, cfg.threshold,
                                        cfg.median_ksize, cfg.mask_margin, cfg.min_component, return_change=True,
                                        rule=cfg.mask_rule)
            pmask &= foreground
            if not pmask.any():
                resamples["empty_mask"] += 1
                continue
            return PseudoAnomaly(
                image=injection.image, mask=pmask, placed_mask=injection.placed_mask, k=k,
                anomaly_class=str(self.bank.anomaly_class[index]), scale=scale, str_ratio=target_ratio,
                resize_ratio=resize, center=center, source_id=str(self.bank.ids[index]),
                source=str(self.bank.source[index]), attempts=attempt,
                fidelity=mask_fidelity(normal, injection.image, pmask, injection.placed_mask,
                                       threshold=cfg.threshold, change=change, rule=cfg.mask_rule),
                resamples=resamples, mode=mode, clipped=injection.clipped)
        return Skipped(k, "max_attempts", scale, resamples)
