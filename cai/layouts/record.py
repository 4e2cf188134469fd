"""The record every layout reader yields: one real anomaly as found in a source, before any
taxonomy or QA (the DAAD toolkit classes and checks it; the evaluation reads test sets with it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SOURCE_KINDS = ("existing_dataset", "online_search", "photograph")


@dataclass
class RawAnomaly:
    """One real anomaly as found in a source, before taxonomy and QA.

    Attributes
    ----------
    source : str
        Dataset name, e.g. ``"mvtec_ad"``, ``"neu_seg"``, ``"cracks_mixed"``.
    original_file : str
        Image path relative to the importer's root (stable across machines; part of the row id).
    image_path : Path
        Where to read the image (RGB is made on decode, EXIF orientation baked in).
    mask : (H, W) bool ndarray or None
        Binary defect mask at the image's size; None for an own photo without a mask yet.
    original_label : str
        The source's own label (defect folder, class name or index), mapped by the taxonomy.
    source_kind : str
        One of ``SOURCE_KINDS``.
    source_domain : str
        What the source photographs, e.g. ``"road"``, ``"steel"``, ``"grid"``.
    license : str
        SPDX-like licence id of the source, e.g. ``"CC-BY-4.0"``.
    component : int
        0 for the whole mask; k >= 1 when an importer already split one class of a multi-class
        mask (e.g. one row per class present in NEU-Seg) — the build may further split by connected
        component.
    notes : list of str
        Import-time observations QA should know (e.g. ``"mask_soft_binarized"``).
    """

    source: str
    original_file: str
    image_path: Path
    mask: np.ndarray | None
    original_label: str
    source_kind: str = "existing_dataset"
    source_domain: str = ""
    license: str = "unknown"
    component: int = 0
    notes: list = field(default_factory=list)
