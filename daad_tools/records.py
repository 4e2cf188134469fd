"""The record every DAAD importer yields, and the published row schema (the contract between
importers, taxonomy, mask QA, the build, FiftyOne curation and the CAI engine).

An importer turns one source layout into :class:`RawAnomaly` records, in sorted (deterministic)
order, without deciding the anomaly class (the taxonomy does) or rejecting anything (mask QA does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

CLASSES = ("pits", "crack", "hole", "stain", "scratch", "orifice", "impurity", "abrasion")
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


# Published DAAD row (one per anomaly, or per connected component when split)
DAAD_FEATURES = datasets.Features({
    "id": datasets.Value("string"),               # stable: "<source>/<original_file>[#<label>][@<component>]"
    "image": datasets.Image(),                    # RGB PNG/JPEG bytes embedded
    "mask": datasets.Image(),                     # single-channel PNG, 0/255
    "anomaly_class": datasets.ClassLabel(names=list(CLASSES)),
    "source": datasets.Value("string"),
    "source_kind": datasets.Value("string"),
    "source_domain": datasets.Value("string"),
    "original_label": datasets.Value("string"),
    "original_file": datasets.Value("string"),
    "license": datasets.Value("string"),
    "bbox": datasets.List(datasets.Value("int32"), length=4),  # row0, col0, row1, col1 (half-open)
    "mask_area_ratio": datasets.Value("float32"),
    "width": datasets.Value("int32"),
    "height": datasets.Value("int32"),
    "content_hash": datasets.Value("string"),     # sha256 of the decoded RGB pixels + mask
    "qa_flags": datasets.List(datasets.Value("string")),
    "mask_refined": datasets.Image(),             # None, or the mask refined to the visible defect (daad_tools.refine)
})
