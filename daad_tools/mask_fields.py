"""The fields of a DAAD row that follow from its mask, computed one way for a source mask (the build's
first pass) and for a curated one (:func:`daad_tools.curation.apply_decisions`, build and sync)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cai.imageio import encode_png

from . import qa as qa_mod
from . import refine as refine_mod


@dataclass(frozen=True)
class MaskFields:
    """What a row's mask determines.

    Attributes
    ----------
    mask_png : bytes
        Single-channel PNG, 0/255 (:func:`cai.imageio.encode_png`).
    bbox : list of int
        ``[row0, col0, row1, col1]``, half-open; ``[0, 0, 0, 0]`` for an empty mask.
    mask_area_ratio : float
        Anomaly pixels / all pixels.
    content_hash : str
        :func:`daad_tools.qa.content_hash` of the image and the mask.
    flags : list of str
        Per-row QA flags in ``qa.FLAGS`` order (mask geometry, importer notes, refinement).
    visible_share : float or None
        :func:`daad_tools.refine.row_refinement`'s share; None when refinement is off.
    mask_refined_png : bytes or None
        The refined mask as PNG 0/255 when the refinement stores one.
    """

    mask_png: bytes
    bbox: list
    mask_area_ratio: float
    content_hash: str
    flags: list
    visible_share: float | None = None
    mask_refined_png: bytes | None = None


def bbox_and_ratio(mask: np.ndarray, stats: qa_mod.MaskStats | None = None) -> tuple[list, float]:
    """(bbox as :class:`MaskFields` has it, area ratio) of an (H, W) bool mask."""
    stats = stats or qa_mod.mask_stats(mask)
    return (list(stats.bbox) if stats.bbox else [0, 0, 0, 0]), float(stats.area_ratio)


def mask_fields(rgb: np.ndarray, mask: np.ndarray, config: qa_mod.QAConfig, notes=(),
                refine: refine_mod.RefineConfig | None = None) -> MaskFields:
    """The fields of a row with image ``rgb`` ((H, W, 3) uint8) and mask ``mask`` ((H, W) bool).

    ``notes`` (importer notes) add their flags (:func:`daad_tools.qa.note_flags`); ``refine`` None
    means no refinement (no ``visible_share``, refined mask or refinement flag).
    """
    stats = qa_mod.mask_stats(mask, config.connectivity)
    flags = qa_mod.row_flags(mask, config, notes, stats)
    refined = refine_mod.row_refinement(rgb, mask, refine or refine_mod.RefineConfig())
    if refined["flags"]:
        flags = sorted(set(flags) | set(refined["flags"]), key=qa_mod.FLAGS.index)
    bbox, ratio = bbox_and_ratio(mask, stats)
    return MaskFields(
        mask_png=encode_png(mask)["bytes"], bbox=bbox, mask_area_ratio=ratio,
        content_hash=qa_mod.content_hash(rgb, mask), flags=flags, visible_share=refined["visible_share"],
        mask_refined_png=None if refined["mask_refined"] is None else encode_png(refined["mask_refined"])["bytes"])
